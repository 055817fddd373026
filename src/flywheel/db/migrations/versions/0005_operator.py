"""The operator plane: sessions, passkeys, WebAuthn challenges, the audit log, cache
traffic and pushes per interval, GitHub workflow jobs for queue times, and changes opened
against the fleet spec.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

IDENTITY = 512


def upgrade() -> None:
    op.create_table(
        "operator_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("identity", sa.String(IDENTITY), nullable=False),
        sa.Column("display", sa.String(255), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(255), nullable=False),
    )
    op.create_index("ix_operator_sessions_identity", "operator_sessions", ["identity"])
    op.create_table(
        "operator_passkeys",
        sa.Column("credential_id", sa.String(1024), primary_key=True),
        sa.Column("identity", sa.String(IDENTITY), nullable=False),
        sa.Column("display", sa.String(255), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_operator_passkeys_identity", "operator_passkeys", ["identity"])
    op.create_table(
        "operator_challenges",
        sa.Column("challenge", sa.String(128), primary_key=True),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("identity", sa.String(IDENTITY), nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(IDENTITY), nullable=False),
        sa.Column("via", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor"])
    op.create_table(
        "cache_traffic",
        sa.Column("cache", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("hits", sa.BigInteger, nullable=False),
        sa.Column("misses", sa.BigInteger, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_cache_traffic_bucket", "cache_traffic", ["bucket"])
    op.create_table(
        "cache_pushes",
        sa.Column("cache", sa.String(64), primary_key=True),
        sa.Column("pusher", sa.String(255), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "workflow_jobs",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("pool", sa.String(100), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("runner_name", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("conclusion", sa.String(32), nullable=True),
        sa.Column("queued_at", sa.BigInteger, nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_workflow_jobs_pool_started", "workflow_jobs", ["pool", "started_at"])
    op.create_table(
        "operator_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pool", sa.String(100), nullable=False),
        sa.Column("forge", sa.String(16), nullable=False),
        sa.Column("number", sa.Integer, nullable=True),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("branch", sa.String(255), nullable=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("diff", sa.Text, nullable=False),
        sa.Column("author", sa.String(IDENTITY), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("operator_changes", "workflow_jobs", "cache_pushes", "cache_traffic",
                  "audit_events", "operator_challenges", "operator_passkeys",
                  "operator_sessions"):
        op.drop_table(table)
