"""Working time (工作时间) and the attention budget: pure rules, ``now`` is always an argument.

Messages go out only on official working days (法定工作日, including the make-up working days
调休 of the Chinese calendar) between ``work_start`` and ``work_end`` local time. For years the
``chinese_calendar`` package does not cover yet, Mon–Fri minus the fixed-date holidays
(1/1, 5/1, 10/1–10/3) is used and a warning is logged once per year.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

log = logging.getLogger("qunzhi.worktime")

FIXED_HOLIDAYS = {(1, 1), (5, 1), (10, 1), (10, 2), (10, 3)}
_warned_years: set[int] = set()


def _parse_hhmm(s: str) -> time:
    h, m = s.strip().split(":")
    return time(int(h), int(m))


@dataclass(frozen=True)
class WorkTime:
    """Working hours in one time zone (from settings: ``work_start``, ``work_end``, ``timezone``)."""

    start: time = time(9, 0)
    end: time = time(17, 30)
    tz: ZoneInfo = ZoneInfo("Asia/Shanghai")

    @classmethod
    def from_settings(cls, settings) -> "WorkTime":
        return cls(_parse_hhmm(settings.work_start), _parse_hhmm(settings.work_end), ZoneInfo(settings.timezone))


def is_working_day(d: date) -> bool:
    """Official working day: 调休 Saturdays count, holidays on weekdays do not."""
    try:
        return bool(chinese_calendar.is_workday(d))
    except NotImplementedError:  # a year the installed package has no official schedule for
        if d.year not in _warned_years:
            _warned_years.add(d.year)
            log.warning("chinese_calendar has no data for %s: falling back to Mon–Fri minus fixed holidays "
                        "(update the chinesecalendar package)", d.year)
        return d.weekday() < 5 and (d.month, d.day) not in FIXED_HOLIDAYS


def is_working_time(now: datetime, wt: WorkTime = WorkTime()) -> bool:
    local = now.astimezone(wt.tz)
    return is_working_day(local.date()) and wt.start <= local.time() < wt.end


def next_window_start(now: datetime, wt: WorkTime = WorkTime()) -> datetime:
    """``now`` if it is working time, else the start of the next working window (aware, same zone)."""
    if is_working_time(now, wt):
        return now
    local = now.astimezone(wt.tz)
    d = local.date()
    if is_working_day(d) and local.time() < wt.start:
        return datetime.combine(d, wt.start, wt.tz)
    for _ in range(60):  # the longest Chinese holiday is 8–9 days
        d += timedelta(days=1)
        if is_working_day(d):
            return datetime.combine(d, wt.start, wt.tz)
    raise RuntimeError("no working day within 60 days")  # pragma: no cover


def week_start(now: datetime, wt: WorkTime = WorkTime()) -> datetime:
    """Monday 00:00 local of ``now``'s week: the attention budget is counted per such week."""
    local = now.astimezone(wt.tz)
    monday = local.date() - timedelta(days=local.weekday())
    return datetime.combine(monday, time(0, 0), wt.tz)


def week_key(now: datetime, wt: WorkTime = WorkTime()) -> str:
    """ISO week of ``now`` in local time, e.g. ``2026-W48`` (the pulse period)."""
    y, w, _ = now.astimezone(wt.tz).isocalendar()
    return f"{y}-W{w:02d}"


@dataclass(frozen=True)
class BudgetDecision:
    action: str  # "send" | "hold"
    until: datetime | None = None  # when to look again, for "hold"
    reason: str = ""


def budget_decision(now: datetime, sent_this_week: int, budget: int, wt: WorkTime = WorkTime()) -> BudgetDecision:
    """Whether one more unsolicited message to a person may go out now.

    Urgent notices get no exception: a warning that does not fit the budget waits for the next
    week, and because dissolution needs ``warning_sent_at + grace``, the dissolution waits too
    (nothing is ever dissolved on a warning that was not delivered).
    """
    if not is_working_time(now, wt):
        return BudgetDecision("hold", next_window_start(now, wt), "outside working time")
    if sent_this_week >= budget:
        nxt = week_start(now, wt) + timedelta(days=7)
        return BudgetDecision("hold", next_window_start(nxt, wt), "weekly budget used")
    return BudgetDecision("send")
