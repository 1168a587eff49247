"""The group lifecycle as a pure state machine, the intermediate states included.

States: ``active``, ``warned``, ``dissolving`` (the intent is recorded, platform steps are
under way), ``restoring`` (members are being re-added on the platform), ``dissolved``,
``purged`` (final), ``merged`` (final).

================  ======================  =============  ==========================================
action            from                    to             guard / effect
================  ======================  =============  ==========================================
warn              active                  warned         not protected; sets ``warned_at``
warning_sent      warned                  warned         the outbox delivered the warning (once):
                                                         ``warning_sent_at``, the grace starts
unwarn            warned                  active         the sweep: no longer qualifies
keep              active, warned          active         保留/veto: ``kept_until = now + keep_days``,
                                                         ``keep_count += 1``, warning cleared
renew             active, warned          active         续期: optional new ``expires_at``, warning
                                                         cleared
dissolve          warned                  dissolving     not protected; the warning was SENT and
                                                         ``now - warning_sent_at >= grace_days``;
                                                         records the platform ``method`` (an
                                                         ``order`` gets a deadline)
merge             active, warned          dissolving     not protected; records ``merged_into``;
                                                         ends ``merged``
dissolve_fallback dissolving (appchat)    dissolving     the platform refused a step: the owner
                                                         gets an order with a deadline instead
escalate          dissolving (order)      dissolving     the order's deadline passed (once)
finish            dissolving              dissolved,     the platform side is done (``final_status``
                                          merged         says which); ``dissolved_at = now``
restore           dissolving              active,        恢复 cancels a dissolution under way; an
                                          restoring      appchat one whose members were already
                                                         removed or renamed is undone (restoring)
restore           dissolved               active,        ``now - dissolved_at < restore_days``; an
                                          restoring      appchat group gets its members back first
restore_done      restoring               active         the members are back (or the platform
                                                         refused: the owner re-adds them)
purge             dissolved               purged         ``now - dissolved_at >= restore_days``
protect           any but dissolving,     the same       protecting a warned group withdraws the
                  restoring               (warned →      warning
                                          active)
unprotect         any                     the same
link              active, warned          the same       a confirmed ledger entry joins the group
                                                         (storage.reconcile.link): state unchanged
================  ======================  =============  ==========================================

Anything else raises :class:`LifecycleError` with a Chinese message that can be shown
to the person who asked.  :func:`next_step` is what the periodic sweep asks: given a
group, when its warning was sent and which findings it has now, is the next automatic
step ``"warn"``, ``"dissolve"`` or ``"purge"`` (or nothing)?  Only zombie and expired
findings lead to an automatic dissolve; duplicate/overlap findings lead to a warning and
then wait for an administrator to merge.

Pure: no I/O, ``now`` is an argument.  ``storage.lifecycle`` loads a :class:`GroupState` from
a group's row, asks :func:`transition` and writes the returned state back.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from governance import labels
from governance.model import GroupFacts, Params
from governance.rules import AUTO_DISSOLVE_KINDS, KEEP_EXEMPT_KINDS, WARN_KINDS  # noqa: F401  (declared per kind)

STATES = ("active", "warned", "dissolving", "restoring", "dissolved", "purged", "merged")
FINAL_STATES = frozenset({"purged", "merged"})
LIVE = ("active", "warned")

#: dissolution methods (how the platform lets a group be dissolved, see governance.capabilities)
APPCHAT, BRIDGE, ORDER = "appchat", "bridge", "order"
ORDER_DAYS = 3  # days the owner has to carry out a dissolution order by hand
#: the platform steps of an appchat dissolution and of its undoing, in order
DISSOLVE_STEPS = ("notice", "remove", "rename")
RESTORE_STEPS = ("add", "rename", "notice")
#: the platform step of a purge where the platform can really disband (Capabilities.purge)
PURGE_STEPS = ("disband",)
SOFT = APPCHAT  # the soft dissolve, on any platform that removes members and renames (code kept)

_ALL = frozenset(STATES)
#: (from, action) -> the states it may lead to (the guards below pick one)
TRANSITIONS: dict[tuple[str, str], frozenset[str]] = {
    ("active", "warn"): frozenset({"warned"}),
    ("warned", "warning_sent"): frozenset({"warned"}),
    ("warned", "unwarn"): frozenset({"active"}),
    ("active", "keep"): frozenset({"active"}),
    ("warned", "keep"): frozenset({"active"}),
    ("active", "renew"): frozenset({"active"}),
    ("warned", "renew"): frozenset({"active"}),
    ("warned", "dissolve"): frozenset({"dissolving"}),
    ("active", "merge"): frozenset({"dissolving"}),
    ("warned", "merge"): frozenset({"dissolving"}),
    ("dissolving", "dissolve_fallback"): frozenset({"dissolving"}),
    ("dissolving", "escalate"): frozenset({"dissolving"}),
    ("dissolving", "finish"): frozenset({"dissolved", "merged"}),
    ("dissolving", "restore"): frozenset({"active", "restoring"}),
    ("dissolved", "restore"): frozenset({"active", "restoring"}),
    ("restoring", "restore_done"): frozenset({"active"}),
    ("dissolved", "purge"): frozenset({"purged"}),
    **{(s, "protect"): frozenset({"active" if s == "warned" else s}) for s in STATES
       if s not in ("dissolving", "restoring")},
    **{(s, "unprotect"): frozenset({s}) for s in STATES},
    ("active", "link"): frozenset({"active"}),
    ("warned", "link"): frozenset({"warned"}),
}
ACTIONS = frozenset(a for _, a in TRANSITIONS)  # the names users read: governance.labels
_PROTECTED_REFUSES = ("warn", "dissolve", "merge")


#: 撤销: a person's own last change, within this window, of these kinds (their Chinese names)
UNDO_WINDOW = timedelta(minutes=10)
UNDOABLE = {"renew": "续期", "keep": "保留", "done": "完成"}
#: the columns a change that can be undone is recorded with (before it) and restored from
UNDO_FIELDS = ("status", "kept_until", "keep_count", "expires_at", "warned_at", "temporary", "done_at",
               "status_changed_at", "status_reason")


def check_undo(action: str | None, at: datetime | None, now: datetime, *, changed_since: bool) -> None:
    """Whether a person's last change (``action`` recorded ``at``) may be undone ``now``: only a
    续期, 保留 or 完成, within :data:`UNDO_WINDOW`, with nothing done to the group since."""
    if action is None or at is None:
        raise LifecycleError(f"您最近{int(UNDO_WINDOW.total_seconds() // 60)}分钟内没有可以撤销的操作（续期、保留、完成）。")
    if action not in UNDOABLE:
        raise LifecycleError("您刚才的操作不能撤销。")
    if now - at > UNDO_WINDOW:
        raise LifecycleError(f"已超过{int(UNDO_WINDOW.total_seconds() // 60)}分钟，不能撤销了。"
                             "如需改回，请重新发送相应的命令。")
    if changed_since:
        raise LifecycleError(f"这个群在您{UNDOABLE[action]}之后又有了变动，不能撤销了。")


class LifecycleError(ValueError):
    """An illegal lifecycle move; ``str(err)`` is Chinese and user-presentable."""


@dataclass(frozen=True)
class GroupState:
    """A group's lifecycle, as its row holds it.  ``steps_done``, ``escalated`` and
    ``final_status`` come from the recorded dissolution (``dissolve_state``)."""

    status: str = "active"
    protected: bool = False
    warned_at: datetime | None = None
    warning_sent_at: datetime | None = None
    kept_until: datetime | None = None
    keep_count: int = 0
    expires_at: date | None = None
    dissolved_at: datetime | None = None
    merged_into: str | None = None
    dissolve_method: str | None = None
    order_deadline: datetime | None = None
    steps_done: tuple[str, ...] = ()
    escalated: bool = False
    final_status: str | None = None
    name: str = ""


#: the fields a transition may change that live in the group's own columns
COLUMN_FIELDS = ("status", "protected", "warned_at", "warning_sent_at", "kept_until", "keep_count", "expires_at",
                 "dissolved_at", "merged_into", "dissolve_method", "order_deadline")


def allowed(state: GroupState, action: str) -> bool:
    """Whether ``action`` may start from ``state.status`` at all (the guards aside)."""
    return (state.status, "keep" if action == "veto" else action) in TRANSITIONS


def transition(
    state: GroupState,
    action: str,
    now: datetime,
    params: Params = Params(),
    *,
    expires_at: date | None = None,
    merged_into: str | None = None,
    method: str | None = None,
) -> GroupState:
    """Apply ``action`` to ``state`` at ``now``; raises :class:`LifecycleError`."""
    if action == "veto":
        action = "keep"
    if action not in ACTIONS:
        raise LifecycleError("未知操作")
    name = labels.action(action)
    targets = TRANSITIONS.get((state.status, action))
    if targets is None:
        if action == "protect" and state.status in ("dissolving", "restoring"):
            raise LifecycleError(f"“{state.name}”正在解散或恢复中，请先回复“恢复 {state.name}”")
        raise LifecycleError(f"群当前状态为“{labels.status(state.status)}”，不能{name}")
    if action in _PROTECTED_REFUSES and state.protected:
        raise LifecycleError(f"受保护群不能{name}")
    [target] = targets if len(targets) == 1 else [None]
    if action == "warn":
        return replace(state, status=target, warned_at=now, warning_sent_at=None)
    if action == "warning_sent":
        if state.warning_sent_at is not None:
            raise LifecycleError("提醒已送达")
        return replace(state, warning_sent_at=now)
    if action == "unwarn":
        return replace(state, status=target, warned_at=None, warning_sent_at=None)
    if action == "keep":
        return replace(state, status=target, kept_until=now + timedelta(days=params.keep_days),
                       keep_count=state.keep_count + 1, warned_at=None, warning_sent_at=None)
    if action == "renew":
        return replace(state, status=target, expires_at=expires_at if expires_at is not None else state.expires_at,
                       warned_at=None, warning_sent_at=None)
    if action in ("dissolve", "merge"):
        if action == "dissolve":
            if state.warning_sent_at is None:
                raise LifecycleError("提醒尚未送达群主，不能解散")
            left = state.warning_sent_at + timedelta(days=params.grace_days) - now
            if left > timedelta(0):
                raise LifecycleError(f"提醒送达后需等待{params.grace_days}天才能解散（还差{_fmt(left)}）")
        if method not in (APPCHAT, BRIDGE, ORDER):
            raise LifecycleError("未知的解散方式")
        return replace(state, status=target, dissolve_method=method,
                       merged_into=merged_into if action == "merge" else state.merged_into,
                       order_deadline=now + timedelta(days=ORDER_DAYS) if method == ORDER else None,
                       steps_done=(), escalated=False, final_status="merged" if action == "merge" else "dissolved")
    if action == "dissolve_fallback":
        if state.dissolve_method != APPCHAT:
            raise LifecycleError("只有机器人移出成员的解散才能改为通知群主")
        return replace(state, dissolve_method=ORDER, order_deadline=now + timedelta(days=ORDER_DAYS))
    if action == "escalate":
        if state.dissolve_method != ORDER or state.order_deadline is None or state.order_deadline > now:
            raise LifecycleError("解散通知尚未逾期")
        if state.escalated:
            raise LifecycleError("已上报过")
        return replace(state, escalated=True)
    if action == "finish":
        final = state.final_status or "dissolved"
        if final not in targets:
            raise LifecycleError("未知的解散结果")
        return replace(state, status=final, dissolved_at=now, order_deadline=None)
    if action == "restore":
        kept = now + timedelta(days=params.keep_days)  # wanted: not proposed again for keep_days
        if state.status == "dissolving":
            started = state.dissolve_method == APPCHAT and bool(set(state.steps_done) & {"remove", "rename"})
            if started:  # members already out or the name changed: undo on the platform first
                return replace(state, status="restoring", kept_until=kept, order_deadline=None)
            return replace(state, status="active", kept_until=kept, order_deadline=None,
                           warned_at=None, warning_sent_at=None)
        _restore_window(state, action, now, params)
        if state.dissolve_method == APPCHAT:
            return replace(state, status="restoring", kept_until=kept, warned_at=None, warning_sent_at=None)
        return replace(state, status="active", kept_until=kept, dissolved_at=None, warned_at=None,
                       warning_sent_at=None)
    if action == "restore_done":
        return replace(state, status=target, dissolved_at=None)
    if action == "purge":
        _restore_window(state, action, now, params)
        return replace(state, status=target)
    if action == "protect":
        if state.status == "warned":
            return replace(state, status=target, protected=True, warned_at=None, warning_sent_at=None)
        return replace(state, protected=True)
    if action == "link":
        return state
    # unprotect
    return replace(state, protected=False)


def _restore_window(state: GroupState, action: str, now: datetime, params: Params) -> None:
    if state.dissolved_at is None:
        raise LifecycleError("缺少解散时间，无法判断恢复期")
    in_window = now - state.dissolved_at < timedelta(days=params.restore_days)
    if action == "restore" and not in_window:
        raise LifecycleError(f"已超过{params.restore_days}天恢复期，不能恢复")
    if action == "purge" and in_window:
        raise LifecycleError(f"仍在{params.restore_days}天恢复期内，不能清除")


def mark_warning_sent(state: GroupState, sent_at: datetime) -> GroupState:
    """Record that the warning reached the owner (the grace period starts here)."""
    if state.status != "warned":
        raise LifecycleError("群未处于“已提醒”状态")
    return transition(state, "warning_sent", sent_at)


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
    if group.protected or group.status not in LIVE:
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
