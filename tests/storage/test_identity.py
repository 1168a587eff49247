"""Identity (storage/identity.py): one person, one account per platform; linking never takes an
account from its person; events from a linked account are that person's; migration 0008."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import MetaData, create_engine, func, inspect, select, text
from typer.testing import CliRunner

from governance.events import Event
from handlers.dispatch import handle_event
from storage import audit, identity
from storage import repo as repo_module
from storage.db import Database, alembic_config
from storage.models import AuditRecord, Group, Membership, Person, PersonAccount
from tests.conftest import PG_SKIP, PG_URL

T = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)


def person(s, pid, **kw):
    s.add(Person(id=pid, role=kw.pop("role", "cadre"), created_at=T, **kw))
    s.flush()


def ev(sender, platform="wecom", *, text="hello", group=None, members=(), kind="message", n=[0]):
    n[0] += 1
    return Event(platform=platform, kind=kind, sender_id=sender, at=T, text=text, group_id=group,
                 msg_id=f"id{n[0]}", member_ids=tuple(members))


# --- link --------------------------------------------------------------------------------------------------
def test_link_records_the_account_and_is_audited(db):
    with db.session() as s:
        person(s, "zhangsan", name="张三")
        assert identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="cli") is True
        assert identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="cli") is False  # already
        assert identity.accounts_for(s, "zhangsan") == {"wechat": "zs"}
        assert identity.person_for(s, "wechat", "zs") == "zhangsan"
        assert identity.person_for(s, "wechat", "nobody") is None
        rec = s.execute(select(AuditRecord).where(AuditRecord.action == "link_account")).scalars().all()
        assert len(rec) == 1 and rec[0].data["account_id"] == "zs" and "张三" in rec[0].reason
        assert audit.verify(s).ok


def test_a_stranger_never_takes_an_account_that_is_someone_elses(db):
    with db.session() as s:
        person(s, "zhangsan", name="张三")
        person(s, "lisi", name="李四")
        identity.link(s, "zhangsan", "dingtalk", "dd1", at=T, actor="cli")
        # linked to another person
        with pytest.raises(identity.IdentityConflict) as e:
            identity.link(s, "lisi", "dingtalk", "dd1", at=T, actor="cli")
        assert "已属于张三（zhangsan）" in str(e.value)
        # a WeCom userid is its person's own account, even without an account row
        with pytest.raises(identity.IdentityConflict) as e:
            identity.link(s, "zhangsan", "wecom", "lisi", at=T, actor="cli")
        assert "李四" in str(e.value)
        # the person's own account (its id) is never replaced
        with pytest.raises(identity.IdentityConflict) as e:
            identity.link(s, "zhangsan", "wecom", "zs-other", at=T, actor="cli")
        assert "一个平台只有一个账号" in str(e.value)
        assert identity.person_for(s, "dingtalk", "dd1") == "zhangsan"
        assert s.execute(select(func.count()).select_from(AuditRecord)).scalar_one() == 1


def test_a_bridge_users_own_unclaimed_person_moves_to_the_linked_person(db):
    with db.session() as s:
        person(s, "zhangsan", name="张三")
        person(s, "wechat:zs")  # created by its events: no name, no role
        s.add(Group(id="wechat:g1", platform="wechat", name="g1", created_at=T, first_seen_at=T, member_count=1))
        s.add(Membership(group_id="wechat:g1", person_id="wechat:zs", joined_at=T))
        s.add(PersonAccount(platform="wechat", account_id="zs", person_id="wechat:zs", linked_at=T))
        s.flush()
        assert identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="import")
        assert identity.person_for(s, "wechat", "zs") == "zhangsan"
        assert s.execute(select(Membership.person_id)).scalars().all() == ["zhangsan"]
        assert s.get(Person, "wechat:zs") is not None  # its past stays as written
        # a person that was given a role is claimed: its account stays its own
        person(s, "wechat:ls", role="unit_admin")
        with pytest.raises(identity.IdentityConflict):
            identity.link(s, "zhangsan", "wechat", "ls", at=T, actor="import")


def test_a_linked_account_is_replaced_when_the_roster_corrects_it(db):
    with db.session() as s:
        person(s, "zhangsan", name="张三")
        identity.link(s, "zhangsan", "dingtalk", "old", at=T, actor="import")
        identity.link(s, "zhangsan", "dingtalk", "new", at=T, actor="import")
        assert identity.accounts_for(s, "zhangsan") == {"dingtalk": "new"}
        assert identity.person_for(s, "dingtalk", "old") is None


# --- the ingest batch --------------------------------------------------------------------------------------
def test_resolve_senders_attributes_linked_accounts_to_their_person(db):
    with db.session() as s:
        person(s, "zhangsan", name="张三")
        person(s, "lisi")
        identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="cli")
    events = [ev("wechat:zs", "wechat", group="wechat:g1", members=("wechat:zs", "wechat:x")),
              ev("lisi"), ev("zhangsan", "aibot"), ev("wechat:x", "wechat")]
    with db.session() as s:
        got = identity.resolve_senders(s, events)
    assert [e.sender_id for e in got] == ["zhangsan", "lisi", "zhangsan", "wechat:x"]
    assert got[0].member_ids == ("zhangsan", "wechat:x")
    assert got[1] is events[1] and got[0].text == "hello" and got[0].platform == "wechat"
    # a WeCom id equal to the bridge id is not the bridge account
    with db.session() as s:
        assert identity.resolve_senders(s, [ev("zs")])[0].sender_id == "zs"


def test_resolve_senders_through_the_one_statement_connection(db):
    if db.dialect != "postgresql":
        pytest.skip("the autocommit psycopg connection is PostgreSQL's")
    with db.session() as s:
        person(s, "zhangsan")
        identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="cli")
    conn = db.ingest_connection()
    try:
        r = identity.resolve_batch(conn, [ev("wechat:zs", "wechat"), ev("newbie")])
        assert [e.sender_id for e in r.events] == ["zhangsan", "newbie"]
        with db.session() as s:
            person(s, "newbie")
        identity.record_accounts(conn, r.unrecorded)
    finally:
        db.drop_ingest_connection()
    with db.session() as s:
        assert identity.person_for(s, "wecom", "newbie") == "newbie"
        assert s.get(PersonAccount, {"platform": "wecom", "account_id": "newbie"}) is not None


def test_new_senders_get_their_own_account_and_nobody_elses(db):
    with db.session() as s:
        person(s, "dd_sq", name="孫七")  # a roster person known by DingTalk only
        identity.link(s, "dd_sq", "dingtalk", "dd_sq", at=T, actor="import")
    events = [ev("wang"), ev("wang"), ev("wechat:w", "wechat"), ev("dd_sq"), ev("ghost")]
    with db.session() as s:
        r = identity.resolve_batch(s, events)
        assert [(u["platform"], u["account_id"]) for u in r.unrecorded] == [
            ("wecom", "wang"), ("wechat", "w"), ("wecom", "dd_sq"), ("wecom", "ghost")]
        for pid in ("wang", "wechat:w"):
            person(s, pid)
        identity.record_accounts(s, r.unrecorded)  # "ghost" has no person row: nothing for it
    with db.session() as s:
        rows = s.execute(select(PersonAccount.platform, PersonAccount.account_id, PersonAccount.person_id)
                         .order_by(PersonAccount.person_id)).all()
        assert [tuple(x) for x in rows] == [("dingtalk", "dd_sq", "dd_sq"), ("wecom", "wang", "wang"),
                                            ("wechat", "w", "wechat:w")]
        assert identity.resolve_batch(s, events[:3]).unrecorded == []
        identity.record_accounts(s, [])


def test_resolve_senders_cost_without_links(db, capsys):
    """Called at the start of every ingest batch: 128 events, their senders known, no links."""
    with db.session() as s:
        for i in range(64):
            person(s, f"u{i}")
            s.add(PersonAccount(platform="wecom", account_id=f"u{i}", person_id=f"u{i}", linked_at=T))
    events = [ev(f"u{i % 64}", group="g1") for i in range(128)]
    with db.session() as s:
        for _ in range(20):
            assert identity.resolve_senders(s, events) is events
        rounds = []
        for _ in range(5):  # the best of five rounds: the machine is shared
            t0 = time.perf_counter()
            for _ in range(100):
                identity.resolve_senders(s, events)
            rounds.append((time.perf_counter() - t0) / 100 * 1e6)
        us = min(rounds)
    with capsys.disabled():
        print(f"\nresolve_senders, 128 events without links, {db.dialect}: {us:.0f} µs per batch "
              f"(rounds {', '.join(f'{r:.0f}' for r in rounds)})")
    assert us < 5000


def test_an_event_from_a_linked_account_has_its_persons_role(runtime, db):
    """Roles apply once: 张三 is 纪委监委 by his WeCom id; his personal WeChat (through the bridge),
    linked to him, gets the dashboard link too; an unlinked WeChat id does not."""
    with db.session() as s:
        person(s, "zhangsan", name="张三", role="commission")
        identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="cli")

    def say(sender):
        with db.session() as s:
            (e,) = identity.resolve_senders(s, [ev(sender, "wechat", text="看板")])
            return "\n".join(r.text for r in handle_event(s, e, runtime.services))

    assert "/dashboard/login/" in say("wechat:zs")
    assert "只向纪委监委和管理员开放" in say("wechat:stranger")


# --- routing -----------------------------------------------------------------------------------------------
def test_route_for_person_prefers_the_app_then_the_ai_bot_then_the_bridge(db):
    with db.session() as s:
        person(s, "zhangsan")
        identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="cli")
        s.add(PersonAccount(platform="wecom", account_id="zhangsan", person_id="zhangsan", linked_at=T))
        person(s, "wechat:w")  # no account row yet: its own
        person(s, "dingtalk:d")
        s.add(PersonAccount(platform="dingtalk", account_id="d", person_id="dingtalk:d", linked_at=T))
        s.flush()
        r = identity.route_for_person
        assert r(s, "zhangsan", ["bridge", "aibot", "wecom"]) == ("wecom", "zhangsan")
        assert r(s, "zhangsan", ["bridge", "aibot"]) == ("aibot", "zhangsan")
        assert r(s, "zhangsan", ["bridge"]) == ("bridge", "wechat:zs")
        assert r(s, "wechat:w", ["wecom", "aibot", "bridge"]) == ("bridge", "wechat:w")
        assert r(s, "wechat:w", ["wecom", "aibot"]) is None
        assert r(s, "dingtalk:d", ["wecom", "aibot", "bridge"]) is None  # its adapter comes later
        assert r(s, "nobody", ["wecom"]) is None
        assert r(s, "zhangsan", ["local"]) == ("local", "zhangsan")


# --- migration 0008 ----------------------------------------------------------------------------------------
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


def _at(conn):
    return T if conn.dialect.name == "postgresql" else T.replace(tzinfo=None)


def test_0008_links_every_existing_person_and_the_audit_chain_still_verifies(url, monkeypatch):
    old = Database(url, migrate=False)
    cfg = alembic_config(url)
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
    with old.engine.begin() as conn:
        meta = MetaData()
        meta.reflect(bind=conn)
        t = meta.tables
        at = _at(conn)
        for pid, ding, feishu in (("zhangsan", "dd_zs", None), ("lisi", None, "ou_ls"), ("dd_sq", "dd_sq", None),
                                  ("wechat:zs", None, None), ("wangwu", "dd_zs", None), ("local1", None, None)):
            conn.execute(t["persons"].insert().values(id=pid, role="cadre", created_at=at, dingtalk_id=ding,
                                                      feishu_id=feishu))
        for gid, platform in (("c1", "dingtalk"), ("w1", "wecom")):
            conn.execute(t["groups"].insert().values(
                id=gid, platform=platform, name=gid, created_at=at, first_seen_at=at, source="ledger", status="active",
                member_count=2, message_count=0, ritual_count=0, keep_count=0, temporary=False, protected=False,
                owner_id="dd_zs"))
            conn.execute(t["memberships"].insert(), [{"group_id": gid, "person_id": p, "joined_at": at}
                                                     for p in ("dd_zs", "dd_sq")])
    with old.session() as s:
        for i in range(3):
            audit.record(s, actor="cli", action="role_change", at=T + timedelta(minutes=i), reason="干部 → 管理员",
                         data={"person_id": "zhangsan"})
    old.dispose()

    db = Database(url)  # migrates to the head
    with db.session() as s:
        rows = {tuple(r) for r in s.execute(select(PersonAccount.platform, PersonAccount.account_id,
                                                   PersonAccount.person_id))}
        # two persons claimed dd_zs: the first by id keeps it
        assert rows == {("wecom", "zhangsan", "zhangsan"), ("dingtalk", "dd_zs", "wangwu"),
                        ("wecom", "lisi", "lisi"), ("feishu", "ou_ls", "lisi"), ("dingtalk", "dd_sq", "dd_sq"),
                        ("wechat", "zs", "wechat:zs"), ("wecom", "wangwu", "wangwu"), ("wecom", "local1", "local1")}
        # the DingTalk ledger group names the person; the WeCom group is not touched
        members = {(m.group_id, m.person_id) for m in s.execute(select(Membership)).scalars()}
        assert members == {("c1", "wangwu"), ("c1", "dd_sq"), ("w1", "dd_zs"), ("w1", "dd_sq")}
        assert s.get(Group, "c1").owner_id == "wangwu" and s.get(Group, "w1").owner_id == "dd_zs"
        assert audit.verify(s).ok and audit.verify(s).checked == 3
        assert [p.id for p in s.execute(select(Person).order_by(Person.id)).scalars()] == sorted(
            ["zhangsan", "lisi", "dd_sq", "wechat:zs", "wangwu", "local1"])
    # ``qunzhi audit verify`` on the migrated database
    from bot.cli import app
    from config.settings import get_settings

    monkeypatch.setenv("QUNZHI_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["audit", "verify"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    # and back: the roster columns come back from the accounts
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    assert "person_accounts" not in inspect(db.engine).get_table_names()
    with db.engine.connect() as conn:
        got = dict(conn.execute(text("SELECT id, dingtalk_id FROM persons WHERE dingtalk_id IS NOT NULL")).all())
    assert got == {"wangwu": "dd_zs", "dd_sq": "dd_sq"}
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    db.dispose()


def test_roles_set_on_a_linked_account_is_the_persons_role(db, monkeypatch):
    from bot.cli import app
    from config.settings import get_settings

    with db.session() as s:
        person(s, "zhangsan", name="张三")
        identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="cli")
    monkeypatch.setenv("QUNZHI_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["roles", "set", "wechat:zs", "admin"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    assert "wechat:zs 是 张三（zhangsan）的账号" in r.output
    with db.session() as s:
        assert s.get(Person, "zhangsan").role == "admin" and s.get(Person, "wechat:zs") is None
        assert audit.verify(s).ok


def test_account_ids_give_each_person_its_id_on_a_platform(db):
    with db.session() as s:
        person(s, "dingtalk:dd", name="孫七")
        s.add(PersonAccount(platform="dingtalk", account_id="dd", person_id="dingtalk:dd", linked_at=T))
        s.flush()
        identity.link(s, "dingtalk:dd", "wecom", "sunqi", at=T, actor="import")
        person(s, "lisi")  # no account row yet
        person(s, "wechat:w")
        got = identity.account_ids(s, ["dingtalk:dd", "lisi", "wechat:w", "nobody"], "wecom")
        assert got == {"dingtalk:dd": "sunqi", "lisi": "lisi"}
        assert identity.account_ids(s, ["wechat:w", "lisi"], "wechat") == {"wechat:w": "w"}
        assert identity.account_ids(s, [], "wecom") == {}


def test_every_ingest_path_stores_a_linked_account_as_its_person(db):
    """The bulk store (on PostgreSQL the one statement, on SQLite the session path) and a store in
    a caller's session attribute a linked WeChat account's message to its person."""
    from storage import ingest
    from storage.ingest.batch import Item
    from storage.models import Message

    with db.session() as s:
        person(s, "zhangsan", name="张三")
        identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="import")
    first = ev("wechat:zs", "wechat", group="wechat:g1")
    ingest.store(db, [Item(first, key=first.dedupe_key)], store_text=False)
    second = ev("wechat:zs", "wechat", group="wechat:g1")
    with db.session() as s:
        ingest.store(s, [Item(second, key=second.dedupe_key)], store_text=False)
    with db.session() as s:
        assert [m.sender_id for m in s.execute(select(Message).order_by(Message.id)).scalars()] == ["zhangsan"] * 2
        assert s.get(Membership, ("wechat:g1", "zhangsan")) is not None
        assert s.get(Person, "wechat:zs") is None  # no second person for the same cadre


def test_a_sender_first_named_as_a_member_still_gets_its_account(db):
    joined = ev("wang", group="g9", kind="member_joined", members=("wang", "li"))
    said = ev("li", group="g9")
    with db.session() as s:
        r = identity.resolve_batch(s, [joined, said])
    assert [(u["platform"], u["account_id"]) for u in r.unrecorded] == [("wecom", "wang"), ("wecom", "li")]


def test_a_batch_needs_no_statement_and_a_link_is_seen(db, monkeypatch):
    with db.session() as s:
        person(s, "wang")
        person(s, "zhangsan")
        identity.record_accounts(s, identity.resolve_batch(s, [ev("wang")]).unrecorded)
    statements = []
    real = repo_module.driver_execute
    monkeypatch.setattr(repo_module, "driver_execute", lambda *a, **k: statements.append(a[1]) or real(*a, **k))
    with db.session() as s:
        r = identity.resolve_batch(s, [ev("wang"), ev("wang")])
    assert r.events[0].sender_id == "wang" and r.unrecorded == [] and statements == []  # nothing asked
    with db.session() as s:  # a link made in this process is seen at once
        identity.link(s, "zhangsan", "wechat", "zs", at=T, actor="cli")
    with db.session() as s:
        assert identity.resolve_batch(s, [ev("wechat:zs", "wechat")]).events[0].sender_id == "zhangsan"
    assert len(statements) >= 1  # the links were read again


def test_a_link_made_by_another_process_is_seen_within_the_ttl(db, monkeypatch):
    with db.session() as s:
        person(s, "zhangsan")
        identity.resolve_batch(s, [ev("wechat:zs", "wechat")])  # this process reads the links now
        s.add(PersonAccount(platform="wechat", account_id="zs", person_id="zhangsan", linked_at=T))  # "elsewhere"
    with db.session() as s:
        assert identity.resolve_batch(s, [ev("wechat:zs", "wechat")]).events[0].sender_id == "wechat:zs"
    clock = [identity.time.monotonic() + identity.LINKS_TTL + 1]
    monkeypatch.setattr(identity.time, "monotonic", lambda: clock[0])
    with db.session() as s:
        assert identity.resolve_batch(s, [ev("wechat:zs", "wechat")]).events[0].sender_id == "zhangsan"
