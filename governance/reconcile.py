"""Reconciling the ledger (台账) with the groups the platforms show: which ledger row is which real
group, which rows are on paper only, which real groups the ledger does not name (未登记).

Pure: plain dataclasses in and out. A pair matches on its name (the canonical names equal, or jieba
token similarity at least ``name_threshold``) or on its members (Jaccard at least
``member_threshold``, both with 3 or more); names alike with plainly different members (Jaccard
under ``CONTRADICTION``, or no member in common when one side has fewer than 3) do not match, nor do two units that are both given and differ unless the
members agree. Each ledger row matches at most one group and the other way round, best pairs first.

Every pair has a ``confidence`` (0..1) combining the three kinds of evidence: the name likeness, the
member overlap and whether the units agree. A pair is linked only when it is sure (``SURE``) and no
other pair still open for the same row or the same group comes with less than ``RIVAL`` times its doubt (1 - confidence); otherwise
the row goes to ``review`` with its candidates, for a unit administrator to confirm or reject. A
group that is a candidate under review is not also reported as unregistered.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from governance.text import name_similarity, name_tokens, normalize, normalize_name, strip_symbols

CONTRADICTION = 0.3
MIN_MEMBERS = 3
SURE = 0.75  # below this a pair is asked, not assumed
RIVAL = 2.0  # a rival with less than this many times the best pair's doubt makes it ambiguous


@dataclass(frozen=True)
class GroupView:
    id: str
    name: str
    unit: str | None
    members: frozenset[str]
    registered: bool = False


@dataclass(frozen=True)
class Match:
    ledger_id: str
    group_id: str
    by: str  # "name" | "members" | "name+members"
    name_similarity: float
    member_jaccard: float | None
    confidence: float = 0.0


@dataclass(frozen=True)
class Review:
    """A ledger row that looks like more than one group, or like one only weakly."""
    ledger_id: str
    candidates: tuple[str, ...]  # best first


@dataclass
class Reconciliation:
    matched: list[Match] = field(default_factory=list)
    ledger_only: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    review: list[Review] = field(default_factory=list)


def _unit(u: str | None) -> str:
    return strip_symbols(normalize(u or ""))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float | None:
    if len(a) < MIN_MEMBERS or len(b) < MIN_MEMBERS:
        return None
    return len(a & b) / len(a | b)


def _pair(lg: GroupView, g: GroupView, name_threshold: float, member_threshold: float) -> Match | None:
    sim = name_similarity(lg.name, g.name)
    jac = _jaccard(lg.members, g.members)
    by_members = jac is not None and jac >= member_threshold
    # members known on both sides and plainly different: not the same group, whatever the name
    contradicts = (jac is not None and jac < CONTRADICTION) or (
        jac is None and lg.members and g.members and not (lg.members & g.members))
    by_name = sim >= name_threshold and not contradicts
    if by_name and not by_members and _unit(lg.unit) and _unit(g.unit) and _unit(lg.unit) != _unit(g.unit):
        by_name = False
    if not (by_name or by_members):
        return None
    by = "name+members" if by_name and by_members else "name" if by_name else "members"
    return Match(lg.id, g.id, by, round(sim, 3), None if jac is None else round(jac, 3),
                 confidence(sim if by_name else 0.0, jac or 0.0, _unit_agreement(lg.unit, g.unit)))


def _unit_agreement(a: str | None, b: str | None) -> float:
    """1 when both units are given and equal, 0.5 when one is missing, 0 when they differ."""
    ua, ub = _unit(a), _unit(b)
    if not ua or not ub:
        return 0.5
    return 1.0 if ua == ub else 0.0


def confidence(name: float, members: float, unit: float) -> float:
    """Independent evidence combined: each kind removes part of the remaining doubt."""
    doubt = (1 - 0.8 * name) * (1 - 0.9 * members) * (1 - 0.5 * unit)
    return round(1 - doubt, 3)


def reconcile(ledger: Iterable[GroupView], groups: Iterable[GroupView], *, name_threshold: float = 0.8,
              member_threshold: float = 0.8,
              rejected: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset()) -> Reconciliation:
    """``rejected``: (ledger id, group id) pairs an administrator said are not the same group; never
    proposed again (nor counted as a rival)."""
    ledger, groups = list(ledger), list(groups)
    by_token: dict[str, list[int]] = defaultdict(list)
    by_member: dict[str, list[int]] = defaultdict(list)
    for j, g in enumerate(groups):
        for t in name_tokens(g.name) | {normalize_name(g.name)}:
            by_token[t].append(j)
        for p in g.members:
            by_member[p].append(j)
    pairs: list[tuple[float, int, int, Match]] = []  # (confidence, row, group, match)
    for i, lg in enumerate(ledger):
        cands: set[int] = set()
        for t in name_tokens(lg.name) | {normalize_name(lg.name)}:
            cands.update(by_token.get(t, ()))
        if len(lg.members) >= MIN_MEMBERS:
            shared = Counter(j for p in lg.members for j in by_member.get(p, ()))
            need = member_threshold * len(lg.members)
            cands.update(j for j, c in shared.items() if c >= need)
        for j in cands:
            if rejected and (lg.id, groups[j].id) in rejected:
                continue
            m = _pair(lg, groups[j], name_threshold, member_threshold)
            if m is not None:
                pairs.append((m.confidence, i, j, m))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    by_row: dict[int, list[tuple[float, int]]] = defaultdict(list)
    by_group: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for conf, i, j, _ in pairs:  # best first within each list too
        by_row[i].append((conf, j))
        by_group[j].append((conf, i))
    used_l: set[int] = set()
    used_g: set[int] = set()
    contested: set[int] = set()  # groups under review: never linked in this run
    out = Reconciliation()
    for conf, i, j, m in pairs:
        if i in used_l or j in used_g:
            continue
        used_l.add(i)
        doubt = RIVAL * (1 - conf)
        near = [jj for c, jj in by_row[i] if jj not in used_g and (jj == j or 1 - c < doubt)]
        rival_rows = [ii for c, ii in by_group[j] if ii != i and ii not in used_l and 1 - c < doubt]
        if conf < SURE or len(near) > 1 or rival_rows or j in contested:
            out.review.append(Review(ledger[i].id, tuple(groups[jj].id for jj in near)))
            contested.update(near)
            continue
        used_g.add(j)
        out.matched.append(m)
    out.matched.sort(key=lambda m: m.ledger_id)
    out.review.sort(key=lambda r: r.ledger_id)
    out.ledger_only = sorted(lg.id for i, lg in enumerate(ledger) if i not in used_l)
    out.unregistered = sorted(g.id for j, g in enumerate(groups)
                              if j not in used_g and j not in contested and not g.registered)
    return out
