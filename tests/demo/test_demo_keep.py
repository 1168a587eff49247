"""``qunzhi demo --keep``: the simulated county stays in the configured database, a database with
real data is refused (nothing written), and the printed one-time link opens the dashboard, whose
trends show the simulated weeks."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from bot import cli as cli_module
from config.settings import get_settings
from storage.db import Database
from storage.models import AuditRecord, Group, LoginToken, Person, PulseResponse

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def keep(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'county.db'}"
    monkeypatch.setenv("QUNZHI_DATABASE_URL", url)
    monkeypatch.setenv("QUNZHI_ENVIRONMENT", "development")
    monkeypatch.setenv("QUNZHI_PUBLIC_BASE_URL", ORIGIN)
    monkeypatch.setenv("QUNZHI_INGEST_WRITER", "thread")  # the test hands the app its database

    def run(*extra):
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli_module.app, ["demo", "--keep", "--no-progress", "--weeks", "3", "--towns", "1",
                                                      "--villages", "2", "--seed", "3", *extra])
        finally:
            get_settings.cache_clear()

    return url, run


def _csrf(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_kept_demo_opens_in_the_dashboard_with_a_one_time_link(keep):
    from bot.app import create_app
    from bot.runtime import Runtime

    url, run = keep
    res = run()
    assert res.exit_code == 0, res.output
    link = re.search(r"http://127\.0\.0\.1:8000/dashboard/login/\S+", res.output).group(0)
    assert "60分钟内有效，只能用一次" in res.output
    db = Database(url)
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(Group)).scalar_one() > 20
        first = s.execute(select(AuditRecord).order_by(AuditRecord.id).limit(1)).scalar_one()
        assert (first.action, first.actor) == ("import", "demo")
        assert s.execute(select(func.count()).select_from(PulseResponse)).scalar_one() > 0
        tokens = s.execute(select(LoginToken)).scalars().all()
        assert [t.kind for t in tokens] == ["link"] and link.rsplit("/", 1)[1] not in {t.token_hash for t in tokens}
        assert tokens[0].expires_at - tokens[0].created_at == timedelta(minutes=60)
    # the simulated weeks end before the current one: the weekly series has them all, then this week
    get_settings.cache_clear()
    rt = Runtime(get_settings(), db=db)
    with TestClient(create_app(runtime=rt, start_scheduler=False), base_url=ORIGIN) as c:
        path = link.removeprefix(ORIGIN)
        r = c.post(path, data={"csrf": _csrf(c.get(path).text)}, headers={"Origin": ORIGIN})
        assert r.status_code == 200 and "纪委监委" in r.text
        html = c.get("/dashboard/trends").text
        rows = re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td></tr>", html.split('id="t-groups"')[1].split("</table>")[0])
        assert len(rows) == 4 and rows[-1][0] == "本周（截至今日）"
        assert int(rows[0][1]) > int(rows[-1][1])  # groups went down over the simulated weeks
        assert c.get(path).status_code == 403  # the link was used up
    get_settings.cache_clear()
    db.dispose()
    # a second run refuses: the database holds a demo already
    again = run()
    assert again.exit_code == 1 and "已经有一次演示的数据" in again.output


def test_kept_demo_refuses_a_database_with_real_data(keep):
    url, run = keep
    db = Database(url)
    with db.session() as s:
        s.add(Person(id="zhang", name="张三", unit="城关镇", role="cadre", created_at=datetime.now(timezone.utc)))
    res = run()
    assert res.exit_code == 1 and "已有真实数据（人员 1、群 0" in res.output
    with db.session() as s:  # nothing written
        assert s.execute(select(func.count()).select_from(Group)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(AuditRecord)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(Person)).scalar_one() == 1
    db.dispose()


def test_the_local_pages_seed_is_not_real_data(keep):
    from bot.runtime import Runtime
    from platforms.local.inbound import seed_if_empty
    from tests.conftest import make_settings

    url, run = keep
    db = Database(url)
    assert seed_if_empty(Runtime(make_settings(database_url=url), db=db))
    db.dispose()
    res = run()
    assert res.exit_code == 0, res.output
