"""Scale-out: chunked NARs, pins, last access of store paths for retention, pull-through
upstreams per cache, secrets shared by replicas, and the Bazel usage total in shards.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

USAGE_SHARDS = 16


def upgrade() -> None:
    with op.batch_alter_table("caches") as batch:
        batch.add_column(sa.Column("upstreams", sa.Text, nullable=False, server_default="[]"))
    with op.batch_alter_table("nars") as batch:
        batch.add_column(sa.Column("chunked", sa.Boolean, nullable=False,
                                   server_default=sa.text("false")))
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("accessed_at", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.execute("UPDATE objects SET accessed_at = created_at")
    op.create_index("ix_objects_accessed_at", "objects", ["cache_id", "accessed_at"])
    op.create_table(
        "chunks",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("stored_size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "nar_chunks",
        sa.Column("file_hash", sa.String(64),
                  sa.ForeignKey("nars.file_hash", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("chunk_hash", sa.String(64), sa.ForeignKey("chunks.hash"), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_nar_chunks_chunk_hash", "nar_chunks", ["chunk_hash"])
    op.create_table(
        "pins",
        sa.Column("cache_id", sa.Integer, sa.ForeignKey("caches.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("store_path_hash", sa.String(32), nullable=False),
        sa.Column("store_path", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    with op.batch_alter_table("bazel_usage") as batch:
        batch.add_column(sa.Column("reserved", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.execute("UPDATE bazel_usage SET reserved = bytes")
    for shard in range(2, USAGE_SHARDS + 1):
        op.execute(f"INSERT INTO bazel_usage (id, bytes, reserved) VALUES ({shard}, 0, 0)")


def downgrade() -> None:
    op.execute("UPDATE bazel_usage SET bytes = (SELECT sum(bytes) FROM bazel_usage) "
               "WHERE id = 1")
    op.execute("DELETE FROM bazel_usage WHERE id > 1")
    with op.batch_alter_table("bazel_usage") as batch:
        batch.drop_column("reserved")
    for name in ("server_secrets", "pins", "nar_chunks", "chunks"):
        op.drop_table(name)
    op.drop_index("ix_objects_accessed_at", "objects")
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("accessed_at")
    with op.batch_alter_table("nars") as batch:
        batch.drop_column("chunked")
    with op.batch_alter_table("caches") as batch:
        batch.drop_column("upstreams")
