"""The group lifecycle as a pure state machine.

States: ``active``, ``warned``, ``dissolved``, ``purged`` (final), ``merged`` (final).

=========  ===================  ===========  ==============================================
action     from                 to           guard / effect
=========  ===================  ===========  ==============================================
warn       active               warned       not protected; sets ``warned_at``
                                             (``warning_sent_at`` is set later by
                                             :func:`mark_warning_sent` when the outbox
                                             really delivered it)
keep       active, warned       active       保留/veto: ``kept_until = now + keep_days``,
                                             ``keep_count += 1``, warning cleared
renew      active, warned       active       续期: optional new ``expires_at``, warning
                                             cleared
dissolve   warned               dissolved    not protected; the warning was SENT and
                                             ``now - warning_sent_at >= grace_days``
restore    dissolved            active       ``now - dissolved_at < restore_days``
purge      dissolved            purged       ``now - dissolved_at >= restore_days``
merge      active, warned       merged       not protected (a protected group is never
                                             merged away); records ``merged_into``
=========  ===================  ===========  ==============================================

Anything else raises :class:`LifecycleError` with a Chinese message that can be shown
to the person who asked.  :func:`next_step` is what the periodic sweep asks: given a
group, when its warning was sent and which findings it has now, is the next automatic
step ``"warn"``, ``"dissolve"`` or ``"purge"`` (or nothing)?  Only zombie and expired
findings lead to an automatic dissolve; duplicate/overlap findings lead to a warning and
then wait for an administrator to merge.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from governance import labels
from governance.model import GroupFacts, Params
from governance.rules import AUTO_DISSOLVE_KINDS, KEEP_EXEMPT_KINDS, WARN_KINDS  # noqa: F401  (declared per kind)

STATES = ("active", "warned", "dissolved", "purged", "merged")
TRANSITIONS: dict[tuple[str, str], str] = {
    ("active", "warn"): "warned",
    ("active", "keep"): "active",
    ("warned", "keep"): "active",
    ("active", "renew"): "active",
    ("warned", "renew"): "active",
    ("warned", "dissolve"): "dissolved",
    ("dissolved", "restore"): "active",
    ("dissolved", "purge"): "purged",
    ("active", "merge"): "merged",
    ("warned", "merge"): "merged",
}
ACTIONS = frozenset(a for _, a in TRANSITIONS)  # the names users read: governance.labels


class LifecycleError(ValueError):
    """An illegal lifecycle move; ``str(err)`` is Chinese and user-presentable."""


@dataclass(frozen=True)
class GroupState:
    status: str = "active"
    protected: bool = False
    warned_at: datetime | None = None
    warning_sent_at: datetime | None = None
    kept_until: datetime | None = None
    keep_count: int = 0
    expires_at: date | None = None
    dissolved_at: datetime | None = None
    merged_into: str | None = None


def transition(
    state: GroupState,
    action: str,
    now: datetime,
    params: Params = Params(),
    *,
    expires_at: date | None = None,
    merged_into: str | None = None,
) -> GroupState:
    """Apply ``action`` to ``state`` at ``now``; raises :class:`LifecycleError`."""
    if action == "veto":
        action = "keep"
    if action not in ACTIONS:
        raise LifecycleError("未知操作")
    name = labels.action(action)
    target = TRANSITIONS.get((state.status, action))
    if target is None:
        raise LifecycleError(f"群当前状态为“{labels.status(state.status)}”，不能{name}")
    if action in ("warn", "dissolve", "merge") and state.protected:
        raise LifecycleError(f"受保护群不能{name}")
    if action == "warn":
        return replace(state, status=target, warned_at=now, warning_sent_at=None)
    if action == "keep":
        return replace(
            state,
            status=target,
            kept_until=now + timedelta(days=params.keep_days),
            keep_count=state.keep_count + 1,
            warned_at=None,
            warning_sent_at=None,
        )
    if action == "renew":
        return replace(
            state,
            status=target,
            expires_at=expires_at if expires_at is not None else state.expires_at,
            warned_at=None,
            warning_sent_at=None,
        )
    if action == "dissolve":
        if state.warning_sent_at is None:
            raise LifecycleError("提醒尚未送达群主，不能解散")
        left = state.warning_sent_at + timedelta(days=params.grace_days) - now
        if left > timedelta(0):
            raise LifecycleError(f"提醒送达后需等待{params.grace_days}天才能解散（还差{_fmt(left)}）")
        return replace(state, status=target, dissolved_at=now)
    if action in ("restore", "purge"):
        if state.dissolved_at is None:
            raise LifecycleError("缺少解散时间，无法判断恢复期")
        in_window = now - state.dissolved_at < timedelta(days=params.restore_days)
        if action == "restore" and not in_window:
            raise LifecycleError(f"已超过{params.restore_days}天恢复期，不能恢复")
        if action == "purge" and in_window:
            raise LifecycleError(f"仍在{params.restore_days}天恢复期内，不能清除")
        if action == "restore":
            return replace(state, status=target, dissolved_at=None, warned_at=None, warning_sent_at=None)
        return replace(state, status=target)
    # merge
    return replace(state, status=target, merged_into=merged_into)


def mark_warning_sent(state: GroupState, sent_at: datetime) -> GroupState:
    """Record that the warning reached the owner (the grace period starts here)."""
    if state.status != "warned":
        raise LifecycleError("群未处于“已提醒”状态")
    return replace(state, warning_sent_at=sent_at)


def _fmt(left: timedelta) -> str:
    days, secs = left.days, left.seconds
    if days:
        return f"{days}天{secs // 3600}小时" if secs >= 3600 else f"{days}天"
    return f"{max(secs // 3600, 1)}小时" if secs >= 3600 else f"{max(secs // 60, 1)}分钟"


def next_step(
    group: GroupFacts,
    warning_sent_at: datetime | None,
    finding_kinds: Set[str],
    now: datetime,
    params: Params = Params(),
) -> str | None:
    """The next automatic step for the sweep: ``"warn"``, ``"dissolve"``, ``"purge"`` or None.

    * dissolved and the restore window is over -> ``"purge"``;
    * protected groups: never anything;
    * kept groups (``kept_until > now``) ignore zombie/duplicate/overlap findings;
    * active with a zombie/expired/duplicate/overlap finding -> ``"warn"``;
    * warned with a zombie/expired finding, the warning sent and ``grace_days`` elapsed
      since it was sent -> ``"dissolve"``; otherwise wait (None).
    """
    if group.status == "dissolved":
        if group.dissolved_at is not None and now - group.dissolved_at >= timedelta(days=params.restore_days):
            return "purge"
        return None
    if group.protected or group.status not in ("active", "warned"):
        return None
    kinds = set(finding_kinds) & WARN_KINDS
    if group.kept(now):
        kinds -= KEEP_EXEMPT_KINDS
    if not kinds:
        return None
    if group.status == "active":
        return "warn"
    if (
        kinds & AUTO_DISSOLVE_KINDS
        and warning_sent_at is not None
        and now - warning_sent_at >= timedelta(days=params.grace_days)
    ):
        return "dissolve"
    return None
