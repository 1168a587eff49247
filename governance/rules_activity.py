"""Rules on one group's activity and registration, and on a person's burden.

* :func:`zombie` - no work (non-ritual) message for ``zombie_days``.  The group is idle
  since ``last_work_at``; without any observed work message, since it was created or
  since the bot started watching it (:func:`watched_since`), whichever is later - the bot
  cannot call a group dead that it has not watched.  The watch starts at the earliest of
  ``observed_since`` (start of an archive's coverage) and ``first_seen_at``; a group whose
  members are unknown (``members_known`` False) counts as watched only from
  ``observed_since``, and without it is never a zombie.  **Boundary:** idle for exactly
  ``zombie_days`` (to the microsecond) is a zombie; one microsecond less is not.
  The group must also be at least ``zombie_days`` old.  Protected (受保护) groups are
  reported with action ``none`` (dormant only); kept groups (``kept_until > now``) and
  groups not ``active``/``warned`` are skipped. Its last reason says what the bot sees of the
  group (:func:`activity_reason`, ``活动来源：仅@机器人的消息``): idle as far as the bot can see.
  A group whose activity source is ``counts`` (daily message counts, no content) is judged by
  :func:`governance.rules_counts.counts_zombie` instead (its own threshold).
* :func:`zombie_ids` - the same test vectorised over numpy arrays (1M groups < 0.1 s).
* :func:`expired` - temporary group whose last valid day ``expires_at`` is before
  ``today`` (the caller's local date; default ``now.date()`` in ``now``'s time zone),
  or whose owner said 完成 (``done_at <= now``).  Action ``dissolve``; the lifecycle
  still warns first.  Never for protected groups.
* :func:`unregistered` - not registered ``unregistered_grace_days`` (exactly, inclusive)
  after the earlier of ``first_seen_at`` and ``observed_since`` (fallback ``created_at``).  Action ``review``.
* :func:`overloaded_members` - a person in more than ``max_groups_per_person`` live
  groups (20 is fine, 21 is a finding).  Action ``review``, score = count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import numpy as np

from governance.model import Finding, GroupFacts, Params
from governance.rules_counts import COUNTS, counts_zombie

DAY = 86400.0


def watched_since(group: GroupFacts) -> datetime | None:
    """Since when the bot has observed the group; None if it never has (see module docstring)."""
    observed = group.observed_since
    if not group.members_known:
        return observed
    first = group.first_seen_at
    if observed is None:
        return first if first is not None else group.created_at
    return observed if first is None or observed < first else first


def idle_since(group: GroupFacts) -> datetime | None:
    """Start of the current idle period (see module docstring); None if never watched."""
    if group.last_work_at is not None:
        return group.last_work_at
    watched = watched_since(group)
    if watched is None:
        return None
    return max(watched, group.created_at)


def activity_reason(group: GroupFacts) -> str:
    """What the bot sees of the group, as a reason line (``活动来源：仅@机器人的消息``): a group the
    bot sees only partly is "not seen", not necessarily "silent"."""
    if group.activity_source is None:
        return "活动来源：未记录（机器人可能只看到部分消息）"
    from governance import labels  # here: labels reads the rules registry, which imports this module

    return f"活动来源：{labels.label('activity_source', group.activity_source)}"


def _days(delta: timedelta) -> int:
    return int(delta.total_seconds() // DAY)


def zombie(group: GroupFacts, now: datetime, params: Params = Params()) -> Finding | None:
    if group.activity_source == COUNTS:  # daily counts without content: their own threshold
        return counts_zombie(group, now, params)
    if not group.live or group.kept(now):
        return None
    limit = timedelta(days=params.zombie_days)
    since = idle_since(group)
    if since is None:  # members unknown and never observed: no verdict
        return None
    idle = now - since
    if idle < limit or now - group.created_at < limit:
        return None
    days = _days(idle)
    if group.last_work_at is None:
        reasons = [f"已{days}天没有工作消息（自建群或开始记录以来没有任何工作消息）"]
    else:
        reasons = [f"已{days}天没有工作消息（最后一条工作消息在{group.last_work_at.astimezone(now.tzinfo).date().isoformat()}）"]
    if group.last_message_at is not None and group.last_message_at > since and group.ritual_count:
        quiet = _days(now - group.last_message_at)
        reasons.append(
            f"其间只有“收到”“签到”等留痕消息（累计留痕{group.ritual_count}条，"
            f"占全部{group.message_count}条的{group.ritual_count / max(group.message_count, 1):.0%}；"
            f"最近一条在{quiet}天前）"
        )
    reasons.append(activity_reason(group))
    if group.protected:
        reasons.append("受保护群，仅报告休眠，不建议解散")
        action = "none"
    else:
        action = "warn"
    return Finding("zombie", [group.id], [], round(idle.total_seconds() / DAY, 1), action, reasons)


def zombies(groups: Iterable[GroupFacts], now: datetime, params: Params = Params()) -> list[Finding]:
    return [f for g in groups if (f := zombie(g, now, params)) is not None]


def zombie_ids(
    last_work_epoch: np.ndarray,
    created_epoch: np.ndarray,
    protected: np.ndarray,
    now: float | datetime,
    days: float,
    include_protected: bool = False,
) -> np.ndarray:
    """Indices of zombie groups over arrays (epoch seconds; NaN = no work message seen).

    ``created_epoch`` should already be ``max(created, watched_since)`` for groups the bot
    started watching late (NaN for a group never watched: never a zombie).  Protected groups are left out unless ``include_protected``.
    Same boundary as :func:`zombie` (idle >= days is a zombie)."""
    t = now.timestamp() if isinstance(now, datetime) else float(now)
    limit = t - days * DAY  # a timestamp at or before this is old enough
    last = np.asarray(last_work_epoch, dtype=np.float64)
    created = np.asarray(created_epoch, dtype=np.float64)
    ref = np.where(np.isnan(last), created, last)
    mask = (ref <= limit) & (created <= limit)
    if not include_protected:
        mask &= ~np.asarray(protected, dtype=bool)
    return np.flatnonzero(mask)


def expired(
    group: GroupFacts, now: datetime, params: Params = Params(), today: date | None = None
) -> Finding | None:
    if not group.live or group.protected:
        return None
    today = today or now.date()
    reasons: list[str] = []
    score = 0.0
    if group.done_at is not None and group.done_at <= now:
        reasons.append(f"群主已于{group.done_at.astimezone(now.tzinfo).date().isoformat()}标记任务完成")
        score = float(max(_days(now - group.done_at), 0))
    if group.temporary and group.expires_at is not None and today > group.expires_at:
        overdue = (today - group.expires_at).days
        reasons.append(f"临时群已于{group.expires_at.isoformat()}到期（已过期{overdue}天）")
        score = max(score, float(overdue))
    if not reasons:
        return None
    reasons.append("任务结束的临时群应及时解散（解散前会先提醒群主）")
    return Finding("expired", [group.id], [], score, "dissolve", reasons)


def unregistered(group: GroupFacts, now: datetime, params: Params = Params()) -> Finding | None:
    if not group.live or group.registered or group.protected:
        return None
    seen = group.first_seen_at
    if group.observed_since is not None and (seen is None or group.observed_since < seen):
        seen = group.observed_since  # an archive showed the group earlier than the import ran
    since = seen or group.created_at
    if now - since < timedelta(days=params.unregistered_grace_days):
        return None
    days = _days(now - since)
    reasons = [f"发现该群已{days}天仍未报备（宽限{params.unregistered_grace_days}天）"]
    if group.owner_id is None:
        reasons.append("群主未知，请单位管理员核实")
    persons = [group.owner_id] if group.owner_id else []
    return Finding("unregistered", [group.id], persons, float(days), "review", reasons)


def overloaded_members(groups: Iterable[GroupFacts], params: Params = Params()) -> list[Finding]:
    by_person: dict[str, list[str]] = defaultdict(list)
    for g in groups:
        if g.live:
            for pid in g.member_ids:
                by_person[pid].append(g.id)
    out = []
    for pid in sorted(by_person):
        gids = by_person[pid]
        if len(gids) > params.max_groups_per_person:
            reasons = [f"同时在{len(gids)}个工作群中（上限{params.max_groups_per_person}个），建议清理或合并"]
            out.append(Finding("overloaded_member", sorted(gids), [pid], float(len(gids)), "review", reasons))
    return out
