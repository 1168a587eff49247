"""The county's own ledger at scale: a workbook of ``--rows`` groups (default 100,000) over one sheet per
town, each with a merged title row, a 填报 line, the county's headers, real date cells and members
written as names, plus the roster they resolve against. Times ``qunzhi import people``, ``qunzhi import
groups --dry-run``, ``qunzhi import groups`` and the same import again (nothing changes), each as its
own process: wall seconds, rows/s and peak RSS.

    python benchmarks/ledger_county.py [--rows 100000] [--database-url URL] [--format xlsx|csv]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run_heavy import _timed  # noqa: E402

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华玉兰萍红娟建国文斌辉鹏飞宇浩然志刚海燕春梅"
HEADER = ["序号", "群名称", "群主", "所属单位", "群类型", "建群用途", "建群时间", "拟解散时间", "成员", "备注"]


def people(n_towns: int, per_town: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(name, unit, userid): names mostly unique within a town, a few shared (warnings, as in life)."""
    out = []
    for t in range(n_towns):
        used: set[str] = set()
        for i in range(per_town):
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.7 else "")
            if name in used and rng.random() < 0.9:
                name += rng.choice(GIVEN)
            used.add(name)
            out.append((name, f"第{t}镇", f"u{t:03d}_{i:05d}"))
    return out


def write(work: Path, rows: int, fmt: str, seed: int = 5) -> tuple[Path, Path]:
    from openpyxl import Workbook

    rng = random.Random(seed)
    n_towns = max(1, rows // 5000)
    per_town = 800
    roster = people(n_towns, per_town, rng)
    by_town = [roster[t * per_town:(t + 1) * per_town] for t in range(n_towns)]
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("花名册")
    ws.append(["姓名", "单位", "职务", "企业微信账号"])
    for name, unit, uid in roster:
        ws.append([name, unit, "干部", uid])
    roster_path = work / "花名册.xlsx"
    wb.save(roster_path)

    cats = ["临时", "常设", "工作专班", "长期", "专班"]
    start = date(2024, 1, 1)
    if fmt == "csv":
        import csv

        ledger_path = work / "台账.csv"
        fh = ledger_path.open("w", newline="", encoding="utf-8-sig")
        w = csv.writer(fh)
        w.writerow(["全县工作群台账"])
        w.writerow(["填报单位：县委办  填报日期：2026年11月20日"])
        w.writerow(HEADER)
    else:
        wb = Workbook(write_only=True)
        ledger_path = work / "台账.xlsx"
    i = 0
    for t in range(n_towns):
        if fmt != "csv":
            ws = wb.create_sheet(f"第{t}镇")
            ws.append([f"第{t}镇工作群台账（2026年11月）"])
            ws.append(["填报单位：党政办  填报日期：2026年11月20日"])
            ws.append([])
            ws.append(HEADER)
        n = rows // n_towns + (1 if t < rows % n_towns else 0)
        for k in range(n):
            size = min(per_town, max(3, int(rng.lognormvariate(3.3, 0.6))))
            members = rng.sample(by_town[t], size)
            cat = rng.choice(cats)
            created = start + timedelta(days=rng.randrange(700))
            expires = created + timedelta(days=rng.randrange(60, 400)) if cat in ("临时", "工作专班", "专班") else "长期"
            row = [k + 1, f"第{t}镇第{k}号工作群", members[0][0], f"第{t}镇", cat, "日常工作联络",
                   created, expires, "、".join(m[0] for m in members), None]
            if fmt == "csv":
                w.writerow([x.isoformat() if isinstance(x, date) else ("" if x is None else x) for x in row])
            else:
                ws.append(row)
            i += 1
    if fmt == "csv":
        fh.close()
    else:
        wb.save(ledger_path)
    return roster_path, ledger_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="qz-county-"))
    try:
        roster, ledger = write(work, a.rows, a.format)
        exe = str(Path(sys.executable).with_name("qunzhi"))
        env = {"QUNZHI_DATABASE_URL": a.database_url or f"sqlite:///{work / 'county.db'}"}
        print(f"{a.rows:,} groups, {ledger.stat().st_size / 1e6:.1f} MB {a.format}; roster "
              f"{roster.stat().st_size / 1e6:.1f} MB")
        lines = []
        for label, cmd, n in [("import people", [exe, "import", "people", str(roster)], None),
                              ("import groups --dry-run", [exe, "import", "groups", str(ledger), "--dry-run"], a.rows),
                              ("import groups", [exe, "import", "groups", str(ledger)], a.rows),
                              ("import groups again", [exe, "import", "groups", str(ledger)], a.rows)]:
            rc, out, dt, rss = _timed(cmd, env)
            rate = f"{n / dt:,.0f} rows/s" if n else ""
            lines.append(f"  {label:<26} exit {rc}  {dt:7.1f} s  {rate:>14}  peak RSS {rss:,.0f} MB")
        print("\n".join(["County ledger (members as names, one sheet per town):", *lines]))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
