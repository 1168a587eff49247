"""Dissolution on each capability path: WeCom appchat (fake server), bridge, order; and merge."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from governance.capabilities import resolve
from platforms.capabilities import for_platform, table
from platforms.wecom.sender import WeComSender
from storage import audit
from scheduler.lifecycle import sweep
from storage.lifecycle import mark_warning_sent
from storage.models import Group, OutboxMessage
from tests.lifecycle.helpers import NOW, group, notices, say, seed_people, trail

DUE = NOW + timedelta(days=7)


def _warned(db, settings, gid="g1", name="防汛抗旱群", **kw):
    with db.session() as s:
        seed_people(s)
        group(s, gid, name, **kw)
    sweep(db, NOW, settings, apply=True)
    with db.session() as s:
        assert mark_warning_sent(s, gid, NOW)


def test_capability_lookup():
    assert for_platform("wecom").method == "appchat"
    assert for_platform("wecom", source="ledger").method == "order"
    assert for_platform("wechat").method == "bridge"
    assert for_platform("bridge").method == "bridge"
    assert for_platform("wechat", configured=False).method == "order"
    assert for_platform("aibot").method == "order"
    assert for_platform("ledger").method == "order"


def test_capability_table(settings):
    configured = table(settings)
    assert resolve(configured, "wecom").method == "appchat"
    assert resolve(configured, "wecom", source="ledger").method == "order"
    assert resolve(configured, "wechat").method == "bridge"
    assert resolve(configured, "bridge").method == "bridge"
    assert resolve(table(settings.model_copy(update={"bridge_secret": ""})), "wechat").method == "order"
    assert resolve(configured, "aibot").method == "order"
    assert resolve(configured, "ledger").method == "order"


@pytest.fixture
def wecom(fake_wecom, runtime):
    settings = runtime.settings.model_copy(update={"wecom_api_base": fake_wecom.base_url})
    fake_wecom.chats["g1"] = {"chatid": "g1", "name": "防汛抗旱群", "owner": "owner1",
                              "userlist": ["owner1", "m1", "m2", "m3"]}
    return fake_wecom, settings, WeComSender(settings)


def test_appchat_dissolve_and_restore(runtime, wecom):
    fake, settings, sender = wecom
    db = runtime.db
    _warned(db, settings)
    r = sweep(db, DUE, settings, apply=True, sender=sender)
    assert [(x.action, x.method, x.result) for x in r.steps] == [("dissolve", "appchat", "pending"),
                                                                 ("resume", "appchat", "done")]
    assert fake.members("g1") == ["owner1"]
    assert fake.chats["g1"]["name"] == "[已解散]防汛抗旱群"
    [notice] = fake.calls_to("appchat/send")
    assert notice.json["chatid"] == "g1"
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.dissolve_method, g.dissolved_at) == ("dissolved", "appchat", DUE)
        assert g.dissolve_state["done"] == ["notice", "remove", "rename"]
        assert g.dissolve_state["members"] == ["m1", "m2", "m3", "owner1"]
        [n] = notices(s, "dissolved")
        assert n.text == "“防汛抗旱群”已解散。12月30日前可恢复：回复“恢复 防汛抗旱群”。"
    # second run: nothing more on the platform
    calls = len(fake.calls)
    assert sweep(db, DUE, settings, apply=True, sender=sender).steps == []
    assert len([c for c in fake.calls[calls:] if c.path.startswith("appchat/")]) == 0
    # restore: members re-added, name back
    assert say(runtime, "owner1", "恢复 防汛抗旱群", DUE + timedelta(days=3)) == [
        "已恢复“防汛抗旱群”，3位成员将在几分钟内重新加入，群名改回原名。"]
    r = sweep(db, DUE + timedelta(days=3), settings, apply=True, sender=sender)
    assert [(x.action, x.result) for x in r.steps] == [("resume", "done")]
    assert sorted(fake.members("g1")) == ["m1", "m2", "m3", "owner1"]
    assert fake.chats["g1"]["name"] == "防汛抗旱群"
    with db.session() as s:
        assert s.get(Group, "g1").status == "active"
        assert [a[:2] for a in trail(s, "g1")] == [
            ("warn", "system:sweep"), ("warning_sent", "system:outbox"), ("dissolve_intent", "system:sweep"),
            ("dissolve", "system:sweep"), ("restore", "owner1"), ("restore_done", "system:sweep")]
        assert audit.verify(s).ok


class CrashAfterNotice:
    """Delegates to the real sender but dies on the first appchat_update (a crash mid-sweep)."""

    def __init__(self, real):
        self.real = real

    def appchat_send_text(self, chat_id, text):
        return self.real.appchat_send_text(chat_id, text)

    def appchat_get(self, chat_id):
        return self.real.appchat_get(chat_id)

    def appchat_update(self, *a, **kw):
        raise RuntimeError("process killed")


def test_crash_mid_dissolution_completes_on_next_run(runtime, wecom):
    fake, settings, sender = wecom
    db = runtime.db
    _warned(db, settings)
    with pytest.raises(RuntimeError):
        sweep(db, DUE, settings, apply=True, sender=CrashAfterNotice(sender))
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.dissolve_state["done"]) == ("dissolving", ["notice"])
    assert len(fake.members("g1")) == 4
    r = sweep(db, DUE + timedelta(hours=1), settings, apply=True, sender=sender)
    assert [(x.action, x.result) for x in r.steps] == [("resume", "done")]
    assert fake.members("g1") == ["owner1"]
    assert len(fake.calls_to("appchat/send")) == 1  # the final notice is not repeated
    with db.session() as s:
        assert s.get(Group, "g1").status == "dissolved"
        assert [a[0] for a in trail(s, "g1")].count("dissolve_intent") == 1
        assert [a[0] for a in trail(s, "g1")].count("dissolve") == 1


def test_transient_error_retries_next_run(runtime, wecom):
    fake, settings, sender = wecom
    db = runtime.db
    _warned(db, settings)
    fake.fail_next(1, 45009)
    r = sweep(db, DUE, settings, apply=True, sender=sender)
    assert r.steps[-1].result == "pending"
    with db.session() as s:
        assert s.get(Group, "g1").status == "dissolving"
    sweep(db, DUE + timedelta(minutes=5), settings, apply=True, sender=sender)
    assert fake.members("g1") == ["owner1"]


def test_without_sender_appchat_waits(runtime):
    db, settings = runtime.db, runtime.settings
    _warned(db, settings)
    r = sweep(db, DUE, settings, apply=True, sender=None)
    assert [(x.action, x.result) for x in r.steps] == [("dissolve", "pending"), ("resume", "pending")]
    with db.session() as s:
        assert s.get(Group, "g1").status == "dissolving"


def test_bridge_instruction_and_confirmation_via_event(runtime):
    db, settings = runtime.db, runtime.settings
    _warned(db, settings, platform="wechat")
    sweep(db, DUE, settings, apply=True)
    with db.session() as s:
        [o] = s.execute(select(OutboxMessage).where(OutboxMessage.kind == "bridge_dissolve")).scalars().all()
        assert (o.channel, o.recipient, o.status) == ("bridge", "g1", "pending")
        assert o.payload["type"] == "dissolve" and o.payload["group_id"] == "g1"
        assert o.payload["instruction_id"] == s.get(Group, "g1").dissolve_state["instruction_id"]
    sweep(db, DUE, settings, apply=True)  # twice: still one instruction
    with db.session() as s:
        assert len(s.execute(select(OutboxMessage).where(OutboxMessage.channel == "bridge")).all()) == 1


def _bridge_post(client, runtime, body: dict):
    import json

    from platforms.bridge.inbound import signed_headers

    raw = json.dumps(body, ensure_ascii=False).encode()
    return client.post("/bridge/events", content=raw,
                       headers=signed_headers(runtime.settings.bridge_secret, runtime.clock().timestamp(), raw))


def test_bridge_confirmation_through_the_endpoint_finishes_dissolution(runtime, client, clock):
    db, settings = runtime.db, runtime.settings
    _warned(db, settings, gid="wechat:g1", platform="wechat")  # the bridge's group g1, scoped by platform
    sweep(db, DUE, settings, apply=True)
    with db.session() as s:
        instruction = s.get(Group, "wechat:g1").dissolve_state["instruction_id"]
        assert s.get(Group, "wechat:g1").status == "dissolving"
    clock.set(DUE + timedelta(hours=1))
    body = {"id": "confirm-1", "type": "dissolve_confirmed", "platform": "wechat", "group_id": "g1",
            "sender_id": "bridge", "instruction_id": instruction, "at": clock().isoformat()}
    assert _bridge_post(client, runtime, body).status_code == 200
    assert _bridge_post(client, runtime, body).status_code == 200  # a retry changes nothing more
    with db.session() as s:
        g = s.get(Group, "wechat:g1")
        assert g.status == "dissolved" and g.dissolved_at is not None
        actions = [a[0] for a in trail(s, "wechat:g1")]
        assert actions.count("dissolve") == 1
        assert audit.verify(s).ok


def test_order_path_deadline_escalation_and_confirmation(runtime):
    db, settings = runtime.db, runtime.settings
    _warned(db, settings, platform="ledger", source="ledger")
    r = sweep(db, DUE, settings, apply=True)
    assert [(x.action, x.method, x.result) for x in r.steps] == [("dissolve", "order", "done")]
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.order_deadline) == ("dissolving", DUE + timedelta(days=3))
        [n] = notices(s, "dissolve_order")
        assert n.person_id == "owner1"
        assert n.text == ("“防汛抗旱群”已到解散时间，但机器人无法直接操作该群。请于12月3日前手动解散，"
                          "完成后回复“已解散 防汛抗旱群”。逾期未处理将报送纪委监委。")
    assert sweep(db, DUE + timedelta(days=2), settings, apply=True).steps == []
    r = sweep(db, DUE + timedelta(days=3), settings, apply=True)
    assert [(x.action, x.result) for x in r.steps] == [("escalate", "done")]
    assert sweep(db, DUE + timedelta(days=4), settings, apply=True).steps == []  # escalated once
    with db.session() as s:
        [n] = notices(s, "order_overdue")
        assert (n.person_id, n.text) == ("comm1", "“防汛抗旱群”（城关镇，群主李主任）的解散通知已逾期未执行。")
    assert say(runtime, "owner1", "已解散 防汛抗旱群", DUE + timedelta(days=5)) == [
        "收到，“防汛抗旱群”已记为解散。30天内可回复“恢复 防汛抗旱群”撤销记录。"]
    with db.session() as s:
        assert s.get(Group, "g1").status == "dissolved"
        assert [a[:2] for a in trail(s, "g1")][2:] == [
            ("dissolve_intent", "system:sweep"), ("dissolve_order", "system:sweep"),
            ("order_escalate", "system:sweep"), ("dissolve", "owner1")]
        assert audit.verify(s).ok


def test_merge_by_admin(runtime, wecom):
    fake, settings, sender = wecom
    db = runtime.db
    with db.session() as s:
        seed_people(s)
        group(s, "g1", "防汛抗旱群", idle_days=1)
        group(s, "g2", "防汛指挥部", idle_days=1, members=("owner1", "m1", "m2", "m3", "m4"))
    assert say(runtime, "owner1", "合并 防汛抗旱群 到 防汛指挥部", NOW) == [
        "只有管理员或“城关镇”的单位管理员可以进行这项操作。"]
    assert say(runtime, "admin1", "合并 防汛抗旱群 到 防汛指挥部", NOW) == [
        "已安排合并：“防汛抗旱群”的4位成员会收到通知改用“防汛指挥部”；“防汛抗旱群”将解散（机器人将移出成员并改名）。"]
    with db.session() as s:
        told = notices(s, "merge")
        assert sorted(n.person_id for n in told) == ["m1", "m2", "m3", "owner1"]
        assert told[0].text == "“防汛抗旱群”已合并到“防汛指挥部”，今后请在“防汛指挥部”沟通，“防汛抗旱群”将解散。"
    sweep(db, NOW, settings, apply=True, sender=sender)
    assert fake.members("g1") == ["owner1"]
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.merged_into) == ("merged", "g2")
        assert [(a[0], a[1], a[2]) for a in trail(s, "g1")] == [
            ("merge", "admin1", "合并"), ("dissolve_intent", "admin1", "合并"), ("dissolve", "system:sweep", "合并")]


def test_a_bridge_without_its_url_cannot_dissolve_so_the_owner_gets_an_order():
    from types import SimpleNamespace

    from platforms.capabilities import for_group
    from tests.conftest import make_settings

    g = SimpleNamespace(platform="wechat", source="bridge")
    assert for_group(g, make_settings(bridge_url="http://127.0.0.1:9/b")).method == "bridge"
    assert for_group(g, make_settings(bridge_url="")).method == "order"
    wg = SimpleNamespace(platform="wecom", source="chat")
    assert for_group(wg, make_settings(wecom_secret="")).method == "order"


def test_a_permanent_refusal_turns_the_dissolution_into_an_order(runtime, wecom):
    fake, settings, sender = wecom
    db = runtime.db
    _warned(db, settings)
    fake.fail_next(1, 86003, "no privilege")  # the final notice is refused for good
    r = sweep(db, DUE, settings, apply=True, sender=sender)
    assert [(x.action, x.result) for x in r.steps] == [("dissolve", "pending"), ("resume", "error")]
    assert r.steps[-1].detail == "解散：平台拒绝发送通知，已改为人工处理"
    assert len(fake.members("g1")) == 4  # nothing was done on the platform
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.dissolve_method, g.order_deadline) == ("dissolving", "order", DUE + timedelta(days=3))
        assert (g.dissolve_state["method"], g.dissolve_state["done"]) == ("order", [])
        assert "86003" in g.dissolve_state["last_error"]
        [n] = notices(s, "dissolve_order")
        assert n.person_id == "owner1"
        assert [a[0] for a in trail(s, "g1")][-3:] == ["dissolve_intent", "dissolve_fallback", "dissolve_order"]
    assert sweep(db, DUE + timedelta(minutes=5), settings, apply=True, sender=sender).steps == []  # no more appchat
    assert say(runtime, "owner1", "已解散 防汛抗旱群", DUE + timedelta(days=1)) == [
        "收到，“防汛抗旱群”已记为解散。30天内可回复“恢复 防汛抗旱群”撤销记录。"]
    with db.session() as s:
        assert s.get(Group, "g1").status == "dissolved"
        assert audit.verify(s).ok


def test_a_permanent_refusal_while_restoring_leaves_the_members_to_the_owner(runtime, wecom):
    fake, settings, sender = wecom
    db = runtime.db
    _warned(db, settings)
    sweep(db, DUE, settings, apply=True, sender=sender)
    assert fake.members("g1") == ["owner1"]
    say(runtime, "owner1", "恢复 防汛抗旱群", DUE + timedelta(days=3))
    fake.fail_next(2, 86003, "no privilege")  # appchat/get (the recorded list is used), then the re-adding
    r = sweep(db, DUE + timedelta(days=3), settings, apply=True, sender=sender)
    assert [(x.action, x.result) for x in r.steps] == [("resume", "error")]
    assert fake.members("g1") == ["owner1"]
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.dissolved_at, g.status_reason) == ("active", None, "恢复（平台未能拉回成员）")
        [n] = notices(s, "restore_manual")
        assert (n.person_id, n.text) == ("owner1", "“防汛抗旱群”已恢复登记，但未能自动拉回成员，请手动邀请原成员入群。")
        assert trail(s, "g1")[-1] == ("restore_done", "system:sweep", "平台拒绝，需群主手动拉回成员")
        assert audit.verify(s).ok
