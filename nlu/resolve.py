"""Which group a person means: ``秋粮专班``, ``秋粮群``, ``【冬季征兵专班】``, ``秋粮收购专班(城关镇)``.

Only the candidates the caller passes can come out: the groups this person may act on (own,
member of, administers), already filtered by the database read. ``intent`` narrows them further
(a member may call a group useless, only its owner or an administrator may renew it, only an
administrator may merge or protect). Names are compared on a canonical core: simplified,
half-width, no brackets or quotes, no 群/专班/工作群 suffixes, the unit in parentheses apart.

Scores (0–100): equal cores 100; the reference equals the name without its unit prefix 97; the
name written out in the message 95; one contained in the other 85–95; the reference's characters
in order inside the name 75–90; otherwise rapidfuzz's ratio blended with jieba token overlap.
One clear best (no rival within :data:`TIE` points): act, echoing the full name; several: a
numbered choice; none: the closest three of the person's own groups.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from rapidfuzz import fuzz, process

from governance.text import normalize, strip_symbols

OWN, MEMBER, ADMIN = "own", "member", "admin"
# who may act on a group, per intent (anything else: any visible group)
MAY_ACT = {
    "renew": {OWN, ADMIN}, "done": {OWN, ADMIN}, "keep": {OWN, ADMIN}, "restore": {OWN, ADMIN},
    "confirm_order": {OWN, ADMIN}, "merge": {ADMIN}, "protect": {ADMIN}, "unprotect": {ADMIN},
    "useless": {MEMBER, OWN},
}
# a fuzzy match is never acted on for these without a confirmation (consequences for others)
CONSEQUENTIAL = frozenset({"done", "merge", "protect", "unprotect", "confirm_order"})
THRESHOLD = 68.0
TIE = 4.0
MAX_CHOICES = 5
_SUFFIXES = ("企业微信群", "专班群", "工作群", "微信群", "交流群", "群聊", "工作组", "小组", "专班", "群")
_QUALIFIER = re.compile(r"\(([^()]*)\)\s*$")
_BRACKETS = str.maketrans("", "", "【】「」『』《》〈〉“”‘’\"'[]")


@dataclass(frozen=True)
class Candidate:
    """A group the person may see, as a plain record (no ORM object)."""

    id: str
    name: str
    unit: str | None = None
    relation: str | frozenset[str] = MEMBER  # own | member | admin, or a set of them (own and admin)

    @property
    def relations(self) -> frozenset[str]:
        return frozenset((self.relation,)) if isinstance(self.relation, str) else frozenset(self.relation)

    def label(self) -> str:
        """秋粮收购专班（城关镇）: the full name echoed back, with the unit unless it is in the name."""
        if self.unit and self.unit not in self.name:
            return f"{self.name}（{self.unit}）"
        return self.name


@dataclass(frozen=True)
class Match:
    candidate: Candidate
    score: float
    exact: bool


@dataclass(frozen=True)
class Resolution:
    outcome: str  # "one" | "several" | "none"
    matches: tuple[Match, ...]  # one: the group; several: the choices in order; none: closest own groups
    needs_confirmation: bool = False
    ref: str = ""
    refused: Candidate | None = None  # named exactly, but the person may not act on it for this intent

    @property
    def group(self) -> Candidate | None:
        return self.matches[0].candidate if self.outcome == "one" else None

    @property
    def exact(self) -> bool:
        return self.outcome == "one" and self.matches[0].exact

    @property
    def choices(self) -> tuple[Candidate, ...]:
        return tuple(m.candidate for m in self.matches)

    def prompt(self) -> str:
        """The Chinese reply for a choice, a confirmation or nothing found."""
        if self.outcome == "several":
            n = len(self.matches)
            count = "两" if n == 2 else str(n)
            lines = "\n".join(f"{i} {m.candidate.label()}" for i, m in enumerate(self.matches, 1))
            return f"有{count}个群像“{self.ref}”，回复序号：\n{lines}"
        if self.outcome == "none":
            if self.refused is not None:
                return f"“{self.refused.label()}”不是您能操作的群：只有群主或管理员可以操作。"
            if not self.matches:
                return f"没有找到“{self.ref}”。发“我的群”可查看您的群。"
            names = "、".join(m.candidate.label() for m in self.matches)
            return f"没有找到“{self.ref}”。您的群里最接近的是：{names}。"
        if self.needs_confirmation:
            return f"是“{self.group.label()}”吗？回复“确认”继续，回复“取消”作罢。"
        return ""


@dataclass(frozen=True)
class _Key:
    core: str
    qualifier: str
    full: str  # normalised name without symbols (suffixes kept)
    tokens: frozenset[str]
    unitless: str  # core without a leading unit name


def core_of(name: str) -> tuple[str, str]:
    """(core, qualifier): ``秋粮收购专班（城关镇）`` → (秋粮收购, 城关镇)."""
    t = normalize(name or "").translate(_BRACKETS)
    qualifier = ""
    m = _QUALIFIER.search(t)
    if m and m.start() > 0:
        qualifier = strip_symbols(m.group(1))
        t = t[:m.start()]
    t = strip_symbols(t)
    for _ in range(3):
        for s in _SUFFIXES:
            if t.endswith(s) and len(t) > len(s) + 1:
                t = t[: -len(s)]
                break
        else:
            break
    return t, qualifier


@lru_cache(maxsize=65536)
def _key(name: str, unit: str | None) -> _Key:
    core, qualifier = core_of(name)
    u = core_of(unit)[0] if unit else ""
    unitless = core[len(u):] if u and core.startswith(u) and len(core) > len(u) + 1 else core
    if not qualifier and u and unitless != core:
        qualifier = u
    return _Key(core, qualifier or u, strip_symbols(normalize(name or "").translate(_BRACKETS)),
                _tokens(core), unitless)


@lru_cache(maxsize=65536)
def _tokens(core: str) -> frozenset[str]:
    from nlu.grammar import tokens

    return frozenset(w for w, _, _ in tokens(core) if len(w) > 1 or not w.isascii())


@lru_cache(maxsize=4096)
def _subseq(ref: str) -> re.Pattern:
    return re.compile(".*?".join(map(re.escape, ref)))


def _score(ref: _Key, cand: _Key, context: str) -> tuple[float, bool]:
    r, c = ref.core, cand.core
    if not r or not c:
        return 0.0, False
    if r == c:
        if ref.qualifier and cand.qualifier and ref.qualifier != cand.qualifier:
            return 80.0, False
        return 100.0, True
    if r == cand.unitless or ref.unitless == c or (ref.unitless == cand.unitless and ref.unitless != r):
        if ref.qualifier and cand.qualifier and ref.qualifier != cand.qualifier:
            return 80.0, False
        return 97.0, False
    best = 0.0
    if r in c and len(c) >= 3 and context and cand.full in context:
        best = 95.0  # the reference was cut short, but the full name is written in the message
    if r in c:
        best = max(best, 85.0 + 10.0 * len(r) / len(c))
    elif c in r and len(c) >= 2:
        best = max(best, 85.0 + 10.0 * len(c) / len(r) - (5.0 if not r.startswith(c) and not r.endswith(c) else 0))
    elif len(r) >= 2 and _subseq(r).search(c):
        best = max(best, 75.0 + 15.0 * len(r) / len(c))
    if best < 80:
        ratio = fuzz.ratio(r, c)
        overlap = ref.tokens & cand.tokens
        jac = len(overlap) / len(ref.tokens | cand.tokens) if overlap else 0.0
        best = max(best, 0.8 * ratio + 20.0 * jac if overlap else 0.8 * ratio)
    if ref.qualifier and cand.qualifier:
        best += 2.0 if ref.qualifier == cand.qualifier else -6.0
    return min(best, 99.0), False


FUZZY_SHORTLIST = 8


def _shortlist(rk: _Key, keys: list[_Key]) -> set[int]:
    """Indexes worth scoring in full: containment either way, equal unit-less cores, the
    reference's characters in order, and the best rapidfuzz ratios (computed in C)."""
    r, ru = rk.core, rk.unitless
    out: set[int] = set()
    first = r[0]
    pat = _subseq(r) if len(r) >= 2 else None
    for i, k in enumerate(keys):
        c = k.core
        if first in c:
            if r in c or (pat is not None and pat.search(c)):
                out.add(i)
                continue
        if (len(c) >= 2 and c in r) or ru == k.unitless:
            out.add(i)
    cores = [k.core for k in keys]
    for _, _, i in process.extract(r, cores, scorer=fuzz.ratio, limit=FUZZY_SHORTLIST, score_cutoff=40):
        out.add(i)
    return out


def may_act(intent: str | None, candidate: Candidate) -> bool:
    allowed = MAY_ACT.get(intent or "")
    return allowed is None or not allowed.isdisjoint(candidate.relations)


def resolve(ref: str | None, candidates: Sequence[Candidate] | Iterable[Candidate], *, intent: str | None = None,
            context: str = "") -> Resolution:
    """The group ``ref`` means among ``candidates`` (the groups this person may see and act on).

    ``intent`` (a :class:`nlu.grammar.Parse` intent) narrows the candidates to those the person
    may act on for it and sets ``needs_confirmation`` for a fuzzy match on a consequential step;
    ``context``: the whole normalised message (a name written out in full there counts)."""
    seen = list(candidates)
    pool = [c for c in seen if may_act(intent, c)]
    ref = (ref or "").strip()
    if not ref:
        return Resolution("none", (), ref=ref)
    rk = _key(ref, None)
    if not rk.core:
        return Resolution("none", (), ref=ref)
    if len(pool) < len(seen):
        for c in seen:
            if may_act(intent, c) or _key(c.name, c.unit).core != rk.core:
                continue
            if _score(rk, _key(c.name, c.unit), "")[1]:
                # the person named a group they see but may not act on: say so, never a look-alike
                return Resolution("none", (), ref=ref, refused=c)
    ctx = strip_symbols(normalize(context)) if context else ""
    keys = [_key(c.name, c.unit) for c in pool]
    scored: list[Match] = []
    for i in _shortlist(rk, keys):
        s, exact = _score(rk, keys[i], ctx)
        if s > 0:
            scored.append(Match(pool[i], s, exact))
    scored.sort(key=lambda m: (-m.score, OWN not in m.candidate.relations, m.candidate.name))
    exact = [m for m in scored if m.exact]
    if len(exact) == 1:
        return Resolution("one", (exact[0],), ref=ref)
    if len(exact) > 1:
        own = [m for m in exact if OWN in m.candidate.relations]
        if len(own) == 1:
            return Resolution("one", (own[0],), needs_confirmation=intent in CONSEQUENTIAL, ref=ref)
        return Resolution("several", tuple(exact[:MAX_CHOICES]), ref=ref)
    good = [m for m in scored if m.score >= THRESHOLD]
    if good:
        top = good[0].score
        close = [m for m in good if m.score >= top - TIE]
        if len(close) == 1:
            return Resolution("one", (close[0],), needs_confirmation=intent in CONSEQUENTIAL, ref=ref)
        return Resolution("several", tuple(close[:MAX_CHOICES]), ref=ref)
    barred = [c for c in seen if not may_act(intent, c)]
    if barred:
        # nothing of theirs looks like it, but one group they see and may not act on clearly does
        # (防汛群 for the 防汛抗旱群 they are a member of, asked to 保留): say who may, not "not found"
        bkeys = [_key(c.name, c.unit) for c in barred]
        near = sorted((s, i) for i in _shortlist(rk, bkeys) for s in [_score(rk, bkeys[i], ctx)[0]] if s >= THRESHOLD)
        if near and (len(near) == 1 or near[-1][0] - near[-2][0] > TIE):
            return Resolution("none", (), ref=ref, refused=barred[near[-1][1]])
    return Resolution("none", tuple(closest(ref, pool, rk)), ref=ref)


def closest(ref: str, pool: list[Candidate], rk: _Key | None = None, n: int = 3) -> list[Match]:
    """The ``n`` own groups (else any) whose names are nearest ``ref`` (rapidfuzz WRatio)."""
    rk = rk or _key(ref, None)
    own = [c for c in pool if OWN in c.relations] or pool
    if not own or not rk.core:
        return []
    cores = [_key(c.name, c.unit).core for c in own]
    found = process.extract(rk.core, cores, scorer=fuzz.WRatio, limit=n)
    return [Match(own[i], float(s), False) for _, s, i in found]
