"""The CLI (scan --json, sweep dry run and --apply twice) against a real database, and findings persistence."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from config.settings import get_settings
from storage.lifecycle import as_of, refresh_findings
from storage.models import FindingRecord, Group
from tests.lifecycle.helpers import NOW, dump, group, seed_people


@pytest.fixture
def cli(runtime, monkeypatch):
    monkeypatch.setenv("QUNZHI_DATABASE_URL", runtime.db.url)
    for var in ("QUNZHI_WECOM_CORP_ID", "QUNZHI_WECOM_TOKEN", "QUNZHI_WECOM_AES_KEY", "QUNZHI_BRIDGE_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QUNZHI_ENVIRONMENT", "development")
    get_settings.cache_clear()
    from bot.cli import app

    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args), catch_exceptions=False)
    get_settings.cache_clear()


def _seed(db):
    with db.session() as s:
        seed_people(s)
        group(s, "g1", "防汛抗旱群", platform="ledger", source="ledger")
        g2 = group(s, "g2", "秋粮收购专班", platform="ledger", source="ledger", idle_days=60)
        g2.status, g2.warned_at, g2.warning_sent_at = "warned", NOW - timedelta(days=9), NOW - timedelta(days=8)
        group(s, "g3", "机关群", idle_days=1, members=("owner1", "x1", "x2", "x3", "x4"))


def test_as_of_is_end_of_day_local(settings):
    from datetime import date, datetime, timezone

    assert as_of(date(2026, 11, 22), settings) == datetime(2026, 11, 22, 15, 59, 59, 999999, tzinfo=timezone.utc)


def test_scan_json_shape(runtime, cli):
    _seed(runtime.db)
    before = dump(runtime.db)
    res = cli("scan", "--as-of", "2026-11-23", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert list(data) == ["as_of", "findings"]
    assert data["as_of"] == "2026-11-23T15:59:59.999999+00:00"
    for f in data["findings"]:
        assert list(f) == ["kind", "group_ids", "person_ids", "score", "action", "reasons"]
    zombies = [f for f in data["findings"] if f["kind"] == "zombie"]
    assert [(f["group_ids"], f["action"]) for f in zombies] == [(["g1"], "warn"), (["g2"], "warn")]
    assert zombies[0]["score"] == 45.6
    assert zombies[0]["reasons"][0] == "已45天没有工作消息（最后一条工作消息在2026-10-09）"
    assert dump(runtime.db) == before  # scan changes nothing
    text = cli("scan", "--as-of", "2026-11-23")
    assert "僵尸群" in text.output and "防汛抗旱群" in text.output


def test_sweep_dry_run_changes_nothing(runtime, cli):
    _seed(runtime.db)
    before = dump(runtime.db)
    res = cli("sweep", "--as-of", "2026-11-23")
    assert res.exit_code == 0, res.output
    assert "预演" in res.output and "防汛抗旱群" in res.output and "秋粮收购专班" in res.output
    assert dump(runtime.db) == before


def test_sweep_apply_twice_equals_once(runtime, cli):
    _seed(runtime.db)
    first = cli("sweep", "--as-of", "2026-11-23", "--apply")
    assert first.exit_code == 0, first.output
    once = dump(runtime.db)
    with runtime.db.session() as s:
        assert s.get(Group, "g1").status == "warned"
        assert s.get(Group, "g2").status == "dissolving"  # ledger group: order to the owner
        assert s.get(Group, "g3").status == "active"
    second = cli("sweep", "--as-of", "2026-11-23", "--apply")
    assert second.exit_code == 0, second.output
    assert "没有需要推进的群" in second.output
    assert dump(runtime.db) == once


def test_refresh_findings_upserts_and_resolves(runtime):
    db, settings = runtime.db, runtime.settings
    _seed(db)
    with db.session() as s:
        refresh_findings(s, NOW, settings)
        refresh_findings(s, NOW + timedelta(hours=1), settings)
    with db.session() as s:
        rows = {r.key: r for r in s.execute(select(FindingRecord)).scalars()}
        z = rows["zombie|g1|"]
        assert (z.status, z.first_seen, z.last_seen, z.action) == ("open", NOW, NOW + timedelta(hours=1), "warn")
        assert len([k for k in rows if k.startswith("zombie|")]) == 2
        s.get(Group, "g1").last_work_at = NOW + timedelta(hours=2)
    with db.session() as s:
        refresh_findings(s, NOW + timedelta(hours=3), settings)
    with db.session() as s:
        assert s.execute(select(FindingRecord.status).where(FindingRecord.key == "zombie|g1|")).scalar() == "resolved"
        assert s.execute(select(FindingRecord.status).where(FindingRecord.key == "zombie|g2|")).scalar() == "open"
