"""Importing the ledger (台账, CSV or XLSX) and message records (JSONL exports).

Both importers validate everything first and import nothing if any row is invalid, unless
``skip_invalid`` is set. Re-importing the same file changes nothing.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from governance.dates import DateParseError, parse_date
from governance.ritual import is_ritual
from storage import audit
from storage.models import Group, Membership, Message, Person
from storage.ledger_format import (HEADER_SCAN_ROWS, Layout, LayoutError, check_overrides_used, find_header,
                                   ledger_id, parse_count, parse_ledger_date, report_date, temporary_word)
from storage.ingest.counters import recount
from storage.repo import insert_ignore
from storage.sheets import DEFAULT_MAX_UNZIPPED_BYTES, ImportFormatError, read_workbook, stream_csv

__all__ = ["ImportFormatError", "import_ledger", "import_messages", "read_ledger", "read_ledger_file"]

PLATFORMS = {"wecom": "wecom", "企业微信": "wecom", "企微": "wecom", "wechat": "wechat", "微信": "wechat",
             "个人微信": "wechat", "aibot": "aibot", "智能机器人": "aibot", "bridge": "bridge", "qq": "qq",
             "QQ": "qq", "dingtalk": "dingtalk", "钉钉": "dingtalk", "feishu": "feishu", "飞书": "feishu",
             "ledger": "ledger", "台账": "ledger", "": "ledger"}
CHUNK = 2000  # ledger rows per round of bulk statements
MAX_MEMBERS = 5000
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
PREVIEW_ROWS = 5


@dataclass
class RowError:
    """A problem with one row (or, with ``row`` 0, with one sheet); ``sheet`` is None for a CSV."""
    row: int
    reason: str
    sheet: str | None = None

    def __str__(self) -> str:
        where = f"工作表“{self.sheet}” " if self.sheet is not None else ""
        return f"{where}第{self.row}行：{self.reason}" if self.row else f"{where.strip()}：{self.reason}"


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    imported: bool = False
    #: message imports: the period the file covers and how many groups it covers
    covers: tuple[datetime, datetime] | None = None
    covered: int = 0
    sheets: list["SheetLayout"] = field(default_factory=list)
    preview: list["LedgerRow"] = field(default_factory=list)
    renamed: list[tuple[str, str, "LedgerRow"]] = field(default_factory=list)  # (group id, old name, row)
    missing: list[tuple[str, str, str | None]] = field(default_factory=list)  # (group id, name, unit)

    def summary(self, tz: ZoneInfo | None = None) -> str:
        s = f"新增{self.created}，更新{self.updated}，未变{self.unchanged}"
        if self.renamed:
            s += f"，改名{len(self.renamed)}"
        if self.skipped:
            s += f"，跳过无效行{self.skipped}"
        if self.covers is not None:
            a, b = (t.astimezone(tz) if tz else t for t in self.covers)
            s += f"；记录覆盖{a:%Y-%m-%d %H:%M}至{b:%Y-%m-%d %H:%M}，涉及{self.covered}个群"
        return s


@dataclass
class SheetLayout:
    sheet: str | None
    layout: Layout
    today: date  # the year of month-day dates: the sheet's 填报日期, else the import date
    report_date: date | None
    rows: int = 0


# --- validating ledger rows --------------------------------------------------------------------
def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


_SPACE = re.compile(r"\s")
_intern = sys.intern
_SPLIT = re.compile(r"[;\s]+")


def _members(v: Any) -> tuple[list[str], bool]:
    """The members of a cell, separated by 、，,；; spaces or line breaks, and whether all are ASCII."""
    text = _cell(v)
    for sep in ("；", ",", "，", "、"):  # str.replace scans fast when the separator is absent; translate does not
        if sep in text:
            text = text.replace(sep, ";")
    if _SPACE.search(text) is None:  # the usual case: nothing to strip
        return [m for m in text.split(";") if m], text.isascii()
    return [m for m in _SPLIT.split(text) if m], text.isascii()


@dataclass(slots=True)
class LedgerRow:
    row: int
    group_id: str
    name: str
    platform: str
    owner_id: str | None
    unit: str | None
    category: str | None
    purpose: str | None
    created_at: date | None
    expires_at: date | None
    member_ids: list[str]
    sheet: str | None = None
    note: str | None = None
    member_count: int | None = None  # a 成员数 column
    member_names: list[str] = field(default_factory=list)  # written as names, to resolve against the roster
    owner_name: str | None = None  # the owner written as a name
    unresolved: list[str] = field(default_factory=list)  # names that matched nobody (or two people)
    id_given: bool = True
    linked: bool = False  # a ledger entry confirmed to be a platform group: ``group_id`` is the group's

    @property
    def where(self) -> str:
        return (f"工作表“{self.sheet}” " if self.sheet is not None else "") + f"第{self.row}行"


def _date(v: Any, what: str, today: date, end: bool) -> date | None:
    if v is None or v == "":
        return None
    if type(v) is date:
        return v
    try:
        return parse_ledger_date(v, today, end)
    except ValueError as e:
        raise ValueError(f"{what}{e}") from None


def _split_people(tokens: list[str]) -> tuple[list[str], list[str]]:
    """Ids (ASCII, as the platforms give them) and names (to resolve against the roster)."""
    ids, names = [], []
    for t in tokens:
        if t.isascii():
            ids.append(t)
        else:
            names.append(_intern(t))  # a county's names recur in thousands of rows: one string each
    return ids, names


def validate_row(n: int, values: dict[str, Any], seen: dict[str, tuple[str | None, int]], *, sheet: str | None = None,
                 today: date | None = None, has_id: bool = True) -> LedgerRow:
    """One ledger row checked and understood; ``seen`` maps group ids to where they were first met.
    Without an id column (``has_id`` False) the group's id derives from its unit and name."""
    today = today or date.today()
    gid, name = _cell(values.get("group_id")), _cell(values.get("name"))
    unit = _cell(values.get("unit")) or (sheet if sheet else "") or None
    problems = []
    if not name:
        problems.append("群名称为空")
    elif len(name) > 128:
        problems.append("群名称超过128个字符")
    if has_id:
        if not gid:
            problems.append("群编号为空")
        elif len(gid) > 128:
            problems.append("群编号超过128个字符")
        elif gid in seen:
            problems.append(f"群编号“{gid}”在文件中重复")
    elif name and len(name) <= 128:
        gid = ledger_id(unit, name)
        if gid in seen:
            problems.append(f"群名称“{name}”与{_where(*seen[gid])}的群同名（同一单位内，忽略繁简、全半角、空格和标点"
                            "后相同），请删去重复的一行或改名")
    platform_raw = _cell(values.get("platform"))
    platform = PLATFORMS.get(platform_raw, PLATFORMS.get(platform_raw.lower()))
    if platform is None:
        problems.append(f"平台“{platform_raw}”无法识别（可用：企业微信、微信、钉钉、飞书、QQ、台账）")
    created = expires = None
    try:
        created = _date(values.get("created_at"), "建群日期", today, False)
    except ValueError as e:
        problems.append(str(e))
    try:
        expires = _date(values.get("expires_at"), "到期日期", today, True)
    except ValueError as e:
        problems.append(str(e))
    if created and expires and expires < created:
        problems.append("到期日期早于建群日期")
    members, ascii_only = _members(values.get("member_ids"))
    names: list[str] = []
    if not ascii_only:
        members, names = _split_people(members)
    if len(members) + len(names) > MAX_MEMBERS:
        problems.append(f"成员超过{MAX_MEMBERS}人")
    if (members and max(map(len, members)) > 64) or (names and max(map(len, names)) > 64):
        problems.append("成员编号超过64个字符")
    owner = _cell(values.get("owner_id")) or None
    owner_name = None
    if owner and len(owner) > 64:
        problems.append("群主编号超过64个字符")
    elif owner and not owner.isascii():
        owner, owner_name = None, owner
    count = None
    if "member_count" in values:
        try:
            count = parse_count(values["member_count"])
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise ValueError("；".join(problems))
    seen[gid] = (sheet, n)
    note = _cell(values.get("note")) or None if "note" in values else None
    return LedgerRow(n, gid, name, platform, owner, unit, _cell(values.get("category")) or None,
                     _cell(values.get("purpose")) or None, created, expires, sorted(set(members)), sheet, note,
                     count, sorted(set(names)) if names else [], owner_name, [], has_id)


def _where(sheet: str | None, n: int) -> str:
    return (f"工作表“{sheet}” " if sheet is not None else "") + f"第{n}行"


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


# --- reading ledger files ----------------------------------------------------------------------------
@dataclass
class LedgerFile:
    rows: list[LedgerRow]
    errors: list[RowError]
    warnings: list[RowError]
    sheets: list[SheetLayout]


def _sheets(path: Path, encoding: str, sink: dict, max_unzipped: int) -> list[tuple[str | None, Iterator]]:
    suffix = path.suffix.lower()
    if suffix in WORKBOOK_SUFFIXES:
        return list(read_workbook(path, max_unzipped))
    if suffix in (".csv", ".txt", ""):
        header, rows = stream_csv(path, encoding, sink)
        return [(None, itertools.chain([(1, header)], rows))]
    raise ImportFormatError(f"不支持的文件类型“{suffix}”，请使用 XLSX、XLS、ODS 或 CSV。")


def _blank(cells: list[Any]) -> bool:
    for c in cells:
        if c is not None and c != "" and (not isinstance(c, str) or c.strip()):
            return False
    return True


_NOT_GROUPS = frozenset({"合计", "总计", "小计", "合 计", "总 计"})
_FOOTERS = ("填表人", "审核人", "制表人", "填报人", "联系人", "负责人：", "说明：", "注：")


def _not_a_group(name: Any, name_header: str, values: dict[str, Any], cells: list[Any]) -> bool:
    """Rows that are no group: numbered but empty (only 序号 filled), a header repeated, a 合计 row, a
    填表人/审核人 footer."""
    text = _cell(name)
    if not text:
        return not any(_cell(v) for v in values.values()) or any(
            isinstance(c, str) and c.strip().startswith(_FOOTERS) for c in cells)
    return text == name_header or text in _NOT_GROUPS or text.startswith(_FOOTERS)


def read_ledger_file(path: Path, *, sink: dict | None = None, max_unzipped: int = DEFAULT_MAX_UNZIPPED_BYTES,
                     overrides: dict[str, str] | None = None, today: date | None = None) -> LedgerFile:
    """Every sheet's rows understood (valid rows, invalid ones with sheet and row, warnings), in one pass.
    A CSV that is not UTF-8 is read again as GB18030; ``sink["sha256"]`` gets the file's hash."""
    sink = sink if sink is not None else {}
    try:
        return _read_ledger(path, sink, "utf-8-sig", max_unzipped, overrides or {}, today)
    except UnicodeDecodeError:
        sink.clear()  # not UTF-8: Chinese Excel saves CSV as GBK; read it again as GB18030
    try:
        return _read_ledger(path, sink, "gb18030", max_unzipped, overrides or {}, today)
    except UnicodeDecodeError:
        raise ImportFormatError("文件编码无法识别，请另存为 UTF-8 编码的 CSV。") from None


def read_ledger(path: Path, sink: dict | None = None, max_unzipped: int = DEFAULT_MAX_UNZIPPED_BYTES
                ) -> tuple[list[LedgerRow], list[RowError]]:
    """Every valid row and every invalid one (with its row number), in one pass over the file."""
    f = read_ledger_file(path, sink=sink, max_unzipped=max_unzipped)
    return f.rows, f.errors


def _read_ledger(path: Path, sink: dict, encoding: str, max_unzipped: int, overrides: dict[str, str],
                 today: date | None) -> LedgerFile:
    out = LedgerFile([], [], [], [])
    seen: dict[str, tuple[str | None, int]] = {}
    first_error: LayoutError | None = None
    sheets = _sheets(path, encoding, sink, max_unzipped)
    for sheet, rows in sheets:
        if rows is None:
            out.warnings.append(RowError(0, "已隐藏，未读取", sheet))
            continue
        head = list(itertools.islice(rows, HEADER_SCAN_ROWS))
        if all(_blank(c) for _, c in head):
            continue  # an empty sheet
        try:
            pos, layout = find_header(head, overrides)
        except LayoutError as e:
            first_error = first_error or e
            out.warnings.append(RowError(0, "没有找到表头（应有 群名称 等列），未读取这个工作表", sheet))
            continue
        filled = report_date(head[:pos])
        sl = SheetLayout(sheet, layout, filled or today or date.today(), filled)
        out.sheets.append(sl)
        cols = [(i, f) for i, f, _ in layout.columns if f != "_ignore"]
        has_id = "group_id" in layout.fields
        day = sl.today
        # rows with an empty id wait for the sheet's end: an id column empty throughout means no ids
        deferred: list[tuple[int, dict]] = []
        any_id = False
        errors_before = len(out.errors)
        name_at = next(i for i, f in cols if f == "name")
        name_header = next(t for _, f, t in layout.columns if f == "name")
        for n, cells in itertools.chain(head[pos + 1:], rows):
            if _blank(cells):
                continue
            k = len(cells)
            values = {col: cells[i] if i < k else None for i, col in cols}
            name = cells[name_at] if name_at < k else None
            if not name or not isinstance(name, str) or name == name_header or name in _NOT_GROUPS \
                    or name.startswith(_FOOTERS):
                if _not_a_group(name, name_header, values, cells):
                    continue
            if has_id:
                if not _cell(values.get("group_id")):
                    deferred.append((n, values))
                    continue
                any_id = True
            try:
                out.rows.append(validate_row(n, values, seen, sheet=sheet, today=day, has_id=has_id))
                sl.rows += 1
            except ValueError as e:
                out.errors.append(RowError(n, str(e), sheet))
        for n, values in deferred:
            try:
                out.rows.append(validate_row(n, values, seen, sheet=sheet, today=day, has_id=any_id))
                sl.rows += 1
            except ValueError as e:
                out.errors.append(RowError(n, str(e), sheet))
        if deferred:
            out.errors[errors_before:] = sorted(out.errors[errors_before:], key=lambda e: e.row)
    if not out.sheets:
        if first_error is not None:
            raise ImportFormatError(str(first_error))
        raise ImportFormatError("文件是空的。")
    check_overrides_used(overrides, [sl.layout for sl in out.sheets])
    if len(sheets) == 1 and sheets[0][0] is None:
        out.warnings = [w for w in out.warnings if w.row]
    if "sha256" not in sink:
        sink["sha256"] = file_sha256(path)
    return out


@lru_cache(maxsize=1024)
def _temporary_word(category: str) -> bool | None:
    return temporary_word(category)


# --- importing the ledger ------------------------------------------------------------------------
def _midnight(d: date | None, tz: ZoneInfo, fallback: datetime) -> datetime:
    return datetime.combine(d, time(0), tz).astimezone(timezone.utc) if d else fallback


# Columns compared and written per group; ``created_at`` is only compared when the row gives a date.
_FIELDS = ("name", "platform", "owner_id", "unit", "category", "purpose", "expires_at", "temporary", "note",
           "created_at")
# Bound parameters per statement: SQLite allows 32,766, PostgreSQL 65,535; stay well below both.
MAX_PARAMS = 30_000


def _existing_groups(session: Session, ids: list[str]) -> dict[str, Any]:
    t = Group.__table__
    cols = [t.c.id, *(t.c[k] for k in _FIELDS), t.c.protected, t.c.registered_at, t.c.ledger_names,
            t.c.member_count]
    return {r.id: r for r in session.execute(select(*cols).where(t.c.id.in_(ids)))}


def _dbapi(session: Session):
    """The DBAPI connection under the session's transaction: plain tuples, no per-row ORM or Core work."""
    return session.connection().connection.dbapi_connection


def _existing_members(session: Session, pg: bool, ids: list[str]) -> dict[str, list[str]]:
    """Stored members of some groups, each list sorted (as ``LedgerRow.member_ids``)."""
    out: dict[str, list[str]] = {}
    if not ids:
        return out
    cur = _dbapi(session).cursor()
    try:
        if pg:
            cur.execute("SELECT group_id, person_id FROM memberships WHERE group_id = ANY(%s)", (ids,))
        else:
            cur.execute(f"SELECT group_id, person_id FROM memberships WHERE group_id IN ({','.join('?' * len(ids))})",
                        ids)
        for gid, pid in cur.fetchall():
            lst = out.get(gid)
            if lst is None:
                out[gid] = lst = []
            lst.append(pid)
    finally:
        cur.close()
    for lst in out.values():
        lst.sort()
    return out


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_members(session: Session, new_members: dict[str, list[str]]) -> None:
    """PostgreSQL: COPY the memberships of groups this transaction has just created (none can conflict).
    Text format written a group at a time; an id with a backslash, tab or line break goes through write_row."""
    cur = _dbapi(session).cursor()
    try:
        with cur.copy("COPY memberships (group_id, person_id) FROM STDIN") as cp:
            buf: list[str] = []
            for gid, ms in new_members.items():
                if _COPY_SPECIAL.search(gid) or _COPY_SPECIAL.search("".join(ms)):
                    for p in ms:
                        cp.write_row((gid, p))
                    continue
                head = gid + "\t"
                buf.append(head + ("\n" + head).join(ms) + "\n")
                if len(buf) >= 500:
                    cp.write("".join(buf))
                    buf.clear()
            if buf:
                cp.write("".join(buf))
    finally:
        cur.close()


_MEMBER_SQL = {  # (PostgreSQL with unnest arrays, SQLite executemany)
    "add": ("INSERT INTO memberships (group_id, person_id) SELECT * FROM unnest(%s::text[], %s::text[]) "
            "ON CONFLICT DO NOTHING",
            "INSERT INTO memberships (group_id, person_id) VALUES (?, ?) ON CONFLICT DO NOTHING"),
    "remove": ("DELETE FROM memberships m USING unnest(%s::text[], %s::text[]) AS d(g, p) "
               "WHERE m.group_id = d.g AND m.person_id = d.p",
               "DELETE FROM memberships WHERE group_id = ? AND person_id = ?"),
}


def _change_members(session: Session, pg: bool, op: str, pairs: list[tuple[str, str]]) -> None:
    """Add or remove (group_id, person_id) pairs in one statement per backend."""
    if not pairs:
        return
    pg_sql, sqlite_sql = _MEMBER_SQL[op]
    cur = _dbapi(session).cursor()
    try:
        if pg:
            cur.execute(pg_sql, ([g for g, _ in pairs], [p for _, p in pairs]))
        else:
            cur.executemany(sqlite_sql, pairs)
    finally:
        cur.close()


def _insert_groups(session: Session, rows: list[dict]) -> set[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id; the ids actually inserted.

    PostgreSQL: one statement per chunk, each column sent as one array and unnested (a 20-column
    multi-row VALUES costs psycopg more to parse than the server takes to run it). SQLite:
    executemany, which SQLAlchemy sends as multi-row VALUES pages ("insertmanyvalues", 1,000 rows,
    under the bound-parameter limit) from one cached compiled statement."""
    if not rows:
        return set()
    t = Group.__table__
    if session.get_bind().dialect.name == "postgresql":
        cols = list(rows[0])
        dialect = session.get_bind().dialect
        types = ", ".join(f"%s::{t.c[c].type.compile(dialect=dialect)}[]" for c in cols)
        sql = (f"INSERT INTO groups ({', '.join(cols)}) SELECT * FROM unnest({types}) "
               "ON CONFLICT (id) DO NOTHING RETURNING id")
        cur = _dbapi(session).cursor()
        try:
            json_cols = {c for c in cols if isinstance(t.c[c].type, JSON)}  # sent as text, cast by ::json[]
            cur.execute(sql, [[r[c] for r in rows] if c not in json_cols else
                              [None if r[c] is None else json.dumps(r[c], ensure_ascii=False) for r in rows]
                              for c in cols])
            return {gid for (gid,) in cur.fetchall()}
        finally:
            cur.close()
    stmt = _insert(session)(t).on_conflict_do_nothing(index_elements=["id"]).returning(t.c.id)
    made: set[str] = set()
    per = MAX_PARAMS // len(rows[0])
    for i in range(0, len(rows), per):
        made.update(session.execute(stmt, rows[i:i + per]).scalars())
    return made


def _ensure_persons(session: Session, ids: list[str], now: datetime) -> None:
    if ids:
        session.execute(_insert(session)(Person.__table__).on_conflict_do_nothing(index_elements=["id"]),
                        [{"id": p, "role": "cadre", "created_at": now, "unit": None} for p in ids])


def _update_groups(session: Session, changes: list[tuple[str, dict]]) -> None:
    """executemany UPDATEs, one statement per set of changed columns."""
    t = Group.__table__
    shapes: dict[tuple[str, ...], list[dict]] = {}
    for gid, diff in changes:
        keys = tuple(sorted(diff))
        shapes.setdefault(keys, []).append({"b_id": gid, **{f"b_{k}": diff[k] for k in keys}})
    for keys, params in shapes.items():
        stmt = update(t).where(t.c.id == bindparam("b_id")).values({k: bindparam(f"b_{k}") for k in keys})
        session.execute(stmt.execution_options(synchronize_session=False), params)


def _insert(session: Session):
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


class _Plan:
    """What one chunk of ledger rows changes, computed in Python from what is stored."""

    def __init__(self, now: datetime, actor: str, tz: ZoneInfo, protected_cats: set[str], temp_cats: set[str]):
        self.now, self.actor, self.tz = now, actor, tz
        self.protected_cats, self.temp_cats = protected_cats, temp_cats
        self.created = self.updated = self.unchanged = 0
        self.protected = 0  # groups this import protects (an operator's import grants protection)
        self.new_groups: list[dict] = []
        self.new_members: dict[str, list[str]] = {}
        self.changes: list[tuple[str, dict]] = []
        self.added: list[tuple[str, str]] = []
        self.removed: list[tuple[str, str]] = []

    def add(self, rows: list[LedgerRow], existing: dict[str, Any], members_now: dict[str, list[str]]) -> None:
        now, actor, protected_cats, temp_cats = self.now, self.actor, self.protected_cats, self.temp_cats
        for r in rows:
            cat = r.category
            temporary = _temporary_word(cat) if cat else None
            if temporary is None:
                temporary = bool(cat and (cat in temp_cats or "临时" in cat)) or (
                    r.expires_at is not None and not (cat and cat in protected_cats))
            created_at = _midnight(r.created_at, self.tz, now)
            g = existing.get(r.group_id)
            if g is None:
                self.protected += bool(cat and cat in protected_cats)
                self.new_groups.append({
                    "id": r.group_id, "name": r.name, "platform": r.platform, "owner_id": r.owner_id,
                    "unit": r.unit, "category": cat, "purpose": r.purpose, "expires_at": r.expires_at,
                    "temporary": temporary, "created_at": created_at, "first_seen_at": now, "source": "ledger",
                    "status": "active", "keep_count": 0, "message_count": 0, "ritual_count": 0,
                    "member_count": (len(r.member_ids) + len(r.unresolved) if r.member_ids or r.unresolved
                                     else r.member_count or 0), "updated_at": now,
                    "note": r.note, "ledger_names": r.unresolved or None,
                    "protected": bool(cat in protected_cats) if cat else False,
                    "registered_at": now if r.owner_id else None, "registered_by": actor if r.owner_id else None,
                })
                if r.member_ids:
                    self.new_members[r.group_id] = r.member_ids
                self.created += 1
                continue
            linked = r.linked  # the platform's name, platform and members stay the platform's
            want = (g.name if linked else r.name, g.platform if linked else r.platform, r.owner_id, r.unit, cat,
                    r.purpose, r.expires_at, temporary, r.note, created_at)
            diff = {k: v for k, v, old in zip(_FIELDS, want, tuple(g)[1:]) if old != v}
            if r.created_at is None or (linked and "created_at" in diff and diff["created_at"] > g.created_at):
                diff.pop("created_at", None)
            if cat in protected_cats and not g.protected:
                diff["protected"] = True
                self.protected += 1
                diff["protect_requested_at"] = diff["protect_requested_by"] = None
            if r.owner_id and g.registered_at is None:
                diff["registered_at"], diff["registered_by"] = now, actor
            # a linked group's members are the platform's: the ledger's member cell does not overwrite them;
            # an empty member cell leaves the stored members alone
            if not linked and (r.member_ids or r.unresolved):
                have = members_now.get(r.group_id, [])
                if have != r.member_ids:  # both sorted: no sets unless something changed
                    gid, have_s, want_s = r.group_id, set(have), set(r.member_ids)
                    self.added.extend((gid, p) for p in r.member_ids if p not in have_s)
                    self.removed.extend((gid, p) for p in have if p not in want_s)
                    diff["member_count"] = len(r.member_ids) + len(r.unresolved)
                if (g.ledger_names or []) != r.unresolved:
                    diff["ledger_names"] = r.unresolved or None
                    diff["member_count"] = len(r.member_ids) + len(r.unresolved)
            elif r.member_count is not None and r.member_count != g.member_count:
                diff["member_count"] = r.member_count
            if not diff:
                self.unchanged += 1
                continue
            diff["updated_at"] = now
            self.changes.append((r.group_id, diff))
            self.updated += 1


def _follow_links(session: Session, rows: list[LedgerRow]) -> None:
    """A ledger entry confirmed to be a platform group (``storage.reconcile.link``) is that group: its
    row writes the registration to the group (the platform's name and members stay the platform's)."""
    from storage.models import LedgerLink

    if not session.execute(select(LedgerLink.ledger_id).limit(1)).first():
        return
    ids = [r.group_id for r in rows if not r.id_given]
    found: dict[str, str] = {}
    for i in range(0, len(ids), 1000):
        found.update(session.execute(select(LedgerLink.ledger_id, LedgerLink.group_id)
                                     .where(LedgerLink.ledger_id.in_(ids[i:i + 1000]))).all())
    for r in rows:
        gid = found.get(r.group_id)
        if gid is not None:
            r.group_id, r.linked = gid, True


def _protected_ids(session: Session, ids: list[str]) -> set[str]:
    out: set[str] = set()
    for i in range(0, len(ids), 1000):
        out.update(session.execute(select(Group.id).where(Group.id.in_(ids[i:i + 1000]),
                                                          Group.protected.is_(True))).scalars())
    return out


RENAME_JACCARD = 0.8  # members (ids and unresolved names) alike enough to be the same group renamed
_GONE_STATUSES = ("dissolved", "purged", "merged")


def _renames_and_missing(session: Session, rows: list[LedgerRow], result: ImportResult, tz: ZoneInfo,
                         pg: bool) -> None:
    """Rows without ids: a row whose derived id is new but that is, by its members (or by its owner,
    created date and purpose), a stored ledger group of its unit that the file no longer names, is
    that group renamed (it keeps its id). Stored ledger groups of the file's units that the file no
    longer names are reported in ``result.missing``; nothing is deleted."""
    t = Group.__table__
    idless = [r for r in rows if not r.id_given]
    units = {r.unit for r in idless}
    named = [u for u in units if u is not None]
    in_units = t.c.unit.in_(named) if None not in units else (t.c.unit.in_(named) | t.c.unit.is_(None))
    stored = session.execute(
        select(t.c.id, t.c.name, t.c.unit, t.c.owner_id, t.c.purpose, t.c.created_at, t.c.ledger_names)
        .where(t.c.id.like("ledger:%"), t.c.source == "ledger", t.c.status.not_in(_GONE_STATUSES), in_units)
    ).all()
    file_ids = {r.group_id for r in rows}
    gone = {g.id: g for g in stored if g.id not in file_ids}
    result.missing = _linked_missing(session, file_ids, units)
    if not gone:
        result.missing.sort(key=lambda m: (m[2] or "", m[1]))
        return
    known = set(session.execute(select(t.c.id).where(t.c.id.in_([r.group_id for r in idless]))).scalars())
    fresh = [r for r in idless if r.group_id not in known]
    members = _existing_members(session, pg, list(gone)) if fresh else {}

    def same(r: LedgerRow, g) -> bool:
        a = set(r.member_ids) | set(r.unresolved)
        b = set(members.get(g.id, [])) | set(g.ledger_names or [])
        if len(a) >= 3 and len(b) >= 3 and len(a & b) >= RENAME_JACCARD * len(a | b):
            return True
        created = g.created_at.astimezone(tz).date() if g.created_at else None
        return bool(r.owner_id and r.owner_id == g.owner_id and r.created_at and r.created_at == created
                    and r.purpose and r.purpose == g.purpose)

    matches = {id(r): [g for g in gone.values() if same(r, g)] for r in fresh}  # a unit may change too
    claimed: dict[str, int] = {}
    for ms in matches.values():
        for g in ms:
            claimed[g.id] = claimed.get(g.id, 0) + 1
    for r in fresh:
        ms = matches[id(r)]
        if len(ms) == 1 and claimed[ms[0].id] == 1:  # one to one, or it stays a new group
            g = gone.pop(ms[0].id)
            result.renamed.append((g.id, g.name, r))
            r.group_id = g.id
    result.missing = sorted([*result.missing, *((g.id, g.name, g.unit) for g in gone.values())],
                            key=lambda m: (m[2] or "", m[1]))


def _linked_missing(session: Session, file_ids: set[str], units: set[str | None]) -> list[tuple[str, str, str | None]]:
    """Ledger entries of the file's units confirmed to be a platform group (``ledger_links``) that the
    file no longer names: reported as missing like any other (the group itself stays)."""
    from storage.models import LedgerLink

    t = Group.__table__
    out = []
    for lid, gid, name, unit in session.execute(
            select(LedgerLink.ledger_id, LedgerLink.group_id, LedgerLink.ledger_name, LedgerLink.ledger_unit)
            .join(Group, Group.id == LedgerLink.group_id).where(t.c.status.not_in(_GONE_STATUSES))):
        if gid not in file_ids and unit in units:
            out.append((gid, name, unit))
    return out


def import_ledger(session: Session, path: Path, *, now: datetime, settings, actor: str = "import",
                  skip_invalid: bool = False, overrides: dict[str, str] | None = None,
                  dry_run: bool = False) -> ImportResult:
    """Validate the whole file, then write it in chunks of ``CHUNK`` rows with a few bulk statements each:
    one SELECT of the chunk's groups and one of their memberships, the diff in Python, then
    INSERT … ON CONFLICT DO NOTHING of new groups, executemany UPDATEs of changed ones, one DELETE of
    removed memberships and one bulk insert of added ones (COPY on PostgreSQL for new groups)."""
    sink: dict = {}
    tz = settings.tz
    f = read_ledger_file(path, sink=sink, overrides=overrides, today=now.astimezone(tz).date(),
                         max_unzipped=getattr(settings, "import_max_unzipped_bytes", DEFAULT_MAX_UNZIPPED_BYTES))
    rows, errors = f.rows, f.errors
    result = ImportResult(errors=errors, skipped=len(errors), warnings=f.warnings, sheets=f.sheets,
                          preview=rows[:PREVIEW_ROWS])
    if errors and not skip_invalid and not dry_run:
        return result
    from storage.people import resolve_names

    resolve_names(session, rows, result.warnings)  # members and owners written as names
    _follow_links(session, rows)
    if any(not r.id_given for r in rows):
        _renames_and_missing(session, rows, result, tz, pg=session.get_bind().dialect.name == "postgresql")
    protected_cats = set(settings.protected_categories)
    # 受保护 = exempt from automatic warning and dissolution: such a group has no end date. The
    # import is run by an operator with database access, so a protected category in it counts as an
    # administrator's grant of protection.
    dated = [r for r in rows if r.expires_at is not None]
    already = _protected_ids(session, [r.group_id for r in dated if r.category not in protected_cats])
    bad = {(r.sheet, r.row): (f"类别“{r.category}”是受保护类别，受保护的群不能有到期日期" if r.category in protected_cats
                              else f"群“{r.name}”已受保护，不能有到期日期（如需改为临时群，请管理员先取消保护）")
           for r in dated if r.category in protected_cats or r.group_id in already}
    if bad:
        errors = result.errors = sorted(errors + [RowError(n, why, sheet) for (sheet, n), why in bad.items()],
                                        key=lambda e: (e.sheet or "", e.row))
        result.skipped = len(errors)
        rows = [r for r in rows if (r.sheet, r.row) not in bad]
        if not skip_invalid and not dry_run:
            return result
    temp_cats = set(settings.temporary_categories)
    pg = session.get_bind().dialect.name == "postgresql"
    session.flush()
    owners_done: set[str] = set()
    protected = 0
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        plan = _Plan(now, actor, tz, protected_cats, temp_cats)
        existing = _existing_groups(session, [r.group_id for r in chunk])
        plan.add(chunk, existing, _existing_members(session, pg, [r.group_id for r in chunk if r.group_id in existing]))
        if dry_run:  # what would change, nothing written
            result.created += plan.created
            result.updated += plan.updated
            result.unchanged += plan.unchanged
            continue
        owners = sorted({r.owner_id for r in chunk if r.owner_id} - owners_done)
        _ensure_persons(session, owners, now)
        owners_done.update(owners)
        made = _insert_groups(session, plan.new_groups)
        if len(made) < len(plan.new_groups):
            # Created meanwhile by another writer (ON CONFLICT DO NOTHING skipped them): diff them as existing.
            late = [r for r in chunk if r.group_id not in existing and r.group_id not in made]
            late_ids = [r.group_id for r in late]
            plan.created -= len(late)
            plan.protected -= sum(1 for r in late if r.category and r.category in protected_cats)
            plan.add(late, _existing_groups(session, late_ids), _existing_members(session, pg, late_ids))
        result.created += plan.created
        result.updated += plan.updated
        result.unchanged += plan.unchanged
        protected += plan.protected
        fresh = {gid: ms for gid, ms in plan.new_members.items() if gid in made}
        if pg and fresh:
            _copy_members(session, fresh)  # no row can conflict: this transaction just created these groups
            fresh = {}
        _change_members(session, pg, "add", [(gid, p) for gid, ms in fresh.items() for p in ms] + plan.added)
        _update_groups(session, plan.changes)
        _change_members(session, pg, "remove", plan.removed)
    if dry_run:
        return result
    result.imported = True
    if result.created or result.updated:
        audit.record(session, actor=actor, action="import", at=now, reason=f"导入台账 {path.name}",
                     data={"file_sha256": sink["sha256"], "created": result.created,
                           "updated": result.updated, "skipped": result.skipped, "protected": protected,
                           **({"renamed": [[gid, old, r.name] for gid, old, r in result.renamed]}
                              if result.renamed else {}),
                           **({"missing": [gid for gid, _, _ in result.missing]} if result.missing else {})})
    return result


# --- importing messages ------------------------------------------------------------------------------
@dataclass
class MessageRow:
    line: int
    group_id: str
    sender_id: str
    sent_at: datetime
    text: str
    msg_id: str


# Archive rows are checked against the clock too: one message dated 9999 would keep its group alive
# forever. An archive may be years old (it is history), so the lower bound is only a sanity one.
ARCHIVE_EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
PERSON_ID_MAX = 64  # persons.id, memberships.person_id, messages.sender_id


def _parse_message(n: int, raw: str, now: datetime | None = None, tolerance: int = 300) -> MessageRow:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"不是有效的 JSON（{e.msg}）") from None
    if not isinstance(obj, dict):
        raise ValueError("每行应是一个 JSON 对象")
    problems = []
    for key in ("group_id", "sender_id", "sent_at", "msg_id"):
        v = obj.get(key)
        if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v).strip() == "":
            problems.append(f"缺少 {key}")
    text = obj.get("text", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        problems.append("text 应为字符串")
    sent_at = None
    if isinstance(obj.get("sent_at"), str):
        try:
            sent_at = datetime.fromisoformat(obj["sent_at"].replace("Z", "+00:00"))
            if sent_at.tzinfo is None:
                problems.append("sent_at 缺少时区（应如 2026-11-22T09:30:00+08:00）")
            elif now is not None and sent_at > now + timedelta(seconds=tolerance):
                problems.append(f"sent_at“{obj['sent_at'][:40]}”晚于当前时间，不可信")
            elif sent_at < ARCHIVE_EARLIEST:
                problems.append(f"sent_at“{obj['sent_at'][:40]}”早于 2000 年，不可信")
        except (ValueError, OverflowError):
            problems.append(f"sent_at“{obj['sent_at'][:40]}”不是 ISO 8601 时间")
    if any(len(str(obj.get(k, ""))) > 128 for k in ("group_id", "msg_id")):
        problems.append("编号过长")
    elif len(str(obj.get("sender_id", ""))) > PERSON_ID_MAX:
        problems.append(f"发送人编号过长（最多 {PERSON_ID_MAX} 个字符）")
    if problems:
        raise ValueError("；".join(dict.fromkeys(problems)))
    return MessageRow(n, str(obj["group_id"]).strip(), str(obj["sender_id"]).strip(), sent_at, text,
                      str(obj["msg_id"]).strip())


def read_messages(path: Path, *, now: datetime | None = None, tolerance: int = 300
                  ) -> tuple[list[MessageRow], list[RowError]]:
    """Rows and row errors; given ``now``, a ``sent_at`` more than ``tolerance`` seconds after it is an error."""
    good, errors = [], []
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig").strip()
            except UnicodeDecodeError:
                errors.append(RowError(n, "不是 UTF-8 编码"))
                continue
            if not line:
                continue
            try:
                good.append(_parse_message(n, line, now, tolerance))
            except ValueError as e:
                errors.append(RowError(n, str(e)))
    return good, errors


def parse_covers(text: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``--covers FROM..TO``: dates (``2026-09-01``, ``2026年9月1日``; FROM from 00:00, TO to the end of
    the day in ``tz``) or ISO 8601 times with a time zone."""
    parts = text.split("..")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ImportFormatError(f"覆盖期“{text}”应写成“开始..结束”，例如 2026-09-01..2026-11-30。")

    def one(v: str, end: bool) -> datetime:
        v = v.strip()
        if "T" in v or " " in v:
            try:
                t = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                raise ImportFormatError(f"覆盖期中的“{v}”不是有效的时间。") from None
            if t.tzinfo is None:
                raise ImportFormatError(f"覆盖期中的“{v}”缺少时区（应如 2026-09-01T00:00:00+08:00）。")
            return t
        try:
            d = parse_date(v)
        except DateParseError:
            raise ImportFormatError(f"覆盖期中的“{v}”不是有效的日期。") from None
        return datetime.combine(d, time.max if end else time(0), tz)

    start, end = one(parts[0], False), one(parts[1], True)
    if end < start:
        raise ImportFormatError("覆盖期的结束早于开始。")
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


#: groups known only from the ledger or a registration: their chat platform is unknown, so a
#: file naming some of them does not cover the others
_NO_PLATFORM = "ledger"


def _cover(session: Session, file_ids: set[str], covers: tuple[datetime, datetime],
           groups_in_file_only: bool) -> tuple[int, int, list[str]]:
    """Record that the archive covers ``covers`` for some groups: their observation starts no later than
    the start of the coverage (``groups.observed_since``).  Covered are the groups the file names and,
    unless ``groups_in_file_only``, every known group of the file's platforms (the platforms of the
    known groups it names, ``ledger`` left out).  A group created after the coverage ends is not covered.
    Returns (covered groups, groups whose observation start moved earlier, platforms)."""
    start, end = covers
    t = Group.__table__
    ids = sorted(file_ids)
    platforms: set[str] = set()
    if not groups_in_file_only:
        for i in range(0, len(ids), 1000):
            platforms.update(session.execute(select(t.c.platform).where(t.c.id.in_(ids[i:i + 1000]))
                                             .distinct()).scalars())
        platforms.discard(_NO_PLATFORM)
    earlier = or_(t.c.observed_since.is_(None), t.c.observed_since > start)
    moved = covered = 0
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        moved += session.execute(update(t).where(t.c.id.in_(chunk), t.c.created_at <= end, earlier)
                                 .values(observed_since=start).execution_options(synchronize_session=False)).rowcount
        cond = [t.c.id.in_(chunk), t.c.created_at <= end]
        if platforms:
            cond.append(t.c.platform.not_in(sorted(platforms)))  # counted with their platform below
        covered += session.execute(select(func.count()).select_from(t).where(*cond)).scalar_one()
    if platforms:
        plats = sorted(platforms)
        moved += session.execute(update(t).where(t.c.platform.in_(plats), t.c.created_at <= end, earlier)
                                 .values(observed_since=start).execution_options(synchronize_session=False)).rowcount
        covered += session.execute(select(func.count()).select_from(t).where(
            t.c.platform.in_(plats), t.c.created_at <= end)).scalar_one()
    return covered, moved, sorted(platforms)


def import_messages(session: Session, path: Path, *, now: datetime, settings, skip_invalid: bool = False,
                    actor: str = "import", covers: tuple[datetime, datetime] | None = None,
                    groups_in_file_only: bool = False) -> ImportResult:
    """Import an archive and record what it covers (see :func:`_cover`): by default from the earliest to
    the latest ``sent_at`` in the file; ``covers`` states it.  A covered group without any work message
    in the file is idle since the later of its creation and the start of the coverage, whenever the
    import runs."""
    rows, errors = read_messages(path, now=now, tolerance=int(getattr(settings, "wecom_timestamp_tolerance", 300)))
    result = ImportResult(errors=errors, skipped=len(errors))
    if errors and not skip_invalid:
        return result
    touched: set[str] = set()
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        gids = {r.group_id for r in chunk}
        known = set(session.execute(select(Group.id).where(Group.id.in_(gids))).scalars())
        insert_ignore(session, Group, [{
            "id": g, "platform": "ledger", "name": g, "created_at": min(r.sent_at for r in chunk if r.group_id == g),
            "first_seen_at": now, "source": "activity", "status": "active", "member_count": 0, "message_count": 0,
            "ritual_count": 0, "keep_count": 0, "temporary": False, "protected": False, "updated_at": now,
        } for g in gids - known], ["id"])
        new = insert_ignore(session, Message, [{
            "dedupe_key": f"archive:{r.msg_id}", "platform": "archive", "group_id": r.group_id,
            "sender_id": r.sender_id, "sent_at": r.sent_at, "is_ritual": is_ritual(r.text),
            "text": r.text if settings.store_message_text else None,
        } for r in chunk], ["dedupe_key"])
        result.created += new
        result.unchanged += len(chunk) - new
        if new:
            touched |= gids
            insert_ignore(session, Membership, [{"group_id": r.group_id, "person_id": r.sender_id, "joined_at": None}
                                                for r in chunk], ["group_id", "person_id"])
    if touched:
        recount(session, touched)  # the one counter definition (storage.ingest.counters)
        for gid in touched:
            cnt = session.execute(select(func.count()).where(Membership.group_id == gid)).scalar_one()
            session.execute(update(Group).where(Group.id == gid).values(member_count=cnt))
    if covers is None and rows:
        covers = (min(r.sent_at for r in rows).astimezone(timezone.utc),
                  max(r.sent_at for r in rows).astimezone(timezone.utc))
    moved, platforms = 0, []
    if covers is not None:
        result.covers = covers
        result.covered, moved, platforms = _cover(session, {r.group_id for r in rows}, covers, groups_in_file_only)
    if touched or moved:
        audit.record(session, actor=actor, action="import", at=now, reason=f"导入消息记录 {path.name}",
                     data={"messages": result.created, "groups": len(touched), "skipped": result.skipped,
                           "covers": [covers[0].isoformat(), covers[1].isoformat()] if covers else None,
                           "covered_groups": result.covered, "observation_moved": moved,
                           "platforms": platforms, "groups_in_file_only": groups_in_file_only})
    result.imported = True
    return result
