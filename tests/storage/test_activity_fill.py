"""groups.activity_source is filled from each platform's declared Capabilities.activity in bulk
(one UPDATE per platform value), never overwriting a value already set; the sweep does it first."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from platforms.capabilities import default_activity
from platforms.registry import all_platforms
from storage import repo
from storage.activity import fill_activity_sources
from storage.models import Group
from tests.lifecycle.helpers import NOW, group, seed_people


def test_declared_activity_of_each_platform():
    declared = {p.name: p.capabilities.activity for p in all_platforms()}
    assert {k: declared[k] for k in ("wecom", "aibot", "bridge", "local")} == {
        "wecom": "mentions", "aibot": "mentions", "bridge": "full", "local": "full"}
    assert default_activity("wechat") == "full"  # a bridged platform's groups
    assert default_activity("wecom") == "mentions" and default_activity(None) is None


def test_fill_sets_defaults_and_keeps_set_values(db):
    with db.session() as s:
        for gid, platform in (("w1", "wecom"), ("w2", "wecom"), ("b1", "wechat"), ("l1", "ledger"),
                              ("a1", "archive")):
            repo.ensure_group(s, group_id=gid, platform=platform, at=NOW, name=gid, source="chat")
        repo.ensure_group(s, group_id="w3", platform="wecom", at=NOW, name="w3", source="chat")
        s.flush()
        s.get(Group, "w3").activity_source = "counts"
    with db.session() as s:
        assert fill_activity_sources(s, default_activity) == 5
    with db.session() as s:
        got = dict(s.execute(select(Group.id, Group.activity_source)).all())
        assert got == {"w1": "mentions", "w2": "mentions", "b1": "full", "l1": "none", "a1": "archive",
                       "w3": "counts"}
        assert fill_activity_sources(s, default_activity) == 0  # nothing left unset


def test_sweep_fills_before_the_findings(runtime):
    from scheduler.lifecycle import sweep
    from storage.models import FindingRecord as Finding

    with runtime.db.session() as s:
        seed_people(s)
        group(s, "g1", "防汛抗旱群")
    sweep(runtime.db, NOW, runtime.settings, apply=True)
    with runtime.db.session() as s:
        assert s.get(Group, "g1").activity_source == "mentions"
        [f] = [f for f in s.execute(select(Finding)).scalars() if f.kind == "zombie"]
        assert "活动来源：仅@机器人的消息" in (f.reasons or [])
