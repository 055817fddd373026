"""Bazel remote cache: global CAS blob index, per-cache action cache, usage total.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cas_blobs",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("accessed_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_cas_blobs_accessed_at", "cas_blobs", ["accessed_at"])
    op.create_table(
        "ac_entries",
        sa.Column("cache_id", sa.Integer, sa.ForeignKey("caches.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("action_hash", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("result", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("accessed_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ac_entries_accessed_at", "ac_entries", ["accessed_at"])
    op.create_table(
        "bazel_usage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO bazel_usage (id, bytes) VALUES (1, 0)")


def downgrade() -> None:
    for name in ("bazel_usage", "ac_entries", "cas_blobs"):
        op.drop_table(name)
