"""Ledger fixtures written the way counties write them, generated per test (no binaries committed):
xlsx with openpyxl, legacy xls with xlwt, ods with odfpy, CSV in UTF-8 (BOM or not) and GBK."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path

COUNTY_HEADER = ["序号", "群名称", "群主", "所属单位", "群类型", "建群用途", "建群时间", "拟解散时间", "成员", "备注"]
TITLE = "城关镇工作群台账（2026年11月）"
FILLED = "填报单位：城关镇党政办　　填报日期：2026年11月20日"


def excel_serial(d: date) -> int:
    return (d - date(1899, 12, 30)).days


def county_rows(members: list[str] | None = None) -> list[list]:
    """The county's sheet body (after the header). ``members`` replaces the member cells."""
    rows = [
        [1, "城关镇防汛抗旱工作群", "zhangsan", "城关镇", "临时", "防汛调度", date(2026, 5, 1), date(2026, 10, 31),
         "zhangsan、lisi、wangwu", "汛期结束解散"],
        [2, "城关镇党政办机关群", "lisi", "城关镇", "常设", "日常工作", datetime(2020, 3, 1), "长期",
         "lisi，wangwu zhaoliu", None],
        [3, "秋粮收购专班群", "wangwu", None, "工作专班", "秋粮收购", "2026.9.1", "2026年12月",
         "wangwu;zhangsan\nlisi", None],
        [4, "森林防火群", "zhaoliu", "城关镇", "专班", "森林防火", excel_serial(date(2026, 1, 15)), "12月31日",
         "zhaoliu,  lisi", "与林业站共用"],
        [5, "人居环境整治群", "zhangsan", "城关镇", "长期", "环境整治", "2026/3/8", "常设", "zhangsan", None],
    ]
    if members is not None:
        for r, m in zip(rows, members):
            r[8] = m
    return rows


def county_sheet(members: list[str] | None = None, header: list[str] | None = None) -> list[list]:
    return [[TITLE], [FILLED], [], header or COUNTY_HEADER, *county_rows(members)]


VILLAGE_HEADER = ["群名", "负责人", "类型", "用途", "创建时间", "截止时间", "群成员"]
VILLAGE_ROWS = [["下坪村村务群", "sunqi", "常设", "村务", date(2024, 1, 2), None, "sunqi 、zhouba"],
                ["下坪村防疫群", "zhouba", "临时", "防疫", date(2025, 2, 3), date(2026, 12, 31), "zhouba"]]


def village_sheet() -> list[list]:
    return [["下坪村工作群台账"], VILLAGE_HEADER, *VILLAGE_ROWS]


def write_xlsx(path: Path, sheets: dict[str, list[list]], merge_title: bool = True) -> Path:
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for r in rows:
            ws.append(r)
        if merge_title and rows and len(rows[0]) == 1:
            ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=max(len(r) for r in rows))
        for row in ws.iter_rows():
            for c in row:
                if isinstance(c.value, (date, datetime)):
                    c.number_format = "yyyy-mm-dd"
    wb.save(path)
    return path


def write_xls(path: Path, sheets: dict[str, list[list]]) -> Path:
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    dates = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for name, rows in sheets.items():
        ws = wb.add_sheet(name)
        width = max(len(r) for r in rows)
        for i, r in enumerate(rows):
            if i == 0 and len(r) == 1:
                ws.write_merge(0, 0, 0, width - 1, r[0])
                continue
            for j, v in enumerate(r):
                if v is None:
                    continue
                if isinstance(v, datetime):
                    ws.write(i, j, v, dates)
                elif isinstance(v, date):
                    ws.write(i, j, datetime(v.year, v.month, v.day), dates)
                else:
                    ws.write(i, j, v)
    wb.save(str(path))
    return path


def write_ods(path: Path, sheets: dict[str, list[list]]) -> Path:
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    doc = OpenDocumentSpreadsheet()
    for name, rows in sheets.items():
        t = Table(name=name)
        for r in rows:
            tr = TableRow()
            for v in r:
                if v is None:
                    c = TableCell()
                elif isinstance(v, (date, datetime)):
                    d = v.date() if isinstance(v, datetime) else v
                    c = TableCell(valuetype="date", datevalue=d.isoformat())
                    c.addElement(P(text=d.isoformat()))
                elif isinstance(v, (int, float)):
                    c = TableCell(valuetype="float", value=v)
                    c.addElement(P(text=str(v)))
                else:
                    c = TableCell(valuetype="string")
                    for line in str(v).split("\n"):
                        c.addElement(P(text=line))
                tr.addElement(c)
            t.addElement(tr)
        doc.spreadsheet.addElement(t)
    doc.save(str(path))
    return path


def csv_text(rows: list[list]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    for r in rows:
        w.writerow(["" if v is None else v.strftime("%Y-%m-%d") if isinstance(v, (date, datetime)) else v for v in r])
    return out.getvalue()


def write_csv(path: Path, rows: list[list], encoding: str = "utf-8") -> Path:
    path.write_bytes(csv_text(rows).encode(encoding))
    return path
