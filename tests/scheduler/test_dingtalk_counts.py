"""专属钉钉 counts: the daily import job against the fake DingTalk, and the counts-based zombie
rule over what it stored (its own threshold, its own reasons, coverage)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bot.runtime import Runtime
from scheduler.jobs import import_activity_counts, refresh_findings
from storage import repo
from storage.models import CountDay, FindingRecord, Group, GroupDailyCount
from tests.conftest import make_settings
from tests.fakes.fake_dingtalk import APP_KEY, APP_SECRET


@pytest.fixture
def rt(db, clock, fake_dingtalk):
    s = make_settings(database_url=db.url, dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET,
                      dingtalk_api_base=fake_dingtalk.url, dingtalk_oapi_base=fake_dingtalk.url,
                      dingtalk_exclusive=True, dingtalk_operator_user_id="admin1", zombie_days=30,
                      counts_idle_messages=10)
    return Runtime(s, db=db, clock=clock)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _groups(rt, clock, fake):
    created = clock() - timedelta(days=200)
    with rt.db.session() as s:
        for cid, name in (("cidQuiet==", "春耕备耕群"), ("cidBusy==", "防汛值守群"), ("cidTwin1==", "同名群"),
                          ("cidTwin2==", "同名群")):
            g = repo.ensure_group(s, group_id="dingtalk:" + cid, platform="dingtalk", at=created, name=name)
            g.created_at = created
            g.registered_at = created
            g.owner_id = "owner"
    fake.org_groups = [
        {"openConversationId": "cidQuiet==", "groupName": "春耕备耕群", "groupCreateTime": 1_700_000_000_000,
         "groupLastActiveTime": _ms(clock() - timedelta(days=3))},
        {"openConversationId": "cidBusy==", "groupName": "防汛值守群", "groupCreateTime": 1_700_000_000_001,
         "groupLastActiveTime": _ms(clock() - timedelta(days=1))},
        {"openConversationId": "cidTwin1==", "groupName": "同名群", "groupCreateTime": 1_700_000_000_002},
        {"openConversationId": "cidTwin2==", "groupName": "同名群", "groupCreateTime": 1_700_000_000_002},
        {"openConversationId": "cidNotOurs==", "groupName": "别的群", "groupCreateTime": 5},
    ]


def _day(clock, k: int) -> str:
    return (clock().astimezone(timezone(timedelta(hours=8))).date() - timedelta(days=k)).strftime("%Y%m%d")


def _active(fake, day: str, **counts):
    names = {"quiet": ("春耕备耕群", 1_700_000_000_000), "busy": ("防汛值守群", 1_700_000_000_001),
             "twin": ("同名群", 1_700_000_000_002), "other": ("别的群", 5)}
    fake.active[day] = [{"dingGroupId": f"dg-{k}", "groupName": names[k][0], "groupCreateTime": names[k][1],
                         "sendMessageCnt1d": n, "statDate": day} for k, n in counts.items()]


def test_the_import_stores_counts_and_coverage_and_marks_the_source(rt, clock, fake_dingtalk, db):
    _groups(rt, clock, fake_dingtalk)
    _active(fake_dingtalk, _day(clock, 1), quiet=2, busy=40, twin=9, other=7)
    out = import_activity_counts(rt)
    results = out["dingtalk"]
    assert len(results) == 7  # yesterday and the six days before (backfill)
    assert (results[-1].stored, results[-1].unknown) == (2, 1)  # twin: ambiguous; other: not in the ledger
    with db.session() as s:
        rows = {(r.group_id, r.messages) for r in s.execute(select(GroupDailyCount)).scalars()}
        assert rows == {("dingtalk:cidQuiet==", 2), ("dingtalk:cidBusy==", 40)}
        assert len(s.execute(select(CountDay)).scalars().all()) == 7
        assert s.get(Group, "dingtalk:cidQuiet==").activity_source == "counts"
        assert s.get(Group, "dingtalk:cidTwin1==").activity_source is None
        assert s.get(Group, "dingtalk:cidBusy==").last_message_at is not None
    # again the same day: replaced, not added; only yesterday is fetched again
    calls = len(fake_dingtalk.called("/v1.0/exclusive/data/activeGroups"))
    import_activity_counts(rt)
    assert len(fake_dingtalk.called("/v1.0/exclusive/data/activeGroups")) == calls + 1
    with db.session() as s:
        assert len(s.execute(select(GroupDailyCount)).scalars().all()) == 2


def test_counts_zombie_after_a_month_of_imports(rt, clock, fake_dingtalk, db):
    _groups(rt, clock, fake_dingtalk)
    # a month of daily imports: the quiet group has 收到-like traffic (9 messages), the busy one works
    start = clock()
    for k in range(35):
        _active(fake_dingtalk, _day(clock, 1), quiet=1 if k % 4 == 0 else 0, busy=25)
        import_activity_counts(rt)
        clock.advance(days=1)
    fake_dingtalk.org_groups[0]["groupLastActiveTime"] = _ms(clock() - timedelta(days=2))
    refresh_findings(rt)
    with db.session() as s:
        open_ = {f.group_ids[0]: f for f in s.execute(select(FindingRecord)).scalars()
                 if f.kind == "zombie" and f.status == "open"}
    assert "dingtalk:cidBusy==" not in open_
    assert "dingtalk:cidQuiet==" in open_
    reasons = "".join(open_["dingtalk:cidQuiet=="].reasons)
    assert "按日统计只有" in reasons and "无法区分“收到”" in reasons
    assert clock() - start >= timedelta(days=35)
    # the per-group refresh after a command sees the counts too: the finding stays, the busy group gets none
    from storage.lifecycle.findings import refresh_group_findings

    with db.session() as s:
        found = refresh_group_findings(s, ["dingtalk:cidQuiet==", "dingtalk:cidBusy=="], clock(), rt.settings)
    assert [(f.kind, f.group_ids) for f in found] == [("zombie", ["dingtalk:cidQuiet=="])]


def test_not_enabled_does_nothing(db, clock, fake_dingtalk):
    s = make_settings(database_url=db.url, dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET,
                      dingtalk_api_base=fake_dingtalk.url, dingtalk_oapi_base=fake_dingtalk.url)
    assert import_activity_counts(Runtime(s, db=db, clock=clock)) == {}
    assert fake_dingtalk.calls == []


def test_the_warning_of_a_counts_group_says_it_rests_on_counts():
    from types import SimpleNamespace

    from governance.model import Finding
    from storage.lifecycle.texts import why

    f = Finding("zombie", ["cid1"], [], 40.0, "warn", ["近30天平台按日统计只有3条消息（不超过10条即视为不活跃）"])
    text = why(SimpleNamespace(activity_source="counts"), None, [f], datetime(2026, 11, 23, tzinfo=timezone.utc), None)
    assert text.startswith("近30天平台按日统计只有3条消息") and "看不到内容" in text and "没有工作消息" not in text
