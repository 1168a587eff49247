"""Periods and dates the way cadres write them, found anywhere in a sentence.

Extends :func:`governance.dates.parse_expiry` (everything it accepts keeps its meaning) with
Chinese numerals in every position (三十天, 两个月, 半个月, 半年, 一年半, 个把月), relative dates
(明天, 下周五, 本月底, 下个月15号, 3月中旬, 明年2月底) and holidays (年前/春节前 = the day before
春节, 春节后/年后 and 国庆后 = the first working day after the holiday, 元旦, 五一, 端午, 中秋,
元宵). Lunar dates come from ``lunar_python``; working days from ``governance.worktime``.

Pure: ``today`` is always passed in. A :class:`Period` is either a span (counted from a base:
the current expiry when that is in the future, see :func:`renewal_base`) or a fixed date.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from governance.dates import MAX_YEARS_AHEAD, DateParseError, add_months, cn_int, fmt_date, parse_expiry

__all__ = ["Period", "find_period", "parse_period", "renewal_base", "say_date", "DateParseError"]

NUM = r"(?:\d+|[零〇一二两俩三四五六七八九十百]+)"
_EXAMPLES = "请写成例如“12月31日”“30天”“两个月”“月底”“下周五”或“春节前”。"


@dataclass(frozen=True)
class Period:
    """A span (``days``/``months`` from a base) or a fixed ``on`` date, with the text it came from."""

    text: str
    days: int = 0
    months: int = 0
    on: date | None = None

    @property
    def is_span(self) -> bool:
        return self.on is None

    def end(self, today: date, base: date | None = None) -> date:
        """The end date: spans count from ``base`` (default today). Refuses past and far dates."""
        if self.on is not None:
            result = self.on
        else:
            result = add_months(base or today, self.months) + timedelta(days=self.days)
        if result < today:
            raise DateParseError(f"到期日期{fmt_date(result, today)}已经过去了。" + _EXAMPLES)
        if result.year > today.year + MAX_YEARS_AHEAD:
            raise DateParseError(f"到期日期{result.isoformat()}太远了，请写{MAX_YEARS_AHEAD}年以内的日期。")
        return result

    def __str__(self) -> str:
        if self.on is not None:
            return self.on.isoformat()
        out = "+"
        if self.months:
            out += f"{self.months}m"
        if self.days or not self.months:
            out += f"{self.days}d"
        return out


def renewal_base(current_expiry: date | None, today: date) -> date:
    """Today's rule for renewals: a span adds to the current expiry when that is in the future."""
    return current_expiry if current_expiry and current_expiry > today else today


def say_date(d: date) -> str:
    """2027年1月31日: the date as every renewal reply states it."""
    return f"{d.year}年{d.month}月{d.day}日"


# --- calendar helpers -----------------------------------------------------------------------------
def _month_end(y: int, m: int) -> date:
    return date(y, m, calendar.monthrange(y, m)[1])


def _next_or_same(make, today: date) -> date | None:
    """``make(year)`` for this year, or next year's when this year's is already past."""
    for y in (today.year, today.year + 1):
        try:
            d = make(y)
        except ValueError:
            continue
        if d >= today:
            return d
    return None


@lru_cache(maxsize=256)
def _lunar(year: int, month: int, day: int) -> date:
    from lunar_python import Lunar

    s = Lunar.fromYmd(year, month, day).getSolar()
    return date(s.getYear(), s.getMonth(), s.getDay())


def _is_workday(d: date) -> bool:
    from governance.worktime import is_working_day

    return is_working_day(d)


def _first_workday_after(holiday: date, assumed_days: int) -> date:
    """First working day after the holiday starting on ``holiday``: from the official schedule when
    the calendar package has the year, else after ``assumed_days`` days off (then Mon–Fri)."""
    from governance.worktime import package_covers

    if package_covers(holiday.year):
        d = holiday
        for _ in range(20):
            if _is_workday(d):
                return d
            d += timedelta(days=1)
    d = holiday + timedelta(days=assumed_days)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def _spring_festival(y: int) -> date:
    return _lunar(y, 1, 1)


# name → (date of the holiday in year y, days off assumed when the schedule is unknown)
_HOLIDAYS = {
    "春节": (_spring_festival, 7), "过年": (_spring_festival, 7), "年": (_spring_festival, 7),
    "元宵": (lambda y: _lunar(y, 1, 15), 1),
    "端午": (lambda y: _lunar(y, 5, 5), 1),
    "中秋": (lambda y: _lunar(y, 8, 15), 1),
    "国庆": (lambda y: date(y, 10, 1), 7), "十一": (lambda y: date(y, 10, 1), 7),
    "元旦": (lambda y: date(y, 1, 1), 1),
    "五一": (lambda y: date(y, 5, 1), 5), "劳动节": (lambda y: date(y, 5, 1), 5),
    "清明": (lambda y: date(y, 4, 5), 1),
}


def _holiday(name: str, when: str, today: date) -> date | None:
    make, days_off = _HOLIDAYS[name]
    if when == "前":
        return _next_or_same(lambda y: make(y) - timedelta(days=1), today)
    if when == "后":
        return _next_or_same(lambda y: _first_workday_after(make(y), days_off), today)
    return _next_or_same(make, today)


_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 6,
             "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}


# --- the patterns -----------------------------------------------------------------------------------
_PREFIX = r"(?:(?:到|至|截至|截止到|截止|直到|一直到)\s*)?"
_SUFFIX = r"(?:\s*(?:为止|之前|以前|前|止|到期|结束))?"
_SPAN_SUFFIX = r"(?:\s*(?:之后|以后|后))?"
_UNIT = r"(?:天|日|周|星期|礼拜|个?月|年)"

_PATTERNS: list[tuple[str, re.Pattern]] = [(kind, re.compile(p)) for kind, p in [
    ("ymd", _PREFIX + r"(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*[日号]?" + _SUFFIX),
    ("md", _PREFIX + r"(?P<yr>今年|明年|后年)?\s*(?P<m>" + NUM + r")\s*月\s*(?P<d>" + NUM + r")(?:\s*[日号]|(?![\d天周个年]))" + _SUFFIX),
    ("mpart", _PREFIX + r"(?P<yr>今年|明年|后年)?\s*(?P<m>" + NUM + r"|下个?)\s*月(?:份)?\s*(?P<part>底|末|中旬|上旬|下旬|中|初)"
     + _SUFFIX),
    ("mend", _PREFIX + r"(?P<which>本|这个?|当|下下个?|下个?)?\s*月\s*(?:底|末)" + _SUFFIX),
    ("mday", _PREFIX + r"(?P<which>本|这个?|当|下下个?|下个?)\s*月\s*(?P<d>" + NUM + r")\s*[日号]" + _SUFFIX),
    ("slash", _PREFIX + r"(?<![\d.])(?P<m>\d{1,2})\s*[/.-]\s*(?P<d>\d{1,2})(?![\d.])" + _SUFFIX),
    ("yend", _PREFIX + r"(?P<which>今年|本年|明年|后年)?\s*(?:年底|年末|年内)" + _SUFFIX),
    ("yend2", _PREFIX + r"(?P<which>今年|明年|后年)\s*(?:底|末)" + _SUFFIX),
    ("week", _PREFIX + r"(?P<which>下下个?|下个?|这个?|本)?\s*(?:周|星期|礼拜)\s*(?P<wd>[一二三四五六日天末1-7])" + _SUFFIX),
    ("rel", _PREFIX + r"(?P<rel>明天|明日|后天|大后天)" + _SUFFIX),
    ("holiday", _PREFIX + r"(?P<pre>过)?(?P<name>春节|过年|元宵|端午|中秋|国庆|元旦|五一|劳动节|清明|(?<![\d零〇一二两三四五六七八九十今明去后])年)"
     r"(?:节|假期|长假|小长假)?\s*(?P<when>之前|以前|前|之后|以后|后|过后|结束后)?"),
    ("span", r"(?:(?:再|多)\s*)?(?P<n>" + NUM + r")\s*(?P<geban>个半|个|年半)?\s*(?P<unit>" + _UNIT + r")(?P<half>半)?" + _SPAN_SUFFIX),
    ("half", r"(?:(?:再|多)\s*)?半\s*个?\s*(?P<unit>月|年)" + _SPAN_SUFFIX),
    ("geba", r"(?:(?:再|多)\s*)?个把\s*(?P<unit>月|星期|礼拜)" + _SPAN_SUFFIX),
    ("lai", r"(?:(?:再|多)\s*)?(?P<n>" + NUM + r")\s*来\s*(?P<unit>天|个月)" + _SPAN_SUFFIX),
    ("dom", _PREFIX + r"(?<![\d月])(?P<d>\d{1,2}|[一二三四五六七八九十]{1,3})\s*号" + _SUFFIX),
]]


def _num(s: str) -> int:
    try:
        return cn_int(s)
    except ValueError:
        raise DateParseError(f"看不懂数字“{s}”。") from None


def _span(n: int, unit: str, text: str) -> Period:
    if n <= 0 or n > 3650:
        raise DateParseError(f"期限“{text}”不合理。" + _EXAMPLES)
    if unit in ("天", "日"):
        return Period(text, days=n)
    if unit in ("周", "星期", "礼拜"):
        return Period(text, days=7 * n)
    if unit.endswith("月"):
        return Period(text, months=n)
    return Period(text, months=12 * n)


def _build(kind: str, m: re.Match, today: date) -> Period | None:
    g = m.groupdict()
    text = m.group(0).strip()
    if kind == "span":
        n, unit = _num(g["n"]), g["unit"]
        p = _span(n, unit, text)
        half = g["geban"] in ("个半", "年半") or g["half"]
        if half:
            if unit.endswith("月"):
                p = Period(text, months=p.months, days=15)
            elif unit == "年":
                p = Period(text, months=p.months + 6)
            elif unit in ("天", "日"):
                return p
        return p
    if kind == "half":
        return Period(text, days=15) if g["unit"] == "月" else Period(text, months=6)
    if kind == "geba":
        return Period(text, months=1) if g["unit"] == "月" else Period(text, days=7)
    if kind == "lai":
        return _span(_num(g["n"]), g["unit"], text)
    on: date | None = None
    if kind == "ymd":
        on = _valid(int(g["y"]), int(g["m"]), int(g["d"]), text)
    elif kind == "md":
        mo, d = _num(g["m"]), _num(g["d"])
        on = _with_year(g["yr"], lambda y: _valid(y, mo, d, text), today)
    elif kind == "slash":
        mo, d = int(g["m"]), int(g["d"])
        if not (1 <= mo <= 12 and 1 <= d <= 31):
            return None
        on = _with_year(None, lambda y: _valid(y, mo, d, text), today)
    elif kind == "mpart":
        part = g["part"]
        if g["m"].startswith("下"):
            nm = add_months(date(today.year, today.month, 1), 1)
            on = _part(nm.year, nm.month, part)
        else:
            mo = _num(g["m"])
            if not 1 <= mo <= 12:
                return None
            on = _with_year(g["yr"], lambda y: _part(y, mo, part), today)
    elif kind == "mend":
        on = _month_end(*_month_of(g["which"], today))
    elif kind == "mday":
        y, mo = _month_of(g["which"], today)
        on = _valid(y, mo, _num(g["d"]), text)
    elif kind == "dom":
        d = _num(g["d"])
        if not 1 <= d <= 31:
            return None
        on = None
        for k in (0, 1, 2):
            first = add_months(date(today.year, today.month, 1), k)
            try:
                cand = date(first.year, first.month, d)
            except ValueError:
                continue
            if cand >= today:
                on = cand
                break
    elif kind in ("yend", "yend2"):
        which = g["which"] or "今年"
        on = date(today.year + {"今年": 0, "本年": 0, "明年": 1, "后年": 2}[which], 12, 31)
    elif kind == "week":
        wd = _WEEKDAYS[g["wd"]]
        which = (g["which"] or "").rstrip("个")
        monday = today - timedelta(days=today.weekday())
        if which == "下下":
            on = monday + timedelta(days=14 + wd)
        elif which == "下":
            on = monday + timedelta(days=7 + wd)
        else:
            on = monday + timedelta(days=wd)
            if not which and on < today:
                on += timedelta(days=7)
    elif kind == "rel":
        on = today + timedelta(days={"明天": 1, "明日": 1, "后天": 2, "大后天": 3}[g["rel"]])
    elif kind == "holiday":
        name = g["name"]
        when = g["when"] or ""
        when = "前" if when in ("之前", "以前", "前") else "后" if when else ""
        if name == "年" and not when:
            return None  # a bare 年 is no date
        if name == "年" and g["pre"]:
            name = "过年"
        on = _holiday(name, when, today)
    if on is None:
        return None
    return Period(text, on=on)


def _valid(y: int, mo: int, d: int, text: str) -> date:
    try:
        return date(y, mo, d)
    except ValueError:
        raise DateParseError(f"“{text}”不是有效日期。") from None


def _with_year(yr: str | None, make, today: date) -> date:
    if yr:
        return make(today.year + {"今年": 0, "明年": 1, "后年": 2}[yr])
    d = make(today.year)
    return d if d >= today else make(today.year + 1)


def _part(y: int, mo: int, part: str) -> date:
    if part in ("底", "末", "下旬"):
        return _month_end(y, mo)
    if part in ("中", "中旬"):
        return date(y, mo, 15) if part == "中" else date(y, mo, 20)
    if part == "上旬":
        return date(y, mo, 10)
    return date(y, mo, 5)  # 初


def _month_of(which: str | None, today: date) -> tuple[int, int]:
    which = (which or "本").rstrip("个")
    k = {"本": 0, "这": 0, "当": 0, "下": 1, "下下": 2}[which]
    first = add_months(date(today.year, today.month, 1), k)
    return first.year, first.month


@dataclass(frozen=True)
class Found:
    period: Period
    start: int
    end: int


def find_period(text: str, today: date) -> Found | None:
    """The first (leftmost, then longest) period or date in a normalised simplified ``text``.

    Raises :class:`DateParseError` for a recognised but impossible date (2月30日)."""
    best: tuple[int, int, str, re.Match] | None = None
    for kind, pat in _PATTERNS:
        for m in pat.finditer(text):
            if m.end() == m.start():
                continue
            key = (m.start(), -(m.end() - m.start()))
            if best is None or key < (best[0], -(best[1] - best[0])):
                best = (m.start(), m.end(), kind, m)
            break  # only the first match of each pattern can be leftmost
    if best is None:
        return None
    start, end, kind, m = best
    p = _build(kind, m, today)
    if p is None:
        return None
    return Found(p, start, end)


def parse_period(text: str, today: date, *, base: date | None = None) -> date:
    """``parse_expiry`` and more: the end date a whole answer like “两个月”“下周五”“年前” means.

    Everything ``governance.dates.parse_expiry`` accepts gives the same date; spans count from
    ``base`` (default today). Raises :class:`DateParseError` with a Chinese message."""
    try:
        return parse_expiry(text, today, base=base)
    except DateParseError as e:
        first = e
    from nlu.normalize import clean

    t = clean(text)
    found = find_period(t, today)
    if found is None or t[:found.start].strip(" :,") not in ("", "到期", "截止", "期限") \
            or t[found.end:].strip(" ,.!。吧啊") != "":
        raise first
    return found.period.end(today, base)
