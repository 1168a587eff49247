"""One registry of rules (``governance.rules.RULES``): a rule's code, label, function and what it leads
to are declared once, and the scan, the lifecycle, the labels and the digest read them from there."""
from __future__ import annotations

from datetime import timedelta

import pytest

from governance import labels, rules
from governance.lifecycle import next_step
from governance.model import Params
from governance.scan import PER_GROUP_KINDS, per_group, scan

from .factory import NOW, group


def test_every_kind_is_labelled_from_its_rule():
    declared = {k.code: k.label for k in (*rules.KINDS, *rules.OWN_CONDITION)}
    assert labels.FINDING_KINDS == declared
    assert all(labels.kind(code) == label for code, label in declared.items())
    assert len(rules.FINDING_KINDS) == len(set(rules.FINDING_KINDS)) == len(rules.KINDS)


def test_every_rule_has_one_shape_and_the_scan_runs_it():
    for r in rules.RULES:
        assert (r.per_group is None) != (r.over_snapshot is None), r.kinds
    assert set(PER_GROUP_KINDS) == {"zombie", "expired", "unregistered"}


def test_per_group_rules_find_only_their_kinds():
    D = timedelta(days=1)
    gs = [group("z", last_work_at=NOW - 40 * D), group("u", registered=False, first_seen_at=NOW - 30 * D),
          group("e", temporary=True, expires_at=(NOW - 3 * D).date())]
    found = {f.kind for f in per_group(gs, NOW)}
    assert found == set(PER_GROUP_KINDS)
    assert {f.kind for f in scan(gs, NOW)} >= found


@pytest.mark.parametrize("kind", rules.KINDS, ids=lambda k: k.code)
def test_what_a_kind_leads_to_is_what_it_declares(kind):
    params = Params()
    g = group("g1")
    assert (next_step(g, None, {kind.code}, NOW, params) == "warn") == kind.warns
    warned = group("g1", status="warned")
    sent = NOW - timedelta(days=params.grace_days)
    assert (next_step(warned, sent, {kind.code}, NOW, params) == "dissolve") == kind.dissolves
    kept = group("g1", kept_until=NOW + timedelta(days=1))
    assert (next_step(kept, None, {kind.code}, NOW, params) is None) == (kind.kept_exempt or not kind.warns)


def test_the_digest_counts_the_kinds_its_rules_put_there():
    from datetime import date

    from storage.reports import Report, render_text

    r = Report(**{f: None for f in Report.__dataclass_fields__})
    r = Report(**{**r.__dict__, "period": "week", "county": "本县", "start": date(2026, 11, 16),
                  "end": date(2026, 11, 22), "findings_open": {"zombie": 2, "duplicate": 1}, "rebounds_new": 1,
                  "burdened_units": [], "trend": []})
    line = render_text(r, markdown=False).splitlines()[2]
    assert line == "待处理：僵尸群 2，重复群 1 对，交叉群 0，到期未解散 0，未登记 0；回头看发现反弹 1 个。"
    assert [k.code for k in rules.KINDS if k.digest is not None] == ["zombie", "duplicate", "overlap", "expired",
                                                                     "unregistered"]

