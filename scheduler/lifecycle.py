"""The applied sweep and the platform steps of the lifecycle, taken through the platform's sender.

Storage records (``storage.lifecycle``); this module acts on the platforms. An appchat
dissolution is an ordered sequence (final notice in the group → remove the members → rename
``[已解散]…``) that must use the member list recorded before removal; a restore re-adds the
members, renames back and posts a notice. Each step is reported to storage in its own
transaction right after it succeeded, so after a crash the next run takes only the steps left.
Steps are idempotent on replay: members are removed/re-added after reading the chat with
``appchat_get`` (only those still present/absent), a rename to the same name is harmless; only
the final notice can be posted twice if the process dies between the call and the commit
(at-least-once, like the outbox). A transient send error leaves the step for the next run; a
permanent one turns the dissolution into an order to the owner (a restore: the owner re-adds the
members). Without a sender (e.g. a CLI without WeCom credentials) appchat groups wait in
``dissolving`` and are reported.

Used by the scheduled jobs (``scheduler.jobs``: the daily sweep, the every-minute
``advance_pending``) and by ``qunzhi sweep``.
"""
from __future__ import annotations

import logging
from datetime import datetime

from governance import labels
from platforms.base import PermanentSendError, TransientSendError
from platforms.capabilities import table
from storage import lifecycle
from storage.lifecycle import PlatformWork, Step, SweepReport

log = logging.getLogger("qunzhi.lifecycle")


def sweep(db, now: datetime, settings, *, apply: bool = False, sender=None) -> SweepReport:
    """Advance every group's lifecycle at ``now``.  Dry run unless ``apply``.

    ``db`` is a ``storage.db.Database``; ``sender`` a ``platforms.base.Sender`` for the appchat
    steps (None: appchat groups wait in ``dissolving``).  Each group is handled in its own
    transaction; running it twice does nothing more the second time."""
    capabilities = table(settings)
    if not apply:
        return lifecycle.preview_sweep(db, now, settings, capabilities)
    with lifecycle.sweep_lock(db) as held:
        if not held:
            return SweepReport(now=now, applied=True, locked_out=True)
        run = lifecycle.apply_sweep(db, now, settings, capabilities)
        run.report.steps.extend(_advance(db, now, settings, sender))  # what really ran of the "resume" steps
        lifecycle.finish_sweep(db, run, now, settings)
        return run.report


def advance_pending(db, now: datetime, settings, sender) -> list[Step]:
    """Carry out the platform steps of the groups in ``dissolving``/``restoring``, unless a sweep
    (which takes them itself) holds the lock: then nothing is done this time."""
    with lifecycle.sweep_lock(db) as held:
        if not held:
            return []
        return _advance(db, now, settings, sender)


def _advance(db, now: datetime, settings, sender) -> list[Step]:
    with db.session() as s:
        ids = lifecycle.pending_platform_groups(s)
    out = []
    for gid in ids:
        with db.session() as s:
            work = lifecycle.platform_work(s, gid, settings)
        if work is not None:
            out.append(_advance_one(db, work, now, settings, sender))
    return out


def _advance_one(db, work: PlatformWork, now: datetime, settings, sender) -> Step:
    gid = work.group_id
    step = Step(gid, work.name, "resume", "appchat", "恢复" if work.restoring else "解散")
    if sender is None:
        step.result, step.detail = "pending", step.detail + "：等待企业微信发送通道"
        return step
    for name in work.todo:
        try:
            _take(sender, work, name)
        except TransientSendError as e:
            with db.session() as s:
                lifecycle.record_platform_error(s, gid, name, str(e), now, settings, restoring=work.restoring,
                                                permanent=False)
            step.result, step.detail = "pending", f"{step.detail}：{labels.label('step', name)}暂时失败，下次重试"
            return step
        except PermanentSendError as e:
            with db.session() as s:
                lifecycle.record_platform_error(s, gid, name, str(e), now, settings, restoring=work.restoring,
                                                permanent=True)
            step.result, step.detail = "error", f"{step.detail}：平台拒绝{labels.label('step', name)}，已改为人工处理"
            return step
        with db.session() as s:  # record progress right after the call succeeded
            lifecycle.record_platform_step(s, gid, name, restoring=work.restoring)
    with db.session() as s:
        lifecycle.finish_platform_work(s, gid, now, settings, restoring=work.restoring, members=len(work.members))
    step.result = "done"
    return step


def _take(sender, work: PlatformWork, name: str) -> None:
    """One appchat step through the sender."""
    gid = work.group_id
    if name == "notice":
        sender.appchat_send_text(gid, work.notice)
    elif name == "remove":
        current = _chat_members(sender, gid)
        gone = [m for m in work.members if current is None or m in current]
        if gone:
            sender.appchat_update(gid, del_user_list=gone)
    elif name == "rename":
        sender.appchat_update(gid, name=work.rename_to)
    elif name == "add":
        current = _chat_members(sender, gid)
        back = [m for m in work.members if current is None or m not in current]
        if back:
            sender.appchat_update(gid, add_user_list=back)


def _chat_members(sender, chat_id: str) -> set[str] | None:
    """The chat's members as the platform lists them (None: unknown, the recorded list is used)."""
    try:
        info = sender.appchat_get(chat_id)
    except Exception as e:  # unknown membership: the caller falls back to what it recorded
        log.warning("appchat_get(%s) failed, using the recorded member list: %r", chat_id, e)
        return None
    info = info.get("chat_info", info) if isinstance(info, dict) else {}
    users = info.get("userlist") if isinstance(info, dict) else None
    return set(users) if isinstance(users, list) else None
