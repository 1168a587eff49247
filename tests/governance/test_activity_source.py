"""Every idle (zombie) finding names what the bot sees of the group, so "not seen" is never
mistaken for "silent"; the source is filled from the platform's declared default, cheaply."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from governance.model import GroupFacts
from governance.rules_activity import zombie

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)


def _facts(**kw) -> GroupFacts:
    base = GroupFacts(id="g1", name="防汛群", platform="wecom", owner_id="o", unit=None, category=None, purpose=None,
                      protected=False, registered=True, temporary=False, created_at=NOW - timedelta(days=200),
                      expires_at=None, done_at=None, status="active", last_work_at=NOW - timedelta(days=45),
                      last_message_at=None, message_count=0, ritual_count=0, member_ids=frozenset({"o", "a"}))
    return replace(base, **kw)


@pytest.mark.parametrize("code,line", [
    ("mentions", "活动来源：仅@机器人的消息"),
    ("full", "活动来源：全部消息"),
    ("archive", "活动来源：会话存档导入"),
    ("none", "活动来源：无活动数据"),
    (None, "活动来源：未记录（机器人可能只看到部分消息）"),
])
def test_zombie_reasons_name_the_activity_source(code, line):
    f = zombie(_facts(activity_source=code), NOW)
    assert f is not None and line in f.reasons
    assert f.reasons.index(line) == len(f.reasons) - 1


def test_a_counts_group_is_judged_by_its_counts_and_says_so():
    """A group known only by daily counts (专属钉钉) goes to the counts rule (governance.rules_counts),
    whose finding says it rests on counts; without imported days covering the window, no verdict."""
    assert zombie(_facts(activity_source="counts"), NOW) is None
    days = tuple((NOW.date() - timedelta(days=d), 0) for d in range(1, 31))
    f = zombie(_facts(activity_source="counts", daily_counts=days, counts_since=NOW.date() - timedelta(days=60)), NOW)
    assert f is not None and any(r.startswith("依据每日消息条数判断") for r in f.reasons)


def test_protected_zombie_also_names_it():
    f = zombie(_facts(activity_source="mentions", protected=True), NOW)
    assert f.reasons[-2:] == ["活动来源：仅@机器人的消息", "受保护群，仅报告休眠，不建议解散"]
