"""Repositories: keyword-only helpers over the models (persons, groups, activity)."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from functools import lru_cache

from sqlalchemy import JSON, Boolean, Enum, Integer, String, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import Base, Group, Membership, Message, Person, ProcessedEvent, UTCDateTime

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


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _placeholder(dialect) -> str:
    return "?" if dialect.paramstyle in ("qmark", "numeric") else "%s"


@lru_cache(maxsize=1024)
def _insert_ignore_sql(table_name: str, cols: tuple[str, ...], keys: tuple[str, ...], nrows: int,
                       returning: tuple[str, ...], ph: str) -> str:
    """``INSERT … VALUES (…), (…) ON CONFLICT (keys) DO NOTHING RETURNING …`` in the driver's
    own positional parameter style (the same SQL on SQLite >= 3.35 and PostgreSQL)."""
    row = "(" + ", ".join([ph] * len(cols)) + ")"
    sql = (f"INSERT INTO {_q(table_name)} ({', '.join(_q(c) for c in cols)}) VALUES {', '.join([row] * nrows)} "
           f"ON CONFLICT ({', '.join(_q(k) for k in keys)}) DO NOTHING")
    if returning:
        sql += " RETURNING " + ", ".join(_q(r) for r in returning)
    return sql


def _utc_sqlite(value):
    """What ``UTCDateTime`` and SQLAlchemy's SQLite ``DATETIME`` store, in one step."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: pass an aware datetime")
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def _utc_aware(value):
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
            out.append(_utc_sqlite if dialect.name == "sqlite" else _utc_aware)
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
            if f is _utc_sqlite or f is _utc_aware:
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


def _pg_record_type(t) -> str | None:
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
def _pg_json_insert_sql(table_name: str, cols: tuple[str, ...], keys: tuple[str, ...],
                        returning: tuple[str, ...]) -> str | None:
    """PostgreSQL: ``INSERT … SELECT … FROM json_to_recordset(%s::json) … ON CONFLICT DO NOTHING``:
    all rows in one JSON parameter, so the SQL is short and the same for any number of rows
    (psycopg parses placeholders and dumps arrays in Python, and caches only short queries;
    json.dumps and PostgreSQL's JSON parser are C)."""
    table = Base.metadata.tables[table_name]
    types = [_pg_record_type(table.c[c].type) for c in cols]
    if None in types:
        return None
    names = ", ".join(_q(c) for c in cols)
    sql = (f"INSERT INTO {_q(table_name)} ({names}) SELECT {names} FROM json_to_recordset(%s::json) AS x("
           + ", ".join(f"{_q(c)} {t}" for c, t in zip(cols, types))
           + f") ON CONFLICT ({', '.join(_q(k) for k in keys)}) DO NOTHING")
    if returning:
        sql += " RETURNING " + ", ".join(_q(r) for r in returning)
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
def _python_defaults(table_name: str, cols: tuple[str, ...]):
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


def _with_defaults(fill, rows: list[dict]) -> list[dict]:
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
    fill = _python_defaults(table.name, tuple(rows[0]))
    if fill is None:  # a SQL-expression default: let SQLAlchemy's Insert apply it
        stmt = _insert(session)(table).values(rows).on_conflict_do_nothing(index_elements=keys)
        return [tuple(r) for r in session.execute(stmt.returning(*(table.c[r] for r in ret)))]
    rows = _with_defaults(fill, rows)
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
        sql = _pg_json_insert_sql(table.name, cols, tuple(keys), ret)
        if sql is not None:
            return [tuple(r) for r in driver_execute(session, sql, (pg_json(rows),))]
    ph = _placeholder(dialect)
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


def pg_stored_replies(conn, keys: list[str]) -> dict[str, list | None]:
    """``stored_replies`` on a plain (autocommit) psycopg connection."""
    if not keys:
        return {}
    with conn.cursor() as cur:
        cur.execute("SELECT key, reply FROM processed_events WHERE key IN (SELECT json_array_elements_text(%s::json))",
                    (pg_json(sorted({k[:200] for k in keys})),))
        rows = {k: (json.loads(r) if isinstance(r, str) else r) for k, r in cur.fetchall()}
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


def record_message(session: Session, *, dedupe_key: str, platform: str, group_id: str, sender_id: str,
                   sent_at: datetime, is_ritual: bool, text: str | None) -> bool:
    """Store one group message and update the group's aggregates; False if already stored."""
    new = insert_ignore(session, Message, [{
        "dedupe_key": dedupe_key[:200], "platform": platform, "group_id": group_id, "sender_id": sender_id,
        "sent_at": sent_at, "is_ritual": is_ritual, "text": text,
    }], ["dedupe_key"])
    if not new:
        return False
    later = or_(Group.last_message_at.is_(None), Group.last_message_at < sent_at)
    values = {
        "message_count": Group.message_count + 1,
        "ritual_count": Group.ritual_count + (1 if is_ritual else 0),
        "last_message_at": case((later, sent_at), else_=Group.last_message_at),
        "updated_at": sent_at,
    }
    if not is_ritual:
        values["last_work_at"] = case(
            (or_(Group.last_work_at.is_(None), Group.last_work_at < sent_at), sent_at), else_=Group.last_work_at)
    # One atomic UPDATE: two instances counting the same group never lose an increment.
    session.execute(update(Group).where(Group.id == group_id).values(**values)
                    .execution_options(synchronize_session=False))
    g = session.get(Group, group_id)
    if g is not None:
        session.expire(g)
    return True


@lru_cache(maxsize=8)
def _counter_sql(with_work: bool, ph: str) -> str:
    """One group's counters after a batch of its new messages: counts added, ``last_*_at`` only
    moved forward (timestamps compare correctly as stored: ISO text on SQLite, timestamptz on
    PostgreSQL). Parameters: n, r, lm, lm, upd[, lw, lw], gid."""
    sets = [f"message_count = message_count + {ph}", f"ritual_count = ritual_count + {ph}",
            f"last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < {ph} THEN {ph} "
            "ELSE last_message_at END", f"updated_at = {ph}"]
    if with_work:
        sets.append(f"last_work_at = CASE WHEN last_work_at IS NULL OR last_work_at < {ph} THEN {ph} "
                    "ELSE last_work_at END")
    return f"UPDATE {_q('groups')} SET {', '.join(sets)} WHERE id = {ph}"


def _member_count_sql(ph: str) -> str:
    return (f"UPDATE {_q('groups')} SET member_count = (SELECT count(*) FROM memberships "
            f"WHERE memberships.group_id = {ph}) WHERE id = {ph}")


_PG_IDS = "SELECT json_array_elements_text(%s::json)"
_PG_COUNTERS = (
    f"UPDATE {_q('groups')} AS g SET message_count = g.message_count + v.n, "
    "ritual_count = g.ritual_count + v.r, last_message_at = GREATEST(g.last_message_at, v.lm), "
    "updated_at = COALESCE(v.upd, g.updated_at), last_work_at = GREATEST(g.last_work_at, v.lw), "
    "member_count = CASE WHEN v.grown THEN (SELECT count(*) FROM memberships m WHERE m.group_id = g.id) "
    "ELSE g.member_count END "
    "FROM (SELECT * FROM json_to_recordset(%s::json) AS x(gid text, n bigint, r bigint, lm timestamptz, "
    "upd timestamptz, lw timestamptz, grown boolean) ORDER BY gid) AS v WHERE g.id = v.gid")

_PG_ACTIVITY_TABLES = (("p", "persons", ("id",), ()), ("g", "groups", ("id",), ()),
                       ("m", "memberships", ("group_id", "person_id"), ("group_id",)),
                       ("k", "messages", ("dedupe_key",), ("dedupe_key",)))


@lru_cache(maxsize=64)
def _pg_activity_sql(shape: tuple) -> str | None:
    """One statement inserting a batch's persons, groups, memberships and messages (data-modifying
    CTEs; the memberships' foreign key sees the groups inserted beside them, checked at the end of
    the statement), returning ('m', group) for each new membership and ('k', key) for each new
    message. ``shape``: (alias, table, columns, keys, returning) of the non-empty row lists."""
    parts, outs = [], []
    for alias, table, cols, keys, ret in shape:
        sql = _pg_json_insert_sql(table, cols, keys, ret)
        if sql is None:
            return None
        parts.append(f"{alias} AS ({sql})")
        if ret:
            outs.append(f"SELECT '{alias}', {_q(ret[0])} FROM {alias}")
    return "WITH " + ", ".join(parts) + " " + (" UNION ALL ".join(outs) or "SELECT NULL, NULL WHERE false")


def _pg_activity(session: Session, persons, groups, members, messages) -> tuple[set, set] | None:
    """PostgreSQL: ``record_activity_bulk``'s four inserts in one round trip; None if a column
    cannot travel as JSON (the caller then uses the generic path)."""
    shape, params = [], []
    for (alias, table, keys, ret), rows in zip(_PG_ACTIVITY_TABLES, (persons, groups, members, messages)):
        if not rows:
            continue
        rows = _with_defaults(_python_defaults(table, tuple(rows[0])), rows)
        shape.append((alias, table, tuple(rows[0]), keys, ret))
        params.append(pg_json(rows))
    if not shape:
        return set(), set()
    sql = _pg_activity_sql(tuple(shape))
    if sql is None:
        return None
    out = driver_execute(session, sql, tuple(params))
    return {v for a, v in out if a == "m"}, {v for a, v in out if a == "k"}


def _pg_counters(session: Session, per_group: dict[str, dict], grown: set[str]) -> None:
    """PostgreSQL: the counters (and, for groups that gained members, the member count) of every
    touched group in one UPDATE over a JSON record set (GREATEST skips NULLs, so ``last_*_at``
    only move forward). The record set is sorted by group id, so the rows are normally locked in
    id order and two instances updating overlapping groups wait for each other; should a plan
    ever lock otherwise and deadlock, PostgreSQL aborts one batch and it is retried event by
    event (``bot.writer.run_batch``)."""
    ids = sorted(set(per_group) | grown)
    if not ids:
        return
    rows = [{**per_group.get(g, {"gid": g, "n": 0, "r": 0, "lm": None, "lw": None}), "grown": g in grown}
            for g in ids]
    driver_execute(session, _PG_COUNTERS, (pg_json(rows),))


_PG_CLAIM = (
    "WITH r AS (SELECT * FROM json_to_recordset(%s::json) AS r(pos int, key text, at timestamptz, sender text, "
    "hint boolean)), cut AS (SELECT coalesce(min(r.pos), 2147483647) AS pos FROM r JOIN conversations c "
    "ON c.person_id = r.sender WHERE r.hint), ins AS (INSERT INTO processed_events (key, at) SELECT r.key, r.at "
    "FROM r, cut WHERE r.pos < cut.pos AND r.key IS NOT NULL ORDER BY r.key ON CONFLICT (key) DO NOTHING "
    "RETURNING key) SELECT 'c', pos::text FROM cut UNION ALL SELECT 'k', key FROM ins")


def claim_until_dialogue(session: Session, rows: list[dict]) -> tuple[int, set[str]]:
    """PostgreSQL, one statement: the position of the first row that is a hint-message from a
    sender in a dialogue (``conversations``; len(rows) if none), and the dedupe keys newly
    claimed in ``processed_events`` for the rows before it. Rows: pos, key (None: claims
    nothing), at, sender, hint."""
    cut, keys = len(rows), set()
    for kind, value in driver_execute(session, _PG_CLAIM, (pg_json(rows),)):
        if kind == "c":
            cut = min(cut, int(value))
        else:
            keys.add(value)
    return cut, keys


# --- PostgreSQL: a whole bulk batch in one autocommit statement -------------------------------
# What ``claim_until_dialogue`` + ``record_activity_bulk`` do in four statements and a
# transaction, as one statement (its own transaction, so no BEGIN/COMMIT round trips either).
# Which events are fresh (claimed now, before the first hint-message from a sender in a dialogue)
# is only known inside the statement, so every row carries its event's position and each insert
# joins ``fresh``. A statement's CTEs all see one snapshot: groups therefore get their counters by
# INSERT … ON CONFLICT DO UPDATE: a new group is inserted with its counts, and an existing one,
# even one another writer committed after this statement's snapshot was taken, has them added
# to its newest version. Member counts grow by the memberships this statement inserted (a
# recount would read the snapshot and miss the other writer's: the test of two writers caught
# it); every path keeps ``member_count`` equal to the group's memberships, so adding is exact.
_PG_INGEST_EVENTS = ("pos int, key text, dup boolean, at timestamptz, sender text, hint boolean")
_GROUP_COUNTERS = ("message_count", "ritual_count", "member_count", "updated_at")  # in every new group row


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


# ``may_touch`` in SQL: ``og`` the stored group, ``x`` the event's group row (its platform is the event's).
_PG_MAY_TOUCH = (f"og.platform = x.platform OR (x.platform IN ({_sql_list(WECOM_PLATFORMS)}) "
                 f"AND og.platform IN ({_sql_list(WECOM_PLATFORMS + ('ledger',))}))")


def _pg_recordset(table_name: str, cols: tuple[str, ...], alias: str = "x") -> str | None:
    table = Base.metadata.tables[table_name]
    types = [_pg_record_type(table.c[c].type) for c in cols]
    if None in types:
        return None
    return (f"json_to_recordset(%s::json) AS {alias}(pos int, "
            + ", ".join(f"{_q(c)} {t}" for c, t in zip(cols, types)) + ")")


@lru_cache(maxsize=16)
def _pg_ingest_sql(person_cols: tuple[str, ...], member_cols: tuple[str, ...], message_cols: tuple[str, ...],
                   group_cols: tuple[str, ...]) -> str | None:
    """The statement; parameters (JSON arrays, in this order): events, groups, persons, memberships,
    messages. Returns ('c', cut position), ('k', key) for each key claimed now and ('f', position)
    for each event whose group is stored under a platform it may not touch (nothing of it written)."""
    rs = {t: _pg_recordset(t, c) for t, c in (("persons", person_cols), ("memberships", member_cols),
                                              ("messages", message_cols), ("groups", group_cols))}
    if None in rs.values() or not set(_GROUP_COUNTERS) <= set(group_cols):
        return None

    def names(cols, prefix=""):
        return ", ".join(prefix + _q(c) for c in cols)

    group_all = group_cols + tuple(c for c in ("last_message_at", "last_work_at") if c not in group_cols)
    # A new group's row (``new_group_row``) starts every count at 0: inserted, it carries this
    # batch's counts, which are also what an existing group's counts grow by.
    expr = {"message_count": "coalesce(a.n, 0)", "ritual_count": "coalesce(a.r, 0)",
            "member_count": "coalesce(gm.added, 0)",
            "last_message_at": "GREATEST(x.last_message_at, a.lm)" if "last_message_at" in group_cols else "a.lm",
            "last_work_at": "GREATEST(x.last_work_at, a.lw)" if "last_work_at" in group_cols else "a.lw",
            "updated_at": "coalesce(a.upd, x.updated_at)"}
    group_select = ", ".join(expr.get(c, f"x.{_q(c)}") for c in group_all)
    g = _q("groups")
    return (
        f"WITH e AS (SELECT * FROM json_to_recordset(%s::json) AS e({_PG_INGEST_EVENTS})), "
        f"gr AS (SELECT * FROM {rs['groups']}), "
        # events naming a group that exists under a platform they may not touch (``may_touch``), or
        # a group new to this batch whose first event came from such a platform
        f"fo AS (SELECT x.pos FROM gr x JOIN {g} og ON og.id = x.id WHERE NOT ({_PG_MAY_TOUCH}) "
        "UNION ALL SELECT x.pos FROM gr x JOIN (SELECT DISTINCT ON (id) id, platform FROM gr ORDER BY id, pos) og "
        f"ON og.id = x.id WHERE NOT EXISTS (SELECT 1 FROM {g} sg WHERE sg.id = x.id) AND NOT ({_PG_MAY_TOUCH})), "
        "cut AS (SELECT coalesce(min(e.pos), 2147483647) AS pos FROM e JOIN conversations c "
        "ON c.person_id = e.sender WHERE e.hint), "
        "ins AS (INSERT INTO processed_events (key, at) SELECT e.key, e.at FROM e, cut WHERE e.pos < cut.pos "
        "AND e.key IS NOT NULL AND NOT e.dup ORDER BY e.key ON CONFLICT (key) DO NOTHING RETURNING key), "
        "fresh AS (SELECT e.pos FROM e, cut WHERE e.pos < cut.pos AND NOT e.dup "
        "AND (e.key IS NULL OR e.key IN (SELECT key FROM ins)) AND e.pos NOT IN (SELECT pos FROM fo)), "
        f"p AS (INSERT INTO {_q('persons')} ({names(person_cols)}) SELECT DISTINCT ON (x.id) "
        f"{names(person_cols, 'x.')} FROM {rs['persons']} JOIN fresh f ON f.pos = x.pos "
        "ORDER BY x.id, x.pos ON CONFLICT (id) DO NOTHING), "
        f"m AS (INSERT INTO memberships ({names(member_cols)}) SELECT DISTINCT ON (x.group_id, x.person_id) "
        f"{names(member_cols, 'x.')} FROM {rs['memberships']} JOIN fresh f ON f.pos = x.pos "
        "ORDER BY x.group_id, x.person_id, x.pos ON CONFLICT (group_id, person_id) DO NOTHING RETURNING group_id), "
        f"mr AS (SELECT * FROM {rs['messages']}), "
        f"k AS (INSERT INTO messages ({names(message_cols)}) SELECT {names(message_cols, 'x.')} FROM mr x "
        "JOIN fresh f ON f.pos = x.pos ORDER BY x.pos ON CONFLICT (dedupe_key) DO NOTHING "
        "RETURNING dedupe_key, group_id, sent_at, is_ritual), "
        "a AS (SELECT k.group_id AS gid, count(*) AS n, count(*) FILTER (WHERE k.is_ritual) AS r, "
        "max(k.sent_at) AS lm, max(k.sent_at) FILTER (WHERE NOT k.is_ritual) AS lw, "
        "(array_agg(k.sent_at ORDER BY mr.pos DESC))[1] AS upd FROM k JOIN mr USING (dedupe_key) GROUP BY k.group_id), "
        "gm AS (SELECT group_id AS gid, count(*) AS added FROM m GROUP BY group_id), "
        f"gi AS (INSERT INTO {g} ({names(group_all)}) SELECT DISTINCT ON (x.id) {group_select} "
        "FROM gr x JOIN fresh f ON f.pos = x.pos LEFT JOIN a ON a.gid = x.id "
        "LEFT JOIN gm ON gm.gid = x.id ORDER BY x.id, x.pos ON CONFLICT (id) DO UPDATE SET "
        f"message_count = {g}.message_count + excluded.message_count, "
        f"ritual_count = {g}.ritual_count + excluded.ritual_count, "
        f"last_message_at = GREATEST({g}.last_message_at, excluded.last_message_at), "
        f"last_work_at = GREATEST({g}.last_work_at, excluded.last_work_at), "
        f"updated_at = CASE WHEN excluded.message_count > 0 THEN excluded.updated_at ELSE {g}.updated_at END, "
        f"member_count = {g}.member_count + excluded.member_count "
        "WHERE excluded.message_count > 0 OR excluded.member_count > 0) "
        "SELECT 'c', pos::text FROM cut UNION ALL SELECT 'k', key FROM ins UNION ALL SELECT 'f', pos::text FROM fo")


def pg_ingest(conn, events: list[dict], persons: list[dict], members: list[dict], messages: list[dict],
              groups: list[dict], foreign: set[int] | None = None) -> tuple[int, set[str]] | None:
    """Run the one-statement bulk ingest on an autocommit psycopg connection ``conn``: returns
    (cut, claimed keys) as ``claim_until_dialogue`` does, or None (nothing done) if a column
    cannot travel as JSON. Rows are per event (``pos``); see ``handlers.dispatch.ingest_autocommit``.
    ``foreign`` (if given) receives the positions of events naming a group stored under a platform
    they may not touch (``may_touch``): claimed, but nothing of theirs is written."""
    def cols(rows, fallback):
        return tuple(c for c in rows[0] if c != "pos") if rows else fallback

    # An empty list takes the columns its rows usually have, so the SQL text (and its prepared
    # statement) stays the same.
    person_cols = cols(persons, ("id", "name", "role", "created_at"))
    member_cols = cols(members, ("group_id", "person_id", "joined_at"))
    message_cols = cols(messages, ("dedupe_key", "platform", "group_id", "sender_id", "sent_at", "is_ritual", "text"))
    group_cols = cols(groups, tuple(new_group_row(group_id="", platform="", at=None, name="", source="")))
    sql = _pg_ingest_sql(person_cols, member_cols, message_cols, group_cols)
    if sql is None:
        return None
    if any(_python_defaults(t, c) != () for t, c in (("persons", person_cols), ("memberships", member_cols),
                                                     ("messages", message_cols), ("groups", group_cols))):
        return None  # a column default the statement would not apply: the generic path applies it
    cut, keys = len(events), set()
    with conn.cursor() as cur:
        cur.execute(sql, tuple(pg_json(r) for r in (events, groups, persons, members, messages)))
        for kind, value in cur.fetchall():
            if kind == "c":
                cut = min(cut, int(value))
            elif kind == "f":
                if foreign is not None:
                    foreign.add(int(value))
            else:
                keys.add(value)
    return cut, keys


def in_dialogue(session: Session, person_ids: list[str]) -> set[str]:
    """Which of ``person_ids`` have an unfinished dialogue (a ``conversations`` row)."""
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        sql = "SELECT person_id FROM conversations WHERE person_id IN (SELECT json_array_elements_text(%s::json))"
        return {r[0] for r in driver_execute(session, sql, (pg_json(list(person_ids)),))}
    ph = _placeholder(dialect)
    out: set[str] = set()
    for start in range(0, len(person_ids), BULK_CHUNK):
        chunk = person_ids[start:start + BULK_CHUNK]
        sql = f"SELECT person_id FROM conversations WHERE person_id IN ({', '.join([ph] * len(chunk))})"
        out.update(r[0] for r in driver_execute(session, sql, tuple(chunk)))
    return out


def record_activity_bulk(session: Session, *, persons: list[dict], groups: list[dict], members: list[dict],
                         messages: list[dict]) -> None:
    """Many events' activity in a few statements, with the end state of ``get_or_create_person``,
    ``ensure_group``, ``add_members`` and ``record_message`` called once per row in order.

    Rows are inserted if absent (sort persons, groups and members by key: concurrent writers then
    take row locks in the same order); messages are in event order, and only those that were new
    count: one UPDATE per touched group adds them to its counters (``last_*_at`` only move
    forward, ``updated_at`` is the last new message's time, as record_message leaves it), and a
    group that gained members gets its ``member_count`` recounted."""
    pg = session.get_bind().dialect.name == "postgresql"
    found = _pg_activity(session, persons, groups, members, messages) if pg else None
    if found is not None:
        grown, new = found
    else:
        insert_ignore_returning(session, Person, persons, ["id"])
        insert_ignore_returning(session, Group, groups, ["id"])
        grown = {g for (g,) in insert_ignore_returning(session, Membership, members, ["group_id", "person_id"],
                                                       returning=["group_id"])}
        new = {k for (k,) in insert_ignore_returning(session, Message, messages, ["dedupe_key"])}
    per_group: dict[str, dict] = {}
    for m in messages:
        if m["dedupe_key"] not in new:
            continue
        new.discard(m["dedupe_key"])
        at = m["sent_at"]
        g = per_group.setdefault(m["group_id"], {"gid": m["group_id"], "n": 0, "r": 0, "lm": at, "lw": None})
        g["n"] += 1
        g["lm"] = max(g["lm"], at)
        g["upd"] = at
        if m["is_ritual"]:
            g["r"] += 1
        else:
            g["lw"] = at if g["lw"] is None else max(g["lw"], at)
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        _pg_counters(session, per_group, grown)
        session.expire_all()
        return
    ph = _placeholder(dialect)
    ts = _utc_sqlite
    work, ritual = [], []
    for gid in sorted(per_group):  # sorted: concurrent writers lock group rows in the same order
        g = per_group[gid]
        lm = ts(g["lm"])
        if g["lw"] is None:
            ritual.append((g["n"], g["r"], lm, lm, ts(g["upd"]), gid))
        else:
            lw = ts(g["lw"])
            work.append((g["n"], g["r"], lm, lm, ts(g["upd"]), lw, lw, gid))
    for with_work, params in ((True, work), (False, ritual)):
        if params:
            driver_execute(session, _counter_sql(with_work, ph), params, many=True)
    if grown:
        driver_execute(session, _member_count_sql(ph), [(g, g) for g in sorted(grown)], many=True)
    session.expire_all()  # Group objects loaded earlier in this session no longer match their rows


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
