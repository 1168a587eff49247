"""identity: one person, one account per platform (``person_accounts``)

* ``person_accounts`` (platform, account_id → person_id; one person per account, one account per
  platform per person), filled with every existing person's own account: the platform of a scoped
  id's prefix (``wechat:zs`` → wechat, ``zs``), else ``wecom`` (WeCom's adapters, local mode, the
  ledger and the archive speak WeCom userids), and the roster's DingTalk and Feishu accounts that
  0007 kept on ``persons.dingtalk_id`` / ``feishu_id``. A roster person whose id *is* its DingTalk
  or Feishu id (no WeCom account in the roster) gets no WeCom account. Where two persons claimed
  the same account, the first (own accounts before roster columns, then by person id) keeps it.
* ``persons.dingtalk_id`` and ``feishu_id`` are dropped: accounts live in one place, so nothing
  keeps two copies equal. The downgrade puts them back from the accounts.
* Ledger groups on DingTalk or Feishu named their members and owner by that platform's account
  (the roster's id of the person); they now name the person, as every other group does.
* Person ids, messages and audit records are not rewritten: the chain still verifies.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

UNSCOPED_PLATFORMS = ("wecom", "aibot", "ledger", "local", "archive")  # storage.repo.UNSCOPED_PLATFORMS
ROSTER_COLUMNS = (("dingtalk", "dingtalk_id"), ("feishu", "feishu_id"))


def _own_account(person_id: str) -> tuple[str, str]:
    """storage.identity.natural_account."""
    prefix, sep, rest = person_id.partition(":")
    if sep and rest and prefix not in UNSCOPED_PLATFORMS:
        return prefix, rest
    return "wecom", person_id


def upgrade() -> None:
    bind = op.get_bind()
    rows = _accounts(bind.execute(sa.text(
        "SELECT id, created_at, dingtalk_id, feishu_id FROM persons ORDER BY id")).all())
    # Columns first: on SQLite dropping them rebuilds ``persons``, which must not have a table
    # pointing at it yet (with foreign keys on, dropping the old table would cascade to it).
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_column('feishu_id')
        batch_op.drop_column('dingtalk_id')
    op.create_table(
        'person_accounts',
        sa.Column('account_id', sa.String(length=64), nullable=False),
        sa.Column('platform', sa.String(length=16), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=False),
        sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['person_id'], ['persons.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'platform'),  # a batch looks senders up by account id
        sa.UniqueConstraint('person_id', 'platform', name='uq_person_accounts_person_platform'),
    )
    with op.batch_alter_table('person_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_accounts_person_id'), ['person_id'], unique=False)
    if rows:
        bind.execute(sa.text("INSERT INTO person_accounts (platform, account_id, person_id, linked_at) "
                             "VALUES (:platform, :account_id, :person_id, :at)"), rows)
    _ledger_members_are_persons(bind)


def _accounts(persons) -> list[dict]:
    taken: set[tuple[str, str]] = set()
    has: set[tuple[str, str]] = set()  # (person, platform)
    rows = []

    def add(platform, account_id, person_id, at):
        if (platform, account_id) in taken or (person_id, platform) in has or len(account_id) > 64:
            return
        taken.add((platform, account_id))
        has.add((person_id, platform))
        rows.append({"platform": platform, "account_id": account_id, "person_id": person_id, "at": at})

    for pid, at, ding, feishu in persons:
        if pid not in (ding, feishu):
            add(*_own_account(pid), pid, at)
    for pid, at, *accounts in persons:
        for (platform, _), account in zip(ROSTER_COLUMNS, accounts):
            if account:
                add(platform, account, pid, at)
    return rows


def _ledger_members_are_persons(bind) -> None:
    moves = [{"platform": platform, "acc": acc, "pid": pid} for platform, acc, pid in bind.execute(sa.text(
        "SELECT a.platform, a.account_id, a.person_id FROM person_accounts a "
        "WHERE a.platform IN ('dingtalk', 'feishu') AND a.account_id <> a.person_id "
        "AND NOT EXISTS (SELECT 1 FROM persons p WHERE p.id = a.account_id)")).all()]
    if not moves:
        return
    in_groups = "group_id IN (SELECT id FROM groups WHERE platform = :platform)"
    bind.execute(sa.text(
        "INSERT INTO memberships (group_id, person_id, joined_at) SELECT m.group_id, CAST(:pid AS VARCHAR(64)), "
        "m.joined_at "
        f"FROM memberships m WHERE m.person_id = :acc AND m.{in_groups} AND NOT EXISTS "
        "(SELECT 1 FROM memberships x WHERE x.group_id = m.group_id AND x.person_id = CAST(:pid AS VARCHAR(64)))"), moves)
    bind.execute(sa.text(f"DELETE FROM memberships WHERE person_id = :acc AND {in_groups}"), moves)
    bind.execute(sa.text("UPDATE groups SET owner_id = :pid WHERE owner_id = :acc AND platform = :platform"), moves)


def downgrade() -> None:
    bind = op.get_bind()
    accounts = bind.execute(sa.text("SELECT person_id, platform, account_id FROM person_accounts "
                                    "WHERE platform IN ('dingtalk', 'feishu')")).all()
    with op.batch_alter_table('person_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_accounts_person_id'))
    op.drop_table('person_accounts')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dingtalk_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('feishu_id', sa.String(length=64), nullable=True))
    for platform, col in ROSTER_COLUMNS:
        values = [{"pid": pid, "acc": acc} for pid, p, acc in accounts if p == platform]
        if values:
            bind.execute(sa.text(f"UPDATE persons SET {col} = :acc WHERE id = :pid"), values)
