"""What an administrator can do from the dashboard: protect, merge, restore.

The same functions the chat commands call are used when ``storage.lifecycle`` provides them;
``protect_group`` is the small shared function used until then (and by the 保护 command if it
wants it). Every change goes through the hash-chained audit log.
"""
from __future__ import annotations

import inspect
from datetime import datetime

from sqlalchemy.orm import Session

from storage import audit
from storage.models import Group


class ActionError(ValueError):
    """A refusal, with a Chinese message to show."""


def _lifecycle(name: str):
    try:
        from storage import lifecycle
    except ImportError:
        return None
    return getattr(lifecycle, name, None)


def _call(fn, **kw):
    """Call a lifecycle function with the keyword arguments it accepts."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fn(**kw)
    return fn(**{k: v for k, v in kw.items() if k in params})


def _result_text(result, default: str) -> str:
    if result is None:
        return default
    for attr in ("text", "message"):
        if isinstance(getattr(result, attr, None), str):
            return getattr(result, attr)
    return result if isinstance(result, str) else default


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
    fn = _lifecycle("protect") or _lifecycle("protect_group")
    if fn is None:
        return protect_group(session, group, actor=actor, now=now, reason=reason)
    return _result_text(_call(fn, session=session, group=group, actor=actor, now=now, at=now, settings=settings,
                              reason=reason), f"已将“{group.name}”设为常设群。")


def restore(session: Session, group: Group, *, actor: str, now: datetime, settings) -> str:
    fn = _lifecycle("restore") or _lifecycle("restore_group")
    if fn is None:
        raise ActionError("恢复功能需要生命周期模块（storage/lifecycle.py），尚未安装。")
    return _result_text(_call(fn, session=session, group=group, actor=actor, now=now, at=now, settings=settings),
                        f"已恢复“{group.name}”。")


def merge(session: Session, group: Group, target: Group, *, actor: str, now: datetime, settings) -> str:
    if group.id == target.id:
        raise ActionError("不能把群合并到它自己。")
    fn = _lifecycle("merge") or _lifecycle("merge_groups")
    if fn is None:
        raise ActionError("合并功能需要生命周期模块（storage/lifecycle.py），尚未安装。")
    return _result_text(_call(fn, session=session, group=group, source=group, target=target, into=target,
                              actor=actor, now=now, at=now, settings=settings),
                        f"已将“{group.name}”合并到“{target.name}”。")
