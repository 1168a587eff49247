"""Repositories: keyword-only helpers over the models (persons, groups, activity)."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from functools import lru_cache

from sqlalchemy import JSON, Boolean, Enum, Integer, String, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import Base, Group, Membership, Person, ProcessedEvent, UTCDateTime

LIVE_STATUSES = ("active", "warned")

# --- platform namespaces ---------------------------------------------------------------------------
# WeCom's adapters (the self-built app, the AI bot) use WeCom's own ids. Every other platform comes
# through a bridge, and its ids are scoped: the bridge's ``zhangsan`` on ``wechat`` is the person
# ``wechat:zhangsan``, its group ``wxg-1`` the group ``wechat:wxg-1``, so a bridge can never name a
# WeCom group or person. ``may_touch`` is the guard where a group row is used: an event from one
# platform never changes another platform's group (WeCom's adapters share WeCom's groups, and
# groups of unknown platform from the ledger).
WECOM_PLATFORMS = ("wecom", "aibot")
UNSCOPED_PLATFORMS = WECOM_PLATFORMS + ("ledger", "local", "archive")
# Platforms with their own adapter whose ids are scoped like a bridge's (``feishu:ou_…``): a bridge
# may not speak for them, and their persons are reached on their own outbox channel.
NATIVE_CHANNELS = {"feishu": "feishu", "dingtalk": "dingtalk"}
NOT_BRIDGED = UNSCOPED_PLATFORMS + tuple(NATIVE_CHANNELS)


def scoped_id(platform: str, raw_id: str) -> str:
    """The stored id of a bridge platform's user or group (``wechat`` + ``wxg-1`` → ``wechat:wxg-1``)."""
    return f"{platform}:{raw_id}"


def raw_id(platform: str | None, stored_id: str) -> str:
    """The platform's own id of a stored one (what a bridge is sent back): ``scoped_id`` undone."""
    prefix = f"{platform}:"
    if platform and platform not in UNSCOPED_PLATFORMS and stored_id.startswith(prefix):
        return stored_id[len(prefix):]
    return stored_id


def bridge_platform(stored_id: str) -> str | None:
    """The bridge platform a stored id is scoped by (``wechat:zhangsan`` → ``wechat``), or None for an
    id of Qunzhi's own platforms (a WeCom userid or chat id has no ``platform:`` prefix)."""
    prefix, sep, _ = stored_id.partition(":")
    return prefix if sep and prefix and prefix not in UNSCOPED_PLATFORMS else None


def may_touch(group_platform: str | None, event_platform: str) -> bool:
    """May an event from ``event_platform`` change a group stored with ``group_platform``?"""
    if group_platform == event_platform:
        return True
    return event_platform in WECOM_PLATFORMS and group_platform in WECOM_PLATFORMS + ("ledger",)


def group_platforms(session: Session, group_ids) -> dict[str, str]:
    """The platform of each of ``group_ids`` that exists (one query)."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    return dict(session.execute(select(Group.id, Group.platform).where(Group.id.in_(ids))).all())


def _insert(session: Session):
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def placeholder(dialect) -> str:
    return "?" if dialect.paramstyle in ("qmark", "numeric") else "%s"


@lru_cache(maxsize=1024)
def _insert_ignore_sql(table_name: str, cols: tuple[str, ...], keys: tuple[str, ...], nrows: int,
                       returning: tuple[str, ...], ph: str) -> str:
    """``INSERT … VALUES (…), (…) ON CONFLICT (keys) DO NOTHING RETURNING …`` in the driver's
    own positional parameter style (the same SQL on SQLite >= 3.35 and PostgreSQL)."""
    row = "(" + ", ".join([ph] * len(cols)) + ")"
    sql = (f"INSERT INTO {quote_name(table_name)} ({', '.join(quote_name(c) for c in cols)}) "
           f"VALUES {', '.join([row] * nrows)} ON CONFLICT ({', '.join(quote_name(k) for k in keys)}) DO NOTHING")
    if returning:
        sql += " RETURNING " + ", ".join(quote_name(r) for r in returning)
    return sql


def utc_sqlite(value):
    """What ``UTCDateTime`` and SQLAlchemy's SQLite ``DATETIME`` store, in one step."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: pass an aware datetime")
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def utc_aware(value):
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: pass an aware datetime")
    return value.astimezone(timezone.utc)


@lru_cache(maxsize=256)
def _driver_converters(table_name: str, cols: tuple[str, ...], dialect) -> tuple:
    """Per column, the function that turns a Python value into what the driver is given (None:
    as is). ``UTCDateTime`` gets a direct version of what SQLAlchemy's processor chain does;
    every other type its own SQLAlchemy bind processor."""
    table = Base.metadata.tables[table_name]
    out = []
    for c in cols:
        t = table.c[c].type
        if isinstance(t, UTCDateTime):
            out.append(utc_sqlite if dialect.name == "sqlite" else utc_aware)
        else:
            out.append(t._cached_bind_processor(dialect))
    return tuple(out)


def _driver_rows(rows: list[dict], cols: tuple[str, ...], conv: tuple) -> list:
    """The rows' values, flattened in column order and converted for the driver (each distinct
    value converted once: a batch's rows share their events' timestamps)."""
    flat: list = []
    pairs = tuple(zip(cols, conv))
    memo: dict = {}
    for row in rows:
        for c, f in pairs:
            v = row[c]
            if f is utc_sqlite or f is utc_aware:
                hit = memo.get(v, memo)
                if hit is memo:
                    hit = memo[v] = f(v)
                v = hit
            elif f is not None:
                v = f(v)
            flat.append(v)
    return flat


def driver_execute(session: Session, sql: str, params=(), *, many: bool = False) -> list[tuple]:
    """Run driver-level SQL on the session's connection (inside its transaction) through the DBAPI
    cursor, skipping SQLAlchemy's result machinery; returns the rows (for RETURNING / SELECT)."""
    cur = session.connection().connection.dbapi_connection.cursor()
    try:
        if many:
            cur.executemany(sql, params)
        else:
            cur.execute(sql, params)
        return cur.fetchall() if cur.description else []
    finally:
        cur.close()


def pg_record_type(t) -> str | None:
    """The type a column's values are read back as from a JSON record (None: not this way)."""
    if isinstance(t, UTCDateTime):
        return "timestamptz"
    if isinstance(t, Boolean):
        return "boolean"
    if isinstance(t, Integer):
        return "bigint"
    if isinstance(t, String) and not isinstance(t, (Enum, JSON)):
        return "text"
    return None


@lru_cache(maxsize=256)
def pg_json_insert_sql(table_name: str, cols: tuple[str, ...], keys: tuple[str, ...],
                        returning: tuple[str, ...]) -> str | None:
    """PostgreSQL: ``INSERT … SELECT … FROM json_to_recordset(%s::json) … ON CONFLICT DO NOTHING``:
    all rows in one JSON parameter, so the SQL is short and the same for any number of rows
    (psycopg parses placeholders and dumps arrays in Python, and caches only short queries;
    json.dumps and PostgreSQL's JSON parser are C)."""
    table = Base.metadata.tables[table_name]
    types = [pg_record_type(table.c[c].type) for c in cols]
    if None in types:
        return None
    names = ", ".join(quote_name(c) for c in cols)
    sql = (f"INSERT INTO {quote_name(table_name)} ({names}) SELECT {names} FROM json_to_recordset(%s::json) AS x("
           + ", ".join(f"{quote_name(c)} {t}" for c, t in zip(cols, types))
           + f") ON CONFLICT ({', '.join(quote_name(k) for k in keys)}) DO NOTHING")
    if returning:
        sql += " RETURNING " + ", ".join(quote_name(r) for r in returning)
    return sql


def _json_value(value):
    """``json.dumps`` default for the record parameters: aware datetimes as ISO 8601 with offset."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware datetime")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a record value")


def pg_json_time(value: datetime) -> str:
    """A timestamp as the JSON record parameters carry it (what ``pg_json`` would write for it)."""
    return _json_value(value)


def pg_json(value) -> str:
    return json.dumps(value, default=_json_value, ensure_ascii=False, separators=(",", ":"))


@lru_cache(maxsize=256)
def python_defaults(table_name: str, cols: tuple[str, ...]):
    """Columns left out of ``cols`` that have a Python-side default, or None if one is a SQL default."""
    out = []
    for c in Base.metadata.tables[table_name].c:
        if c.name in cols or c.default is None:
            continue
        if not (c.default.is_scalar or c.default.is_callable):
            return None
        out.append((c.name, c.default))
    return tuple(out)


BULK_CHUNK = 256  # rows per statement (SQLite allows 32766 bound parameters; 256 x 8 columns is far below)


def with_defaults(fill, rows: list[dict]) -> list[dict]:
    """What SQLAlchemy's Insert does for omitted columns with a Python-side default."""
    if not fill:
        return rows
    return [{**row, **{c: (d.arg if d.is_scalar else d.arg(None)) for c, d in fill}} for row in rows]


def insert_ignore_returning(session: Session, model, rows: list[dict], keys: list[str],
                            returning: list[str] | None = None) -> list[tuple]:
    """Multi-row INSERT … ON CONFLICT DO NOTHING; returns the ``returning`` columns (default: the
    keys) of the rows that were new. Every row must have the same columns."""
    if not rows:
        return []
    table = model if hasattr(model, "c") else model.__table__
    ret = tuple(returning or keys)
    fill = python_defaults(table.name, tuple(rows[0]))
    if fill is None:  # a SQL-expression default: let SQLAlchemy's Insert apply it
        stmt = _insert(session)(table).values(rows).on_conflict_do_nothing(index_elements=keys)
        return [tuple(r) for r in session.execute(stmt.returning(*(table.c[r] for r in ret)))]
    rows = with_defaults(fill, rows)
    cols = tuple(rows[0])
    table_obj = Base.metadata.tables[table.name]
    if not all(isinstance(table_obj.c[r].type, String) for r in ret):  # driver values come back as is
        stmt = _insert(session)(table).values(rows).on_conflict_do_nothing(index_elements=keys)
        return [tuple(r) for r in session.execute(stmt.returning(*(table.c[r] for r in ret)))]
    # Driver-level SQL and parameters: the bulk ingest path writes thousands of rows a second, and
    # SQLAlchemy's per-parameter processing (typed binds, construct_params) was most of its CPU.
    dialect = session.get_bind().dialect
    conv = _driver_converters(table.name, cols, dialect)
    if dialect.name == "postgresql":
        sql = pg_json_insert_sql(table.name, cols, tuple(keys), ret)
        if sql is not None:
            return [tuple(r) for r in driver_execute(session, sql, (pg_json(rows),))]
    ph = placeholder(dialect)
    out: list[tuple] = []
    for start in range(0, len(rows), BULK_CHUNK):
        chunk = rows[start:start + BULK_CHUNK]
        sql = _insert_ignore_sql(table.name, cols, tuple(keys), len(chunk), ret, ph)
        out.extend(tuple(r) for r in driver_execute(session, sql, tuple(_driver_rows(chunk, cols, conv))))
    return out


def insert_ignore(session: Session, model, rows: list[dict], keys: list[str]) -> int:
    """INSERT … ON CONFLICT DO NOTHING; returns how many rows were new."""
    if not rows:
        return 0
    # RETURNING counts reliably on both backends (psycopg's rowcount is not trustworthy here).
    if any(r.keys() != rows[0].keys() for r in rows):
        table = model.__table__
        stmt = _insert(session)(table).values(rows).on_conflict_do_nothing(index_elements=keys)
        return len(session.execute(stmt.returning(*(table.c[k] for k in keys))).all())
    return len(insert_ignore_returning(session, model, rows, keys))


def mark_processed(session: Session, key: str, at: datetime) -> bool:
    """Claim a dedupe key in the caller's transaction; False if it was handled before."""
    return insert_ignore(session, ProcessedEvent, [{"key": key[:200], "at": at}], ["key"]) == 1


def remember_reply(session: Session, key: str, replies: list[dict]) -> None:
    """What a repeat of the event with dedupe ``key`` is to be answered with (see ``ProcessedEvent.reply``)."""
    session.execute(update(ProcessedEvent).where(ProcessedEvent.key == key[:200]).values(reply=replies)
                    .execution_options(synchronize_session=False))


def stored_replies(session: Session, keys: list[str]) -> dict[str, list | None]:
    """``ProcessedEvent.reply`` of each of ``keys`` (None: none stored), in one query."""
    if not keys:
        return {}
    rows = dict(session.execute(select(ProcessedEvent.key, ProcessedEvent.reply)
                                .where(ProcessedEvent.key.in_(sorted({k[:200] for k in keys})))).all())
    return {k: rows.get(k[:200]) for k in keys}


def get_or_create_person(session: Session, person_id: str, at: datetime, name: str | None = None) -> Person:
    p = session.get(Person, person_id)
    if p is None:
        insert_ignore(session, Person, [{"id": person_id, "name": name, "role": "cadre", "created_at": at}], ["id"])
        p = session.get(Person, person_id)
    return p


def display_name(session: Session, person_id: str | None) -> str:
    if not person_id:
        return "未知"
    p = session.get(Person, person_id)
    return (p.name or p.id) if p else person_id


def new_group_id(name: str, owner: str, at: datetime) -> str:
    return "reg-" + hashlib.sha1(f"{name}|{owner}|{at.isoformat()}".encode()).hexdigest()[:12]


def ensure_group(session: Session, *, group_id: str, platform: str, at: datetime, name: str | None = None,
                 source: str = "activity") -> Group:
    g = session.get(Group, group_id)
    if g is None:
        insert_ignore(session, Group, [new_group_row(group_id=group_id, platform=platform, at=at, name=name,
                                                     source=source)], ["id"])
        g = session.get(Group, group_id)
    return g


def new_group_row(*, group_id: str, platform: str, at: datetime, name: str | None, source: str) -> dict:
    """The row of a group first seen at ``at`` (what ``ensure_group`` inserts)."""
    return {"id": group_id, "platform": platform, "name": name or group_id, "created_at": at,
            "first_seen_at": at, "source": source, "status": "active", "member_count": 0,
            "message_count": 0, "ritual_count": 0, "keep_count": 0, "temporary": False, "protected": False,
            "updated_at": at}


def add_members(session: Session, group_id: str, person_ids, at: datetime | None) -> int:
    added = insert_ignore(session, Membership,
                          [{"group_id": group_id, "person_id": p, "joined_at": at} for p in set(person_ids)],
                          ["group_id", "person_id"])
    if added:
        refresh_member_count(session, group_id)
    return added


def remove_members(session: Session, group_id: str, person_ids) -> int:
    n = session.execute(delete(Membership).where(Membership.group_id == group_id,
                                                 Membership.person_id.in_(list(person_ids)))).rowcount
    if n:
        refresh_member_count(session, group_id)
    return n


def refresh_member_count(session: Session, group_id: str) -> None:
    cnt = session.execute(select(func.count()).where(Membership.group_id == group_id)).scalar_one()
    session.execute(update(Group).where(Group.id == group_id).values(member_count=cnt))


def member_ids(session: Session, group_id: str) -> list[str]:
    return list(session.execute(select(Membership.person_id).where(Membership.group_id == group_id)
                                .order_by(Membership.person_id)).scalars())


def find_groups(session: Session, ref: str) -> list[Group]:
    """Groups a cadre may mean by ``ref``: exact id, or exact name (normalised), live ones first."""
    ref = ref.strip().strip("“”\"'《》「」")
    if not ref:
        return []
    g = session.get(Group, ref)
    if g is not None:
        return [g]
    rows = session.execute(select(Group).where(Group.name == ref).where(Group.status != "purged")).scalars().all()
    return sorted(rows, key=lambda x: (x.status not in LIVE_STATUSES, x.id))


# --- which groups a unit of work changed ---------------------------------------------------------
_TOUCHED = "qunzhi.touched_groups"


class track_groups:
    """``with track_groups(session) as ids:`` collects the ids of the ``Group`` rows created or
    changed through the ORM inside the block (a flush listener; only sessions inside such a block
    pay for it). Changes pending when the block starts are flushed first, so they are not counted."""

    def __init__(self, session: Session):
        self.session = session
        self.ids: set[str] = set()

    def __enter__(self) -> set[str]:
        self.session.flush()
        self.session.info[_TOUCHED] = self.ids
        return self.ids

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.session.flush()
        finally:
            self.session.info.pop(_TOUCHED, None)


def _collect_touched(session: Session, _ctx, _instances) -> None:
    ids = session.info.get(_TOUCHED)
    if ids is None:
        return
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, Group) and session.is_modified(obj):
            ids.add(obj.id)


from sqlalchemy import event as _event  # noqa: E402

_event.listen(Session, "before_flush", _collect_touched)


def visible_groups(session: Session, person: Person) -> list[tuple[str, str, str | None, frozenset[str]]]:
    """The groups ``person`` may name in a command, as plain rows ``(id, name, unit, relations)``:
    those they own, are a member of, or administer (an administrator: every group; a unit
    administrator: their unit's), merged or purged ones left out. Relations are the
    ``nlu.resolve`` ones: ``own``, ``member``, ``admin``."""
    member = select(Membership.group_id).where(Membership.person_id == person.id)
    cond = [Group.owner_id == person.id, Group.id.in_(member)]
    if person.role == "admin":
        cond = [Group.id.is_not(None)]
    elif person.role == "unit_admin" and person.unit:
        cond.append(Group.unit == person.unit)
    rows = session.execute(select(Group.id, Group.name, Group.unit, Group.owner_id)
                           .where(or_(*cond), Group.status.not_in(("merged", "purged")))).all()
    members = set(session.execute(member).scalars()) if rows else set()
    out = []
    for gid, name, unit, owner in rows:
        rel = set()
        if owner == person.id:
            rel.add("own")
        if gid in members:
            rel.add("member")
        if person.role == "admin" or (person.role == "unit_admin" and person.unit and unit == person.unit):
            rel.add("admin")
        out.append((gid, name or gid, unit, frozenset(rel or {"member"})))
    return out
