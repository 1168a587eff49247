"""Benchmark the governance scan on a synthetic province.

    python -m benchmarks.scan                 # full: 200k groups / ~8M memberships
    python -m benchmarks.scan --quick         # small smoke test
    python -m benchmarks.scan --json          # machine-readable output
    python -m benchmarks.scan --database-url postgresql+psycopg://...   # instead of SQLite

Parts, run side by side:

1. **read vs search** at ``--groups`` (200,000) groups: memberships are written to a
   table ``memberships(group_id TEXT, person_id TEXT)`` and read back (streamed, ids
   interned to integers as a loader must); then the duplicate + overlap join
   (``governance.similarity.join_csr``) runs on the integer arrays.  Goal: search/read
   <= 2, peak RSS <= 2 GB.
2. **join vs naive** at ``--join-groups`` (20,000) groups: naive all-pairs is timed on a
   random sample of pairs and extrapolated to all n(n-1)/2 pairs; recall is measured
   against an independent exact answer (full inverted-index overlap counting, no prefix
   filter) and against literal naive all-pairs on a subset.  Goal: speed-up >= 100x.
3. **zombie check** over 1,000,000 groups (``governance.rules_activity.zombie_ids``).
   Goal: <= 2 s.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from array import array
from collections import defaultdict

import numpy as np

from governance.rules_activity import zombie_ids
from governance.similarity import CSR, _unique_counts, csr_from_arrays, join_csr, naive_containment_pairs, naive_jaccard_pairs

JACCARD, CONTAINMENT = 0.8, 0.9
GROUPS_PER_TOWN, TOWNS_PER_COUNTY, VILLAGES_PER_TOWN = 130, 15, 12
TOWN_CADRES, VILLAGE_CADRES, VILLAGERS, COUNTY_STAFF = 150, 8, 300, 600


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- synthetic province ----------------------------------------------------------

def generate(n_groups: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, int, dict]:
    """Memberships of a synthetic province: (indptr, person ids, n_persons, planted).

    Towns of 12 villages (8 cadres + 300 villagers each) and 150 town cadres; 15 towns a
    county with 600 county staff.  Base groups: village groups (50%), town task groups
    (35%), county groups (15%); sizes log-normal (median 32) clipped to 5..300.  Planted:
    2% near/exact duplicates, 1% subsets (containment >= 0.9), 1% near misses
    (~25% of members replaced)."""
    rng = np.random.default_rng(seed)
    n_base = int(n_groups * 0.96)
    n_towns = max(1, math.ceil(n_base / GROUPS_PER_TOWN))
    town_size = TOWN_CADRES + VILLAGES_PER_TOWN * (VILLAGE_CADRES + VILLAGERS)
    n_counties = math.ceil(n_towns / TOWNS_PER_COUNTY)
    county_base = n_towns * town_size
    n_persons = county_base + n_counties * COUNTY_STAFF
    sizes = np.clip(rng.lognormal(math.log(32), 0.7, n_groups), 5, 300).astype(np.int64)
    kinds = rng.choice(3, n_base, p=[0.5, 0.35, 0.15])
    town_of = rng.integers(0, n_towns, n_base)
    groups: list[np.ndarray] = []
    vsize = VILLAGE_CADRES + VILLAGERS
    for i in range(n_base):
        t, s = int(town_of[i]), int(sizes[i])
        t0 = t * town_size
        if kinds[i] == 0:  # village group: villagers + 2 town cadres (包村干部)
            v0 = t0 + TOWN_CADRES + int(rng.integers(VILLAGES_PER_TOWN)) * vsize
            m = np.concatenate((v0 + rng.choice(vsize, min(s, vsize) - 2, replace=False), t0 + rng.choice(TOWN_CADRES, 2, replace=False)))
        elif kinds[i] == 1:  # town task group: town cadres + village secretaries
            secretaries = t0 + TOWN_CADRES + np.arange(VILLAGES_PER_TOWN) * vsize
            pool = np.concatenate((t0 + np.arange(TOWN_CADRES), secretaries))
            m = rng.choice(pool, min(s, len(pool) // 2 + 30), replace=False)
        else:  # county group: county staff + town leaders of the county
            c = t // TOWNS_PER_COUNTY
            towns = np.arange(c * TOWNS_PER_COUNTY, min((c + 1) * TOWNS_PER_COUNTY, n_towns))
            leaders = (towns[:, None] * town_size + np.arange(10)[None, :]).ravel()
            pool = np.concatenate((county_base + c * COUNTY_STAFF + np.arange(COUNTY_STAFF), leaders))
            m = rng.choice(pool, min(s, len(pool)), replace=False)
        groups.append(m)
    planted = {"duplicate": [], "subset": [], "near_miss": []}
    plan = rng.choice(["duplicate"] * 2 + ["subset"] + ["near_miss"], n_groups - n_base)
    for kind in plan:
        bi = int(rng.integers(n_base))
        base = groups[bi]
        while len(base) < 12:
            bi = int(rng.integers(n_base))
            base = groups[bi]
        town_cadres = town_of[bi] * town_size + rng.choice(TOWN_CADRES, 3, replace=False)
        if kind == "duplicate":
            k = int(rng.integers(0, 3))
            m = np.union1d(rng.choice(base, len(base) - k, replace=False), town_cadres[:k])
        elif kind == "subset":
            m = rng.choice(base, max(10, int(len(base) * 0.6)), replace=False)
        else:
            k = len(base) // 4
            m = np.union1d(rng.choice(base, len(base) - k, replace=False), n_persons + np.arange(k))
            n_persons += k
        planted[kind].append((bi, len(groups)))
        groups.append(np.unique(m))
    lens = np.array([len(g) for g in groups], dtype=np.int64)
    indptr = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    return indptr, np.concatenate(groups).astype(np.int64), n_persons, planted


def gid(i: int) -> str:
    return f"wrQz{i:09d}"


def pid(i: int) -> str:
    return f"woQz{i:011d}"


# --- database --------------------------------------------------------------------

def _rows(indptr, tokens):
    for g in range(len(indptr) - 1):
        gs = gid(g)
        for p in tokens[indptr[g] : indptr[g + 1]].tolist():
            yield gs, pid(p)


def write_db(indptr, tokens, path: str | None, url: str | None):
    if url:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS memberships"))
            conn.execute(text("CREATE TABLE memberships (group_id TEXT, person_id TEXT)"))
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur, cur.copy("COPY memberships (group_id, person_id) FROM STDIN") as cp:
                for row in _rows(indptr, tokens):
                    cp.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return engine
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("DROP TABLE IF EXISTS memberships")
    con.execute("CREATE TABLE memberships (group_id TEXT, person_id TEXT)")
    con.executemany("INSERT INTO memberships VALUES (?, ?)", _rows(indptr, tokens))
    con.commit()
    con.close()
    return path


def _cursor(target):
    if isinstance(target, str):
        con = sqlite3.connect(target)
        return con, con.execute("SELECT group_id, person_id FROM memberships")
    raw = target.raw_connection()
    cur = raw.cursor(name="memberships_stream")  # server-side cursor, streamed
    cur.itersize = 100_000
    cur.execute("SELECT group_id, person_id FROM memberships")
    return raw, cur


def read_memberships(target) -> tuple[list, np.ndarray, np.ndarray, int]:
    """Stream rows and intern ids to integers: (group ids, g, p, n_persons).

    The cyclic GC is paused while loading (millions of short-lived row tuples), as a
    bulk loader should; this makes the read faster, i.e. the search/read ratio stricter."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _read_memberships(target)
    finally:
        if enabled:
            gc.enable()


def _read_memberships(target) -> tuple[list, np.ndarray, np.ndarray, int]:
    con, cur = _cursor(target)
    gmap: dict = defaultdict(itertools.count().__next__)
    pmap: dict = defaultdict(itertools.count().__next__)
    g, p = array("q"), array("q")
    while batch := cur.fetchmany(100_000):
        gs, ps = zip(*batch)
        g.extend(map(gmap.__getitem__, gs))
        p.extend(map(pmap.__getitem__, ps))
    con.close()
    return list(gmap), np.frombuffer(g, dtype=np.int64), np.frombuffer(p, dtype=np.int64), len(pmap)


def fetch_only(target) -> int:
    """Just pull the rows through the driver (no ids kept): the floor for any loader."""
    con, cur = _cursor(target)
    n = 0
    while batch := cur.fetchmany(100_000):
        n += len(batch)
    con.close()
    return n


# --- parts -----------------------------------------------------------------------

def part_read_vs_search(n_groups: int, url: str | None) -> dict:
    t = time.perf_counter()
    indptr, tokens, n_persons, planted = generate(n_groups)
    gen_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        target = write_db(indptr, tokens, os.path.join(tmp, "memberships.sqlite"), url)
        write_s = time.perf_counter() - t
        del indptr, tokens
        t = time.perf_counter()
        n_rows = fetch_only(target)
        fetch_s = time.perf_counter() - t
        t = time.perf_counter()
        ids, g, p, n_p = read_memberships(target)
        read_s = time.perf_counter() - t
    t = time.perf_counter()
    csr = csr_from_arrays(ids, g, p, n_p)
    build_s = time.perf_counter() - t
    del g, p
    s, l, inter = join_csr(csr, JACCARD, CONTAINMENT)
    search_s = time.perf_counter() - t
    sizes = csr.sizes
    ns, nl = sizes[s], sizes[l]
    dup = inter * 5 >= 4 * (ns + nl - inter)
    ovl = ~dup & (inter * 10 >= 9 * ns)
    found = {(min(a, b), max(a, b)) for a, b in zip(s.tolist(), l.tolist())}
    row = {csr.ids[i]: i for i in range(len(csr.ids))}
    planted_hit = {
        k: sum((min(row[gid(a)], row[gid(b)]), max(row[gid(a)], row[gid(b)])) in found for a, b in v)
        for k, v in planted.items()
    }
    return {
        "groups": len(csr.ids),
        "memberships": int(n_rows),
        "persons": n_p,
        "generate_s": round(gen_s, 2),
        "write_s": round(write_s, 2),
        "fetch_only_s": round(fetch_s, 2),
        "read_s": round(read_s, 2),
        "search_s": round(search_s, 2),
        "search_build_rows_s": round(build_s, 2),
        "search_over_read": round(search_s / read_s, 2),
        "search_over_fetch_only": round(search_s / fetch_s, 2),
        "duplicate_pairs": int(dup.sum()),
        "overlap_pairs": int(ovl.sum()),
        "planted": {k: len(v) for k, v in planted.items()},
        "planted_found": planted_hit,
        "peak_rss_mb": round(peak_rss_mb()),
        "database": "postgresql" if url else "sqlite",
    }


def exact_by_counting(csr: CSR) -> set:
    """Independent exact answer: count every co-membership via full posting lists."""
    n = len(csr.ids)
    g = np.repeat(np.arange(n), csr.sizes)
    order = np.argsort(csr.tokens, kind="stable")
    tok, gg = csr.tokens[order], g[order]
    bounds = np.flatnonzero(np.diff(tok)) + 1
    out: dict = {}
    keys = []
    for a, b in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [len(tok)]))):
        members = gg[a:b]
        if len(members) > 1:
            x, y = np.triu_indices(len(members), 1)
            keys.append(members[x] * n + members[y])
    if not keys:
        return set()
    uniq, cnt = _unique_counts(np.concatenate(keys))
    sizes = csr.sizes
    a, b = uniq // n, uniq % n
    small = np.minimum(sizes[a], sizes[b])
    ok = (cnt * 5 >= 4 * (sizes[a] + sizes[b] - cnt)) | (cnt * 10 >= 9 * small)
    return {(int(x), int(y)) for x, y in zip(a[ok], b[ok])}


def part_join_vs_naive(n_groups: int, naive_sample: int, subset: int) -> dict:
    indptr, tokens, n_persons, _ = generate(n_groups, seed=11)
    ids = [gid(i) for i in range(len(indptr) - 1)]
    csr = CSR(ids, indptr, tokens, n_persons)
    t = time.perf_counter()
    s, l, inter = join_csr(csr, JACCARD, CONTAINMENT)
    join_s = time.perf_counter() - t
    got = {(min(a, b), max(a, b)) for a, b in zip(s.tolist(), l.tolist())}
    exact = exact_by_counting(csr)
    recall = len(got & exact) / len(exact) if exact else 1.0
    # naive all-pairs on a random sample of pairs, extrapolated
    sets = [frozenset(tokens[indptr[i] : indptr[i + 1]].tolist()) for i in range(len(ids))]
    rnd = random.Random(3)
    n = len(sets)
    pairs = [(rnd.randrange(n), rnd.randrange(n)) for _ in range(naive_sample)]
    t = time.perf_counter()
    for a, b in pairs:
        sa, sb = sets[a], sets[b]
        inter_ = len(sa & sb)
        _ = inter_ * 5 >= 4 * (len(sa) + len(sb) - inter_) or inter_ * 10 >= 9 * min(len(sa), len(sb))
    per_pair = (time.perf_counter() - t) / naive_sample
    naive_s = per_pair * n * (n - 1) / 2
    # literal naive vs the join on a subset
    sub = {ids[i]: sets[i] for i in rnd.sample(range(n), min(subset, n))}
    csr_sub = CSR(list(sub), np.concatenate(([0], np.cumsum([len(v) for v in sub.values()]))).astype(np.int64),
                  np.fromiter((x for v in sub.values() for x in v), dtype=np.int64), n_persons)
    s2, l2, _ = join_csr(csr_sub, JACCARD, CONTAINMENT)
    got_sub = {tuple(sorted((csr_sub.ids[a], csr_sub.ids[b]))) for a, b in zip(s2.tolist(), l2.tolist())}
    naive_sub = {(a, b) for a, b, _ in naive_jaccard_pairs(sub, JACCARD)}
    naive_sub |= {tuple(sorted((a, b))) for a, b, _ in naive_containment_pairs(sub, CONTAINMENT)}
    return {
        "groups": n,
        "memberships": int(indptr[-1]),
        "join_s": round(join_s, 3),
        "naive_sampled_pairs": naive_sample,
        "naive_extrapolated_s": round(naive_s, 1),
        "speedup": round(naive_s / join_s, 1),
        "pairs_found": len(got),
        "recall_vs_exact_counting": recall,
        "false_positives": len(got - exact),
        "subset_groups": len(sub),
        "recall_vs_literal_naive_on_subset": (len(got_sub & naive_sub) / len(naive_sub)) if naive_sub else 1.0,
        "subset_equal": got_sub == naive_sub,
    }


def part_zombie(n: int) -> dict:
    rng = np.random.default_rng(5)
    now = 1_717_200_000.0
    last = now - rng.uniform(0, 120, n) * 86400
    last[rng.random(n) < 0.1] = np.nan
    created = now - rng.uniform(20, 2000, n) * 86400
    protected = rng.random(n) < 0.02
    t = time.perf_counter()
    ids = zombie_ids(last, created, protected, now, 30)
    return {"groups": n, "zombie_s": round(time.perf_counter() - t, 3), "zombies": int(len(ids))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=200_000)
    ap.add_argument("--join-groups", type=int, default=20_000)
    ap.add_argument("--zombie-groups", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--database-url", default=None, help="SQLAlchemy URL (PostgreSQL) instead of SQLite")
    args = ap.parse_args(argv)
    if args.quick:
        args.groups, args.join_groups, args.zombie_groups = 5_000, 2_000, 100_000
    res = {
        "read_vs_search": part_read_vs_search(args.groups, args.database_url),
        "join_vs_naive": part_join_vs_naive(args.join_groups, 200_000 if not args.quick else 20_000, 2_000 if not args.quick else 500),
        "zombie": part_zombie(args.zombie_groups),
        "peak_rss_mb_end": round(peak_rss_mb()),
    }
    r, j, z = res["read_vs_search"], res["join_vs_naive"], res["zombie"]
    res["goals"] = {
        "search_over_read<=2": r["search_over_read"] <= 2,
        "peak_rss<=2GB": r["peak_rss_mb"] <= 2048,
        "speedup>=100": j["speedup"] >= 100,
        "recall==1": j["recall_vs_exact_counting"] == 1.0 and j["subset_equal"],
        "zombie<=2s": z["zombie_s"] <= 2,
    }
    if args.json:
        print(json.dumps(res, ensure_ascii=False, indent=2))
        return 0
    print(f"== read vs search: {r['groups']:,} groups, {r['memberships']:,} memberships, {r['persons']:,} persons ({r['database']})")
    print(f"   generate {r['generate_s']} s, write {r['write_s']} s")
    print(f"   read (stream + intern ids) {r['read_s']} s   [raw fetch only {r['fetch_only_s']} s]")
    print(f"   duplicate+overlap search   {r['search_s']} s (of which building rows {r['search_build_rows_s']} s)   ratio search/read {r['search_over_read']}"
          f"  (vs raw fetch {r['search_over_fetch_only']})  goal <= 2")
    print(f"   found {r['duplicate_pairs']:,} duplicate + {r['overlap_pairs']:,} overlap pairs;"
          f" planted {r['planted']} found {r['planted_found']}"
          " (planted near-duplicates of small groups may fall below 0.8 by design; near misses must not be found)")
    print(f"   peak RSS {r['peak_rss_mb']} MB (goal <= 2048)")
    print(f"== join vs naive: {j['groups']:,} groups, {j['memberships']:,} memberships")
    print(f"   join {j['join_s']} s; naive all-pairs extrapolated from {j['naive_sampled_pairs']:,} random pairs:"
          f" {j['naive_extrapolated_s']} s -> speed-up {j['speedup']}x (goal >= 100)")
    print(f"   recall vs exact (full co-membership counting) {j['recall_vs_exact_counting']},"
          f" false positives {j['false_positives']}, pairs {j['pairs_found']:,};"
          f" literal naive on {j['subset_groups']} groups equal: {j['subset_equal']}")
    print(f"== zombie check: {z['groups']:,} groups in {z['zombie_s']} s ({z['zombies']:,} zombies), goal <= 2 s")
    print(f"== goals: {res['goals']}   peak RSS at end {res['peak_rss_mb_end']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
