"""ledger: notes and unresolved member names on groups; roster fields on persons

Revision ID: 0007
Revises: 0001
Create Date: 2026-12-01 21:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('ledger_names', sa.JSON(), nullable=True))
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('title', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('dingtalk_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('feishu_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_persons_name'), ['name'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_persons_name'))
        batch_op.drop_column('feishu_id')
        batch_op.drop_column('dingtalk_id')
        batch_op.drop_column('title')
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.drop_column('ledger_names')
        batch_op.drop_column('note')
