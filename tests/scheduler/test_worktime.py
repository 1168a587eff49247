"""Working time on the Chinese calendar and the weekly attention budget (pure rules)."""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import chinese_calendar

from governance.worktime import (WorkTime, budget_decision, is_working_day, is_working_time, next_window_start)

SH = ZoneInfo("Asia/Shanghai")
WT = WorkTime()


def at(y, m, d, h, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=SH)


def test_national_day_is_not_working_time_and_waits_for_next_window():
    now = at(2026, 10, 1, 10)  # Thursday, 国庆
    assert not is_working_time(now, WT)
    nxt = next_window_start(now, WT)
    assert nxt.date() > date(2026, 10, 1)
    assert is_working_time(nxt, WT) and nxt.time().hour == 9
    # the whole holiday is skipped: the first working day after 10/1 per the official calendar
    d = date(2026, 10, 2)
    while not chinese_calendar.is_workday(d):
        d += timedelta(days=1)
    assert nxt.date() == d


def test_weekend_and_evening_are_held():
    assert not is_working_time(at(2026, 11, 28, 10), WT)  # Saturday
    assert next_window_start(at(2026, 11, 28, 10), WT) == at(2026, 11, 30, 9)
    assert not is_working_time(at(2026, 11, 24, 17, 30), WT)  # end is exclusive
    assert next_window_start(at(2026, 11, 24, 18), WT) == at(2026, 11, 25, 9)
    assert next_window_start(at(2026, 11, 24, 7), WT) == at(2026, 11, 24, 9)
    assert is_working_time(at(2026, 11, 24, 9), WT)


def test_make_up_working_saturday_is_working_time():
    # 2026-10-10 is a Saturday that chinese_calendar marks as a 调休 working day.
    d = date(2026, 10, 10)
    assert d.weekday() == 5 and chinese_calendar.is_workday(d)
    assert is_working_day(d)
    assert is_working_time(at(2026, 10, 10, 10), WT)
    # and a Sunday make-up day: 2026-01-04
    assert date(2026, 1, 4).weekday() == 6 and is_working_time(at(2026, 1, 4, 15), WT)


def test_fallback_for_years_the_package_does_not_cover(caplog):
    assert is_working_day(date(2099, 1, 5))  # Monday
    assert not is_working_day(date(2099, 10, 1)) or date(2099, 10, 1).weekday() >= 5
    assert not is_working_day(date(2099, 5, 1))
    assert not is_working_day(date(2099, 1, 3))  # Saturday


def test_budget_decision():
    now = at(2026, 11, 24, 10)
    assert budget_decision(now, 0, 2, WT).action == "send"
    full = budget_decision(now, 2, 2, WT)
    assert full.action == "hold" and full.until == at(2026, 11, 30, 9)
    assert budget_decision(at(2026, 11, 24, 20), 0, 2, WT).until == at(2026, 11, 25, 9)
    assert now.astimezone(timezone.utc)  # aware in, aware out
