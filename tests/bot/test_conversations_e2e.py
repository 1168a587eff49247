"""Issue 13 end to end: multi-turn conversations through the real adapters (the WeCom app's
encrypted XML callback, the AI bot's encrypted JSON callback, the bridge's signed JSON), checking
the state afterwards (expiry dates, owners, statuses), not only the replies."""
from __future__ import annotations

import json
from datetime import date, timedelta

from sqlalchemy import select

from storage.models import Conversation, Group, Membership, Person
from tests.bot.helpers import WeComSim, aibot_post, bridge_post, decrypt_xml_reply

GROUPS = [  # id, platform, name, unit, owner, expires
    ("g1", "wecom", "秋粮收购专班（城关镇）", "城关镇", "zhangsan", date(2026, 12, 31)),
    ("g2", "wecom", "冬季征兵专班", "城关镇", "zhangsan", date(2026, 12, 20)),
    ("g3", "wecom", "征兵宣传群", "容美镇", "zhangsan", date(2026, 12, 15)),
    ("g5", "wecom", "防火巡查群", "城关镇", "lisi", date(2026, 12, 10)),
]


def seed(db, clock, groups=GROUPS, persons=(("zhangsan", "张镇长"), ("lisi", "李干事"))):
    now = clock()
    with db.session() as s:
        for pid, name in persons:
            s.add(Person(id=pid, name=name, unit="城关镇", role="cadre", created_at=now))
        for gid, platform, name, unit, owner, expires in groups:
            s.add(Group(id=gid, platform=platform, name=name, unit=unit, owner_id=owner, category="临时群",
                        temporary=True, expires_at=expires, status="active", source="ledger",
                        created_at=now - timedelta(days=30), first_seen_at=now - timedelta(days=30),
                        registered_at=now - timedelta(days=30), updated_at=now))
        s.flush()
        s.add(Membership(group_id="g5", person_id="zhangsan", joined_at=now) if any(g[0] == "g5" for g in groups)
              else Membership(group_id=groups[0][0], person_id=groups[0][4], joined_at=now))


def get(db, gid) -> Group:
    with db.session() as s:
        return s.get(Group, gid)


def conv(db, pid):
    with db.session() as s:
        return s.get(Conversation, pid)


# --- WeCom app (encrypted XML, passive replies) ------------------------------------------------
def _wecom(sim, sender, text, msg_id) -> str:
    r = sim.say(sender, text, msg_id)
    assert r.status_code == 200, r.text
    if not r.text:
        return ""
    plain = decrypt_xml_reply(r.text)
    start = plain.index("<Content><![CDATA[") + len("<Content><![CDATA[")
    return plain[start:plain.index("]]></Content>")]


def test_wecom_choice_confirmation_and_undo(client, clock, db):
    seed(db, clock)
    sim = WeComSim(client, clock)
    reply = _wecom(sim, "zhangsan", "征兵群续期一个月", "c1")
    assert reply.startswith("有两个群像“征兵群”，回复序号：")
    assert _wecom(sim, "zhangsan", "1", "c2") == "已把“冬季征兵专班（城关镇）”延至2027年1月20日。"
    assert get(db, "g2").expires_at == date(2027, 1, 20) and get(db, "g3").expires_at == date(2026, 12, 15)

    reply = _wecom(sim, "zhangsan", "秋粮那个群任务完成了，可以解散了", "c3")
    assert reply.startswith("是“秋粮收购专班（城关镇）”吗？") and get(db, "g1").done_at is None
    assert "已标记任务完成" in _wecom(sim, "zhangsan", "确认", "c4")
    assert get(db, "g1").done_at is not None
    assert "撤销" in _wecom(sim, "zhangsan", "撤销", "c5")
    assert get(db, "g1").done_at is None
    # a retry of an answered message changes nothing and is answered the same
    assert _wecom(sim, "zhangsan", "1", "c2") == "已把“冬季征兵专班（城关镇）”延至2027年1月20日。"
    assert get(db, "g2").expires_at == date(2027, 1, 20)


def test_wecom_registration_with_an_interruption_and_a_refusal(client, clock, db):
    seed(db, clock)
    sim = WeComSim(client, clock)
    assert _wecom(sim, "zhangsan", "我要登记一个群", "r1") == "好的，请告诉我群名称。"
    reply = _wecom(sim, "zhangsan", "秋粮收购专班 续期 30天", "r2")
    assert reply.endswith("您还有一个报备没填完，回复“继续”接着填。")
    assert get(db, "g1").expires_at == date(2027, 1, 30)
    assert _wecom(sim, "zhangsan", "继续", "r3") == "好的，请告诉我群名称。"
    assert "做什么用" in _wecom(sim, "zhangsan", "我的群", "r4")
    _wecom(sim, "zhangsan", "同事交流", "r5")
    assert _wecom(sim, "zhangsan", "临时群，到月底", "r6").startswith("已登记：我的群（临时群，城关镇），11月30日到期。")
    with db.session() as s:
        g = s.execute(select(Group).where(Group.name == "我的群")).scalar_one()
        assert (g.owner_id, g.expires_at, g.status) == ("zhangsan", date(2026, 11, 30), "active")
    refused = _wecom(sim, "zhangsan", "报备 防火巡查群 用途:巡查", "r7")
    assert refused.startswith("“防火巡查群”已由李干事登记") and conv(db, "zhangsan") is None
    assert get(db, "g5").owner_id == "lisi"
    assert _wecom(sim, "zhangsan", "取消", "r8") == "现在没有进行中的操作，不用取消。"


# --- AI bot (encrypted JSON, stream replies) -----------------------------------------------------
def _aibot(client, clock, sender, text, msgid, *, chat: str | None = None) -> str:
    from tests.bot.test_aibot import _decrypt_reply

    data = {"msgid": msgid, "aibotid": "AIBOTID", "chattype": "group" if chat else "single",
            "from": {"userid": sender}, "msgtype": "text", "text": {"content": text}}
    if chat:
        data.update(chatid=chat, response_url="https://example.invalid/resp")
    r = aibot_post(client, clock, data, nonce="n" + msgid)
    assert r.status_code == 200, r.text
    return _decrypt_reply(r.json(), clock)["stream"]["content"] if r.content else ""


def test_aibot_missing_period_then_the_answer_and_a_group_mention(client, clock, db):
    groups = [("wrkA", "aibot", "秋粮收购专班（城关镇）", "城关镇", "zhangsan", date(2026, 12, 31)),
              ("wrkB", "aibot", "冬季征兵专班", "城关镇", "zhangsan", date(2026, 12, 20))]
    seed(db, clock, groups)
    assert "延到哪天" in _aibot(client, clock, "zhangsan", "续期 秋粮专班", "a1")
    assert _aibot(client, clock, "zhangsan", "两个月", "a2") == "已把“秋粮收购专班（城关镇）”延至2027年2月28日。"
    assert get(db, "wrkA").expires_at == date(2027, 2, 28) and conv(db, "zhangsan") is None
    # said inside the group, with the mention and traditional characters: that group
    reply = _aibot(client, clock, "zhangsan", "@群治助手 續期 30天", "a3", chat="wrkB")
    assert reply == "已把“冬季征兵专班”延至2027年1月19日。"
    assert get(db, "wrkB").expires_at == date(2027, 1, 19)


# --- bridge (signed JSON, replies in the response) --------------------------------------------------
def _bridge(client, clock, id_, text, *, group="wxg-1", mentioned=True) -> list[str]:
    e = {"id": id_, "type": "message", "platform": "wechat", "group_id": group, "group_name": "城关镇秋粮群",
         "sender_id": "wx-zhang", "member_ids": [], "text": text, "at": "2026-11-23T10:00:00+08:00",
         "mentioned_bot": mentioned}
    r = bridge_post(client, clock, e)
    assert r.status_code == 200, r.text
    return [x["text"] for x in r.json()["replies"]]


def test_bridge_keep_then_renew_by_a_loose_name_then_undo(client, clock, db):
    groups = [("wechat:wxg-1", "wechat", "城关镇秋粮群", "城关镇", "wechat:wx-zhang", date(2026, 12, 31)),
              ("wechat:wxg-2", "wechat", "防汛抗旱群", "城关镇", "wechat:wx-zhang", date(2026, 12, 31))]
    seed(db, clock, groups, persons=(("wechat:wx-zhang", "张镇长"),))
    [reply] = _bridge(client, clock, "b1", "@群治 防汛群还要用，别解散")
    assert reply.startswith("已保留“防汛抗旱群（城关镇）”至") and get(db, "wechat:wxg-2").kept_until is not None
    [reply] = _bridge(client, clock, "b2", "@群治 秋粮群延期一个月")
    assert reply == "已把“城关镇秋粮群”延至2027年1月31日。"
    assert get(db, "wechat:wxg-1").expires_at == date(2027, 1, 31)
    [reply] = _bridge(client, clock, "b3", "@群治 撤销")
    assert reply.startswith("已撤销对“城关镇秋粮群”的续期")
    assert get(db, "wechat:wxg-1").expires_at == date(2026, 12, 31)
    assert json.dumps(_bridge(client, clock, "b4", "收到", mentioned=False)) == "[]"
