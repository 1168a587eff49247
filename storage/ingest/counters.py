"""A group's counters: the one definition of what its stored messages make of them.

Every path that stores messages (one event, a batch in a session on SQLite or PostgreSQL, the
one-statement batch on PostgreSQL) and the importer's recount derive their SQL from ``COUNTERS``,
so the rules are written here once:

* ``message_count`` / ``ritual_count``: how many messages / ritual acknowledgements (收到, 好的 …);
* ``last_message_at`` / ``last_work_at``: the latest ``sent_at`` of any / of a non-ritual message
  (only ever moved forward: a late-delivered old message does not move them back);
* ``updated_at``: the ``sent_at`` of the last new message stored (in event order); the recount
  leaves it alone.

``member_count`` is the number of the group's memberships (``storage.repo.refresh_member_count``;
the one-statement path adds the memberships it inserted, see ``storage.ingest.pg``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.models import Group, Message


@dataclass(frozen=True, slots=True)
class Counter:
    column: str
    messages: str          # which messages count: "all", "ritual" or "work" (not ritual)
    agg: str               # "count"; "max": the latest sent_at; "last": the last new message's sent_at
    recount: bool = True   # recomputed from every stored message by ``recount``


COUNTERS = (
    Counter("message_count", "all", "count"),
    Counter("ritual_count", "ritual", "count"),
    Counter("last_message_at", "all", "max"),
    Counter("last_work_at", "work", "max"),
    Counter("updated_at", "all", "last", recount=False),
)
ANY_MESSAGE = next(c.column for c in COUNTERS if c.agg == "count" and c.messages == "all")


_ZERO = {c.column: 0 if c.agg == "count" else None for c in COUNTERS}
# per kind of message (ritual or not), the (column, agg) of the counters it changes
_CHANGES = {ritual: tuple((c.column, c.agg) for c in COUNTERS
                          if c.messages == "all" or (c.messages == "ritual") == ritual)
            for ritual in (False, True)}


def zero() -> dict:
    """A group's change before any message: nothing counted, no time."""
    return dict(_ZERO)


def fold(messages: Iterable[dict]) -> dict[str, dict]:
    """Per group, what its new ``messages`` rows (in event order) add: {group id: {column: value}}."""
    out: dict[str, dict] = {}
    for m in messages:
        g = out.get(m["group_id"])
        if g is None:
            g = out[m["group_id"]] = dict(_ZERO)
        at = m["sent_at"]
        for col, agg in _CHANGES[bool(m["is_ritual"])]:
            if agg == "count":
                g[col] += 1
            elif agg == "last" or g[col] is None or g[col] < at:
                g[col] = at
    return out


# --- the counters' SQL, per dialect, from the one definition ------------------------------------
def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=32)
def update_sql(columns: tuple[str, ...], ph: str) -> str:
    """Generic (SQLite): one group's counters grown by a change. ``columns``: those the change
    has a value for (a "max" without one is left out). Parameters, per column in order: the value
    (a "max" takes it twice); then the group id. Timestamps compare correctly as SQLite stores
    them (ISO text)."""
    sets = []
    for c in COUNTERS:
        if c.column not in columns:
            continue
        col = _q(c.column)
        if c.agg == "count":
            sets.append(f"{col} = {col} + {ph}")
        elif c.agg == "max":
            sets.append(f"{col} = CASE WHEN {col} IS NULL OR {col} < {ph} THEN {ph} ELSE {col} END")
        else:
            sets.append(f"{col} = {ph}")
    return f"UPDATE {_q('groups')} SET {', '.join(sets)} WHERE id = {ph}"


def update_params(change: dict, gid: str, convert) -> tuple[tuple[str, ...], tuple]:
    """The columns and parameters of ``update_sql`` for one group's change (times through ``convert``)."""
    cols, params = [], []
    for c in COUNTERS:
        v = change[c.column]
        if c.agg == "count":
            params.append(v)
        elif v is None:
            continue
        else:
            v = convert(v)
            params.extend((v, v) if c.agg == "max" else (v,))
        cols.append(c.column)
    params.append(gid)
    return tuple(cols), tuple(params)


def _pg_type(c: Counter) -> str:
    return "bigint" if c.agg == "count" else "timestamptz"


def _pg_grow(c: Counter, old: str, new: str) -> str:
    """PostgreSQL: a stored counter ``old`` grown by a change ``new`` (GREATEST skips NULLs)."""
    if c.agg == "count":
        return f"{old} + {new}"
    if c.agg == "max":
        return f"GREATEST({old}, {new})"
    return f"COALESCE({new}, {old})"


def pg_update_sql() -> str:
    """PostgreSQL: every touched group's counters in one UPDATE over a JSON record set (rows:
    gid, the counter columns, grown: whether it gained members, which recounts ``member_count``).
    Sorted by group id, so rows are normally locked in id order."""
    sets = [f"{_q(c.column)} = {_pg_grow(c, 'g.' + _q(c.column), 'v.' + _q(c.column))}" for c in COUNTERS]
    sets.append("member_count = CASE WHEN v.grown THEN (SELECT count(*) FROM memberships m "
                "WHERE m.group_id = g.id) ELSE g.member_count END")
    types = ", ".join(f"{_q(c.column)} {_pg_type(c)}" for c in COUNTERS)
    return (f"UPDATE {_q('groups')} AS g SET {', '.join(sets)} FROM (SELECT * FROM json_to_recordset(%s::json) "
            f"AS x(gid text, {types}, grown boolean) ORDER BY gid) AS v WHERE g.id = v.gid")


def pg_aggregates(messages: str, order: str) -> str:
    """PostgreSQL, in a query over new ``messages`` rows (alias ``messages``, columns sent_at and
    is_ritual) grouped by group: each counter's change, named after its column. ``order``: the
    expression giving event order (for "last")."""
    out = []
    for c in COUNTERS:
        where = {"all": "", "ritual": f" FILTER (WHERE {messages}.is_ritual)",
                 "work": f" FILTER (WHERE NOT {messages}.is_ritual)"}[c.messages]
        if c.agg == "count":
            expr = f"count(*){where}"
        elif c.agg == "max":
            expr = f"max({messages}.sent_at){where}"
        else:
            expr = f"(array_agg({messages}.sent_at ORDER BY {order} DESC){where})[1]"
        out.append(f"{expr} AS {_q(c.column)}")
    return ", ".join(out)


def pg_new_row(c: Counter, change: str, row: str, row_has: bool) -> str:
    """PostgreSQL: a counter's value in the row of a group inserted with its change (``row``: the
    new group's row, which starts counts at 0; ``row_has``: whether it has the column)."""
    col = _q(c.column)
    if c.agg == "count":
        return f"coalesce({change}.{col}, 0)"
    if c.agg == "max":
        return f"GREATEST({row}.{col}, {change}.{col})" if row_has else f"{change}.{col}"
    return f"coalesce({change}.{col}, {row}.{col})"


def pg_on_conflict(table: str) -> str:
    """PostgreSQL: ``ON CONFLICT DO UPDATE SET`` of a stored group grown by the row it conflicted
    with (``excluded``, which carries the change; its "last" applies only if it has messages)."""
    sets = []
    for c in COUNTERS:
        col = _q(c.column)
        if c.agg == "last":
            sets.append(f"{col} = CASE WHEN excluded.{_q(ANY_MESSAGE)} > 0 THEN excluded.{col} ELSE {table}.{col} END")
        else:
            sets.append(f"{col} = {_pg_grow(c, f'{table}.{col}', f'excluded.{col}')}")
    return ", ".join(sets)


# --- the recount ------------------------------------------------------------------------------------
def _recount_column(c: Counter):
    where = {"all": None, "ritual": Message.is_ritual.is_(True), "work": Message.is_ritual.is_(False)}[c.messages]
    agg = func.count() if c.agg == "count" else func.max(Message.sent_at)
    return (agg if where is None else agg.filter(where)).label(c.column)


def recount(session: Session, group_ids: Iterable[str]) -> None:
    """Recompute the counters of some groups from all their stored messages (one query)."""
    ids = sorted(set(group_ids))
    if not ids:
        return
    cols = [c for c in COUNTERS if c.recount]
    found = {r[0]: r[1:] for r in session.execute(
        select(Message.group_id, *(_recount_column(c) for c in cols))
        .where(Message.group_id.in_(ids)).group_by(Message.group_id))}
    for gid in ids:
        values = found.get(gid) or tuple(0 if c.agg == "count" else None for c in cols)
        session.execute(update(Group).where(Group.id == gid).values(
            {c.column: v for c, v in zip(cols, values)}))
