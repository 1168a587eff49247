"""Turning due notices into at most ``weekly_message_budget`` digests per person and week.

Every decision is recorded on the notice (``status`` + ``decided_at``):

* ``held``    due but outside working time or over the weekly budget (looked at again later);
* ``sent``    the only notice in an outbox message (``outbox_id`` set);
* ``merged``  one of several notices merged into one digest message (``outbox_id`` set);
* ``withdrawn`` its premise ended before it went out (``storage.premises``): never sent.

Each notice's premise is checked again here (and by the dispatcher right before sending), so a
digest only carries items that still hold. A ``correction`` (of a notice already delivered) waits
for working time but not for the weekly budget, and does not count against it.

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

from governance.worktime import WorkTime, budget_decision, is_working_time, week_start
from storage import premises
from storage.models import Group, Notice, OutboxMessage
from storage.outbox import person_channel

DELIVERED = ("sent", "merged")


@dataclass
class DeliveryStats:
    messages: int = 0
    sent: int = 0
    merged: int = 0
    held: int = 0
    held_people: list[str] = field(default_factory=list)
    withdrawn: int = 0


def used_budget(session: Session, person_id: str, now: datetime, wt: WorkTime) -> int:
    """How many unsolicited messages ``person_id`` got (queued) this week."""
    start = week_start(now, wt)
    return session.execute(
        select(func.count(func.distinct(Notice.outbox_id)))
        .where(Notice.person_id == person_id, Notice.status.in_(DELIVERED), Notice.decided_at >= start,
               Notice.outbox_id.is_not(None), Notice.kind != premises.CORRECTION)).scalar_one()


def render_digest(notices: list[Notice]) -> str:
    if len(notices) == 1:
        return notices[0].text
    ordered = sorted(notices, key=lambda n: (not n.urgent, n.due_at, n.id))
    lines = [f"您有{len(ordered)}件事："] + [f"{i}. {n.text}" for i, n in enumerate(ordered, 1)]
    return "\n".join(lines)


def digest_payload(notices: list[Notice]) -> dict:
    """The outbox payload of a message carrying ``notices`` (also used to re-render a digest)."""
    return {"text": render_digest(notices), "notice_ids": [n.id for n in notices],
            "warning_groups": sorted({n.group_id for n in notices if n.kind == "warning" and n.group_id})}


def deliver_due_notices(session: Session, *, now: datetime, budget: int, wt: WorkTime) -> DeliveryStats:
    """Merge every person's due notices into one outbox message, within working time and budget.

    A notice whose premise no longer holds is withdrawn here; a correction goes out in working
    time even when the budget is used up (alone, then)."""
    stats = DeliveryStats()
    q = (select(Notice).where(Notice.status.in_(("pending", "held")), Notice.due_at <= now)
         .order_by(Notice.person_id, Notice.id))
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    due = list(session.execute(q).scalars())
    gids = sorted({n.group_id for n in due if n.group_id})
    groups: dict[str, Group] = {}
    for i in range(0, len(gids), 500):
        groups.update((g.id, g) for g in session.execute(select(Group).where(Group.id.in_(gids[i:i + 500]))).scalars())
    by_person: dict[str, list[Notice]] = defaultdict(list)
    for n in due:
        ok = premises.holds(session, n, groups.get(n.group_id) if n.group_id else None, waiting=True)
        if ok is None:
            continue  # a correction whose original is still waiting in the outbox: look again later
        if not ok:
            n.status, n.decided_at, n.withdrawn_at = "withdrawn", now, now
            stats.withdrawn += 1
            continue
        by_person[n.person_id].append(n)
    for person_id, notices in by_person.items():
        decision = budget_decision(now, used_budget(session, person_id, now, wt), budget, wt)
        if decision.action == "hold":
            corrections = [n for n in notices if n.kind == premises.CORRECTION]
            if corrections and is_working_time(now, wt):  # over budget only: a correction still goes
                _queue(session, corrections, now, stats)
                notices = [n for n in notices if n.kind != premises.CORRECTION]
            for n in notices:
                if n.status != "held":
                    n.status, n.decided_at = "held", now
                    stats.held += 1
            if notices:
                stats.held_people.append(person_id)
            continue
        _queue(session, notices, now, stats)
    return stats


def _queue(session: Session, notices: list[Notice], now: datetime, stats: DeliveryStats) -> None:
    """One outbox message for one person's ``notices``, on the person's platform (``person_channel``)."""
    channel = person_channel(notices[0].person_id)
    msg = OutboxMessage(created_at=now, channel=channel, recipient=notices[0].person_id,
                        kind="digest" if len(notices) > 1 else notices[0].kind,
                        payload=digest_payload(notices), status="pending", attempts=0, next_attempt_at=now)
    session.add(msg)
    session.flush()
    status = "sent" if len(notices) == 1 else "merged"
    for n in notices:
        n.status, n.decided_at, n.outbox_id = status, now, msg.id
    stats.messages += 1
    stats.sent += len(notices) if status == "sent" else 0
    stats.merged += len(notices) if status == "merged" else 0
