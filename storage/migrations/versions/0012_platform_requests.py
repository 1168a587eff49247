"""platform requests: work a chat command asked a platform for (建群), done by the scheduler

``platform_requests`` (kind, platform, person, payload, status pending|running|done|failed|
uncertain, attempts, times, result = the registered group id, last error): the command writes the
row in its own transaction; the platform is called outside it; the group is registered when the
platform returned its chat id (``storage.creation``).

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa

from storage.models import UTCDateTime


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_platform_requests_person_id", "platform_requests", ["person_id"])
    op.create_index("ix_platform_requests_status", "platform_requests", ["status"])


def downgrade() -> None:
    op.drop_index("ix_platform_requests_status", table_name="platform_requests")
    op.drop_index("ix_platform_requests_person_id", table_name="platform_requests")
    op.drop_table("platform_requests")
