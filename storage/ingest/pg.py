"""PostgreSQL's ingest statements: the session path's shortcuts (claims and the dialogue cut in
one statement, the four inserts in one, the counters in one) and the whole batch in one
autocommit statement (``pg_ingest``)."""
from __future__ import annotations

import json
from functools import lru_cache

from sqlalchemy.orm import Session

from storage import repo
from storage.ingest import counters
from storage.ingest.counters import COUNTERS
from storage.models import Base
from storage.repo import WECOM_PLATFORMS, driver_execute, pg_json, quote_name as _q


def in_dialogue(session: Session, person_ids: list[str]) -> set[str]:
    sql = "SELECT person_id FROM conversations WHERE person_id IN (SELECT json_array_elements_text(%s::json))"
    return {r[0] for r in driver_execute(session, sql, (pg_json(list(person_ids)),))}


def stored_replies(conn, keys: list[str]) -> dict[str, list | None]:
    """``repo.stored_replies`` on a plain (autocommit) psycopg connection."""
    if not keys:
        return {}
    with conn.cursor() as cur:
        cur.execute("SELECT key, reply FROM processed_events WHERE key IN (SELECT json_array_elements_text(%s::json))",
                    (pg_json(sorted({k[:200] for k in keys})),))
        rows = {k: (json.loads(r) if isinstance(r, str) else r) for k, r in cur.fetchall()}
    return {k: rows.get(k[:200]) for k in keys}


# --- the session path's statements -------------------------------------------------------------
_ACTIVITY_TABLES = (("p", "persons", ("id",), ()), ("g", "groups", ("id",), ()),
                    ("m", "memberships", ("group_id", "person_id"), ("group_id",)),
                    ("k", "messages", ("dedupe_key",), ("dedupe_key",)))


@lru_cache(maxsize=64)
def _activity_sql(shape: tuple) -> str | None:
    """One statement inserting a batch's persons, groups, memberships and messages (data-modifying
    CTEs; the memberships' foreign key sees the groups inserted beside them, checked at the end of
    the statement), returning ('m', group) for each new membership and ('k', key) for each new
    message. ``shape``: (alias, table, columns, keys, returning) of the non-empty row lists."""
    parts, outs = [], []
    for alias, table, cols, keys, ret in shape:
        sql = repo.pg_json_insert_sql(table, cols, keys, ret)
        if sql is None:
            return None
        parts.append(f"{alias} AS ({sql})")
        if ret:
            outs.append(f"SELECT '{alias}', {_q(ret[0])} FROM {alias}")
    return "WITH " + ", ".join(parts) + " " + (" UNION ALL ".join(outs) or "SELECT NULL, NULL WHERE false")


def insert_activity(session: Session, persons, groups, members, messages) -> tuple[set, set] | None:
    """The four inserts of ``storage.ingest.session.write`` in one round trip: (groups that gained
    members, keys of new messages); None if a column cannot travel as JSON (the caller then uses
    the generic inserts)."""
    shape, params = [], []
    for (alias, table, keys, ret), rows in zip(_ACTIVITY_TABLES, (persons, groups, members, messages)):
        if not rows:
            continue
        rows = repo.with_defaults(repo.python_defaults(table, tuple(rows[0])), rows)
        shape.append((alias, table, tuple(rows[0]), keys, ret))
        params.append(pg_json(rows))
    if not shape:
        return set(), set()
    sql = _activity_sql(tuple(shape))
    if sql is None:
        return None
    out = driver_execute(session, sql, tuple(params))
    return {v for a, v in out if a == "m"}, {v for a, v in out if a == "k"}


_GROW = counters.pg_update_sql()


def grow(session: Session, changes: dict[str, dict], grown: set[str]) -> None:
    """The counters (and, for groups that gained members, the member count) of every touched
    group in one UPDATE (``counters.pg_update_sql``). Should a plan ever lock rows otherwise than
    in id order and deadlock, PostgreSQL aborts one batch and it is retried event by event
    (``bot.writer.run_batch``)."""
    ids = sorted(set(changes) | grown)
    if ids:
        rows = [{"gid": g, **changes.get(g, counters.zero()), "grown": g in grown} for g in ids]
        driver_execute(session, _GROW, (pg_json(rows),))


_CLAIM = (
    "WITH r AS (SELECT * FROM json_to_recordset(%s::json) AS r(pos int, key text, at timestamptz, sender text, "
    "hint boolean)), cut AS (SELECT coalesce(min(r.pos), 2147483647) AS pos FROM r JOIN conversations c "
    "ON c.person_id = r.sender WHERE r.hint), ins AS (INSERT INTO processed_events (key, at) SELECT r.key, r.at "
    "FROM r, cut WHERE r.pos < cut.pos AND r.key IS NOT NULL ORDER BY r.key ON CONFLICT (key) DO NOTHING "
    "RETURNING key) SELECT 'c', pos::text FROM cut UNION ALL SELECT 'k', key FROM ins")


def claim_until_dialogue(session: Session, rows: list[dict]) -> tuple[int, set[str]]:
    """One statement: the position of the first row that is a hint-message from a sender in a
    dialogue (``conversations``; len(rows) if none), and the dedupe keys newly claimed in
    ``processed_events`` for the rows before it. Rows: pos, key (None: claims nothing), at,
    sender, hint."""
    cut, keys = len(rows), set()
    for kind, value in driver_execute(session, _CLAIM, (pg_json(rows),)):
        if kind == "c":
            cut = min(cut, int(value))
        else:
            keys.add(value)
    return cut, keys


# --- a whole batch in one autocommit statement ---------------------------------------------------
# What ``claim_until_dialogue`` + ``session.write`` do in four statements and a transaction, as
# one statement (its own transaction, so no BEGIN/COMMIT round trips either). Which events are
# fresh (claimed now, before the first hint-message from a sender in a dialogue) is only known
# inside the statement, so every row carries its event's position and each insert joins
# ``fresh``. A statement's CTEs all see one snapshot: groups therefore get their counters by
# INSERT … ON CONFLICT DO UPDATE: a new group is inserted with its counts, and an existing one,
# even one another writer committed after this statement's snapshot was taken, has them added to
# its newest version. Member counts grow by the memberships this statement inserted (a recount
# would read the snapshot and miss the other writer's: the test of two writers caught it); every
# path keeps ``member_count`` equal to the group's memberships, so adding is exact.
_EVENTS = "pos int, key text, dup boolean, at timestamptz, sender text, hint boolean"
# in every new group row (``repo.new_group_row``): the counts, and the "last" counters' fallback
_ROW_COUNTERS = tuple(c.column for c in COUNTERS if c.agg in ("count", "last")) + ("member_count",)


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


# ``may_touch`` in SQL: ``og`` the stored group, ``x`` the event's group row (its platform is the event's).
_MAY_TOUCH = (f"og.platform = x.platform OR (x.platform IN ({_sql_list(WECOM_PLATFORMS)}) "
              f"AND og.platform IN ({_sql_list(WECOM_PLATFORMS + ('ledger',))}))")


def _recordset(table_name: str, cols: tuple[str, ...], alias: str = "x") -> str | None:
    table = Base.metadata.tables[table_name]
    types = [repo.pg_record_type(table.c[c].type) for c in cols]
    if None in types:
        return None
    return (f"json_to_recordset(%s::json) AS {alias}(pos int, "
            + ", ".join(f"{_q(c)} {t}" for c, t in zip(cols, types)) + ")")


@lru_cache(maxsize=16)
def _ingest_sql(person_cols: tuple[str, ...], member_cols: tuple[str, ...], message_cols: tuple[str, ...],
                group_cols: tuple[str, ...]) -> str | None:
    """The statement; parameters (JSON arrays, in this order): events, groups, persons, memberships,
    messages. Returns ('c', cut position), ('k', key) for each key claimed now and ('f', position)
    for each event whose group is stored under a platform it may not touch (nothing of it written)."""
    rs = {t: _recordset(t, c) for t, c in (("persons", person_cols), ("memberships", member_cols),
                                           ("messages", message_cols), ("groups", group_cols))}
    if None in rs.values() or not set(_ROW_COUNTERS) <= set(group_cols):
        return None

    def names(cols, prefix=""):
        return ", ".join(prefix + _q(c) for c in cols)

    group_all = group_cols + tuple(c.column for c in COUNTERS if c.column not in group_cols)
    # A new group's row starts every count at 0: inserted, it carries this batch's change (``a``),
    # which is also what an existing group's counters grow by (``counters.pg_on_conflict``).
    expr = {c.column: counters.pg_new_row(c, "a", "x", c.column in group_cols) for c in COUNTERS}
    expr["member_count"] = "coalesce(gm.added, 0)"
    group_select = ", ".join(expr.get(c, f"x.{_q(c)}") for c in group_all)
    g = _q("groups")
    any_message = _q(counters.ANY_MESSAGE)
    return (
        f"WITH e AS (SELECT * FROM json_to_recordset(%s::json) AS e({_EVENTS})), "
        f"gr AS (SELECT * FROM {rs['groups']}), "
        # events naming a group that exists under a platform they may not touch (``may_touch``), or
        # a group new to this batch whose first event came from such a platform
        f"fo AS (SELECT x.pos FROM gr x JOIN {g} og ON og.id = x.id WHERE NOT ({_MAY_TOUCH}) "
        "UNION ALL SELECT x.pos FROM gr x JOIN (SELECT DISTINCT ON (id) id, platform FROM gr ORDER BY id, pos) og "
        f"ON og.id = x.id WHERE NOT EXISTS (SELECT 1 FROM {g} sg WHERE sg.id = x.id) AND NOT ({_MAY_TOUCH})), "
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
        f"a AS (SELECT k.group_id AS gid, {counters.pg_aggregates('k', 'mr.pos')} "
        "FROM k JOIN mr USING (dedupe_key) GROUP BY k.group_id), "
        "gm AS (SELECT group_id AS gid, count(*) AS added FROM m GROUP BY group_id), "
        f"gi AS (INSERT INTO {g} ({names(group_all)}) SELECT DISTINCT ON (x.id) {group_select} "
        "FROM gr x JOIN fresh f ON f.pos = x.pos LEFT JOIN a ON a.gid = x.id "
        "LEFT JOIN gm ON gm.gid = x.id ORDER BY x.id, x.pos ON CONFLICT (id) DO UPDATE SET "
        f"{counters.pg_on_conflict(g)}, member_count = {g}.member_count + excluded.member_count "
        f"WHERE excluded.{any_message} > 0 OR excluded.member_count > 0) "
        "SELECT 'c', pos::text FROM cut UNION ALL SELECT 'k', key FROM ins UNION ALL SELECT 'f', pos::text FROM fo")


def pg_ingest(conn, events: list[dict], persons: list[dict], members: list[dict], messages: list[dict],
              groups: list[dict], foreign: set[int] | None = None) -> tuple[int, set[str]] | None:
    """Run the one-statement batch on an autocommit psycopg connection ``conn``: returns (cut,
    claimed keys) as ``claim_until_dialogue`` does, or None (nothing done) if a column cannot
    travel as JSON. Rows are per event (``pos``); see ``storage.ingest.one_statement``.
    ``foreign`` (if given) receives the positions of events naming a group stored under a
    platform they may not touch (``may_touch``): claimed, but nothing of theirs is written."""
    def cols(rows, fallback):
        return tuple(c for c in rows[0] if c != "pos") if rows else fallback

    # An empty list takes the columns its rows usually have, so the SQL text (and its prepared
    # statement) stays the same.
    person_cols = cols(persons, ("id", "name", "role", "created_at"))
    member_cols = cols(members, ("group_id", "person_id", "joined_at"))
    message_cols = cols(messages, ("dedupe_key", "platform", "group_id", "sender_id", "sent_at", "is_ritual", "text"))
    group_cols = cols(groups, tuple(repo.new_group_row(group_id="", platform="", at=None, name="", source="")))
    sql = _ingest_sql(person_cols, member_cols, message_cols, group_cols)
    if sql is None:
        return None
    if any(repo.python_defaults(t, c) != () for t, c in (("persons", person_cols), ("memberships", member_cols),
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
