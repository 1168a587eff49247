"""Working time (工作时间) and the attention budget: pure rules, ``now`` is always an argument.

Messages go out only on official working days (法定工作日, including the make-up working days
调休 of the Chinese calendar) between ``work_start`` and ``work_end`` local time. A day is looked
up, in this order, in:

1. an operator's schedule for its year (``WorkTime.schedules``, read by the caller from the file
   ``QUNZHI_HOLIDAY_SCHEDULE`` and parsed with :func:`parse_schedule`): its holidays are off, its
   make-up working days on, other days Mon–Fri;
2. the ``chinese_calendar`` package (official schedules up to the year it was released for);
3. otherwise Mon–Fri minus the holidays whose dates are known without the State Council's yearly
   schedule (:func:`fallback_holidays`), with a warning logged once per year.

:func:`schedule_warning` says, from a month before a year starts, that its schedule is missing.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

log = logging.getLogger("qunzhi.worktime")

FIXED_HOLIDAYS = {(1, 1), (5, 1), (5, 2), (10, 1), (10, 2), (10, 3)}  # 元旦, 劳动节, 国庆
SPRING_FESTIVAL_DAYS = 7  # 除夕 to 初六
WARN_AHEAD_DAYS = 31
_warned_years: set[int] = set()


class ScheduleError(ValueError):
    """An operator's holiday schedule cannot be used (message in Chinese)."""


@dataclass(frozen=True)
class YearSchedule:
    """One year's official schedule: holidays (off) and make-up working days (调休, on)."""

    holidays: frozenset[date]
    workdays: frozenset[date]


def _days(value, year: int, what: str) -> frozenset[date]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise ScheduleError(f"节假日安排中{year}年的“{what}”应是日期列表")
    out: set[date] = set()
    for item in value:
        if not isinstance(item, str):
            raise ScheduleError(f"节假日安排中{year}年的“{what}”含有非日期：{item!r}")
        a, _, b = item.partition("..")
        try:
            first = date.fromisoformat(a.strip())
            last = date.fromisoformat(b.strip()) if b else first
        except ValueError:
            raise ScheduleError(f"节假日安排中{year}年的“{item}”不是有效日期（应如 2027-02-05 或 "
                                f"2027-02-05..2027-02-11）") from None
        if last < first or first.year != year or last.year != year:
            raise ScheduleError(f"节假日安排中{year}年的“{item}”不在{year}年内或起止颠倒")
        while first <= last:
            out.add(first)
            first += timedelta(days=1)
    return frozenset(out)


def parse_schedule(data: Mapping) -> dict[int, YearSchedule]:
    """``{"2027": {"holidays": ["2027-01-01", "2027-02-05..2027-02-11"], "workdays": ["2027-02-14"]}}``
    (the JSON of ``QUNZHI_HOLIDAY_SCHEDULE``) as schedules per year; :class:`ScheduleError` if invalid."""
    if not isinstance(data, Mapping):
        raise ScheduleError("节假日安排应是以年份为键的对象，例如 {\"2027\": {\"holidays\": [...], \"workdays\": [...]}}")
    out: dict[int, YearSchedule] = {}
    for key, spec in data.items():
        try:
            year = int(key)
        except (TypeError, ValueError):
            raise ScheduleError(f"节假日安排中的“{key}”不是年份") from None
        if not isinstance(spec, Mapping) or set(spec) - {"holidays", "workdays"}:
            raise ScheduleError(f"节假日安排中{year}年应只有“holidays”（放假日）和“workdays”（调休上班日）两项")
        holidays, workdays = _days(spec.get("holidays"), year, "holidays"), _days(spec.get("workdays"), year, "workdays")
        if holidays & workdays:
            day = min(holidays & workdays)
            raise ScheduleError(f"节假日安排中{day.isoformat()}既是放假日又是调休上班日")
        out[year] = YearSchedule(holidays, workdays)
    return out


@lru_cache(maxsize=64)
def fallback_holidays(year: int) -> frozenset[date]:
    """Holidays of ``year`` known without the State Council's schedule: 元旦 (1/1), 春节 (除夕 to
    初六, from the lunar calendar), 清明 (the solar term), 劳动节 (5/1–5/2), 端午 (lunar 5/5),
    中秋 (lunar 8/15), 国庆 (10/1–10/3). Make-up working days cannot be known: weekends stay off."""
    from lunar_python import Lunar

    def solar(lunar_month: int, lunar_day: int, lunar_year: int = year) -> date:
        s = Lunar.fromYmd(lunar_year, lunar_month, lunar_day).getSolar()
        return date(s.getYear(), s.getMonth(), s.getDay())

    days = {date(year, m, d) for m, d in FIXED_HOLIDAYS}
    first = solar(1, 1)
    days |= {first - timedelta(days=1) + timedelta(days=i) for i in range(SPRING_FESTIVAL_DAYS)}
    qingming = Lunar.fromYmd(year, 1, 1).getJieQiTable()["清明"]
    days.add(date(qingming.getYear(), qingming.getMonth(), qingming.getDay()))
    days |= {solar(5, 5), solar(8, 15)}
    return frozenset(days)  # all inside ``year``: 春节 falls between 1/21 and 2/20


def package_covers(year: int) -> bool:
    """Whether the pinned chinese_calendar has the State Council's schedule for ``year``."""
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
        return True
    except NotImplementedError:
        return False


def _parse_hhmm(s: str) -> time:
    h, m = s.strip().split(":")
    return time(int(h), int(m))


@dataclass(frozen=True)
class WorkTime:
    """Working hours in one time zone (from settings: ``work_start``, ``work_end``, ``timezone``)."""

    start: time = time(9, 0)
    end: time = time(17, 30)
    tz: ZoneInfo = ZoneInfo("Asia/Shanghai")
    #: operators' official schedules per year (:func:`parse_schedule`)
    schedules: Mapping[int, YearSchedule] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_settings(cls, settings) -> "WorkTime":
        """``holiday_schedules`` is the parsed ``QUNZHI_HOLIDAY_SCHEDULE`` file (read by the settings)."""
        return cls(_parse_hhmm(settings.work_start), _parse_hhmm(settings.work_end), ZoneInfo(settings.timezone),
                   getattr(settings, "holiday_schedules", None) or {})

    def has_schedule(self, year: int) -> bool:
        """An official schedule of ``year`` is known (the operator's, or the package's)."""
        return year in self.schedules or package_covers(year)


def is_working_day(d: date, wt: WorkTime | None = None) -> bool:
    """Official working day: 调休 Saturdays count, holidays on weekdays do not (see the module docstring)."""
    sched = wt.schedules.get(d.year) if wt is not None else None
    if sched is not None:
        return d in sched.workdays or (d.weekday() < 5 and d not in sched.holidays)
    try:
        return bool(chinese_calendar.is_workday(d))
    except NotImplementedError:  # a year the installed package has no official schedule for
        if d.year not in _warned_years:
            _warned_years.add(d.year)
            log.warning("no official holiday schedule for %s: Mon-Fri minus the known holidays is used "
                        "(元旦, 春节 除夕-初六, 清明, 劳动节, 端午, 中秋, 国庆); set QUNZHI_HOLIDAY_SCHEDULE "
                        "or update the chinesecalendar package", d.year)
        return d.weekday() < 5 and d not in fallback_holidays(d.year)


def schedule_warning(today: date, wt: WorkTime = WorkTime(), ahead_days: int = WARN_AHEAD_DAYS) -> str | None:
    """Chinese notice for the operator when this year's official schedule, or next year's within
    ``ahead_days`` of its start, is missing; None when both are known."""
    for year in sorted({today.year, (today + timedelta(days=ahead_days)).year}):
        if not wt.has_schedule(year):
            return (f"缺少{year}年的法定节假日安排：自{year}年1月1日起，工作时间按周一至周五计算，只扣除元旦、"
                    f"春节（除夕至初六）、清明、劳动节、端午、中秋、国庆等已知假日，调休上班日不计。"
                    f"国务院办公厅公布安排后，请用 QUNZHI_HOLIDAY_SCHEDULE 指定节假日安排文件（格式见 README），"
                    f"或升级 chinesecalendar。")
    return None


def is_working_time(now: datetime, wt: WorkTime = WorkTime()) -> bool:
    local = now.astimezone(wt.tz)
    return is_working_day(local.date(), wt) and wt.start <= local.time() < wt.end


def next_window_start(now: datetime, wt: WorkTime = WorkTime()) -> datetime:
    """``now`` if it is working time, else the start of the next working window (aware, same zone)."""
    if is_working_time(now, wt):
        return now
    local = now.astimezone(wt.tz)
    d = local.date()
    if is_working_day(d, wt) and local.time() < wt.start:
        return datetime.combine(d, wt.start, wt.tz)
    for _ in range(60):  # the longest Chinese holiday is 8–9 days
        d += timedelta(days=1)
        if is_working_day(d, wt):
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
