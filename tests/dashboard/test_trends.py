"""Weekly trends (趋势) for the county and one unit, the ledger's columns and merging by choosing a
group: the figures are read back from the pages (tables beside the charts and the chart data)."""
from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from zoneinfo import ZoneInfo

from bot.app import create_app
from storage import audit
from storage import dashboard as queries
from storage.models import AuditRecord, FindingRecord, Group, Message, PulseResponse, UselessVote
from tests.dashboard.conftest import BEFORE, IN_WEEK, NOW
from tests.dashboard.test_dashboard_auth import ORIGIN, login

TZ = ZoneInfo("Asia/Shanghai")


def _messages(s, gid, at, work, ritual):
    for i in range(work + ritual):
        s.add(Message(dedupe_key=f"{gid}:{at.isoformat()}:{i}", platform="wecom", group_id=gid, sender_id="a",
                      sent_at=at + timedelta(minutes=i), is_ritual=i >= work))


@pytest.fixture
def county(known):
    """The known state, plus an import two weeks before last week, messages in two weeks, pulse
    answers (5 in 城关镇 last week; 4 in 容美镇 the week before: too few) and 3 useless votes."""
    with known.session() as s:
        audit.record(s, actor="import", action="import", at=BEFORE - timedelta(days=7), reason="导入台账 台账.xlsx")
        _messages(s, "g1", BEFORE, work=6, ritual=2)     # week of 11月9日: 2 of 8 rituals
        _messages(s, "g4", IN_WEEK, work=1, ritual=3)    # week of 11月16日, 容美镇: 3 of 4
        for i in range(4):
            s.add(PulseResponse(id=2000 + i, period="2026-W46", unit="容美镇", value=3, voter_key=f"w{i}",
                                day=date(2026, 11, 9)))
        for i in range(3):
            s.add(UselessVote(id=3000 + i, group_id="g4", voter_key=f"u{i}", day=date(2026, 11, 16),
                              window_start=date(2026, 11, 16)))
        s.add(FindingRecord(key="dup:g3:g4", kind="duplicate", group_ids=["g3", "g4"], person_ids=[], score=0.9,
                            action="merge", reasons=["成员相同"], status="open", first_seen=IN_WEEK,
                            last_seen=IN_WEEK))
    return known


@pytest.fixture
def web(runtime, county, clock):
    clock.set(NOW)
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN) as c:
        yield c


def _table(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def _chart(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="trend-data">(.*?)</script>', html, re.S).group(1))


def test_series_start_with_the_first_import(county):
    with county.session() as s:
        t = queries.trends(s, now=NOW, tz=TZ)
    assert [w.monday for w in t.weeks] == [date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16),
                                            date(2026, 11, 23)]
    assert t.weeks[-1].current and not t.weeks[0].current
    # g5 was dissolved on 11月10日: out from the week of 11月9日 on
    assert t.groups == [5, 4, 4, 4]
    assert t.dissolved == [0, 1, 2, 0] and t.kept == [0, 0, 1, 0] and t.restored == [0, 0, 1, 0]
    assert t.messages == [0, 8, 4, 0] and t.ritual_share == [None, 25.0, 75.0, None]
    # k-anonymity: 4 answers in 容美镇's week are not shown, nor 3 votes
    assert t.pulse_answers == [None, None, 5, None] and t.pulse_heavy == [None, None, 40.0, None]
    assert t.useless_votes == [0, 0, None, 0]
    assert t.formalism_reports == [0, 0, 1, 0]
    # a(城关镇) in g1 g2 g3 g5, b in g3 g5, c in g1 g4 g5: before g5 went, max 4 and median 3
    assert (t.per_cadre_median, t.per_cadre_max) == ([3, 2, 2, 2], [4, 3, 3, 3])


def test_trends_page_has_a_table_beside_every_chart(web):
    login(web)
    html = web.get("/dashboard/trends").text
    for chart in ("groups", "cadre", "ritual", "actions", "feedback"):
        assert f'id="chart-t-{chart}"' in html and f'id="t-{chart}"' in html
    assert _table(html, "t-groups") == [["2026年11月2日", "5"], ["2026年11月9日", "4"], ["2026年11月16日", "4"],
                                        ["本周（截至今日）", "4"]]
    assert _table(html, "t-ritual")[1:3] == [["2026年11月9日", "8", "25.0%"], ["2026年11月16日", "4", "75.0%"]]
    assert _table(html, "t-actions")[2] == ["2026年11月16日", "2", "1", "1", "1"]
    feedback = _table(html, "t-feedback")
    assert feedback[1] == ["2026年11月9日", "不足5份", "—", "0", "0"]
    assert feedback[2] == ["2026年11月16日", "5", "40.0%", "不足5票", "1"]
    data = _chart(html)
    assert data["groups"] == [5, 4, 4, 4] and data["labels"][-1] == "本周" and data["pulse_answers"][1] is None


def test_unit_page_has_the_units_own_series(web):
    login(web)
    units = web.get("/dashboard/units").text
    assert '/dashboard/unit?name=%E5%AE%B9%E7%BE%8E%E9%95%87' in units  # 容美镇
    html = web.get("/dashboard/unit", params={"name": "容美镇"}).text
    assert "容美镇 · 每周趋势" in html
    assert [r[1] for r in _table(html, "t-groups")] == ["2", "1", "1", "1"]  # g4, g5 (dissolved 11月10日)
    assert _table(html, "t-ritual")[2] == ["2026年11月16日", "4", "75.0%"]
    assert [r[1] for r in _table(html, "t-actions")] == ["0", "1", "2", "0"]
    feedback = _table(html, "t-feedback")
    assert len(feedback[0]) == 4  # no formalism column: reports carry no unit
    assert feedback[1][1] == "不足5份" and feedback[2][1] == "不足5份"  # 城关镇's answers are not 容美镇's
    assert _chart(html)["formalism_reports"] == [None] * 4
    assert web.get("/dashboard/unit", params={"name": "不存在的单位"}).status_code == 404


def test_ledger_shows_expiry_purpose_source_last_work_and_id(web, runtime):
    with runtime.db.session() as s:
        g = s.get(Group, "g3")
        g.purpose, g.expires_at, g.activity_source = "秋粮收购调度", date(2026, 12, 31), "counts"
        s.get(Group, "g4").platform = "ledger"
    login(web)
    rows = {r[1]: r for r in _table(web.get("/dashboard/groups").text, "groups-table")}
    assert rows["g3"][4] == "秋粮收购调度" and rows["g3"][7] == "2026-12-31" and rows["g3"][10] == "仅每日消息数"
    assert rows["g1"][7] == "长期" and rows["g1"][10] == "仅@机器人的消息（平台默认）"
    assert rows["g4"][10] == "未知"
    assert rows["g1"][11] == "2026-05-07"  # last work message, local date (200 days before NOW)


def _csrf(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_merge_by_choosing_a_group(web, runtime):
    csrf = login(web)
    page = web.get("/dashboard/merge", params={"group_id": "g4"}).text
    options = re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', page)
    assert options[0] == ("g3", "秋粮收购专班（疑似重复，城关镇，0人）")  # the duplicate's partner first
    assert "g4" not in [v for v, _ in options] and "g5" not in [v for v, _ in options]  # not itself, not dissolved
    # the server checks again: a dissolved target, itself, nothing chosen
    for target, words in [("g5", "已不在使用中"), ("g4", "合并到它自己"), ("", "请选择")]:
        r = web.post("/dashboard/actions/merge", data={"csrf": csrf, "group_id": "g4", "target_id": target},
                     headers={"Origin": ORIGIN})
        assert words in r.text, target
    with runtime.db.session() as s:
        assert s.get(Group, "g4").status == "active"
    assert web.post("/dashboard/actions/merge", data={"csrf": "forged", "group_id": "g4", "target_id": "g3"},
                    headers={"Origin": ORIGIN}).status_code == 403
    r = web.post("/dashboard/actions/merge", data={"csrf": _csrf(page), "group_id": "g4", "target_id": "g3"},
                 headers={"Origin": ORIGIN})
    assert "已将“防汛抗旱群”合并到“秋粮收购专班”" in r.text
    with runtime.db.session() as s:
        assert s.get(Group, "g4").merged_into == "g3"
        last = s.query(AuditRecord).order_by(AuditRecord.id.desc()).filter(AuditRecord.action == "merge").first()
        assert (last.group_id, last.data["into"]) == ("g4", "g3")
    # a protected group offers no merge
    assert "受保护群，不能合并" in web.get("/dashboard/merge", params={"group_id": "g1"}).text


def test_merge_page_is_for_administrators(web, runtime):
    from storage import logins
    from storage.models import Person

    with runtime.db.session() as s:
        link = logins.issue_link(s, s.get(Person, "d"), NOW, ORIGIN)
    path = link.removeprefix(ORIGIN)
    web.post(path, data={"csrf": _csrf(web.get(path).text)}, headers={"Origin": ORIGIN})
    assert web.get("/dashboard/merge", params={"group_id": "g4"}).status_code == 403
    assert web.get("/dashboard/trends").status_code == 200  # the commission reads the trends
