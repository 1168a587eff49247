"""Storing a batch inside a session's transaction: the generic path (SQLite, or any dialect),
with PostgreSQL's shortcuts (a statement for the claims and the dialogue cut, one for the four
inserts, one for the counters) where the session is on PostgreSQL."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy.orm import Session

from storage import repo
from storage.ingest import counters, pg
from storage.ingest.batch import FOREIGN, NEW, REPEAT, Stored
from storage.ingest.rows import KEY_MAX, rows_of
from storage.models import Group, Membership, Message, Person, ProcessedEvent


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def firsts(batch: Sequence) -> list[str | None]:
    """Per item, its dedupe key if this is the key's first occurrence in the batch (else None)."""
    out: list[str | None] = []
    seen: set[str] = set()
    for it in batch:
        k = it.key[:KEY_MAX] if it.key else None
        out.append(k if k is not None and k not in seen else None)
        if k is not None:
            seen.add(k)
    return out


def claim(session: Session, batch: Sequence, first: list[str | None]) -> tuple[int, set[str]]:
    """How many leading items may be stored now (up to the first hint-message whose sender is in
    a dialogue: that text is the dialogue's next answer), and which of their keys were new."""
    if _postgresql(session):
        return pg.claim_until_dialogue(session, [
            {"pos": i, "key": k, "at": it.event.at, "sender": it.event.sender_id, "hint": it.hint}
            for i, (it, k) in enumerate(zip(batch, first))])
    n = len(batch)
    senders = {it.event.sender_id for it in batch if it.hint}
    if senders:
        talking = in_dialogue(session, sorted(senders))
        n = next((i for i, it in enumerate(batch) if it.hint and it.event.sender_id in talking), n)
    claims = sorted({k: it.event.at for it, k in zip(batch[:n], first[:n]) if k is not None}.items())
    return n, {k for (k,) in repo.insert_ignore_returning(
        session, ProcessedEvent, [{"key": k, "at": at} for k, at in claims], ["key"])}


def in_dialogue(session: Session, person_ids: list[str]) -> set[str]:
    """Which of ``person_ids`` have an unfinished dialogue (a ``conversations`` row)."""
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        return pg.in_dialogue(session, person_ids)
    ph = repo.placeholder(dialect)
    out: set[str] = set()
    for start in range(0, len(person_ids), repo.BULK_CHUNK):
        chunk = person_ids[start:start + repo.BULK_CHUNK]
        sql = f"SELECT person_id FROM conversations WHERE person_id IN ({', '.join([ph] * len(chunk))})"
        out.update(r[0] for r in repo.driver_execute(session, sql, tuple(chunk)))
    return out


def _member_count_sql(ph: str) -> str:
    return (f"UPDATE {repo.quote_name('groups')} SET member_count = (SELECT count(*) FROM memberships "
            f"WHERE memberships.group_id = {ph}) WHERE id = {ph}")


def store(session: Session, batch: Sequence, *, store_text: bool):
    """``storage.ingest.store`` in the caller's transaction (see there)."""
    first = firsts(batch)
    n, new_keys = claim(session, batch, first)
    outcomes: list[str] = []
    repeats: dict[int, str] = {}
    fresh: list[int] = []
    for i, (it, k) in enumerate(zip(batch[:n], first[:n])):
        if it.key and k not in new_keys:  # claimed before, or a repeat within this batch
            repeats[i] = it.key[:KEY_MAX]
            outcomes.append(REPEAT)
        else:
            outcomes.append(NEW)
            fresh.append(i)
    # The guard where a group row is used (``repo.may_touch``), for the batch in one query: the
    # stored groups' platforms, else the platform of the batch's first event naming the group.
    owner = repo.group_platforms(session, {batch[i].event.group_id for i in fresh if batch[i].event.group_id})
    allowed = []
    for i in fresh:
        e = batch[i].event
        if e.group_id and not repo.may_touch(owner.setdefault(e.group_id, e.platform), e.platform):
            outcomes[i] = FOREIGN
            continue
        allowed.append(rows_of(e, store_text=store_text))
    write(session, allowed)
    replies = repo.stored_replies(session, list(repeats.values())) if repeats else {}
    return Stored(outcomes, {i: replies.get(k) for i, k in repeats.items()})


def write(session: Session, rows: Sequence) -> None:
    """Insert the rows of some events (``rows_of``, in event order) if absent, and grow the
    counters of their groups by the messages that were new (one UPDATE per touched group on
    SQLite, one for all on PostgreSQL). Persons, groups and memberships are inserted sorted by
    key: concurrent writers then take row locks in the same order."""
    persons: dict[str, dict] = {}
    groups: dict[str, dict] = {}
    members: dict[tuple[str, str], dict] = {}
    messages: list[dict] = []
    for r in rows:
        persons.setdefault(r.person["id"], r.person)
        if r.group is None:
            continue
        groups.setdefault(r.group["id"], r.group)
        for m in r.members:
            members.setdefault((m["group_id"], m["person_id"]), m)
        if r.message is not None:
            messages.append(r.message)
    persons_l = [persons[k] for k in sorted(persons)]
    groups_l = [groups[k] for k in sorted(groups)]
    members_l = [members[k] for k in sorted(members)]
    found = pg.insert_activity(session, persons_l, groups_l, members_l, messages) if _postgresql(session) else None
    if found is not None:
        grown, new = found
    else:
        repo.insert_ignore_returning(session, Person, persons_l, ["id"])
        repo.insert_ignore_returning(session, Group, groups_l, ["id"])
        grown = {g for (g,) in repo.insert_ignore_returning(session, Membership, members_l, ["group_id", "person_id"],
                                                            returning=["group_id"])}
        new = {k for (k,) in repo.insert_ignore_returning(session, Message, messages, ["dedupe_key"])}
    new_messages = []
    for m in messages:
        if m["dedupe_key"] in new:
            new.discard(m["dedupe_key"])  # a second row with the same key was not inserted
            new_messages.append(m)
    grow(session, counters.fold(new_messages), grown)


def grow(session: Session, changes: dict[str, dict], grown: set[str]) -> None:
    """Apply the groups' counter ``changes`` (``counters.fold``) and recount the members of the
    ``grown`` groups; the session's loaded copies of those groups are expired."""
    touched = set(changes) | grown
    if not touched:
        return
    if _postgresql(session):
        pg.grow(session, changes, grown)
    else:
        dialect = session.get_bind().dialect
        ph = repo.placeholder(dialect)
        by_sql: dict[str, list] = {}
        for gid in sorted(changes):  # sorted: concurrent writers lock group rows in the same order
            cols, params = counters.update_params(changes[gid], gid, repo.utc_sqlite)
            by_sql.setdefault(counters.update_sql(cols, ph), []).append(params)
        for sql, params in by_sql.items():
            repo.driver_execute(session, sql, params, many=True)
        if grown:
            repo.driver_execute(session, _member_count_sql(ph), [(g, g) for g in sorted(grown)], many=True)
    for obj in list(session.identity_map.values()):  # loaded copies no longer match their rows
        if isinstance(obj, Group) and obj.id in touched:
            session.expire(obj)
