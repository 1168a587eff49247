"""A deployment with one platform works end to end: every message leaves through the recipient's
own platform (the scheduler's jobs, the real routes, the real senders, fakes on localhost)."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from governance.events import Reply
from scheduler import jobs
from storage.models import Group, OutboxMessage
from tests.bot.helpers import aibot_post
from tests.conftest import make_settings
from tests.lifecycle.helpers import group, person

NO_WECOM = dict(wecom_corp_id="", wecom_token="", wecom_aes_key="", wecom_secret="")
NO_AIBOT = dict(aibot_token="", aibot_aes_key="")


def _runtime(db, clock, **settings):
    from bot.runtime import Runtime

    return Runtime(make_settings(database_url=db.url, **settings), db=db, clock=clock)


@pytest.fixture
def app_client():
    from fastapi.testclient import TestClient

    from bot.app import create_app

    clients = []

    def make(rt):
        c = TestClient(create_app(runtime=rt, start_scheduler=False))
        clients.append(c.__enter__())
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _outbox(db):
    with db.session() as s:
        return s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()


def test_bridge_only_deployment_warns_the_owner_and_dissolves_a_zombie_group(db, clock, fake_bridge, app_client):
    rt = _runtime(db, clock, bridge_url=fake_bridge.url, **NO_WECOM, **NO_AIBOT)
    client = app_client(rt)
    with db.session() as s:
        person(s, "wechat:owner", name="李主任")
        group(s, "wechat:wxg-1", "秋粮收购群", platform="wechat", owner="wechat:owner",
              members=("wechat:owner", "wechat:m1", "wechat:m2"))

    jobs.sweep(rt)
    jobs.deliver_notices(rt)
    [warning] = _outbox(db)
    assert (warning.channel, warning.recipient) == ("bridge", "wechat:owner")
    assert jobs.dispatch_outbox(rt) == 1
    [said] = fake_bridge.carried_out
    assert said["type"] == "say" and said["user_id"] == "owner" and "秋粮收购群" in said["text"]
    with db.session() as s:
        g = s.get(Group, "wechat:wxg-1")
        assert g.status == "warned" and g.warning_sent_at == clock()  # delivered: the grace starts

    clock.advance(days=rt.settings.grace_days, minutes=1)
    jobs.deadlines(rt)
    jobs.dispatch_outbox(rt)
    [dissolve] = fake_bridge.of_type("dissolve")
    assert (dissolve["group_id"], dissolve["platform"]) == ("wxg-1", "wechat")
    with db.session() as s:
        g = s.get(Group, "wechat:wxg-1")
        assert g.status == "dissolving" and dissolve["instruction_id"] == g.dissolve_state["instruction_id"]

    [answer] = fake_bridge.confirm_dissolutions(
        lambda body, headers: client.post("/bridge/events", content=body, headers=headers), at=clock())
    assert answer.status_code == 200 and answer.json()["ok"] is True
    with db.session() as s:
        assert s.get(Group, "wechat:wxg-1").status == "dissolved"
    jobs.deliver_notices(rt)
    jobs.dispatch_outbox(rt)
    told = [i for i in fake_bridge.of_type("say") if "已解散" in i["text"]]
    assert [i["user_id"] for i in told] == ["owner"]
    assert {r.status for r in _outbox(db)} == {"sent"} and fake_bridge.refused == []


def test_aibot_only_deployment_answers_through_the_response_url_and_reports_the_rest(
        db, clock, fake_aibot, app_client, monkeypatch):
    rt = _runtime(db, clock, bridge_secret="", **NO_WECOM)
    client = app_client(rt)

    def process(event):  # a command answering with text and two cards (cards go through the outbox)
        from storage import repo

        with rt.db.session() as s:
            repo.mark_processed(s, event.dedupe_key, event.at)
        return [Reply("请确认"), Reply("卡片", card={"card_type": "button_interaction", "task_id": "keep:1"}),
                Reply("再一张", card={"card_type": "button_interaction", "task_id": "keep:2"})]

    monkeypatch.setattr(rt, "process", process)
    rt.group_commit = False  # the spy is the per-event path
    url = fake_aibot.issue()
    msg = {"msgid": "MSG1", "aibotid": "AIBOTID", "chatid": "wrkG1", "chattype": "group", "from": {"userid": "zhangsan"},
           "response_url": url, "msgtype": "text", "text": {"content": "@群治助手 我的群"}}
    assert aibot_post(client, clock, msg, nonce="n1").status_code == 200
    with db.session() as s:  # and a warning to a person: the AI bot cannot message anyone unprompted
        person(s, "owner1", name="李主任")
        group(s, "wrkG2", "防汛群", platform="aibot", owner="owner1")
    jobs.sweep(rt)
    jobs.deliver_notices(rt)

    assert jobs.dispatch_outbox(rt) == 3
    [card] = fake_aibot.delivered
    assert card.json == {"msgtype": "template_card",
                         "template_card": {"card_type": "button_interaction", "task_id": "keep:1"}}
    rows = {(r.recipient, r.kind): r for r in _outbox(db)}
    assert [r.status for r in _outbox(db)] == ["sent", "unreachable", "unreachable"]
    assert "群聊" in [r for r in _outbox(db)][1].last_error
    assert rows[("owner1", "warning")].channel == "user" and "自建应用" in rows[("owner1", "warning")].last_error
    d = jobs._dispatchers[id(rt)]
    assert d.stats.unreachable == 2 and d.stats.sent == 1
    with db.session() as s:
        assert s.get(Group, "wrkG2").warning_sent_at is None  # never delivered: no grace started
    assert jobs.dispatch_outbox(rt) == 0  # nothing left pending


def test_notices_choose_the_channel_of_the_person(db, clock):
    from storage.notices import deliver_due_notices
    from storage.outbox import notify, person_channel
    from governance.worktime import WorkTime

    assert person_channel("zhangsan") == "user" and person_channel("wechat:zhangsan") == "bridge"
    assert person_channel("qq:123:4") == "bridge"
    settings = make_settings()
    with db.session() as s:
        for pid in ("zhangsan", "wechat:li"):
            notify(s, person_id=pid, kind="expiry", text="提醒", at=clock())
        deliver_due_notices(s, now=clock(), budget=5, wt=WorkTime.from_settings(settings))
    assert sorted((r.recipient, r.channel) for r in _outbox(db)) == [("wechat:li", "bridge"), ("zhangsan", "user")]
    assert json.dumps(_outbox(db)[0].payload, ensure_ascii=False).count("提醒") == 1


def test_a_wecom_person_with_a_linked_wechat_account_is_reached_through_the_bridge(db, clock, fake_bridge):
    """A bridge-only deployment whose roster linked a WeCom userid to a personal WeChat account:
    the notice addressed to the person leaves through the bridge, to that account."""
    from storage import identity

    rt = _runtime(db, clock, bridge_url=fake_bridge.url, **NO_WECOM, **NO_AIBOT)
    with db.session() as s:
        person(s, "zhangsan", name="张三")
        identity.link(s, "zhangsan", "wechat", "zs-wx", at=clock(), actor="admin")
        group(s, "wechat:wxg-2", "防火巡查群", platform="wechat", owner="zhangsan",
              members=("zhangsan", "wechat:m1", "wechat:m2"))
    jobs.sweep(rt)
    jobs.deliver_notices(rt)
    [warning] = _outbox(db)
    assert (warning.channel, warning.recipient) == ("user", "zhangsan")
    assert jobs.dispatch_outbox(rt) == 1
    [said] = fake_bridge.carried_out
    assert said["type"] == "say" and said["user_id"] == "zs-wx" and "防火巡查群" in said["text"]
    with db.session() as s:
        assert s.get(OutboxMessage, warning.id).status == "sent"
        assert s.get(Group, "wechat:wxg-2").warning_sent_at == clock()  # delivered: the grace starts
