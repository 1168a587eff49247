"""Every heavy benchmark and fault run, in sequence, then a side-by-side summary (``make heavy``).

    python benchmarks/run_heavy.py                       # PostgreSQL from QUNZHI_TEST_DATABASE_URL if set
    python benchmarks/run_heavy.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/run_heavy.py --quick               # smaller sizes, same steps
    python benchmarks/run_heavy.py --only ingest,import  # some steps

Steps: ingest (benchmarks/ingest.py, SQLite and PostgreSQL, group commit vs a transaction per
request), faults (tests/faults with 5,000-message bursts), fuzz (tests/fuzz and tests/security
with 1,000 examples per property), scan (benchmarks/scan.py on SQLite and PostgreSQL), import
(``qunzhi import groups`` of a generated 200,000-group ledger with ~8 million memberships, then again
unchanged, on SQLite and PostgreSQL), county (benchmarks/ledger_county.py --compare: the county's own
100,000-row, 20-sheet workbook against the same groups as the template CSV, side by side; at most 2×
the time and 1 GB peak memory).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
STEPS = ("ingest", "faults", "fuzz", "scan", "import", "county")


def run(cmd: list[str], env: dict | None = None, timeout: float = 3600) -> tuple[int, str, float]:
    print("$ " + " ".join(cmd), flush=True)
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                       timeout=timeout)
    dt = time.perf_counter() - t
    tail = (p.stdout + p.stderr).strip().splitlines()[-15:]
    print("\n".join("  " + ln for ln in tail), flush=True)
    return p.returncode, p.stdout + p.stderr, dt


def step_ingest(pg: str | None, quick: bool) -> list[str]:
    cmd = [PY, "benchmarks/ingest.py", "--modes", "group,single", "--json"] + (["--quick"] if quick else [])
    if pg:
        cmd += ["--database-url", pg, "--sqlite-too"]
    rc, out, _ = run(cmd)
    lines = [ln for ln in out.splitlines() if ln.startswith(("Ingest:", "database", "sqlite ", "postgresql "))]
    return lines or [f"ingest failed (exit {rc})"]


def step_pytest(paths: list[str], env: dict, pg: str | None, label: str) -> list[str]:
    if pg:
        env = {**env, "QUNZHI_TEST_DATABASE_URL": pg}
    rc, out, dt = run([PY, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider"], env=env)
    last = next((ln for ln in reversed(out.splitlines()) if " passed" in ln or " failed" in ln), "no result")
    return [f"{label:<34}{'OK' if rc == 0 else 'FAILED':<8}{dt:>7.0f} s  {last.strip()}"]


def step_scan(pg: str | None, quick: bool) -> list[str]:
    res = {}
    for name, extra in [("sqlite", [])] + ([("postgresql", ["--database-url", pg])] if pg else []):
        rc, out, dt = run([PY, "benchmarks/scan.py", "--json"] + (["--quick"] if quick else []) + extra)
        js = None
        lines = out.splitlines()
        for i, ln in enumerate(lines):  # scan.py --json prints one (indented) JSON document
            if ln.startswith("{"):
                try:
                    js = json.loads("\n".join(lines[i:]))
                    break
                except ValueError:
                    continue
        res[name] = (rc, js, dt)
    lines = ["Scan (benchmarks/scan.py): wall seconds" + ("; PostgreSQL/SQLite ratio" if pg else "")]
    for name, (rc, js, dt) in res.items():
        lines.append(f"  {name:<11} exit {rc}  {dt:8.1f} s")
        if js:
            lines.append("    goals: " + json.dumps(js.get("goals") or {k: v.get("goals") for k, v in js.items()
                                                                   if isinstance(v, dict)}, ensure_ascii=False)[:400])
    if pg and len(res) == 2:
        lines.append(f"  ratio postgresql/sqlite: {res['postgresql'][2] / res['sqlite'][2]:.2f}")
    return lines


def make_ledger(path: Path, n: int, seed: int = 3) -> int:
    """A ledger of ``n`` groups shaped like benchmarks/scan.py's synthetic province (median 32,
    mean ~40 members: ~8 million memberships at 200,000 groups). Chinese headers, both date
    formats, both member separators. Returns the number of memberships."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.scan import generate, gid, pid

    indptr, tokens, _, _ = generate(n, seed=seed)
    rng = random.Random(seed)
    cats = ["工作群", "临时群", "专班群", "领导班子群", "常设群"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["群编号", "群名称", "平台", "群主", "单位", "类别", "用途", "建群日期", "到期日期", "成员"])
        for i in range(n):
            members = [pid(p) for p in tokens[indptr[i]:indptr[i + 1]].tolist()]
            cat = rng.choice(cats)
            exp = f"2027-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" if cat in ("临时群", "专班群") else ""
            created = "2024年3月1日" if i % 2 else "2024-03-01"
            w.writerow([gid(i), f"第{i // 1300}镇第{i % 1300}号工作群", "企业微信" if i % 3 else "wecom", members[0],
                        f"第{i // 1300}镇", cat, "日常工作联络", created, exp, ("；" if i % 5 == 0 else ";").join(members)])
    return int(indptr[-1])


def _timed(cmd: list[str], env: dict) -> tuple[int, str, float, float]:
    """Run one command: (exit code, output, wall seconds, the child's peak RSS in MB)."""
    print("$ " + " ".join(cmd), flush=True)
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    dt = time.perf_counter() - t
    print("\n".join("  " + ln for ln in out.strip().splitlines()[-5:]), flush=True)
    return p.returncode, out, dt, usage.ru_maxrss / 1024


def step_import(pg: str | None, quick: bool) -> list[str]:
    """``qunzhi import groups`` of a generated province ledger into an empty database, then the same
    file again (must report 未变N and change nothing), on SQLite and PostgreSQL side by side."""
    n = 20_000 if quick else 200_000
    work = Path(tempfile.mkdtemp(prefix="qz-import-"))
    ledger = work / "ledger.csv"
    n_members = make_ledger(ledger, n)
    targets = [("sqlite", f"sqlite:///{work / 'import.db'}", None)]
    schema = None
    if pg:
        sys.path.insert(0, str(ROOT))
        from benchmarks.ingest import pg_schema_url

        schema = f"qz_import_{uuid.uuid4().hex[:6]}"
        targets.append(("postgresql", pg_schema_url(pg, schema), schema))
    exe = str(Path(PY).with_name("qunzhi"))
    res: dict[str, dict[str, tuple[int, float, float, bool]]] = {}
    try:
        for name, url, _ in targets:
            env = {"QUNZHI_DATABASE_URL": url, "QUNZHI_ENVIRONMENT": "development"}
            rc, out, dt, rss = _timed([exe, "import", "groups", str(ledger)], env)
            res.setdefault("first import", {})[name] = (rc, dt, rss, f"新增{n}，" in out)
            rc, out, dt, rss = _timed([exe, "import", "groups", str(ledger)], env)  # again: all unchanged
            res.setdefault("re-import", {})[name] = (rc, dt, rss, f"新增0，更新0，未变{n}" in out)
    finally:
        if schema:
            from benchmarks.ingest import drop_pg_schema

            drop_pg_schema(pg, schema)
    names = [t[0] for t in targets]
    lines = [f"Import (qunzhi import groups, {n:,} groups, {n_members:,} memberships, "
             f"{ledger.stat().st_size / 1e6:.0f} MB CSV): wall s, rows/s, peak RSS"
             + ("; PostgreSQL/SQLite time ratio" if pg else "")]
    for what, by_db in res.items():
        cells = []
        for name in names:
            rc, dt, rss, ok = by_db[name]
            verdict = "" if rc == 0 and ok else f" FAILED (exit {rc})"
            cells.append(f"{name} {dt:7.1f} s {n / dt:8.0f} rows/s {rss:6.0f} MB{verdict}")
        ratio = f"  ratio {by_db['postgresql'][1] / by_db['sqlite'][1]:.2f}" if pg else ""
        lines.append(f"  {what:<13}" + "  |  ".join(cells) + ratio)
    shutil.rmtree(work, ignore_errors=True)
    return lines


def step_county(pg: str | None, quick: bool) -> list[str]:
    """The county workbook against the equivalent template CSV (benchmarks/ledger_county.py --compare),
    on SQLite and, given a URL, PostgreSQL."""
    lines = []
    for url in [None] + ([pg] if pg else []):
        cmd = [PY, "benchmarks/ledger_county.py", "--compare", "--rows", "20000" if quick else "100000"]
        cmd += ["--database-url", url] if url else []
        rc, out, _ = run(cmd)
        got = [ln for ln in out.splitlines() if ln.startswith(("County ledger", "  template", "  county"))]
        lines += got or [f"county ledger comparison FAILED (exit {rc})"]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default=os.environ.get("QUNZHI_TEST_DATABASE_URL"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(STEPS))
    a = ap.parse_args(argv)
    pg = a.database_url
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    if not pg:
        print("No PostgreSQL URL (--database-url or QUNZHI_TEST_DATABASE_URL): SQLite figures only.")
    summary: list[str] = []
    started = time.perf_counter()
    if "ingest" in only:
        summary += step_ingest(pg, a.quick) + [""]
    if "faults" in only:
        summary += step_pytest(["tests/faults"], {"QUNZHI_FAULT_MESSAGES": "1000" if a.quick else "5000",
                                                 "QUNZHI_FAULT_GROUPS": "3000" if a.quick else "20000",
                                                 "QUNZHI_FAULT_OUTBOX": "500" if a.quick else "2000",
                                                 "QUNZHI_FAULT_PLATFORM_GROUPS": "100" if a.quick else "300",
                                                 "QUNZHI_FAULT_ALL_STEPS": "1"}, pg,
                               "faults (tests/faults)")
    if "fuzz" in only:
        summary += step_pytest(["tests/fuzz", "tests/security"],
                               {"QUNZHI_FUZZ_EXAMPLES": "300" if a.quick else "1000"}, pg,
                               "fuzz+security (tests/fuzz, security)")
        summary.append("")
    if "scan" in only:
        summary += step_scan(pg, a.quick) + [""]
    if "import" in only:
        summary += step_import(pg, a.quick)
    if "county" in only:
        summary += [""] + step_county(pg, a.quick)
    print("\n" + "=" * 100 + f"\nHeavy run summary ({time.perf_counter() - started:.0f} s)\n" + "=" * 100)
    print("\n".join(summary))
    failed = any("FAILED" in ln or "MISSED" in ln or " NO" in ln for ln in summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
