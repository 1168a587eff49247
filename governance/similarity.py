"""Exact set-similarity joins (Jaccard and containment) with prefix filtering.

Used to find duplicate groups (member-set Jaccard >= t) and overlapping groups (the
smaller group's members are >= c inside a larger one) without comparing all pairs.

Algorithm (an "AllPairs"-style join, vectorised with numpy):

* persons get integer ids; each set is sorted by a **global token order, rarest
  first** (ties by id), so prefixes hold the most selective members;
* every pair is considered once, from its *smaller* set ``s`` (order: size, then
  position) towards a larger-or-equal set ``l``.  With ``c0 = min(thresholds)`` a
  qualifying pair needs ``|s & l| >= need(s) = ceil(c0 * |s|)`` (for Jaccard
  ``J >= t`` implies ``|s & l| >= t*|l| >= t*|s|``);
* **prefix filter** (pigeonhole): at most ``|s| - need`` members of ``s`` are missing
  from ``l``, so among the first ``|s| - need + k`` members of ``s`` at least ``k`` are
  in ``l``.  We probe the inverted index of *all* members of larger sets with that
  extended prefix and keep pairs hit at least ``k`` times (by default
  ``k = clamp(need // 3, 2, 16)``: bigger sets pay a longer probe for far fewer
  pairs to verify);
* **length filter**: only ``l`` ordered after ``s``; for a Jaccard-only join also
  ``|l| <= |s| / t``;
* verification counts the rest of ``s`` in ``l`` by binary search in the sorted
  ``(set, rank)`` key array, then the exact test ``inter * den >= num * denom`` with
  the threshold as an exact fraction (``Fraction(str(0.8)) == 4/5``), so a pair at
  exactly 0.8 or 0.9 qualifies regardless of float rounding.

The join is **exact** (recall 1.0 against :func:`naive_jaccard_pairs` /
:func:`naive_containment_pairs`).  Sets of any size >= 1 are handled; empty sets are
ignored.  Skipping tiny groups (< 3 members) is a rule decision, see ``rules_members``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

EXTRA_PREFIX = None  # k: extend the prefix by k-1 and demand k hits (None: adaptive)
_CHUNK = 4_000_000  # max candidate entries expanded at once (memory bound)


def as_fraction(value: float | Fraction) -> Fraction:
    """Exact fraction for a threshold: 0.8 -> 4/5 (via its shortest repr)."""
    if isinstance(value, Fraction):
        return value
    return Fraction(str(value))


@dataclass
class CSR:
    """Sets as compressed rows: members of set ``i`` are ``tokens[indptr[i]:indptr[i+1]]``."""

    ids: list  # external set ids, position = row
    indptr: np.ndarray  # int64, len n+1
    tokens: np.ndarray  # int64 token (person) ids, unique within each row
    n_tokens: int

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)


def csr_from_sets(sets: Mapping[str, Collection[str]]) -> CSR:
    """Intern ids; rows ordered by sorted set id, duplicate members removed."""
    ids = sorted(sets)
    intern: dict = {}
    flat: list[int] = []
    sizes = np.zeros(len(ids), dtype=np.int64)
    for i, key in enumerate(ids):
        members = sets[key]
        if not isinstance(members, (set, frozenset)):
            members = set(members)
        flat.extend([intern.setdefault(p, len(intern)) for p in members])
        sizes[i] = len(members)
    indptr = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    return CSR(ids, indptr, np.asarray(flat, dtype=np.int64), len(intern))


def csr_from_rows(group_ids: Iterable[str], person_ids: Iterable[str]) -> CSR:
    """Build from parallel membership columns (e.g. rows read from a database)."""
    gmap: dict = defaultdict(itertools.count().__next__)
    pmap: dict = defaultdict(itertools.count().__next__)
    g = np.fromiter(map(gmap.__getitem__, group_ids), dtype=np.int64)
    p = np.fromiter(map(pmap.__getitem__, person_ids), dtype=np.int64)
    return csr_from_arrays(list(gmap), g, p, len(pmap))


def csr_from_arrays(ids: list, g: np.ndarray, p: np.ndarray, n_tokens: int) -> CSR:
    """Build from integer membership arrays (row index, token id); deduplicates."""
    key, _ = _unique_counts(g.astype(np.int64) * max(n_tokens, 1) + p)
    g_sorted = key // max(n_tokens, 1)
    indptr = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(g_sorted, minlength=len(ids)), out=indptr[1:])
    return CSR(list(ids), indptr, key % max(n_tokens, 1), n_tokens)


def _unique_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(x, return_counts=True)`` for int arrays via a plain sort (numpy 2.3's
    ``np.unique`` is far slower than ``np.sort`` on large int64 arrays)."""
    x = np.sort(x)
    if len(x) == 0:
        return x, np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1])))
    counts = np.diff(np.append(first, len(x)))
    return x[first], counts


def _expand(lo: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Concatenate ranges [lo[i], lo[i]+cnt[i]) into one index array."""
    total = int(cnt.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(cnt) - cnt
    return np.repeat(lo - starts, cnt) + np.arange(total, dtype=np.int64)


def join_csr(
    csr: CSR,
    jaccard: Fraction | float | None = None,
    containment: Fraction | float | None = None,
    extra: int | None = EXTRA_PREFIX,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``(s, l, inter)`` of pairs with Jaccard >= ``jaccard`` OR containment of the
    smaller set ``s`` in ``l`` >= ``containment``.  ``s`` precedes ``l`` in (size, row)."""
    jac = as_fraction(jaccard) if jaccard is not None else None
    con = as_fraction(containment) if containment is not None else None
    if jac is None and con is None:
        raise ValueError("need a jaccard or a containment threshold")
    given = [x for x in (jac, con) if x is not None]
    if not all(0 < x <= 1 for x in given):
        raise ValueError("thresholds must be in (0, 1]")
    c0 = min(given)
    empty = np.zeros(0, dtype=np.int64)
    n, T = len(csr.ids), max(csr.n_tokens, 1)
    sizes0 = csr.sizes
    if n < 2 or len(csr.tokens) == 0:
        return empty, empty, empty
    # relabel sets by (size, row); relabel tokens by (frequency, id)
    gorder = np.lexsort((np.arange(n), sizes0))
    o_of = np.empty(n, dtype=np.int64)
    o_of[gorder] = np.arange(n)
    sizes = sizes0[gorder]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    freq = np.bincount(csr.tokens, minlength=T)
    rank_of = np.empty(T, dtype=np.int64)
    if freq.max() < 65536:  # numpy's stable sort is a radix sort for 16-bit ints
        freq = freq.astype(np.uint16)
    rank_of[np.argsort(freq, kind="stable")] = np.arange(T)  # rarest first, ties by id
    del freq
    keys = np.repeat(o_of, sizes0) * T + rank_of[csr.tokens]
    del rank_of
    keys.sort()  # rows in (size, row) order, members rarest first
    g = keys // T
    r = keys - g * T
    need = (c0.numerator * sizes + c0.denominator - 1) // c0.denominator
    if extra is None:  # longer prefixes for larger sets: fewer survivors to verify
        k = np.clip(need // 3, 2, 16)
    else:
        k = np.full(n, extra, dtype=np.int64)
    k = np.minimum(k, need)
    m = sizes - need + k  # extended prefix length per set
    # inverted index over all members: postings in (token, set) order, i.e. by size
    post_key = np.sort(r * n + g)
    post_g = (post_key % n).astype(np.int32)
    probe = _expand(indptr[:-1], m)  # the extended prefix entries of every set
    ps, pr = g[probe], r[probe]
    del probe, g
    # postings after s itself (larger sets, or same size and later row); sorted needles
    # make searchsorted cache friendly
    needle = pr * n + ps
    by_key = np.argsort(needle)
    lo = np.empty(len(needle), dtype=np.int64)
    lo[by_key] = np.searchsorted(post_key, needle[by_key], side="right")
    del needle, by_key
    if con is None:  # Jaccard only: |l| <= |s| * den / num
        max_size = (sizes * jac.denominator) // jac.numerator
        o_max = np.searchsorted(sizes, max_size, side="right") - 1
        hi = np.searchsorted(post_key, pr * n + o_max[ps], side="right")
    else:
        start = np.zeros(T + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=T), out=start[1:])
        hi = start[pr + 1]
        del start
    cnt = np.maximum(hi - lo, 0)
    del post_key, pr, hi, r
    # expand candidates in chunks aligned on set boundaries (ps is sorted)
    per_set = np.bincount(ps, weights=cnt, minlength=n).cumsum()
    cuts = np.searchsorted(ps, np.searchsorted(per_set, np.arange(_CHUNK, per_set[-1] + _CHUNK, _CHUNK)))
    bounds, _ = _unique_counts(np.concatenate(([0], cuts, [len(ps)])))
    out_s, out_l, out_c = [], [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = _expand(lo[a:b], cnt[a:b])
        if len(idx) == 0:
            continue
        pair = np.repeat(ps[a:b], cnt[a:b]) * n + post_g[idx].astype(np.int64)
        del idx
        uniq, hits = _unique_counts(pair)
        del pair
        s, l = uniq // n, uniq % n
        keep = hits >= k[s]
        out_s.append(s[keep])
        out_l.append(l[keep])
        out_c.append(hits[keep])
    if not out_s:
        return empty, empty, empty
    s, l, pref = np.concatenate(out_s), np.concatenate(out_l), np.concatenate(out_c)
    by_l = np.lexsort((s, l))  # queries into the same row l together: cache friendly
    s, l, pref = s[by_l], l[by_l], pref[by_l]
    # verify: count the members of s after its extended prefix that are also in l
    rest = sizes[s] - m[s]
    qidx = _expand(indptr[s] + m[s], rest)
    q = np.repeat(l, rest) * T + (keys[qidx] - np.repeat(s, rest) * T)
    found = keys[np.minimum(np.searchsorted(keys, q), len(keys) - 1)] == q
    inter = pref + np.bincount(np.repeat(np.arange(len(s)), rest), weights=found, minlength=len(s)).astype(np.int64)
    ok = np.zeros(len(s), dtype=bool)
    if jac is not None:
        union = sizes[s] + sizes[l] - inter
        ok |= inter * jac.denominator >= jac.numerator * union
    if con is not None:
        ok |= inter * con.denominator >= con.numerator * sizes[s]
    return gorder[s[ok]], gorder[l[ok]], inter[ok]


@dataclass
class SimilarPairs:
    jaccard: list[tuple[str, str, float]]  # (a, b, J) with a < b
    containment: list[tuple[str, str, float]]  # (small, large, |s&l|/|s|)
    overlap: dict[tuple[str, str], int]  # (a, b) with a < b -> |a & b| for every pair found


def similar_pairs_csr(csr: CSR, jaccard: float | Fraction, containment: float | Fraction) -> SimilarPairs:
    jac, con = as_fraction(jaccard), as_fraction(containment)
    s, l, inter = join_csr(csr, jac, con)
    sizes = csr.sizes
    out = SimilarPairs([], [], {})
    for si, li, it in zip(s.tolist(), l.tolist(), inter.tolist()):
        a, b = csr.ids[si], csr.ids[li]
        ns, nl = int(sizes[si]), int(sizes[li])
        union = ns + nl - it
        out.overlap[(a, b) if a < b else (b, a)] = it
        if it * jac.denominator >= jac.numerator * union:
            out.jaccard.append(((a, b, it / union) if a < b else (b, a, it / union)))
        if it * con.denominator >= con.numerator * ns:
            out.containment.append((a, b, it / ns))
    out.jaccard.sort()
    out.containment.sort()
    return out


def similar_pairs(sets: Mapping[str, Collection[str]], jaccard: float, containment: float) -> SimilarPairs:
    """Both joins in one pass (containment: smaller set first; equal sizes: smaller id)."""
    return similar_pairs_csr(csr_from_sets(sets), jaccard, containment)


def jaccard_pairs(sets: Mapping[str, Collection[str]], threshold: float) -> list[tuple[str, str, float]]:
    """Pairs ``(a, b, J)`` with ``a < b`` and Jaccard(a, b) >= threshold, sorted."""
    csr = csr_from_sets(sets)
    s, l, inter = join_csr(csr, jaccard=threshold)
    sizes = csr.sizes
    out = []
    for si, li, it in zip(s.tolist(), l.tolist(), inter.tolist()):
        a, b = sorted((csr.ids[si], csr.ids[li]))
        out.append((a, b, it / (int(sizes[si]) + int(sizes[li]) - it)))
    return sorted(out)


def containment_pairs(sets: Mapping[str, Collection[str]], threshold: float) -> list[tuple[str, str, float]]:
    """Pairs ``(small, large, |s&l|/|s|)`` with containment >= threshold, sorted.

    ``small`` has fewer members, or the same number and a smaller id."""
    csr = csr_from_sets(sets)
    s, l, inter = join_csr(csr, containment=threshold)
    sizes = csr.sizes
    return sorted(
        (csr.ids[si], csr.ids[li], it / int(sizes[si])) for si, li, it in zip(s.tolist(), l.tolist(), inter.tolist())
    )


def naive_jaccard_pairs(sets: Mapping[str, Collection[str]], threshold: float) -> list[tuple[str, str, float]]:
    """All-pairs reference implementation of :func:`jaccard_pairs`."""
    t = as_fraction(threshold)
    items = sorted((k, frozenset(v)) for k, v in sets.items() if v)
    out = []
    for i, (a, sa) in enumerate(items):
        for b, sb in items[i + 1 :]:
            inter = len(sa & sb)
            union = len(sa) + len(sb) - inter
            if inter * t.denominator >= t.numerator * union:
                out.append((a, b, inter / union))
    return out


def naive_containment_pairs(sets: Mapping[str, Collection[str]], threshold: float) -> list[tuple[str, str, float]]:
    """All-pairs reference implementation of :func:`containment_pairs`."""
    t = as_fraction(threshold)
    items = sorted(((len(frozenset(v)), k, frozenset(v)) for k, v in sets.items() if v))
    out = []
    for i, (ns, a, sa) in enumerate(items):
        for _, b, sb in items[i + 1 :]:
            inter = len(sa & sb)
            if inter * t.denominator >= t.numerator * ns:
                out.append((a, b, inter / ns))
    return sorted(out)
