"""anonymity: per-window salts, the useless-vote window

Revision ID: 0004
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('anon_salts',
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.String(length=128), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('closes_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('purpose', 'scope', 'period')
    )
    with op.batch_alter_table('anon_salts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_anon_salts_closes_at'), ['closes_at'], unique=False)
    # Votes from before this revision have no window (NULL): they count as closed, and the first
    # run of the close_anonymous_windows job replaces their voter keys with random values.
    with op.batch_alter_table('useless_votes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('window_start', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('useless_votes', schema=None) as batch_op:
        batch_op.drop_column('window_start')
    with op.batch_alter_table('anon_salts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_anon_salts_closes_at'))
    op.drop_table('anon_salts')
