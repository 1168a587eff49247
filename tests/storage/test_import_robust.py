"""Ledger files that used to break the importer: an oversized CSV cell, an xlsx whose <dimension> is
stale, and an xlsx that inflates far beyond its size (declared or hidden)."""
import re
import struct
import zipfile
from datetime import date

from openpyxl import Workbook

from tests.storage.test_import import cli, state  # noqa: F401  (fixtures)

HEAD = "group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids"


def test_csv_cell_over_the_field_limit_is_a_chinese_error_with_its_row(cli, db, tmp_path):
    f = tmp_path / "ledger.csv"
    f.write_text("\n".join([HEAD, "g1,好群,wecom,zhang,城关镇,机关群,,2025-01-05,,zhang",
                            "g2,长用途群,wecom,li,城关镇,临时群," + "a" * 200_000 + ",2026-01-01,,li",
                            "g3,后面的群,wecom,li,城关镇,临时群,,2026-01-01,,li"]) + "\n", encoding="utf-8")
    r = cli("import", "groups", str(f))
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)  # no traceback
    assert "第3行" in r.output and "131072" in r.output and "导入失败" in r.output
    assert state(db) == ([], [], 0)


def _rewrite(src, dst, name, fn):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, fn(data) if item.filename == name else data)


def test_xlsx_with_a_stale_dimension_is_read_whole(cli, db, tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.append(["群编号", "群名称", "平台", "群主", "单位", "类别", "用途", "建群日期", "到期日期", "成员"])
    for i in range(30):
        ws.append([f"x{i:02d}", f"森林防火群{i}", "企业微信", "wu", "容美镇", "临时群", "防火", date(2026, 3, 1),
                   "2027年1月31日", f"wu;a{i};b{i}"])
    good = tmp_path / "good.xlsx"
    wb.save(good)
    stale = tmp_path / "stale.xlsx"
    _rewrite(good, stale, "xl/worksheets/sheet1.xml",
             lambda xml: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:C5"', xml))
    with zipfile.ZipFile(stale) as z:
        assert b'<dimension ref="A1:C5"' in z.read("xl/worksheets/sheet1.xml")
    r = cli("import", "groups", str(stale))
    assert r.exit_code == 0, r.output
    assert "新增30" in r.output
    groups, members, _ = state(db)
    assert len(groups) == 30 and len(members) == 90
    assert groups[29][:6] == ("x29", "森林防火群29", "wecom", "wu", "容美镇", "临时群")
    assert groups[29][8] == date(2027, 1, 31)


def _ledger_xlsx(path, pad: bytes | None = None):
    wb = Workbook()
    ws = wb.active
    ws.append(["群编号", "群名称", "成员"])
    ws.append(["z1", "防汛群", "a;b"])
    wb.save(path)
    if pad is not None:
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
            z.writestr("xl/media/pad.bin", pad)


def _lie_about_size(path, name: str, size: int) -> None:
    """Patch the uncompressed size of one entry, in its local header and in the central directory."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    assert raw[info.header_offset:info.header_offset + 4] == b"PK\x03\x04"
    struct.pack_into("<I", raw, info.header_offset + 22, size)
    pos = 0
    while (pos := raw.find(b"PK\x01\x02", pos)) != -1:
        n = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46:pos + 46 + n] == name.encode():
            struct.pack_into("<I", raw, pos + 24, size)
            break
        pos += 4
    else:
        raise AssertionError(f"{name} is not in the central directory")
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as z:
        assert z.getinfo(name).file_size == size


def _no_parsing(monkeypatch):
    import storage.sheets as sheets

    def refuse(*a, **k):
        raise AssertionError("the workbook was parsed")

    monkeypatch.setattr(sheets, "_open_workbook", refuse)


def test_xlsx_inflating_past_the_limit_is_refused_before_parsing(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("QUNZHI_IMPORT_MAX_UNZIPPED_BYTES", "1000000")
    small = tmp_path / "small.xlsx"
    _ledger_xlsx(small)
    assert cli("import", "groups", str(small)).exit_code == 0  # under the limit: imported
    bomb = tmp_path / "bomb.xlsx"
    _ledger_xlsx(bomb, b"\0" * 5_000_000)
    assert bomb.stat().st_size < 100_000
    _no_parsing(monkeypatch)
    r = cli("import", "groups", str(bomb))
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)
    assert "解压" in r.output and "QUNZHI_IMPORT_MAX_UNZIPPED_BYTES" in r.output and "1000000" in r.output
    assert len(state(db)[0]) == 1


def test_xlsx_hiding_its_real_size_is_refused_too(cli, db, tmp_path, monkeypatch):
    monkeypatch.setenv("QUNZHI_IMPORT_MAX_UNZIPPED_BYTES", "1000000")
    bomb = tmp_path / "liar.xlsx"
    _ledger_xlsx(bomb, b"\0" * 5_000_000)
    _lie_about_size(bomb, "xl/media/pad.bin", 100)
    _no_parsing(monkeypatch)
    r = cli("import", "groups", str(bomb))
    assert r.exit_code == 2, r.output
    assert "解压" in r.output and "1000000" in r.output
    assert state(db) == ([], [], 0)


def test_default_limit_is_a_few_hundred_megabytes():
    from config.settings import Settings

    limit = Settings(_env_file=None).import_max_unzipped_bytes
    assert 100 * 2**20 <= limit <= 1024 * 2**20


def test_the_content_not_the_suffix_decides(cli, db, tmp_path, monkeypatch):
    """A legacy .xls saved under .xlsx (WPS does this) is read; a zip bomb named .xls is still refused."""
    from tests.storage import ledger_files as lf

    monkeypatch.setenv("QUNZHI_IMPORT_MAX_UNZIPPED_BYTES", "1000000")  # read once per CLI runtime
    xls = lf.write_xls(tmp_path / "x.xls", {"城关镇": [["群名称", "群主"], ["应急群", "zhangsan"]]})
    renamed = tmp_path / "wps.xlsx"
    renamed.write_bytes(xls.read_bytes())
    r = cli("import", "groups", str(renamed))
    assert r.exit_code == 0 and "新增1" in r.output, r.output
    bomb = tmp_path / "bomb.xlsx"
    _ledger_xlsx(bomb, b"\0" * 5_000_000)
    disguised = tmp_path / "bomb.xls"
    disguised.write_bytes(bomb.read_bytes())
    _no_parsing(monkeypatch)
    r = cli("import", "groups", str(disguised))
    assert r.exit_code == 2 and "解压" in r.output, r.output


def test_a_zip_of_an_unsupported_version_is_a_chinese_error(cli, db, tmp_path):
    """A damaged workbook whose zip claims a newer format (the fuzzer found "zip file version 6.4",
    a raw NotImplementedError) is refused in Chinese and changes nothing."""
    path = tmp_path / "new.xlsx"
    _ledger_xlsx(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")  # the first central directory entry: "version needed" at +6
    data[at + 6:at + 8] = struct.pack("<H", 64)
    path.write_bytes(bytes(data))
    r = cli("import", "groups", str(path))
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)
    assert "无法打开文件" in r.output
    assert len(state(db)[0]) == 0
