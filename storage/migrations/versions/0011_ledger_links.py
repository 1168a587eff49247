"""ledger links: a ledger entry confirmed to be a platform group (the two became one group), and the
pairs an administrator said are not the same group (never proposed again)

Revision ID: 0011
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_links",
        sa.Column("ledger_id", sa.String(128), primary_key=True),
        sa.Column("group_id", sa.String(128), nullable=False),
        sa.Column("ledger_name", sa.String(128), nullable=False),
        sa.Column("ledger_unit", sa.String(128), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_ledger_links_group_id", "ledger_links", ["group_id"], unique=True)
    op.create_table(
        "ledger_rejections",
        sa.Column("ledger_id", sa.String(128), primary_key=True),
        sa.Column("group_id", sa.String(128), primary_key=True),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rejected_by", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_rejections")
    op.drop_index("ix_ledger_links_group_id", table_name="ledger_links")
    op.drop_table("ledger_links")
