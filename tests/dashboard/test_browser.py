"""The dashboard in headless Chromium against a real uvicorn server: login, every page, charts
drawn, and not one request leaving the server."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium not installed at {CHROMIUM} "
                                 "(apt-get install -y chromium)")]


@pytest.fixture
def server(runtime, known, clock):
    import uvicorn

    from bot.app import create_app
    from tests.dashboard.conftest import NOW

    clock.set(NOW)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    runtime.settings = runtime.settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    srv = uvicorn.Server(uvicorn.Config(create_app(runtime=runtime, start_scheduler=False), host="127.0.0.1",
                                        port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(5)


def test_dashboard_in_chromium(server):
    from playwright.sync_api import sync_playwright

    from tests.conftest import ADMIN_TOKEN

    requests, problems = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(server + "/dashboard")
        assert page.url.endswith("/dashboard/login")
        page.fill("#token", ADMIN_TOKEN)
        page.click("#login-button")
        page.wait_for_url(server + "/dashboard")
        page.wait_for_selector("body[data-charts-ready='1']", timeout=15000)
        charts = page.evaluate("""() => Object.entries(window.qunzhiCharts).map(([id, c]) => {
            const canvas = document.querySelector('#' + id + ' canvas');
            return {id, series: c.getOption().series.length, w: canvas ? canvas.width : 0, h: canvas ? canvas.height : 0};
        })""")
        assert {c["id"] for c in charts} == {"chart-groups", "chart-cadre", "chart-findings", "chart-pulse"}
        assert all(c["series"] > 0 and c["w"] > 0 and c["h"] > 0 for c in charts), charts
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
        for path, selector in [("/dashboard/findings", "#findings-table"), ("/dashboard/groups", "#groups-table"),
                               ("/dashboard/units", "#units-table"), ("/dashboard/audit", "#verify-ok"),
                               ("/dashboard/feedback", "#pulse-table"), ("/dashboard/downloads", "#dl-xlsx-week")]:
            page.goto(server + path)
            assert page.locator(selector).count() == 1, path
        # an administrator action through the real form (CSRF token, browser's own Origin header)
        page.goto(server + "/dashboard/groups?q=g4")
        page.click("button.protect")
        page.wait_for_selector("#action-msg")
        assert "受保护群" in page.inner_text("#action-msg")
        # the weekly trends: five charts, each drawn from the figures of the table beside it
        for path, name in [("/dashboard/trends", "dashboard-trends"), ("/dashboard/unit?name=城关镇", "dashboard-unit")]:
            page.goto(server + path)
            page.wait_for_selector("body[data-charts-ready='1']", timeout=15000)
            drawn = page.evaluate("""() => Object.entries(window.qunzhiCharts).map(([id, c]) => {
                const canvas = document.querySelector('#' + id + ' canvas');
                return [id, c.getOption().series.map(s => s.data), canvas ? canvas.width : 0];
            })""")
            assert sorted(d[0] for d in drawn) == ["chart-t-actions", "chart-t-cadre", "chart-t-feedback",
                                                  "chart-t-groups", "chart-t-ritual"], drawn
            assert all(d[2] > 0 for d in drawn), drawn
            groups = dict((d[0], d[1]) for d in drawn)["chart-t-groups"][0]
            table = page.evaluate("() => Array.from(document.querySelectorAll('#t-groups tbody tr td:nth-child(2)'))"
                                  ".map(td => Number(td.textContent))")
            assert groups == table and groups, (groups, table)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        # merge by choosing a group: the duplicate's partner is offered first
        page.goto(server + "/dashboard/merge?group_id=g3")
        assert page.locator("#target option").count() >= 2
        page.select_option("#target", "g4")
        page.click("#merge-button")
        page.wait_for_selector("#action-msg")
        assert "合并到“防汛抗旱群”" in page.inner_text("#action-msg"), page.inner_text("#action-msg")
        with page.expect_download() as dl:
            page.goto(server + "/dashboard/downloads")
            page.click("#dl-xlsx-week")
        assert dl.value.suggested_filename.endswith(".xlsx")
        browser.close()
    assert requests and all(u.startswith(server + "/") for u in requests), [u for u in requests if not u.startswith(server)]
    assert not [m for m in problems if "Content Security Policy" in m or "Refused" in m], problems


PAGES = ["/dashboard", "/dashboard/findings", "/dashboard/groups", "/dashboard/units", "/dashboard/audit",
         "/dashboard/feedback", "/dashboard/downloads", "/dashboard/trends", "/dashboard/reconcile", "/dashboard/unit?name=城关镇",
         "/dashboard/merge?group_id=g3"]


@pytest.mark.parametrize("width", [390, 1280])
def test_no_page_scrolls_sideways(server, width):
    from playwright.sync_api import sync_playwright

    from tests.conftest import ADMIN_TOKEN

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": width, "height": 844 if width < 600 else 900})
        page.goto(server + "/dashboard/login")
        page.fill("#token", ADMIN_TOKEN)
        page.click("#login-button")
        page.wait_for_url(server + "/dashboard")
        ARTIFACTS.mkdir(exist_ok=True)
        wide = {}
        for path in PAGES:
            page.goto(server + path)
            page.wait_for_load_state("networkidle")
            sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            if sizes[0] > sizes[1]:
                wide[path] = sizes
            name = path.strip("/").split("?")[0].replace("/", "-") or "dashboard"
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        if width < 600:  # tables are stacked cards whose cells say which column they are
            page.goto(server + "/dashboard/groups")
            label = page.evaluate("() => { const td = document.querySelector('#groups-table tbody td');"
                                  " return td ? [getComputedStyle(td).display, td.dataset.label] : null; }")
            assert label == ["block", "群名称"], label
        browser.close()
    assert wide == {}, wide


def test_reconcile_review_fits_a_phone_and_confirms(server, runtime, clock):
    """台账核对 with a question on it at 390 px: no sideways scroll, and the confirm button works."""
    from playwright.sync_api import sync_playwright
    from sqlalchemy import select

    from storage.models import Group, LedgerLink, Membership
    from tests.conftest import ADMIN_TOKEN

    with runtime.db.session() as s:
        s.add(Group(id="ledger:phone1", platform="ledger", name="城关镇森林防火工作专班群（2026年度）", unit="城关镇",
                    created_at=clock(), first_seen_at=clock(), source="ledger", status="active", member_count=0))
        for gid, name, ms in (("wphone1", "城关镇森林防火工作专班群（2026年度）", "abc"),
                              ("wphone2", "城关镇森林防火工作专班群（2026年度）二群", "xyz")):
            s.add(Group(id=gid, platform="wecom", name=name, unit="城关镇", created_at=clock(), first_seen_at=clock(),
                        source="chat", status="active", member_count=3))
            s.flush()
            s.add_all([Membership(group_id=gid, person_id=p) for p in ms])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(server + "/dashboard/login")
        page.fill("#token", ADMIN_TOKEN)
        page.click("#login-button")
        page.wait_for_url(server + "/dashboard")
        page.goto(server + "/dashboard/reconcile")
        assert page.locator("#review-table button.confirm").count() == 2
        sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-reconcile-review-390.png"), full_page=True)
        assert sizes[0] <= sizes[1], sizes
        page.locator("#review-table button.confirm").first.click()
        page.wait_for_url(server + "/dashboard/reconcile?*")
        assert "两者已合为一个群" in page.content()
        browser.close()
    with runtime.db.session() as s:
        assert s.execute(select(LedgerLink.group_id).where(LedgerLink.ledger_id == "ledger:phone1")).scalar_one() \
            in ("wphone1", "wphone2")
