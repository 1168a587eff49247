"""建群 end to end against the fake WeCom (appchat/create over HTTP): the command writes a request in
its transaction, the scheduler creates the group outside it and registers it; the failure cases
(platform refuses, platform down, process killed mid-call, unknown member, no platform that can
create) leave nothing registered half."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from governance.events import Event
from handlers.dispatch import handle_event
from handlers.registry import by_intent
from platforms.wecom.sender import WeComSender
from scheduler.platform_work import run_requests
from storage import audit, creation, identity, repo
from storage.models import Group, Notice, PlatformRequest
from tests.lifecycle.helpers import NOW, notices, person, say, seed_people

TEXT = "建群 秋粮收购专班 成员:张三、李四、王五 到期:12月31日"


@pytest.fixture
def wecom(fake_wecom, runtime):
    settings = runtime.settings.model_copy(update={"wecom_api_base": fake_wecom.base_url})
    with runtime.db.session() as s:
        seed_people(s)
        person(s, "zhangsan", name="张三")
        person(s, "lisi", name="李四")
        person(s, "wangwu", name="王五")
    return fake_wecom, settings, {"wecom": WeComSender(settings)}


def _groups(db) -> list[Group]:
    with db.session() as s:
        return list(s.execute(select(Group)).scalars())


def _requests(db) -> list[tuple[str, str | None]]:
    with db.session() as s:
        return [(r.status, r.result) for r in s.execute(select(PlatformRequest).order_by(PlatformRequest.id)).scalars()]


def test_the_command_is_registered_as_create():
    cmd = by_intent("create")
    assert cmd is not None and "建群" in cmd.keywords


def test_create_group_on_wecom_registers_it_when_the_platform_answers(runtime, wecom):
    fake, settings, senders = wecom
    [reply] = say(runtime, "owner1", TEXT, NOW)
    assert reply == ("好的，正在企业微信上建群“秋粮收购专班”（您是群主；成员：张三、李四、王五；12月31日到期）。"
                     "建好后我会告诉您；任务结束后机器人会先提醒，再自动解散这个群。")
    assert _groups(runtime.db) == [] and not fake.calls  # nothing on the platform inside the chat event
    assert run_requests(runtime.db, NOW + timedelta(minutes=1), settings, senders)["done"] == 1
    [call] = fake.calls_to("appchat/create")
    assert call.json["owner"] == "owner1" and call.json["name"] == "秋粮收购专班"
    assert call.json["userlist"] == ["owner1", "zhangsan", "lisi", "wangwu"]
    chat_id = call.json["chatid"]
    with runtime.db.session() as s:
        g = s.get(Group, chat_id)
        assert (g.platform, g.owner_id, g.temporary, g.expires_at, g.category, g.activity_source) == (
            "wecom", "owner1", True, date(2026, 12, 31), "临时群", "mentions")
        assert g.registered_at is not None
        assert sorted(repo.member_ids(s, chat_id)) == ["lisi", "owner1", "wangwu", "zhangsan"]
        [n] = notices(s, "group_created")
        assert n.person_id == "owner1" and "自动解散" in n.text and "12月31日到期" in n.text
        assert [r.action for r in s.execute(select(audit.AuditRecord).order_by(audit.AuditRecord.id)).scalars()
                ][-2:] == ["create_request", "create_group"]
        assert audit.verify(s).ok
    assert _requests(runtime.db) == [("done", chat_id)]
    # nothing more: the request is done
    assert run_requests(runtime.db, NOW + timedelta(minutes=2), settings, senders)["done"] == 0
    assert len(fake.calls_to("appchat/create")) == 1


def test_platform_refuses_the_person_is_told_and_nothing_is_registered(runtime, wecom):
    fake, settings, senders = wecom
    say(runtime, "owner1", TEXT, NOW)
    fake.fail_next(1, 60011, "no privilege to access/modify contact/party/agent")
    out = run_requests(runtime.db, NOW + timedelta(minutes=1), settings, senders)
    assert out["failed"] == 1
    assert _groups(runtime.db) == []
    assert _requests(runtime.db) == [("failed", None)]
    with runtime.db.session() as s:
        [n] = notices(s, "group_create_failed")
        assert n.person_id == "owner1" and n.text.startswith("没能建群“秋粮收购专班”：平台拒绝建群")
        assert n.text.endswith("没有登记任何群，可以稍后再发一次“建群”。")


def test_platform_down_retries_then_creates(runtime, wecom):
    fake, settings, senders = wecom
    say(runtime, "owner1", TEXT, NOW)
    fake.http_status_next(1, 503)
    assert run_requests(runtime.db, NOW + timedelta(minutes=1), settings, senders)["retry"] == 1
    assert _groups(runtime.db) == [] and _requests(runtime.db) == [("pending", None)]
    assert run_requests(runtime.db, NOW + timedelta(minutes=2), settings, senders)["done"] == 0  # backing off
    assert run_requests(runtime.db, NOW + timedelta(minutes=4), settings, senders)["done"] == 1
    assert len(_groups(runtime.db)) == 1


def test_a_process_killed_while_asking_the_platform_never_creates_twice(runtime, wecom):
    fake, settings, senders = wecom
    say(runtime, "owner1", TEXT, NOW)
    with runtime.db.session() as s:  # claimed and committed, then the process died mid-call
        assert creation.claim(s, NOW + timedelta(minutes=1))
    out = run_requests(runtime.db, NOW + timedelta(minutes=20), settings, senders)
    assert out["uncertain"] == 1 and out["done"] == 0
    assert not fake.calls_to("appchat/create") and _groups(runtime.db) == []
    assert _requests(runtime.db) == [("uncertain", None)]
    with runtime.db.session() as s:
        assert sorted(n.person_id for n in notices(s, "group_create_uncertain")) == ["admin1", "owner1"]


def test_an_unknown_member_refuses_and_changes_nothing(runtime, wecom):
    [reply] = say(runtime, "owner1", "建群 秋粮收购专班 成员:张三、赵六 到期:12月31日", NOW)
    assert reply == "没有建群：“赵六”在花名册中找不到。请改正后再发一次，这次没有改动任何内容。"
    assert _requests(runtime.db) == []


def test_missing_end_date_is_asked_for(runtime, wecom):
    [reply] = say(runtime, "owner1", "建群 秋粮收购专班 成员:张三", NOW)
    assert reply.startswith("机器人建的群都是临时群，请说明到期时间")
    assert _requests(runtime.db) == []


def test_no_platform_that_can_create_refuses(runtime, wecom):
    with runtime.db.session() as s:
        ev = Event(platform="wechat", kind="message", sender_id="wechat:zs", at=NOW, text=TEXT, msg_id="w1")
        [reply] = [r.text for r in handle_event(s, ev, runtime.services)]
    assert reply.startswith("这里的平台不能由机器人建群")
    assert _requests(runtime.db) == []


def test_registering_a_temporary_group_the_bot_cannot_dissolve_offers_create(runtime, wecom):
    # registered in a private chat: a ledger group, dissolved only by an order to its owner
    [reply] = say(runtime, "owner1", "报备 防汛专班 用途:防汛调度 单位:城关镇 类别:临时群 到期:12月31日", NOW)
    assert reply.startswith("已登记：防汛专班（临时群，城关镇），12月31日到期。")
    assert reply.endswith("机器人不能在平台上解散这个群，到期后会提醒您手动解散。"
                          "以后的临时群可以让我来建，到期自动解散，例如：" + TEXT)


def test_registering_a_temporary_wecom_app_group_offers_nothing_more(runtime, wecom):
    ev = Event(platform="wecom", kind="message", sender_id="owner1", at=NOW, group_id="qzabc", msg_id="r1",
               mentioned_bot=True,
               text="报备 防汛专班 用途:防汛调度 单位:城关镇 类别:临时群 到期:12月31日")
    with runtime.db.session() as s:
        [reply] = [r.text for r in handle_event(s, ev, runtime.services)]
    assert reply.startswith("已登记：防汛专班（临时群，城关镇），12月31日到期。")
    assert "机器人不能在平台上解散" not in reply



def test_create_in_natural_words_takes_the_parsers_slots(runtime, wecom):
    """建群 phrased naturally (帮我拉个群, 成员 and 到期 in another order): the parser's slots."""
    fake, settings, senders = wecom
    [reply] = say(runtime, "owner1", "帮我拉个群：秋粮收购专班，到期:12月31日，成员:张三、李四", NOW)
    assert "正在企业微信上建群“秋粮收购专班”" in reply and "成员：张三、李四" in reply and "12月31日到期" in reply
    assert run_requests(runtime.db, NOW + timedelta(minutes=1), settings, senders)["done"] == 1
    [call] = fake.calls_to("appchat/create")
    assert call.json["name"] == "秋粮收购专班" and call.json["userlist"] == ["owner1", "zhangsan", "lisi"]
    [g] = _groups(runtime.db)
    assert g.temporary and g.expires_at == date(2026, 12, 31) and g.owner_id == "owner1"
