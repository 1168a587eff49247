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


# --- years the chinese_calendar package does not cover yet ---------------------------------------
def test_spring_festival_is_off_in_2027_without_an_official_schedule():
    # 2027-02-06 is 春节 (初一), a Saturday; 2027-02-05 除夕 (Fri) and 2027-02-08..12 初三..初七 (Mon–Fri)
    assert not is_working_day(date(2027, 2, 5))  # 除夕
    for d in (8, 9, 10, 11):  # 初三 to 初六 fall on Monday to Thursday
        assert not is_working_day(date(2027, 2, d)), d
    assert is_working_day(date(2027, 2, 15))  # an ordinary Monday after the festival
    assert not is_working_time(at(2027, 2, 8, 10), WT)
    # 2028: 春节 on Wednesday 2028-01-26, 除夕 Tuesday 01-25
    assert not is_working_day(date(2028, 1, 25)) and not is_working_day(date(2028, 1, 26))
    assert is_working_day(date(2028, 1, 24))
    # the known fixed holidays stay off
    assert not is_working_day(date(2027, 1, 1)) and not is_working_day(date(2027, 10, 1))


def test_spring_festival_fallback_2027_to_2035_matches_the_lunar_calendar():
    from governance.worktime import fallback_holidays

    new_year = {2027: date(2027, 2, 6), 2028: date(2028, 1, 26), 2029: date(2029, 2, 13), 2030: date(2030, 2, 3),
                2031: date(2031, 1, 23), 2032: date(2032, 2, 11), 2033: date(2033, 1, 31), 2034: date(2034, 2, 19),
                2035: date(2035, 2, 8)}
    for year, first in new_year.items():
        off = fallback_holidays(year)
        assert {first - timedelta(days=1) + timedelta(days=i) for i in range(7)} <= off, year  # 除夕 to 初六
        assert first - timedelta(days=2) not in off and first + timedelta(days=6) not in off, year


def test_operator_schedule_for_a_year_the_package_does_not_cover(tmp_path):
    import json

    from tests.conftest import make_settings

    f = tmp_path / "holidays.json"
    f.write_text(json.dumps({"2027": {"holidays": ["2027-01-01", "2027-02-05..2027-02-12", "2027-03-01"],
                                      "workdays": ["2027-02-14", "2027-02-20"]}}), encoding="utf-8")
    wt = WorkTime.from_settings(make_settings(holiday_schedule=str(f)))
    assert not is_working_day(date(2027, 3, 1), wt)  # a holiday only the official schedule knows
    assert is_working_day(date(2027, 2, 14), wt) and is_working_time(at(2027, 2, 14, 10), wt)  # 调休 Sunday
    assert is_working_day(date(2027, 2, 13), wt) is False  # Saturday
    assert is_working_day(date(2027, 2, 15), wt)
    assert next_window_start(at(2027, 2, 12, 18), wt) == at(2027, 2, 14, 9)
    assert is_working_day(date(2027, 3, 1))  # without the schedule: an ordinary Monday


def test_bad_schedule_file_refuses_to_start_with_a_chinese_reason(tmp_path):
    import pytest
    from pydantic import ValidationError

    from tests.conftest import make_settings

    f = tmp_path / "holidays.json"
    f.write_text('{"2027": {"holidays": ["2027-02-30"]}}', encoding="utf-8")
    with pytest.raises(ValidationError, match="节假日安排"):
        make_settings(holiday_schedule=str(f))
    with pytest.raises(ValidationError, match="找不到"):
        make_settings(holiday_schedule=str(tmp_path / "missing.json"))


def test_missing_schedule_for_next_year_is_announced_a_month_ahead(tmp_path):
    import json

    from governance.worktime import schedule_warning

    assert schedule_warning(date(2026, 11, 30), WT) is None  # more than a month before 2027
    msg = schedule_warning(date(2026, 12, 1), WT)
    assert msg is not None and "2027年" in msg and "QUNZHI_HOLIDAY_SCHEDULE" in msg
    assert "2027年" in schedule_warning(date(2027, 3, 1), WT)  # and while the year runs without one
    covered = WorkTime(schedules={2027: __import__("governance.worktime", fromlist=["YearSchedule"]).YearSchedule(
        frozenset(), frozenset())})
    assert schedule_warning(date(2026, 12, 1), covered) is None
    assert schedule_warning(date(2026, 6, 1), WT) is None


def test_scheduler_command_warns_about_next_years_schedule(db, caplog):
    import bot.cli
    from typer.testing import CliRunner

    from bot.runtime import Runtime
    from tests.conftest import Clock, make_settings

    def runtime_at(when):
        return lambda: Runtime(make_settings(database_url=db.url), db=db, clock=Clock(when))

    orig = bot.cli.runtime
    try:
        bot.cli.runtime = runtime_at(datetime(2026, 12, 15, 2, 0, tzinfo=timezone.utc))
        with caplog.at_level("WARNING", logger="qunzhi.worktime"):
            r = CliRunner().invoke(bot.cli.app, ["scheduler", "--outbox"])
        assert r.exit_code == 0, r.output
        assert "2027年" in r.output and "节假日安排" in r.output
        assert any("2027" in rec.getMessage() for rec in caplog.records)
        bot.cli.runtime = runtime_at(datetime(2026, 6, 15, 2, 0, tzinfo=timezone.utc))
        r = CliRunner().invoke(bot.cli.app, ["scheduler", "--outbox"])
        assert r.exit_code == 0 and "节假日安排" not in r.output
    finally:
        bot.cli.runtime = orig
