"""The lifecycle steps with their records: every status change goes through the pure machine
(``governance.lifecycle.transition``), is written back to the group's row and audited, and
tells the people concerned (through the outbox).

Crash safety: a dissolution first records its intent (``dissolving`` plus ``dissolve_state``:
method, reason, original name, member list, steps done) in one transaction, with an audit
record (``dissolve_intent``). The platform steps of an appchat dissolution or restore are taken
by the caller through the platform's sender (``scheduler.lifecycle``), which reports each
outcome here: :func:`record_platform_step` right after a step succeeded (in its own
transaction), :func:`record_platform_error` when it failed, :func:`finish_platform_work` at
the end. Bridge dissolutions are pure database work (an outbox instruction, then
:func:`confirm_bridge_dissolution`); order dissolutions wait for :func:`confirm_order`.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from governance.capabilities import Table, resolve
from governance.dates import fmt_date
from governance.lifecycle import (
    APPCHAT, AUTO_DISSOLVE_KINDS, COLUMN_FIELDS, DISSOLVE_STEPS, LIVE, PURGE_STEPS, RESTORE_STEPS, UNDO_FIELDS, UNDO_WINDOW,
    UNDOABLE, GroupState, LifecycleError, check_undo, transition,
)
from governance.model import Finding, GroupFacts
from storage import audit, premises, repo
from storage.lifecycle import texts
from storage.lifecycle.facts import DISSOLVING, RESTORING, params_from, today
from storage.models import Group, Person
from storage.outbox import enqueue, notify

log = logging.getLogger("qunzhi.lifecycle")

SYSTEM = "system:sweep"


# --- the row and the machine -------------------------------------------------------------------
def _locked(session: Session, group_id: str) -> Group | None:
    stmt = select(Group).where(Group.id == group_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()


def state_of(g: Group) -> GroupState:
    """The lifecycle state a group's row holds."""
    st = g.dissolve_state or {}
    return GroupState(status=g.status, protected=bool(g.protected), warned_at=g.warned_at,
                      warning_sent_at=g.warning_sent_at, kept_until=g.kept_until, keep_count=g.keep_count or 0,
                      expires_at=g.expires_at, dissolved_at=g.dissolved_at, merged_into=g.merged_into,
                      dissolve_method=g.dissolve_method, order_deadline=g.order_deadline,
                      steps_done=tuple(st.get("done") or ()), escalated=bool(st.get("escalated_at")),
                      final_status=st.get("final_status"), name=g.name or "")


def _put(g: Group, old: GroupState, new: GroupState) -> None:
    """Write back the columns the transition changed."""
    for name in COLUMN_FIELDS:
        value = getattr(new, name)
        if value != getattr(old, name):
            setattr(g, name, value)


def _set_status(g: Group, status: str, now: datetime, reason: str | None) -> None:
    g.status, g.status_changed_at, g.status_reason, g.updated_at = status, now, reason, now


def _persons_with_role(session: Session, role: str) -> list[str]:
    return list(session.execute(select(Person.id).where(Person.role == role).order_by(Person.id)).scalars())


def _responsible(session: Session, g: Group) -> list[str]:
    """Who hears about a group: its owner, else its unit's administrators, else admins."""
    if g.owner_id:
        return [g.owner_id]
    if g.unit:
        ids = list(session.execute(select(Person.id).where(Person.role == "unit_admin", Person.unit == g.unit)
                                   .order_by(Person.id)).scalars())
        if ids:
            return ids
    return _persons_with_role(session, "admin")


def _notify_commission(session: Session, *, kind: str, text_: str, at: datetime, group_id: str, key: str,
                       premise: dict | None = None) -> int:
    ids = _persons_with_role(session, "commission")
    for pid in ids:
        notify(session, person_id=pid, kind=kind, text=text_, at=at, group_id=group_id,
               dedupe_key=f"{key}:{pid}"[:200], premise=premise)
    return len(ids)


def _local_day(at: datetime, now: datetime, settings) -> str:
    return fmt_date(at.astimezone(settings.tz).date(), today(now, settings))


# --- warning -----------------------------------------------------------------------------------
def warn(session: Session, g: Group, findings: list[Finding], facts: GroupFacts | None, now: datetime,
         settings) -> None:
    """active → warned: the owner (and a temporary group's members) are told why and when."""
    params = params_from(settings)
    old = state_of(g)
    new = transition(old, "warn", now, params)
    _put(g, old, new)
    why = texts.why(g, facts, findings, now, today(now, settings))
    _set_status(g, new.status, now, why)
    kinds = sorted({f.kind for f in findings})
    reasons = [r for f in findings for r in f.reasons]
    audit.record(session, actor=SYSTEM, action="warn", at=now, group_id=g.id, reason="；".join(reasons) or why,
                 data={"kinds": kinds})
    due = _local_day(now + timedelta(days=params.grace_days), now, settings)
    auto = bool(set(kinds) & AUTO_DISSOLVE_KINDS)
    owner_text = texts.warning_to_owner(g.name, why, due=due, restore_days=params.restore_days, auto=auto,
                                        temporary=bool(g.temporary))
    stamp = now.isoformat()
    recipients = _responsible(session, g)
    for pid in recipients:
        notify(session, person_id=pid, kind="warning", text=owner_text, at=now, group_id=g.id, urgent=True,
               dedupe_key=f"warning:{g.id}:{stamp}:{pid}"[:200], premise=premises.of("warning", g))
    if g.temporary and auto:
        member_text = texts.warning_to_member(g.name, why, due=due, restore_days=params.restore_days,
                                              owner=repo.display_name(session, g.owner_id))
        for pid in repo.member_ids(session, g.id):
            if pid not in recipients:
                notify(session, person_id=pid, kind="warning_member", text=member_text, at=now, group_id=g.id,
                       urgent=True, dedupe_key=f"warning:{g.id}:{stamp}:{pid}"[:200],
                       premise=premises.of("warning_member", g))


def mark_warning_sent(session: Session, group_id: str, at: datetime) -> bool:
    """The outbox delivered the warning notice: the grace period starts now.

    Called by the scheduler's dispatcher for a delivered notice of kind ``warning``.
    Idempotent: only the first delivery for the current warning counts (False otherwise)."""
    g = _locked(session, group_id)
    if g is None:
        return False
    old = state_of(g)
    try:
        new = transition(old, "warning_sent", at)
    except LifecycleError:  # not warned (any more), or this warning already counted
        return False
    _put(g, old, new)
    g.updated_at = at
    audit.record(session, actor="system:outbox", action="warning_sent", at=at, group_id=g.id,
                 reason="解散提醒已送达")
    return True


def unwarn(session: Session, g: Group, now: datetime, settings, *, reason: str) -> None:
    """warned → active: the group no longer qualifies; its warning notices are withdrawn."""
    old = state_of(g)
    _put(g, old, transition(old, "unwarn", now))
    _set_status(g, "active", now, reason)
    audit.record(session, actor=SYSTEM, action="unwarn", at=now, group_id=g.id, reason=reason)
    session.flush()
    premises.settle(session, [g.id], now, settings)


# --- dissolution -------------------------------------------------------------------------------
def begin_dissolution(session: Session, g: Group, now: datetime, settings, *, capabilities: Table, actor: str,
                      reason: str) -> str:
    """warned → dissolving: record the intent and start the platform path; returns the method
    (``capabilities``: the platforms configured here, ``platforms.capabilities.table``).
    Refused (LifecycleError) for a protected group, or before the grace period has passed."""
    old = state_of(g)
    new = transition(old, "dissolve", now, params_from(settings), method=_method(capabilities, g))
    return _begin(session, g, old, new, now, settings, actor=actor, reason=reason)


def _method(capabilities: Table, g: Group) -> str:
    return resolve(capabilities, g.platform, source=g.source).dissolve_method


def _begin(session: Session, g: Group, old: GroupState, new: GroupState, now: datetime, settings, *, actor: str,
           reason: str) -> str:
    method = new.dissolve_method
    members = repo.member_ids(session, g.id)
    state: dict[str, Any] = {"method": method, "reason": reason, "actor": actor, "intent_at": now.isoformat(),
                             "name": g.name, "owner": g.owner_id, "members": members, "done": [],
                             "final_status": new.final_status, "from_status": old.status}
    _put(g, old, new)
    _set_status(g, DISSOLVING, now, reason)
    audit.record(session, actor=actor, action="dissolve_intent", at=now, group_id=g.id, reason=reason,
                 data={"method": method, "members": len(members), "final_status": new.final_status})
    if method == "bridge":
        iid = "dis-" + hashlib.sha1(f"{g.id}|{now.isoformat()}".encode()).hexdigest()[:16]
        state["instruction_id"] = iid
        enqueue(session, channel="bridge", recipient=g.id, kind="bridge_dissolve", at=now,
                payload={"type": "dissolve", "group_id": g.id, "instruction_id": iid, "platform": g.platform},
                dedupe_key=f"bridge-dissolve:{iid}")
    elif method == "order":
        _order(session, g, state, now, settings, actor=actor)
    g.dissolve_state = state
    return method


def _order(session: Session, g: Group, state: dict, now: datetime, settings, *, actor: str) -> None:
    """The owner is ordered to dissolve by hand before ``g.order_deadline`` (set by the machine)."""
    state["method"] = "order"
    day = _local_day(g.order_deadline, now, settings)
    for pid in _responsible(session, g):
        notify(session, person_id=pid, kind="dissolve_order", group_id=g.id, urgent=True, at=now,
               text=texts.dissolve_order(g.name, day),
               dedupe_key=f"order:{g.id}:{now.isoformat()}:{pid}"[:200], premise=premises.of("dissolve_order", g))
    audit.record(session, actor=actor, action="dissolve_order", at=now, group_id=g.id, reason=state.get("reason"),
                 data={"deadline": g.order_deadline.isoformat()})


def _finish(session: Session, g: Group, at: datetime, settings, *, actor: str) -> None:
    """dissolving → dissolved (or merged): the platform side is done."""
    old = state_of(g)
    new = transition(old, "finish", at)
    state = dict(g.dissolve_state or {})
    state["finished_at"] = at.isoformat()
    g.dissolve_state = state
    _put(g, old, new)
    _set_status(g, new.status, at, state.get("reason"))
    audit.record(session, actor=actor, action="dissolve", at=at, group_id=g.id, reason=state.get("reason"),
                 data={"method": g.dissolve_method, "final_status": new.status})
    if new.status == "dissolved":
        day = _local_day(at + timedelta(days=params_from(settings).restore_days), at, settings)
        for pid in _responsible(session, g):
            notify(session, person_id=pid, kind="dissolved", group_id=g.id, at=at, text=texts.dissolved(g.name, day),
                   dedupe_key=f"dissolved:{g.id}:{at.isoformat()}:{pid}"[:200], premise=premises.of("dissolved", g))


def escalate(session: Session, g: Group, now: datetime) -> bool:
    """An order passed its deadline: the commission is told (once). False if not due."""
    old = state_of(g)
    try:
        transition(old, "escalate", now)
    except LifecycleError:
        return False
    st = dict(g.dissolve_state or {})
    st["escalated_at"] = now.isoformat()
    g.dissolve_state = st
    owner = repo.display_name(session, g.owner_id)
    n = _notify_commission(session, kind="order_overdue", at=now, group_id=g.id, key=f"order-overdue:{g.id}",
                           premise=premises.of("order_overdue", g), text_=texts.order_overdue(g.name, g.unit, owner))
    audit.record(session, actor=SYSTEM, action="order_escalate", at=now, group_id=g.id, reason="解散通知逾期未执行",
                 data={"deadline": g.order_deadline.isoformat() if g.order_deadline else None, "notified": n})
    return True


def purge(session: Session, g: Group, now: datetime, settings, *, capabilities: Table | None = None) -> str:
    """dissolved → purged once the restore window is over; the member list is forgotten.

    A group the bot soft-dissolved on a platform that can really disband it
    (``Capabilities.purge``, from ``capabilities``) is not purged here: the intent is recorded
    (``dissolve_state["purge"]``, audited ``purge_intent``) and ``"pending"`` returned; the
    scheduler calls the platform's ``group_disband`` and reports back (:func:`record_platform_step`,
    :func:`finish_platform_work`, or :func:`record_platform_error`). Where there is no disband the
    group stays emptied and renamed on its platform, and the status reason and the audit say so.
    Returns ``"done"`` (purged now) or ``"pending"``."""
    params = params_from(settings)
    transition(state_of(g), "purge", now, params)  # refuses first (window not over, wrong state)
    caps = resolve(capabilities, g.platform, source=g.source) if capabilities is not None else None
    soft = g.dissolve_method == APPCHAT
    state = dict(g.dissolve_state or {})
    if soft and caps is not None and caps.purge:
        if not (state.get("purge") or {}).get("requested_at"):
            state["purge"] = {"requested_at": now.isoformat(), "done": []}
            g.dissolve_state = state
            audit.record(session, actor=SYSTEM, action="purge_intent", at=now, group_id=g.id,
                         reason=f"解散满{params.restore_days}天，将在平台上解散")
        return "pending"
    _purged(session, g, now, settings, how="kept" if soft else None)
    return "done"


#: how a purge ended on the platform → what the status reason and the audit add (Chinese)
PURGE_OUTCOMES = {
    "disbanded": "已在平台上解散",
    "gone": "平台上该群已不存在",
    "kept": "平台不能解散此群，群已清空成员并改名保留",
    "refused": "平台拒绝解散，群已清空成员并改名保留",
}


def _purged(session: Session, g: Group, now: datetime, settings, *, how: str | None,
            error: str | None = None) -> None:
    params = params_from(settings)
    old = state_of(g)
    new = transition(old, "purge", now, params)
    state = dict(g.dissolve_state or {})
    state.pop("members", None)
    state["purged_at"] = now.isoformat()
    if how:
        p = dict(state.get("purge") or {})
        p["outcome"] = how
        if error:
            p["error"] = error[:300]
        state["purge"] = p
    g.dissolve_state = state
    _put(g, old, new)
    extra = f"；{PURGE_OUTCOMES[how]}" if how else ""
    _set_status(g, new.status, now, f"解散满{params.restore_days}天{extra}")
    data = {"outcome": how} if how else None
    if error:
        data["error"] = error[:300]
    audit.record(session, actor=SYSTEM, action="purge", at=now, group_id=g.id,
                 reason=f"解散满{params.restore_days}天，不再可恢复{extra}", data=data)


def _cancel_bridge_instruction(session: Session, g: Group, state: dict, now: datetime) -> None:
    """恢复 while a bridge dissolution waits: withdraw the instruction if it has not gone out,
    otherwise tell the bridge to cancel it (``{"type": "cancel_dissolve", ...}``)."""
    from storage.models import OutboxMessage

    iid = state["instruction_id"]
    row = session.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"bridge-dissolve:{iid}")
                          ).scalar_one_or_none()
    if row is not None and row.status == "pending":
        row.status, row.last_error = "cancelled", "群主恢复，解散指令撤回"
        state["instruction_cancelled"] = "withdrawn"
        return
    enqueue(session, channel="bridge", recipient=g.id, kind="bridge_cancel", at=now,
            payload={"type": "cancel_dissolve", "group_id": g.id, "instruction_id": iid, "platform": g.platform},
            dedupe_key=f"bridge-cancel:{iid}")
    state["instruction_cancelled"] = "cancel_sent"


def confirm_bridge_dissolution(session: Session, group_id: str, at: datetime, settings,
                               instruction_id: str | None = None) -> bool:
    """The bridge confirmed a dissolve instruction (a ``dissolve_confirmed`` event).
    Idempotent; False if nothing was waiting or the confirmation names another instruction."""
    g = _locked(session, group_id)
    if g is None or g.status != DISSOLVING or g.dissolve_method != "bridge":
        return False
    if instruction_id and instruction_id != (g.dissolve_state or {}).get("instruction_id"):
        log.warning("bridge confirmed instruction %s for %s, but %s is waiting", instruction_id, group_id,
                    (g.dissolve_state or {}).get("instruction_id"))
        return False
    _finish(session, g, at, settings, actor="system:bridge")
    return True


def confirm_order(session: Session, g: Group, at: datetime, settings, *, actor: str) -> None:
    """The owner carried out a dissolution order (``已解散 <群>``)."""
    if g.status != DISSOLVING or g.dissolve_method != "order":
        raise LifecycleError(f"“{g.name}”没有待执行的解散通知")
    _finish(session, g, at, settings, actor=actor)


# --- owner and administrator actions ------------------------------------------------------------
def keep_group(session: Session, g: Group, now: datetime, settings, *, actor: str, reason: str) -> bool:
    """保留: veto a warning / exempt for ``keep_days``.  Returns True when the commission was told."""
    vetoed = g.status == "warned"
    before = undo_snapshot(g)
    old = state_of(g)
    new = transition(old, "keep", now, params_from(settings))
    _put(g, old, new)
    _set_status(g, new.status, now, f"群主保留：{reason}")
    audit.record(session, actor=actor, action="keep", at=now, group_id=g.id, reason=reason,
                 data={"kept_until": new.kept_until.isoformat(), "keep_count": new.keep_count,
                       "vetoed_warning": vetoed, "before": before})
    if new.keep_count >= 2:
        owner = repo.display_name(session, g.owner_id)
        _notify_commission(session, kind="repeated_keep", at=now, group_id=g.id, key=f"keep:{g.id}:{new.keep_count}",
                           text_=texts.repeated_keep(g.name, g.unit, owner, new.keep_count, reason))
        return True
    return False


def renew_group(session: Session, g: Group, expires_at, now: datetime, *, actor: str, reason: str) -> bool:
    """续期: a temporary group gets a new end date; a warning is withdrawn (True when one was)."""
    vetoed = g.status == "warned"
    previous = g.expires_at
    before = undo_snapshot(g)
    old = state_of(g)
    _put(g, old, transition(old, "renew", now, expires_at=expires_at))
    g.temporary, g.done_at = True, None
    if vetoed:
        g.status_changed_at, g.status_reason = now, "群主续期"
    g.updated_at = now
    audit.record(session, actor=actor, action="renew", at=now, group_id=g.id, reason=reason,
                 data={"old_expires_at": previous, "new_expires_at": expires_at, "vetoed_warning": vetoed,
                       "before": before})
    return vetoed


def mark_done(session: Session, g: Group, now: datetime, *, actor: str, reason: str) -> None:
    """完成: the owner declares the task done (the sweep then announces and dissolves)."""
    before = undo_snapshot(g)
    g.done_at = now
    g.updated_at = now
    audit.record(session, actor=actor, action="done", at=now, group_id=g.id, reason=reason, data={"before": before})


# --- 撤销 -------------------------------------------------------------------------------------------
def undo_snapshot(g: Group) -> dict[str, Any]:
    """The columns a change that can be undone restores (``governance.lifecycle.UNDO_FIELDS``), as JSON."""
    out: dict[str, Any] = {}
    for name in UNDO_FIELDS:
        v = getattr(g, name)
        if isinstance(v, datetime):
            out[name] = {"dt": v.isoformat()}
        elif isinstance(v, date):
            out[name] = {"d": v.isoformat()}
        else:
            out[name] = v
    return out


def _from_snapshot(v: Any) -> Any:
    if isinstance(v, dict) and "dt" in v:
        return datetime.fromisoformat(v["dt"])
    if isinstance(v, dict) and "d" in v:
        return date.fromisoformat(v["d"])
    return v


def undo_last(session: Session, actor: str, now: datetime) -> tuple[Group, str]:
    """撤销: the actor's own last change (a 续期, 保留 or 完成 within ``UNDO_WINDOW``, nothing done to
    the group since) is put back as it was before, audited as ``undo``. Returns the group and the
    action undone; raises ``LifecycleError`` (Chinese) when there is nothing it can undo."""
    from storage.models import AuditRecord

    last = session.execute(select(AuditRecord).where(AuditRecord.actor == actor,
                                                     AuditRecord.at >= now - UNDO_WINDOW - timedelta(days=1))
                           .order_by(AuditRecord.id.desc()).limit(1)).scalar_one_or_none()
    if last is not None and last.action == "undo":
        last = None  # an undo is not undone again (nor is the change before it)
    g = session.get(Group, last.group_id) if last is not None and last.group_id else None
    later = False
    if last is not None and g is not None:
        later = session.execute(select(AuditRecord.id).where(AuditRecord.group_id == g.id, AuditRecord.id > last.id)
                                .limit(1)).first() is not None
    before = (last.data or {}).get("before") if last is not None else None
    check_undo(last.action if last is not None and g is not None else None,
               _aware(last.at) if last is not None else None, now, changed_since=later)
    if before is None:
        raise LifecycleError("这次操作没有留下可以恢复的记录，不能撤销。")
    for name in UNDO_FIELDS:
        if name in before:
            setattr(g, name, _from_snapshot(before[name]))
    g.updated_at = now
    audit.record(session, actor=actor, action="undo", at=now, group_id=g.id, reason=f"撤销{UNDOABLE[last.action]}",
                 data={"undone": last.id, "action": last.action})
    return g, last.action


def _aware(dt: datetime) -> datetime:
    from datetime import timezone

    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def restore_group(session: Session, g: Group, now: datetime, settings, *, actor: str) -> str:
    """恢复: undo a dissolution within ``restore_days`` (or cancel one in progress).

    Returns ``"done"`` (active now) or ``"pending"`` (the members are re-added on the platform
    by the next ``scheduler.lifecycle.advance_pending``)."""
    state = dict(g.dissolve_state or {})
    old = state_of(g)
    new = transition(old, "restore", now, params_from(settings))  # refuses first
    _put(g, old, new)
    if old.status == DISSOLVING:
        audit.record(session, actor=actor, action="restore", at=now, group_id=g.id, reason="取消进行中的解散",
                     data={"method": g.dissolve_method, "cancelled": True})
    else:
        audit.record(session, actor=actor, action="restore", at=now, group_id=g.id, reason="恢复已解散的群",
                     data={"method": g.dissolve_method, "dissolved_at": old.dissolved_at.isoformat()})
    if new.status == RESTORING:
        state["restore"] = {"done": [], "requested_at": now.isoformat(), "by": actor}
        g.dissolve_state = state
        _set_status(g, RESTORING, now, "恢复中")
        return "pending"
    if old.status == DISSOLVING:
        state["cancelled_at"] = now.isoformat()
        if g.dissolve_method == "bridge" and state.get("instruction_id"):
            _cancel_bridge_instruction(session, g, state, now)
        g.dissolve_state = state
    _set_status(g, "active", now, "群主恢复" if old.status == DISSOLVING else "恢复")
    return "done"


def merge_group(session: Session, a: Group, b: Group, now: datetime, settings, *, capabilities: Table,
                actor: str) -> str:
    """合并 A 到 B: A's members are told to use B; A is dissolved through its platform path
    (final state ``merged``; ``capabilities`` as for :func:`begin_dissolution`)."""
    if a.id == b.id:
        raise LifecycleError("不能把群合并到它自己")
    if b.status not in LIVE:
        raise LifecycleError(f"“{b.name}”已不在使用中，不能作为合并目标")
    old = state_of(a)
    new = transition(old, "merge", now, params_from(settings), merged_into=b.id, method=_method(capabilities, a))
    a.merged_into = new.merged_into
    audit.record(session, actor=actor, action="merge", at=now, group_id=a.id, reason="合并",
                 data={"into": b.id, "into_name": b.name})
    members = repo.member_ids(session, a.id)
    for pid in members:
        notify(session, person_id=pid, kind="merge", group_id=a.id, at=now, text=texts.merge_to_member(a.name, b.name),
               dedupe_key=f"merge:{a.id}:{b.id}:{pid}"[:200], premise=premises.of("merge", a, into=b.id))
    if not members:  # member list unknown: whoever is responsible tells the members
        for pid in _responsible(session, a):
            notify(session, person_id=pid, kind="merge", group_id=a.id, at=now,
                   text=texts.merge_to_responsible(a.name, b.name),
                   dedupe_key=f"merge:{a.id}:{b.id}:{pid}"[:200], premise=premises.of("merge", a, into=b.id))
    return _begin(session, a, old, new, now, settings, actor=actor, reason="合并")


def set_protected(session: Session, g: Group, protected: bool, now: datetime, *, actor: str) -> bool:
    """保护 / 取消保护; protecting a warned group withdraws the warning.  False if unchanged."""
    old = state_of(g)
    new = transition(old, "protect" if protected else "unprotect", now)  # refused mid-dissolution
    if old.protected == protected:
        return False
    data: dict[str, Any] = {}
    if g.protect_requested_by:
        data["requested_by"] = g.protect_requested_by
    _put(g, old, new)
    g.protect_requested_at = g.protect_requested_by = None
    g.updated_at = now
    if new.status != old.status:  # a warned group: the warning is withdrawn
        _set_status(g, new.status, now, "设为受保护群，撤销解散提醒")
        data["withdrew_warning"] = True
    audit.record(session, actor=actor, action="protect" if protected else "unprotect", at=now, group_id=g.id,
                 reason="设为受保护群" if protected else "取消保护", data=data)
    return True


# --- platform steps: the caller takes them, storage records the outcome ------------------------
@dataclass(frozen=True)
class PlatformWork:
    """The appchat steps still to take for one group, with everything they need."""

    group_id: str
    name: str  # the group's name now (for the report)
    restoring: bool  # undoing a dissolution (else carrying one out)
    todo: tuple[str, ...]  # governance.lifecycle DISSOLVE_STEPS / RESTORE_STEPS not done yet, in order
    members: tuple[str, ...]  # the members recorded before the dissolution, the owner left out
    rename_to: str  # the name the ``rename`` step gives the group
    notice: str  # the text the ``notice`` step posts in the group
    platform: str | None = None  # the group's platform value (the scheduler takes that platform's sender)
    chat_id: str = ""  # the platform's own id of the group (``repo.raw_id``)
    purging: bool = False  # the purge's ``disband`` (else a dissolution or a restore)


def _purge_pending(g_status: str, st: dict | None) -> bool:
    p = (st or {}).get("purge") or {}
    return g_status == "dissolved" and bool(p.get("requested_at")) and "disband" not in (p.get("done") or ())


def pending_platform_groups(session: Session) -> list[str]:
    """The groups with platform steps waiting: soft dissolutions and restores under way, and
    purges whose disband is still to be called."""
    ids = set(session.execute(select(Group.id).where(
        or_(Group.status == RESTORING, and_(Group.status == DISSOLVING, Group.dissolve_method == APPCHAT)))).scalars())
    for gid, st in session.execute(select(Group.id, Group.dissolve_state).where(
            Group.status == "dissolved", Group.dissolve_method == APPCHAT)):
        if _purge_pending("dissolved", st):
            ids.add(gid)
    return sorted(ids)


def _platform_members(session: Session, g: Group, person_ids) -> tuple[str, ...]:
    """The people's own ids on the group's platform (``identity.account_ids``): a person with no
    account there is left out (the platform cannot take them out or add them back); an id with no
    person row goes as the platform's raw id."""
    from storage import identity

    ids = list(dict.fromkeys(person_ids))
    accounts = identity.account_ids(session, ids, identity.account_platform(g.platform or ""))
    known = set(session.execute(select(Person.id).where(Person.id.in_(ids))).scalars()) if ids else set()
    return tuple(accounts[m] if m in accounts else repo.raw_id(g.platform, m)
                 for m in ids if m in accounts or m not in known)


def platform_work(session: Session, group_id: str, settings) -> PlatformWork | None:
    """What is left to do on the platform for ``group_id`` (None: nothing, or not any more)."""
    g = session.get(Group, group_id)
    if g is None:
        return None
    st = g.dissolve_state or {}
    chat_id = repo.raw_id(g.platform, g.id)
    if _purge_pending(g.status, st):
        return PlatformWork(group_id=g.id, name=g.name, restoring=False, todo=PURGE_STEPS, members=(),
                            rename_to=g.name or "", notice="", platform=g.platform, chat_id=chat_id, purging=True)
    if not (g.status == RESTORING or (g.status == DISSOLVING and g.dissolve_method == APPCHAT)):
        return None
    restoring = g.status == RESTORING
    name = st.get("name") or g.name
    done = (st.get("restore") or {}).get("done", []) if restoring else st.get("done", [])
    members = _platform_members(session, g, [m for m in st.get("members", []) if m != st.get("owner")])
    return PlatformWork(
        group_id=g.id, name=g.name, restoring=restoring,
        todo=tuple(s for s in (RESTORE_STEPS if restoring else DISSOLVE_STEPS) if s not in done),
        members=members, rename_to=name if restoring else texts.dissolved_name(name),
        notice=(texts.restored_notice_in_group(len(members)) if restoring
                else texts.dissolve_notice_in_group(settings.restore_days)),
        platform=g.platform, chat_id=chat_id)


def record_platform_step(session: Session, group_id: str, step: str, *, restoring: bool,
                         purging: bool = False) -> None:
    """``step`` succeeded on the platform (called right after it did, in its own transaction)."""
    g = _locked(session, group_id)
    st = dict(g.dissolve_state or {})
    if purging:
        p = dict(st.get("purge") or {})
        p["done"] = list(p.get("done", [])) + [step]
        st["purge"] = p
    elif restoring:
        r = dict(st.get("restore") or {})
        r["done"] = list(r.get("done", [])) + [step]
        st["restore"] = r
    else:
        st["done"] = list(st.get("done", [])) + [step]
    g.dissolve_state = st


def record_platform_error(session: Session, group_id: str, step: str, error: str, now: datetime, settings, *,
                          restoring: bool, permanent: bool, purging: bool = False) -> None:
    """``step`` failed. Transient: it is taken again next time. Permanent: a restore is finished
    by hand (the owner re-adds the members), a dissolution becomes an order to the owner, a purge
    ends without the disband (the group stays emptied and renamed, and the ledger says so)."""
    g = _locked(session, group_id)
    st = dict(g.dissolve_state or {})
    st["last_error"] = error[:300]
    if not permanent:
        g.dissolve_state = st
        return
    if purging:
        g.dissolve_state = st
        if _purge_pending(g.status, st):
            _purged(session, g, now, settings, how="refused", error=error)
        return
    old = state_of(g)
    if restoring:
        new = transition(old, "restore_done", now)
        g.dissolve_state = st
        _put(g, old, new)
        _set_status(g, new.status, now, "恢复（平台未能拉回成员）")
        audit.record(session, actor=SYSTEM, action="restore_done", at=now, group_id=g.id,
                     reason="平台拒绝，需群主手动拉回成员", data={"error": error[:300]})
        for pid in _responsible(session, g):
            notify(session, person_id=pid, kind="restore_manual", group_id=g.id, at=now, urgent=True,
                   text=texts.restore_manual(g.name),
                   dedupe_key=f"restore-manual:{g.id}:{now.isoformat()}:{pid}"[:200],
                   premise=premises.of("restore_manual", g))
        return
    new = transition(old, "dissolve_fallback", now)
    audit.record(session, actor=SYSTEM, action="dissolve_fallback", at=now, group_id=g.id, reason="平台拒绝，改为解散通知",
                 data={"error": error[:300]})
    _put(g, old, new)
    _order(session, g, st, now, settings, actor=SYSTEM)
    g.dissolve_state = st


def finish_platform_work(session: Session, group_id: str, now: datetime, settings, *, restoring: bool,
                         members: int, purging: bool = False, outcome: str = "disbanded") -> None:
    """Every step was taken: the restore is done (active), the dissolution finished, or the purge's
    disband done (``outcome``: ``disbanded``, or ``gone`` when the platform said the group no
    longer exists)."""
    g = _locked(session, group_id)
    if purging:
        if g.status == "dissolved" and (g.dissolve_state or {}).get("purge"):
            _purged(session, g, now, settings, how=outcome)
        return
    if restoring and g.status == RESTORING:
        old = state_of(g)
        new = transition(old, "restore_done", now)
        _put(g, old, new)
        _set_status(g, new.status, now, "恢复")
        audit.record(session, actor=SYSTEM, action="restore_done", at=now, group_id=group_id, reason="成员已重新加入",
                     data={"members": members})
    elif not restoring and g.status == DISSOLVING:
        _finish(session, g, now, settings, actor=SYSTEM)
