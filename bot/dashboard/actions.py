"""What an administrator can do from the dashboard: protect, merge, restore.

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
