"""Who a person is across platforms: one ``persons`` row, one ``person_accounts`` row per platform.

A person's id is what it always was: the WeCom userid for WeCom's adapters (the self-built app and
the AI bot share it: account platform ``wecom``), ``<platform>:<id>`` for a bridge platform's user
(``wechat:zhangsan``), and for a roster row without a WeCom account ``dingtalk:<userid>`` or
``feishu:<open_id>``. That id is the person's *natural* account. Other accounts are *linked* to the
person (``link``, from the roster): an event from a linked account is attributed to its person
(``resolve_senders``), so roles, ownership and figures apply once per person.

Linking never lets a stranger take someone's identity: an account that belongs to another person
stays theirs (``IdentityConflict``). The one exception is an account's own unclaimed person (the row
its events created, with no role, no roster name and no other account): linking the account to the
roster's person moves it there, memberships included, and that person's past records stay as they
were written (audit records are never rewritten).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from governance.events import Event
from governance import labels
from storage import audit, repo
from storage.models import Membership, Person, PersonAccount

WECOM = "wecom"
# Routing preference (route_for_person): the self-built app can message any person at any time; the
# AI bot shares WeCom's userids but reaches a person only where WeCom lets it (its callbacks and
# chats); a bridge is a process outside WeCom's guarantees, so it comes last.
# Local mode (trying the product by hand) reaches everyone, last.
ROUTE_PREFERENCE = ("wecom", "aibot", "bridge", "local")
# Account platforms with their own adapter, never reached through the bridge (Feishu and DingTalk
# get theirs in a later issue).
NATIVE_PLATFORMS = ("wecom", "dingtalk", "feishu")


class IdentityConflict(ValueError):
    """A link that would take an account from its person, or give a person a second account on one
    platform; the message is Chinese, for the administrator."""


def account_platform(platform: str) -> str:
    """The account platform of an event's platform: WeCom's adapters, local mode, the ledger and the
    message archive speak WeCom userids (``repo.UNSCOPED_PLATFORMS``); a bridge platform is its own."""
    return WECOM if platform in repo.UNSCOPED_PLATFORMS else platform


def natural_id(platform: str, account_id: str) -> str:
    """The person id an account's events carry when it is linked to nobody (``repo.scoped_id``)."""
    return account_id if platform == WECOM else repo.scoped_id(platform, account_id)


def natural_account(person_id: str) -> tuple[str, str]:
    """``natural_id`` undone: the account a person id names (``wechat:zs`` → (wechat, zs))."""
    prefix, sep, rest = person_id.partition(":")
    if sep and rest and prefix not in repo.UNSCOPED_PLATFORMS:
        return prefix, rest
    return WECOM, person_id


def _label(platform: str) -> str:
    return labels.label("platform", platform)


def _who(session: Session, person_id: str) -> str:
    name = repo.display_name(session, person_id)
    return name if name == person_id else f"{name}（{person_id}）"


def unclaimed(session: Session, person_id: str, platform: str, account_id: str) -> bool:
    """Is ``person_id`` the account's own person that nobody vouched for (no role, no roster entry,
    no other account)? Its account may then be linked to the roster's person."""
    if person_id != natural_id(platform, account_id):
        return False
    p = session.get(Person, person_id)
    if p is not None and (p.role != "cadre" or p.name is not None or p.title is not None or p.unit is not None):
        return False
    others = session.execute(select(func.count()).select_from(PersonAccount).where(
        PersonAccount.person_id == person_id,
        (PersonAccount.platform != platform) | (PersonAccount.account_id != account_id))).scalar_one()
    return others == 0


@dataclass(frozen=True)
class LinkPlan:
    """What ``link`` would do: nothing (``done``), or link, moving the account from its unclaimed
    person (``moved_from``) and replacing the person's earlier account on the platform (``replaces``)."""

    done: bool
    moved_from: str | None = None
    replaces: str | None = None


def check_link(session: Session, person_id: str, platform: str, account_id: str) -> LinkPlan:
    """What linking the account to the person would do; ``IdentityConflict`` when it is refused: the
    account is another person's, or the person's own account on the platform (its id) would be
    replaced. Reads only."""
    label = _label(platform)
    row = session.get(PersonAccount, {"platform": platform, "account_id": account_id})
    owner = row.person_id if row is not None else None
    if owner == person_id:
        return LinkPlan(True)
    if owner is None:
        natural = natural_id(platform, account_id)
        if natural != person_id and session.get(Person, natural) is not None:
            owner = natural  # its events are that person's, though no account row says so yet
    if owner is not None and not unclaimed(session, owner, platform, account_id):
        raise IdentityConflict(f"{label}账号“{account_id}”已属于{_who(session, owner)}，不能再关联给{_who(session, person_id)}")
    mine = session.execute(select(PersonAccount.account_id).where(
        PersonAccount.person_id == person_id, PersonAccount.platform == platform)).scalar()
    if mine is None and natural_account(person_id)[0] == platform:
        mine = natural_account(person_id)[1]
    if mine == account_id:
        mine = None
    if mine is not None and natural_id(platform, mine) == person_id:
        raise IdentityConflict(f"{_who(session, person_id)}的{label}账号就是“{mine}”，不能改为“{account_id}”"
                               "（一个人在一个平台只有一个账号）")
    return LinkPlan(False, owner, mine)


def link(session: Session, person_id: str, platform: str, account_id: str, *, at: datetime, actor: str) -> bool:
    """Link ``platform``'s ``account_id`` to the person ``person_id`` (which must exist), audited;
    False when it already was. Refuses (``IdentityConflict``, nothing changed) an account that is
    another person's; an account linked to the person earlier on that platform is replaced (the
    roster corrected it), never the account the person's id is."""
    if session.get(Person, person_id) is None:
        raise IdentityConflict(f"没有这个人：{person_id}")
    plan = check_link(session, person_id, platform, account_id)
    if plan.done:
        return False
    session.execute(delete(PersonAccount).where(
        ((PersonAccount.platform == platform) & (PersonAccount.account_id == account_id))
        | ((PersonAccount.person_id == person_id) & (PersonAccount.platform == platform))))
    session.add(PersonAccount(platform=platform, account_id=account_id, person_id=person_id, linked_at=at))
    session.flush()
    if plan.moved_from is not None:
        _move_memberships(session, plan.moved_from, person_id)
    audit.record(session, actor=actor, action="link_account", at=at,
                 reason=f"{_label(platform)}账号“{account_id}”关联到{_who(session, person_id)}",
                 data={"person_id": person_id, "platform": platform, "account_id": account_id,
                       "from": plan.moved_from, "replaces": plan.replaces})
    return True


def _move_memberships(session: Session, old: str, new: str) -> None:
    """The groups the account's own person was in are the linked person's now (their past messages
    stay under the old id, as written)."""
    rows = session.execute(select(Membership.group_id, Membership.joined_at).where(Membership.person_id == old)).all()
    if not rows:
        return
    for gid, joined in rows:
        repo.insert_ignore(session, Membership, [{"group_id": gid, "person_id": new, "joined_at": joined}],
                           ["group_id", "person_id"])
    session.execute(delete(Membership).where(Membership.person_id == old))
    for gid, _ in rows:
        repo.refresh_member_count(session, gid)


def accounts_for(session: Session, person_id: str) -> dict[str, str]:
    """The person's accounts, platform → account id; a person no account row names yet (stored by a
    path that records none) has its natural one."""
    got = dict(session.execute(select(PersonAccount.platform, PersonAccount.account_id)
                               .where(PersonAccount.person_id == person_id)).all())
    if not got and session.get(Person, person_id) is not None:
        got = dict([natural_account(person_id)])
    return got


def person_for(session: Session, platform: str, account_id: str) -> str | None:
    """Whose account this is: the linked person, else the account's natural person if it exists."""
    pid = session.execute(select(PersonAccount.person_id).where(
        PersonAccount.platform == platform, PersonAccount.account_id == account_id)).scalar()
    if pid is not None:
        return pid
    natural = natural_id(platform, account_id)
    return natural if session.get(Person, natural) is not None else None


def account_ids(session: Session, person_ids, platform: str) -> dict[str, str]:
    """Each person's own id on ``platform`` (an account platform: ``wecom``, ``wechat`` …), for
    whatever hands person ids to that platform (a WeCom group's members to remove or add back): one
    query. A person without an account there is left out; one no account row names yet has its
    natural account."""
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    rows = session.execute(select(PersonAccount.person_id, PersonAccount.platform, PersonAccount.account_id)
                           .where(PersonAccount.person_id.in_(ids))).all()
    out = {pid: a for pid, p, a in rows if p == platform}
    with_rows = {pid for pid, _, _ in rows}
    bare = [pid for pid in ids if pid not in with_rows]
    if bare:
        for pid in session.execute(select(Person.id).where(Person.id.in_(bare))).scalars():
            p, a = natural_account(pid)
            if p == platform:
                out[pid] = a
    return out


def route_for_person(session: Session, person_id: str, available_platforms) -> tuple[str, str] | None:
    """Where a message to the person goes: (platform, recipient) on the first platform of
    ``ROUTE_PREFERENCE`` that is configured (``available_platforms``, registry names: ``wecom``,
    ``aibot``, ``bridge``, ``local``) and on which the person has an account; None when there is
    none (undeliverable: say so, never drop it silently). ``wecom`` and ``aibot`` both take the
    person's WeCom userid; ``bridge`` takes their account on a bridge platform as stored ids are
    (``wechat:zs``: ``repo.raw_id`` gives the bridge its own id back, as for groups); ``local``
    takes the person id."""
    accounts = accounts_for(session, person_id)
    available = set(available_platforms)
    for platform in ROUTE_PREFERENCE:
        if platform not in available:
            continue
        if platform in ("wecom", "aibot"):
            if WECOM in accounts:
                return platform, accounts[WECOM]
        elif platform == "bridge":
            bridged = sorted(p for p in accounts if p not in NATIVE_PLATFORMS)
            if bridged:
                return platform, natural_id(bridged[0], accounts[bridged[0]])
        elif accounts:
            return platform, person_id
    return None


# --- the ingest batch -------------------------------------------------------------------------------------
@dataclass
class Resolved:
    """``resolve_batch``'s answer: the events with linked senders replaced, and the account rows of
    senders no account row names yet (``record_accounts`` stores them once their persons exist)."""

    events: list[Event]
    unrecorded: list[dict] = field(default_factory=list)


def _select_accounts(conn_or_session, keys: list[str]) -> list[tuple]:
    """``SELECT platform, account_id, person_id`` of the accounts whose id is one of ``keys``: one
    statement on a Session (either database) or on an autocommit psycopg connection."""
    if isinstance(conn_or_session, Session):
        if conn_or_session.get_bind().dialect.name == "postgresql":
            return repo.driver_execute(conn_or_session, _PG_SELECT, (keys,))
        return repo.driver_execute(conn_or_session, _SQLITE_SELECT, (repo.pg_json(keys),))
    with conn_or_session.cursor() as cur:
        cur.execute(_PG_SELECT, (keys,))
        return cur.fetchall()


_PG_SELECT = "SELECT platform, account_id, person_id FROM person_accounts WHERE account_id = ANY(%s::text[])"
_SQLITE_SELECT = ("SELECT platform, account_id, person_id FROM person_accounts "
                  "WHERE account_id IN (SELECT value FROM json_each(?))")


def resolve_batch(conn_or_session, events: list[Event]) -> Resolved:
    """One SELECT for the whole batch: each event's sender (and the members it names) as the person
    their account is linked to; plus the natural accounts of senders that have no account row."""
    if not events:
        return Resolved([])
    carried: dict[tuple[str, str], Event | None] = {}  # (event platform, id it carries) -> first event sending
    for e in events:
        if (e.platform, e.sender_id) not in carried:
            carried[(e.platform, e.sender_id)] = e
        for m in e.member_ids:
            carried.setdefault((e.platform, m), None)
    keys: dict[tuple[str, str], str] = {}  # (account platform, account id) -> the id the event carries
    senders: dict[tuple[str, str], Event] = {}  # the first event of each sending account
    for (platform, pid), first in carried.items():
        key = (account_platform(platform), repo.raw_id(platform, pid))
        keys[key] = pid
        if first is not None and key not in senders:
            senders[key] = first
    rows = _select_accounts(conn_or_session, sorted({a for _, a in keys}))
    to: dict[str, str] = {}  # carried id -> linked person
    for platform, account_id, person_id in rows:
        carried = keys.get((platform, account_id))
        if carried is None:
            continue
        senders.pop((platform, account_id), None)
        if person_id != carried:
            to[carried] = person_id
    unrecorded = [{"platform": p, "account_id": a, "person_id": e.sender_id, "linked_at": e.at}
                  for (p, a), e in senders.items()]
    if not to:
        return Resolved(events, unrecorded)
    out = []
    for e in events:
        sender = to.get(e.sender_id, e.sender_id)
        members = tuple(to.get(m, m) for m in e.member_ids)
        out.append(e if sender == e.sender_id and members == e.member_ids
                   else replace(e, sender_id=sender, member_ids=members))
    return Resolved(out, unrecorded)


def resolve_senders(conn_or_session, events: list[Event]) -> list[Event]:
    """The events with ``sender_id`` (and ``member_ids``) replaced by the person their account is
    linked to, where that is another person; one SELECT per batch (``resolve_batch``)."""
    return resolve_batch(conn_or_session, events).events


_PG_RECORD = (
    "INSERT INTO person_accounts (platform, account_id, person_id, linked_at) "
    "SELECT x.platform, x.account_id, x.person_id, x.linked_at "
    "FROM json_to_recordset(%s::json) AS x(platform text, account_id text, person_id text, linked_at timestamptz) "
    "WHERE EXISTS (SELECT 1 FROM persons p WHERE p.id = x.person_id) "
    "AND NOT EXISTS (SELECT 1 FROM person_accounts a WHERE a.person_id = x.person_id) "
    "ON CONFLICT DO NOTHING")
_SQLITE_RECORD = (
    "INSERT INTO person_accounts (platform, account_id, person_id, linked_at) "
    "SELECT json_extract(value, '$.platform'), json_extract(value, '$.account_id'), "
    "json_extract(value, '$.person_id'), json_extract(value, '$.linked_at') FROM json_each(?) "
    "WHERE EXISTS (SELECT 1 FROM persons p WHERE p.id = json_extract(value, '$.person_id')) "
    "AND NOT EXISTS (SELECT 1 FROM person_accounts a WHERE a.person_id = json_extract(value, '$.person_id')) "
    "ON CONFLICT DO NOTHING")


def record_accounts(conn_or_session, rows: list[dict]) -> None:
    """Store ``Resolved.unrecorded`` once the batch's persons are stored (same transaction where
    there is one): each person that exists and has no account yet gets its natural account; one
    statement, none for an empty list. A person that already has accounts (from the roster) gets
    none implicitly: a WeCom userid equal to someone's DingTalk id never joins that person."""
    if not rows:
        return
    if isinstance(conn_or_session, Session) and conn_or_session.get_bind().dialect.name != "postgresql":
        sqlite_rows = [{**r, "linked_at": repo._utc_sqlite(r["linked_at"])} for r in rows]
        repo.driver_execute(conn_or_session, _SQLITE_RECORD, (repo.pg_json(sqlite_rows),))
        return
    if isinstance(conn_or_session, Session):
        repo.driver_execute(conn_or_session, _PG_RECORD, (repo.pg_json(rows),))
        return
    with conn_or_session.cursor() as cur:
        cur.execute(_PG_RECORD, (repo.pg_json(rows),))
