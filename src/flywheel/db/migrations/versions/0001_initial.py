"""Initial schema: caches, NAR files, per-cache objects, tokens and revocations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "caches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("is_public", sa.Boolean, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("store_dir", sa.String(255), nullable=False),
        sa.Column("signing_key", sa.Text, nullable=False),
        sa.Column("upstream_cache_key_names", sa.Text, nullable=False),
        sa.Column("retention_period", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "nars",
        sa.Column("file_hash", sa.String(64), primary_key=True),
        sa.Column("compression", sa.String(16), nullable=False),
        sa.Column("file_size", sa.BigInteger, nullable=False),
        sa.Column("nar_hash", sa.String(80), nullable=False),
        sa.Column("nar_size", sa.BigInteger, nullable=False),
        sa.Column("alias_of", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_nars_nar_hash", "nars", ["nar_hash"])
    op.create_index("uq_nars_canonical", "nars", ["nar_hash"], unique=True,
                    sqlite_where=sa.text("alias_of IS NULL"),
                    postgresql_where=sa.text("alias_of IS NULL"))
    op.create_table(
        "objects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cache_id", sa.Integer, sa.ForeignKey("caches.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("store_path_hash", sa.String(32), nullable=False),
        sa.Column("store_path", sa.Text, nullable=False),
        sa.Column("nar_file", sa.String(64), sa.ForeignKey("nars.file_hash"), nullable=False),
        sa.Column("nar_hash", sa.String(80), nullable=False),
        sa.Column("nar_size", sa.BigInteger, nullable=False),
        sa.Column("refs", sa.Text, nullable=False),
        sa.Column("deriver", sa.Text, nullable=True),
        sa.Column("system", sa.String(64), nullable=True),
        sa.Column("sigs", sa.Text, nullable=False),
        sa.Column("ca", sa.Text, nullable=True),
        sa.Column("narinfo", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("cache_id", "store_path_hash", name="uq_objects_cache_path"),
    )
    op.create_index("ix_objects_nar_file", "objects", ["nar_file", "cache_id"])
    op.create_table(
        "tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("sub", sa.String(255), nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("permissions", sa.Text, nullable=False),
    )
    op.create_index("ix_tokens_sub", "tokens", ["sub"])
    op.create_table(
        "subject_revocations",
        sa.Column("sub", sa.String(255), primary_key=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for name in ("subject_revocations", "tokens", "objects", "nars", "caches"):
        op.drop_table(name)
