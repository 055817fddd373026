"""Per-cache visibility of shared content, broken-content marks, key names for re-signing,
and action-cache entries validated once when written.

Action-cache entries written before this revision were never validated against the new
per-cache CAS membership, so they are dropped (Bazel repopulates them on its next build);
the usage total is reduced by their bytes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("caches") as batch:
        batch.add_column(sa.Column("key_name", sa.String(255), nullable=False,
                                   server_default=""))
    conn = op.get_bind()
    for cache_id, key in conn.execute(sa.text("SELECT id, signing_key FROM caches")).all():
        conn.execute(sa.text("UPDATE caches SET key_name = :n WHERE id = :i"),
                     {"n": key.split(":", 1)[0], "i": cache_id})
    with op.batch_alter_table("nars") as batch:
        batch.add_column(sa.Column("broken_at", sa.BigInteger, nullable=True))
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("signed_by", sa.String(255), nullable=False,
                                   server_default=""))
    op.execute("UPDATE objects SET signed_by = (SELECT key_name FROM caches "
               "WHERE caches.id = objects.cache_id)")
    op.create_table(
        "cache_nars",
        sa.Column("cache_id", sa.Integer, sa.ForeignKey("caches.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("file_hash", sa.String(64),
                  sa.ForeignKey("nars.file_hash", ondelete="CASCADE"), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_cache_nars_file_hash", "cache_nars", ["file_hash"])
    op.create_table(
        "cas_members",
        sa.Column("cache_id", sa.Integer, sa.ForeignKey("caches.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("hash", sa.String(64), sa.ForeignKey("cas_blobs.hash", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_cas_members_hash", "cas_members", ["hash"])
    op.execute("UPDATE bazel_usage SET bytes = bytes - "
               "(SELECT coalesce(sum(size), 0) FROM ac_entries)")
    op.execute("DELETE FROM ac_entries")
    with op.batch_alter_table("ac_entries") as batch:
        # The table is empty now, so the new column needs no default.
        batch.add_column(sa.Column("refs", sa.LargeBinary, nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("ac_entries") as batch:
        batch.drop_column("refs")
    op.drop_table("cas_members")
    op.drop_table("cache_nars")
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("signed_by")
    with op.batch_alter_table("nars") as batch:
        batch.drop_column("broken_at")
    with op.batch_alter_table("caches") as batch:
        batch.drop_column("key_name")
