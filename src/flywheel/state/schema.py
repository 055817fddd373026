"""The state plane's tables (migration 0004), on the shared metadata."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, LargeBinary, String, Table, Text

from flywheel.db.schema import metadata

workspaces = Table(
    "state_workspaces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    # None when the workspace has no state (never written, or purged).
    Column("current_version", Integer, nullable=True),
    # Versions are numbered from this counter, so a number is never reused.
    Column("last_version", Integer, nullable=False),
    Column("lock_id", String(255), nullable=True),
    # The lock-info JSON exactly as the locker sent it, returned to anyone refused.
    Column("lock_info", Text, nullable=True),
    Column("locked_by", String(255), nullable=True),
    Column("locked_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

versions = Table(
    "state_versions",
    metadata,
    Column("workspace_id", Integer, ForeignKey("state_workspaces.id", ondelete="CASCADE"),
           primary_key=True),
    Column("version", Integer, primary_key=True),
    # Read from the body when it is a JSON state; None for opaque (client-encrypted) bodies.
    Column("serial", BigInteger, nullable=True),
    Column("lineage", String(255), nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("md5", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    # How the version came to be when not a plain write: a rollback, an import, a force.
    Column("note", Text, nullable=True),
    # AES-GCM ciphertext of the body, bound to the workspace name and version number.
    Column("content", LargeBinary, nullable=False),
)
