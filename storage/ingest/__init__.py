"""Where a message is stored: one definition of the rows a plain event produces (``rows``), one
of a group's counters (``counters``), and one way in, ``store(target, batch)``, with the
strategies behind it chosen here by dialect:

* in a session's transaction (``target`` a ``Session``): the generic statements (SQLite), or
  PostgreSQL's three-statement shortcuts (``storage.ingest.session``);
* on its own (``target`` a ``Database``): on PostgreSQL one autocommit statement on the
  calling thread's ingest connection (``storage.ingest.pg.pg_ingest``), committed when it
  returns; elsewhere, or if the statement cannot be used, a transaction of its own.

A batch is a sequence of ``Item``: plain events (``rows.PLAIN_KINDS``) with the dedupe key to
claim. Each key is claimed once (the first item carrying it wins; later ones, and keys claimed
before, are repeats), persons, groups, memberships and messages are inserted if absent, and the
groups' counters grow by the messages that were new. The batch stops before the first
hint-message (``Item.hint``) whose sender is in a dialogue: that text is the dialogue's next
answer, for the command handlers. ``record(session, event)`` stores one event's rows (the
per-event path of the handlers, which has claimed the key itself).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator, Sequence, Union

from sqlalchemy.orm import Session

from governance.events import Event
from storage import identity
from storage.db import Database
from storage.ingest import pg, session as _session
from storage.ingest.batch import FOREIGN, NEW, REPEAT, Item, Stored
from storage.ingest.rows import KEY_MAX, PLAIN_KINDS, rows_of
from storage.repo import pg_json_time

__all__ = ["BATCH_MAX", "FOREIGN", "Item", "NEW", "PLAIN_KINDS", "REPEAT", "Stored", "one_statement", "record",
           "store", "transaction"]

BATCH_MAX = 512  # items per ``store`` call (the writer cuts longer runs)


def store(target: Union[Session, Database], batch: Sequence[Item], *, store_text: bool) -> Stored:
    """Store a batch of plain events (see the module docstring). Raises on a database error: in
    a session, the caller rolls back (to a SAVEPOINT); on its own, nothing was written."""
    # Identity: a linked account's sender becomes its person here, before any row is built and on
    # every strategy (one SELECT, storage.identity.resolve_batch); senders without an account row
    # get their natural account once their person rows exist (record_accounts).
    if isinstance(target, Session):
        batch, unrecorded = _resolved(target, batch)
        done = _session.store(target, batch, store_text=store_text)
        identity.record_accounts(target, unrecorded)
        return done
    if target.dialect == "postgresql" and len(batch) <= BATCH_MAX:
        conn = target.ingest_connection()
        resolved, unrecorded = _resolved(conn, batch)
        found = one_statement(target, resolved, store_text=store_text)
        if found is not None:
            identity.record_accounts(target.ingest_connection(), unrecorded)
            return found
    with transaction(target) as s:
        batch, unrecorded = _resolved(s, batch)
        done = _session.store(s, batch, store_text=store_text)
        identity.record_accounts(s, unrecorded)
        return done


def _resolved(conn_or_session, batch: Sequence[Item]) -> tuple[list[Item], list[dict]]:
    """The batch with each linked account's events as its person's (``storage.identity``)."""
    r = identity.resolve_batch(conn_or_session, [it.event for it in batch])
    items = [it if e is it.event else replace(it, event=e) for it, e in zip(batch, r.events)]
    return items, r.unrecorded


def record(session: Session, event: Event, *, store_text: bool) -> None:
    """One plain event's rows in the caller's transaction (its key is claimed by the caller)."""
    _session.write(session, [rows_of(event, store_text=store_text)])


@contextmanager
def transaction(db: Database) -> Iterator[Session]:
    """A session whose transaction is open from the start (committed on success), for a batch
    that mixes ``store`` runs and per-event handling in SAVEPOINTs."""
    with db.session() as s:
        if db.dialect == "sqlite":
            # pysqlite starts no transaction before the first DML: without an explicit BEGIN the
            # first SAVEPOINT would open it and its RELEASE would commit it.
            s.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield s


def one_statement(db: Database, batch: Sequence[Item], *, store_text: bool) -> Stored | None:
    """PostgreSQL: the batch as one statement on this thread's ingest connection, committed when
    it returns; None if the statement cannot be used (nothing was written). A connection that
    failed is dropped (the next batch opens a new one)."""
    events, persons, members, messages, groups = [], [], [], [], []
    seen_keys: set[str] = set()
    seen_messages: set[str] = set()
    firsts: list[str | None] = []
    for pos, it in enumerate(batch):
        e = it.event
        at = pg_json_time(e.at)  # once per event: it is in most of the event's rows
        k = it.key[:KEY_MAX] if it.key else None
        dup = k is not None and k in seen_keys
        if k is not None:
            seen_keys.add(k)
        firsts.append(None if dup else k)
        events.append({"pos": pos, "key": None if dup else k, "dup": dup, "at": at, "sender": e.sender_id,
                       "hint": it.hint})
        rows = rows_of(e, store_text=store_text, at=at, pos=pos)
        persons.append(rows.person)
        if rows.group is None:
            continue
        groups.append(rows.group)
        members.extend(rows.members)
        if rows.message is not None:
            if rows.message["dedupe_key"] in seen_messages:  # only the first can be stored: a later one is a duplicate
                continue
            seen_messages.add(rows.message["dedupe_key"])
            messages.append(rows.message)
    foreign: set[int] = set()
    conn = db.ingest_connection()
    try:
        found = pg.pg_ingest(conn, events, persons, members, messages, groups, foreign)
        if found is None:
            return None
        cut, claimed = found
        outcomes: list[str] = []
        before: dict[int, str] = {}  # repeats of events stored by an earlier statement
        for i, (it, k) in enumerate(zip(batch[:cut], firsts[:cut])):
            if it.key and k not in claimed:  # claimed before, or a repeat within this batch
                outcomes.append(REPEAT)
                if k is not None:
                    before[i] = k
            else:
                outcomes.append(FOREIGN if i in foreign else NEW)
        stored = pg.stored_replies(conn, list(before.values())) if before else {}
    except Exception:
        if conn.closed or conn.broken:
            db.drop_ingest_connection()
        raise
    return Stored(outcomes, {i: stored.get(k) for i, k in before.items()})
