"""The operator plane's tables, on the one metadata of :mod:`flywheel.db.schema`.

Figures every replica must agree on and that must survive restarts (cache traffic, queue
times) live here, as do sessions, passkeys, the audit log and the changes opened."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from flywheel.db.schema import metadata

# An identity is written "kind:name" (tailnet:alice@example.com, cert:CN=alice,O=Acme,
# token:ci-bot); roles are mapped from these in [auth].
IDENTITY = 512

sessions = Table(
    "operator_sessions",
    metadata,
    # The cookie carries the session id, signed; the table only its SHA-256, so a copy of
    # the database signs nobody in.
    Column("id_hash", String(64), primary_key=True),
    Column("identity", String(IDENTITY), nullable=False),
    Column("display", String(255), nullable=False),
    Column("source", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("address", String(64), nullable=False),
    Column("user_agent", String(255), nullable=False),
    Index("ix_operator_sessions_identity", "identity"),
)

passkeys = Table(
    "operator_passkeys",
    metadata,
    Column("credential_id", String(1024), primary_key=True),
    Column("identity", String(IDENTITY), nullable=False),
    Column("display", String(255), nullable=False),
    Column("name", String(100), nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=True),
    Index("ix_operator_passkeys_identity", "identity"),
)

# WebAuthn challenges, each usable once, shared by every replica.
challenges = Table(
    "operator_challenges",
    metadata,
    Column("challenge", String(128), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("identity", String(IDENTITY), nullable=True),
    Column("expires_at", BigInteger, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),   # milliseconds since the epoch
    Column("actor", String(IDENTITY), nullable=False),
    Column("via", String(32), nullable=False),
    Column("role", String(16), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(512), nullable=False),
    Column("detail", Text, nullable=False),
    Column("address", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Index("ix_audit_events_at", "at"),
    Index("ix_audit_events_actor", "actor"),
)

# Lookups per cache, kind (nix, ac, cas) and minute, added to in batches by every worker.
cache_traffic = Table(
    "cache_traffic",
    metadata,
    Column("cache", String(64), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("hits", BigInteger, nullable=False),
    Column("misses", BigInteger, nullable=False),
    Column("bytes_out", BigInteger, nullable=False),
    Index("ix_cache_traffic_bucket", "bucket"),
)

# Paths and blobs stored per cache, pusher and hour.
cache_pushes = Table(
    "cache_pushes",
    metadata,
    Column("cache", String(64), primary_key=True),
    Column("pusher", String(255), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("bytes_in", BigInteger, nullable=False),
)

# GitHub's workflow_job events, one row per job, for queue times per pool.
workflow_jobs = Table(
    "workflow_jobs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("pool", String(100), nullable=False),
    Column("labels", Text, nullable=False),
    Column("repository", String(255), nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("name", String(255), nullable=False),
    Column("runner_name", String(255), nullable=True),
    Column("status", String(16), nullable=False),
    Column("conclusion", String(32), nullable=True),
    Column("queued_at", BigInteger, nullable=True),
    Column("started_at", BigInteger, nullable=True),
    Column("completed_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_workflow_jobs_pool_started", "pool", "started_at"),
)

# Changes to the fleet spec opened (pull or merge requests) or applied from the UI.
changes = Table(
    "operator_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("pool", String(100), nullable=False),
    Column("forge", String(16), nullable=False),
    Column("number", Integer, nullable=True),
    Column("url", Text, nullable=True),
    Column("branch", String(255), nullable=True),
    Column("title", Text, nullable=False),
    Column("diff", Text, nullable=False),
    Column("author", String(IDENTITY), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
