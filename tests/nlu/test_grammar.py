"""The intent grammar: natural phrasings in any order, traditional, mentions, emoji, typos."""
from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings, strategies as st

from nlu import parse, split_fields
from nlu.grammar import may_be_command, tokenizer
from nlu.normalize import clean

TODAY = date(2026, 12, 1)


def P(text):
    return parse(text, today=TODAY)


@pytest.mark.parametrize("text,intent,group", [
    ("我要登记一个群", "register", None),
    ("我想报备一个群", "register", None),
    ("帮我把秋粮收购专班延期到月底", "renew", "秋粮收购专班"),
    ("秋粮群延期一个月", "renew", "秋粮群"),
    ("秋粮收购专班 续期 30天", "renew", "秋粮收购专班"),
    ("秋粮那个群任务完成了，可以解散了", "done", "秋粮群"),
    ("秋粮专班不用了", "done", "秋粮专班"),
    ("我在哪些群里", "mine", None),
    ("我有几个群", "mine", None),
    ("你好", "greet", None),
    ("怎么用", "help", None),
    ("菜单", "help", None),
    ("算了", "cancel", None),
    ("取消", "cancel", None),
    ("防汛群还要用，别解散", "keep", "防汛群"),
    ("把防火巡查群并到防汛群", "merge", "防火巡查群"),
])
def test_the_issue_examples(text, intent, group):
    p = P(text)
    assert p is not None and p.intent == intent, (text, p)
    assert p.slots.get("group") == group


def test_periods_in_renewals():
    assert str(P("帮我把秋粮收购专班延期到月底").slots["period"]) == "2026-12-31"
    assert str(P("秋粮群延期一个月").slots["period"]) == "+1m"
    assert str(P("秋粮专班往后延到一月底吧").slots["period"]) == "2027-01-31"
    assert str(P("续期 三十天 秋粮收购专班").slots["period"]) == "+30d"
    assert P("秋粮收购专班延期").slots.get("period") is None


@pytest.mark.parametrize("text", [
    "延期 秋粮收购专班 30天", "秋粮收购专班延期30天", "30天 秋粮收购专班 延期", "秋粮收购专班 延长 30天",
    "秋粮收购专班再用30天", "续期秋粮收购专班30天", "秋粮收购专班 顺延 30天", "@群治助手 秋粮收购专班续期30天",
    "秋糧收購專班續期30天", "秋粮收购专班，续期30天！", "秋粮收购专班续期３０天", "  秋粮收购专班   续期  30天 🙏",
    "续其秋粮收购专班30天", "秋粮收购专班廷期30天",
])
def test_verbs_anywhere_and_every_spelling(text):
    p = P(text)
    assert p.intent == "renew" and p.group == "秋粮收购专班" and str(p.slots["period"]) == "+30d", (text, p)


@pytest.mark.parametrize("text,intent", [
    ("完成 秋粮收购专班", "done"), ("结束 秋粮收购专班", "done"), ("秋粮收购专班可以解散", "done"),
    ("保留 秋粮收购专班 还要用", "keep"), ("秋粮收购专班别解散", "keep"), ("秋粮收购专班还要用", "keep"),
    ("恢复 秋粮收购专班", "restore"), ("找回秋粮收购专班", "restore"),
    ("合并 秋粮收购专班 到 防汛群", "merge"), ("秋粮收购专班并入防汛群", "merge"), ("秋粮收购专班并到防汛群", "merge"),
    ("保护 秋粮收购专班", "protect"), ("取消保护 秋粮收购专班", "unprotect"), ("已解散 秋粮收购专班", "confirm_order"),
    ("这个群没用 秋粮收购专班", "useless"), ("看板", "dashboard"), ("撤销", "undo"), ("继续", "continue"),
    ("确认", "confirm"), ("重", "pulse"), ("2", "choose"),
])
def test_synonyms(text, intent):
    assert P(text).intent == intent, text


def test_a_verb_inside_a_name_is_no_verb():
    p = P("恢复 灾后恢复重建专班")
    assert p.intent == "restore" and p.group == "灾后恢复重建专班"
    p = P("完成返乡人员报备群")
    assert p.intent == "done" and p.group == "返乡人员报备群"
    p = P("人口普查登记群延期一个月")
    assert p.intent == "renew" and p.group == "人口普查登记群"
    p = P("环境保护专班延期一个月")
    assert p.intent == "renew" and p.group == "环境保护专班"


def test_merge_source_and_target():
    for text in ("把防火巡查群并到防汛群", "合并 防火巡查群 到 防汛群", "防火巡查群合并到防汛群",
                 "将防火巡查群并入防汛群", "把防火巡查群和防汛群合并", "合併 防火巡查群 到 防汛群"):
        p = P(text)
        assert (p.intent, p.slots["group"], p.slots["target"]) == ("merge", "防火巡查群", "防汛群"), text
    assert P("把防火巡查群并到防汛群").consequential


def test_keep_reason():
    assert P("保留 防汛抗旱群 汛期前还要用").slots == {"group": "防汛抗旱群", "reason": "汛期前还要用"}
    assert P("防汛抗旱群别解散，明年汛期还得用").slots["reason"] == "明年汛期还得用"
    assert P("保留防汛抗旱群，理由是汛期还要调度").slots["reason"] == "汛期还要调度"
    assert P("保留 防汛抗旱群").slots["reason"] is None


def test_this_group():
    for text in ("这个群延期一个月", "本群续期30天", "续期30天"):
        p = P(text)
        assert p.intent == "renew" and p.group is None and p.this_group, text
    p = P("这个群没用")
    assert p.intent == "useless" and p.group is None and p.this_group


def test_alone_words_mean_something_else_alone():
    assert P("不用了").intent == "cancel"
    assert P("秋粮专班不用了").intent == "done"
    assert P("完成").intent == "confirm"


def test_pulse_and_choice():
    assert P("3").slots == {"number": 3}
    assert P("第二个").slots == {"number": 2}
    assert P("负担很重").slots == {"value": 3}
    assert P("适中").slots == {"value": 2}
    assert P("轻").slots == {"value": 1}
    assert P("重点工作要抓紧") is None  # 重 in a sentence is no answer


def test_report_text():
    p = P("反映 村里要求每天在群里上传入户走访照片")
    assert p.intent == "report" and p.slots["text"] == "村里要求每天在群里上传入户走访照片"
    assert P("这个群没用 招商引资信息群").intent == "useless"


@pytest.mark.parametrize("text", [
    "收到", "好的", "收到，马上落实！", "👍", "[强]", "已阅", "领导辛苦了", "明天上午九点在三楼会议室开会",
    "本周完成入户走访120户", "请大家及时登记返乡人员信息", "城关镇秋粮收购已完成85%", "已完成", "", "   ",
    "收到，保证完成任务", "请各村于本周五前上报秋粮收购进度",
])
def test_not_commands(text):
    assert P(text) is None, text


def test_the_pre_filter_skips_work_text_without_any_phrase():
    assert not may_be_command("请各村于本周五前上报秋粮收购进度，并做好统计工作，谢谢大家配合")
    assert may_be_command("请帮我把秋粮收购专班延期到月底，谢谢，辛苦了")
    assert may_be_command("請幫我把秋糧收購專班延期到月底，謝謝")
    assert may_be_command("麻烦把秋粮收购专班的期限续30天吧谢谢")


def test_registration_fields():
    p = P("报备 城关镇防汛、抗旱指挥群 用途:防汛抗旱指挥 类别:临时群 到期:30天")
    assert p.slots["name"] == "城关镇防汛、抗旱指挥群"
    assert p.slots["fields"] == {"name": "城关镇防汛、抗旱指挥群", "purpose": "防汛抗旱指挥", "category": "临时群",
                                 "expires": "30天"}
    assert P("报备 城关镇 秋粮收购 专班 用途:秋粮收购进度调度").slots["name"] == "城关镇 秋粮收购 专班"
    p = P("登記 秋糧收購專班 用途：秋糧收購調度 單位：城關鎮 類別：臨時群 到期：12月31日")
    assert p.slots["fields"] == {"name": "秋粮收购专班", "purpose": "秋粮收购调度", "unit": "城关镇",
                                 "category": "临时群", "expires": "12月31日"}


def test_split_fields():
    assert split_fields("城关镇防汛、抗旱指挥群 用途:防汛抗旱指挥 类别:临时群 到期:30天") == (
        ["城关镇防汛、抗旱指挥群"], {"purpose": "防汛抗旱指挥", "category": "临时群", "expires": "30天"})
    assert split_fields("城关镇 秋粮收购 专班 用途:秋粮调度") == (["城关镇 秋粮收购 专班"], {"purpose": "秋粮调度"})
    assert split_fields("秋粮收购专班(城关镇) 用途=调度 单位:城关镇") == (
        ["秋粮收购专班(城关镇)"], {"purpose": "调度", "unit": "城关镇"})
    assert split_fields("秋粮收购专班 临时群 12月31日") == (["秋粮收购专班", "临时群", "12月31日"], {})
    assert split_fields("名称:【冬季征兵专班】 用途是征兵 到期 2027年3月31日") == (
        [], {"name": "【冬季征兵专班】", "purpose": "征兵", "expires": "2027年3月31日"})
    assert split_fields("用途:调度 类别:临时群 到月底") == ([], {"purpose": "调度", "category": "临时群"})[:1] + (
        {"purpose": "调度", "category": "临时群", "expires": "到月底"},)
    assert split_fields("") == ([], {})


def test_own_tokenizer_leaves_the_shared_one_alone():
    import jieba

    from governance.ritual import is_ritual
    from governance.text import name_tokens

    before = name_tokens.__wrapped__("城关镇别解散还要再用群")
    P("秋粮群还要再用一个月，别解散")
    assert tokenizer() is not jieba.dt
    jieba.lcut("初始化")
    assert "还要再用" not in jieba.dt.FREQ and "还要再用" in tokenizer().FREQ
    assert name_tokens.__wrapped__("城关镇别解散还要再用群") == before
    assert is_ritual("收到") and not is_ritual("秋粮群延期一个月")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="秋粮收购专班延期续完成保留恢复合并到把群的了30天个月这@助手 ，,()【】😀續", max_size=30))
def test_never_invents_a_name(text):
    """Whatever comes in, a group reference is made of what the person wrote."""
    p = parse(text, today=TODAY)
    if p is None:
        return
    written = set(clean(text))
    for key in ("group", "target", "name"):
        v = p.slots.get(key)
        if v:
            assert set(v) <= written | {" "}, (text, key, v)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_is_none(text):
    p = parse(text, today=TODAY)
    assert p is None or p.intent


def test_an_impossible_date_is_reported():
    p = P("秋粮收购专班延期到2月30日")
    assert p.intent == "renew" and p.slots.get("period") is None and "不是有效日期" in p.slots["period_error"]


def test_results_are_not_shared_between_calls():
    a = P("报备 秋粮收购专班 用途:调度")
    a.slots["fields"]["name"] = "改掉"
    assert P("报备 秋粮收购专班 用途:调度").slots["fields"]["name"] == "秋粮收购专班"
