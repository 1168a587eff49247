"""Loading what the rules look at: every group's :class:`GroupFacts`, in bulk, and the parameters.

A province has hundreds of thousands of groups and millions of memberships. :func:`load_facts`
streams the memberships once; an applied sweep passes the :class:`Facts` it loaded down to the
plan, the steps and its closing refresh instead of reading them again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from governance.lifecycle import LIVE
from governance.model import GroupFacts, Params
from storage.models import Group, Membership

DISSOLVING = "dissolving"
RESTORING = "restoring"


# --- parameters, time ------------------------------------------------------------------------
def params_from(settings) -> Params:
    return Params(
        zombie_days=settings.zombie_days, duplicate_jaccard=settings.duplicate_jaccard,
        overlap_containment=settings.overlap_containment, max_groups_per_person=settings.max_groups_per_person,
        unregistered_grace_days=settings.unregistered_grace_days, grace_days=settings.grace_days,
        restore_days=settings.restore_days, keep_days=settings.keep_days,
        counts_idle_messages=settings.counts_idle_messages,
    )


def as_of(day: date, settings) -> datetime:
    """``--as-of 2026-11-22``: the END of that day in the configured time zone (as UTC), so
    everything due on that day is handled."""
    local = datetime.combine(day, time.max, tzinfo=settings.tz)
    return local.astimezone(timezone.utc)


def today(now: datetime, settings) -> date:
    return now.astimezone(settings.tz).date()


# --- facts -----------------------------------------------------------------------------------
def group_facts(g, members: frozenset[str]) -> GroupFacts:
    """The facts of one group row (an ORM ``Group`` or a plain row with the same columns)."""
    return GroupFacts(
        id=g.id, name=g.name, platform=g.platform, owner_id=g.owner_id, unit=g.unit, category=g.category,
        purpose=g.purpose, protected=bool(g.protected), registered=g.registered_at is not None,
        temporary=bool(g.temporary), created_at=g.created_at, expires_at=g.expires_at, done_at=g.done_at,
        status=g.status, last_work_at=g.last_work_at, last_message_at=g.last_message_at,
        message_count=g.message_count or 0, ritual_count=g.ritual_count or 0, member_ids=members,
        kept_until=g.kept_until, dissolved_at=g.dissolved_at, first_seen_at=g.first_seen_at,
        observed_since=g.observed_since, members_known=_members_known(g, members),
        activity_source=getattr(g, "activity_source", None),
    )


#: sources whose groups the bot has seen through an adapter (their members show up in the events)
_OBSERVED_SOURCES = ("activity", "bridge")


def _members_known(g, members: frozenset[str]) -> bool:
    """A group registered in a private chat (or a ledger row without members) has no membership
    source until an adapter or an archive covering it shows one."""
    return bool(members) or g.source in _OBSERVED_SOURCES


_FACT_COLUMNS = ("id", "name", "platform", "owner_id", "unit", "category", "purpose", "protected", "registered_at",
                 "temporary", "created_at", "expires_at", "done_at", "status", "last_work_at", "last_message_at",
                 "message_count", "ritual_count", "kept_until", "dissolved_at", "first_seen_at", "dissolve_state",
                 "observed_since", "source", "warning_sent_at", "activity_source")


@dataclass
class Facts:
    """What one load saw: the live groups, the recently dissolved ones, and the member set of
    every group it read (``loaded``: their ids, with or without members)."""

    live: list[GroupFacts]
    gone: list[GroupFacts]
    members: dict[str, frozenset[str]]
    loaded: frozenset[str]
    warning_sent_at: dict[str, datetime]  # of the warned groups (when their warning was delivered)
    sources: dict[str, str | None]  # how the bot learnt of each group (the capabilities depend on it)
    interned: dict[str, str]  # one string per person id, shared by every member set


def _stream_memberships(session: Session, batch: int = 50_000):
    """(group_id, person_id) of every membership, ordered by group, as plain tuples."""
    dbapi_conn = session.connection().connection.dbapi_connection
    sql = f"SELECT group_id, person_id FROM {Membership.__table__.name} ORDER BY group_id"
    named = session.get_bind().dialect.name == "postgresql"
    cursor = dbapi_conn.cursor(name="qunzhi_memberships") if named else dbapi_conn.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()


def _facts_condition(now: datetime, params: Params):
    """Live groups, and dissolved ones recent enough for the rebound and restore rules."""
    since = now - timedelta(days=max(params.rebound_days, params.restore_days))
    return or_(Group.status.in_(LIVE),
               and_(Group.status.in_(("dissolved", "merged", "purged")), Group.dissolved_at >= since),
               Group.status == "dissolved")


def _read_members(session: Session, wanted: set[str], interned: dict[str, str]) -> dict[str, frozenset[str]]:
    """The member sets of ``wanted``: one streamed pass over every membership. Plain driver tuples
    through a server-side cursor where there is one (building 8 million SQLAlchemy rows costs
    several times the fetch itself); memberships of groups not wanted (purged long ago) are
    skipped here rather than by a join."""
    members: dict[str, frozenset[str]] = {}
    current, bucket, keep = None, [], False
    for gid, pid in _stream_memberships(session):
        if gid != current:
            if keep:
                members[current] = frozenset(bucket)
            current, bucket, keep = gid, [], gid in wanted
        if keep:
            bucket.append(interned.setdefault(pid, pid))
    if keep:
        members[current] = frozenset(bucket)
    return members


def _members_of(session: Session, ids: list[str], interned: dict[str, str]) -> dict[str, frozenset[str]]:
    """The member sets of a few groups, by a targeted query."""
    found: dict[str, list[str]] = {}
    for i in range(0, len(ids), 500):
        for gid, pid in session.execute(select(Membership.group_id, Membership.person_id)
                                        .where(Membership.group_id.in_(ids[i:i + 500]))):
            found.setdefault(gid, []).append(interned.setdefault(pid, pid))
    return {gid: frozenset(pids) for gid, pids in found.items()}


def with_counts(session: Session, live: list[GroupFacts], now: datetime, params: Params) -> list[GroupFacts]:
    """Groups whose activity source is ``counts`` get their daily counts within the zombie window and
    their platform's import coverage (``governance.rules_counts``); the others are unchanged."""
    from dataclasses import replace

    from storage import activity_counts

    counted = [g for g in live if g.activity_source == activity_counts.COUNTS]
    if not counted:
        return live
    since = (now - timedelta(days=params.zombie_days)).date()
    counts = activity_counts.window_counts(session, [g.id for g in counted], since)
    coverage = {p: activity_counts.counts_since(session, p) for p in {g.platform for g in counted}}
    done = {g.id: replace(g, daily_counts=counts.get(g.id, ()), counts_since=coverage[g.platform]) for g in counted}
    return [done.get(g.id, g) for g in live]


def load_facts(session: Session, now: datetime, settings, *, reuse: Facts | None = None) -> Facts:
    """The live and the recently dissolved groups as GroupFacts, loaded in bulk.

    Groups are read as plain rows (no ORM objects); memberships are streamed in id order and
    person ids interned, so each member set is built once, directly as a frozenset. The groups
    being dissolved or restored are read too (not scanned: an applied sweep finishes some of
    them, and its closing refresh needs their members).

    ``reuse``: the facts an earlier load of this sweep returned. The group rows are read again
    (the sweep changed them) but memberships are not streamed again: the sweep does not change
    them; only groups the earlier load had not seen have theirs read by id. A membership that
    changed in between shows at the next refresh (hourly)."""
    params = params_from(settings)
    cond = _facts_condition(now, params)
    cols = [Group.__table__.c[name] for name in _FACT_COLUMNS]
    rows = session.execute(select(*cols).where(cond).order_by(Group.id)).all()
    underway = set(session.execute(select(Group.id).where(Group.status.in_((DISSOLVING, RESTORING)))).scalars())
    wanted = {g.id for g in rows} | underway
    if reuse is None:
        interned: dict[str, str] = {}
        members = _read_members(session, wanted, interned)
    else:
        interned = reuse.interned
        members = {gid: m for gid, m in reuse.members.items() if gid in wanted}
        members.update(_members_of(session, sorted(wanted - reuse.loaded), interned))
    live, gone = [], []
    empty: frozenset[str] = frozenset()
    for g in rows:
        m = members.get(g.id, empty)
        if g.status in LIVE:
            live.append(group_facts(g, m))
        else:  # a dissolved appchat group keeps its former members in dissolve_state
            former = (g.dissolve_state or {}).get("members") or ()
            gone.append(group_facts(g, m | frozenset(interned.setdefault(p, p) for p in former) if former else m))
    live = with_counts(session, live, now, params)
    return Facts(live=live, gone=gone, members=members, loaded=frozenset(wanted),
                 warning_sent_at={g.id: g.warning_sent_at for g in rows if g.status == "warned"},
                 sources={g.id: g.source for g in rows}, interned=interned)
