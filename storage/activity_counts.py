"""Activity without content: per-group daily message counts and last-active times a platform
reports (专属钉钉 ``activeGroups`` / ``orgGroupInfos``, imported by the scheduler's
``import_activity_counts`` job), stored for ``governance.rules_counts``.

Only groups the ledger knows are counted (a count for an unknown group is skipped and counted in
the result); a group counted here gets activity source ``counts`` unless it has a richer one
(``full``, ``archive``). Re-importing a day replaces that day's counts (idempotent).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage.models import CountDay, Group, GroupDailyCount

COUNTS = "counts"
RICHER = ("full", "archive")  # sources that see more than counts: never downgraded


@dataclass(frozen=True)
class CountsImport:
    day: date
    stored: int        # groups with a count stored for the day
    unknown: int       # counts for groups the ledger does not know (skipped)
    last_active: int   # groups whose last-active time moved forward


def store_day(session: Session, *, platform: str, day: date, counts: dict[str, int],
              last_active: dict[str, datetime] | None = None, now: datetime) -> CountsImport:
    """Replace ``day``'s counts of ``platform`` (group id → messages that day), record the day as
    imported, and move the groups' ``last_message_at`` forward to the platform's last-active times."""
    ids = set(counts) | set(last_active or {})
    known = set(session.execute(select(Group.id).where(Group.id.in_(ids), Group.platform == platform)).scalars()) \
        if ids else set()
    session.execute(delete(GroupDailyCount).where(GroupDailyCount.day == day,
                                                  GroupDailyCount.group_id.in_(
                                                      select(Group.id).where(Group.platform == platform))))
    rows = [{"group_id": gid, "day": day, "messages": max(0, int(n))} for gid, n in counts.items() if gid in known]
    if rows:
        session.execute(GroupDailyCount.__table__.insert(), rows)
    if session.get(CountDay, (platform, day)) is None:
        session.add(CountDay(platform=platform, day=day, imported_at=now))
    if known:
        session.execute(update(Group).where(Group.id.in_(known),
                                            (Group.activity_source.is_(None)) | (Group.activity_source.not_in(RICHER)))
                        .values(activity_source=COUNTS))
    moved = 0
    for gid, at in (last_active or {}).items():
        if gid not in known:
            continue
        res = session.execute(update(Group).where(Group.id == gid, (Group.last_message_at.is_(None))
                                                  | (Group.last_message_at < at)).values(last_message_at=at))
        moved += res.rowcount or 0
    session.flush()
    return CountsImport(day=day, stored=len(rows), unknown=len(set(counts) - known), last_active=moved)


def counts_since(session: Session, platform: str) -> date | None:
    """The first day of the unbroken run of imported days ending at the latest one (a gap in the
    imports is not coverage: the days before it do not count)."""
    days = list(session.execute(select(CountDay.day).where(CountDay.platform == platform)
                                .order_by(CountDay.day.desc())).scalars())
    if not days:
        return None
    first = days[0]
    for d in days[1:]:
        if d != first - timedelta(days=1):
            break
        first = d
    return first


def window_counts(session: Session, group_ids: list[str], since: date) -> dict[str, tuple[tuple[date, int], ...]]:
    """Each group's (day, messages) from ``since`` on."""
    out: dict[str, list[tuple[date, int]]] = {}
    if not group_ids:
        return {}
    for i in range(0, len(group_ids), 5000):
        chunk = group_ids[i:i + 5000]
        for gid, day, n in session.execute(select(GroupDailyCount.group_id, GroupDailyCount.day,
                                                  GroupDailyCount.messages)
                                           .where(GroupDailyCount.group_id.in_(chunk), GroupDailyCount.day >= since)
                                           .order_by(GroupDailyCount.group_id, GroupDailyCount.day)):
            out.setdefault(gid, []).append((day, n))
    return {gid: tuple(v) for gid, v in out.items()}
