"""The zombie rule for a group whose activity is known only as daily message counts (activity
source ``counts``: 专属钉钉's ``activeGroups``, no content), pure, ``now`` passed in.

Counts cannot tell 收到 from work, so they get their own threshold instead of the ritual
classifier: a group is **idle** when, within the last ``zombie_days`` days, at most
``counts_idle_messages`` (default 10) messages were counted and no work message reached the bot
(an @-mention it classified as work, ``last_work_at``). The same rule applies after a warning: a
handful of messages a month (the members answering the warning with 收到) leaves the group idle;
more than the threshold within the window is activity and the finding goes away.

A verdict needs coverage: either the daily import has run since the window's first day
(``counts_since`` ≤ that day: a day imported without a row for the group had no message), or the
platform's last-active time (``last_message_at``, from ``orgGroupInfos``) lies before the window and
the counts imported since agree. Otherwise the bot has not watched long enough: no verdict.

**Boundary:** ``counts_idle_messages`` messages in the window is idle, one more is not. The group
must be at least ``zombie_days`` old, as in :func:`governance.rules_activity.zombie`.

Every finding says that it rests on counts (the reasons are read by people).
"""
from __future__ import annotations

from datetime import datetime, timedelta  # noqa: F401

from governance.model import Finding, GroupFacts, Params

COUNTS = "counts"
DAY = 86400.0


def counts_zombie(group: GroupFacts, now: datetime, params: Params = Params()) -> Finding | None:
    if not group.live or group.kept(now):
        return None
    limit = timedelta(days=params.zombie_days)
    start = now - limit
    if now - group.created_at < limit:
        return None
    if group.last_work_at is not None and group.last_work_at > start:
        return None  # a work message reached the bot within the window
    first_day = start.date()
    counted = sum(n for day, n in group.daily_counts if day >= first_day)
    if counted > params.counts_idle_messages:
        return None
    covered = group.counts_since is not None and group.counts_since <= first_day
    last_active = group.last_message_at
    if not covered and not (last_active is not None and last_active <= start and group.counts_since is not None):
        return None  # not watched long enough to say
    days_with = sorted(day for day, n in group.daily_counts if n > 0)
    reasons = [f"近{params.zombie_days}天平台按日统计只有{counted}条消息"
               f"（不超过{params.counts_idle_messages}条即视为不活跃）"]
    if days_with:
        reasons.append(f"最近一次有消息在{days_with[-1].isoformat()}")
    elif last_active is not None:
        reasons.append(f"平台记录的最后活跃时间为{last_active.astimezone(now.tzinfo).date().isoformat()}")
    reasons.append("依据每日消息条数判断：看不到消息内容，无法区分“收到”“签到”等留痕消息与工作消息")
    if group.protected:
        reasons.append("受保护群，仅报告休眠，不建议解散")
        action = "none"
    else:
        action = "warn"
    if days_with:
        idle_days = float((now.date() - days_with[-1]).days)
    elif last_active is not None:
        idle_days = (now - last_active).total_seconds() / DAY
    else:
        idle_days = float(params.zombie_days)
    return Finding("zombie", [group.id], [], round(max(idle_days, 0.0), 1), action, reasons)
