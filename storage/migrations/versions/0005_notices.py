"""notice premises and withdrawals; when findings were computed

Revision ID: 0005
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('premise', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_at', storage.models.UTCDateTime(timezone=True), nullable=True))
    op.create_table('finding_refreshes',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope')
    )


def downgrade() -> None:
    op.drop_table('finding_refreshes')
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_column('withdrawn_at')
        batch_op.drop_column('premise')
