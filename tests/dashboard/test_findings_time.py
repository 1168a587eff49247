"""Every dashboard page says when the findings (问题清单) were computed."""
from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from storage.lifecycle import refresh_findings, refresh_group_findings
from tests.dashboard.conftest import NOW
from tests.dashboard.test_dashboard_auth import ORIGIN, login

PAGES = ["/dashboard", "/dashboard/findings", "/dashboard/groups", "/dashboard/units", "/dashboard/audit",
         "/dashboard/feedback", "/dashboard/downloads", "/dashboard/trends", "/dashboard/unit?name=城关镇",
         "/dashboard/merge?group_id=g4"]


@pytest.fixture
def web(runtime, known, clock):
    clock.set(NOW)
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN) as c:
        yield c


def test_every_page_says_when_the_findings_were_computed(web, runtime):
    login(web)
    for path in PAGES:
        assert "问题清单尚未生成" in web.get(path).text, path
    with runtime.db.session() as s:
        refresh_findings(s, NOW - timedelta(minutes=40), runtime.settings)
    for path in PAGES:
        page = web.get(path).text
        assert "问题清单更新于 2026年11月23日 09:20（北京时间）" in page, path
    with runtime.db.session() as s:  # a command's refresh of one group does not make the whole list newer
        refresh_group_findings(s, ["g4"], NOW - timedelta(minutes=5), runtime.settings)
    page = web.get("/dashboard/findings").text
    assert "问题清单更新于 2026年11月23日 09:20（北京时间）" in page and "即时更新" in page
