"""qunzhi doctor: each problem found, in Chinese, with its fix; nothing changed."""
import json
import socket
from datetime import datetime, timezone

from alembic import command
from typer.testing import CliRunner

from bot.cli import app
from bot.doctor import ERROR, OK, WARN, run_checks
from config.settings import get_settings
from storage.db import Database, alembic_config
from tests.conftest import make_settings

NOW = datetime(2026, 12, 1, 2, tzinfo=timezone.utc)


def _db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    Database(url).dispose()
    return url


def _schedule(tmp_path) -> str:
    f = tmp_path / "holidays.json"
    f.write_text(json.dumps({"2027": {"holidays": ["2027-01-01"], "workdays": []}}), encoding="utf-8")
    return str(f)


def _by(rows, area):
    return [c for c in rows if c.area == area]


def test_a_healthy_install_has_no_error(tmp_path, fake_wecom):
    s = make_settings(database_url=_db(tmp_path), wecom_api_base=fake_wecom.base_url, county_name="鹤峰县",
                      backup_key="k" * 20, holiday_schedule=_schedule(tmp_path), bridge_url=fake_wecom.base_url)
    rows = run_checks(s, NOW)
    assert [c for c in rows if c.status == ERROR] == []
    assert any(c.status == OK and "访问令牌" in c.what for c in _by(rows, "平台"))
    assert any(c.status == OK and "最新" in c.what for c in _by(rows, "数据库"))
    assert any(c.status == OK and "2027" in c.what for c in _by(rows, "节假日"))
    assert fake_wecom.calls_to("gettoken")  # the credentials were really tried


def test_a_wrong_secret_is_an_error_with_its_fix(tmp_path, fake_wecom):
    s = make_settings(database_url=_db(tmp_path), wecom_api_base=fake_wecom.base_url, wecom_secret="wrong-secret-x")
    [wecom] = [c for c in _by(run_checks(s, NOW), "平台") if "企业微信" in c.what]
    assert wecom.status == ERROR and "QUNZHI_WECOM_SECRET" in wecom.fix


def test_a_database_behind_the_code_is_named(tmp_path):
    url = _db(tmp_path)
    command.stamp(alembic_config(url), "0006")
    [c] = [c for c in _by(run_checks(make_settings(database_url=url), NOW), "数据库")]
    assert c.status == ERROR and "0006" in c.what and "qunzhi backup" in c.fix
    [c] = _by(run_checks(make_settings(database_url="sqlite:////nonexistent/dir/q.db"), NOW), "数据库")
    assert c.status == ERROR and "连不上数据库" in c.what


def test_next_years_unknown_holidays_are_flagged_in_december(tmp_path):
    rows = _by(run_checks(make_settings(database_url=_db(tmp_path)), NOW), "节假日")
    [c] = [c for c in rows if "2027" in c.what]
    assert c.status == WARN and "QUNZHI_HOLIDAY_SCHEDULE" in c.fix


def test_an_unreachable_bridge_and_a_missing_bridge_url(tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    rows = run_checks(make_settings(database_url=_db(tmp_path), bridge_url=f"http://127.0.0.1:{port}/x"), NOW)
    assert any(c.status == ERROR and "桥接服务" in c.what for c in rows)
    rows = run_checks(make_settings(database_url=_db(tmp_path), bridge_url=""), NOW)
    assert any(c.status == ERROR and "QUNZHI_BRIDGE_URL" in c.fix for c in rows)


def test_the_cli_exits_1_on_an_error_and_speaks_chinese(tmp_path, monkeypatch):
    url = _db(tmp_path)
    command.stamp(alembic_config(url), "0005")
    monkeypatch.setenv("QUNZHI_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["doctor"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 1, r.output
    assert "[错误] 数据库" in r.output and "解决办法" in r.output and "错误" in r.output.splitlines()[-1]
    with Database(url, migrate=False).engine.connect() as c:  # the doctor did not migrate
        from alembic.runtime.migration import MigrationContext
        assert MigrationContext.configure(c).get_current_revision() == "0005"
