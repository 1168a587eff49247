"""web edge: per-client throttle of admin-token guesses

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_throttle',
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('locked_until', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('client')
    )


def downgrade() -> None:
    op.drop_table('login_throttle')
