"""Turning due notices into at most ``weekly_message_budget`` digests per person and week.

Every decision is recorded on the notice (``status`` + ``decided_at``):

* ``held``    due but outside working time or over the weekly budget (looked at again later);
* ``sent``    the only notice in an outbox message (``outbox_id`` set);
* ``merged``  one of several notices merged into one digest message (``outbox_id`` set).

The budget used by a person in a week is the number of distinct ``outbox_id`` among their
notices decided ``sent``/``merged`` in that week (the pulse question records a ``pulse`` notice
too, so it counts).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance.worktime import WorkTime, budget_decision, week_start
from storage.models import Notice, OutboxMessage

DELIVERED = ("sent", "merged")


@dataclass
class DeliveryStats:
    messages: int = 0
    sent: int = 0
    merged: int = 0
    held: int = 0
    held_people: list[str] = field(default_factory=list)


def used_budget(session: Session, person_id: str, now: datetime, wt: WorkTime) -> int:
    """How many unsolicited messages ``person_id`` got (queued) this week."""
    start = week_start(now, wt)
    return session.execute(
        select(func.count(func.distinct(Notice.outbox_id)))
        .where(Notice.person_id == person_id, Notice.status.in_(DELIVERED), Notice.decided_at >= start,
               Notice.outbox_id.is_not(None))).scalar_one()


def budget_overview(session: Session, now: datetime, wt: WorkTime) -> dict[str, dict[str, int]]:
    """Per person this week: messages used, notices held, notices merged (for the dashboard)."""
    start = week_start(now, wt)
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"messages": 0, "held": 0, "merged": 0})
    for pid, n in session.execute(select(Notice.person_id, func.count(func.distinct(Notice.outbox_id)))
                                  .where(Notice.status.in_(DELIVERED), Notice.decided_at >= start)
                                  .group_by(Notice.person_id)):
        out[pid]["messages"] = n
    for pid, status, n in session.execute(select(Notice.person_id, Notice.status, func.count())
                                          .where(Notice.status.in_(("held", "merged")), Notice.decided_at >= start)
                                          .group_by(Notice.person_id, Notice.status)):
        out[pid][status] = n
    return dict(out)


def render_digest(notices: list[Notice]) -> str:
    if len(notices) == 1:
        return notices[0].text
    ordered = sorted(notices, key=lambda n: (not n.urgent, n.due_at, n.id))
    lines = [f"您有{len(ordered)}件事："] + [f"{i}. {n.text}" for i, n in enumerate(ordered, 1)]
    return "\n".join(lines)


def deliver_due_notices(session: Session, *, now: datetime, budget: int, wt: WorkTime) -> DeliveryStats:
    """Merge every person's due notices into one outbox message, within working time and budget."""
    stats = DeliveryStats()
    q = (select(Notice).where(Notice.status.in_(("pending", "held")), Notice.due_at <= now)
         .order_by(Notice.person_id, Notice.id))
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    by_person: dict[str, list[Notice]] = defaultdict(list)
    for n in session.execute(q).scalars():
        by_person[n.person_id].append(n)
    for person_id, notices in by_person.items():
        decision = budget_decision(now, used_budget(session, person_id, now, wt), budget, wt)
        if decision.action == "hold":
            for n in notices:
                if n.status != "held":
                    n.status, n.decided_at = "held", now
                    stats.held += 1
            stats.held_people.append(person_id)
            continue
        msg = OutboxMessage(created_at=now, channel="user", recipient=person_id,
                            kind="digest" if len(notices) > 1 else notices[0].kind,
                            payload={"text": render_digest(notices), "notice_ids": [n.id for n in notices],
                                     "warning_groups": sorted({n.group_id for n in notices
                                                               if n.kind == "warning" and n.group_id})},
                            status="pending", attempts=0, next_attempt_at=now)
        session.add(msg)
        session.flush()
        status = "sent" if len(notices) == 1 else "merged"
        for n in notices:
            n.status, n.decided_at, n.outbox_id = status, now, msg.id
        stats.messages += 1
        stats.sent += len(notices) if status == "sent" else 0
        stats.merged += len(notices) if status == "merged" else 0
    return stats
