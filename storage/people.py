"""The roster (花名册, ``qunzhi import people``) and resolving the names a ledger writes against it.

A roster row names a person, their unit and 职务, and their platform accounts (企业微信 userid, 微信号
as the bridge knows it, 钉钉 userid, 飞书 open_id), which are linked to one person
(``storage.identity``): a person found by any of them, else a new one whose id is the WeCom userid,
else the scoped id of another account (``dingtalk:…``). A row whose account is already someone
else's is reported and changes nothing. A ledger member or owner written as a name is resolved to
one person: the only one of that name, or the only one of that name in the group's unit. Anything
else (nobody, or two people) is a warning with its sheet and row and the name stays unresolved:
counted in the group's size, never a person.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from governance.text import normalize
from storage import audit, identity
from storage.importers import ImportResult, RowError, _blank, _cell, _sheets, file_sha256
from storage.ledger_format import HEADER_SCAN_ROWS, LayoutError, Schema, check_overrides_used, find_header, header_key
from storage.models import Person, PersonAccount
from storage.sheets import DEFAULT_MAX_UNZIPPED_BYTES, ImportFormatError

PEOPLE = Schema(
    {"name": ("姓名", "名字", "人员姓名", "name"),
     "unit": ("单位", "所属单位", "工作单位", "部门", "unit"),
     "title": ("职务", "职位", "岗位", "title"),
     "wecom": ("企业微信账号", "企业微信", "userid", "企业微信userid", "企业微信ID", "企微账号", "账号", "wecom"),
     "wechat": ("微信号", "微信账号", "微信", "个人微信", "桥接账号", "wechat"),
     "dingtalk": ("钉钉userid", "钉钉账号", "钉钉ID", "钉钉", "dingtalk"),
     "feishu": ("飞书open_id", "飞书openid", "open_id", "飞书ID", "飞书账号", "飞书", "feishu"),
     "_ignore": ("序号",)},
    {"name": "姓名", "unit": "单位", "title": "职务", "wecom": "企业微信账号", "wechat": "微信号", "dingtalk": "钉钉 userid",
     "feishu": "飞书 open_id", "_ignore": "忽略"},
    ("name",),
    "缺少必需的列：姓名，没有找到表头。花名册表头应包含 姓名 和 单位、职务、企业微信账号（userid）、微信号、钉钉 userid、"
    "飞书 open_id 等列；也可用 --map 列名=字段 指定。")
_ROSTER_FIELDS = ("name", "unit", "title")
# roster field -> account platform (storage.identity), in the order a new person's id is taken from
_ACCOUNT_FIELDS = (("wecom", "wecom"), ("wechat", "wechat"), ("dingtalk", "dingtalk"), ("feishu", "feishu"))
PERSON_ID_MAX = 64


@dataclass(slots=True)
class PersonRow:
    row: int
    sheet: str | None
    id: str
    name: str
    unit: str | None
    title: str | None
    accounts: dict[str, str]  # account platform -> account id


@dataclass
class Roster:
    rows: list[PersonRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    sheets: list[Any] = field(default_factory=list)


def _person(n: int, sheet: str | None, values: dict[str, Any], seen: dict[tuple[str, str], str]) -> PersonRow:
    name = _cell(values.get("name"))
    accounts = {platform: a for f, platform in _ACCOUNT_FIELDS if (a := _cell(values.get(f)))}
    problems = []
    if not name:
        problems.append("姓名为空")
    elif len(name) > 64:
        problems.append("姓名超过64个字符")
    pid = identity.natural_id(*next(iter(accounts.items()))) if accounts else None
    dup = next(((p, a) for p, a in accounts.items() if (p, a) in seen), None)
    if not pid:
        problems.append("没有账号（企业微信账号、微信号、钉钉 userid、飞书 open_id 至少填一个）")
    elif any(len(a) > 64 for a in accounts.values()) or len(pid) > PERSON_ID_MAX:
        problems.append("账号超过64个字符")
    elif dup:
        problems.append(f"账号“{dup[1]}”在文件中重复（与{seen[dup]}）")
    if problems:
        raise ValueError("；".join(problems))
    where = (f"工作表“{sheet}” " if sheet is not None else "") + f"第{n}行"
    for key in accounts.items():
        seen[key] = where
    return PersonRow(n, sheet, pid, name, _cell(values.get("unit")) or None, _cell(values.get("title")) or None,
                     accounts)


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
    d = identity.Directory(session, [k for r in roster.rows for k in r.accounts.items()], [r.id for r in roster.rows])
    linked, new_persons, changed, new_accounts = 0, [], [], []

    def store() -> None:  # rows in bulk (ORM objects for thousands of rows cost most of an import)
        session.flush()
        for stmt, rows in ((insert(Person), new_persons), (update(Person), changed),
                           (insert(PersonAccount), new_accounts)):
            if rows:
                session.execute(stmt, rows)
                rows.clear()
    for r in roster.rows:
        try:
            target, checks = _plan(d, r)
        except identity.IdentityConflict as e:
            result.warnings.append(RowError(r.row, f"{e}；这一行未导入", r.sheet))
            continue
        p = d.persons.get(target)
        want = dict(zip(_ROSTER_FIELDS, (r.name, r.unit, r.title)))
        links = {key: plan for key, plan in checks.items() if not plan.done}
        diff = want if p is None else {k: v for k, v in want.items() if getattr(p, k) != v}
        if p is None:
            result.created += 1
        elif diff or links:
            result.updated += 1
        else:
            result.unchanged += 1
            continue
        if dry_run:
            continue
        if p is None:
            row = {"id": target, "role": "cadre", "created_at": now, **want}
            new_persons.append(row)
            d.persons[target] = SimpleNamespace(**row)  # what the directory reads of a person
        else:
            changed.append({"id": target, **want})
            d.persons[target] = SimpleNamespace(id=target, role=p.role, **want)
        for (platform, a), plan in links.items():
            if plan.plain:
                # a new account joining its person: nothing taken from anyone; the import's record
                # (with the file's hash) covers it, and one record per account would be thousands
                new_accounts.append({"platform": platform, "account_id": a, "person_id": target, "linked_at": now})
                d.note(target, platform, a)
                linked += 1
            else:
                store()
                identity.link(session, target, platform, a, at=now, actor=actor, directory=d)
    if dry_run:
        return result
    store()
    identity.forget_natural()  # the bulk links: this process sees them at once (others within NATURAL_TTL)
    result.imported = True
    if result.created or result.updated:
        session.flush()
        audit.record(session, actor=actor, action="import", at=now, reason=f"导入花名册 {path.name}",
                     data={"file_sha256": sink.get("sha256") or file_sha256(path), "created": result.created,
                           "updated": result.updated, "skipped": result.skipped, "accounts_linked": linked})
    return result


def _plan(d: identity.Directory, r: PersonRow) -> tuple[str, dict]:
    """The person a roster row is (found by its WeCom account, else by another one, else new) and
    ``check_link`` of each of its accounts; ``IdentityConflict`` when one is someone else's."""
    # the person of the row's WeCom userid if there is one; else a person another of its accounts
    # already vouches for (an account's own unclaimed person is not one: its account joins the row's)
    found = [(d.person_for(platform, a), platform, a) for platform, a in r.accounts.items()]
    if "wecom" in r.accounts and found[0][0]:
        target = found[0][0]
    else:
        target = next((f for f, platform, a in found if f and not d.unclaimed(f, platform, a)), r.id)
    return target, {(platform, a): d.check_link(target, platform, a) for platform, a in r.accounts.items()}


# --- resolving names ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Known:
    id: str
    name: str
    unit: str | None


class Resolver:
    """Names to person ids, from the persons table (the roster); ``warn`` collects the problems."""

    def __init__(self, session: Session, names: set[str]):
        t = Person.__table__
        self.by_name: dict[str, list[_Known]] = {}
        for row in session.execute(select(t.c.id, t.c.name, t.c.unit)
                                   .where(t.c.name.is_not(None))):
            self.by_name.setdefault(normalize(row.name), []).append(_Known(*row))
        # a "name" that is someone's id as it stands (ids are usually ASCII, not always)
        self.ids = set(session.execute(select(t.c.id).where(t.c.id.in_(sorted(names)))).scalars()) if names else set()

    def resolve(self, name: str, unit: str | None) -> tuple[str | None, str | None]:
        """(person id, None) or (None, why not, in Chinese)."""
        if name in self.ids:
            return name, None
        found = self.by_name.get(normalize(name), [])
        if len(found) == 1:
            return found[0].id, None
        if not found:
            return None, "在花名册中找不到"
        here = [p for p in found if unit and p.unit and header_key(p.unit) == header_key(unit)]
        if len(here) == 1:
            return here[0].id, None
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
            pid, why = res.resolve(r.owner_name, r.unit)
            if pid:
                r.owner_id = pid
            else:
                warnings.append(RowError(r.row, f"群主“{r.owner_name}”{why}，未登记群主", r.sheet))
        if r.member_names:
            ids, unresolved = set(r.member_ids), []
            for name in r.member_names:
                pid, why = res.resolve(name, r.unit)
                if pid:
                    ids.add(pid)
                else:
                    unresolved.append(name)
                    warnings.append(RowError(r.row, f"成员“{name}”{why}，只计入人数", r.sheet))
            r.member_ids = sorted(ids)
            r.unresolved = sorted(unresolved)
            r.member_names = []  # resolved: ids and unresolved names say it all, and hold no second copy
