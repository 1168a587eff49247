"""What the dashboard's pages (看板) and ``GET /api/groups`` read: one function per page part.

The web modules (``bot/dashboard/routes.py``, ``bot/api.py``) call these and render; they hold
no SQL of their own. Figures shared with the report and the CLI stay in ``storage.reports``.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from storage.feedback import FEW_VOTES, shown_votes
from storage.models import (AuditRecord, FindingRecord, FormalismReport, Group, Person, PulseResponse, StatSnapshot,
                            UselessVote)
from storage.reports import MIN_FEEDBACK

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
