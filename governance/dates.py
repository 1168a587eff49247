"""Parsing the dates cadres write: 2026-12-31, 2026年12月31日, 12月31日, 30天, 3个月, 月底, 年底.

Pure: ``today`` is always passed in. Errors carry a Chinese message for the user.
"""
from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import date, timedelta

import zhconv


class DateParseError(ValueError):
    """The text is not a date we understand; ``str(err)`` is a Chinese message for users."""


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
_EXAMPLES = "请写成例如“2026-12-31”“12月31日”“30天”“3个月”“月底”或“年底”。"
MAX_YEARS_AHEAD = 10


def cn_int(s: str) -> int:
    """'30' / '三十' / '二十一' / '两' / '一百' / '二零二七' → int (ValueError otherwise). The one
    reader of Chinese numerals (the date parser here and ``nlu.periods``)."""
    if s.isdigit():
        return int(s)
    if not s:
        raise ValueError(s)
    total, cur = 0, 0
    for ch in s:
        if ch == "百":
            total += (cur or 1) * 100
            cur = 0
        elif ch == "十":
            total += (cur or 1) * 10
            cur = 0
        elif ch in _CN_DIGITS:
            cur = cur * 10 + _CN_DIGITS[ch] if cur else _CN_DIGITS[ch]  # 二零二七 style digits too
        else:
            raise ValueError(s)
    return total + cur


def cn_number(s: str) -> int:
    """``cn_int`` with the user's error: '30' / '三十' / '十五' / '两' → int."""
    try:
        return cn_int(s)
    except ValueError:
        raise DateParseError(f"看不懂数字“{s}”。") from None


def _clean(text: str) -> str:
    t = zhconv.convert(unicodedata.normalize("NFKC", text or ""), "zh-hans").strip()
    t = re.sub(r"^(到期|截止|期限)?\s*[:：]?\s*", "", t)
    t = re.sub(r"^(到|至|截至|截止到|截止)\s*", "", t)
    t = re.sub(r"(为止|前|之前|止|到期)$", "", t).strip()
    return t.replace(" ", "")


def _safe_date(y: int, m: int, d: int, original: str) -> date:
    try:
        return date(y, m, d)
    except ValueError:
        raise DateParseError(f"“{original}”不是有效日期。") from None


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    y += d.year
    m += 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def parse_date(text: str) -> date:
    """A full date: 2026-11-22, 2026/11/22, 2026.11.22 or 2026年11月22日 (for ledgers)."""
    t = _clean(text)
    m = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?", t)
    if not m:
        m2 = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})[T ][\d:.+\-Z]*", t)
        if not m2:
            raise DateParseError(f"日期“{text}”格式不对，应为“2026-11-22”或“2026年11月22日”。")
        m = m2
    return _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)), text)


def parse_expiry(text: str, today: date, *, base: date | None = None) -> date:
    """An end date written as a date or a span. Spans count from ``base`` (default today).

    A month-day without a year means the next such day from today (12月31日 in November is this
    year's; 1月15日 in November is next year's). A date in the past is refused.
    """
    t = _clean(text)
    if not t:
        raise DateParseError("没有写到期时间。" + _EXAMPLES)
    start = base or today
    result: date | None = None
    if t in ("月底", "本月底", "这个月底"):
        result = date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
    elif t in ("下月底", "下个月底"):
        nm = add_months(date(today.year, today.month, 1), 1)
        result = date(nm.year, nm.month, calendar.monthrange(nm.year, nm.month)[1])
    elif t in ("年底", "今年底", "本年底", "年末"):
        result = date(today.year, 12, 31)
    elif t in ("明年底", "明年年底"):
        result = date(today.year + 1, 12, 31)
    if result is None:
        m = re.fullmatch(r"([\d零〇一二两三四五六七八九十百]+)(个)?(天|日|周|星期|个?月|年)", t)
        if m:
            n = cn_number(m.group(1))
            unit = m.group(3)
            if n <= 0 or n > 3650:
                raise DateParseError(f"期限“{text}”不合理。" + _EXAMPLES)
            if unit in ("天", "日"):
                result = start + timedelta(days=n)
            elif unit in ("周", "星期"):
                result = start + timedelta(weeks=n)
            elif unit.endswith("月"):
                result = add_months(start, n)
            else:
                result = add_months(start, 12 * n)
    if result is None:
        m = re.fullmatch(r"(\d{1,2})月(\d{1,2})[日号]?", t) or re.fullmatch(r"(\d{1,2})[-/.](\d{1,2})", t)
        if m:
            mo, d = int(m.group(1)), int(m.group(2))
            result = _safe_date(today.year, mo, d, text)
            if result < today:
                result = _safe_date(today.year + 1, mo, d, text)
    if result is None:
        try:
            result = parse_date(t)
        except DateParseError:
            raise DateParseError(f"看不懂到期时间“{text}”。" + _EXAMPLES) from None
    if result < today:
        raise DateParseError(f"到期日期{fmt_date(result, today)}已经过去了。" + _EXAMPLES)
    if result.year > today.year + MAX_YEARS_AHEAD:
        raise DateParseError(f"到期日期{result.isoformat()}太远了，请写{MAX_YEARS_AHEAD}年以内的日期。")
    return result


def fmt_date(d: date, today: date | None = None) -> str:
    """12月31日 within the current year, 2027年2月27日 otherwise (as cadres write dates)."""
    if today is not None and d.year == today.year:
        return f"{d.month}月{d.day}日"
    return f"{d.year}年{d.month}月{d.day}日"
