"""The ledger as counties write it, without a database: which row is the header and what its columns
mean, 填报日期, dates, categories and member lists as people write them, and the stable id of a group
that has no platform id. Messages for users are in Chinese."""
from __future__ import annotations

import calendar
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Iterable

from governance.dates import DateParseError, parse_date
from governance.text import normalize, strip_symbols
from storage.sheets import ImportFormatError

# field -> what it is called in the template and by people (matched after ``header_key``)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "group_id": ("group_id", "群编号", "群ID", "群id", "chat_id", "chatid", "群聊ID"),
    "name": ("name", "群名称", "工作群名称", "群名", "群聊名称", "工作群名"),
    "platform": ("platform", "平台", "所属平台"),
    "owner_id": ("owner_id", "群主", "负责人", "群主姓名", "管理员", "群主ID", "群负责人"),
    "unit": ("unit", "单位", "所属单位", "责任单位", "部门", "单位名称"),
    "category": ("category", "类别", "群类型", "类型", "性质", "群类别"),
    "purpose": ("purpose", "用途", "建群用途", "用途说明", "主要用途"),
    "created_at": ("created_at", "建群日期", "建群时间", "创建时间", "成立时间", "创建日期"),
    "expires_at": ("expires_at", "到期日期", "拟解散时间", "解散时间", "截止时间", "使用期限", "到期时间"),
    "member_ids": ("member_ids", "成员", "群成员", "成员名单", "人员", "成员ID"),
    "member_count": ("member_count", "成员数", "人数", "群成员数", "成员人数", "群人数"),
    "note": ("note", "备注"),
    "_ignore": ("序号", "编号"),
}
# what the user sees for each field (mapping printouts, errors)
LABELS = {"group_id": "群编号", "name": "群名称", "platform": "平台", "owner_id": "群主", "unit": "单位",
          "category": "类别", "purpose": "用途", "created_at": "建群日期", "expires_at": "到期日期",
          "member_ids": "成员", "member_count": "成员数", "note": "备注", "_ignore": "忽略"}
IGNORE_WORDS = ("忽略", "ignore", "不导入", "-")
REQUIRED = ("name",)
HEADER_SCAN_ROWS = 30  # the header must be among a sheet's first rows
MIN_KNOWN = 2  # a header row names the group and at least one more known column


def header_key(text: Any) -> str:
    """A header cell compared after folding width, case, spaces, traditional characters and punctuation."""
    if text is None:
        return ""
    return strip_symbols(normalize(str(text)))


class Schema:
    """The columns one kind of sheet has: field -> synonyms, field -> label, the required fields."""

    def __init__(self, synonyms: dict[str, tuple[str, ...]], labels: dict[str, str], required: tuple[str, ...],
                 missing: str):
        self.synonyms, self.labels, self.required, self.missing = synonyms, labels, required, missing
        self.known = {header_key(s): f for f, syns in synonyms.items() for s in syns}

    def field_for(self, word: str) -> str | None:
        """The field a ``--map`` target names: a field key, or any of its names."""
        w = header_key(word)
        if w in {header_key(x) for x in IGNORE_WORDS}:
            return "_ignore"
        if word.strip() in self.synonyms:
            return word.strip()
        return self.known.get(w) or {header_key(v): k for k, v in self.labels.items()}.get(w)


LEDGER = Schema(SYNONYMS, LABELS, REQUIRED,
                "缺少必需的列：群名称（也可写作 工作群名称、群名），没有找到表头。表头应包含 群名称 和 群主、"
                "单位、类别、用途、建群日期、到期日期、成员 等列中的几列；也可用 --map 列名=字段 指定。")
KNOWN = LEDGER.known


class LayoutError(ImportFormatError):
    """The header cannot be found or a mapping is wrong (Chinese message)."""


@dataclass
class Layout:
    """Where a sheet's header is and what each column means."""
    header_row: int  # 1-based, as a spreadsheet shows it
    columns: list[tuple[int, str, str]]  # (column index, field, header text as written)
    ignored: list[str]  # header texts of columns not read
    labels: dict[str, str] = field(default_factory=lambda: LABELS)

    def describe(self) -> list[str]:
        out = [f"“{text}” → {self.labels[f]}" for _, f, text in self.columns if f != "_ignore"]
        if self.ignored:
            out.append("不读取：" + "、".join(f"“{t}”" for t in self.ignored))
        return out

    @property
    def fields(self) -> set[str]:
        return {f for _, f, _ in self.columns}


def parse_map(items: Iterable[str], schema: Schema = LEDGER) -> dict[str, str]:
    """``--map 列名=字段`` options as {header key: field}; a bad one raises LayoutError."""
    out: dict[str, str] = {}
    for item in items:
        col, sep, target = item.replace("＝", "=").partition("=")
        if not sep or not col.strip() or not target.strip():
            raise LayoutError(f"--map “{item}” 格式不对，应写成 列名=字段，例如 --map 群的名字=群名称。")
        f = schema.field_for(target)
        if f is None:
            names = "、".join(v for k, v in schema.labels.items() if k != "_ignore")
            raise LayoutError(f"--map “{item}”：不认识字段“{target.strip()}”，可用：{names}，或“忽略”。")
        out[header_key(col)] = f
    return out


def _match(cells: list[Any], overrides: dict[str, str], known: dict[str, str]
           ) -> tuple[list[tuple[int, str, str]], list[str]]:
    cols, ignored, used = [], [], set()
    keys = [header_key(c) for c in cells]
    claimed = {overrides[k] for k in keys if k in overrides}  # a field given by --map is never guessed
    for i, c in enumerate(cells):
        text = str(c).strip() if c is not None else ""
        if not text:
            continue
        key = keys[i]
        f = overrides.get(key) or (None if known.get(key) in claimed else known.get(key))
        if f is None or f == "_ignore" or f in used:
            ignored.append(text)
            continue
        used.add(f)
        cols.append((i, f, text))
    return cols, ignored


def find_header(rows: list[tuple[int, list[Any]]], overrides: dict[str, str] | None = None,
                schema: Schema = LEDGER) -> tuple[int, Layout]:
    """The first row that names the required columns and enough other known ones: (its position in
    ``rows``, its layout). Title rows, 填报 lines, blank rows and merged cells above it are skipped."""
    overrides = overrides or {}
    for pos, (n, cells) in enumerate(rows[:HEADER_SCAN_ROWS]):
        cols, ignored = _match(cells, overrides, schema.known)
        fields = {f for _, f, _ in cols}
        if all(r in fields for r in schema.required) and len(fields) >= MIN_KNOWN:
            return pos, Layout(n, cols, ignored, schema.labels)
    raise LayoutError(schema.missing)


def check_overrides_used(overrides: dict[str, str], layouts: list[Layout]) -> None:
    """Every ``--map`` column must be a header of some sheet (a typo would silently do nothing)."""
    present = {header_key(t) for lay in layouts for t in [*(c[2] for c in lay.columns), *lay.ignored]}
    missing = [k for k in overrides if k not in present]
    if missing:
        raise LayoutError("--map 中的列在表头中找不到：" + "、".join(f"“{m}”" for m in missing) + "。")


_REPORT_DATE = re.compile(r"(填报|统计|报送)(日期|时间)\s*[:：]?\s*(\d{4})\s*[年./-]\s*(\d{1,2})\s*[月./-]\s*(\d{1,2})")


def report_date(rows: Iterable[tuple[int, list[Any]]]) -> date | None:
    """The 填报日期 written above the header, if any: in the same cell (填报日期：2026年11月20日) or in
    the next one (a date cell or its text)."""
    for _, cells in rows:
        for i, c in enumerate(cells):
            if not isinstance(c, str) or not any(w in c for w in ("填报", "统计", "报送")):
                continue
            text = unicodedata.normalize("NFKC", c)
            m = _REPORT_DATE.search(text)
            if m:
                try:
                    return date(int(m.group(3)), int(m.group(4)), int(m.group(5)))
                except ValueError:
                    return None
            if re.search(r"(填报|统计|报送)(日期|时间)\s*[:：]?\s*$", text):
                nxt = next((x for x in cells[i + 1:] if x not in (None, "")), None)
                if isinstance(nxt, datetime):
                    return nxt.date()
                if isinstance(nxt, date):
                    return nxt
                if nxt is not None:
                    try:
                        return parse_ledger_date(nxt, date.today())
                    except ValueError:
                        return None
    return None


# --- values ------------------------------------------------------------------------------------------
NO_END = frozenset({"长期", "常设", "长期有效", "永久", "无", "不解散", "长期保留", "常态化"})
_EXCEL_EPOCH = date(1899, 12, 30)
_SERIAL_MIN, _SERIAL_MAX = 20000, 80000  # 1954 … 2119: a plain number outside is no date
_MONTH = re.compile(r"(\d{4})[年./-](\d{1,2})月?")
_MONTH_DAY = re.compile(r"(\d{1,2})月(\d{1,2})[日号]?")


def _serial(x: float) -> date:
    if not (_SERIAL_MIN <= x <= _SERIAL_MAX):
        raise ValueError(f"“{x:g}”不是日期")
    return _EXCEL_EPOCH + timedelta(days=int(x))


@lru_cache(maxsize=4096)
def _parse_text(text: str, today: date, end: bool) -> date | None:
    t = unicodedata.normalize("NFKC", text).strip().replace(" ", "")
    if not t or t in NO_END:
        return None
    if t.isdigit() or re.fullmatch(r"\d+\.\d+", t):
        if len(t.split(".")[0]) >= 5:
            return _serial(float(t))
        raise ValueError(f"“{text}”不是日期")
    try:
        return parse_date(t)
    except DateParseError:
        pass  # not a full date: try the month and the month-day forms below, else the error at the end
    m = _MONTH.fullmatch(t)
    if m:
        y, mo = int(m.group(1)), int(m.group(2))
        if 1 <= mo <= 12:
            return date(y, mo, calendar.monthrange(y, mo)[1] if end else 1)
    m = _MONTH_DAY.fullmatch(t)
    if m:
        try:
            return date(today.year, int(m.group(1)), int(m.group(2)))
        except ValueError:
            pass  # 2月30日: an impossible day falls through to the error below
    raise ValueError(f"“{text}”不是日期，应写成例如“2026-05-01”“2026.5.1”“2026年5月”或“长期”")


def parse_ledger_date(v: Any, today: date, end: bool = False) -> date | None:
    """A ledger date cell: an Excel date, an Excel serial number, 2026-05-01, 2026.5.1, 2026/5/1,
    2026年5月1日, 2026年5月 (the 1st, or with ``end`` the month's last day), 5月1日 (the year of ``today``,
    the file's 填报日期 or the import date); 长期/常设 mean no end (None). ValueError otherwise."""
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, bool):
        raise ValueError(f"“{v}”不是日期")
    if isinstance(v, (int, float)):
        return _serial(float(v))
    return _parse_text(str(v), today, end)


STANDING_WORDS = frozenset({"常设", "常设群", "长期", "长期群", "常态", "常态化"})
TEMPORARY_WORDS = frozenset({"临时", "临时群", "专班", "专班群", "工作专班", "临时专班", "专项"})


def temporary_word(category: str | None) -> bool | None:
    """True/False when the category word itself says temporary or standing; None when it does not say."""
    if not category:
        return None
    c = header_key(category)
    if c in STANDING_WORDS:
        return False
    if c in TEMPORARY_WORDS or "临时" in c or "专班" in c:
        return True
    return None


_COUNT = re.compile(r"(\d+)\s*(人|名)?")


def parse_count(v: Any) -> int | None:
    """A 成员数/人数 cell: 37, 37.0, "37", "37人"."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError("成员数不是数字")
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or v < 0 or v != int(v) or v > 10**7:
            raise ValueError(f"成员数“{v}”不是人数")
        return int(v)
    m = _COUNT.fullmatch(unicodedata.normalize("NFKC", str(v)).strip())
    if not m or len(m.group(1)) > 7:
        raise ValueError(f"成员数“{v}”不是人数")
    return int(m.group(1))


def name_key(name: str) -> str:
    """A group name compared for identity: width, case, spaces, traditional characters and punctuation
    folded (the 群/工作群 ending and trailing numbers are kept: 网格群1 and 网格群2 are two groups)."""
    return strip_symbols(normalize(name))


def ledger_id(unit: str | None, name: str) -> str:
    """The stable id of a group the ledger names without a platform id."""
    key = f"{header_key(unit or '')}\x1f{name_key(name)}"
    return "ledger:" + hashlib.sha256(key.encode()).hexdigest()[:24]
