"""Fuzzing the ledger's own formats: any cell is a date, None or a Chinese ValueError; any grid of
cells gives a header or a Chinese LayoutError; any workbook bytes give rows or a Chinese error."""
from __future__ import annotations

import os
import re
import tempfile
from datetime import date, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from storage.importers import ImportFormatError, read_ledger
from storage.ledger_format import LayoutError, find_header, parse_count, parse_ledger_date

N = int(os.environ.get("QUNZHI_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N, deadline=2000, suppress_health_check=list(HealthCheck))
CJK = re.compile(r"[\u4e00-\u9fff]")
WORDS = ["群名称", "群主", "所属单位", "成员", "序号", "填报日期：2026年11月20日", "", None, "群 名 称", "備註", "人数",
         "2026.5.1", "长期", "合计"]
cell = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(WORDS), st.integers(-10**6, 10**6),
                 st.floats(allow_nan=True, allow_infinity=True), st.dates(), st.datetimes(), st.booleans())


@FUZZ
@given(cell, st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.booleans())
def test_a_date_cell_is_a_date_none_or_a_chinese_error(v, today, end):
    try:
        d = parse_ledger_date(v, today, end)
    except ValueError as e:
        assert CJK.search(str(e)), str(e)
        return
    assert d is None or isinstance(d, date) and not isinstance(d, datetime)


@FUZZ
@given(cell)
def test_a_count_cell_is_a_count_none_or_a_chinese_error(v):
    try:
        n = parse_count(v)
    except (ValueError, OverflowError) as e:
        assert isinstance(e, ValueError) and CJK.search(str(e)), str(e)
        return
    assert n is None or (isinstance(n, int) and n >= 0)


@FUZZ
@given(st.lists(st.lists(cell, max_size=8), max_size=12))
def test_any_grid_gives_a_header_or_a_chinese_error(grid):
    rows = list(enumerate(grid, start=1))
    try:
        pos, layout = find_header(rows)
    except LayoutError as e:
        assert CJK.search(str(e))
        return
    assert "name" in layout.fields and rows[pos][0] == layout.header_row


@settings(max_examples=max(20, N // 4), deadline=5000, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=3000), st.sampled_from([".xlsx", ".xls", ".ods"]))
def test_any_workbook_bytes_give_rows_or_a_chinese_error(raw, suffix):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"ledger{suffix}"
        p.write_bytes(raw)
        try:
            read_ledger(p)
        except ImportFormatError as e:
            assert CJK.search(str(e)), str(e)


def _valid_xlsx() -> bytes:
    from tests.storage import ledger_files as lf

    with tempfile.TemporaryDirectory() as d:
        return lf.write_xlsx(Path(d) / "a.xlsx", {"城关镇": lf.county_sheet()}).read_bytes()


VALID = _valid_xlsx()


@settings(max_examples=max(20, N // 4), deadline=5000, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=20))
def test_a_damaged_xlsx_gives_rows_or_a_chinese_error(flips):
    raw = bytearray(VALID)
    for pos, b in flips:
        raw[pos] = b
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ledger.xlsx"
        p.write_bytes(bytes(raw))
        try:
            read_ledger(p)
        except ImportFormatError as e:
            assert CJK.search(str(e)), str(e)
