"""Importing the ledger (台账, CSV or XLSX) and message records (JSONL exports).

Both importers validate everything first and import nothing if any row is invalid, unless
``skip_invalid`` is set. Re-importing the same file changes nothing.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.orm import Session

from governance.dates import DateParseError, parse_date
from governance.ritual import is_ritual
from storage import audit
from storage.models import Group, Membership, Message, Person
from storage.repo import insert_ignore

COLUMNS = ["group_id", "name", "platform", "owner_id", "unit", "category", "purpose", "created_at", "expires_at",
           "member_ids"]
CHINESE = ["群编号", "群名称", "平台", "群主", "单位", "类别", "用途", "建群日期", "到期日期", "成员"]
HEADER_ALIASES = {**{c: c for c in COLUMNS}, **dict(zip(CHINESE, COLUMNS)),
                  "群ID": "group_id", "群id": "group_id", "群主ID": "owner_id", "群主id": "owner_id",
                  "创建日期": "created_at", "成员ID": "member_ids"}
REQUIRED = ("group_id", "name")
PLATFORMS = {"wecom": "wecom", "企业微信": "wecom", "企微": "wecom", "wechat": "wechat", "微信": "wechat",
             "个人微信": "wechat", "aibot": "aibot", "智能机器人": "aibot", "bridge": "bridge", "qq": "qq",
             "QQ": "qq", "dingtalk": "dingtalk", "钉钉": "dingtalk", "feishu": "feishu", "飞书": "feishu",
             "ledger": "ledger", "台账": "ledger", "": "ledger"}
CHUNK = 1000
MAX_MEMBERS = 5000


class ImportFormatError(ValueError):
    """The file as a whole cannot be read (message in Chinese)."""


@dataclass
class RowError:
    row: int
    reason: str

    def __str__(self) -> str:
        return f"第{self.row}行：{self.reason}"


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    imported: bool = False

    def summary(self) -> str:
        s = f"新增{self.created}，更新{self.updated}，未变{self.unchanged}"
        if self.skipped:
            s += f"，跳过无效行{self.skipped}"
        return s


# --- reading files ---------------------------------------------------------------------------
def _decode(raw: bytes) -> str:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise ImportFormatError("文件编码无法识别，请另存为 UTF-8 编码的 CSV。")


def read_table(path: Path) -> tuple[list[str], Iterator[tuple[int, list[Any]]]]:
    """Header and (row number, cells) of a CSV or XLSX file; row numbers as a spreadsheet shows them."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as e:  # openpyxl raises many kinds for a broken file
            raise ImportFormatError(f"无法打开 Excel 文件：{type(e).__name__}") from e
        rows = wb.worksheets[0].iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise ImportFormatError("文件是空的。")
        return [str(h or "").strip() for h in header], ((i, list(r)) for i, r in enumerate(rows, start=2))
    if suffix in (".csv", ".txt", ""):
        reader = csv.reader(io.StringIO(_decode(path.read_bytes()), newline=""))
        header = next(reader, None)
        if header is None:
            raise ImportFormatError("文件是空的。")
        return [h.strip() for h in header], ((i, r) for i, r in enumerate(reader, start=2))
    raise ImportFormatError(f"不支持的文件类型“{suffix}”，请使用 CSV 或 XLSX。")


def map_header(header: list[str]) -> list[str | None]:
    mapped = [HEADER_ALIASES.get(h.strip().lstrip("\ufeff")) for h in header]
    missing = [c for c in REQUIRED if c not in mapped]
    if missing:
        names = "、".join(f"{c}（{CHINESE[COLUMNS.index(c)]}）" for c in missing)
        raise ImportFormatError(f"缺少必需的列：{names}。表头应为 {','.join(COLUMNS)} 或 {','.join(CHINESE)}。")
    return mapped


# --- validating ledger rows --------------------------------------------------------------------
def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _to_date(v: Any, what: str) -> date | None:
    if v in (None, ""):
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    try:
        return parse_date(_cell(v))
    except DateParseError as e:
        raise ValueError(f"{what}{e}") from None


def parse_members(v: Any) -> list[str]:
    text = _cell(v).replace("；", ";").replace(",", ";").replace("，", ";")
    return [m.strip() for m in text.split(";") if m.strip()]


@dataclass
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


def validate_row(n: int, values: dict[str, Any], seen: set[str]) -> LedgerRow:
    gid, name = _cell(values.get("group_id")), _cell(values.get("name"))
    problems = []
    if not gid:
        problems.append("群编号为空")
    elif len(gid) > 128:
        problems.append("群编号超过128个字符")
    elif gid in seen:
        problems.append(f"群编号“{gid}”在文件中重复")
    if not name:
        problems.append("群名称为空")
    elif len(name) > 128:
        problems.append("群名称超过128个字符")
    platform_raw = _cell(values.get("platform"))
    platform = PLATFORMS.get(platform_raw, PLATFORMS.get(platform_raw.lower()))
    if platform is None:
        problems.append(f"平台“{platform_raw}”无法识别（可用：企业微信、微信、钉钉、飞书、QQ、台账）")
    created = expires = None
    try:
        created = _to_date(values.get("created_at"), "建群日期")
    except ValueError as e:
        problems.append(str(e))
    try:
        expires = _to_date(values.get("expires_at"), "到期日期")
    except ValueError as e:
        problems.append(str(e))
    if created and expires and expires < created:
        problems.append("到期日期早于建群日期")
    members = parse_members(values.get("member_ids"))
    if len(members) > MAX_MEMBERS:
        problems.append(f"成员超过{MAX_MEMBERS}人")
    if any(len(m) > 64 for m in members):
        problems.append("成员编号超过64个字符")
    owner = _cell(values.get("owner_id")) or None
    if owner and len(owner) > 64:
        problems.append("群主编号超过64个字符")
    if problems:
        raise ValueError("；".join(problems))
    seen.add(gid)
    return LedgerRow(n, gid, name, platform, owner, _cell(values.get("unit")) or None,
                     _cell(values.get("category")) or None, _cell(values.get("purpose")) or None, created, expires,
                     sorted(set(members)))


def read_ledger(path: Path) -> tuple[list[LedgerRow], list[RowError]]:
    header, rows = read_table(path)
    mapped = map_header(header)
    good, errors, seen = [], [], set()
    for n, cells in rows:
        if not any(_cell(c) for c in cells):
            continue  # blank line
        values = {col: cells[i] if i < len(cells) else None for i, col in enumerate(mapped) if col}
        try:
            good.append(validate_row(n, values, seen))
        except ValueError as e:
            errors.append(RowError(n, str(e)))
    return good, errors


# --- importing the ledger ------------------------------------------------------------------------
def _midnight(d: date | None, tz: ZoneInfo, fallback: datetime) -> datetime:
    return datetime.combine(d, time(0), tz).astimezone(timezone.utc) if d else fallback


def import_ledger(session: Session, path: Path, *, now: datetime, settings, actor: str = "import",
                  skip_invalid: bool = False) -> ImportResult:
    rows, errors = read_ledger(path)
    result = ImportResult(errors=errors, skipped=len(errors))
    if errors and not skip_invalid:
        return result
    tz = settings.tz
    protected_cats = set(settings.protected_categories)
    temp_cats = set(settings.temporary_categories)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        ids = [r.group_id for r in chunk]
        existing = {g.id: g for g in session.execute(select(Group).where(Group.id.in_(ids))).scalars()}
        members_now: dict[str, set[str]] = {}
        for gid, pid in session.execute(select(Membership.group_id, Membership.person_id)
                                        .where(Membership.group_id.in_(ids))):
            members_now.setdefault(gid, set()).add(pid)
        persons = {r.owner_id for r in chunk if r.owner_id}
        insert_ignore(session, Person, [{"id": p, "role": "cadre", "created_at": now, "unit": None} for p in persons],
                      ["id"])
        for r in chunk:
            temporary = bool(r.category and (r.category in temp_cats or "临时" in r.category)) or (
                r.expires_at is not None and not (r.category and r.category in protected_cats))
            want = {
                "name": r.name, "platform": r.platform, "owner_id": r.owner_id, "unit": r.unit,
                "category": r.category, "purpose": r.purpose, "expires_at": r.expires_at, "temporary": temporary,
                "created_at": _midnight(r.created_at, tz, now),
            }
            g = existing.get(r.group_id)
            changed_members = r.member_ids and set(r.member_ids) != members_now.get(r.group_id, set())
            if g is None:
                g = Group(id=r.group_id, first_seen_at=now, source="ledger", status="active", keep_count=0,
                          message_count=0, ritual_count=0, member_count=0, updated_at=now,
                          protected=bool(r.category in protected_cats) if r.category else False,
                          registered_at=now if r.owner_id else None, registered_by=actor if r.owner_id else None,
                          **want)
                session.add(g)
                result.created += 1
            else:
                diff = {k: v for k, v in want.items() if getattr(g, k) != v and not (k == "created_at" and r.created_at is None)}
                if r.category in protected_cats and not g.protected:
                    diff["protected"] = True
                if r.owner_id and g.registered_at is None:
                    diff["registered_at"], diff["registered_by"] = now, actor
                if not diff and not changed_members:
                    result.unchanged += 1
                    continue
                for k, v in diff.items():
                    setattr(g, k, v)
                g.updated_at = now
                result.updated += 1
            if changed_members:
                session.flush()
                session.execute(delete(Membership).where(Membership.group_id == r.group_id,
                                                         Membership.person_id.notin_(r.member_ids)))
                insert_ignore(session, Membership, [{"group_id": r.group_id, "person_id": p, "joined_at": None}
                                                    for p in r.member_ids], ["group_id", "person_id"])
                g.member_count = len(r.member_ids)
        session.flush()
    result.imported = True
    if result.created or result.updated:
        audit.record(session, actor=actor, action="import", at=now, reason=f"导入台账 {path.name}",
                     data={"file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "created": result.created,
                           "updated": result.updated, "skipped": result.skipped})
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


def _parse_message(n: int, raw: str) -> MessageRow:
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
        except ValueError:
            problems.append(f"sent_at“{obj['sent_at'][:40]}”不是 ISO 8601 时间")
    if any(len(str(obj.get(k, ""))) > 128 for k in ("group_id", "sender_id", "msg_id")):
        problems.append("编号过长")
    if problems:
        raise ValueError("；".join(dict.fromkeys(problems)))
    return MessageRow(n, str(obj["group_id"]).strip(), str(obj["sender_id"]).strip(), sent_at, text,
                      str(obj["msg_id"]).strip())


def read_messages(path: Path) -> tuple[list[MessageRow], list[RowError]]:
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
                good.append(_parse_message(n, line))
            except ValueError as e:
                errors.append(RowError(n, str(e)))
    return good, errors


def refresh_activity(session: Session, group_ids: Iterable[str]) -> None:
    """Recompute the maintained aggregates of some groups from their stored messages."""
    for gid in set(group_ids):
        agg = session.execute(select(
            func.count(), func.coalesce(func.sum(case((Message.is_ritual, 1), else_=0)), 0),
            func.max(Message.sent_at),
        ).where(Message.group_id == gid)).one()
        last_work = session.execute(select(func.max(Message.sent_at)).where(
            and_(Message.group_id == gid, Message.is_ritual.is_(False)))).scalar()
        session.execute(update(Group).where(Group.id == gid).values(
            message_count=agg[0], ritual_count=agg[1], last_message_at=agg[2], last_work_at=last_work))


def import_messages(session: Session, path: Path, *, now: datetime, settings, skip_invalid: bool = False,
                    actor: str = "import") -> ImportResult:
    rows, errors = read_messages(path)
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
        refresh_activity(session, touched)
        for gid in touched:
            cnt = session.execute(select(func.count()).where(Membership.group_id == gid)).scalar_one()
            session.execute(update(Group).where(Group.id == gid).values(member_count=cnt))
        audit.record(session, actor=actor, action="import", at=now, reason=f"导入消息记录 {path.name}",
                     data={"messages": result.created, "groups": len(touched), "skipped": result.skipped})
    result.imported = True
    return result
