"""Scoring the parser on a labelled corpus (``tests/nlu/corpus.jsonl``): intent and slot accuracy.

The first line of the corpus is ``{"meta": {"today": ..., "groups": [...]}}``: the day the
periods are read on and the groups the sender may see (id, name, unit, relation). Each further
line is ``{"text", "intent", "slots", "tags"}``. Expected ``group``/``target`` values are a
group's name (it must resolve to exactly that group), ``"?several"`` (a numbered choice),
``"!none"`` (nothing the sender may act on) or null (no group named: the group the message was
sent in). ``period`` is ``str(Period)`` (``+30d``, ``+1m15d``, ``2027-01-31``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from nlu.grammar import Parse, parse
from nlu.normalize import clean
from nlu.resolve import Candidate, may_act, resolve

SEVERAL, NONE = "?several", "!none"


@dataclass
class Row:
    text: str
    intent: str | None
    slots: dict[str, Any]
    tags: list[str]


@dataclass
class Report:
    total: int = 0
    intent_ok: int = 0
    slot_total: int = 0
    slot_ok: int = 0
    violations: list[str] = field(default_factory=list)  # resolved to a group the sender may not act on
    failures: list[str] = field(default_factory=list)

    @property
    def intent_accuracy(self) -> float:
        return self.intent_ok / self.total if self.total else 0.0

    @property
    def slot_accuracy(self) -> float:
        return self.slot_ok / self.slot_total if self.slot_total else 1.0


def load(path: str | Path) -> tuple[dict, list[Row]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    meta = json.loads(lines[0])["meta"]
    rows = [Row(**json.loads(line)) for line in lines[1:] if line.strip()]
    return meta, rows


def candidates(meta: dict) -> list[Candidate]:
    def rel(r):
        return r if isinstance(r, str) else frozenset(r)

    return [Candidate(g["id"], g["name"], g.get("unit"), rel(g.get("relation", "member"))) for g in meta["groups"]]


def _loose(s: Any) -> str:
    """Free text compared without punctuation, and through traditional and back (台账/台帐)."""
    if s is None:
        return ""
    import zhconv

    return re.sub(r"[\s,，;；。.!！?？:：、]+", "", clean(zhconv.convert(clean(str(s)), "zh-tw")))


def _check_group(expected: Any, ref: str | None, p: Parse, pool: list[Candidate], report: Report) -> bool:
    if expected is None:
        return ref is None
    if ref is None:
        return False
    r = resolve(ref, pool, intent=p.intent, context=p.text)
    ids = {c.id for c in pool}
    for m in (r.matches if r.outcome != "none" else ()):
        if m.candidate.id not in ids or not may_act(p.intent, m.candidate):
            report.violations.append(f"{p.text!r} → {m.candidate.name}")
    if expected == SEVERAL:
        return r.outcome == "several"
    if expected == NONE:
        return r.outcome == "none"
    return r.outcome == "one" and r.group is not None and r.group.name == expected


def check(row: Row, p: Parse | None, pool: list[Candidate], report: Report) -> tuple[bool, list[str]]:
    """Score one row into ``report``; returns (intent ok, names of wrong slots)."""
    got = p.intent if p else None
    intent_ok = got == row.intent
    wrong: list[str] = []
    for key, exp in row.slots.items():
        report.slot_total += 1
        ok = False
        if intent_ok and p is not None:
            val = p.slots.get(key)
            if key in ("group", "target"):
                ok = _check_group(exp, val, p, pool, report)
            elif key == "period":
                ok = val is not None and str(val) == exp
            elif key == "name":
                ok = val is not None and clean(val) == clean(exp)
            elif key == "fields":
                have = p.slots.get("fields") or {}
                ok = all(_loose(have.get(k)) == _loose(v) for k, v in exp.items())
            elif key in ("reason", "text"):
                ok = _loose(val) == _loose(exp)
            elif key == "members":
                ok = list(val or ()) == list(exp)
            else:
                ok = val == exp
        if ok:
            report.slot_ok += 1
        else:
            wrong.append(key)
    # the safety property holds for every parse, labelled or not
    if p is not None:
        for key in ("group", "target"):
            if key not in row.slots and p.slots.get(key):
                _check_group(SEVERAL, p.slots[key], p, pool, report)
    return intent_ok, wrong


def evaluate(path: str | Path) -> Report:
    meta, rows = load(path)
    today = date.fromisoformat(meta["today"])
    pool = candidates(meta)
    report = Report()
    for row in rows:
        p = parse(row.text, today=today)
        report.total += 1
        intent_ok, wrong = check(row, p, pool, report)
        report.intent_ok += intent_ok
        if not intent_ok or wrong:
            got = f"{p.intent} {dict((k, str(v)) for k, v in p.slots.items())}" if p else "None"
            report.failures.append(f"{row.text!r}: expected {row.intent} {row.slots}, got {got}"
                                   + (f" (wrong: {', '.join(wrong)})" if wrong else ""))
    return report
