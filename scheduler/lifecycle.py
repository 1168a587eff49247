"""The applied sweep and the platform steps of the lifecycle, taken through the sender of each
group's own platform, by its ``platforms.base.GroupOps`` methods.

Storage records (``storage.lifecycle``); this module acts on the platforms. A soft dissolution
(method code ``appchat``: WeCom app groups, and any platform whose bot can remove members and
rename) is an ordered sequence (final notice in the group → remove the members → rename
``[已解散]…``) that must use the member list recorded before removal; a restore re-adds the
members, renames back and posts a notice; the purge, after ``restore_days``, calls
``group_disband`` where the platform's ``Capabilities.purge`` says it can (elsewhere storage
purges the record and says the group stays emptied and renamed). Each step is reported to
storage in its own transaction right after it succeeded, so after a crash the next run takes
only the steps left. Steps are idempotent on replay: members are removed/re-added after reading
the group with ``group_members`` (only those still present/absent), a rename to the same name is
harmless, a disband the platform answers with "already dissolved" (``platforms.base.group_gone``)
counts as done; only the final notice can be posted twice if the process dies between the call
and the commit (at-least-once, like the outbox). A transient send error leaves the step for the
next run; a permanent one turns the dissolution into an order to the owner (a restore: the owner
re-adds the members; a purge: the group stays emptied and renamed, and the record says so).
Without a sender for the group's platform (e.g. a CLI without its credentials) the group waits
and is reported.

Senders: ``senders`` maps a registered platform's name (``platforms.registry``) to its sender
(:func:`group_senders` builds it from the settings); ``sender``, one sender for every platform
without an entry, is the older form (the demo, tests).

Used by the scheduled jobs (``scheduler.jobs``: the daily sweep, the every-minute
``advance_pending``) and by ``qunzhi sweep``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from governance import labels
from platforms.base import GroupOps, PermanentSendError, TransientSendError, group_gone
from platforms.capabilities import default_activity, table
from platforms.registry import all_platforms, owner_of
from platforms.wecom.groupops import group_ops
from storage import lifecycle
from storage.activity import fill_activity_sources
from storage.lifecycle import PlatformWork, Step, SweepReport

log = logging.getLogger("qunzhi.lifecycle")


def group_senders(settings=None, channel_senders: Mapping[str, object] | None = None) -> dict[str, GroupOps]:
    """The group operations of every registered platform that sends here: platform name → its
    sender as ``GroupOps``, taken from ``channel_senders`` (``scheduler.routing.build_senders``:
    the same sender instances as the outbox) or built from ``settings``; platforms whose sender
    has no group methods are left out."""
    out: dict[str, GroupOps] = {}
    for platform in all_platforms():
        if channel_senders is not None:
            sender = next((channel_senders[c] for c in platform.channels if c in channel_senders), None)
        else:
            sender = platform.sender(settings)
        ops = group_ops(sender)
        if ops is not None:
            out[platform.name] = ops
    return out


def sweep(db, now: datetime, settings, *, apply: bool = False, sender=None,
          senders: Mapping[str, object] | None = None) -> SweepReport:
    """Advance every group's lifecycle at ``now``.  Dry run unless ``apply``.

    ``db`` is a ``storage.db.Database``; ``senders`` platform name → sender for the platform steps,
    ``sender`` one for every other platform (None for both: those groups wait in ``dissolving``).
    Each group is handled in its own transaction; running it twice does nothing more the second
    time."""
    capabilities = table(settings)
    if not apply:
        return lifecycle.preview_sweep(db, now, settings, capabilities)
    with lifecycle.sweep_lock(db) as held:
        if not held:
            return SweepReport(now=now, applied=True, locked_out=True)
        with db.session() as s:  # before the findings: every idle finding names its activity source
            fill_activity_sources(s, default_activity)
        run = lifecycle.apply_sweep(db, now, settings, capabilities)
        run.report.steps.extend(_advance(db, now, settings, sender, senders))  # what really ran of "resume"
        lifecycle.finish_sweep(db, run, now, settings)
        return run.report


def advance_pending(db, now: datetime, settings, sender=None, *,
                    senders: Mapping[str, object] | None = None) -> list[Step]:
    """Carry out the platform steps of the groups in ``dissolving``/``restoring`` (and the
    purges waiting for their disband), unless a sweep (which takes them itself) holds the lock:
    then nothing is done this time."""
    with lifecycle.sweep_lock(db) as held:
        if not held:
            return []
        return _advance(db, now, settings, sender, senders)


def _advance(db, now: datetime, settings, sender, senders) -> list[Step]:
    with db.session() as s:
        ids = lifecycle.pending_platform_groups(s)
    out = []
    for gid in ids:
        with db.session() as s:
            work = lifecycle.platform_work(s, gid, settings)
        if work is not None:
            out.append(_advance_one(db, work, now, settings, _ops_for(work, sender, senders)))
    return out


def _ops_for(work: PlatformWork, sender, senders) -> GroupOps | None:
    owner = owner_of(work.platform)
    name = owner.name if owner is not None else work.platform
    if isinstance(sender, Mapping):  # a map given positionally
        senders, sender = sender, None
    chosen = (senders or {}).get(name) if senders else None
    return group_ops(chosen if chosen is not None else sender)


def _what(work: PlatformWork) -> str:
    return "清除" if work.purging else "恢复" if work.restoring else "解散"


def _advance_one(db, work: PlatformWork, now: datetime, settings, ops: GroupOps | None) -> Step:
    gid = work.group_id
    step = Step(gid, work.name, "resume", "appchat", _what(work))
    flags = {"restoring": work.restoring, "purging": work.purging}
    if ops is None:
        owner = owner_of(work.platform)
        title = owner.title if owner is not None else labels.label("platform", work.platform)
        step.result, step.detail = "pending", f"{step.detail}：等待{title}的发送通道"
        return step
    outcome = "disbanded"
    for name in work.todo:
        try:
            _take(ops, work, name)
        except (TransientSendError, PermanentSendError) as e:
            if name == "disband" and group_gone(ops, e):
                log.info("group_disband(%s): already gone on the platform (%s)", work.chat_id, e)
                outcome = "gone"
            elif isinstance(e, TransientSendError):
                with db.session() as s:
                    lifecycle.record_platform_error(s, gid, name, str(e), now, settings, permanent=False, **flags)
                step.result, step.detail = "pending", f"{step.detail}：{labels.label('step', name)}暂时失败，下次重试"
                return step
            else:
                with db.session() as s:
                    lifecycle.record_platform_error(s, gid, name, str(e), now, settings, permanent=True, **flags)
                after = "群已清空成员并改名保留" if work.purging else "已改为人工处理"
                step.result, step.detail = "error", f"{step.detail}：平台拒绝{labels.label('step', name)}，{after}"
                return step
        with db.session() as s:  # record progress right after the call succeeded
            lifecycle.record_platform_step(s, gid, name, **flags)
    with db.session() as s:
        lifecycle.finish_platform_work(s, gid, now, settings, members=len(work.members), outcome=outcome, **flags)
    step.result = "done"
    return step


def _take(ops: GroupOps, work: PlatformWork, name: str) -> None:
    """One platform step through the group's platform's ``GroupOps``."""
    chat = work.chat_id or work.group_id
    if name == "notice":
        ops.group_notice(chat, work.notice)
    elif name == "remove":
        current = _chat_members(ops, chat)
        gone = [m for m in work.members if current is None or m in current]
        if gone:
            ops.group_remove(chat, gone)
    elif name == "rename":
        ops.group_rename(chat, work.rename_to)
    elif name == "add":
        current = _chat_members(ops, chat)
        back = [m for m in work.members if current is None or m not in current]
        if back:
            ops.group_add(chat, back)
    elif name == "disband":
        ops.group_disband(chat)


def _chat_members(ops: GroupOps, chat_id: str) -> set[str] | None:
    """The group's members as the platform lists them (None: unknown, the recorded list is used)."""
    try:
        return ops.group_members(chat_id)
    except Exception as e:  # unknown membership: the caller falls back to what it recorded
        log.warning("group_members(%s) failed, using the recorded member list: %r", chat_id, e)
        return None
