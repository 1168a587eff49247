"""What an administrator can do from the dashboard: protect, merge, restore, decide a ledger match.

The same functions the chat commands 保护/恢复/合并 call (``storage.lifecycle``), so the rules
and the hash-chained audit are the same as in chat.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from platforms.capabilities import table
from storage import lifecycle
from storage.models import Group


class ActionError(ValueError):
    """A refusal, with a Chinese message to show."""


def protect(session: Session, group: Group, *, actor: str, now: datetime, settings) -> str:
    try:
        changed = lifecycle.set_protected(session, group, True, now, actor=actor)
    except ValueError as e:  # LifecycleError
        raise ActionError(str(e)) from e
    if not changed:
        return f"“{group.name}”已经是受保护群。"
    lifecycle.groups_changed(session, [group.id], now, settings, actor=actor)
    return f"已将“{group.name}”设为受保护群，不会被自动提醒或解散。"


def restore(session: Session, group: Group, *, actor: str, now: datetime, settings) -> str:
    try:
        result = lifecycle.restore_group(session, group, now, settings, actor=actor)
    except ValueError as e:
        raise ActionError(str(e)) from e
    lifecycle.groups_changed(session, [group.id], now, settings, actor=actor)
    if result == "pending":
        return f"正在恢复“{group.name}”，成员将陆续重新加入。"
    return f"已恢复“{group.name}”。"


def merge(session: Session, group: Group, target: Group, *, actor: str, now: datetime, settings) -> str:
    if group.id == target.id:
        raise ActionError("不能把群合并到它自己。")
    try:
        lifecycle.merge_group(session, group, target, now, settings, capabilities=table(settings), actor=actor)
    except ValueError as e:
        raise ActionError(str(e)) from e
    lifecycle.groups_changed(session, [group.id, target.id], now, settings, actor=actor)
    return f"已将“{group.name}”合并到“{target.name}”，成员已收到通知。"


def confirm_match(session: Session, ledger_id: str, group_id: str, *, actor: str, now: datetime, settings) -> str:
    """台账核对: the ledger entry is this platform group (``storage.reconcile.link``, as 确认 1 in chat)."""
    from storage import reconcile

    try:
        entry_name = reconcile.entry_name(session, ledger_id)
        g = reconcile.link(session, ledger_id, group_id, actor=actor, now=now, settings=settings)
    except reconcile.ReconcileError as e:
        raise ActionError(str(e)) from e
    return f"已确认：台账中的“{entry_name}”就是“{g.name}”，两者已合为一个群。"


def reject_match(session: Session, ledger_id: str, group_ids: list[str], *, actor: str, now: datetime) -> str:
    """台账核对: the entry is none of these groups (never proposed again; as 不是 in chat)."""
    from storage import reconcile

    try:
        entry_name = reconcile.entry_name(session, ledger_id)
        reconcile.reject(session, ledger_id, group_ids, actor=actor, now=now)
    except reconcile.ReconcileError as e:
        raise ActionError(str(e)) from e
    return f"已记录：台账中的“{entry_name}”不是这些群，今后不再提示。"
