"""Periods and dates as cadres write them, on a fixed day (Tuesday 1 December 2026)."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from governance.dates import DateParseError, parse_expiry
from nlu.normalize import clean
from nlu.periods import Period, find_period, parse_period, renewal_base, say_date

TODAY = date(2026, 12, 1)


def p(text: str, today: date = TODAY) -> Period:
    found = find_period(clean(text), today)
    assert found is not None, text
    return found.period


@pytest.mark.parametrize("text", [
    "2026-12-31", "2026/12/31", "2026.12.31", "2026年12月31日", "12月31日", "12月31", "1月15日", "12-31", "12/31",
    "30天", "三十天", "十五天", "3个月", "两个月", "1年", "2周", "三星期", "月底", "本月底", "下月底", "下个月底",
    "年底", "今年底", "年末", "明年底", "到12月31日", "截止到12月31日为止", "到期:30天", "12月31日前", "一百天",
])
def test_everything_parse_expiry_accepts_keeps_its_meaning(text):
    base = TODAY + timedelta(days=20)
    assert parse_period(text, TODAY) == parse_expiry(text, TODAY)
    assert parse_period(text, TODAY, base=base) == parse_expiry(text, TODAY, base=base)


@pytest.mark.parametrize("text,expected", [
    ("三十天", "+30d"), ("二十一天", "+21d"), ("两个月", "+2m"), ("半个月", "+15d"), ("半月", "+15d"), ("半年", "+6m"),
    ("一年", "+12m"), ("一年半", "+18m"), ("一个半月", "+1m15d"), ("个把月", "+1m"), ("两周", "+14d"),
    ("两个礼拜", "+14d"), ("十来天", "+10d"), ("45 天", "+45d"), ("３０天", "+30d"), ("一百天", "+100d"),
    ("再延一个月", "+1m"),
])
def test_spans(text, expected):
    assert str(p(text)) == expected
    assert p(text).is_span


@pytest.mark.parametrize("text,expected", [
    ("月底", date(2026, 12, 31)), ("本月底", date(2026, 12, 31)), ("下个月底", date(2027, 1, 31)),
    ("一月底", date(2027, 1, 31)), ("1月底", date(2027, 1, 31)), ("明年2月底", date(2027, 2, 28)),
    ("3月中旬", date(2027, 3, 20)), ("3月初", date(2027, 3, 5)),
    ("下周五", date(2026, 12, 11)), ("这周五", date(2026, 12, 4)), ("周五", date(2026, 12, 4)),
    ("星期一", date(2026, 12, 7)), ("下下周一", date(2026, 12, 14)), ("明天", date(2026, 12, 2)),
    ("后天", date(2026, 12, 3)), ("下个月15号", date(2027, 1, 15)), ("15号", date(2026, 12, 15)),
    ("本月20号", date(2026, 12, 20)), ("12月31日", date(2026, 12, 31)), ("十二月三十一日", date(2026, 12, 31)),
    ("1月15日", date(2027, 1, 15)), ("2027年3月31日", date(2027, 3, 31)), ("1/31", date(2027, 1, 31)),
    ("年底", date(2026, 12, 31)), ("明年年底", date(2027, 12, 31)),
])
def test_dates(text, expected):
    assert p(text).on == expected


def test_holidays_from_the_lunar_calendar():
    # 春节 2027 is 6 February (lunar 1/1): 年前 is the day before
    assert p("年前").on == date(2027, 2, 5)
    assert p("春节前").on == date(2027, 2, 5)
    assert p("过年前").on == date(2027, 2, 5)
    assert p("春节").on == date(2027, 2, 6)
    assert p("元宵节").on == date(2027, 2, 20)
    assert p("中秋节前").on == date(2027, 9, 14)
    assert p("端午").on == date(2027, 6, 9)
    # 2027 has no official schedule in the pinned holiday package: 7 days off, then a weekday
    assert p("春节后").on == date(2027, 2, 15)
    assert p("年后").on == date(2027, 2, 15)
    assert p("国庆后").on == date(2027, 10, 8)
    assert p("国庆前").on == date(2027, 9, 30)
    assert p("元旦后").on == date(2027, 1, 4)


def test_holidays_use_the_official_schedule_when_known():
    # 2026: National Day holiday 1–8 October (with 中秋), first working day 9 October
    from governance.worktime import is_working_day

    d = p("国庆后", date(2026, 6, 1)).on
    assert d.month == 10 and is_working_day(d) and not is_working_day(d - timedelta(days=1))
    # 春节 2026 is 17 February
    assert p("年前", date(2026, 1, 10)).on == date(2026, 2, 16)


def test_a_holiday_already_past_this_year_is_next_years():
    assert p("国庆后", date(2026, 11, 1)).on.year == 2027
    assert p("年前", date(2026, 3, 1)).on == date(2027, 2, 5)


def test_a_number_of_years_is_no_holiday():
    assert str(p("一年后")) == "+12m"
    assert str(p("两年")) == "+24m"


def test_span_counts_from_base_dates_do_not():
    base = date(2027, 1, 10)
    assert p("一个月").end(TODAY, base) == date(2027, 2, 10)
    assert p("30天").end(TODAY) == date(2026, 12, 31)
    assert p("月底").end(TODAY, base) == date(2026, 12, 31)


def test_renewal_base_is_the_current_expiry_when_in_the_future():
    assert renewal_base(date(2027, 1, 10), TODAY) == date(2027, 1, 10)
    assert renewal_base(date(2026, 11, 1), TODAY) == TODAY
    assert renewal_base(None, TODAY) == TODAY


def test_past_and_far_dates_are_refused():
    with pytest.raises(DateParseError, match="已经过去"):
        Period("x", on=date(2026, 11, 30)).end(TODAY)
    with pytest.raises(DateParseError, match="太远"):
        p("一百年").end(TODAY)
    with pytest.raises(DateParseError):
        parse_period("2月30日", TODAY)
    with pytest.raises(DateParseError):
        parse_period("秋粮收购", TODAY)


def test_parse_period_takes_new_forms_as_whole_answers():
    assert parse_period("下周五", TODAY) == date(2026, 12, 11)
    assert parse_period("到年前", TODAY) == date(2027, 2, 5)
    assert parse_period("两个月", TODAY, base=date(2027, 1, 31)) == date(2027, 3, 31)
    assert parse_period("半年", TODAY) == date(2027, 6, 1)
    with pytest.raises(DateParseError):
        parse_period("下周五 秋粮群", TODAY)  # a whole answer, not a sentence


def test_found_in_a_sentence():
    t = clean("帮我把秋粮收购专班延期到月底")
    f = find_period(t, TODAY)
    assert f.period.on == date(2026, 12, 31) and t[f.start:f.end].endswith("月底")
    assert find_period(clean("秋粮收购专班完成了"), TODAY) is None


def test_say_date_always_has_the_year():
    assert say_date(date(2027, 1, 31)) == "2027年1月31日"
    assert say_date(date(2026, 12, 31)) == "2026年12月31日"
