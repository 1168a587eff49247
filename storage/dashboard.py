"""What the dashboard's pages (看板) and ``GET /api/groups`` read: one function per page part.

The web modules (``bot/dashboard/routes.py``, ``bot/api.py``) call these and render; they hold
no SQL of their own. Figures shared with the report and the CLI stay in ``storage.reports``.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from itertools import accumulate
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session

from governance import labels
from storage.feedback import FEW_VOTES, pulse_period, shown_votes
from storage.models import (AuditRecord, FindingRecord, FormalismReport, Group, Membership, Message, Person,
                            PulseResponse, StatSnapshot, UselessVote)
from storage.reports import LIVE, MIN_FEEDBACK, median

PAGE_ROWS = 500  # rows a ledger or findings page shows
AUDIT_ROWS = 200


def group(session: Session, group_id: str) -> Group | None:
    return session.get(Group, group_id)


def group_names(session: Session) -> dict[str, str]:
    """Every group's name, and a confirmed ledger entry's (its row was folded into its group, its
    history stays under its id: ``storage.reconcile.link``)."""
    from storage.reconcile import entry_names

    return {**entry_names(session), **dict(session.execute(select(Group.id, Group.name)).all())}


def person_names(session: Session) -> dict[str, str]:
    return dict(session.execute(select(Person.id, Person.name)).all())


# --- overview charts -------------------------------------------------------------------------------
def recent_snapshots(session: Session, days: int = 180) -> list[StatSnapshot]:
    """The daily figures of the last ``days`` snapshots, oldest first."""
    rows = session.execute(select(StatSnapshot).order_by(StatSnapshot.day.desc()).limit(days)).scalars().all()
    return rows[::-1]


def pulse_by_period(session: Session, last: int = 12) -> dict[str, dict[int, int]]:
    """Answers per value (1 轻, 2 适中, 3 重) for the ``last`` periods with at least MIN_FEEDBACK answers,
    oldest first; periods with fewer are left out (too few to stay anonymous)."""
    by_period: dict[str, dict[int, int]] = defaultdict(dict)
    for period, value, n in session.execute(select(PulseResponse.period, PulseResponse.value, func.count())
                                            .group_by(PulseResponse.period, PulseResponse.value)).all():
        by_period[period][value] = n
    shown = sorted(p for p, v in by_period.items() if sum(v.values()) >= MIN_FEEDBACK)[-last:]
    return {p: by_period[p] for p in shown}


# --- findings, ledger, audit -------------------------------------------------------------------------
def findings(session: Session, *, kind: str | None, status: str) -> list[FindingRecord]:
    """Findings of one kind (or all) with status "open", "resolved" or any other word for all."""
    q = select(FindingRecord).order_by(FindingRecord.kind, FindingRecord.score.desc(), FindingRecord.id)
    if kind:
        q = q.where(FindingRecord.kind == kind)
    if status in ("open", "resolved"):
        q = q.where(FindingRecord.status == status)
    return session.execute(q.limit(PAGE_ROWS)).scalars().all()


@dataclass
class LedgerPage:
    """One page of the ledger (台账) and what its filters offer."""

    total: int
    rows: list[Group]
    units: list[str]
    categories: list[str]
    owners: dict[str, str]


def ledger(session: Session, *, unit: str, status: str, category: str, q: str) -> LedgerPage:
    """Groups by unit and name; ``q`` matches part of a name, purpose or group id."""
    stmt = select(Group).order_by(Group.unit, Group.name, Group.id)
    if unit:
        stmt = stmt.where(Group.unit == unit)
    if status:
        stmt = stmt.where(Group.status == status)
    if category:
        stmt = stmt.where(Group.category == category)
    if q:
        like = f"%{q.strip()}%"
        stmt = stmt.where(or_(Group.name.like(like), Group.purpose.like(like), Group.id.like(like)))
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(stmt.limit(PAGE_ROWS)).scalars().all()
    units = [u for u in session.execute(select(Group.unit).distinct().order_by(Group.unit)).scalars() if u]
    cats = [c for c in session.execute(select(Group.category).distinct().order_by(Group.category)).scalars() if c]
    return LedgerPage(total, rows, units, cats, person_names(session))


def audit_records(session: Session, *, before: int | None) -> list[AuditRecord]:
    """The newest AUDIT_ROWS audit records, or those before record ``before``."""
    q = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(AUDIT_ROWS)
    if before:
        q = q.where(AuditRecord.id < before)
    return session.execute(q).scalars().all()


# --- feedback ---------------------------------------------------------------------------------------
def pulse_by_unit(session: Session) -> tuple[list[dict[str, Any]], int]:
    """Workload answers per unit, heaviest share first, for units with at least MIN_FEEDBACK answers;
    and how many units were left out for having fewer."""
    per_unit: dict[str, dict[int, int]] = defaultdict(dict)
    for unit, value, n in session.execute(select(PulseResponse.unit, PulseResponse.value, func.count())
                                          .group_by(PulseResponse.unit, PulseResponse.value)).all():
        per_unit[unit or "未填单位"][value] = n
    shown, hidden = [], 0
    for unit, vals in sorted(per_unit.items()):
        total = sum(vals.values())
        if total >= MIN_FEEDBACK:
            shown.append({"unit": unit, "total": total, **{k: vals.get(k, 0) for k in (1, 2, 3)},
                          "heavy": round(100 * vals.get(3, 0) / total)})
        else:
            hidden += 1
    shown.sort(key=lambda r: -r["heavy"])
    return shown, hidden


def useless_votes(session: Session, limit: int = 50) -> list[tuple[str, str | None, int]]:
    """(group name, unit, votes) by most votes; a small count is shown as FEW_VOTES."""
    n_votes = func.count(UselessVote.id)
    rows = session.execute(select(Group.name, Group.unit, n_votes).join(Group, Group.id == UselessVote.group_id)
                           .group_by(Group.id, Group.name, Group.unit).order_by(n_votes.desc()).limit(limit))
    return [(name, unit, FEW_VOTES if shown_votes(n) is None else n) for name, unit, n in rows]


def formalism_reports(session: Session, limit: int = 100) -> list[FormalismReport]:
    return session.execute(select(FormalismReport).order_by(FormalismReport.day.desc(), FormalismReport.id.desc())
                           .limit(limit)).scalars().all()


# --- GET /api/groups --------------------------------------------------------------------------------
def groups_page(session: Session, *, unit: str | None, status: str | None, q: str | None, limit: int,
                offset: int) -> tuple[int, list[Group]]:
    """(how many match, the groups of this page by id); ``q`` matches part of the name literally."""
    query = select(Group)
    if unit:
        query = query.where(Group.unit == unit)
    if status:
        query = query.where(Group.status == status)
    if q:
        query = query.where(Group.name.contains(q, autoescape=True))
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    return total, session.execute(query.order_by(Group.id).limit(limit).offset(offset)).scalars().all()


# --- merge by choosing a group ------------------------------------------------------------------------
MERGE_KINDS = ("duplicate", "overlap")  # findings whose other groups are the natural merge targets


@dataclass
class MergeChoice:
    """A group offered as merge target, and why it is offered (a Chinese phrase)."""

    group: Group
    why: str


def merge_source_problem(group: Group) -> str | None:
    """Why ``group`` cannot be merged into any group, or None."""
    if group.status not in LIVE:
        return f"“{group.name}”已不在使用中，不能再合并。"
    if group.protected:
        return f"“{group.name}”是受保护群，不能合并。"
    return None


def merge_problem(group: Group, target: Group | None) -> str | None:
    """Why ``group`` cannot be merged into ``target`` (a Chinese sentence), or None. The server's own
    check of a posted merge, whatever the page offered; ``storage.lifecycle.merge_group`` then
    applies the state machine's rules."""
    problem = merge_source_problem(group)
    if problem:
        return problem
    if target is None:
        return "请选择要合并到的群。"
    if target.id == group.id:
        return "不能把群合并到它自己。"
    if target.status not in LIVE:
        return f"“{target.name}”已不在使用中，不能作为合并目标。"
    return None


def merge_choices(session: Session, group: Group, limit: int = PAGE_ROWS) -> list[MergeChoice]:
    """The groups ``group`` may be merged into: first the other groups of its open duplicate and
    overlap findings, then live groups of its unit, then the other live groups (by unit and name),
    at most ``limit``. Every one passes ``merge_problem``."""
    partners: list[str] = []
    for kind, ids in session.execute(select(FindingRecord.kind, FindingRecord.group_ids)
                                     .where(FindingRecord.kind.in_(MERGE_KINDS), FindingRecord.status == "open")):
        if group.id in (ids or []):
            partners += [(gid, kind) for gid in ids if gid != group.id and gid not in {p for p, _ in partners}]
    out: list[MergeChoice] = []
    seen = {group.id}
    for gid, kind in partners:
        g = session.get(Group, gid)
        if g is not None and merge_problem(group, g) is None:
            out.append(MergeChoice(g, "疑似重复" if kind == "duplicate" else "成员高度重合"))
            seen.add(gid)
    live = select(Group).where(Group.status.in_(LIVE)).order_by(Group.unit, Group.name, Group.id)
    same = live.where(Group.unit == group.unit) if group.unit else live.where(Group.unit.is_(None))
    for g in session.execute(same.limit(limit)).scalars():
        if g.id not in seen:
            out.append(MergeChoice(g, "同单位"))
            seen.add(g.id)
    if len(out) < limit:
        for g in session.execute(live.limit(limit + len(seen))).scalars():
            if g.id not in seen and len(out) < limit:
                out.append(MergeChoice(g, "其他单位"))
                seen.add(g.id)
    return out[:limit]


# --- weekly trends (趋势) ------------------------------------------------------------------------------
# How past weeks are reconstructed (the same code for the county and for one unit, so the two agree):
# * the series starts in the local week of the first import (the first ``import`` audit record: a
#   ledger, roster or message import); a county that never imported starts with its first audit
#   record, else with the first group the bot saw;
# * a group is live from ``first_seen_at``; the audit trail's dissolve/merge/purge records take it
#   out and its restore records bring it back (a group whose current status disagrees with its
#   trail, e.g. one imported as dissolved, is taken out at its ``status_changed_at``/``dissolved_at``);
# * groups per cadre: the cadres (roles cadre, unit_admin) known at the week's end and the current
#   memberships joined by then (``joined_at``) of the groups live then; a member who has since left
#   a group is no longer counted in past weeks (memberships are not kept after a member leaves);
# * ritual share: the stored messages of the week (groups whose platform gives only counts store none);
# * dissolved / kept / restored / merged: the audit records of the week, as in the report
#   (dissolve; keep + veto; restore; merge);
# * anonymous feedback: pulse answers of the week's period, votes "this group is useless" and
#   formalism reports of the week; a week's pulse and vote figures are shown only from
#   MIN_FEEDBACK answers (votes) up, like everywhere else (None: too few to show).
MAX_WEEKS = 104
CADRE_ROLES = ("cadre", "unit_admin")
OUT_ACTIONS = ("dissolve_intent", "dissolve", "merge", "purge")
IN_ACTIONS = ("restore",)
NO_UNIT = "未填单位"


@dataclass
class Week:
    monday: date
    start: datetime  # UTC, local Monday 00:00
    end: datetime    # UTC, the next local Monday 00:00, or now for the current week
    current: bool


@dataclass
class Trends:
    """Weekly series, one value per week (oldest first); feedback values None when too few to show."""

    unit: str | None
    since: date | None
    weeks: list[Week]
    groups: list[int]
    per_cadre_median: list[float]
    per_cadre_max: list[int]
    messages: list[int]
    ritual_share: list[float | None]  # percent, None without messages
    dissolved: list[int]
    kept: list[int]
    restored: list[int]
    merged: list[int]
    pulse_answers: list[int | None]
    pulse_heavy: list[float | None]  # percent of answers "heavy"
    useless_votes: list[int | None]
    formalism_reports: list[int | None]  # None on a unit page (reports carry no unit)

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "since": self.since.isoformat() if self.since else None,
                "weeks": [w.monday.isoformat() for w in self.weeks],
                **{k: getattr(self, k) for k in ("groups", "per_cadre_median", "per_cadre_max", "messages",
                                                  "ritual_share", "dissolved", "kept", "restored", "merged",
                                                  "pulse_answers", "pulse_heavy", "useless_votes",
                                                  "formalism_reports")}}


def _utc_midnight(d: date, tz) -> datetime:
    return datetime.combine(d, time.min, tzinfo=tz).astimezone(timezone.utc)


def series_start(session: Session) -> datetime | None:
    """When the series begins: the first import, else the first audit record, else the first group."""
    first = session.execute(select(func.min(AuditRecord.at)).where(AuditRecord.action == "import")).scalar()
    if first is None:
        first = session.execute(select(func.min(AuditRecord.at))).scalar()
    if first is None:
        first = session.execute(select(func.min(Group.first_seen_at))).scalar()
    return first


def weeks_since(start: datetime | None, now: datetime, tz) -> list[Week]:
    if start is None or start > now:
        return []
    d0 = labels.local_dt(start, tz).date()
    monday = d0 - timedelta(days=d0.weekday())
    today = labels.local_dt(now, tz).date()
    last = today - timedelta(days=today.weekday())
    n = (last - monday).days // 7 + 1
    if n > MAX_WEEKS:
        monday += timedelta(weeks=n - MAX_WEEKS)
    out = []
    while monday <= last:
        nxt = _utc_midnight(monday + timedelta(days=7), tz)
        out.append(Week(monday, _utc_midnight(monday, tz), min(nxt, now), nxt > now))
        monday += timedelta(days=7)
    return out


def _bucket(column, weeks: list[Week]):
    """A SQL expression: the index of the week ``column`` falls in (NULL outside every week)."""
    return case(*[(and_(column >= w.start, column < w.end), i) for i, w in enumerate(weeks)], else_=None)


def _live_intervals(session: Session, groups: list[Group], horizon: datetime) -> dict[str, list[tuple]]:
    """Per group, the [from, to) spans during which it was live, from its audit trail."""
    ids = [g.id for g in groups]
    trail: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for chunk in range(0, len(ids), 500):
        for gid, at, action in session.execute(
                select(AuditRecord.group_id, AuditRecord.at, AuditRecord.action)
                .where(AuditRecord.group_id.in_(ids[chunk:chunk + 500]),
                       AuditRecord.action.in_(OUT_ACTIONS + IN_ACTIONS))
                .order_by(AuditRecord.at, AuditRecord.id)):
            trail[gid].append((at, action))
    spans: dict[str, list[tuple]] = {}
    for g in groups:
        mine, since = [], g.first_seen_at
        for at, action in trail.get(g.id, ()):
            if action in OUT_ACTIONS and since is not None:
                if at > since:
                    mine.append((since, at))
                since = None
            elif action in IN_ACTIONS and since is None:
                since = at
        if since is not None:
            if g.status in LIVE:
                mine.append((since, horizon))
            else:  # out now, but the trail does not say when: its status change says it
                out = g.status_changed_at or g.dissolved_at or since
                if out > since:
                    mine.append((since, out))
        elif g.status in LIVE and mine:  # live now although the trail ends outside: since its last change
            back = g.status_changed_at or mine[-1][1]
            mine.append((back, horizon))
        spans[g.id] = mine
    return spans


def trends(session: Session, *, now: datetime, tz, unit: str | None = None) -> Trends:
    """The weekly series of the county, or of one unit (``NO_UNIT`` for groups and cadres without one)."""
    weeks = weeks_since(series_start(session), now, tz)
    n = len(weeks)
    since = weeks[0].monday if weeks else None
    unit_is = (lambda col: col.is_(None)) if unit == NO_UNIT else (lambda col: col == unit)
    gq = select(Group)
    if unit is not None:
        gq = gq.where(unit_is(Group.unit))
    horizon = now + timedelta(days=1)
    # groups live at each week's end, and the spans per group for the per-cadre counts
    groups = session.execute(gq).scalars().all() if n else []
    spans = _live_intervals(session, groups, horizon) if n else {}
    ends = [w.end - timedelta(microseconds=1) for w in weeks]  # the figures as the week closed (or now)

    def weeks_of(a: datetime, b: datetime) -> tuple[int, int]:  # the weeks whose end t has a <= t < b
        return bisect_left(ends, a), bisect_left(ends, b)

    live_diff = [0] * (n + 1)
    for g in groups:
        for a, b in spans[g.id]:
            i0, i1 = weeks_of(a, b)
            live_diff[i0] += 1
            live_diff[i1] -= 1
    live_counts = list(accumulate(live_diff))[:n]
    # groups per cadre: every live group a cadre of the unit (or county) is in, whichever its unit
    pq = select(Person.id, Person.created_at).where(Person.role.in_(CADRE_ROLES))
    if unit is not None:
        pq = pq.where(unit_is(Person.unit))
    cadres = dict(session.execute(pq).all()) if n else {}
    members: dict[str, list[tuple[str, datetime | None]]] = defaultdict(list)
    all_spans = spans
    if cadres:
        wanted = Membership.person_id.in_(list(cadres)) if len(cadres) <= 2000 else Membership.person_id.is_not(None)
        for pid, gid, joined in session.execute(select(Membership.person_id, Membership.group_id,
                                                       Membership.joined_at).where(wanted)):
            if pid in cadres:
                members[gid].append((pid, joined))
        if unit is not None:  # a unit's cadres are also in other units' groups
            others = session.execute(select(Group).where(Group.id.in_(list(members)))).scalars().all() \
                if len(members) <= 2000 else session.execute(select(Group)).scalars().all()
            all_spans = _live_intervals(session, [g for g in others if g.id in members], horizon)
    # per cadre, the weeks each membership counts in (a difference array over the weeks), then per week
    # the counts of the cadres known by then: O(memberships + cadres × weeks)
    diff: dict[str, list[int]] = {pid: [0] * (n + 1) for pid in cadres}
    for gid, mems in members.items():
        for a, b in all_spans.get(gid, ()):
            for pid, joined in mems:
                i0, i1 = weeks_of(max(a, joined) if joined else a, b)
                if i0 < i1:
                    diff[pid][i0] += 1
                    diff[pid][i1] -= 1
    known_from = {pid: (0 if created is None else bisect_left(ends, created)) for pid, created in cadres.items()}
    per_week: list[list[int]] = [[] for _ in range(n)]
    for pid, d in diff.items():
        for i, c in enumerate(accumulate(d[:n])):
            if i >= known_from[pid] or c:
                per_week[i].append(c)
    medians = [median(v) for v in per_week]
    maxima = [max(v, default=0) for v in per_week]
    # messages and rituals per week
    msgs, rituals = [0] * n, [0] * n
    if n:
        b = _bucket(Message.sent_at, weeks)
        mq = select(b, func.count(), func.coalesce(func.sum(cast(Message.is_ritual, Integer)), 0)) \
            .where(Message.sent_at >= weeks[0].start, Message.sent_at < weeks[-1].end)
        if unit is not None:
            mq = mq.join(Group, Group.id == Message.group_id).where(unit_is(Group.unit))
        for i, total, r in session.execute(mq.group_by(b)):
            if i is not None:
                msgs[i], rituals[i] = int(total), int(r)
    share = [round(100 * r / m, 1) if m else None for m, r in zip(msgs, rituals)]
    # lifecycle actions per week
    acts: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    if n:
        b = _bucket(AuditRecord.at, weeks)
        aq = select(b, AuditRecord.action, func.count()).where(
            AuditRecord.action.in_(("dissolve", "keep", "veto", "restore", "merge")),
            AuditRecord.at >= weeks[0].start, AuditRecord.at < weeks[-1].end)
        if unit is not None:
            aq = aq.join(Group, Group.id == AuditRecord.group_id).where(unit_is(Group.unit))
        for i, action, c in session.execute(aq.group_by(b, AuditRecord.action)):
            if i is not None:
                acts[action][i] += c
    kept = [a + v for a, v in zip(acts["keep"], acts["veto"])]
    # anonymous feedback, k-anonymous per week
    pulse_n: list[int | None] = [None] * n
    heavy: list[float | None] = [None] * n
    votes: list[int | None] = [None] * n
    reports: list[int | None] = [None] * n if unit is not None else [0] * n
    if n:
        index = {pulse_period(w.monday): i for i, w in enumerate(weeks)}
        pq2 = select(PulseResponse.period, PulseResponse.value, func.count()).where(
            PulseResponse.period.in_(list(index)))
        if unit is not None:
            pq2 = pq2.where(unit_is(PulseResponse.unit))
        per: dict[int, dict[int, int]] = defaultdict(dict)
        for period, value, c in session.execute(pq2.group_by(PulseResponse.period, PulseResponse.value)):
            per[index[period]][value] = c
        for i, vals in per.items():
            total = sum(vals.values())
            if total >= MIN_FEEDBACK:
                pulse_n[i], heavy[i] = total, round(100 * vals.get(3, 0) / total, 1)
        mondays = {w.monday: i for i, w in enumerate(weeks)}
        vq = select(UselessVote.day, func.count()).where(UselessVote.day.in_(list(mondays)))
        if unit is not None:
            vq = vq.join(Group, Group.id == UselessVote.group_id).where(unit_is(Group.unit))
        raw = [0] * n
        for day, c in session.execute(vq.group_by(UselessVote.day)):
            raw[mondays[day]] += c
        votes = [shown_votes(c) if c else 0 for c in raw]
        if unit is None:
            fb = _bucket(FormalismReport.day, [Week(w.monday, w.monday, w.monday + timedelta(days=7), w.current)
                                               for w in weeks])
            for i, c in session.execute(select(fb, func.count()).where(
                    FormalismReport.day >= weeks[0].monday, FormalismReport.day < weeks[-1].monday + timedelta(days=7))
                    .group_by(fb)):
                if i is not None:
                    reports[i] = c
    return Trends(unit, since, weeks, live_counts, medians, maxima, msgs, share, list(acts["dissolve"]), kept,
                  list(acts["restore"]), list(acts["merge"]), pulse_n, heavy, votes, reports)


def unit_names(session: Session) -> list[str]:
    """Every unit a group or a cadre names, for the unit pages."""
    names = set(session.execute(select(Group.unit).distinct()).scalars()) | \
        set(session.execute(select(Person.unit).where(Person.role.in_(CADRE_ROLES)).distinct()).scalars())
    return sorted(NO_UNIT if u is None else u for u in names)
