"""The labelled corpus through the real parser and resolver: accuracy goals and the safety rule."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nlu.corpus import evaluate, load

CORPUS = Path(__file__).with_name("corpus.jsonl")


@pytest.fixture(scope="module")
def report():
    return evaluate(CORPUS)


def test_corpus_shape():
    meta, rows = load(CORPUS)
    assert len(rows) >= 400
    tags = Counter(t for r in rows for t in r.tags)
    assert tags["trad"] / len(rows) >= 0.25
    for tag in ("typo", "mention", "emoji", "fullwidth", "spaces"):
        assert tags[tag] >= 3, tag
    assert len({r.text for r in rows}) == len(rows), "duplicate utterances"
    assert sum(r.intent is None for r in rows) >= 20, "non-commands must be measured too"
    # every intent of the grammar appears
    from nlu.intents import INTENTS

    seen = {r.intent for r in rows}
    assert {i.name for i in INTENTS} | {"choose"} <= seen | {None}


def test_intent_accuracy(report):
    assert report.intent_accuracy >= 0.98, "\n".join(report.failures)


def test_slot_accuracy(report):
    assert report.slot_accuracy >= 0.95, "\n".join(report.failures)


def test_never_resolves_to_a_group_the_sender_may_not_act_on(report):
    assert report.violations == []


def test_scorer_can_fail(tmp_path):
    """A corpus with wrong labels scores low: the accuracy test is not a tautology."""
    meta, rows = load(CORPUS)
    bad = tmp_path / "bad.jsonl"
    with bad.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"meta": meta}, ensure_ascii=False) + "\n")
        for r in rows[:50]:
            wrong = "greet" if r.intent != "greet" else "help"
            f.write(json.dumps({"text": r.text, "intent": wrong, "slots": r.slots, "tags": r.tags},
                               ensure_ascii=False) + "\n")
    rep = evaluate(bad)
    assert rep.intent_accuracy < 0.1
    assert len(rep.failures) >= 45
