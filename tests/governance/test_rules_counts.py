"""The counts-based zombie rule (governance.rules_counts): its own threshold, coverage, reasons."""
from __future__ import annotations

from datetime import timedelta

from governance.model import Params
from governance.rules_activity import zombie
from tests.governance.factory import NOW, group

P = Params(zombie_days=30, counts_idle_messages=10)
FIRST = (NOW - timedelta(days=30)).date()


def counted(days_counts, *, since_days: int = 60, **kw):
    daily = tuple(((NOW - timedelta(days=d)).date(), n) for d, n in days_counts)
    base = dict(platform="dingtalk", activity_source="counts", last_work_at=None, last_message_at=None,
                message_count=0, ritual_count=0, daily_counts=daily,
                counts_since=(NOW - timedelta(days=since_days)).date())
    base.update(kw)
    return group("cid1", **base)


def test_a_handful_of_messages_a_month_is_idle_and_says_it_rests_on_counts():
    f = zombie(counted([(3, 4), (10, 6)]), NOW, P)  # 10 messages: at the threshold
    assert f is not None and f.kind == "zombie" and f.action == "warn"
    text = "".join(f.reasons)
    assert "只有10条消息" in text and "不超过10条" in text
    assert "无法区分“收到”" in text  # the finding says counts cannot tell 收到 from work
    assert f.score == 3.0  # days since the last day with a message


def test_one_more_message_than_the_threshold_is_activity():
    assert zombie(counted([(3, 5), (10, 6)]), NOW, P) is None


def test_counts_before_the_window_do_not_count():
    assert zombie(counted([(31, 500)]), NOW, P) is not None


def test_a_handful_after_a_warning_leaves_a_warned_group_idle():
    assert zombie(counted([(1, 3), (2, 2)], status="warned"), NOW, P) is not None


def test_no_verdict_without_coverage_of_the_window():
    assert zombie(counted([], since_days=5), NOW, P) is None
    assert zombie(counted([], since_days=None or 0, counts_since=None), NOW, P) is None


def test_last_active_time_before_the_window_gives_coverage():
    g = counted([], since_days=2, last_message_at=NOW - timedelta(days=45))
    f = zombie(g, NOW, P)
    assert f is not None and f.score == 45.0
    assert any("最后活跃时间" in r for r in f.reasons)
    # a last-active time inside the window, with imports too recent to cover it: no verdict
    assert zombie(counted([], since_days=2, last_message_at=NOW - timedelta(days=10)), NOW, P) is None


def test_a_work_message_the_bot_heard_in_the_window_keeps_it_alive():
    assert zombie(counted([], last_work_at=NOW - timedelta(days=2)), NOW, P) is None


def test_young_kept_and_protected_groups():
    assert zombie(counted([], created_at=NOW - timedelta(days=20)), NOW, P) is None
    assert zombie(counted([], kept_until=NOW + timedelta(days=1)), NOW, P) is None
    f = zombie(counted([], protected=True), NOW, P)
    assert f is not None and f.action == "none"


def test_other_sources_keep_the_message_rule():
    # the same facts as a mentions group: judged by last_work_at (none seen for a year: a zombie)
    g = counted([(3, 500)], activity_source="mentions")
    assert zombie(g, NOW, P) is not None
    assert zombie(counted([(3, 500)]), NOW, P) is None
