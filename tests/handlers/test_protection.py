"""One meaning of 常设 / 临时 / 受保护, who grants protection, and groups whose members are unknown."""
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from governance.events import Event
from storage import repo
from storage.lifecycle import compute_findings
from storage.models import AuditRecord, Group, Notice, OutboxMessage, Person
from tests.factories import Chat


@pytest.fixture
def chat(runtime, clock):
    return Chat(runtime, clock)


def people(runtime, clock):
    with runtime.db.session() as s:
        s.add_all([Person(id="ua", unit="城关镇", role="unit_admin", name="单位管理员", created_at=clock()),
                   Person(id="ub", unit="容美镇", role="unit_admin", created_at=clock()),
                   Person(id="boss", role="admin", created_at=clock()),
                   Person(id="zhang", unit="城关镇", role="cadre", created_at=clock())])


def the_group(runtime, name):
    with runtime.db.session() as s:
        return s.execute(select(Group).where(Group.name == name)).scalar_one()


def test_owner_registering_a_protected_category_waits_for_the_unit_administrator(chat, runtime, clock):
    people(runtime, clock)
    reply = chat.say("zhang", "报备 城关镇机关群 用途:机关日常 类别:机关群")
    assert "待单位管理员确认保护" in reply
    g = the_group(runtime, "城关镇机关群")
    assert not g.protected and g.protect_requested_by == "zhang"
    with runtime.db.session() as s:
        cards = s.execute(select(OutboxMessage).where(OutboxMessage.kind == "protect_request")).scalars().all()
        assert [c.recipient for c in cards] == ["ua"]  # the unit's administrator, not the other unit's
        card = cards[0].payload["card"]
        assert card["card_type"] == "button_interaction" and card["task_id"].startswith("protect:")
        assert card["button_list"][0]["key"] == f"protect:{g.id}"
        assert "确认保护 城关镇机关群" in cards[0].payload["text"]
    # the owner cannot confirm it; the other unit's administrator neither
    assert "管理员" in chat.say("zhang", "确认保护 城关镇机关群")
    assert "管理员" in chat.say("ub", "确认保护 城关镇机关群")
    assert not the_group(runtime, "城关镇机关群").protected
    # one tap by the unit administrator
    runtime.process(Event(platform="wecom", kind="card_click", sender_id="ua", at=clock(), text="",
                          msg_id="click-1", data={"card_kind": "protect", "event_key": f"protect:{g.id}",
                                                  "task_id": card["task_id"], "response_code": "RC1"}))
    g = the_group(runtime, "城关镇机关群")
    assert g.protected and g.protect_requested_at is None
    with runtime.db.session() as s:
        rec = s.execute(select(AuditRecord).where(AuditRecord.action == "protect")).scalar_one()
        assert rec.actor == "ua" and "受保护" in rec.reason
        told = s.execute(select(Notice).where(Notice.person_id == "zhang")).scalars().all()
        assert any("已确认" in n.text and "受保护" in n.text for n in told)
        assert s.execute(select(OutboxMessage).where(OutboxMessage.kind == "card_update")).scalar_one()


def test_text_fallback_confirms_protection(chat, runtime, clock):
    people(runtime, clock)
    chat.say("zhang", "报备 城关镇机关群 用途:机关日常 类别:机关群")
    assert "待单位管理员确认保护" in chat.say("zhang", "报备 城关镇机关群 用途:机关日常 类别:机关群")
    with runtime.db.session() as s:  # registering again does not ask again
        assert len(s.execute(select(OutboxMessage).where(OutboxMessage.kind == "protect_request")).all()) == 1
    reply = chat.say("ua", "确认保护 城关镇机关群")
    assert "受保护" in reply and "常设" not in reply
    assert the_group(runtime, "城关镇机关群").protected


def test_administrator_registering_a_protected_category_grants_it(chat, runtime, clock):
    people(runtime, clock)
    reply = chat.say("ua", "报备 城关镇领导班子群 用途:班子议事 单位:城关镇 类别:领导班子群")
    assert "受保护" in reply and "待单位管理员确认" not in reply
    assert the_group(runtime, "城关镇领导班子群").protected


def test_standing_group_is_not_protected_and_protect_reply_uses_one_vocabulary(chat, runtime, clock):
    people(runtime, clock)
    reply = chat.say("zhang", "报备 城关镇调度群 用途:日常调度 类别:常设群")
    g = the_group(runtime, "城关镇调度群")
    assert not g.protected and not g.temporary and g.expires_at is None
    assert "提醒" in reply  # an ordinary standing group is warned when idle
    reply = chat.say("ua", "保护 城关镇调度群")
    assert reply.startswith("已将“城关镇调度群”设为受保护群") and "常设" not in reply
    assert "已经是受保护群" in chat.say("ua", "保护 城关镇调度群")
    off = chat.say("ua", "取消保护 城关镇调度群")
    assert "受保护" in off and "常设" not in off


def test_end_date_on_a_protected_group_is_refused(chat, runtime, clock):
    people(runtime, clock)
    chat.say("ua", "报备 城关镇机关群 用途:机关日常 单位:城关镇 类别:机关群")
    before = the_group(runtime, "城关镇机关群")
    reply = chat.say("ua", "续期 城关镇机关群 30天")
    assert "受保护" in reply and "到期" in reply
    reply = chat.say("ua", "报备 城关镇机关群 用途:机关日常 单位:城关镇 类别:临时群 到期:12月31日")
    assert "受保护" in reply and "到期" in reply
    after = the_group(runtime, "城关镇机关群")
    assert (after.expires_at, after.temporary, after.protected, after.category) == (None, False, True, "机关群")
    assert before.expires_at is None


def test_private_registration_says_how_to_add_the_bot_and_is_no_zombie_until_observed(chat, runtime, clock):
    people(runtime, clock)
    reply = chat.say("zhang", "报备 城关镇调度群 用途:日常调度 类别:常设群")
    assert "添加" in reply and "机器人" in reply and "成员" in reply
    in_group = chat.say("zhang", "报备 用途:村务公开 类别:常设群 单位:城关镇", group="chat9", group_name="村务群")
    assert "添加" not in in_group
    later = clock() + timedelta(days=400)
    with runtime.db.session() as s:
        g = s.execute(select(Group).where(Group.name == "城关镇调度群")).scalar_one()
        g.created_at = clock() - timedelta(days=400)
        gid = g.id
    with runtime.db.session() as s:
        zombies = {f.group_ids[0] for f in compute_findings(s, later, runtime.settings) if f.kind == "zombie"}
    assert gid not in zombies and "chat9" in zombies


def test_merge_of_a_group_with_unknown_members_says_so(chat, runtime, clock):
    people(runtime, clock)
    chat.say("zhang", "报备 城关镇调度群 用途:日常调度 类别:常设群")
    with runtime.db.session() as s:
        g = repo.ensure_group(s, group_id="b1", platform="wecom", at=clock(), name="城关镇工作群")
        g.unit = "城关镇"
        repo.add_members(s, "b1", ["x", "y", "z"], clock())
    reply = chat.say("ua", "合并 城关镇调度群 到 城关镇工作群")
    assert "0位成员" not in reply and "成员名单未知" in reply
    with runtime.db.session() as s:  # the owner is asked to tell the members
        assert any("城关镇工作群" in n.text for n in
                   s.execute(select(Notice).where(Notice.person_id == "zhang")).scalars())


def test_registering_a_dissolving_group_as_protected_is_refused_and_changes_nothing(chat, runtime, clock):
    people(runtime, clock)
    chat.say("ua", "报备 城关镇调度群 用途:日常调度 单位:城关镇 类别:常设群")
    with runtime.db.session() as s:
        s.execute(select(Group).where(Group.name == "城关镇调度群")).scalar_one().status = "dissolving"
    reply = chat.say("ua", "报备 城关镇调度群 用途:机关日常 单位:城关镇 类别:机关群")
    assert "正在解散" in reply and "恢复" in reply
    g = the_group(runtime, "城关镇调度群")
    assert (g.category, g.purpose, g.protected, g.status) == ("常设群", "日常调度", False, "dissolving")
