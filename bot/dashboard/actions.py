"""What an administrator can do from the dashboard: protect, merge, restore.

The same functions the chat commands call (``storage.lifecycle``: ``set_protected``,
``restore_group``, ``merge_group``), so the rules and the audit are the same as in chat.
``protect_group`` is only a fallback for a tree without ``storage.lifecycle``. Every change goes through the hash-chained audit log.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from storage import audit
from storage.models import Group


class ActionError(ValueError):
    """A refusal, with a Chinese message to show."""


def _lifecycle_module():
    """storage.lifecycle: the functions the chat commands 保护/恢复/合并 call."""
    try:
        from storage import lifecycle
    except ImportError:
        return None
    return lifecycle


def protect_group(session: Session, group: Group, *, actor: str, now: datetime, reason: str | None = None,
                  settings=None) -> str:
    """Mark a group as a standing group (常设群): never warned or dissolved automatically."""
    if group.status not in ("active", "warned"):
        raise ActionError(f"“{group.name}”已不在使用中，不能设为常设群。")
    if group.protected:
        return f"“{group.name}”已经是常设群。"
    was_warned = group.status == "warned"
    group.protected = True
    if was_warned:
        group.status, group.warned_at, group.warning_sent_at = "active", None, None
        group.status_reason = "设为常设群"
    group.status_changed_at = group.updated_at = now
    audit.record(session, actor=actor, action="protect", at=now, group_id=group.id, reason=reason,
                 data={"cleared_warning": was_warned})
    return f"已将“{group.name}”设为常设群，不会被自动解散。"


def protect(session: Session, group: Group, *, actor: str, now: datetime, settings, reason: str | None = None) -> str:
    lifecycle = _lifecycle_module()
    if lifecycle is None or not hasattr(lifecycle, "set_protected"):
        return protect_group(session, group, actor=actor, now=now, reason=reason)
    try:
        changed = lifecycle.set_protected(session, group, True, now, actor=actor)
    except ValueError as e:  # LifecycleError
        raise ActionError(str(e)) from e
    if not changed:
        return f"“{group.name}”已经是常设群。"
    return f"已将“{group.name}”设为常设群，不会被自动解散。"


def restore(session: Session, group: Group, *, actor: str, now: datetime, settings) -> str:
    lifecycle = _lifecycle_module()
    if lifecycle is None:
        raise ActionError("恢复功能需要生命周期模块（storage/lifecycle.py），尚未安装。")
    try:
        result = lifecycle.restore_group(session, group, now, settings, actor=actor)
    except ValueError as e:
        raise ActionError(str(e)) from e
    if result == "pending":
        return f"正在恢复“{group.name}”，成员将陆续重新加入。"
    return f"已恢复“{group.name}”。"


def merge(session: Session, group: Group, target: Group, *, actor: str, now: datetime, settings) -> str:
    if group.id == target.id:
        raise ActionError("不能把群合并到它自己。")
    lifecycle = _lifecycle_module()
    if lifecycle is None:
        raise ActionError("合并功能需要生命周期模块（storage/lifecycle.py），尚未安装。")
    try:
        lifecycle.merge_group(session, group, target, now, settings, actor=actor)
    except ValueError as e:
        raise ActionError(str(e)) from e
    return f"已将“{group.name}”合并到“{target.name}”，成员已收到通知。"
