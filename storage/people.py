"""The roster (花名册, ``qunzhi import people``) and resolving the names a ledger writes against it.

A roster row names a person, their unit and 职务, and their platform accounts (企业微信 userid, 钉钉
userid, 飞书 open_id); the person's id is the WeCom userid, else the DingTalk one, else the Feishu one.
A ledger member or owner written as a name is resolved to one person: the only one of that name, or
the only one of that name in the group's unit. Anything else (nobody, or two people) is a warning with
its sheet and row and the name stays unresolved: counted in the group's size, never a person.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.text import normalize
from storage import audit
from storage.importers import ImportResult, RowError, _blank, _cell, _sheets, file_sha256
from storage.ledger_format import HEADER_SCAN_ROWS, LayoutError, Schema, check_overrides_used, find_header, header_key
from storage.models import Person
from storage.sheets import DEFAULT_MAX_UNZIPPED_BYTES, ImportFormatError

PEOPLE = Schema(
    {"name": ("姓名", "名字", "人员姓名", "name"),
     "unit": ("单位", "所属单位", "工作单位", "部门", "unit"),
     "title": ("职务", "职位", "岗位", "title"),
     "wecom": ("企业微信账号", "企业微信", "userid", "企业微信userid", "企业微信ID", "企微账号", "账号", "wecom"),
     "dingtalk": ("钉钉userid", "钉钉账号", "钉钉ID", "钉钉", "dingtalk"),
     "feishu": ("飞书open_id", "飞书openid", "open_id", "飞书ID", "飞书账号", "飞书", "feishu"),
     "_ignore": ("序号",)},
    {"name": "姓名", "unit": "单位", "title": "职务", "wecom": "企业微信账号", "dingtalk": "钉钉 userid",
     "feishu": "飞书 open_id", "_ignore": "忽略"},
    ("name",),
    "缺少必需的列：姓名，没有找到表头。花名册表头应包含 姓名 和 单位、职务、企业微信账号（userid）、钉钉 userid、"
    "飞书 open_id 等列；也可用 --map 列名=字段 指定。")
_ROSTER_FIELDS = ("name", "unit", "title", "dingtalk_id", "feishu_id")


@dataclass(slots=True)
class PersonRow:
    row: int
    sheet: str | None
    id: str
    name: str
    unit: str | None
    title: str | None
    dingtalk_id: str | None
    feishu_id: str | None


@dataclass
class Roster:
    rows: list[PersonRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    sheets: list[Any] = field(default_factory=list)


def _person(n: int, sheet: str | None, values: dict[str, Any], seen: dict[str, str]) -> PersonRow:
    name = _cell(values.get("name"))
    wecom, ding, feishu = (_cell(values.get(k)) or None for k in ("wecom", "dingtalk", "feishu"))
    problems = []
    if not name:
        problems.append("姓名为空")
    elif len(name) > 64:
        problems.append("姓名超过64个字符")
    pid = wecom or ding or feishu
    if not pid:
        problems.append("没有账号（企业微信账号、钉钉 userid、飞书 open_id 至少填一个）")
    elif any(a and len(a) > 64 for a in (wecom, ding, feishu)):
        problems.append("账号超过64个字符")
    elif pid in seen:
        problems.append(f"账号“{pid}”在文件中重复（与{seen[pid]}）")
    if problems:
        raise ValueError("；".join(problems))
    seen[pid] = (f"工作表“{sheet}” " if sheet is not None else "") + f"第{n}行"
    return PersonRow(n, sheet, pid, name, _cell(values.get("unit")) or None, _cell(values.get("title")) or None,
                     ding, feishu)


def read_roster(path: Path, *, overrides: dict[str, str] | None = None,
                max_unzipped: int = DEFAULT_MAX_UNZIPPED_BYTES, sink: dict | None = None) -> Roster:
    sink = sink if sink is not None else {}
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return _read_roster(path, encoding, overrides or {}, max_unzipped, sink)
        except UnicodeDecodeError:
            sink.clear()
    raise ImportFormatError("文件编码无法识别，请另存为 UTF-8 编码的 CSV。")


def _read_roster(path: Path, encoding: str, overrides: dict[str, str], max_unzipped: int, sink: dict) -> Roster:
    from storage.importers import SheetLayout

    out, seen, first_error = Roster(), {}, None
    for sheet, rows in _sheets(path, encoding, sink, max_unzipped):
        if rows is None:
            out.warnings.append(RowError(0, "已隐藏，未读取", sheet))
            continue
        head = list(itertools.islice(rows, HEADER_SCAN_ROWS))
        if all(_blank(c) for _, c in head):
            continue
        try:
            pos, layout = find_header(head, overrides, PEOPLE)
        except LayoutError as e:
            first_error = first_error or e
            out.warnings.append(RowError(0, "没有找到表头（应有 姓名 等列），未读取这个工作表", sheet))
            continue
        sl = SheetLayout(sheet, layout, date.today(), None)
        out.sheets.append(sl)
        cols = [(i, f) for i, f, _ in layout.columns if f != "_ignore"]
        for n, cells in itertools.chain(head[pos + 1:], rows):
            if _blank(cells):
                continue
            values = {f: cells[i] if i < len(cells) else None for i, f in cols}
            try:
                out.rows.append(_person(n, sheet, values, seen))
                sl.rows += 1
            except ValueError as e:
                out.errors.append(RowError(n, str(e), sheet))
    if not out.sheets:
        raise ImportFormatError(str(first_error) if first_error else "文件是空的。")
    check_overrides_used(overrides, [sl.layout for sl in out.sheets])
    return out


def import_people(session: Session, path: Path, *, now: datetime, settings, actor: str = "import",
                  skip_invalid: bool = False, overrides: dict[str, str] | None = None,
                  dry_run: bool = False) -> ImportResult:
    """Create or update the roster's persons (their role is never touched). All or nothing, as the ledger."""
    sink: dict = {}
    roster = read_roster(path, overrides=overrides, sink=sink,
                         max_unzipped=getattr(settings, "import_max_unzipped_bytes", DEFAULT_MAX_UNZIPPED_BYTES))
    result = ImportResult(errors=roster.errors, warnings=roster.warnings, skipped=len(roster.errors),
                          sheets=roster.sheets)
    if roster.errors and not skip_invalid and not dry_run:
        return result
    stored = {p.id: p for p in session.execute(select(Person).where(Person.id.in_([r.id for r in roster.rows])))
              .scalars()} if roster.rows else {}
    for r in roster.rows:
        p = stored.get(r.id)
        want = (r.name, r.unit, r.title, r.dingtalk_id, r.feishu_id)
        if p is None:
            result.created += 1
            if not dry_run:
                session.add(Person(id=r.id, role="cadre", created_at=now, **dict(zip(_ROSTER_FIELDS, want))))
            continue
        diff = {k: v for k, v in zip(_ROSTER_FIELDS, want) if getattr(p, k) != v}
        if not diff:
            result.unchanged += 1
            continue
        result.updated += 1
        if not dry_run:
            for k, v in diff.items():
                setattr(p, k, v)
    if dry_run:
        return result
    result.imported = True
    if result.created or result.updated:
        session.flush()
        audit.record(session, actor=actor, action="import", at=now, reason=f"导入花名册 {path.name}",
                     data={"file_sha256": sink.get("sha256") or file_sha256(path), "created": result.created,
                           "updated": result.updated, "skipped": result.skipped})
    return result


# --- resolving names ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Known:
    id: str
    name: str
    unit: str | None
    dingtalk_id: str | None
    feishu_id: str | None


def _account(p: _Known, platform: str) -> str:
    if platform == "dingtalk":
        return p.dingtalk_id or p.id
    if platform == "feishu":
        return p.feishu_id or p.id
    return p.id


class Resolver:
    """Names to person ids, from the persons table (the roster); ``warn`` collects the problems."""

    def __init__(self, session: Session, names: set[str]):
        t = Person.__table__
        self.by_name: dict[str, list[_Known]] = {}
        for row in session.execute(select(t.c.id, t.c.name, t.c.unit, t.c.dingtalk_id, t.c.feishu_id)
                                   .where(t.c.name.is_not(None))):
            self.by_name.setdefault(normalize(row.name), []).append(_Known(*row))
        # a "name" that is someone's id as it stands (ids are usually ASCII, not always)
        self.ids = set(session.execute(select(t.c.id).where(t.c.id.in_(sorted(names)))).scalars()) if names else set()

    def resolve(self, name: str, unit: str | None, platform: str) -> tuple[str | None, str | None]:
        """(person id, None) or (None, why not, in Chinese)."""
        if name in self.ids:
            return name, None
        found = self.by_name.get(normalize(name), [])
        if len(found) == 1:
            return _account(found[0], platform), None
        if not found:
            return None, "在花名册中找不到"
        here = [p for p in found if unit and p.unit and header_key(p.unit) == header_key(unit)]
        if len(here) == 1:
            return _account(here[0], platform), None
        units = "、".join(sorted({p.unit or "未填单位" for p in (here or found)}))
        return None, f"在花名册中有{len(here or found)}人同名（{units}），无法确定是谁"


def resolve_names(session: Session, rows: list, warnings: list[RowError]) -> None:
    """Turn the rows' member and owner names into person ids where the roster says who they are."""
    pending = [r for r in rows if r.member_names or r.owner_name]
    if not pending:
        return
    names = {n for r in pending for n in r.member_names} | {r.owner_name for r in pending if r.owner_name}
    res = Resolver(session, names)
    for r in pending:
        if r.owner_name:
            pid, why = res.resolve(r.owner_name, r.unit, r.platform)
            if pid:
                r.owner_id = pid
            else:
                warnings.append(RowError(r.row, f"群主“{r.owner_name}”{why}，未登记群主", r.sheet))
        if r.member_names:
            ids, unresolved = set(r.member_ids), []
            for name in r.member_names:
                pid, why = res.resolve(name, r.unit, r.platform)
                if pid:
                    ids.add(pid)
                else:
                    unresolved.append(name)
                    warnings.append(RowError(r.row, f"成员“{name}”{why}，只计入人数", r.sheet))
            r.member_ids = sorted(ids)
            r.unresolved = sorted(unresolved)
