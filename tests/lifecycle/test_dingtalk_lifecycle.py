"""End to end on DingTalk scene groups, through the scheduled jobs and the fake DingTalk: groups
the bot created are found dead, warned, soft-dissolved (notice, members removed, renamed), one is
restored (members re-added, name back) and the other purged after the restore window (the real
disband), with the audit chain verifying."""
from __future__ import annotations

from datetime import timedelta

import pytest

from bot.runtime import Runtime
from platforms.dingtalk.sender import DingTalkSender
from scheduler import jobs
from storage import audit
from storage.lifecycle import mark_warning_sent
from storage.models import Group
from tests.conftest import make_settings
from tests.fakes.fake_dingtalk import APP_KEY, APP_SECRET
from tests.lifecycle.helpers import NOW, group, say, seed_people


def test_scene_groups_dissolved_restored_and_purged(db, clock, fake_dingtalk):
    settings = make_settings(database_url=db.url, wecom_corp_id="", dingtalk_app_key=APP_KEY,
                             dingtalk_app_secret=APP_SECRET, dingtalk_api_base=fake_dingtalk.url,
                             dingtalk_oapi_base=fake_dingtalk.url, dingtalk_scene_template_id="tpl-1")
    clock.set(NOW)
    rt = Runtime(settings, db=db, clock=clock)
    sender = DingTalkSender(settings)
    ids = {name: sender.group_create(name, "owner1", ["m1", "m2", "m3"]) for name in ("秋粮收购专班", "防汛值守专班")}
    with db.session() as s:
        seed_people(s)
        for name, cid in ids.items():
            group(s, cid, name, platform="dingtalk", activity_source="mentions")
    # found dead and warned
    jobs.refresh_findings(rt)
    jobs.sweep(rt)
    with db.session() as s:
        for cid in ids.values():
            assert s.get(Group, cid).status == "warned"
            assert mark_warning_sent(s, cid, NOW)
    # the grace period passes: soft dissolution on the platform
    clock.set(NOW + timedelta(days=settings.grace_days, hours=1))
    jobs.sweep(rt)
    jobs.advance_pending(rt)
    for name, cid in ids.items():
        g = fake_dingtalk.groups[cid]
        assert (g.title, g.members, g.disbanded) == (f"[已解散]{name}", {"owner1"}, False)
        assert any(m.get("group") == cid for m in fake_dingtalk.messages)  # the final notice
    with db.session() as s:
        assert {s.get(Group, cid).status for cid in ids.values()} == {"dissolved"}
    # one is restored within the window
    back = ids["秋粮收购专班"]
    clock.advance(days=3)
    assert "已恢复" in say(rt, "owner1", "恢复 秋粮收购专班", clock())[0]
    jobs.advance_pending(rt)
    g = fake_dingtalk.groups[back]
    assert (g.title, g.members) == ("秋粮收购专班", {"owner1", "m1", "m2", "m3"})
    # the other is purged once the restore window is over: the real disband
    gone = ids["防汛值守专班"]
    clock.advance(days=settings.restore_days + 1)
    jobs.deadlines(rt)
    jobs.advance_pending(rt)
    assert fake_dingtalk.groups[gone].disbanded and not fake_dingtalk.groups[back].disbanded
    assert fake_dingtalk.called("/v1.0/im/chat/scenegroup/disband")[-1].json == {"openConversationId": gone}
    with db.session() as s:
        assert s.get(Group, back).status == "active"
        assert s.get(Group, gone).status == "purged"
        assert audit.verify(s).ok
