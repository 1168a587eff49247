"""Issue 13's conversations through the real dispatch: natural phrasings, forgiving group names,
one pending question per person, missing slots, 继续/取消, 撤销 and 帮助 <命令>; every test checks
the state afterwards (expiry dates, owners, statuses, the conversation row), not only the reply."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from handlers import registry
from governance.events import Reply
from storage.models import AuditRecord, Conversation, Group, Membership, Person
from tests.factories import Chat


@pytest.fixture
def chat(runtime, clock):
    return Chat(runtime, clock)


GROUPS = [  # id, name, unit, owner, expires
    ("g1", "秋粮收购专班（城关镇）", "城关镇", "zhang", date(2026, 12, 31)),
    ("g2", "冬季征兵专班", "城关镇", "zhang", date(2026, 12, 20)),
    ("g3", "征兵宣传群", "容美镇", "zhang", date(2026, 12, 15)),
    ("g4", "防汛抗旱群", "城关镇", "zhang", None),
    ("g5", "防火巡查群", "城关镇", "wang", date(2026, 12, 10)),
    ("g6", "招商引资信息群", "容美镇", "wang", None),
    ("g7", "走马镇医保缴费群", "走马镇", "zhao", date(2026, 12, 30)),
]


def seed(runtime, clock):
    now = clock()
    with runtime.db.session() as s:
        s.add_all([Person(id="zhang", name="张镇长", unit="城关镇", role="cadre", created_at=now),
                   Person(id="wang", name="王干事", unit="城关镇", role="cadre", created_at=now),
                   Person(id="zhao", name="赵站长", unit="走马镇", role="cadre", created_at=now),
                   Person(id="boss", name="李主任", role="admin", created_at=now)])
        for gid, name, unit, owner, expires in GROUPS:
            s.add(Group(id=gid, platform="wecom", name=name, unit=unit, owner_id=owner, category="临时群" if expires else "机关群",
                        temporary=expires is not None, expires_at=expires, status="active", source="ledger",
                        created_at=now - timedelta(days=30), first_seen_at=now - timedelta(days=30),
                        registered_at=now - timedelta(days=30), updated_at=now))
        s.flush()
        s.add_all([Membership(group_id="g6", person_id="zhang", joined_at=now),
                   Membership(group_id="g5", person_id="zhang", joined_at=now)])


def group(runtime, gid) -> Group:
    with runtime.db.session() as s:
        return s.get(Group, gid)


def conversation(runtime, pid):
    with runtime.db.session() as s:
        c = s.get(Conversation, pid)
        return None if c is None else (c.intent, dict(c.data))


def audits(runtime, action=None) -> int:
    with runtime.db.session() as s:
        q = select(func.count()).select_from(AuditRecord)
        if action:
            q = q.where(AuditRecord.action == action)
        return s.execute(q).scalar_one()


# --- renewals in natural phrasings ---------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("帮我把秋粮收购专班延期到月底", date(2026, 11, 30)),
    ("秋粮群延期一个月", date(2027, 1, 31)),            # a span adds to the future expiry
    ("秋粮收购专班 续期 30天", date(2027, 1, 30)),
    ("@群治 秋糧專班往後延到一月底吧", date(2027, 1, 31)),
    ("秋粮收购专班(城关镇)续期两个月", date(2027, 2, 28)),
])
def test_renewals_in_natural_phrasings_echo_the_full_name_and_the_date(chat, runtime, clock, text, expected):
    seed(runtime, clock)
    reply = chat.say("zhang", text)
    assert group(runtime, "g1").expires_at == expected, reply
    assert reply == f"已把“秋粮收购专班（城关镇）”延至{expected.year}年{expected.month}月{expected.day}日。"


def test_several_lookalikes_get_a_numbered_choice_and_the_number_acts(chat, runtime, clock):
    seed(runtime, clock)
    reply = chat.say("zhang", "征兵群续期一个月")
    assert reply.startswith("有两个群像“征兵群”，回复序号：")
    assert "1 冬季征兵专班（城关镇）" in reply and "2 征兵宣传群（容美镇）" in reply
    assert group(runtime, "g2").expires_at == date(2026, 12, 20)  # nothing yet
    assert chat.say("zhang", "2") == "已把“征兵宣传群（容美镇）”延至2027年1月15日。"
    assert group(runtime, "g3").expires_at == date(2027, 1, 15)
    assert group(runtime, "g2").expires_at == date(2026, 12, 20)
    assert conversation(runtime, "zhang") is None


def test_none_found_offers_the_closest_of_ones_own_and_never_anothers(chat, runtime, clock):
    seed(runtime, clock)
    reply = chat.say("zhang", "医保缴费群续期一个月")  # zhao's: not visible to zhang
    assert "医保" not in reply.split("最接近的是")[-1] and "没有找到" in reply
    assert group(runtime, "g7").expires_at == date(2026, 12, 30)
    assert audits(runtime) == 0


def test_a_group_one_is_only_member_of_is_refused_with_the_owner(chat, runtime, clock):
    seed(runtime, clock)
    assert chat.say("zhang", "防火巡查群延期一个月") == "只有群主（王干事）或管理员可以操作这个群。"
    assert group(runtime, "g5").expires_at == date(2026, 12, 10)


# --- consequential steps on a fuzzy match ---------------------------------------------------------
def test_done_on_a_fuzzy_name_asks_for_confirmation_first(chat, runtime, clock):
    seed(runtime, clock)
    reply = chat.say("zhang", "秋粮那个群任务完成了，可以解散了")
    assert reply.startswith("是“秋粮收购专班（城关镇）”吗？回复“确认”")
    assert group(runtime, "g1").done_at is None
    assert "已标记任务完成" in chat.say("zhang", "确认")
    assert group(runtime, "g1").done_at is not None
    assert conversation(runtime, "zhang") is None


def test_done_on_a_fuzzy_name_is_dropped_on_no(chat, runtime, clock):
    seed(runtime, clock)
    chat.say("zhang", "秋粮专班不用了")
    assert chat.say("zhang", "不是") == "好的，没有操作。"
    assert group(runtime, "g1").done_at is None and conversation(runtime, "zhang") is None


def test_an_exact_name_acts_without_asking(chat, runtime, clock):
    seed(runtime, clock)
    assert "已标记任务完成" in chat.say("zhang", "完成 冬季征兵专班")
    assert group(runtime, "g2").done_at is not None


def test_merge_by_an_administrator(chat, runtime, clock):
    seed(runtime, clock)
    reply = chat.say("boss", "把防火巡查群并到防汛抗旱群")
    assert reply.startswith("已安排合并"), reply
    assert group(runtime, "g5").merged_into == "g4" or group(runtime, "g5").status != "active"


# --- missing slots, pending questions ------------------------------------------------------------
def test_a_missing_period_is_asked_and_the_next_message_is_it(chat, runtime, clock):
    seed(runtime, clock)
    reply = chat.say("zhang", "续期 秋粮收购专班")
    assert "延到哪天" in reply
    assert conversation(runtime, "zhang")[0] == "command"
    assert chat.say("zhang", "两个月") == "已把“秋粮收购专班（城关镇）”延至2027年2月28日。"
    assert group(runtime, "g1").expires_at == date(2027, 2, 28)
    assert conversation(runtime, "zhang") is None


def test_a_missing_group_is_asked_in_a_direct_chat(chat, runtime, clock):
    seed(runtime, clock)
    assert "哪个群" in chat.say("zhang", "续期30天")
    assert chat.say("zhang", "冬季征兵专班") == "已把“冬季征兵专班”延至2027年1月19日。"
    assert group(runtime, "g2").expires_at == date(2027, 1, 19)


def test_keep_without_a_reason_asks_for_it(chat, runtime, clock):
    seed(runtime, clock)
    assert "保留理由" in chat.say("zhang", "保留 防汛抗旱群")
    assert chat.say("zhang", "汛期前还要用").startswith("已保留“防汛抗旱群”至")
    assert group(runtime, "g4").kept_until is not None


def test_an_unrelated_command_during_a_dialogue_is_answered_with_a_reminder(chat, runtime, clock):
    seed(runtime, clock)
    assert chat.say("zhang", "报备") == "好的，请告诉我群名称。"
    reply = chat.say("zhang", "秋粮收购专班 续期 30天")
    assert reply.startswith("已把“秋粮收购专班（城关镇）”延至2027年1月30日。")
    assert reply.endswith("您还有一个报备没填完，回复“继续”接着填。")
    assert group(runtime, "g1").expires_at == date(2027, 1, 30)
    assert chat.say("zhang", "继续") == "好的，请告诉我群名称。"
    # a dialogue's own answer is never a command: a group named 我的群 is registered
    assert "做什么用" in chat.say("zhang", "我的群")
    chat.say("zhang", "同事们交流")
    chat.say("zhang", "常设群")
    with runtime.db.session() as s:
        g = s.execute(select(Group).where(Group.name == "我的群")).scalar_one()
        assert (g.owner_id, g.purpose, g.unit) == ("zhang", "同事们交流", "城关镇")
        assert s.get(Conversation, "zhang") is None


def test_a_new_question_replaces_the_old_and_says_so(chat, runtime, clock):
    seed(runtime, clock)
    chat.say("zhang", "报备")
    reply = chat.say("zhang", "续期 冬季征兵专班")
    assert "延到哪天" in reply and "之前没完成的报备已作废" in reply
    assert conversation(runtime, "zhang")[1]["command"] == "renew"


def test_cancel_with_nothing_open_says_so_and_cancel_ends_a_dialogue(chat, runtime, clock):
    seed(runtime, clock)
    assert chat.say("zhang", "取消") == "现在没有进行中的操作，不用取消。"
    chat.say("zhang", "续期 秋粮收购专班")
    assert chat.say("zhang", "算了").startswith("好的，已取消")
    assert conversation(runtime, "zhang") is None
    assert group(runtime, "g1").expires_at == date(2026, 12, 31)


# --- registration ------------------------------------------------------------------------------
def test_registering_someone_elses_name_is_refused_at_the_first_message(chat, runtime, clock):
    seed(runtime, clock)
    reply = chat.say("zhang", "报备 防火巡查群 用途:巡查")
    assert reply.startswith("“防火巡查群”已由王干事登记") and "王干事" in reply
    assert conversation(runtime, "zhang") is None and group(runtime, "g5").owner_id == "wang"


def test_one_bad_field_keeps_the_good_ones_and_asks_only_for_it(chat, runtime, clock):
    seed(runtime, clock)
    reply = chat.say("zhang", "报备 城关镇防汛、抗旱指挥群 用途:防汛抗旱指挥 类别:临时群 到期:2月30日")
    assert "2月30日" in reply or "日期" in reply
    intent, data = conversation(runtime, "zhang")
    assert (intent, data["step"], data["name"], data["purpose"]) == ("register", "expires", "城关镇防汛、抗旱指挥群",
                                                                     "防汛抗旱指挥")
    assert chat.say("zhang", "30天").startswith("已登记：城关镇防汛、抗旱指挥群（临时群，城关镇）")
    with runtime.db.session() as s:
        g = s.execute(select(Group).where(Group.name == "城关镇防汛、抗旱指挥群")).scalar_one()
        assert g.expires_at == date(2026, 12, 23) and g.purpose == "防汛抗旱指挥"


def test_names_with_spaces_are_kept(chat, runtime, clock):
    seed(runtime, clock)
    chat.say("zhang", "报备 城关镇 秋粮收购 专班 用途:秋粮调度 类别:临时群 到期:30天")
    with runtime.db.session() as s:
        assert s.execute(select(Group.name).where(Group.name == "城关镇 秋粮收购 专班")).scalar_one()


@pytest.mark.parametrize("text", ["我要登记一个群", "我想报备一个群"])
def test_natural_registration_starts_the_dialogue(chat, runtime, clock, text):
    seed(runtime, clock)
    assert chat.say("zhang", text) == "好的，请告诉我群名称。"


# --- 撤销 ------------------------------------------------------------------------------------------
def test_undo_puts_back_a_renewal_within_ten_minutes_audited(chat, runtime, clock):
    seed(runtime, clock)
    chat.say("zhang", "秋粮收购专班 续期 30天")
    clock.advance(minutes=5)
    assert chat.say("zhang", "撤销") == "已撤销对“秋粮收购专班（城关镇）”的续期，到期日改回2026年12月31日。"
    assert group(runtime, "g1").expires_at == date(2026, 12, 31)
    assert audits(runtime, "undo") == 1
    assert "没有可以撤销" in chat.say("zhang", "撤销")  # an undo is not undone


def test_undo_of_done_and_after_the_window(chat, runtime, clock):
    seed(runtime, clock)
    chat.say("zhang", "完成 冬季征兵专班")
    assert "任务完成标记" in chat.say("zhang", "撤销")
    assert group(runtime, "g2").done_at is None
    chat.say("zhang", "完成 冬季征兵专班")
    clock.advance(minutes=11)
    assert "已超过10分钟" in chat.say("zhang", "撤销")
    assert group(runtime, "g2").done_at is not None


def test_undo_of_keep(chat, runtime, clock):
    seed(runtime, clock)
    chat.say("zhang", "防汛抗旱群还要用，别解散")
    assert group(runtime, "g4").kept_until is not None
    assert chat.say("zhang", "撤销") == "已撤销对“防汛抗旱群”的保留。"
    g = group(runtime, "g4")
    assert g.kept_until is None and (g.keep_count or 0) == 0


# --- other phrasings, help ---------------------------------------------------------------------
@pytest.mark.parametrize("text", ["我在哪些群里", "我有几个群"])
def test_my_groups_in_natural_phrasings(chat, runtime, clock, text):
    seed(runtime, clock)
    assert chat.say("zhang", text).startswith("我建的群（4个）")


@pytest.mark.parametrize("text", ["你好", "怎么用", "菜单"])
def test_greeting_and_help(chat, runtime, clock, text):
    seed(runtime, clock)
    assert "帮助" in chat.say("zhang", text) or chat.say("zhang", text).startswith("我是群治助手")


def test_help_lists_an_example_and_explains_one_command(chat, runtime, clock):
    seed(runtime, clock)
    text = chat.say("zhang", "帮助")
    assert "不用记格式" in text
    one = chat.say("zhang", "帮助 续期")
    assert one.startswith("续期：延长临时群。") and "秋粮群延期一个月" in one
    assert len(one) < 200


def test_anonymous_useless_never_opens_a_dialogue(chat, runtime, clock):
    seed(runtime, clock)
    reply = chat.say("zhang", "这个群没用")
    assert "群名称" in reply
    assert conversation(runtime, "zhang") is None


# --- another helper's continuation plugs in --------------------------------------------------------
def test_a_registered_continuation_gets_confirm_number_and_no(chat, runtime, clock, monkeypatch):
    seen: list[tuple[str, int | None]] = []

    def review(ctx, conv):
        from handlers.dialogue import close

        p = ctx.parse
        number = None if p is None else (p.slots.get("number") or (int(p.rest) if p.rest.isdigit() else None))
        seen.append((p.intent if p else ctx.text, number))
        close(ctx)
        return Reply("好")

    monkeypatch.setitem(registry._CONVERSATIONS, "reconcile_review", review)
    seed(runtime, clock)
    for answer, expected in (("确认 1", ("confirm", 1)), ("不是", ("不是", None)), ("2", ("choose", 2))):
        with runtime.db.session() as s:
            s.merge(Conversation(person_id="zhang", intent="reconcile_review",
                                 data={"what": "核对", "expects": "choice", "question": "是这个群吗？"},
                                 updated_at=clock()))
        assert chat.say("zhang", answer) == "好"
        assert seen[-1][0] == expected[0] and seen[-1][1] == expected[1]
