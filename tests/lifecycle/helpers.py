"""Shared helpers for the lifecycle tests: seed groups, run a chat command, dump every table."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from handlers.context import Services
from platforms.capabilities import table
from handlers.dispatch import handle_event
from governance.events import Event
from storage import repo
from storage.models import AuditRecord, Base, Group, Notice, Person

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # the clock fixture's default (Mon 10:00 Beijing)


def person(s, pid: str, role: str = "cadre", name: str | None = None, unit: str | None = "城关镇") -> None:
    p = repo.get_or_create_person(s, pid, NOW - timedelta(days=400), name=name or pid)
    p.role, p.unit, p.name = role, unit, name or pid


def seed_people(s) -> None:
    person(s, "owner1", name="李主任")
    person(s, "admin1", "admin", name="管理员")
    person(s, "comm1", "commission", name="纪委")
    person(s, "stranger", name="王干事")


def group(s, gid: str, name: str, *, platform: str = "wecom", owner: str | None = "owner1",
          members=("owner1", "m1", "m2", "m3"), idle_days: float = 45, source: str = "chat", **kw) -> Group:
    g = repo.ensure_group(s, group_id=gid, platform=platform, at=NOW - timedelta(days=300), name=name, source=source)
    g.owner_id, g.unit, g.registered_at = owner, "城关镇", NOW - timedelta(days=300)
    g.last_work_at = NOW - timedelta(days=idle_days)
    g.last_message_at = NOW - timedelta(days=2)
    g.message_count, g.ritual_count = 40, 4
    for k, v in kw.items():
        setattr(g, k, v)
    repo.add_members(s, gid, list(members), NOW - timedelta(days=300))
    s.flush()
    return g


def say(runtime, sender: str, text: str, at: datetime, msg_id: str | None = None):
    """One direct message to the bot, handled in its own transaction; returns the reply texts."""
    ev = Event(platform="wecom", kind="message", sender_id=sender, at=at, text=text,
               msg_id=msg_id or f"{sender}:{text}:{at.timestamp()}")
    with runtime.db.session() as s:
        return [r.text for r in handle_event(s, ev, runtime.services)]


def dump(db) -> dict:
    """Every row of every table, as plain tuples (for before/after comparisons)."""
    out = {}
    with db.session() as s:
        for t in Base.metadata.sorted_tables:
            rows = s.execute(select(t)).all()
            out[t.name] = sorted((tuple(str(v) for v in r) for r in rows))
    return out


def trail(s, gid: str) -> list[tuple[str, str, str | None]]:
    return [(r.action, r.actor, r.reason) for r in
            s.execute(select(AuditRecord).where(AuditRecord.group_id == gid).order_by(AuditRecord.id)).scalars()]


def notices(s, kind: str | None = None) -> list[Notice]:
    q = select(Notice).order_by(Notice.id)
    if kind:
        q = q.where(Notice.kind == kind)
    return list(s.execute(q).scalars())


def services(settings, clock) -> Services:
    return Services(settings=settings, capabilities=table(settings), clock=clock)
