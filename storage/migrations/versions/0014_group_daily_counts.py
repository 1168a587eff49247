"""daily message counts without content (专属钉钉 activeGroups) and the days imported

``group_daily_counts``: (group, day) → messages, what the counts-based zombie rule reads
(``governance.rules_counts``); ``count_days``: the days a platform's counts were imported (a group
without a row on such a day had no message).

Revision ID: 0014
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_daily_counts",
        sa.Column("group_id", sa.String(128), sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("messages", sa.Integer(), nullable=False),
    )
    op.create_table(
        "count_days",
        sa.Column("platform", sa.String(16), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("count_days")
    op.drop_table("group_daily_counts")
