from datetime import date, timedelta

from governance.model import Finding, Params
from governance.scan import kinds_by_group, scan

from .factory import NOW, group, members

D = timedelta(days=1)


def test_finding_to_dict_and_key():
    f = Finding("duplicate", ["b", "a"], [], 0.85, "merge", ["成员重合度85%"])
    assert f.to_dict() == {
        "kind": "duplicate", "group_ids": ["b", "a"], "person_ids": [], "score": 0.85,
        "action": "merge", "reasons": ["成员重合度85%"],
    }
    assert f.key == "duplicate|a,b|"
    assert Finding("duplicate", ["a", "b"], [], 0.9, "merge", []).key == f.key
    assert Finding("overloaded_member", ["g1"], ["u1"], 21, "review").key == "overloaded_member|g1|u1"


def test_scan_runs_every_rule_deterministically():
    groups = [
        group("zomb", last_work_at=NOW - 40 * D, member_ids=members("z", 5)),
        group("tmp", temporary=True, expires_at=date(2024, 5, 1), member_ids=members("t", 5)),
        group("unreg", registered=False, first_seen_at=NOW - 8 * D, owner_id="u1", member_ids=members("u", 5)),
        group("d1", member_ids=members("d", 10)),
        group("d2", member_ids=members("d", 10), created_at=NOW - 10 * D),
        group("ok", member_ids=members("o", 5)),
    ]
    dissolved = [group("gone", status="dissolved", dissolved_at=NOW - 30 * D, member_ids=members("t", 5))]
    findings = scan(groups, NOW, Params(), dissolved)
    got = [(f.kind, f.group_ids, f.action) for f in findings]
    assert got == [
        ("zombie", ["zomb"], "warn"),
        ("duplicate", ["d2", "d1"], "merge"),
        ("expired", ["tmp"], "dissolve"),
        ("unregistered", ["unreg"], "review"),
    ]
    assert [f.to_dict() for f in scan(list(reversed(groups)), NOW, Params(), dissolved)] == [
        f.to_dict() for f in findings
    ]
    assert kinds_by_group(findings) == {"zomb": {"zombie"}, "d2": {"duplicate"}, "tmp": {"expired"}}


def test_scan_rebound_and_overloaded():
    gs = [group(f"g{i:02}", member_ids=frozenset({"busy", f"x{i}", f"y{i}"})) for i in range(21)]
    gs.append(group("new", created_at=NOW - D, member_ids=members("t", 5)))
    dissolved = [group("gone", status="dissolved", dissolved_at=NOW - 30 * D, member_ids=members("t", 5))]
    kinds = [(f.kind, f.group_ids[:2], f.person_ids) for f in scan(gs, NOW, Params(), dissolved)]
    assert kinds == [("overloaded_member", ["g00", "g01"], ["busy"]), ("rebound", ["new", "gone"], [])]


def test_scan_requires_aware_now():
    import pytest

    with pytest.raises(ValueError):
        scan([], NOW.replace(tzinfo=None))
