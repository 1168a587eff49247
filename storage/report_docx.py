"""``qunzhi report --format docx``: the weekly or monthly 通报 a commission files.

Layout after GB/T 9704 (党政机关公文格式) as far as python-docx allows: A4, margins 37/35/28/26 mm,
the title in 2号 方正小标宋简体, body in 3号 仿宋_GB2312 with a fixed 28.95 pt line (22 lines a
page), 一、 headings in 3号 黑体, page numbers "— 1 —" in 4号 宋体 at the foot, odd pages right and
even pages left. The fonts are named, not shipped: Word and WPS substitute what the machine has.

Figures come from ``storage.reports.build_report`` (the digest's and the xlsx's data), for this
period and the previous one; the per-unit cleanup table reads the same audit records.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any, BinaryIO

from docx import Document
from docx.enum.section import WD_SECTION_START
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt
from sqlalchemy import select
from sqlalchemy.orm import Session

from governance import labels
from storage.feedback import FEW_VOTES
from storage.models import AuditRecord, FindingRecord, Group, StatSnapshot
from storage.reports import MIN_FEEDBACK, Report, _fmt_day, _utc, build_report

TITLE_FONT, BODY_FONT, HEADING_FONT, KAI_FONT, PAGE_FONT = "方正小标宋简体", "仿宋_GB2312", "黑体", "楷体_GB2312", "宋体"
SIZE_2, SIZE_3, SIZE_4, SIZE_TABLE = Pt(22), Pt(16), Pt(14), Pt(12)
LINE = Pt(28.95)
CLEANUP_ACTIONS = ("dissolve", "merge", "keep", "veto", "restore")
CLEANUP_HEADERS = ["单位", "解散", "合并", "保留", "恢复"]
FIGURE_HEADERS = ["指标", "本期", "上期", "变化"]
ORDINALS = "一二三四五六七八九十"


def _font(run, name: str, size) -> None:
    run.font.name = name
    run.font.size = size
    rpr = run._element.get_or_add_rPr()
    fonts = rpr.find(qn("w:rFonts"))
    if fonts is None:
        fonts = OxmlElement("w:rFonts")
        rpr.insert(0, fonts)
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attr), name)


def _para(doc, text: str = "", *, font: str = BODY_FONT, size=SIZE_3, align=None, indent: bool = True):
    p = doc.add_paragraph()
    fmt = p.paragraph_format
    fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    fmt.line_spacing = LINE
    fmt.space_before = fmt.space_after = Pt(0)
    if indent:
        fmt.first_line_indent = Pt(size.pt * 2)  # two characters
    if align is not None:
        p.alignment = align
    if text:
        _font(p.add_run(text), font, size)
    return p


def _page_number(paragraph) -> None:
    """"— PAGE —" as a field, so Word and WPS number every page."""
    _font(paragraph.add_run("— "), PAGE_FONT, SIZE_4)
    run = paragraph.add_run()
    _font(run, PAGE_FONT, SIZE_4)
    for kind, text in (("begin", None), (None, "PAGE"), ("end", None)):
        if kind:
            el = OxmlElement("w:fldChar")
            el.set(qn("w:fldCharType"), kind)
        else:
            el = OxmlElement("w:instrText")
            el.set(qn("xml:space"), "preserve")
            el.text = text
        run._element.append(el)
    _font(paragraph.add_run(" —"), PAGE_FONT, SIZE_4)


def _table(doc, headers: list[str], rows: list[list[Any]]) -> None:
    t = doc.add_table(rows=1, cols=len(headers))
    t.style = "Table Grid"
    t.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, h in zip(t.rows[0].cells, headers):
        cell.text = ""
        _font(cell.paragraphs[0].add_run(h), HEADING_FONT, SIZE_TABLE)
        cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
    # the header row repeats on every page the table runs over
    trpr = t.rows[0]._tr.get_or_add_trPr()
    head = OxmlElement("w:tblHeader")
    head.set(qn("w:val"), "true")
    trpr.append(head)
    for row in rows:
        cells = t.add_row().cells
        for cell, v in zip(cells, row):
            cell.text = ""
            _font(cell.paragraphs[0].add_run(str(v)), BODY_FONT, SIZE_TABLE)
            cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER


def _num(x):
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _change(now: float | int | None, before: float | int | None) -> str:
    if now is None or before is None:
        return "—"
    d = round(now - before, 1)
    d = int(d) if float(d).is_integer() else d
    return "持平" if d == 0 else (f"增加 {d}" if d > 0 else f"减少 {-d}")


def cleanup_by_unit(session: Session, report: Report, tz) -> list[list[Any]]:
    t0, t1 = _utc(report.start, tz), _utc(report.end + timedelta(days=1), tz)
    rows = session.execute(select(AuditRecord.action, Group.unit).join(Group, Group.id == AuditRecord.group_id, isouter=True)
                           .where(AuditRecord.at >= t0, AuditRecord.at < t1, AuditRecord.action.in_(CLEANUP_ACTIONS)))
    by: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for action, unit in rows:
        by[unit or "未填单位"]["keep" if action == "veto" else action] += 1
    out = [[u, c["dissolve"], c["merge"], c["keep"], c["restore"]] for u, c in by.items()]
    out.sort(key=lambda r: (-(r[1] + r[2]), r[0]))
    return out


def rebound_names(session: Session, report: Report, tz) -> list[str]:
    t0, t1 = _utc(report.start, tz), _utc(report.end + timedelta(days=1), tz)
    names = dict(session.execute(select(Group.id, Group.name)).all())
    out = []
    for gids in session.execute(select(FindingRecord.group_ids).where(
            FindingRecord.kind == "rebound", FindingRecord.first_seen >= t0, FindingRecord.first_seen < t1)).scalars():
        for g in (gids or [])[:1]:
            out.append(names.get(str(g), str(g)))
    return sorted(set(out))


def suggestions(r: Report) -> list[str]:
    """Next steps read off the figures (no figure, no sentence)."""
    f = r.findings_open
    out = []
    if f.get("zombie"):
        out.append(f"督促群主处置 {f['zombie']} 个僵尸群：到期不回复的，按程序提醒后解散。")
    pairs = "、".join(x for x in (f"{f['duplicate']} 对重复群" if f.get("duplicate") else "",
                                  f"{f['overlap']} 个交叉群" if f.get("overlap") else "") if x)
    if pairs:
        out.append(f"对{pairs}逐一核实，能合并的合并。")
    if f.get("expired"):
        out.append(f"{f['expired']} 个临时群已到期，任务结束的及时解散，仍需使用的办理续期。")
    if f.get("unregistered"):
        out.append(f"督促 {f['unregistered']} 个未登记的群在一周内报备，逾期纳入清理。")
    if r.rebounds_new:
        out.append(f"回头看发现 {r.rebounds_new} 个群反弹回潮，请所在单位说明情况。")
    if r.burdened_units:
        u = r.burdened_units[0]
        out.append(f"重点关注{u['unit']}：干部人均所在群 {_num(u['mean'])} 个，为全县最多。")
    if r.pulse_heavy_share is not None and r.pulse_heavy_share >= 0.3:
        out.append(f"负担脉搏中认为“重”的占 {round(r.pulse_heavy_share * 100)}%，建议减少不必要的群内通知和留痕要求。")
    return out or ["本期未发现需要专门处理的问题，按期开展回头看。"]


def _snapshot_before(session: Session, day) -> dict:
    """The daily figures as they stood at the end of the previous period ({} when none was taken)."""
    snap = session.execute(select(StatSnapshot).where(StatSnapshot.day < day)
                           .order_by(StatSnapshot.day.desc()).limit(1)).scalar()
    return dict(snap.data) if snap else {}


def write_docx(session: Session, report: Report, out: str | BinaryIO, settings) -> None:
    r = report
    length = (r.end - r.start).days + 1
    # what happened in the previous period: the same report, one period earlier; how things stood
    # then: the daily snapshot (the report's state figures are always today's)
    prev = build_report(session, period=r.period, now=r.generated_at - timedelta(days=length), settings=settings)
    then = _snapshot_before(session, r.start)
    then_open = then.get("findings_open") or {}
    tz = settings.tz
    doc = Document()
    section = doc.sections[0]
    section.start_type = WD_SECTION_START.NEW_PAGE
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin, section.bottom_margin = Mm(37), Mm(35)
    section.left_margin, section.right_margin = Mm(28), Mm(26)
    settings_el = doc.settings.element
    even = OxmlElement("w:evenAndOddHeaders")
    settings_el.append(even)
    section.footer.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT
    _page_number(section.footer.paragraphs[0])
    section.even_page_footer.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.LEFT
    _page_number(section.even_page_footer.paragraphs[0])

    name = "周" if r.period == "week" else "月"
    _para(doc, f"{r.county}工作群治理情况通报", font=TITLE_FONT, size=SIZE_2, align=WD_ALIGN_PARAGRAPH.CENTER,
          indent=False)
    _para(doc, f"（{_fmt_day(r.start)}—{_fmt_day(r.end)}）", font=KAI_FONT, size=SIZE_3,
          align=WD_ALIGN_PARAGRAPH.CENTER, indent=False)
    _para(doc)

    _para(doc, "一、总体情况", font=HEADING_FONT)
    change = _change(r.groups_live, then.get("groups_live"))
    _para(doc, f"截至本{name}末，全县台账在册工作群 {r.groups_live} 个{'' if change == '—' else '（较上' + name + change + '）'}，"
               f"其中已登记 {r.groups_registered} 个、受保护 {r.groups_protected} 个、临时群 {r.groups_temporary} 个。"
               f"干部人均所在群中位数 {r.groups_per_cadre_median} 个，最多 {r.groups_per_cadre_max} 个"
               f"{'（' + r.groups_per_cadre_max_unit + '）' if r.groups_per_cadre_max_unit else ''}。")
    def row(label: str, now_, before):
        return [label, _num(now_), "—" if before is None else _num(before), _change(now_, before)]

    figures = [
        row("在册工作群（个）", r.groups_live, then.get("groups_live")),
        row("已登记（个）", r.groups_registered, then.get("groups_registered")),
        row("干部人均所在群（中位数）", r.groups_per_cadre_median, then.get("groups_per_cadre_median")),
        row("干部所在群最多（个）", r.groups_per_cadre_max, then.get("groups_per_cadre_max")),
        row(f"本{name}解散（个）", r.dissolved, prev.dissolved),
        row(f"本{name}合并（个）", r.merged, prev.merged),
        *[row(f"待处理{labels.kind(k)}", r.findings_open.get(k, 0), then_open.get(k, 0) if then else None)
          for k in sorted(set(r.findings_open) | set(then_open))],
    ]
    _table(doc, FIGURE_HEADERS, figures)

    _para(doc, "二、清理情况", font=HEADING_FONT)
    _para(doc, f"本{name}解散 {r.dissolved} 个（上{name} {prev.dissolved} 个），合并 {r.merged} 个，续期 {r.renewed} 个，"
               f"经群主说明保留 {r.kept} 个，解散后恢复 {r.restored} 个，新设受保护群 {r.protected_new} 个。"
               "所有解散均事先提醒群主并记录理由，30 天内可恢复。")
    by_unit = cleanup_by_unit(session, r, tz)
    if by_unit:
        _table(doc, CLEANUP_HEADERS, by_unit)
    else:
        _para(doc, f"本{name}各单位没有解散、合并、保留或恢复的群。")

    _para(doc, "三、回头看", font=HEADING_FONT)
    rebounds = rebound_names(session, r, tz)
    if r.rebounds_new:
        _para(doc, f"本{name}回头看发现反弹回潮 {r.rebounds_new} 个"
                   f"{'：' + '、'.join(rebounds) if rebounds else ''}。")
    else:
        _para(doc, f"本{name}回头看未发现已解散的群反弹回潮。")

    _para(doc, "四、基层反映", font=HEADING_FONT)
    if r.pulse_heavy_share is None:
        pulse = f"负担脉搏回答 {r.pulse_responses} 份，不足 {MIN_FEEDBACK} 份，暂不统计比例"
    else:
        pulse = f"负担脉搏回答 {r.pulse_responses} 份，认为负担“重”的占 {round(r.pulse_heavy_share * 100)}%"
    votes = FEW_VOTES if r.useless_votes is None else f"{r.useless_votes} 票"
    _para(doc, f"{pulse}；收到匿名反映 {r.formalism_reports} 条；“这个群没用”投票 {votes}。"
               f"以上均为匿名统计，不足 {MIN_FEEDBACK} 份的不列比例，不对应到个人。")

    _para(doc, "五、下一步建议", font=HEADING_FONT)
    for i, s in enumerate(suggestions(r), 1):
        _para(doc, f"（{ORDINALS[i - 1] if i <= len(ORDINALS) else i}）{s}")
    doc.save(out)
