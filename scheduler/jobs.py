"""The scheduled jobs. Every job is the module-level ``run_job(name, key)`` (a picklable reference
stored in the jobstore) that finds the runtime in ``scheduler.registry``, as python-telegram-bot's
JobQueue does; the job bodies below take the runtime.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import select

from governance.dates import fmt_date
from governance.worktime import WorkTime, is_working_time
from scheduler import registry
from storage import audit, premises
from storage.models import AuditRecord, Group, Membership, Notice, OutboxMessage, Person, PulseAsk

log = logging.getLogger("qunzhi.jobs")

REMINDER_DAYS = (1, 3, 7)
LOOKBACK_DAYS = 30
_lifecycle_lock = threading.Lock()  # sweep and advance_pending, never together in one process
_findings_lock = threading.Lock()  # one hourly findings refresh at a time


def run_job(name: str, key: str = registry.DEFAULT_KEY):
    """The one entry point stored in the jobstore."""
    rt = registry.get(key)
    fn = JOBS[name]
    try:
        return fn(rt)
    except Exception:
        log.exception("job %s failed", name)
        raise


def _wt(rt) -> WorkTime:
    return WorkTime.from_settings(rt.settings)


def senders_for(rt) -> dict:
    """The runtime's sender of every channel: ``scheduler.routing.build_senders(settings)``, built
    once per runtime; a sender set as ``rt.sender`` (the demo, unit tests) serves every channel."""
    one = getattr(rt, "sender", None)
    if one is not None:
        from scheduler.routing import CHANNELS

        return {c: one for c in CHANNELS}
    built = getattr(rt, "senders", None)
    if built is None:
        from scheduler.routing import build_senders

        built = rt.senders = build_senders(rt.settings)
    return built


def sender_for(rt):
    """The WeCom app's sender (appchat groups), or None without the app (kept for callers of old)."""
    return senders_for(rt).get("appchat")


def group_senders_for(rt) -> dict:
    """Platform name → the ``GroupOps`` of its sender, for the lifecycle's platform steps (the
    same sender instances as the outbox: ``scheduler.lifecycle.group_senders``); a sender set as
    ``rt.sender`` serves every platform."""
    from platforms.registry import all_platforms
    from scheduler.lifecycle import group_senders

    one = getattr(rt, "sender", None)
    if one is not None:
        return {p.name: one for p in all_platforms()}
    return group_senders(channel_senders=senders_for(rt))


# --- lifecycle (scheduler.lifecycle takes the platform steps, storage.lifecycle records) -----
def sweep(rt):
    from scheduler.lifecycle import sweep as lifecycle_sweep

    with _lifecycle_lock:  # not alongside advance_pending (see there)
        report = lifecycle_sweep(rt.db, rt.now(), rt.settings, apply=True, senders=group_senders_for(rt))
    log.info("sweep: %s", getattr(report, "counts", lambda: report)())
    return report


def advance_pending(rt) -> list:
    """Every minute: carry out the platform steps of dissolutions, restores and purges still
    waiting (``dissolving``/``restoring``, a purge's disband), so a 恢复 takes effect within a minute instead of at the
    next daily sweep. Without a sender (local mode) there is nothing to carry out.

    Never runs alongside a sweep (which advances the same groups): in this process the two
    share ``_lifecycle_lock``; across processes the sweep's PostgreSQL advisory lock is taken
    too (``scheduler.lifecycle.advance_pending``), and a minute when it is busy is simply skipped."""
    from scheduler.lifecycle import advance_pending as lifecycle_advance

    senders = group_senders_for(rt)
    if not senders:
        return []
    if not _lifecycle_lock.acquire(blocking=False):
        return []  # a sweep is running in this process; it advances these groups itself
    try:
        steps = lifecycle_advance(rt.db, rt.now(), rt.settings, senders=senders)
    finally:
        _lifecycle_lock.release()
    if steps:
        log.info("advance_pending: %s", [(st.group_id, st.result) for st in steps])
    return steps


def platform_requests(rt) -> dict:
    """Every minute: the platform work chat commands asked for (建群), outside their transactions
    (``scheduler.platform_work``)."""
    from scheduler.platform_work import run_requests

    senders = group_senders_for(rt)
    return run_requests(rt.db, rt.now(), rt.settings, senders)


def sync_groups(rt) -> dict:
    """Every few hours: the groups each platform that can list them (``Capabilities.list_groups``)
    says the bot is in, recorded as seen with their members (``storage.sync``). A platform that
    answers "rate limited" stops this run for it (what was read so far is kept); any other error
    skips it until the next run."""
    from platforms.base import SendError, TransientSendError
    from platforms.registry import all_platforms
    from storage.sync import Listed, record_listed

    senders = group_senders_for(rt)
    out: dict[str, dict] = {}
    for platform in all_platforms():
        ops = senders.get(platform.name)
        if not platform.capabilities.list_groups or ops is None:
            continue
        counts = out[platform.name] = {"listed": 0, "new": 0, "renamed": 0, "members_added": 0,
                                       "members_removed": 0, "stopped": ""}
        try:
            infos = ops.list_groups()
        except SendError as e:
            counts["stopped"] = "rate_limited" if getattr(e, "rate_limited", False) else "error"
            log.warning("sync_groups: %s list_groups failed: %s", platform.name, e)
            continue
        counts["listed"] = len(infos)
        for info in infos:
            members = info.member_ids
            if members is None:
                try:
                    found = ops.group_members(info.chat_id)
                except TransientSendError as e:
                    if e.rate_limited:
                        counts["stopped"] = "rate_limited"
                        log.info("sync_groups: %s rate limited, stopping this run", platform.name)
                        break
                    found = None
                except SendError as e:
                    log.warning("sync_groups: %s group_members(%s) failed: %s", platform.name, info.chat_id, e)
                    found = None
                members = tuple(sorted(found)) if found is not None else None
            with rt.db.session() as s:
                got = record_listed(s, platform.name, [Listed(info.chat_id, info.name, members)], rt.now(),
                                    activity=platform.capabilities.activity)
            for k, v in got.items():
                counts[k] += v
    if out:
        log.info("sync_groups: %s", out)
    return out


def deadlines(rt):
    """Grace and restore deadlines between daily sweeps: dissolve/purge what is due now.

    Warnings are written by the sweep as urgent notices; their grace starts when the outbox
    delivered them (``mark_warning_sent``), so a warning held by working time or the budget
    delays the dissolution instead of shortening the grace."""
    now = rt.now()
    s_grace = timedelta(days=rt.settings.grace_days)
    s_restore = timedelta(days=rt.settings.restore_days)
    with rt.db.session() as s:
        due = s.execute(select(Group.id).where(
            ((Group.status == "warned") & Group.warning_sent_at.is_not(None) & (Group.warning_sent_at <= now - s_grace))
            | ((Group.status == "dissolved") & Group.dissolved_at.is_not(None) & (Group.dissolved_at <= now - s_restore))
        ).limit(1)).first()
    if due is not None:
        return sweep(rt)
    return None


# --- reminders -------------------------------------------------------------------------------
def expiry_reminders(rt) -> int:
    """Remind owners 7, 3 and 1 days before a temporary group ends (one reminder per milestone;
    after downtime only the nearest milestone is sent)."""
    from storage.outbox import notify

    now = rt.now()
    today = now.astimezone(rt.settings.tz).date()
    queued = 0
    with rt.db.session() as s:
        rows = s.execute(select(Group).where(Group.temporary.is_(True), Group.protected.is_(False),
                                             Group.status == "active", Group.owner_id.is_not(None),
                                             Group.expires_at.is_not(None), Group.done_at.is_(None),
                                             Group.expires_at > today,
                                             Group.expires_at <= today + timedelta(days=max(REMINDER_DAYS)))
                         ).scalars().all()
        for g in rows:
            left = (g.expires_at - today).days
            milestone = min(d for d in REMINDER_DAYS if d >= left)
            notify(s, person_id=g.owner_id, kind="expiry", group_id=g.id, at=now,
                   text=f"“{g.name}”将于{fmt_date(g.expires_at, today)}到期（还有{left}天）。"
                        f"任务完成请回复“完成 {g.name}”，需要延长请回复“续期 {g.name} 30天”。",
                   dedupe_key=f"expiry:{g.id}:{g.expires_at.isoformat()}:{milestone}", premise=premises.of("expiry", g))
            queued += 1
    return queued


def refresh_findings(rt) -> int:
    """Hourly: every rule over the whole ledger, persisted (the dashboard's 问题清单). Commands
    refresh only their groups' per-group rules; this catches the member-set rules and activity.
    Skipped while this process sweeps (the sweep refreshes them itself); it does not take the
    lifecycle lock, so the every-minute ``advance_pending`` is not held up by it."""
    from platforms.capabilities import default_activity
    from storage.activity import fill_activity_sources
    from storage.lifecycle import refresh_findings as lifecycle_refresh

    if _lifecycle_lock.locked() or not _findings_lock.acquire(blocking=False):
        return 0
    try:
        with rt.db.session() as s:
            fill_activity_sources(s, default_activity)  # groups the ingest path created since
            found = lifecycle_refresh(s, rt.now(), rt.settings)
    finally:
        _findings_lock.release()
    log.info("refresh_findings: %d open", len(found))
    return len(found)


def reconcile_reviews(rt) -> int:
    """Daily: the ambiguous ledger matches are asked to the unit administrators (``确认 1`` / ``不是``),
    as notices batched into their digest (``storage.reconcile.ask_reviews``)."""
    from storage.reconcile import ask_reviews

    with rt.db.session() as s:
        n = ask_reviews(s, rt.now(), rt.settings)
    log.info("reconcile_reviews: %d question(s) queued", n)
    return n


def deliver_notices(rt):
    """Turn due notices into digests within working time and the weekly budget."""
    from storage.notices import deliver_due_notices

    with rt.db.session() as s:
        return deliver_due_notices(s, now=rt.now(), budget=rt.settings.weekly_message_budget, wt=_wt(rt))


# --- feedback --------------------------------------------------------------------------------
def weekly_pulse(rt) -> int:
    """Ask the one-tap pulse to people not asked for two weeks who have budget left this week."""
    from storage.feedback import PULSE_EVERY, PULSE_FALLBACK_TEXT, pulse_card
    from storage.outbox import person_channel
    from storage.notices import used_budget
    import secrets

    now = rt.now()
    wt = _wt(rt)
    if not is_working_time(now, wt):
        return 0
    asked = 0
    with rt.db.session() as s:
        people = s.execute(select(Person.id).where(Person.role.in_(("cadre", "unit_admin")))
                           .where(Person.id.in_(select(Membership.person_id))).order_by(Person.id)).scalars().all()
        for pid in people:
            last = s.get(PulseAsk, pid)
            if last is not None and now - last.asked_at < PULSE_EVERY:
                continue
            if used_budget(s, pid, now, wt) >= rt.settings.weekly_message_budget:
                continue
            task_id = "pulse:" + secrets.token_hex(8)
            channel = person_channel(pid)
            msg = OutboxMessage(created_at=now, channel=channel, recipient=pid, kind="pulse",
                                payload={"card": pulse_card(task_id), "text": PULSE_FALLBACK_TEXT},
                                status="pending", attempts=0, next_attempt_at=now)
            s.add(msg)
            s.flush()
            s.add(Notice(person_id=pid, kind="pulse", text=PULSE_FALLBACK_TEXT, due_at=now, created_at=now,
                         status="sent", decided_at=now, outbox_id=msg.id))
            if last is None:
                s.add(PulseAsk(person_id=pid, asked_at=now))
            else:
                last.asked_at = now
            asked += 1
    return asked


def close_anonymous_windows(rt) -> dict:
    """Daily after local midnight: destroy the salts of closed anonymous windows, make their votes'
    keys random and drop their dedupe rows (``storage.feedback.close_windows``), then resolve
    useless findings whose window no longer meets the threshold."""
    from storage.feedback import close_windows, refresh_useless_findings

    now = rt.now()
    with rt.db.session() as s:
        counts = close_windows(s, now)
        counts["findings_resolved"] = refresh_useless_findings(s, now, rt.settings.useless_votes_min)
    log.info("anonymous windows closed: %s", counts)
    return counts


def lookback(rt) -> int:
    """回头看: 30 days after a dissolution, look for the group coming back (same name or most of
    the same members in a group first seen after the dissolution). Only a rebound is reported."""
    from storage.outbox import notify

    now = rt.now()
    found = 0
    with rt.db.session() as s:
        done = set(s.execute(select(AuditRecord.group_id).where(AuditRecord.action == "lookback")).scalars())
        olds = s.execute(select(Group).where(Group.status.in_(("dissolved", "purged")),
                                             Group.dissolved_at.is_not(None),
                                             Group.dissolved_at <= now - timedelta(days=LOOKBACK_DAYS))).scalars().all()
        commission = s.execute(select(Person.id).where(Person.role == "commission")).scalars().all()
        for old in olds:
            if old.id in done:
                continue
            members = set((old.dissolve_state or {}).get("members") or []) | set(
                s.execute(select(Membership.person_id).where(Membership.group_id == old.id)).scalars())
            rebound = []
            for g in s.execute(select(Group).where(Group.status.in_(("active", "warned")),
                                                   Group.first_seen_at > old.dissolved_at)).scalars():
                if g.name == old.name:
                    rebound.append(g)
                    continue
                if members:
                    theirs = set(s.execute(select(Membership.person_id).where(Membership.group_id == g.id)).scalars())
                    if theirs and len(members & theirs) / len(members | theirs) >= rt.settings.duplicate_jaccard:
                        rebound.append(g)
            names = "、".join(f"“{g.name}”" for g in rebound)
            audit.record(s, actor="system:lookback", action="lookback", at=now, group_id=old.id,
                         reason=f"回头看：发现反弹 {names}" if rebound else "回头看：未发现反弹",
                         data={"rebound": [g.id for g in rebound]})
            if rebound:
                found += 1
                for pid in commission:
                    notify(s, person_id=pid, kind="lookback", group_id=old.id, at=now,
                           text=f"回头看：已解散的“{old.name}”可能以{names}重新出现，请核查。",
                           dedupe_key=f"lookback:{old.id}:{pid}", premise=premises.of("lookback", old))
    return found


def commission_digest(rt) -> int:
    from storage.reports import enqueue_commission_digest

    with rt.db.session() as s:
        return enqueue_commission_digest(s, rt.now(), rt.settings)


def holiday_schedule_check(rt) -> str | None:
    """From a month before a year without an official holiday schedule, log (and return) the warning."""
    from governance.worktime import schedule_warning

    msg = schedule_warning(rt.now().astimezone(rt.settings.tz).date(), _wt(rt))
    if msg:
        logging.getLogger("qunzhi.worktime").warning("official holiday schedule missing: %s", msg)
    return msg


def daily_stats(rt) -> dict:
    """Store today's figures (``stat_snapshots``) so the trend charts get one point a day.
    Scheduled late in the local day; a run delayed past midnight (downtime) stores the figures
    under the day it actually runs, which is what they describe. Also repeats the warning about a
    missing holiday schedule (:func:`holiday_schedule_check`) once a day."""
    from storage.reports import snapshot_stats

    holiday_schedule_check(rt)
    local_today = rt.now().astimezone(rt.settings.tz).date()
    with rt.db.session() as s:
        return snapshot_stats(s, local_today)


# --- activity without content (专属钉钉 counts) ---------------------------------------------------
COUNTS_BACKFILL_DAYS = 7  # a missed run is caught up (coverage needs an unbroken run of days)


def import_activity_counts(rt) -> dict:
    """Import yesterday's per-group message counts (and the days missed within a week) from every
    platform that offers them (``counts_enabled``: DingTalk with QUNZHI_DINGTALK_EXCLUSIVE), for the
    counts-based zombie rule (``governance.rules_counts``). Idempotent per day."""
    from platforms.registry import all_platforms
    from storage import activity_counts
    from storage.models import CountDay

    out: dict = {}
    local_today = rt.now().astimezone(rt.settings.tz).date()
    for platform in all_platforms():
        enabled = getattr(platform, "counts_enabled", None)
        if enabled is None or not enabled(rt.settings):
            continue
        sender = senders_for(rt).get(platform.channels[0])
        if sender is None:
            continue
        with rt.db.session() as s:
            done = set(s.execute(select(CountDay.day).where(CountDay.platform == platform.name)).scalars())
        days = [local_today - timedelta(days=k) for k in range(COUNTS_BACKFILL_DAYS, 0, -1)]
        results = []
        for day in (d for d in days if d not in done or d == days[-1]):
            got = platform.activity_counts(sender, day)
            with rt.db.session() as s:
                r = activity_counts.store_day(s, platform=platform.name, day=day, counts=got.counts,
                                              last_active=got.last_active, now=rt.now())
            log.info("%s counts %s: %d group(s) stored, %d unknown, %d unmatched, %d last-active moved",
                     platform.name, day.isoformat(), r.stored, r.unknown, got.unmatched, r.last_active)
            results.append(r)
        out[platform.name] = results
    return out


# --- outbox ----------------------------------------------------------------------------------
_dispatchers: dict[int, object] = {}


def dispatch_outbox(rt) -> int:
    from scheduler.outbox import Dispatcher

    senders = senders_for(rt)
    if not senders:
        return 0  # local mode: no platform to send to
    d = _dispatchers.get(id(rt))
    if d is None or d.senders != senders:
        d = _dispatchers[id(rt)] = Dispatcher(rt.db, senders, clock=rt.now)
    return d.drain(max_rounds=50)


JOBS = {
    "sweep": sweep,
    "advance_pending": advance_pending,
    "platform_requests": platform_requests,
    "sync_groups": sync_groups,
    "deadlines": deadlines,
    "expiry_reminders": expiry_reminders,
    "deliver_notices": deliver_notices,
    "refresh_findings": refresh_findings,
    "weekly_pulse": weekly_pulse,
    "close_anonymous_windows": close_anonymous_windows,
    "lookback": lookback,
    "commission_digest": commission_digest,
    "daily_stats": daily_stats,
    "import_activity_counts": import_activity_counts,
    "dispatch_outbox": dispatch_outbox,
    "reconcile_reviews": reconcile_reviews,
}
