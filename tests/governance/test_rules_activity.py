from datetime import date, datetime, timedelta, timezone

import numpy as np

from governance.model import Params
from governance.rules_activity import expired, overloaded_members, unregistered, zombie, zombie_ids

from .factory import CST, NOW, group, members

D = timedelta(days=1)
P = Params()


# --- zombie -----------------------------------------------------------------

def test_zombie_after_45_days_with_ritual_only_traffic():
    g = group(last_work_at=NOW - 45 * D, last_message_at=NOW - 2 * D, message_count=50, ritual_count=4)
    f = zombie(g, NOW, P)
    assert f is not None and f.kind == "zombie" and f.action == "warn" and f.group_ids == ["g1"]
    assert f.score == 45.0
    assert f.reasons[0].startswith("已45天没有工作消息")
    assert "留痕" in f.reasons[1] and "4条" in f.reasons[1]


def test_ritual_traffic_does_not_keep_alive():
    # many recent messages, but the last WORK message is old
    g = group(last_work_at=NOW - 31 * D, last_message_at=NOW - timedelta(minutes=5), ritual_count=300)
    assert zombie(g, NOW, P) is not None


def test_zombie_boundary_exactly_30_days():
    assert zombie(group(last_work_at=NOW - 30 * D), NOW, P) is not None
    assert zombie(group(last_work_at=NOW - 30 * D + timedelta(microseconds=1)), NOW, P) is None
    assert zombie(group(last_work_at=NOW - timedelta(days=29.99)), NOW, P) is None


def test_never_worked_group_is_zombie_only_when_old_enough():
    assert zombie(group(last_work_at=None, created_at=NOW - 40 * D), NOW, P) is not None
    assert zombie(group(last_work_at=None, created_at=NOW - 10 * D), NOW, P) is None
    # the bot only started watching 5 days ago: no verdict yet
    assert zombie(group(last_work_at=None, created_at=NOW - 400 * D, first_seen_at=NOW - 5 * D), NOW, P) is None


def test_archive_coverage_start_not_import_time_starts_the_idle_period():
    # ledger imported today (first_seen_at = now), archive covering the last 90 days had no
    # work message for this group: idle since the start of coverage, a zombie on day one
    g = group(last_work_at=None, last_message_at=None, created_at=NOW - 400 * D, first_seen_at=NOW,
              observed_since=NOW - 90 * D)
    f = zombie(g, NOW, P)
    assert f is not None and f.score == 90.0 and f.reasons[0].startswith("已90天没有工作消息")
    # a group created inside the coverage is idle since its creation
    young = group(last_work_at=None, created_at=NOW - 40 * D, first_seen_at=NOW, observed_since=NOW - 90 * D)
    assert zombie(young, NOW, P).score == 40.0
    # the findings do not depend on when the import ran
    later = group(last_work_at=None, created_at=NOW - 400 * D, first_seen_at=NOW + 3 * D,
                  observed_since=NOW - 90 * D)
    assert zombie(later, NOW, P).score == 90.0


def test_group_with_unknown_members_waits_until_observed_for_zombie_days():
    # registered in a private chat: no members, never observed by an adapter or an archive
    unknown = dict(last_work_at=None, last_message_at=None, message_count=0, ritual_count=0,
                   member_ids=frozenset(), members_known=False, created_at=NOW - 400 * D,
                   first_seen_at=NOW - 400 * D)
    assert zombie(group(**unknown), NOW, P) is None
    assert zombie(group(**unknown, observed_since=NOW - 29 * D), NOW, P) is None
    f = zombie(group(**unknown, observed_since=NOW - 30 * D), NOW, P)
    assert f is not None and f.score == 30.0


def test_zombie_young_group_with_old_work_is_impossible_but_guarded():
    assert zombie(group(created_at=NOW - 10 * D, last_work_at=NOW - 40 * D), NOW, P) is None


def test_protected_zombie_is_reported_dormant_only():
    f = zombie(group(protected=True, last_work_at=NOW - 60 * D), NOW, P)
    assert f.action == "none" and any("受保护群，仅报告休眠" in r for r in f.reasons)


def test_kept_and_dead_groups_are_not_proposed():
    assert zombie(group(last_work_at=NOW - 60 * D, kept_until=NOW + D), NOW, P) is None
    assert zombie(group(last_work_at=NOW - 60 * D, kept_until=NOW - D), NOW, P) is not None
    assert zombie(group(last_work_at=NOW - 60 * D, status="dissolved"), NOW, P) is None
    assert zombie(group(last_work_at=NOW - 60 * D, status="warned"), NOW, P) is not None


def test_zombie_ids_vectorised_matches_boundary():
    t = NOW.timestamp()
    last = np.array([t - 30 * 86400, t - 30 * 86400 + 1, np.nan, np.nan, t - 90 * 86400])
    created = np.array([t - 400 * 86400, t - 400 * 86400, t - 31 * 86400, t - 29 * 86400, t - 400 * 86400])
    prot = np.array([False, False, False, False, True])
    assert zombie_ids(last, created, prot, NOW, 30).tolist() == [0, 2]
    assert zombie_ids(last, created, prot, t, 30, include_protected=True).tolist() == [0, 2, 4]


def test_zombie_ids_million_is_fast():
    import time

    rng = np.random.default_rng(1)
    t = NOW.timestamp()
    n = 1_000_000
    last = t - rng.uniform(0, 100, n) * 86400
    last[rng.random(n) < 0.1] = np.nan
    created = t - rng.uniform(100, 1000, n) * 86400
    prot = rng.random(n) < 0.01
    t0 = time.perf_counter()
    ids = zombie_ids(last, created, prot, t, 30)
    assert time.perf_counter() - t0 < 2.0
    assert 0.6 * n < len(ids) < 0.8 * n


# --- expired ----------------------------------------------------------------

def test_expired_temporary_group():
    g = group(temporary=True, expires_at=date(2024, 5, 20))
    f = expired(g, NOW, P)
    assert f.action == "dissolve" and f.score == 12.0 and "2024-05-20到期" in f.reasons[0]


def test_not_yet_expired_on_its_last_day():
    assert expired(group(temporary=True, expires_at=date(2024, 6, 1)), NOW, P) is None
    assert expired(group(temporary=True, expires_at=date(2024, 5, 31)), NOW, P) is not None


def test_expiry_uses_callers_local_date():
    # 2024-05-31 20:00 UTC is already 2024-06-01 in China
    utc_now = datetime(2024, 5, 31, 20, 0, tzinfo=timezone.utc)
    g = group(temporary=True, expires_at=date(2024, 5, 31))
    assert expired(g, utc_now, P) is None
    assert expired(g, utc_now, P, today=utc_now.astimezone(CST).date()) is not None
    assert expired(g, utc_now.astimezone(CST), P) is not None


def test_done_at_means_expired_but_never_protected():
    f = expired(group(done_at=NOW - 3 * D), NOW, P)
    assert f.action == "dissolve" and "标记任务完成" in f.reasons[0] and f.score == 3.0
    assert expired(group(done_at=NOW - 3 * D, protected=True), NOW, P) is None
    assert expired(group(temporary=True, expires_at=date(2024, 1, 1), protected=True), NOW, P) is None
    assert expired(group(done_at=NOW + D), NOW, P) is None


# --- unregistered -----------------------------------------------------------

def test_unregistered_grace_boundary():
    g = group(registered=False, first_seen_at=NOW - 7 * D, owner_id="u9")
    f = unregistered(g, NOW, P)
    assert f.action == "review" and f.person_ids == ["u9"] and f.score == 7.0
    assert unregistered(group(registered=False, first_seen_at=NOW - 7 * D + timedelta(seconds=1)), NOW, P) is None
    assert unregistered(group(registered=True, first_seen_at=NOW - 30 * D), NOW, P) is None


def test_unregistered_counts_from_the_archive_coverage_not_the_import_time():
    # first known from an archive imported today that shows the group 90 days back
    g = group(registered=False, owner_id=None, created_at=NOW - 90 * D, first_seen_at=NOW, observed_since=NOW - 90 * D)
    f = unregistered(g, NOW, P)
    assert f is not None and f.score == 90.0


def test_unregistered_falls_back_to_created_and_unknown_owner():
    f = unregistered(group(registered=False, created_at=NOW - 8 * D, owner_id=None), NOW, P)
    assert f.person_ids == [] and any("群主未知" in r for r in f.reasons)
    assert unregistered(group(registered=False, created_at=NOW - 6 * D), NOW, P) is None


# --- overloaded -------------------------------------------------------------

def test_overloaded_member_20_vs_21():
    gs = [group(f"g{i:02}", member_ids=frozenset({"busy", "twenty"} if i < 20 else {"busy"})) for i in range(21)]
    gs.append(group("dead", member_ids=frozenset({"twenty"}), status="dissolved"))
    out = overloaded_members(gs, P)
    assert [f.person_ids for f in out] == [["busy"]]
    f = out[0]
    assert f.kind == "overloaded_member" and f.score == 21.0 and f.action == "review"
    assert f.group_ids == sorted(f"g{i:02}" for i in range(21))
    assert "21个工作群" in f.reasons[0]


def test_members_helper():
    assert len(members("x", 5)) == 5
