"""Issue 15 end to end, on WeCom app groups and DingTalk scene groups: a cadre asks the bot for a
group through the platform's real inbound callback (WeCom: encrypted and signed; DingTalk: the
robot's timestamp+sign); the scheduled jobs create it on the fake platform over HTTP with the
person as owner and register it temporary; with no work message it is found dead, the owner is
warned, and after the grace period it is soft-dissolved on the platform (notice, members removed,
renamed ``[已解散]…``) with no person acting; the owner's 恢复 through the callback puts members
and name back; dead again, dissolved again, and after ``restore_days`` purged: the scene group
really disbanded, the WeCom app group (no disband) left emptied and renamed, the reason saying so.
The audit chain verifies and every connection the bot opened went to the fake's host.

State is checked (statuses, the fake's members and names, audit actions), not reply texts."""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.app import create_app
from bot.runtime import Runtime
from platforms.dingtalk.inbound import robot_sign
from scheduler import jobs
from storage import audit
from storage.models import AuditRecord, Group, PlatformRequest
from storage.people import import_people
from tests.bot.helpers import WeComSim
from tests.conftest import make_settings
from tests.fakes.fake_dingtalk import APP_KEY, APP_SECRET, FakeDingTalk
from tests.fakes.fake_wecom import FakeWeCom
from tests.lifecycle.helpers import NOW

NAME = "秋粮收购专班"
ASK = f"建群 {NAME} 成员:张三、李四 到期:2027年6月30日"
ROSTER = {"李主任": "owner1", "张三": "zhangsan", "李四": "lisi"}  # name → the person's account


@dataclass
class Case:
    """One platform: its fake, the settings pointing at it, how a person speaks to the bot, and
    how the fake's group looks (name, members, disbanded)."""
    platform: str
    fake: Any
    settings: Any
    say: Callable[[str, str], Any]  # (account, text) → the HTTP response
    chat: Callable[[str], tuple[str, set[str], bool]]  # chat id on the platform → (name, members, disbanded)
    account: Callable[[str], str]  # account → the stored person id
    address: tuple[str, int]
    sent: Callable[[], list[tuple[str, str]]]  # what the fake delivered: ("person", account) | ("group", chat id)


def _wecom_case(fake: FakeWeCom, db, clock, client_for) -> Case:
    settings = make_settings(database_url=db.url, wecom_api_base=fake.base_url)
    client = client_for(settings)
    sim = WeComSim(client, clock)
    n = iter(range(1, 10_000))

    def say(account, text):
        return sim.say(account, text, msg_id=f"wx{next(n)}")

    def chat(cid):
        c = fake.chats[cid]
        return c["name"], set(c["userlist"]), False

    def sent():
        return ([("person", u) for d in fake.delivered("message/send") for u in d.json["touser"].split("|")]
                + [("group", d.json["chatid"]) for d in fake.delivered("appchat/send")])

    host, port = fake._server.server_address[:2]
    return Case("wecom", fake, settings, say, chat, lambda a: a, (host, port), sent)


def _dingtalk_case(fake: FakeDingTalk, db, clock, client_for) -> Case:
    settings = make_settings(database_url=db.url, wecom_corp_id="", dingtalk_app_key=APP_KEY,
                             dingtalk_app_secret=APP_SECRET, dingtalk_api_base=fake.url,
                             dingtalk_oapi_base=fake.url, dingtalk_scene_template_id="tpl-1")
    client = client_for(settings)
    n = iter(range(1, 10_000))

    def say(account, text):
        ts = str(int(clock().timestamp() * 1000))
        data = {"msgId": f"dt{next(n)}", "msgtype": "text", "conversationType": "1",
                "conversationId": f"cidDirect-{account}", "senderStaffId": account, "senderNick": account,
                "robotCode": APP_KEY, "createAt": int(ts), "text": {"content": text}}
        return client.post("/dingtalk/robot", content=json.dumps(data, ensure_ascii=False).encode(),
                           headers={"timestamp": ts, "sign": robot_sign(ts, APP_SECRET),
                                    "Content-Type": "application/json"})

    def chat(cid):
        g = fake.groups[cid]
        return g.title, set(g.members), g.disbanded

    def sent():
        return [("group", m["group"]) if "group" in m else ("person", u) for m in fake.messages
                for u in (m.get("to") or [None])]

    host, port = fake._server.server_address[:2]
    return Case("dingtalk", fake, settings, say, chat, lambda a: f"dingtalk:{a}", (host, port), sent)


@pytest.fixture(params=["wecom", "dingtalk"])
def case(request, db, clock, tmp_path):
    clients = []

    def client_for(settings):
        rt = Runtime(settings, db=db, clock=clock)
        c = TestClient(create_app(runtime=rt, start_scheduler=False))
        c.__enter__()
        clients.append((c, rt))
        return c

    fake = (FakeWeCom() if request.param == "wecom" else FakeDingTalk()).start()
    try:
        built = (_wecom_case if request.param == "wecom" else _dingtalk_case)(fake, db, clock, client_for)
        built.runtime = clients[0][1]
        # the roster: each person with an account on this platform only
        column = "企业微信账号" if request.param == "wecom" else "钉钉userid"
        path = tmp_path / "花名册.csv"
        path.write_text("姓名,单位,职务," + column + "\n"
                        + "".join(f"{name},城关镇,干部,{acc}\n" for name, acc in ROSTER.items()), encoding="utf-8")
        with db.session() as s:
            result = import_people(s, path, now=clock(), settings=built.settings)
            assert not result.errors, result.errors
        yield built
    finally:
        for c, _ in clients:
            c.__exit__(None, None, None)
        fake.stop()


@pytest.fixture
def connections(monkeypatch):
    """Every (host, port) a socket connected to while the test ran."""
    seen: list = []
    real = socket.socket.connect

    def recording(sock, address):
        seen.append(address)
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    return seen


def _jobs(rt) -> None:
    """What the scheduler runs (scheduler/jobs.py JOBS), in an order a minute could run them."""
    jobs.platform_requests(rt)
    jobs.refresh_findings(rt)
    jobs.sweep(rt)
    jobs.deadlines(rt)
    jobs.advance_pending(rt)
    jobs.deliver_notices(rt)
    jobs.dispatch_outbox(rt)


def _status(db, gid) -> tuple[str, str | None]:
    with db.session() as s:
        g = s.get(Group, gid)
        return g.status, g.status_reason


def _trail(db, gid) -> list[tuple[str, str]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(select(AuditRecord.action, AuditRecord.actor)
                                            .where(AuditRecord.group_id == gid).order_by(AuditRecord.id))]


def _die(case, clock, gid, idle_days: int) -> None:
    """No work message for ``idle_days``; then the jobs run every day: the owner is warned (the
    warning goes out in working time), and once the grace period after its delivery has passed
    the group is dissolved on the platform."""
    db, rt, settings = case.runtime.db, case.runtime, case.settings
    clock.advance(days=idle_days)
    sent = None
    for _ in range(settings.grace_days + 15):
        _jobs(rt)
        with db.session() as s:
            g = s.get(Group, gid)
            status, sent = g.status, g.warning_sent_at or sent
        if status == "dissolved":
            break
        assert status in ("active", "warned"), status
        clock.advance(days=1)
    assert status == "dissolved", status
    assert sent is not None and clock() - sent >= timedelta(days=settings.grace_days)  # the full grace


def test_a_group_the_bot_created_dies_is_dissolved_restored_and_purged(case, clock, connections):
    rt, db, fake = case.runtime, case.runtime.db, case.fake
    owner = case.account("owner1")
    everyone = {"owner1", "zhangsan", "lisi"}
    clock.set(NOW)

    # 1. the cadre asks through the platform's callback
    r = case.say("owner1", ASK)
    assert r.status_code == 200
    with db.session() as s:
        [req] = s.execute(select(PlatformRequest)).scalars().all()
        assert (req.platform, req.person_id, req.status) == (case.platform, owner, "pending")

    # 2. the scheduler's platform_requests job creates it on the fake, the person its owner
    clock.advance(minutes=1)
    assert jobs.platform_requests(rt)["done"] == 1
    with db.session() as s:
        [req] = s.execute(select(PlatformRequest)).scalars().all()
        gid = req.result
        g = s.get(Group, gid)
        assert (g.platform, g.owner_id, g.temporary, g.name) == (case.platform, owner, True, NAME)
        assert g.status == "active" and g.registered_at is not None
        cid = gid.split(":", 1)[1] if case.platform == "dingtalk" else gid
    assert case.chat(cid) == (NAME, everyone, False)
    if case.platform == "wecom":
        assert fake.chats[cid]["owner"] == "owner1"
    else:
        assert fake.groups[cid].owner == "owner1"
    jobs.deliver_notices(rt)
    jobs.dispatch_outbox(rt)
    assert ("person", "owner1") in case.sent()  # told the group is there, on the fake

    # 3. dead: warned, then soft-dissolved on the platform with no person acting
    told = len(case.sent())
    _die(case, clock, gid, case.settings.zombie_days + 1)
    assert _status(db, gid)[0] == "dissolved"
    assert case.chat(cid) == (f"[已解散]{NAME}", {"owner1"}, False)
    after = case.sent()[told:]
    assert ("person", "owner1") in after and ("group", cid) in after  # the warning, the final notice

    # 4. the owner restores it within the window, through the callback
    clock.advance(days=3)
    assert case.say("owner1", f"恢复 {NAME}").status_code == 200
    _jobs(rt)
    assert _status(db, gid)[0] == "active"
    assert case.chat(cid) == (NAME, everyone, False)

    # 5. dead again (a restored group is kept for keep_days first), dissolved again, then purged
    # after restore_days
    _die(case, clock, gid, case.settings.keep_days + 1)
    assert _status(db, gid)[0] == "dissolved"
    assert case.chat(cid) == (f"[已解散]{NAME}", {"owner1"}, False)
    clock.advance(days=case.settings.restore_days + 1)
    _jobs(rt)
    _jobs(rt)
    status, reason = _status(db, gid)
    assert status == "purged"
    if case.platform == "dingtalk":
        assert case.chat(cid)[2] is True  # really disbanded
        assert fake.called("/v1.0/im/chat/scenegroup/disband")[-1].json == {"openConversationId": cid}
    else:
        assert case.chat(cid) == (f"[已解散]{NAME}", {"owner1"}, False)  # no disband: emptied and renamed
        assert "平台不能解散此群，群已清空成员并改名保留" in reason, reason
    dissolution = ["warn", "warning_sent", "dissolve_intent", "dissolve"]
    purge = ["purge_intent", "purge"] if case.platform == "dingtalk" else ["purge"]
    assert [a for a, _ in _trail(db, gid)] == ["create_group", *dissolution, "restore", "restore_done",
                                               *dissolution, *purge]
    # no person acted but the owner asking for the group and its restore
    assert {a for a, actor in _trail(db, gid) if actor == owner} == {"create_group", "restore"}

    # 6. the audit chain verifies; every connection went to the fake (or the test database)
    with db.session() as s:
        assert audit.verify(s).ok
    to_fake = [a for a in connections if isinstance(a, tuple) and tuple(a[:2]) == case.address]
    outside = [a for a in connections if isinstance(a, tuple) and tuple(a[:2]) != case.address
               and a[1] != _database_port(db)]
    assert to_fake and outside == []


def _database_port(db) -> int | None:
    return db.engine.url.port or 5432 if db.dialect == "postgresql" else None
