"""The commission report and digest from a known state: exact figures."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from storage.models import OutboxMessage
from storage.reports import build_report, enqueue_commission_digest, render_text, snapshot_stats
from tests.conftest import make_settings
from tests.dashboard.conftest import NOW

SETTINGS = make_settings(public_base_url="https://qunzhi.example.gov.cn")


def test_report_figures(known):
    with known.session() as s:
        r = build_report(s, period="week", now=NOW, settings=SETTINGS)
    assert (r.start.isoformat(), r.end.isoformat(), r.period_key) == ("2026-11-16", "2026-11-22", "2026-W47")
    assert (r.groups_live, r.groups_registered, r.groups_protected, r.groups_temporary) == (4, 3, 2, 1)
    assert (r.dissolved, r.merged, r.kept, r.renewed, r.restored) == (2, 1, 1, 1, 1)
    assert r.actions == {"dissolve": 2, "keep": 1, "merge": 1, "renew": 1, "restore": 1}
    assert r.findings_open == {"duplicate": 1, "rebound": 1, "zombie": 2}
    assert r.rebounds_new == 1
    # a: g1,g2,g3 = 3; b: g3 = 1; c: g1,g4 = 2 (the dissolved g5 does not count)
    assert (r.cadres, r.groups_per_cadre_median, r.groups_per_cadre_max, r.groups_per_cadre_max_unit) == (3, 2, 3, "城关镇")
    assert [u["unit"] for u in r.burdened_units] == ["城关镇", "容美镇"]
    assert r.burdened_units[0]["mean"] == 3.0 and r.burdened_units[1]["mean"] == 1.5
    assert (r.pulse_responses, r.pulse_heavy_share) == (5, 0.4)
    assert r.formalism_reports == 1
    d = r.to_dict()
    assert d["start"] == "2026-11-16" and d["dissolved"] == 2


def test_digest_text(known):
    with known.session() as s:
        text = render_text(build_report(s, period="week", now=NOW, settings=SETTINGS))
    lines = text.splitlines()
    assert lines[0] == "**本县工作群治理周报（11月16日—11月22日）**"
    assert lines[1] == "台账在册 4 个群（已登记 3，受保护 2，临时 1）；本周解散 2，合并 1，续期 1，保留 1，恢复 1。"
    assert lines[2] == "待处理：僵尸群 2，重复群 1 对，交叉群 0，到期未解散 0，未登记 0；回头看发现反弹 1 个。"
    assert lines[3] == "干部人均所在群：中位数 2，最多 3（城关镇）。"
    assert "负担脉搏：重 40%" in text and "匿名反映 1 条" in text
    assert "[查看看板](https://qunzhi.example.gov.cn/dashboard)" in text
    assert len(lines) <= 8 and max(len(x) for x in lines[:-1]) < 70  # one phone screen (last line: links)


def test_previous_median_from_snapshot(known):
    with known.session() as s:
        snapshot_stats(s, (NOW - timedelta(days=10)).date())
        r = build_report(s, period="week", now=NOW, settings=SETTINGS)
    assert r.groups_per_cadre_median_prev == 2
    assert "（上期 2）" in render_text(r)


def test_month_period(known):
    with known.session() as s:
        r = build_report(s, period="month", now=NOW, settings=SETTINGS)
    assert (r.start.isoformat(), r.end.isoformat(), r.period_key) == ("2026-10-01", "2026-10-31", "2026-10")
    assert r.dissolved == 0


def test_digest_enqueued_once_per_commission_person_in_working_time(known):
    sunday_night = NOW - timedelta(hours=14)  # Sunday 20:00 Beijing
    with known.session() as s:
        assert enqueue_commission_digest(s, sunday_night, SETTINGS) == 1
        assert enqueue_commission_digest(s, sunday_night, SETTINGS) == 0
        rows = s.execute(select(OutboxMessage)).scalars().all()
    assert [(m.kind, m.recipient, m.dedupe_key) for m in rows] == [("digest", "d", "digest:2026-W46:d")]
    local = rows[0].not_before.astimezone(SETTINGS.tz)
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)  # Monday 09:00
    assert rows[0].payload["markdown"] is True and "周报" in rows[0].payload["text"]
