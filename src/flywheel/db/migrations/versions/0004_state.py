"""The state plane: OpenTofu/Terraform workspaces, their lock, and every version written.

A workspace row holds the lock and points at its current version; ``last_version`` numbers
versions without reuse, even after retention or a purge drops the newest rows. Version
content is encrypted at rest (AES-GCM, bound to workspace and version) by the server's state
key, never stored in the clear.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_workspaces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("current_version", sa.Integer, nullable=True),
        sa.Column("last_version", sa.Integer, nullable=False),
        sa.Column("lock_id", sa.String(255), nullable=True),
        sa.Column("lock_info", sa.Text, nullable=True),
        sa.Column("locked_by", sa.String(255), nullable=True),
        sa.Column("locked_at", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "state_versions",
        sa.Column("workspace_id", sa.Integer,
                  sa.ForeignKey("state_workspaces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("serial", sa.BigInteger, nullable=True),
        sa.Column("lineage", sa.String(255), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("state_versions")
    op.drop_table("state_workspaces")
