"""Migration 0003: bridge groups stored before group ids were scoped move to ``<platform>:<id>``
with everything that names them; WeCom and ledger groups stay; the audit chain still verifies."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import create_engine, select, text

from storage import audit, repo
from storage.db import Database, alembic_config
from storage.models import Group, Membership, Message, Notice, OutboxMessage
from tests.conftest import PG_SKIP, PG_URL

T = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    schema = f"qz_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_bridge_groups_stored_before_are_rescoped(url):
    old = Database(url, migrate=False)
    with old.engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    # Seed with the schema as it was then (reflected): the models already know later columns.
    from sqlalchemy import MetaData

    with old.engine.begin() as conn:
        meta = MetaData()
        meta.reflect(bind=conn)
        t = meta.tables
        at = T if conn.dialect.name == "postgresql" else T.astimezone(timezone.utc).replace(tzinfo=None)
        for gid, platform, source in (("wxg-1", "wechat", "activity"), ("wrkA", "aibot", "activity"),
                                      ("c1", "dingtalk", "ledger"), ("wechat:new", "wechat", "activity")):
            conn.execute(t["groups"].insert().values(
                id=gid, platform=platform, name=gid, created_at=at, first_seen_at=at, source=source, status="active",
                member_count=2, message_count=1, ritual_count=0, keep_count=0, temporary=False, protected=False,
                updated_at=at, merged_into="wxg-1" if gid == "wrkA" else None))
            conn.execute(t["memberships"].insert(), [{"group_id": gid, "person_id": p, "joined_at": at}
                                                     for p in ("wechat:a", "wechat:b")])
            conn.execute(t["messages"].insert().values(dedupe_key=f"k-{gid}", platform=platform, group_id=gid,
                                                       sender_id="wechat:a", sent_at=at, is_ritual=False))
        conn.execute(t["notices"].insert().values(person_id="owner", kind="warning", group_id="wxg-1", text="提醒",
                                                  urgent=False, due_at=at, created_at=at, status="pending"))
        conn.execute(t["outbox"].insert().values(created_at=at, channel="bridge", recipient="wxg-1",
                                                 kind="bridge_dissolve", status="pending", attempts=0,
                                                 payload={"type": "dissolve", "group_id": "wxg-1",
                                                          "instruction_id": "i1"}))
    with old.session() as s:
        audit.record(s, actor="system", action="warn", at=T, group_id="wxg-1", reason="长期无工作消息")
    old.dispose()

    db = Database(url)  # migrates to the head
    with db.session() as s:
        assert s.get(Group, "wxg-1") is None
        g = s.get(Group, "wechat:wxg-1")
        assert (g.platform, g.name, g.member_count, g.message_count) == ("wechat", "wxg-1", 2, 1)
        assert s.execute(select(Membership.person_id).where(Membership.group_id == "wechat:wxg-1")
                         .order_by(Membership.person_id)).scalars().all() == ["wechat:a", "wechat:b"]
        assert s.execute(select(Message.group_id).where(Message.dedupe_key == "k-wxg-1")).scalar_one() == (
            "wechat:wxg-1")
        assert s.execute(select(Notice.group_id)).scalar_one() == "wechat:wxg-1"
        assert s.execute(select(OutboxMessage.recipient)).scalar_one() == "wechat:wxg-1"
        assert s.get(Group, "wrkA").merged_into == "wechat:wxg-1"
        # WeCom groups, ledger rows and groups already scoped stay as they were
        assert s.get(Group, "wrkA").platform == "aibot" and s.get(Group, "c1") is not None
        assert s.get(Group, "wechat:new") is not None and s.get(Group, "wechat:wechat:new") is None
        assert audit.verify(s).ok
        assert s.execute(text("SELECT count(*) FROM memberships WHERE group_id = 'wxg-1'")).scalar_one() == 0
    db.dispose()
