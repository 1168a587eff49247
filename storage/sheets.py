"""Reading spreadsheet files into rows of cells, without a database.

CSV is streamed (decoded as it is read). XLSX/XLSM/ODS are zip files: their inflated size is checked
against a limit before any parser sees them (the sizes the zip declares and the sizes its streams
really inflate to), then the workbook is read with calamine, which reads every cell whatever the
sheet's ``<dimension>`` says. Messages for users are in Chinese (``ImportFormatError``).
"""
from __future__ import annotations

import csv
import hashlib
import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

DEFAULT_MAX_UNZIPPED_BYTES = 256 * 1024 * 1024
ZIP_SUFFIXES = (".xlsx", ".xlsm", ".ods")
LIMIT_SETTING = "QUNZHI_IMPORT_MAX_UNZIPPED_BYTES"


class ImportFormatError(ValueError):
    """The file as a whole cannot be read (message in Chinese)."""


Rows = Iterator[tuple[int, list[Any]]]


# --- zip bombs -----------------------------------------------------------------------------------
def _too_big(limit: int, hidden: bool) -> ImportFormatError:
    why = "（文件里声明的大小与实际不符）" if hidden else ""
    return ImportFormatError(
        f"文件解压后超过 {limit} 字节（约 {limit / 2**20:.0f} MB）的上限{why}，为安全起见拒绝读取。"
        f"若确为正常的大台账，可调高环境变量 {LIMIT_SETTING}，或另存为 CSV 后导入。")


_LOCAL = struct.Struct("<4s22xHH")  # signature, …, file name length, extra field length
_STEP = 1 << 20


def _inflated_size(fh, info: zipfile.ZipInfo, cap: int) -> int:
    """How many bytes one entry really inflates to (stops counting past ``cap``), ignoring the sizes
    the zip declares: its raw stream is inflated and counted, never kept."""
    fh.seek(info.header_offset)
    head = fh.read(_LOCAL.size)
    if len(head) < _LOCAL.size:
        raise ImportFormatError("文件已损坏（zip 结构不完整），无法读取。")
    sig, name_len, extra_len = _LOCAL.unpack(head)
    if sig != b"PK\x03\x04":
        raise ImportFormatError("文件已损坏（zip 结构不完整），无法读取。")
    fh.seek(name_len + extra_len, io.SEEK_CUR)
    left = info.compress_size
    if info.compress_type == zipfile.ZIP_STORED:
        return left
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise ImportFormatError("文件使用了不支持的压缩方式，请用 Excel 或 WPS 重新保存后导入。")
    d = zlib.decompressobj(-15)
    out = 0
    try:
        while left > 0 and not d.eof:
            buf = fh.read(min(_STEP, left))
            if not buf:
                break
            left -= len(buf)
            while buf:
                out += len(d.decompress(buf, _STEP))
                if out > cap:
                    return out
                buf = d.unconsumed_tail
    except zlib.error:
        raise ImportFormatError("文件已损坏（压缩数据有误），无法读取。") from None
    return out


def check_unzipped_size(path: Path, limit: int) -> None:
    """Refuse a zip-based workbook that inflates to more than ``limit`` bytes, before parsing it."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):  # damaged or unsupported zip
        if path.open("rb").read(2) != b"PK":
            return  # not a zip at all (a legacy .xls under another suffix): the parser says what it is
        raise ImportFormatError("无法打开文件：不是有效的 Excel/WPS 表格文件（zip 格式损坏）。") from None
    with zf:
        infos = zf.infolist()
    if any(i.flag_bits & 0x1 for i in infos):
        raise ImportFormatError("文件已加密，请取消密码保护后再导入。")
    if sum(i.file_size for i in infos) > limit:
        raise _too_big(limit, hidden=False)
    total = 0
    with path.open("rb") as fh:
        for info in infos:
            total += _inflated_size(fh, info, limit - total)
            if total > limit:
                raise _too_big(limit, hidden=True)


# --- workbooks ------------------------------------------------------------------------------------
def _open_workbook(fh):
    from python_calamine import CalamineWorkbook

    return CalamineWorkbook.from_filelike(fh)  # the format from the content, not the suffix


def read_workbook(path: Path, max_unzipped: int = DEFAULT_MAX_UNZIPPED_BYTES) -> list[tuple[str, Rows | None]]:
    """Each worksheet as (name, rows); row numbers as a spreadsheet shows them (1-based). The content
    decides the format (WPS may save a legacy .xls as .xlsx); any zip is checked for its inflated size."""
    try:
        fh = path.open("rb")
    except OSError:
        raise ImportFormatError("无法打开文件。") from None
    with fh:
        if fh.read(2) == b"PK" or path.suffix.lower() in ZIP_SUFFIXES:
            check_unzipped_size(path, max_unzipped)
        fh.seek(0)
        try:
            from python_calamine import SheetTypeEnum, SheetVisibleEnum

            wb = _open_workbook(fh)
            # iter_rows starts at the sheet's first row (blank leading rows included) and its first used column;
            # a hidden sheet comes with no rows (None): the caller says it was not read
            return [(meta.name, enumerate(wb.get_sheet_by_name(meta.name).iter_rows(), start=1)
                     if meta.visible == SheetVisibleEnum.Visible else None)
                    for meta in wb.sheets_metadata if meta.typ == SheetTypeEnum.WorkSheet]
        except ImportFormatError:
            raise
        except Exception as e:  # calamine raises its own kinds (and ValueError/OSError) for a broken file
            raise ImportFormatError(f"无法打开表格文件（{type(e).__name__}），请用 Excel 或 WPS 重新保存后导入。") from e


# --- CSV -----------------------------------------------------------------------------------------
class HashingReader(io.RawIOBase):
    """A binary file that hashes what is read through it (one pass: decode, parse and hash)."""

    def __init__(self, fh):
        self.fh = fh
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.fh.readinto(b)
        if n:
            self.sha.update(memoryview(b)[:n])
        return n


def _csv_error(row: int, e: csv.Error) -> ImportFormatError:
    if "field limit" in str(e):
        return ImportFormatError(f"第{row}行：有一个单元格超过 {csv.field_size_limit()} 个字符，无法读取"
                                 "（常见原因：引号没有成对，后面的内容都被当成了一个单元格）。")
    return ImportFormatError(f"第{row}行：CSV 格式有误，无法读取。")


def stream_csv(path: Path, encoding: str, sink: dict) -> tuple[list[str], Rows]:
    """The CSV's header and rows, decoded as it is read (never the whole file as one string); the file's
    sha256 lands in ``sink["sha256"]`` once the rows are exhausted. Iterating may raise
    UnicodeDecodeError (the caller reads again in another encoding) or ImportFormatError."""
    fh = path.open("rb")
    raw = HashingReader(fh)
    text = io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding=encoding, newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except csv.Error as e:
        fh.close()
        raise _csv_error(1, e) from None
    except BaseException:
        fh.close()
        raise
    if header is None:
        fh.close()
        raise ImportFormatError("文件是空的。")

    def rows() -> Rows:
        n = 1
        try:
            for n, cells in enumerate(reader, start=2):
                yield n, cells
            sink["sha256"] = raw.sha.hexdigest()
        except csv.Error as e:
            raise _csv_error(n + 1, e) from None
        finally:
            fh.close()

    return [h.strip() for h in header], rows()
