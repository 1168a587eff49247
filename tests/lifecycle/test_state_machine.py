"""The lifecycle through every transition, with the audit trail checked at each step."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from sqlalchemy import select

from storage import audit
from governance.lifecycle import LifecycleError
from platforms.capabilities import table
from scheduler.lifecycle import sweep
from storage.lifecycle import Step, apply_step, confirm_bridge_dissolution, load_facts, mark_warning_sent
from storage.models import Group, OutboxMessage
from tests.lifecycle.helpers import NOW, group, notices, say, seed_people, trail

WARNING = ("您的“防汛抗旱群”已45天没有工作消息（其间只有“收到”“签到”等留痕消息，累计4条）。"
           "如无异议，将于11月30日解散，解散后30天内可恢复。需要保留请回复“保留 防汛抗旱群 理由”。")


def _seed(db, **kw):
    with db.session() as s:
        seed_people(s)
        group(s, "g1", "防汛抗旱群", platform="wechat", **kw)


def _status(db, gid="g1"):
    with db.session() as s:
        return s.get(Group, gid).status


def test_warn_dissolve_restore_warn_dissolve_purge(runtime):
    db, settings = runtime.db, runtime.settings
    _seed(db)
    r = sweep(db, NOW, settings, apply=True)
    assert [(x.group_id, x.action, x.result) for x in r.steps] == [("g1", "warn", "done")]
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.warned_at, g.warning_sent_at) == ("warned", NOW, None)
        [n] = notices(s, "warning")
        assert (n.person_id, n.urgent, n.group_id, n.text) == ("owner1", True, "g1", WARNING)
    # not sent yet: never dissolved, however long we wait
    assert [x.action for x in sweep(db, NOW + timedelta(days=20), settings, apply=True).steps] == []
    assert _status(db) == "warned"
    sent = NOW + timedelta(days=1)
    with db.session() as s:
        assert mark_warning_sent(s, "g1", sent) is True
        assert mark_warning_sent(s, "g1", sent + timedelta(hours=1)) is False
    # grace counts from delivery: one minute short of 7 days → nothing
    assert sweep(db, sent + timedelta(days=7, minutes=-1), settings, apply=True).steps == []
    t = sent + timedelta(days=7)
    r = sweep(db, t, settings, apply=True)
    assert [(x.action, x.method, x.result) for x in r.steps] == [("dissolve", "bridge", "pending")]
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.dissolve_method) == ("dissolving", "bridge")
        iid = g.dissolve_state["instruction_id"]
        [o] = s.execute(select(OutboxMessage).where(OutboxMessage.channel == "bridge")).scalars().all()
        assert o.payload == {"type": "dissolve", "group_id": "g1", "instruction_id": iid, "platform": "wechat"}
        assert confirm_bridge_dissolution(s, "g1", t + timedelta(hours=1), settings) is True
        assert confirm_bridge_dissolution(s, "g1", t + timedelta(hours=2), settings) is False
        g = s.get(Group, "g1")
        assert (g.status, g.dissolved_at) == ("dissolved", t + timedelta(hours=1))
    # restore within the window
    replies = say(runtime, "owner1", "恢复 防汛抗旱群", t + timedelta(days=2))
    assert replies == ["已恢复“防汛抗旱群”的登记。该群在平台上已解散，如需继续使用请重新建群并报备。"]
    assert _status(db) == "active"
    # a restored group is left alone for keep_days, then the cycle starts again
    assert sweep(db, t + timedelta(days=10), settings, apply=True).steps == []
    t2 = t + timedelta(days=2 + 91)
    assert [x.action for x in sweep(db, t2, settings, apply=True).steps] == ["warn"]
    with db.session() as s:
        mark_warning_sent(s, "g1", t2)
    sweep(db, t2 + timedelta(days=7), settings, apply=True)
    with db.session() as s:
        confirm_bridge_dissolution(s, "g1", t2 + timedelta(days=7), settings)
    assert sweep(db, t2 + timedelta(days=36, hours=23), settings, apply=True).steps == []
    r = sweep(db, t2 + timedelta(days=37), settings, apply=True)
    assert [(x.action, x.result) for x in r.steps] == [("purge", "done")]
    assert _status(db) == "purged"
    # restoring after the window is refused and changes nothing
    assert say(runtime, "owner1", "恢复 g1", t2 + timedelta(days=38)) == ["“防汛抗旱群”群当前状态为“已清除”，不能恢复。"]
    with db.session() as s:
        assert trail(s, "g1") == [
            ("warn", "system:sweep", "已45天没有工作消息（最后一条工作消息在2026-10-09）；"
                                     "其间只有“收到”“签到”等留痕消息（累计留痕4条，占全部40条的10%；最近一条在2天前）；"
                                     "活动来源：全部消息"),
            ("warning_sent", "system:outbox", "解散提醒已送达"),
            ("dissolve_intent", "system:sweep", trail(s, "g1")[2][2]),
            ("dissolve", "system:bridge", trail(s, "g1")[2][2]),
            ("restore", "owner1", "恢复已解散的群"),
            ("warn", "system:sweep", trail(s, "g1")[5][2]),
            ("warning_sent", "system:outbox", "解散提醒已送达"),
            ("dissolve_intent", "system:sweep", trail(s, "g1")[7][2]),
            ("dissolve", "system:bridge", trail(s, "g1")[7][2]),
            ("purge", "system:sweep", "解散满30天，不再可恢复"),
        ]
        assert trail(s, "g1")[2][2].startswith("已53天没有工作消息")
        assert audit.verify(s).ok


def _warned_and_sent(db, settings):
    sweep(db, NOW, settings, apply=True)
    with db.session() as s:
        assert mark_warning_sent(s, "g1", NOW)


def test_keep_vetoes_warning_and_repeated_keeps_reach_commission(runtime):
    db, settings = runtime.db, runtime.settings
    _seed(db)
    _warned_and_sent(db, settings)
    at = NOW + timedelta(days=3)
    assert say(runtime, "owner1", "保留 防汛抗旱群 汛期前还要用", at) == [
        "已保留“防汛抗旱群”至2027年2月24日。理由已记录。解散提醒已撤销。"]
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.keep_count, g.kept_until, g.warning_sent_at) == ("active", 1, at + timedelta(days=90), None)
        assert notices(s, "repeated_keep") == []
    # past the grace period: nothing happens to a kept group
    assert sweep(db, NOW + timedelta(days=30), settings, apply=True).steps == []
    at2 = NOW + timedelta(days=100)
    assert say(runtime, "owner1", "保留 防汛抗旱群 明年汛期", at2) == [
        "已保留“防汛抗旱群”至6月1日。理由已记录。这是第2次保留，已同步纪委监委。"]
    with db.session() as s:
        [n] = notices(s, "repeated_keep")
        assert n.person_id == "comm1"
        assert n.text == "“防汛抗旱群”（城关镇，群主李主任）第2次被保留，理由：明年汛期"
        assert [a for a in trail(s, "g1") if a[0] == "keep"] == [("keep", "owner1", "汛期前还要用"),
                                                                 ("keep", "owner1", "明年汛期")]
        assert audit.verify(s).ok


def test_keep_needs_a_reason_and_the_owner(runtime):
    db, settings = runtime.db, runtime.settings
    _seed(db)
    _warned_and_sent(db, settings)
    assert say(runtime, "owner1", "保留 防汛抗旱群", NOW) == ["请写上保留理由，例如“保留 防汛抗旱群 汛期前还要用”。"]
    assert say(runtime, "stranger", "保留 防汛抗旱群 我还要用", NOW) == ["只有群主（李主任）或管理员可以操作这个群。"]
    assert _status(db) == "warned"


def test_renew_vetoes_warning(runtime):
    db, settings = runtime.db, runtime.settings
    _seed(db, temporary=True, idle_days=2, expires_at=date(2026, 11, 20))
    _warned_and_sent(db, settings)
    with db.session() as s:
        # temporary group: the members are told too, but only the owner's notice starts the grace period
        assert [n.person_id for n in notices(s, "warning")] == ["owner1"]
        assert sorted(n.person_id for n in notices(s, "warning_member")) == ["m1", "m2", "m3"]
        owner_text = [n.text for n in notices(s, "warning") if n.person_id == "owner1"][0]
        assert owner_text == ("您的“防汛抗旱群”已于11月20日到期。如无异议，将于11月30日解散，解散后30天内可恢复。"
                              "需要保留请回复“保留 防汛抗旱群 理由”。如需延期请回复“续期 防汛抗旱群 30天”。")
    [reply] = say(runtime, "owner1", "续期 防汛抗旱群 30天", NOW + timedelta(days=1))
    assert "解散提醒已撤销" in reply
    assert sweep(db, NOW + timedelta(days=8), settings, apply=True).steps == []
    assert _status(db) == "active"
    with db.session() as s:
        assert [a[:2] for a in trail(s, "g1")] == [("warn", "system:sweep"), ("warning_sent", "system:outbox"),
                                                   ("renew", "owner1")]


def test_activity_withdraws_a_warning(runtime):
    db, settings = runtime.db, runtime.settings
    _seed(db)
    _warned_and_sent(db, settings)
    with db.session() as s:
        s.get(Group, "g1").last_work_at = NOW + timedelta(days=1)
    r = sweep(db, NOW + timedelta(days=8), settings, apply=True)
    assert [(x.action, x.result) for x in r.steps] == [("unwarn", "done")]
    assert _status(db) == "active"


def test_protected_group_is_never_warned_or_dissolved(runtime):
    db, settings = runtime.db, runtime.settings
    with db.session() as s:
        seed_people(s)
        group(s, "p1", "机关群", idle_days=400, protected=True)
    for days in (0, 8, 40):
        assert sweep(db, NOW + timedelta(days=days), settings, apply=True).steps == []
    assert _status(db, "p1") == "active"
    # protection is checked again at apply time: a stale plan cannot dissolve it
    with db.session() as s:
        group(s, "g1", "防汛抗旱群", platform="wechat")
    _warned_and_sent(db, settings)
    with db.session() as s:
        s.get(Group, "g1").protected = True  # protected behind the bot's back after the warning went out
    with db.session() as s:  # a stale plan still says "dissolve": the apply step re-checks
        with pytest.raises(LifecycleError, match="受保护群不能解散"):
            at = NOW + timedelta(days=8)
            apply_step(s, Step("g1", "防汛抗旱群", "dissolve"), [], load_facts(s, at, settings), at, settings,
                       table(settings))
    assert _status(db) == "warned"
    # the sweep withdraws the warning of a protected group instead of dissolving it
    r = sweep(db, NOW + timedelta(days=8), settings, apply=True)
    assert [(x.action, x.result) for x in r.steps] == [("unwarn", "done")]
    assert _status(db) == "active"


def test_protect_commands_are_for_admins(runtime):
    db, settings = runtime.db, runtime.settings
    _seed(db)
    _warned_and_sent(db, settings)
    assert say(runtime, "owner1", "保护 防汛抗旱群", NOW) == ["只有管理员或“城关镇”的单位管理员可以进行这项操作。"]
    assert _status(db) == "warned"
    assert say(runtime, "admin1", "保护 防汛抗旱群", NOW) == [
        "已将“防汛抗旱群”设为受保护群，不会被自动提醒或解散。撤销请回复“取消保护 防汛抗旱群”。"]
    assert sweep(db, NOW + timedelta(days=8), settings, apply=True).steps == []
    with db.session() as s:
        g = s.get(Group, "g1")
        assert (g.status, g.protected) == ("active", True)
    assert say(runtime, "admin1", "取消保护 防汛抗旱群", NOW + timedelta(days=9)) == [
        "已取消“防汛抗旱群”的受保护状态，今后按普通群治理（长期没有工作消息会先提醒群主）。"]
    with db.session() as s:
        assert [a[:2] for a in trail(s, "g1")][-2:] == [("protect", "admin1"), ("unprotect", "admin1")]
        assert audit.verify(s).ok
