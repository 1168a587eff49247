"""activity source: what the bot can see of a group's traffic (``groups.activity_source``)

``full`` every message (Feishu with im:message.group_msg, the bridge, local), ``mentions`` only
@-mentions and direct chats (WeCom bots and apps, DingTalk robots, Feishu without the scope),
``counts`` daily message counts without content (专属钉钉 activeGroups), ``archive`` an archive
import, ``none`` nothing (a ledger entry). NULL: not yet known (read as the platform's default).

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("activity_source", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("activity_source")
