"""这个群没用 counts are shown (digest, export, dashboard) only from 5 votes up, like the pulse."""
from __future__ import annotations

import io
from datetime import date

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from bot.app import create_app
from storage.models import UselessVote
from storage.reports import build_report, render_text, write_xlsx
from tests.conftest import make_settings
from tests.dashboard.conftest import NOW
from tests.dashboard.test_dashboard_auth import ORIGIN, login

SETTINGS = make_settings(public_base_url="https://qunzhi.example.gov.cn")


def _votes(db, n, start=0):
    with db.session() as s:
        for i in range(start, start + n):
            s.add(UselessVote(id=5000 + i, group_id="g4", voter_key=f"k{i}", day=date(2026, 11, 16)))


def _summary(db) -> dict:
    with db.session() as s:
        r = build_report(s, period="week", now=NOW, settings=SETTINGS)
        buf = io.BytesIO()
        write_xlsx(s, r, buf, SETTINGS)
    ws = load_workbook(io.BytesIO(buf.getvalue()))["概况"]
    return r, render_text(r), {row[0]: row[1] for row in ws.iter_rows(min_row=2, values_only=True)}


def _feedback_page(runtime, clock) -> str:
    clock.set(NOW)
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN) as c:
        login(c)
        return c.get("/dashboard/feedback").text


def test_fewer_than_five_votes_show_no_number(known, runtime, clock):
    _votes(known, 4)
    r, text, xlsx = _summary(known)
    assert r.useless_votes is None and r.to_dict()["useless_votes"] is None
    assert "“这个群没用” 不足5票" in text and "4 票" not in text
    assert xlsx["“这个群没用”票数"] == "不足5票"
    page = _feedback_page(runtime, clock)
    row = page[page.index("防汛抗旱群"):][:200]
    assert "不足5票" in row and "<td>4</td>" not in row


def test_five_votes_show_the_count(known, runtime, clock):
    _votes(known, 5)
    r, text, xlsx = _summary(known)
    assert r.useless_votes == 5 and "“这个群没用” 5 票" in text and xlsx["“这个群没用”票数"] == 5
    page = _feedback_page(runtime, clock)
    assert "<td>5</td>" in page[page.index("防汛抗旱群"):][:200]


def test_useless_findings_read_in_chinese_without_a_count_below_five(known, runtime, clock):
    from storage.feedback import _useless_finding
    from storage.models import Group

    with known.session() as s:
        _useless_finding(s, s.get(Group, "g4"), 3, NOW)
    clock.set(NOW)
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN) as c:
        login(c)
        page = c.get("/dashboard/findings").text
    row = page[page.index("有成员匿名认为此群没用") - 400:]
    assert "useless" not in page.replace('value="useless"', "") and "成员认为没用" in row
    with known.session() as s:
        buf = io.BytesIO()
        write_xlsx(s, build_report(s, period="week", now=NOW, settings=SETTINGS), buf, SETTINGS)
    ws = load_workbook(io.BytesIO(buf.getvalue()))["问题清单"]
    [kind] = [r[1] for r in ws.iter_rows(min_row=2, values_only=True) if "此群没用" in str(r[5])]
    assert kind == "成员认为没用"
