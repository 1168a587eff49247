"""Registration (报备) in one message and in several turns, simplified and traditional; 我的群; 续期; 完成."""
from datetime import date

import pytest
from sqlalchemy import func, select

from storage import audit
from storage.models import AuditRecord, Conversation, Group, Person
from tests.factories import Chat


@pytest.fixture
def chat(runtime, clock):
    return Chat(runtime, clock)


def groups(runtime):
    with runtime.db.session() as s:
        return s.execute(select(Group).order_by(Group.name)).scalars().all()


def snapshot(runtime):
    with runtime.db.session() as s:
        return ([(g.id, g.name, g.status, g.expires_at, g.done_at, g.owner_id) for g in
                 s.execute(select(Group).order_by(Group.id)).scalars()],
                s.execute(select(func.count()).select_from(AuditRecord)).scalar_one())


def test_registration_in_several_turns(chat, runtime):
    assert chat.say("zhang", "报备") == "好的，请告诉我群名称。"
    assert "做什么用" in chat.say("zhang", "秋粮收购专班")
    assert "哪个单位" in chat.say("zhang", "秋粮收购进度调度")
    assert "常设群还是临时群" in chat.say("zhang", "城关镇")
    reply = chat.say("zhang", "临时群，到月底")
    assert reply.startswith("已登记：秋粮收购专班（临时群，城关镇），11月30日到期。")
    [g] = groups(runtime)
    assert (g.name, g.purpose, g.unit, g.category, g.temporary, g.expires_at, g.owner_id) == (
        "秋粮收购专班", "秋粮收购进度调度", "城关镇", "临时群", True, date(2026, 11, 30), "zhang")
    assert g.registered_at is not None and not g.protected
    with runtime.db.session() as s:
        assert s.get(Conversation, "zhang") is None
        rec = s.execute(select(AuditRecord)).scalar_one()
        assert (rec.action, rec.actor, rec.group_id) == ("register", "zhang", g.id)


def test_registration_in_one_message_traditional_fullwidth(chat, runtime):
    reply = chat.say("li", "登記 秋糧收購專班 用途：秋糧收購調度 單位：城關鎮 類別：臨時群 到期：12月31日")
    assert reply.startswith("已登记：秋粮收购专班（临时群，城关镇），12月31日到期。")
    [g] = groups(runtime)
    assert (g.name, g.purpose, g.unit, g.expires_at) == ("秋粮收购专班", "秋粮收购调度", "城关镇", date(2026, 12, 31))


def test_registration_fields_in_any_order_with_mention_and_spaces(chat, runtime):
    reply = chat.say("li", "@群治助手  报备   防汛抗旱群  单位:城关镇 类别:机关群 用途:汛期调度")
    assert "待单位管理员确认保护" in reply  # an owner asks; only an administrator grants protection
    [g] = groups(runtime)
    assert (g.name, g.unit, g.category, g.protected, g.temporary, g.expires_at) == (
        "防汛抗旱群", "城关镇", "机关群", False, False, None)


def test_registration_uses_known_unit_and_asks_expiry(chat, runtime):
    with runtime.db.session() as s:
        s.add(Person(id="wang", unit="容美镇", role="cadre", created_at=runtime.now()))
    assert "做什么用" in chat.say("wang", "报备 招商专班")
    assert "常设群还是临时群" in chat.say("wang", "招商引资")
    assert "到哪天结束" in chat.say("wang", "临时群")
    bad = chat.say("wang", "昨天")
    assert "看不懂到期时间" in bad
    assert groups(runtime) == []  # a refused answer changes nothing
    assert chat.say("wang", "30天").startswith("已登记：招商专班（临时群，容美镇），12月23日到期。")
    [g] = groups(runtime)
    assert (g.unit, g.expires_at) == ("容美镇", date(2026, 12, 23))


def test_registration_inside_a_group_registers_that_group(chat, runtime):
    reply = chat.say("zhao", "报备 用途:村务公开 类别:临时群 到期:30天 单位:下坪村", group="chat123",
                     group_name="下坪村村务群")
    assert reply.startswith("已登记：下坪村村务群")
    with runtime.db.session() as s:
        g = s.get(Group, "chat123")
        assert (g.name, g.owner_id, g.registered_by, g.member_count) == ("下坪村村务群", "zhao", "zhao", 1)


def test_cancel_dialogue_changes_nothing(chat, runtime):
    chat.say("zhang", "报备")
    assert "已取消" in chat.say("zhang", "取消")
    assert groups(runtime) == []


def test_refusals_for_non_owners_change_nothing(chat, runtime):
    chat.say("zhang", "报备 秋粮收购专班 用途:调度 单位:城关镇 类别:临时群 到期:12月31日")
    before = snapshot(runtime)
    assert chat.say("wang", "完成 秋粮收购专班") == "只有群主（zhang）或管理员可以操作这个群。"
    assert chat.say("wang", "续期 秋粮收购专班 30天") == "只有群主（zhang）或管理员可以操作这个群。"
    assert snapshot(runtime) == before


def test_admin_may_change_and_unit_admin_only_in_own_unit(chat, runtime):
    chat.say("zhang", "报备 秋粮收购专班 用途:调度 单位:城关镇 类别:临时群 到期:12月31日")
    with runtime.db.session() as s:
        s.add(Person(id="ua", unit="容美镇", role="unit_admin", created_at=runtime.now()))
        s.add(Person(id="boss", role="admin", created_at=runtime.now()))
    assert chat.say("ua", "续期 秋粮收购专班 30天").startswith("只有群主")
    assert chat.say("boss", "续期 秋粮收购专班 2027-01-31") == "已把“秋粮收购专班”延至2027年1月31日。"


def test_renew_adds_span_to_current_expiry_and_done_marks(chat, runtime):
    chat.say("zhang", "报备 秋粮收购专班 用途:调度 单位:城关镇 类别:临时群 到期:12月31日")
    assert chat.say("zhang", "續期 秋糧收購專班 30天") == "已把“秋粮收购专班”延至2027年1月30日。"
    assert "已标记任务完成" in chat.say("zhang", "完成 秋粮收购专班")
    [g] = groups(runtime)
    assert g.done_at is not None and g.expires_at == date(2027, 1, 30)
    with runtime.db.session() as s:
        actions = [r.action for r in s.execute(select(AuditRecord).order_by(AuditRecord.id)).scalars()]
        assert actions == ["register", "renew", "done"]
        assert audit.verify(s).ok


def test_my_groups_lists_owned_and_member(chat, runtime):
    chat.say("zhang", "报备 秋粮收购专班 用途:调度 单位:城关镇 类别:临时群 到期:12月31日")
    chat.say("zhang", "收到", group="g-flood", mentioned=False, group_name="防汛群")
    reply = chat.say("zhang", "我的群")
    assert "我建的群（1个）" in reply and "秋粮收购专班（正常，12月31日到期）" in reply
    assert "我在的群（1个）" in reply and "防汛群（正常，未登记）" in reply


def test_unknown_text_gets_short_hint(chat):
    reply = chat.say("zhang", "今天天气怎么样")
    assert "帮助" in reply and len(reply) < 60


def test_group_messages_update_activity_without_text(chat, runtime):
    chat.say("a", "收到", group="g1", mentioned=False)
    chat.say("b", "明天上午九点在村委会开会，请带上台账", group="g1", mentioned=False)
    chat.say("c", "👍", group="g1", mentioned=False)
    with runtime.db.session() as s:
        g = s.get(Group, "g1")
        assert (g.message_count, g.ritual_count, g.member_count) == (3, 2, 3)
        assert g.last_work_at is not None
        from storage.models import Message
        assert s.execute(select(func.count()).where(Message.text.is_not(None))).scalar_one() == 0


def test_message_text_stored_only_when_enabled(db, clock, settings):
    from bot.runtime import Runtime
    from storage.models import Message

    rt = Runtime(settings.model_copy(update={"store_message_text": True, "database_url": db.url}), db=db, clock=clock)
    Chat(rt, clock).say("a", "请各村上报秋粮进度", group="g1", mentioned=False)
    with db.session() as s:
        assert s.execute(select(Message.text)).scalar_one() == "请各村上报秋粮进度"


def test_duplicate_event_processed_once(runtime, clock):
    from handlers.dispatch import handle_event
    from tests.factories import message

    ev = message("zhang", "报备 秋粮收购专班 用途:调度 单位:城关镇 类别:临时群 到期:12月31日", clock(), msg_id="dup-1")
    with runtime.db.session() as s:
        first = handle_event(s, ev, runtime.services)
    with runtime.db.session() as s:
        second = handle_event(s, ev, runtime.services)
    assert first and second == first  # a repeat is answered as the first time, and changes nothing
    assert len(groups(runtime)) == 1


def test_an_abandoned_dialogue_expires(chat, runtime, clock):
    assert chat.say("zhang", "报备") == "好的，请告诉我群名称。"
    clock.advance(hours=13)
    assert "没听懂" in chat.say("zhang", "城关镇防汛群")  # not taken as the group's name
    assert groups(runtime) == []
    with runtime.db.session() as s:
        assert s.get(Conversation, "zhang") is None
