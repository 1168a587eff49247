"""Twelve ledgers shaped as counties keep them, generated here: each imports whole, says nothing is
wrong in its dry run, and imports again unchanged."""
from datetime import date

import pytest
from sqlalchemy import func, select

from storage.models import Group
from tests.storage import ledger_files as lf
from tests.storage.test_import import CHINESE_CSV, GOOD_CSV, cli  # noqa: F401  (fixture)

CG = "城关镇"


def _template_csv(p):
    (p / "ledger.csv").write_text(GOOD_CSV, encoding="utf-8")
    return p / "ledger.csv", 3


def _chinese_template_gbk(p):
    (p / "台账.csv").write_bytes(CHINESE_CSV.encode("gbk"))
    return p / "台账.csv", 1


def _county_xlsx(p):
    return lf.write_xlsx(p / "城关镇.xlsx", {CG: lf.county_sheet()}), 5


def _county_xls(p):
    return lf.write_xls(p / "城关镇.xls", {CG: lf.county_sheet()}), 5


def _county_ods(p):
    return lf.write_ods(p / "城关镇.ods", {CG: lf.county_sheet()}), 5


def _towns_workbook(p):
    sheets = {CG: lf.county_sheet(), "下坪村": lf.village_sheet()}
    for town in ("容美镇", "走马镇"):
        sheets[town] = [[f"{town}工作群台账"], lf.VILLAGE_HEADER,
                        *[[f"{town}{r[0]}", *r[1:]] for r in lf.VILLAGE_ROWS]]
    return lf.write_xlsx(p / "全县.xlsx", sheets), 11


def _traditional_full_width(p):
    header = ["序　号", "工作群名稱", "群主姓名", "所屬單位", "性質", "主要用途", "成立時間", "使用期限", "成員名單", "備註"]
    return lf.write_xlsx(p / "繁體.xlsx", {CG: lf.county_sheet(header=header)}), 5


def _ids_and_platforms(p):
    rows = [["群ID", "群名称", "平台", "群主", "单位", "群类型", "建群日期", "成员"],
            ["wrOgAAA1", "应急指挥群", "企业微信", "zhangsan", CG, "临时", date(2026, 7, 1), "zhangsan、lisi"],
            ["ding-778", "宣传群", "钉钉", "lisi", CG, "常设", "2025/3/1", "lisi wangwu"]]
    return lf.write_xlsx(p / "带编号.xlsx", {CG: rows}), 2


def _counts_only(p):
    rows = [["序号", "群名称", "负责人", "部门", "人数"], [1, "党建群", "zhangsan", "组织办", 48],
            [2, "综治群", "lisi", "综治办", "31人"]]
    return lf.write_xls(p / "人数.xls", {"统计": rows}), 2


def _wps_xls_saved_as_xlsx(p):
    x = lf.write_xls(p / "wps.xls", {CG: lf.county_sheet()})
    y = p / "wps.xlsx"
    y.write_bytes(x.read_bytes())
    return y, 5


def _gb18030_csv_with_title(p):
    return lf.write_csv(p / "城关镇台账.csv", lf.county_sheet(), "gb18030"), 5


def _totals_footers_numbered_rows(p):
    sheet = lf.county_sheet() + [[6], [7], [None, "合计", None, None, None, None, None, None, "15"],
                                 ["填表人：王五", None, None, None, None, None, "审核人：张三"]]
    return lf.write_xlsx(p / "带合计.xlsx", {CG: sheet}), 5


LEDGERS = {f.__name__.lstrip("_"): f for f in (
    _template_csv, _chinese_template_gbk, _county_xlsx, _county_xls, _county_ods, _towns_workbook,
    _traditional_full_width, _ids_and_platforms, _counts_only, _wps_xls_saved_as_xlsx, _gb18030_csv_with_title,
    _totals_footers_numbered_rows)}


def test_there_are_twelve():
    assert len(LEDGERS) == 12


@pytest.mark.parametrize("name", sorted(LEDGERS))
def test_each_ledger_imports_whole_and_again_unchanged(cli, db, tmp_path, name):
    f, n = LEDGERS[name](tmp_path)
    r = cli("import", "groups", str(f), "--dry-run")
    assert r.exit_code == 0 and "问题" not in r.output and f"预演结果：新增{n}，" in r.output, r.output
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0 and f"新增{n}，" in r.output, r.output
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(Group)).scalar_one() == n
    r = cli("import", "groups", str(f))
    assert f"新增0，更新0，未变{n}" in r.output, r.output
