"""The lifecycle's platform steps through GroupOps on a platform other than WeCom (the fake group
platform over HTTP, registered like Feishu or DingTalk would be): soft dissolve, restore, dissolve
again, purge with the real disband; and the purge where the platform has no disband (WeCom)."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from platforms.wecom.sender import WeComSender
from scheduler.lifecycle import group_senders, sweep
from storage import audit
from storage.lifecycle import mark_warning_sent
from storage.models import Group
from tests.fakes import fake_groups
from tests.lifecycle.helpers import NOW, group, say, seed_people, trail

GID = "testgroups:c1"  # a bridge-style scoped id: the platform is sent its own id "c1"
MEMBERS = ("owner1", "testgroups:u1", "testgroups:u2", "testgroups:u3")


def _warned(db, settings, at, gid=GID, platform="testgroups"):
    with db.session() as s:
        seed_people(s)
        group(s, gid, "秋粮收购专班", platform=platform, members=MEMBERS if platform == "testgroups"
              else ("owner1", "m1", "m2", "m3"))
    sweep(db, at, settings, apply=True)
    with db.session() as s:
        assert mark_warning_sent(s, gid, at)


def _group(db, gid=GID) -> Group:
    with db.session() as s:
        g = s.get(Group, gid)
        s.expunge(g)
        return g


def test_group_senders_come_from_the_registry(group_platform, settings):
    ops = group_senders(settings)
    assert isinstance(ops["testgroups"], fake_groups.HttpGroupSender)
    assert "wecom" in ops  # WeComSender implements GroupOps over appchat
    assert "bridge" not in ops and "aibot" not in ops  # no group operations there


def test_soft_dissolve_restore_and_purge_through_the_platform(runtime, group_platform):
    fake, db, settings = group_platform, runtime.db, runtime.settings
    fake.add_group("c1", "秋粮收购专班", "o1", ["owner1", "u1", "u2", "u3"])
    _warned(db, settings, NOW)
    due = NOW + timedelta(days=7)
    senders = group_senders(settings)
    r = sweep(db, due, settings, apply=True, senders=senders)
    assert [(x.action, x.method, x.result) for x in r.steps] == [("dissolve", "appchat", "pending"),
                                                                 ("resume", "appchat", "done")]
    assert fake.groups["c1"] == {"name": "[已解散]秋粮收购专班", "owner": "o1", "members": ["owner1"]}
    [notice] = fake.calls_to("POST", "groups/c1/notice")
    assert "恢复" in notice.json["text"]
    assert fake.calls_to("POST", "groups/c1/remove")[0].json == {"members": ["u1", "u2", "u3"]}
    # restore within the window: the platform's own ids go back
    assert say(runtime, "owner1", "恢复 秋粮收购专班", due + timedelta(days=2))[0].startswith("已恢复")
    r = sweep(db, due + timedelta(days=2), settings, apply=True, senders=senders)
    assert [(x.action, x.result) for x in r.steps] == [("resume", "done")]
    assert sorted(fake.groups["c1"]["members"]) == ["owner1", "u1", "u2", "u3"]
    assert fake.groups["c1"]["name"] == "秋粮收购专班"
    # dissolved again later, then purged after restore_days: the real disband
    t2 = due + timedelta(days=2 + 91)
    assert [x.action for x in sweep(db, t2, settings, apply=True, senders=senders).steps] == ["warn"]
    with db.session() as s:
        assert mark_warning_sent(s, GID, t2)
    sweep(db, t2 + timedelta(days=7), settings, apply=True, senders=senders)
    assert _group(db).status == "dissolved"
    assert not fake.calls_to("DELETE")
    t3 = t2 + timedelta(days=7 + settings.restore_days)
    r = sweep(db, t3, settings, apply=True, senders=senders)
    assert [(x.action, x.result) for x in r.steps] == [("purge", "pending"), ("resume", "done")]
    assert "c1" not in fake.groups
    assert len(fake.calls_to("DELETE", "groups/c1")) == 1
    g = _group(db)
    assert g.status == "purged"
    assert g.status_reason == "解散满30天；已在平台上解散"
    assert g.dissolve_state["purge"]["outcome"] == "disbanded" and "members" not in g.dissolve_state
    # nothing more, ever
    assert sweep(db, t3 + timedelta(days=1), settings, apply=True, senders=senders).steps == []
    assert len(fake.calls_to("DELETE")) == 1
    with db.session() as s:
        actions = [a for a, _, _ in trail(s, GID)]
        assert actions[-2:] == ["purge_intent", "purge"]
        assert actions.count("dissolve") == 2 and "restore_done" in actions
        assert audit.verify(s).ok


def _dissolved(runtime, fake):
    db, settings = runtime.db, runtime.settings
    fake.add_group("c1", "秋粮收购专班", "o1", ["owner1", "u1", "u2", "u3"])
    _warned(db, settings, NOW)
    due = NOW + timedelta(days=7)
    sweep(db, due, settings, apply=True, senders=group_senders(settings))
    assert _group(db).status == "dissolved"
    return due + timedelta(days=settings.restore_days)


def test_purge_of_a_group_already_gone_on_the_platform_counts_as_done(runtime, group_platform):
    at = _dissolved(runtime, group_platform)
    del group_platform.groups["c1"]  # someone disbanded it by hand meanwhile
    sweep(runtime.db, at, runtime.settings, apply=True, senders=group_senders(runtime.settings))
    g = _group(runtime.db)
    assert (g.status, g.dissolve_state["purge"]["outcome"]) == ("purged", "gone")
    assert g.status_reason == "解散满30天；平台上该群已不存在"


def test_purge_refused_by_the_platform_leaves_the_group_emptied_and_says_so(runtime, group_platform):
    at = _dissolved(runtime, group_platform)
    group_platform.fail_next(1, 400, "not_owner")
    r = sweep(runtime.db, at, runtime.settings, apply=True, senders=group_senders(runtime.settings))
    assert [(x.action, x.result) for x in r.steps] == [("purge", "pending"), ("resume", "error")]
    assert "群已清空成员并改名保留" in r.steps[1].detail
    g = _group(runtime.db)
    assert (g.status, g.dissolve_state["purge"]["outcome"]) == ("purged", "refused")
    assert g.status_reason == "解散满30天；平台拒绝解散，群已清空成员并改名保留"
    assert group_platform.groups["c1"]["name"] == "[已解散]秋粮收购专班"


def test_without_disband_the_purge_keeps_the_emptied_group_and_the_ledger_says_so(runtime, fake_wecom):
    settings = runtime.settings.model_copy(update={"wecom_api_base": fake_wecom.base_url})
    fake_wecom.chats["g1"] = {"chatid": "g1", "name": "秋粮收购专班", "owner": "owner1",
                              "userlist": ["owner1", "m1", "m2", "m3"]}
    db = runtime.db
    _warned(db, settings, NOW, gid="g1", platform="wecom")
    sender = WeComSender(settings)
    due = NOW + timedelta(days=7)
    sweep(db, due, settings, apply=True, senders={"wecom": sender})
    assert fake_wecom.chats["g1"]["name"] == "[已解散]秋粮收购专班"
    calls = len(fake_wecom.calls)
    r = sweep(db, due + timedelta(days=30), settings, apply=True, senders={"wecom": sender})
    assert [(x.action, x.result) for x in r.steps] == [("purge", "done")]
    assert len(fake_wecom.calls) == calls  # no platform call: WeCom cannot disband an appchat group
    g = _group(db, "g1")
    assert g.status == "purged"
    assert g.status_reason == "解散满30天；平台不能解散此群，群已清空成员并改名保留"
    with db.session() as s:
        assert trail(s, "g1")[-1] == ("purge", "system:sweep",
                                      "解散满30天，不再可恢复；平台不能解散此群，群已清空成员并改名保留")
        assert audit.verify(s).ok


def test_a_platform_without_purge_capability_is_never_asked_to_disband(runtime, group_platform, monkeypatch):
    monkeypatch.setattr(fake_groups.platform, "capabilities", replace(fake_groups.FULL, purge=False))
    at = _dissolved(runtime, group_platform)
    sweep(runtime.db, at, runtime.settings, apply=True, senders=group_senders(runtime.settings))
    assert not group_platform.calls_to("DELETE")
    assert _group(runtime.db).status_reason == "解散满30天；平台不能解散此群，群已清空成员并改名保留"


def test_no_sender_for_the_groups_platform_waits_and_says_which(runtime, group_platform):
    group_platform.add_group("c1", "秋粮收购专班", "o1", ["owner1", "u1"])
    _warned(runtime.db, runtime.settings, NOW)
    r = sweep(runtime.db, NOW + timedelta(days=7), runtime.settings, apply=True, senders={})
    assert [(x.action, x.result) for x in r.steps] == [("dissolve", "pending"), ("resume", "pending")]
    assert r.steps[1].detail == "解散：等待测试群平台的发送通道"
    assert not group_platform.calls
    assert _group(runtime.db).status == "dissolving"
