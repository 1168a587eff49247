"""Repositories: keyword-only helpers over the models (persons, groups, activity)."""
from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import Group, Membership, Message, Person, ProcessedEvent

LIVE_STATUSES = ("active", "warned")


def _insert(session: Session):
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def insert_ignore(session: Session, model, rows: list[dict], keys: list[str]) -> int:
    """INSERT … ON CONFLICT DO NOTHING; returns how many rows were new."""
    if not rows:
        return 0
    table = model.__table__
    # RETURNING counts reliably on both backends (psycopg's rowcount is not trustworthy here).
    if len(rows) == 1:
        # Bound parameters on the Core table: the compiled statement is cached, not rebuilt per call
        # (the ingest benchmark showed compiling a literal VALUES list cost a quarter of a callback).
        stmt = (_insert(session)(table).on_conflict_do_nothing(index_elements=keys)
                .returning(*(table.c[k] for k in keys)))
        return len(session.execute(stmt, rows[0]).all())
    stmt = _insert(session)(model).values(rows).on_conflict_do_nothing(index_elements=keys)
    stmt = stmt.returning(*(getattr(model, k) for k in keys))
    return len(session.execute(stmt).all())


def mark_processed(session: Session, key: str, at: datetime) -> bool:
    """Claim a dedupe key in the caller's transaction; False if it was handled before."""
    return insert_ignore(session, ProcessedEvent, [{"key": key[:200], "at": at}], ["key"]) == 1


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
        insert_ignore(session, Group, [{
            "id": group_id, "platform": platform, "name": name or group_id, "created_at": at,
            "first_seen_at": at, "source": source, "status": "active", "member_count": 0,
            "message_count": 0, "ritual_count": 0, "keep_count": 0, "temporary": False, "protected": False,
            "updated_at": at,
        }], ["id"])
        g = session.get(Group, group_id)
    return g


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
