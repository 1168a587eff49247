"""inbound trust: the reply a repeated callback is answered with; bridge groups scoped by platform

* ``processed_events.reply`` (JSON, nullable): what a repeat of a stored callback is answered with
  when the event alone does not determine it (``handlers.dispatch.repeat_replies``).
* Bridge groups stored before group ids were scoped (``wxg-1`` of platform ``wechat``) become
  ``wechat:wxg-1``, the id the bridge's events now map to, so their activity keeps landing on
  them (an unscoped row would fall silent and be warned as a zombie). Their memberships,
  messages, notices, useless votes, bridge outbox rows and ``merged_into`` references follow.
  Only groups the bridge created (``source`` other than ``ledger``) of a bridge platform (not
  wecom, aibot, ledger, local, archive) are moved; a group whose scoped id is taken or would not
  fit ``groups.id`` stays as it is. Audit records are never rewritten: they keep the id the group
  had when they were written, and the chain still verifies.
  Instructions already queued for the bridge keep the raw id they were written with, which is
  what the bridge is sent either way.

Revision ID: 0003
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

UNSCOPED_PLATFORMS = ("wecom", "aibot", "ledger", "local", "archive")  # storage.repo.UNSCOPED_PLATFORMS
GROUP_ID_MAX = 128

# (table, column) holding a group id that follows the group (besides memberships, moved first)
FOLLOWERS = (("messages", "group_id"), ("notices", "group_id"), ("useless_votes", "group_id"),
             ("groups", "merged_into"))


def upgrade() -> None:
    with op.batch_alter_table('processed_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply', sa.JSON(), nullable=True))
    _scope_bridge_groups(op.get_bind())


def _scope_bridge_groups(bind) -> None:
    rows = bind.execute(sa.text("SELECT id, platform FROM groups WHERE source <> 'ledger'")).all()
    existing = {r[0] for r in bind.execute(sa.text("SELECT id FROM groups")).all()}
    moves = []
    for gid, platform in rows:
        if not platform or platform in UNSCOPED_PLATFORMS or gid.startswith(platform + ":"):
            continue
        new = f"{platform}:{gid}"
        if new in existing or len(new) > GROUP_ID_MAX:
            continue
        existing.add(new)
        moves.append({"old": gid, "new": new})
    if not moves:
        return
    cols = [c["name"] for c in sa.inspect(bind).get_columns("groups")]
    names = ", ".join(f'"{c}"' for c in cols)
    picks = ", ".join(":new" if c == "id" else f'"{c}"' for c in cols)
    bind.execute(sa.text(f'INSERT INTO "groups" ({names}) SELECT {picks} FROM "groups" WHERE id = :old'), moves)
    bind.execute(sa.text("UPDATE memberships SET group_id = :new WHERE group_id = :old"), moves)
    for table, col in FOLLOWERS:
        bind.execute(sa.text(f'UPDATE "{table}" SET {col} = :new WHERE {col} = :old'), moves)
    bind.execute(sa.text("UPDATE outbox SET recipient = :new WHERE recipient = :old AND channel = 'bridge'"), moves)
    bind.execute(sa.text('DELETE FROM "groups" WHERE id = :old'), moves)


def downgrade() -> None:
    with op.batch_alter_table('processed_events', schema=None) as batch_op:
        batch_op.drop_column('reply')
