"""What a notice assumes about its group, and what happens when that no longer holds.

Every notice about a group records its premise when it is created (``Notice.premise``, built by
:func:`of`): the group statuses it assumes plus the stamp of the state it was written for, e.g. a
warning assumes ``warned`` with that ``warned_at``; a dissolution order ``dissolving`` with that
``order_deadline``; an expiry reminder ``active`` with that ``expires_at``. :func:`holds` is the
one check, used

* by ``storage.notices.deliver_due_notices`` when notices are put into a digest (an item whose
  premise ended is withdrawn: status ``withdrawn``), and
* by the outbox dispatcher right before it sends (:func:`screen`): the digest is re-rendered from
  the notices still holding, or not sent at all (outbox status ``withdrawn``) if none is left.

A notice already handed to the platform (its outbox row is past ``pending``) cannot be taken back:
when a command ends its premise (保留, 续期, 保护, 恢复 …), :func:`settle` queues one short
correction (kind ``correction``), only when what the notice announced is now off (the group is
live again, see :data:`LABELS`), never when it was carried out, and not for an expiry reminder
to the owner who renewed it (the reminder asked for exactly that). Corrections wait for working time
but not for the weekly budget (``storage.notices``), and do not use it.

Notices without a premise (pulse, formalism reports, repeated keeps reported to the commission:
facts that stay true) always hold.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.dates import fmt_date
from storage.models import Group, Notice, OutboxMessage
from storage.outbox import NOT_DELIVERED

CORRECTION = "correction"
LIVE = ("active", "warned")

# Kinds that get a correction once delivered, and what the correction calls them.
LABELS = {
    "warning": "解散提醒", "warning_member": "解散提醒", "dissolve_order": "解散通知", "dissolved": "解散通知",
    "merge": "合并通知", "expiry": "到期提醒",
}


def _iso(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return v


def of(kind: str, g: Group, **extra: Any) -> dict[str, Any] | None:
    """The premise of a notice of ``kind`` about ``g`` as it stands now."""
    if kind in ("warning", "warning_member"):
        return {"status": ["warned"], "eq": {"warned_at": _iso(g.warned_at)}}
    if kind in ("dissolve_order", "order_overdue"):
        return {"status": ["dissolving"], "eq": {"order_deadline": _iso(g.order_deadline)}}
    if kind == "dissolved":
        return {"status": ["dissolved"], "eq": {"dissolved_at": _iso(g.dissolved_at)}}
    if kind == "merge":
        return {"status": ["dissolving", "merged"], "eq": {"merged_into": extra["into"]}}
    if kind == "expiry":
        return {"status": ["active"], "eq": {"expires_at": _iso(g.expires_at), "done_at": None},
                "unprotected": True}
    if kind == "useless_review":
        return {"status": list(LIVE), "eq": {"done_at": None, "kept_until": _iso(g.kept_until)}, "unprotected": True}
    if kind == "restore_manual":
        return {"status": list(LIVE)}
    if kind == "lookback":
        return {"status": ["dissolved", "purged"]}
    return None


def _group_holds(p: dict[str, Any], g: Group | None) -> bool:
    if g is None:
        return False
    if p.get("status") and g.status not in p["status"]:
        return False
    if p.get("unprotected") and g.protected:
        return False
    return all(_iso(getattr(g, k)) == v for k, v in (p.get("eq") or {}).items())


def _original_delivered(session: Session, notice_id: int, *, waiting_counts: bool) -> bool | None:
    """Whether the notice a correction corrects may have reached its person (None: not decided yet)."""
    orig = session.get(Notice, notice_id)
    if orig is None or orig.status not in ("sent", "merged") or orig.outbox_id is None:
        return False
    row = session.get(OutboxMessage, orig.outbox_id)
    if row is None or row.status in NOT_DELIVERED:
        return False
    if row.status == "pending" and row.sent_at is None:
        return None if waiting_counts else False  # the dispatcher will still screen it
    return True


def holds(session: Session, notice: Notice, group: Group | None = None, *, waiting: bool = False) -> bool | None:
    """Does ``notice``'s premise still hold? (``group``: its group, if already loaded.)

    For a correction, ``waiting=True`` answers None while the corrected notice's own outbox row has
    not been screened yet (the caller waits)."""
    p = notice.premise
    if not p:
        return True
    if "notice" in p:
        return _original_delivered(session, p["notice"], waiting_counts=waiting)
    if group is None and notice.group_id:
        group = session.get(Group, notice.group_id)
    return _group_holds(p, group)


def _since(g: Group, n: Notice, step: str) -> bool:
    """Did the group's dissolution reach ``step`` (``intent_at``/``finished_at``) after ``n`` was written?"""
    v = (g.dissolve_state or {}).get(step)
    if not v:
        return False
    try:
        return datetime.fromisoformat(v) >= n.created_at
    except (TypeError, ValueError):
        return False


def _moot(n: Notice, g: Group | None) -> bool:
    """Is what the notice announced now off (rather than carried out or superseded)?

    A warning followed by a dissolution (even one restored later) was carried out: the order or
    the restore that followed is what the person knows now; so is an order that was confirmed."""
    if g is None or n.kind not in LABELS:
        return False
    if n.kind == "expiry":
        return g.status in LIVE and g.done_at is None and (bool(g.protected) or
                                                          _iso(g.expires_at) != (n.premise.get("eq") or {}).get("expires_at"))
    if n.kind in ("warning", "warning_member"):
        return g.status in ("active", "restoring") and not _since(g, n, "intent_at")
    if n.kind in ("dissolve_order", "merge"):
        return g.status in ("active", "warned", "restoring") and not _since(g, n, "finished_at")
    return g.status in ("active", "warned", "restoring")


def _why(n: Notice, g: Group, today: date, tz, you: bool) -> str:
    reason = g.status_reason or ""
    who = "您" if you else ""
    if g.protected:
        return "已设为常设群"
    if n.kind == "expiry" or reason == "群主续期":
        if g.expires_at is not None:
            return f"{who}已续期至{fmt_date(g.expires_at, today)}"
    if reason.startswith("群主保留") and g.kept_until is not None:
        return f"{who}已保留至{fmt_date(g.kept_until.astimezone(tz).date(), today)}"
    if g.status == "restoring" or reason in ("群主恢复", "恢复", "恢复中"):
        return f"{who}已恢复该群"
    return reason or "情况已变化"


def correction_text(n: Notice, g: Group, now: datetime, tz, *, actor: str | None = None) -> str:
    """“对“防汛抗旱群”的解散提醒已撤销（您已保留至2027年2月27日），无需处理。”"""
    today = now.astimezone(tz).date()
    return f"对“{g.name}”的{LABELS[n.kind]}已撤销（{_why(n, g, today, tz, n.person_id == actor)}），无需处理。"


def settle(session: Session, group_ids: Iterable[str], now: datetime, settings, *, actor: str | None = None) -> int:
    """After ``group_ids`` changed (by ``actor``, if a person): withdraw their waiting notices whose
    premise ended, and queue one correction for each such notice that may already have been
    delivered. Returns how many corrections were queued."""
    from storage.outbox import notify

    ids = sorted(set(group_ids))
    if not ids:
        return 0
    pg = session.get_bind().dialect.name == "postgresql"
    q = (select(Notice).where(Notice.group_id.in_(ids), Notice.status.in_(("pending", "held", "sent", "merged")),
                              Notice.withdrawn_at.is_(None), Notice.premise.is_not(None), Notice.kind != CORRECTION)
         .order_by(Notice.id))
    if pg:
        q = q.with_for_update()
    notices = list(session.execute(q).scalars())
    if not notices:
        return 0
    groups = {g.id: g for g in session.execute(select(Group).where(Group.id.in_(ids))).scalars()}
    queued = 0
    for n in notices:
        g = groups.get(n.group_id)
        if not n.premise or _group_holds(n.premise, g):
            continue
        if n.status in ("pending", "held"):
            n.status, n.decided_at, n.withdrawn_at = "withdrawn", now, now
            continue
        rq = select(OutboxMessage).where(OutboxMessage.id == n.outbox_id)
        if pg:
            rq = rq.with_for_update()  # the dispatcher's claim skips it until this commits, then screens it
        row = session.execute(rq).scalar_one_or_none()
        if row is None or row.status in NOT_DELIVERED:
            n.withdrawn_at = now  # never reached anyone
            continue
        if row.status == "pending" and row.sent_at is None:
            continue  # not handed over yet: the dispatcher screens it right before sending
        if not _moot(n, g):
            continue
        n.withdrawn_at = now
        if n.kind == "expiry" and n.person_id == actor:
            continue  # the owner did what the reminder asked (续期): nothing to correct
        notify(session, person_id=n.person_id, kind=CORRECTION, group_id=n.group_id, at=now, urgent=True,
               text=correction_text(n, g, now, settings.tz, actor=actor), premise={"notice": n.id},
               dedupe_key=f"correction:{n.id}")
        queued += 1
    return queued


def screen(session: Session, messages: dict[int, list[int]], now: datetime) -> dict[int, tuple[list[Notice], list[Notice]]]:
    """The dispatcher's check right before sending, for a batch: ``{outbox id: notice ids}`` →
    ``{outbox id: (notices still holding, notices withdrawn now)}`` (two queries for the batch)."""
    ids = sorted({i for nids in messages.values() for i in nids})
    by_id: dict[int, Notice] = {}
    pg = session.get_bind().dialect.name == "postgresql"
    for k in range(0, len(ids), 500):
        q = select(Notice).where(Notice.id.in_(ids[k:k + 500])).order_by(Notice.id)
        if pg:
            # notices before the outbox row, in id order, as settle() takes them: no lock cycle; and
            # a command settling these notices is waited for, so its group change is seen below
            q = q.with_for_update()
        by_id.update((n.id, n) for n in session.execute(q).scalars())
    gids = sorted({n.group_id for n in by_id.values() if n.group_id})
    groups: dict[str, Group] = {}
    for k in range(0, len(gids), 500):
        groups.update((g.id, g) for g in session.execute(select(Group).where(Group.id.in_(gids[k:k + 500]))).scalars())
    out: dict[int, tuple[list[Notice], list[Notice]]] = {}
    for mid, nids in messages.items():
        keep, gone = [], []
        for n in sorted((by_id[i] for i in nids if i in by_id), key=lambda n: n.id):
            if n.status == "withdrawn":
                gone.append(n)
            elif holds(session, n, groups.get(n.group_id) if n.group_id else None):
                keep.append(n)
            else:
                n.status, n.withdrawn_at = "withdrawn", now
                gone.append(n)
        out[mid] = (keep, gone)
    return out
