"""Findings stay current: refreshed for the groups a command changed right after it (per-group
rules, no full scan), fully after every import and hourly, and every dashboard page says when."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from config.settings import get_settings
from scheduler import jobs
from storage.lifecycle import refresh_findings
from storage.models import FindingRecord
from tests.lifecycle.helpers import NOW, group, say, seed_people


def _open(db) -> set[tuple[str, str]]:
    with db.session() as s:
        return {(r.kind, r.group_ids[0]) for r in
                s.execute(select(FindingRecord).where(FindingRecord.status == "open")).scalars()}


def _seed(runtime):
    with runtime.db.session() as s:
        seed_people(s)
        group(s, "g-zombie", "防汛抗旱群", platform="ledger", idle_days=45, members=("owner1", "z1", "z2"))
        group(s, "g-tmp", "秋粮专班", platform="ledger", idle_days=1, temporary=True, members=("owner1", "t1", "t2"),
              expires_at=(NOW + timedelta(days=20)).date())
        group(s, "g-new", "新建群", platform="ledger", idle_days=1, registered_at=None, members=("owner1", "n1"))
    with runtime.db.session() as s:
        refresh_findings(s, NOW, runtime.settings)
    assert _open(runtime.db) == {("zombie", "g-zombie"), ("unregistered", "g-new")}


def test_a_command_refreshes_the_findings_of_the_groups_it_changed(runtime):
    _seed(runtime)
    at = NOW + timedelta(minutes=5)
    assert "已保留" in say(runtime, "owner1", "保留 防汛抗旱群 汛期还要用", at)[0]
    assert "已标记任务完成" in say(runtime, "owner1", "完成 秋粮专班", at + timedelta(minutes=1))[0]
    assert "已登记" in say(runtime, "owner1", "报备 新建群 用途:值班 单位:城关镇 类别:机关群",
                          at + timedelta(minutes=2))[0]
    assert _open(runtime.db) == {("expired", "g-tmp")}


def test_refreshes_leave_the_useless_findings_alone(runtime):
    _seed(runtime)
    from storage.feedback import record_useless_vote
    from storage.models import Group

    with runtime.db.session() as s:  # real votes: a useless finding stays open while its votes count
        g = s.get(Group, "g-zombie")
        for i in range(3):
            record_useless_vote(s, secret=runtime.settings.pseudonym_secret, group=g, person_id=f"voter{i}", now=NOW,
                                local_day=NOW.astimezone(runtime.settings.tz).date(),
                                votes_min=runtime.settings.useless_votes_min)
    say(runtime, "owner1", "保留 防汛抗旱群 汛期还要用", NOW + timedelta(minutes=5))
    assert ("useless", "g-zombie") in _open(runtime.db)
    jobs.refresh_findings(runtime)
    assert ("useless", "g-zombie") in _open(runtime.db)


def test_the_hourly_job_refreshes_every_finding_and_says_when(runtime, clock):
    from apscheduler.triggers.interval import IntervalTrigger

    from scheduler.service import job_specs
    from storage.lifecycle import findings_computed_at

    [trigger] = [t for name, t in job_specs(runtime.settings) if name == "refresh_findings"]
    assert isinstance(trigger, IntervalTrigger) and trigger.interval <= timedelta(hours=1)
    with runtime.db.session() as s:
        seed_people(s)
        group(s, "g-zombie", "防汛抗旱群", platform="ledger", idle_days=45)
    clock.set(NOW)
    assert jobs.JOBS["refresh_findings"](runtime) == 1
    assert _open(runtime.db) == {("zombie", "g-zombie")}
    with runtime.db.session() as s:
        assert findings_computed_at(s)["full"] == NOW


@pytest.fixture
def cli(runtime, monkeypatch):
    monkeypatch.setenv("QUNZHI_DATABASE_URL", runtime.db.url)
    monkeypatch.setenv("QUNZHI_ENVIRONMENT", "development")
    get_settings.cache_clear()
    from bot.cli import app

    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args), catch_exceptions=False)
    get_settings.cache_clear()


LEDGER = """group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids
g1,迎检专班,wecom,zhang,城关镇,临时群,迎检,2025-01-05,2025-03-01,zhang;li;wang
g2,秋粮收购调度群,wecom,li,城关镇,工作群,秋粮收购调度,2025-10-01,,li;zhao;qian;sun
g3,秋粮收购工作群,wecom,zhao,城关镇,工作群,秋粮收购,2025-10-02,,li;zhao;qian;sun
"""


def _scanned(cli) -> set[tuple[str, str]]:
    return {(x["kind"], x["group_ids"][0]) for x in json.loads(cli("scan", "--json").output)["findings"]}


def test_an_import_refreshes_the_findings_fully(runtime, cli, tmp_path):
    f = tmp_path / "ledger.csv"
    f.write_text(LEDGER, encoding="utf-8")
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert _scanned(cli) == {("expired", "g1"), ("duplicate", "g3")}
    assert _open(runtime.db) == {("expired", "g1"), ("duplicate", "g3")}  # no scan or sweep needed
    recent = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    m = tmp_path / "messages.jsonl"
    m.write_text("".join(json.dumps({"group_id": "g4", "sender_id": p, "sent_at": recent, "text": "明天九点到粮站开调度会",
                                     "msg_id": f"m-{p}"}, ensure_ascii=False) + "\n" for p in ("li", "zhao", "qian", "sun")),
                 encoding="utf-8")
    r = cli("import", "messages", str(m))
    assert r.exit_code == 0, r.output
    assert _scanned(cli) == {("expired", "g1"), ("duplicate", "g3"), ("duplicate", "g4")}
    assert _open(runtime.db) == {("expired", "g1"), ("duplicate", "g3"), ("duplicate", "g4")}


def test_a_command_does_not_wait_for_a_running_full_refresh(runtime):
    """A full refresh holds the open findings' rows until it commits (minutes on a province); the
    per-group refresh after a command skips the rows it holds instead of waiting for them."""
    import threading

    from sqlalchemy import text

    if runtime.db.dialect != "postgresql":
        pytest.skip("row locks: PostgreSQL only (SQLite serialises writers)")
    _seed(runtime)
    replies: list = []
    with runtime.db.engine.connect() as c:
        tx = c.begin()
        c.execute(text("SELECT id FROM findings WHERE kind = 'zombie' FOR UPDATE"))
        th = threading.Thread(target=lambda: replies.append(
            say(runtime, "owner1", "保留 防汛抗旱群 汛期还要用", NOW + timedelta(minutes=5))))
        th.start()
        th.join(timeout=5)
        waited = th.is_alive()
        tx.rollback()
    th.join(timeout=30)
    assert not waited, "the command waited for the refresh's row lock"
    assert "已保留" in replies[0][0]
    assert ("zombie", "g-zombie") in _open(runtime.db)  # left to the refresh that held it
    jobs.refresh_findings(runtime)
    assert ("zombie", "g-zombie") not in _open(runtime.db)
