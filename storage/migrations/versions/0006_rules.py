"""rules: observation start from archive coverage, protection requests

Revision ID: 0006
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = "0006"
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("observed_since", storage.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("protect_requested_at", storage.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("protect_requested_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("groups") as batch:
        batch.drop_column("protect_requested_by")
        batch.drop_column("protect_requested_at")
        batch.drop_column("observed_since")
