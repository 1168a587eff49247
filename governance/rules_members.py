"""Rules on member sets: duplicate (重复群), overlap (交叉群) and rebound (反弹回潮).

* **duplicate**: member Jaccard >= ``duplicate_jaccard`` (exact fraction, 0.8 counts).
* **overlap**: the smaller group's members are >= ``overlap_containment`` inside the
  other group, and the pair is not already a duplicate.
* Groups with fewer than ``params.min_members_for_similarity`` (3) members are skipped:
  two 2-person chats with the same people are not a governance problem.
* Only live groups (active/warned).  Kept groups (``kept_until > now``) are never
  proposed for merging away: a pair where the group to merge away is kept is skipped.
* Names never make a duplicate (every town has its own 脱贫攻坚群); similar names are
  supporting evidence in the reasons and a tie-breaker when choosing the target.
* Merge target order: protected, kept, registered, more members, canonical name (not
  "…2"/"…（新）"), older, smaller id.  ``group_ids = [merge_away, target]``.
  Both protected -> action ``review``.  A protected group is never merged away: an
  overlap whose smaller group is protected (领导班子群 inside 机关群) is ``review``.
* **rebound**: a live group created or first seen after a group was dissolved within the
  last ``rebound_days`` whose members match (Jaccard >= duplicate_jaccard, or
  containment >= overlap_containment either way) or whose name matches
  (:func:`governance.text.name_similarity` >= ``rebound_name_similarity``) in the same
  unit.  Same-name groups of different units - or of unknown units with different
  owners - are not name matches.  ``group_ids = [new, dissolved]``, action ``review``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from governance.model import Finding, GroupFacts, Params
from governance.similarity import similar_pairs
from governance.text import has_copy_suffix, name_similarity, name_tokens, normalize, normalize_name


def _rank(g: GroupFacts, now: datetime) -> tuple:
    """Sort key: the best merge target sorts first."""
    return (
        not g.protected,
        not g.kept(now),
        not g.registered,
        -len(g.member_ids),
        has_copy_suffix(g.name),
        g.created_at,
        g.id,
    )


def _why_target(target: GroupFacts, other: GroupFacts) -> str:
    if target.protected and not other.protected:
        return "受保护群"
    if target.registered and not other.registered:
        return "已报备"
    if len(target.member_ids) > len(other.member_ids):
        return "人数更多"
    if target.created_at < other.created_at:
        return "建群更早"
    return "综合比较"


def _name_evidence(a: GroupFacts, b: GroupFacts) -> list[str]:
    sim = name_similarity(a.name, b.name)
    if sim >= 0.5:
        return [f"群名相似（「{a.name}」与「{b.name}」，相似度{sim:.0%}）"]
    return []


def duplicates_and_overlaps(groups: Iterable[GroupFacts], now: datetime, params: Params = Params()) -> list[Finding]:
    live = {g.id: g for g in groups if g.live and len(g.member_ids) >= params.min_members_for_similarity}
    pairs = similar_pairs(
        {gid: g.member_ids for gid, g in live.items()}, params.duplicate_jaccard, params.overlap_containment
    )
    out: list[Finding] = []
    dup_keys = set()
    for a, b, score in pairs.jaccard:
        dup_keys.add((a, b))
        f = _pair_finding("duplicate", live[a], live[b], score, pairs.overlap[(a, b)], now)
        if f:
            out.append(f)
    for small, large, score in pairs.containment:
        if (min(small, large), max(small, large)) in dup_keys:
            continue
        inter = pairs.overlap[(min(small, large), max(small, large))]
        f = _pair_finding("overlap", live[small], live[large], score, inter, now)
        if f:
            out.append(f)
    return out


def _pair_finding(kind: str, a: GroupFacts, b: GroupFacts, score: float, inter: int, now: datetime) -> Finding | None:
    if kind == "overlap":  # a is the smaller group: it is the one to merge away
        source, target = a, b
        head = (
            f"「{a.name}」的{inter}/{len(a.member_ids)}人（{score:.0%}）都在「{b.name}」"
            f"（{len(b.member_ids)}人）中"
        )
    else:
        target, source = sorted((a, b), key=lambda g: _rank(g, now))
        union = len(a.member_ids) + len(b.member_ids) - inter
        head = f"成员重合度{score:.0%}（共同成员{inter}人，两群合计{union}人）"
    reasons = [head, *_name_evidence(source, target)]
    if source.kept(now):
        return None
    if source.protected:
        reasons.append("两个群都是受保护群，请管理员人工核实" if target.protected else "较小的群是受保护群，不自动合并，请人工核实")
        action = "review"
    else:
        reasons.append(f"建议将「{source.name}」并入「{target.name}」（{_why_target(target, source)}）")
        action = "merge"
    return Finding(kind, [source.id, target.id], [], round(score, 4), action, reasons)


def _unit_match(a: GroupFacts, b: GroupFacts) -> bool:
    if a.unit and b.unit:
        return normalize(a.unit) == normalize(b.unit)
    return a.owner_id is not None and a.owner_id == b.owner_id


def rebounds(
    groups: Iterable[GroupFacts], dissolved: Iterable[GroupFacts], now: datetime, params: Params = Params()
) -> list[Finding]:
    window = timedelta(days=params.rebound_days)
    old = {
        d.id: d
        for d in dissolved
        if d.dissolved_at is not None and timedelta(0) <= now - d.dissolved_at <= window
    }
    if not old:
        return []
    earliest = min(d.dissolved_at for d in old.values())

    def born_after(g: GroupFacts, t: datetime) -> bool:
        return g.created_at > t or (g.first_seen_at is not None and g.first_seen_at > t)

    # only groups that appeared after the earliest dissolution can be rebounds
    new = {
        g.id: g
        for g in groups
        if g.live and not g.protected and g.id not in old and born_after(g, earliest)
    }
    # member matches: one join over new + old sets, keep the cross pairs
    sets = {("n", gid): g.member_ids for gid, g in new.items() if len(g.member_ids) >= params.min_members_for_similarity}
    sets.update({("o", did): d.member_ids for did, d in old.items() if len(d.member_ids) >= params.min_members_for_similarity})
    pairs = similar_pairs(sets, params.duplicate_jaccard, params.overlap_containment)
    evidence: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    for a, b, score in pairs.jaccard:
        if a[0] != b[0]:
            n, o = (a[1], b[1]) if a[0] == "n" else (b[1], a[1])
            evidence[(n, o)].append((score, f"成员重合度{score:.0%}"))
    for s, l, score in pairs.containment:
        if s[0] != l[0]:
            n, o = (s[1], l[1]) if s[0] == "n" else (l[1], s[1])
            which = "新群" if s[0] == "n" else "原群"
            evidence[(n, o)].append((score, f"{which}{score:.0%}的成员在另一个群中"))
    # name matches through a token index over the (few) dissolved groups
    by_token: dict[str, set[str]] = defaultdict(set)
    by_name: dict[str, set[str]] = defaultdict(set)
    for did, d in old.items():
        by_name[normalize_name(d.name)].add(did)
        for t in name_tokens(d.name):
            by_token[t].add(did)
    for gid, g in new.items():
        cands = set(by_name.get(normalize_name(g.name), ()))
        for t in name_tokens(g.name):
            cands |= by_token.get(t, set())
        for did in cands:
            d = old[did]
            sim = name_similarity(g.name, d.name)
            if sim >= params.rebound_name_similarity and _unit_match(g, d):
                label = "群名相同" if sim == 1.0 else f"群名相似（{sim:.0%}）"
                evidence[(gid, did)].append((sim, label))
    out = []
    for (gid, did), items in sorted(evidence.items()):
        g, d = new[gid], old[did]
        if not born_after(g, d.dissolved_at):
            continue
        born = g.created_at if g.created_at > d.dissolved_at else g.first_seen_at
        reasons = [
            f"「{g.name}」出现于{born.astimezone(now.tzinfo).date().isoformat()}，「{d.name}」已于"
            f"{d.dissolved_at.astimezone(now.tzinfo).date().isoformat()}解散（{params.rebound_days}天内）",
            "；".join(label for _, label in items),
            "疑似反弹回潮，请回头看核实",
        ]
        out.append(Finding("rebound", [gid, did], [], round(max(s for s, _ in items), 4), "review", reasons))
    return out
