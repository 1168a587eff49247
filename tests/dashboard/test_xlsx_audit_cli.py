"""The xlsx ledger read back with openpyxl, and `qunzhi audit verify` catching an edit and a deletion."""
from __future__ import annotations

import pytest
from openpyxl import load_workbook
from sqlalchemy import text
from typer.testing import CliRunner

from tests.dashboard.conftest import NOW


@pytest.fixture
def cli(known, monkeypatch):
    from bot import cli as cli_module
    from config.settings import get_settings

    monkeypatch.setenv("QUNZHI_DATABASE_URL", known.url)
    monkeypatch.setenv("QUNZHI_ADMIN_TOKEN", "admin-token-for-tests")
    monkeypatch.setattr(cli_module, "runtime", lambda: __import__("bot.runtime", fromlist=["Runtime"]).Runtime(
        get_settings(), db=known, clock=lambda: NOW))
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(cli_module.app, list(args))
    get_settings.cache_clear()


def test_xlsx_ledger(cli, tmp_path):
    out = tmp_path / "r.xlsx"
    res = cli("report", "--period", "week", "--format", "xlsx", "--out", str(out))
    assert res.exit_code == 0, res.output
    wb = load_workbook(out)
    assert wb.sheetnames == ["概况", "台账", "问题清单", "处置记录", "单位负担", "台账核对"]
    ledger = wb["台账"]
    assert [c.value for c in ledger[1]][:7] == ["群编号", "群名称", "单位", "类别", "用途", "群主", "状态"]
    assert all(wb[n].freeze_panes == "A2" for n in wb.sheetnames)
    assert ledger.column_dimensions["B"].width >= 20
    rows = {r[0]: r for r in ledger.iter_rows(min_row=2, values_only=True)}
    assert len(rows) == 5
    assert rows["g5"][1:7] == ("森林防火群", "容美镇", None, None, "张镇长", "已解散")
    summary = dict(wb["概况"].iter_rows(min_row=2, values_only=True))
    assert summary["在册群数"] == 4 and summary["本期解散"] == 2
    audit_rows = list(wb["处置记录"].iter_rows(min_row=2, values_only=True))
    assert [r[3] for r in audit_rows] == ["解散", "解散", "合并", "保留", "续期", "恢复"]
    units = list(wb["单位负担"].iter_rows(min_row=1, values_only=True))
    assert units[0] == ("单位", "干部数", "人均所在群", "中位数", "最多", "本单位群数")
    assert units[1][:3] == ("城关镇", 1, 3)
    assert len(list(wb["问题清单"].iter_rows(min_row=2))) == 5


def test_report_text_and_json(cli, tmp_path):
    res = cli("report", "--period", "week", "--format", "text")
    assert res.exit_code == 0 and "本周解散 2" in res.output
    out = tmp_path / "r.json"
    assert cli("report", "--format", "json", "--out", str(out)).exit_code == 0
    import json

    assert json.loads(out.read_text())["groups_live"] == 4


def test_audit_verify_detects_edit_and_deletion(cli, known):
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and "审计链完整" in ok.output and "7 条" in ok.output
    with known.engine.begin() as c:
        c.execute(text("UPDATE audit_log SET reason = '被篡改' WHERE id = 3"))
    bad = cli("audit", "verify")
    assert bad.exit_code == 1
    assert "第3条记录内容被改动" in bad.output and "#3" in bad.output
    with known.engine.begin() as c:  # undo the edit, then delete a record instead
        c.execute(text("UPDATE audit_log SET reason = '测试dissolve' WHERE id = 3"))
    assert cli("audit", "verify").exit_code == 0
    with known.engine.begin() as c:
        c.execute(text("DELETE FROM audit_log WHERE id = 5"))
    gone = cli("audit", "verify")
    assert gone.exit_code == 1 and "第6条记录之前的记录被删除或改动" in gone.output
