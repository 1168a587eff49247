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

import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event as sa_event, func, select
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


CHUNK = 10_000  # values per IN list (SQLite allows 32766 bound parameters)


def _chunks(values: list) -> list[list]:
    return [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]


class Directory:
    """The accounts and persons ``check_link`` reads, loaded at once (a few queries for a whole
    roster): the given accounts' rows, the persons they name or would name, and those persons'
    accounts. ``note`` keeps it current as links are made."""

    def __init__(self, session: Session, accounts, person_ids=()):
        keys = set(accounts)
        self.owner: dict[tuple[str, str], str] = {}
        for chunk in _chunks(sorted({a for _, a in keys})):
            for platform, a, pid in session.execute(select(
                    PersonAccount.platform, PersonAccount.account_id, PersonAccount.person_id)
                    .where(PersonAccount.account_id.in_(chunk))):
                if (platform, a) in keys:
                    self.owner[(platform, a)] = pid
        pids = sorted({natural_id(*k) for k in keys} | set(self.owner.values()) | set(person_ids))
        self.persons: dict[str, Any] = {}  # id -> (id, name, unit, title, role), by attribute
        self.of: dict[str, dict[str, str]] = {}  # person -> platform -> account
        for chunk in _chunks(pids):
            self.persons.update((p.id, p) for p in session.execute(
                select(Person.id, Person.name, Person.unit, Person.title, Person.role).where(Person.id.in_(chunk))))
            for pid, platform, a in session.execute(select(
                    PersonAccount.person_id, PersonAccount.platform, PersonAccount.account_id)
                    .where(PersonAccount.person_id.in_(chunk))):
                self.of.setdefault(pid, {})[platform] = a

    def who(self, person_id: str) -> str:
        p = self.persons.get(person_id)
        return f"{p.name}（{person_id}）" if p is not None and p.name else person_id

    def person_for(self, platform: str, account_id: str) -> str | None:
        """Whose account this is: the linked person, else the account's natural person if it exists."""
        pid = self.owner.get((platform, account_id))
        if pid is not None:
            return pid
        natural = natural_id(platform, account_id)
        return natural if natural in self.persons else None

    def unclaimed(self, person_id: str, platform: str, account_id: str) -> bool:
        """Is ``person_id`` the account's own person that nobody vouched for (no role, no roster
        entry, no other account)? Its account may then be linked to the roster's person."""
        if person_id != natural_id(platform, account_id):
            return False
        p = self.persons.get(person_id)
        if p is not None and (p.role != "cadre" or p.name is not None or p.title is not None or p.unit is not None):
            return False
        return not any((pl, a) != (platform, account_id) for pl, a in self.of.get(person_id, {}).items())

    def check_link(self, person_id: str, platform: str, account_id: str) -> LinkPlan:
        """What linking the account to the person would do; ``IdentityConflict`` when it is refused:
        the account is another person's, or the person's own account on the platform (its id) would
        be replaced."""
        label = _label(platform)
        owner = self.owner.get((platform, account_id))
        if owner == person_id:
            return LinkPlan(True)
        if owner is None:
            natural = natural_id(platform, account_id)
            if natural != person_id and natural in self.persons:
                owner = natural  # its events are that person's, though no account row says so yet
        if owner is not None and not self.unclaimed(owner, platform, account_id):
            raise IdentityConflict(f"{label}账号“{account_id}”已属于{self.who(owner)}，不能再关联给{self.who(person_id)}")
        mine = self.of.get(person_id, {}).get(platform)
        if mine is None and natural_account(person_id)[0] == platform:
            mine = natural_account(person_id)[1]
        if mine == account_id:
            mine = None
        if mine is not None and natural_id(platform, mine) == person_id:
            raise IdentityConflict(f"{self.who(person_id)}的{label}账号就是“{mine}”，不能改为“{account_id}”"
                                   "（一个人在一个平台只有一个账号）")
        return LinkPlan(False, owner, mine)

    def note(self, person_id: str, platform: str, account_id: str) -> None:
        """A link was made."""
        old = self.of.get(person_id, {}).get(platform)
        if old is not None:
            self.owner.pop((platform, old), None)
        prev = self.owner.get((platform, account_id))
        if prev is not None:
            self.of.get(prev, {}).pop(platform, None)
        self.owner[(platform, account_id)] = person_id
        self.of.setdefault(person_id, {})[platform] = account_id


@dataclass(frozen=True)
class LinkPlan:
    """What ``link`` would do: nothing (``done``), or link, moving the account from its unclaimed
    person (``moved_from``) and replacing the person's earlier account on the platform (``replaces``)."""

    done: bool
    moved_from: str | None = None
    replaces: str | None = None

    @property
    def plain(self) -> bool:
        """A new account joining its person, nothing taken from anyone, nothing replaced."""
        return not self.done and self.moved_from is None and self.replaces is None


def link(session: Session, person_id: str, platform: str, account_id: str, *, at: datetime, actor: str,
         directory: Directory | None = None) -> bool:
    """Link ``platform``'s ``account_id`` to the person ``person_id`` (which must exist), audited;
    False when it already was. Refuses (``IdentityConflict``, nothing changed) an account that is
    another person's; an account linked to the person earlier on that platform is replaced (the
    roster corrected it), never the account the person's id is. ``directory``: one already loaded
    for these accounts (the roster import's)."""
    forget_natural()  # this process sees the link at once
    d = directory or Directory(session, [(platform, account_id)], [person_id])
    if person_id not in d.persons:
        raise IdentityConflict(f"没有这个人：{person_id}")
    plan = d.check_link(person_id, platform, account_id)
    if plan.done:
        return False
    session.execute(delete(PersonAccount).where(
        ((PersonAccount.platform == platform) & (PersonAccount.account_id == account_id))
        | ((PersonAccount.person_id == person_id) & (PersonAccount.platform == platform))))
    session.add(PersonAccount(platform=platform, account_id=account_id, person_id=person_id, linked_at=at))
    session.flush()
    d.note(person_id, platform, account_id)
    if plan.moved_from is not None:
        _move_memberships(session, plan.moved_from, person_id)
    audit.record(session, actor=actor, action="link_account", at=at,
                 reason=f"{_label(platform)}账号“{account_id}”关联到{d.who(person_id)}",
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


def _accounts_of(session: Session, person_ids) -> dict[str, dict[str, str]]:
    """person -> platform -> account id, for those of ``person_ids`` that exist; a person no account
    row names yet (stored by a path that records none) has its natural account."""
    ids = sorted(set(person_ids))
    out: dict[str, dict[str, str]] = {}
    for chunk in _chunks(ids):
        for pid, platform, acc in session.execute(select(
                PersonAccount.person_id, PersonAccount.platform, PersonAccount.account_id)
                .where(PersonAccount.person_id.in_(chunk))):
            out.setdefault(pid, {})[platform] = acc
    for chunk in _chunks([pid for pid in ids if pid not in out]):
        for pid in session.execute(select(Person.id).where(Person.id.in_(chunk))).scalars():
            out[pid] = dict([natural_account(pid)])
    return out


def accounts_for(session: Session, person_id: str) -> dict[str, str]:
    """The person's accounts, platform → account id (its natural one if no account row names it yet)."""
    return _accounts_of(session, [person_id]).get(person_id, {})


def person_for(session: Session, platform: str, account_id: str) -> str | None:
    """Whose account this is: the linked person, else the account's natural person if it exists."""
    return Directory(session, [(platform, account_id)]).person_for(platform, account_id)


def account_ids(session: Session, person_ids, platform: str) -> dict[str, str]:
    """Each person's own id on ``platform`` (an account platform: ``wecom``, ``wechat`` …), for
    whatever hands person ids to that platform (a WeCom group's members to remove or add back); a
    person without an account there is left out."""
    return {pid: acc[platform] for pid, acc in _accounts_of(session, person_ids).items() if platform in acc}


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


# What this process knows, so that an ingest batch needs no statement of its own: the links (every
# account whose person is not its natural one: usually few, read again every LINKS_TTL seconds, and
# at once after a link made here) and the accounts it has recorded. A link made by another process
# (a roster import) is seen within LINKS_TTL.
LINKS_TTL = 60.0
_cache: dict = {"links": {}, "at": None, "recorded": set()}
_RECORDED_MAX = 500_000
_SELECT_LINKS = ("SELECT platform, account_id, person_id FROM person_accounts WHERE person_id <> "
                 "CASE WHEN platform = 'wecom' THEN account_id ELSE platform || ':' || account_id END")


def forget_natural() -> None:
    """Drop what this process knows (after a link made here, a roster import, a wiped database)."""
    _cache.update(links={}, at=None, recorded=set())


def _links(conn_or_session) -> dict[tuple[str, str], str]:
    now = time.monotonic()
    if _cache["at"] is None or now - _cache["at"] >= LINKS_TTL:
        if isinstance(conn_or_session, Session):
            rows = repo.driver_execute(conn_or_session, _SELECT_LINKS)
        else:
            with conn_or_session.cursor() as cur:
                cur.execute(_SELECT_LINKS)
                rows = cur.fetchall()
        _cache.update(links={(p, a): person for p, a, person in rows}, at=now)
    return _cache["links"]


def resolve_batch(conn_or_session, events: list[Event]) -> Resolved:
    """Each event's sender (and the members it names) as the person their account is linked to,
    from the links this process knows (``_links``: no statement per batch); plus the natural
    accounts of senders this process has not recorded yet (``record_accounts`` stores them)."""
    if not events:
        return Resolved([])
    links = _links(conn_or_session)
    recorded = _cache["recorded"]
    carried: dict[tuple[str, str], Event | None] = {}  # (event platform, id it carries) -> first event sending
    for e in events:
        if carried.get((e.platform, e.sender_id)) is None:  # named as a member earlier: now a sender
            carried[(e.platform, e.sender_id)] = e
        for m in e.member_ids:
            carried.setdefault((e.platform, m), None)
    to: dict[str, str] = {}  # carried id -> linked person
    senders: dict[tuple[str, str], Event] = {}  # the first event of each sending account not recorded
    for (platform, pid), first in carried.items():
        key = (account_platform(platform), repo.raw_id(platform, pid))
        person = links.get(key)
        if person is not None and person != pid:
            to[pid] = person
        elif first is not None and key not in recorded and key not in senders:
            senders[key] = first
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
    none implicitly: a WeCom userid equal to someone's DingTalk id never joins that person. A person
    gets one natural account from a batch, its first, as event by event (the statement sees none
    of its own inserts)."""
    seen: set[str] = set()
    rows = [r for r in rows if not (r["person_id"] in seen or seen.add(r["person_id"]))]
    if not rows:
        return
    keys = [(r["platform"], r["account_id"]) for r in rows]

    def remember(*_) -> None:  # stored (or already there) once committed: this process asks no more
        if len(_cache["recorded"]) < _RECORDED_MAX:
            _cache["recorded"].update(keys)

    if isinstance(conn_or_session, Session):
        if conn_or_session.get_bind().dialect.name != "postgresql":
            sqlite_rows = [{**r, "linked_at": repo.utc_sqlite(r["linked_at"])} for r in rows]
            repo.driver_execute(conn_or_session, _SQLITE_RECORD, (repo.pg_json(sqlite_rows),))
        else:
            repo.driver_execute(conn_or_session, _PG_RECORD, (repo.pg_json(rows),))
        sa_event.listen(conn_or_session, "after_commit", remember, once=True)
        return
    with conn_or_session.cursor() as cur:  # the autocommit connection: committed when it returns
        cur.execute(_PG_RECORD, (repo.pg_json(rows),))
    remember()
