"""The 通报 in Word: read back with python-docx, figures equal the report's (same data as the digest)."""
from __future__ import annotations

import io

from docx import Document
from docx.oxml.ns import qn
from docx.shared import Mm

from storage.report_docx import write_docx
from storage.reports import build_report
from tests.conftest import make_settings
from tests.dashboard.conftest import NOW

SETTINGS = make_settings(county_name="鹤峰县")


def _doc(db):
    buf = io.BytesIO()
    with db.session() as s:
        r = build_report(s, period="week", now=NOW, settings=SETTINGS)
        write_docx(s, r, buf, SETTINGS)
    buf.seek(0)
    return r, Document(buf)


def _text(doc) -> list[str]:
    return [p.text for p in doc.paragraphs if p.text]


def test_the_document_has_the_commission_shape(known):
    r, doc = _doc(known)
    lines = _text(doc)
    assert lines[0] == "鹤峰县工作群治理情况通报" and lines[1] == "（11月16日—11月22日）"
    heads = [x for x in lines if x[:2] in ("一、", "二、", "三、", "四、", "五、")]
    assert heads == ["一、总体情况", "二、清理情况", "三、回头看", "四、基层反映", "五、下一步建议"]
    sec = doc.sections[0]
    assert (round(sec.page_width.mm), round(sec.page_height.mm)) == (210, 297)
    assert (round(sec.top_margin.mm), round(sec.left_margin.mm)) == (37, 28)
    footer_xml = sec.footer.paragraphs[0]._element.xml
    assert "PAGE" in footer_xml and "fldChar" in footer_xml  # page numbers
    title_run = doc.paragraphs[0].runs[0]
    assert title_run._element.rPr.find(qn("w:rFonts")).get(qn("w:eastAsia")) == "方正小标宋简体"
    assert Mm(0) < sec.bottom_margin


def test_the_figures_are_the_reports(known):
    r, doc = _doc(known)
    figures, cleanup = doc.tables[0], doc.tables[1]
    assert [c.text for c in figures.rows[0].cells] == ["指标", "本期", "上期", "变化"]
    rows = {row.cells[0].text: [c.text for c in row.cells[1:]] for row in figures.rows[1:]}
    assert rows["在册工作群（个）"][0] == str(r.groups_live)
    assert rows["待处理僵尸群"][0] == str(r.findings_open["zombie"])
    assert rows["在册工作群（个）"][1:] == ["—", "—"]  # no snapshot of the previous week: no made-up change
    assert rows["本周解散（个）"] == [str(r.dissolved), "1", "增加 1"]  # the week before, from its audit records
    assert [c.text for c in cleanup.rows[0].cells] == ["单位", "解散", "合并", "保留", "恢复"]
    totals = [sum(int(row.cells[i].text) for row in cleanup.rows[1:]) for i in range(1, 5)]
    assert totals == [r.dissolved, r.merged, r.kept, r.restored]
    body = "\n".join(_text(doc))
    assert f"本周解散 {r.dissolved} 个" in body and f"回头看发现反弹回潮 {r.rebounds_new} 个" in body
    assert "认为负担“重”的占 40%" in body and f"匿名反映 {r.formalism_reports} 条" in body
    assert "督促群主处置 2 个僵尸群" in body  # a suggestion read off the figures


def test_the_cli_writes_a_docx(known, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli import app
    from config.settings import get_settings
    monkeypatch.setenv("QUNZHI_DATABASE_URL", known.url)
    get_settings.cache_clear()
    try:
        out = tmp_path / "通报.docx"
        r = CliRunner().invoke(app, ["report", "--format", "docx", "--out", str(out)])
        assert r.exit_code == 0 and "已导出通报" in r.output, r.output
        assert Document(str(out)).paragraphs[0].text.endswith("工作群治理情况通报")
        r = CliRunner().invoke(app, ["report", "--format", "docx"])
        assert r.exit_code == 2 and "--out" in r.output
    finally:
        get_settings.cache_clear()


def test_state_figures_of_the_previous_period_come_from_its_snapshot(known):
    from datetime import timedelta

    from storage.models import StatSnapshot
    with known.session() as s:
        s.add(StatSnapshot(day=(NOW - timedelta(days=9)).date(),
                           data={"groups_live": 6, "groups_registered": 3, "groups_per_cadre_median": 2,
                                 "groups_per_cadre_max": 5, "findings_open": {"zombie": 3}}))
    r, doc = _doc(known)
    rows = {row.cells[0].text: [c.text for c in row.cells[1:]] for row in doc.tables[0].rows[1:]}
    assert rows["在册工作群（个）"] == ["4", "6", "减少 2"]
    assert rows["待处理僵尸群"] == ["2", "3", "减少 1"]
    assert "在册工作群 4 个（较上周减少 2）" in "\n".join(_text(doc))


def test_the_digest_links_to_the_document_the_dashboard_serves(known):
    from fastapi.testclient import TestClient

    from bot.app import create_app
    from bot.runtime import Runtime
    from storage.reports import render_text
    from tests.dashboard.conftest import NOW as now

    with known.session() as s:
        text = render_text(build_report(s, period="week", now=NOW, settings=SETTINGS))
    assert "[下载通报](http://127.0.0.1:8000/dashboard/download/report.docx?period=week)" in text
    rt = Runtime(SETTINGS.model_copy(update={"database_url": known.url}), db=known, clock=lambda: now)
    from tests.dashboard.test_dashboard_auth import ORIGIN, login
    with TestClient(create_app(runtime=rt, start_scheduler=False), base_url=ORIGIN) as c:
        login(c)
        r = c.get("/dashboard/download/report.docx?period=week")
    assert r.status_code == 200 and r.headers["content-type"].endswith("wordprocessingml.document")
    assert Document(io.BytesIO(r.content)).paragraphs[0].text == "鹤峰县工作群治理情况通报"
