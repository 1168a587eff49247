"""The sync job against a platform that lists its groups (the fake group platform over HTTP on
localhost, registered like Feishu or DingTalk): groups recorded as seen, paginated, members brought
up to date, a rate limit stops the run; WeCom (no list for appchat) is never asked."""
from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from scheduler import jobs
from storage import repo
from storage.models import Group
from tests.fakes import fake_groups


def _rows(db) -> dict[str, tuple]:
    with db.session() as s:
        return {g.id: (g.name, g.platform, g.source, g.activity_source, sorted(repo.member_ids(s, g.id)))
                for g in s.execute(select(Group)).scalars()}


def test_sync_records_the_listed_groups_and_their_members(runtime, group_platform, fake_wecom):
    fake = group_platform
    runtime.settings = runtime.settings.model_copy(update={"wecom_api_base": fake_wecom.base_url})
    assert "wecom" in jobs.group_senders_for(runtime)  # WeCom's sender is there, pointed at the fake
    fake.add_group("c1", "防汛群", "u1", ["u1", "u2"])
    fake.add_group("c2", "招商群", "u3", ["u3"])
    fake.add_group("c3", "秋粮群", "u1", ["u1", "u4"])
    out = jobs.sync_groups(runtime)
    assert out["testgroups"]["listed"] == 3 and out["testgroups"]["new"] == 3
    assert "wecom" not in out  # WeCom cannot list its app groups: never asked
    assert [c.query.get("page_token", "") for c in fake.calls if c.path == "groups"] == ["", "2"]  # two pages
    assert _rows(runtime.db) == {
        "testgroups:c1": ("防汛群", "testgroups", "activity", "full", ["testgroups:u1", "testgroups:u2"]),
        "testgroups:c2": ("招商群", "testgroups", "activity", "full", ["testgroups:u3"]),
        "testgroups:c3": ("秋粮群", "testgroups", "activity", "full", ["testgroups:u1", "testgroups:u4"]),
    }
    # the platform changed: a rename, one member left, one joined; a second run brings it up to date
    fake.groups["c1"].update(name="防汛抗旱群", members=["u1", "u5"])
    out = jobs.sync_groups(runtime)
    assert (out["testgroups"]["new"], out["testgroups"]["renamed"]) == (0, 1)
    assert (out["testgroups"]["members_added"], out["testgroups"]["members_removed"]) == (1, 1)
    assert _rows(runtime.db)["testgroups:c1"] == ("防汛抗旱群", "testgroups", "activity", "full",
                                                   ["testgroups:u1", "testgroups:u5"])
    assert not fake_wecom.calls


def test_rate_limited_platform_stops_the_run_and_keeps_what_was_read(runtime, group_platform):
    fake = group_platform
    fake.add_group("c1", "防汛群", "u1", ["u1", "u2"])
    fake.add_group("c2", "招商群", "u3", ["u3"])
    fake.add_group("c3", "秋粮群", "u1", ["u1", "u4"])
    original = fake._route
    state = {"members": 0}

    def limited(method, path, query, body):  # the second group's member list is rate limited
        if path.endswith("/members"):
            state["members"] += 1
            if state["members"] == 2:
                return 429, {"code": "rate_limited"}
        return original(method, path, query, body)

    fake._route = limited
    out = jobs.sync_groups(runtime)["testgroups"]
    assert out["stopped"] == "rate_limited" and out["new"] == 1
    assert list(_rows(runtime.db)) == ["testgroups:c1"]
    assert state["members"] == 2  # nothing asked after the limit
    fake._route = original
    assert jobs.sync_groups(runtime)["testgroups"]["new"] == 2  # the next run goes on


def test_list_refused_skips_the_platform(runtime, group_platform):
    group_platform.fail_next(1, 429, "rate_limited")
    assert jobs.sync_groups(runtime)["testgroups"]["stopped"] == "rate_limited"
    assert _rows(runtime.db) == {}


def test_a_platform_that_cannot_list_is_not_asked(runtime, group_platform, monkeypatch):
    monkeypatch.setattr(fake_groups.platform, "capabilities", replace(fake_groups.FULL, list_groups=False))
    group_platform.add_group("c1", "防汛群", "u1", ["u1"])
    assert jobs.sync_groups(runtime) == {}
    assert not group_platform.calls
