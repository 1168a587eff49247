"""The county's own ledger at scale: a workbook of ``--rows`` groups (default 100,000) over one sheet per
town, each with a merged title row, a 填报 line, the county's headers, real date cells and members
written as names, plus the roster they resolve against. Times ``qunzhi import people``, ``qunzhi import
groups --dry-run``, ``qunzhi import groups`` and the same import again (nothing changes), each as its
own process: wall seconds, rows/s and peak RSS.

``--compare`` (what ``make heavy`` runs): the same groups written twice, as the county's workbook
(one sheet per town: 100,000 rows over 20 sheets, names resolved against the roster) and as today's
template CSV (group_id … member_ids, the ids the county import derives and the userids its names
resolve to), each imported into its own fresh database after the same roster, side by side in one
run. Passes when the workbook takes at most ``MAX_RATIO`` times the CSV's time and at most
``MAX_RSS_MB`` of peak memory.

    python benchmarks/ledger_county.py [--rows 100000] [--database-url URL] [--format xlsx|csv]
    python benchmarks/ledger_county.py --compare [--rows 100000] [--database-url URL]
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
MAX_RATIO = 2.0
MAX_RSS_MB = 1024
TEMPLATE = ["group_id", "name", "platform", "owner_id", "unit", "category", "purpose", "created_at", "expires_at",
            "member_ids"]
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


def write(work: Path, rows: int, fmt: str, seed: int = 5, template: Path | None = None) -> tuple[Path, Path]:
    """The roster and the county ledger; with ``template``, the same groups also as the template CSV."""
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
    tpl = tw = None
    if template is not None:
        import csv as csv_mod

        from storage.ledger_format import ledger_id

        tpl = template.open("w", newline="", encoding="utf-8")
        tw = csv_mod.writer(tpl)
        tw.writerow(TEMPLATE)
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
            if tw is not None:
                tw.writerow([ledger_id(row[3], row[1]), row[1], "台账", members[0][2], row[3], cat, row[5],
                             created.isoformat(), expires.isoformat() if isinstance(expires, date) else "",
                             ";".join(m[2] for m in members)])
            i += 1
    if tpl is not None:
        tpl.close()
    if fmt == "csv":
        fh.close()
    else:
        wb.save(ledger_path)
    return roster_path, ledger_path


def _databases(work: Path, base: str | None, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """A fresh database per name: SQLite files, or PostgreSQL schemas of ``base``."""
    if not base:
        return {n: f"sqlite:///{work / (n + '.db')}" for n in names}, []
    import uuid

    from benchmarks.ingest import pg_schema_url

    schemas = {n: f"qz_county_{n}_{uuid.uuid4().hex[:6]}" for n in names}
    return {n: pg_schema_url(base, s) for n, s in schemas.items()}, list(schemas.values())


def compare(rows: int, base: str | None) -> tuple[int, list[str]]:
    """The county workbook against the equivalent template CSV, side by side (see the module doc)."""
    work = Path(tempfile.mkdtemp(prefix="qz-county-"))
    urls, schemas = _databases(work, base, ["county", "template"])
    exe = str(Path(sys.executable).with_name("qunzhi"))
    try:
        template = work / "template.csv"
        roster, ledger = write(work, rows, "xlsx", template=template)
        sheets = max(1, rows // 5000)
        res = {}
        for name, f in (("template", template), ("county", ledger)):
            env = {"QUNZHI_DATABASE_URL": urls[name], "QUNZHI_ENVIRONMENT": "development"}
            rc, out, _, _ = _timed([exe, "import", "people", str(roster)], env)
            if rc != 0:
                return 1, [f"County ledger vs template: import people FAILED (exit {rc})"]
            res[name] = _timed([exe, "import", "groups", str(f)], env)
        lines = [f"County ledger ({rows:,} rows, {sheets} sheets, {ledger.stat().st_size / 1e6:.1f} MB xlsx, members as "
                 f"names) vs the same groups as the template CSV ({template.stat().st_size / 1e6:.1f} MB), "
                 f"{'PostgreSQL' if base else 'SQLite'}:"]
        ok = True
        for name in ("template", "county"):
            rc, out, dt, rss = res[name]
            good = rc == 0 and f"新增{rows}，" in out
            ok &= good
            lines.append(f"  {name:<9} exit {rc}  {dt:7.1f} s  {rows / dt:9,.0f} rows/s  peak RSS {rss:6,.0f} MB"
                         + ("" if good else "  FAILED"))
        ratio = res["county"][2] / res["template"][2]
        rss = res["county"][3]
        verdict = "OK" if ok and ratio <= MAX_RATIO and rss <= MAX_RSS_MB else "FAILED"
        lines.append(f"  county/template time ratio {ratio:.2f} (limit {MAX_RATIO:g}), county peak RSS {rss:,.0f} MB "
                     f"(limit {MAX_RSS_MB:,}): {verdict}")
        return (0 if verdict == "OK" else 1), lines
    finally:
        if schemas:
            from benchmarks.ingest import drop_pg_schema

            for sc in schemas:
                drop_pg_schema(base, sc)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    ap.add_argument("--compare", action="store_true", help="the workbook against the equivalent template CSV")
    a = ap.parse_args(argv)
    if a.compare:
        rc, lines = compare(a.rows, a.database_url)
        print("\n".join(lines))
        return rc
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
