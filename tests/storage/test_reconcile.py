"""qunzhi reconcile: the county's ledger rows against the groups the platforms show."""
import json

from hypothesis import given
from hypothesis import strategies as st
from datetime import datetime, timezone

from governance.reconcile import GroupView, reconcile
from storage.models import Group, Membership
from tests.storage import ledger_files as lf
from tests.storage.test_import import cli  # noqa: F401  (fixture)

NOW = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)


def _platform_group(s, gid, name, members, unit=None, registered=False):
    s.add(Group(id=gid, platform="wecom", name=name, unit=unit, created_at=NOW, first_seen_at=NOW, source="chat",
                status="active", member_count=len(members), registered_at=NOW if registered else None))
    s.flush()
    for p in members:
        s.add(Membership(group_id=gid, person_id=p))


def test_reconcile_matches_by_name_and_by_members(cli, db, tmp_path):
    f = lf.write_xlsx(tmp_path / "台账.xlsx", {"城关镇": lf.county_sheet()})
    assert cli("import", "groups", str(f)).exit_code == 0
    with db.session() as s:
        # same name in traditional characters, members as the ledger says
        _platform_group(s, "wrA", "城關鎮防汛抗旱工作群", ["zhangsan", "lisi", "wangwu"])
        # renamed on the platform, the same members
        _platform_group(s, "wrB", "党政办通知群", ["lisi", "wangwu", "zhaoliu"])
        # a similar name but other people: not the ledger's 森林防火群
        _platform_group(s, "wrC", "森林防火群", ["a1", "a2", "a3", "a4"], unit="城关镇")
        # registered through the bot: not 未登记 even without a ledger row
        _platform_group(s, "wrD", "乡村振兴群", ["x1", "x2", "x3"], registered=True)
    r = cli("reconcile", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    names = {m["ledger_name"]: (m["group_id"], m["by"]) for m in out["matched"]}
    assert names == {"城关镇防汛抗旱工作群": ("wrA", "name+members"), "城关镇党政办机关群": ("wrB", "members")}
    assert all(set(m) >= {"ledger_id", "group_id", "confidence"} and 0 < m["confidence"] <= 1 for m in out["matched"])
    # the contract's lists hold ids; names and units for people are beside them
    assert sorted(out["details"][x]["name"] for x in out["missing"]) == ["人居环境整治群", "森林防火群", "秋粮收购专班群"]
    assert all(x.startswith("ledger:") for x in out["missing"])
    assert out["unregistered"] == ["wrC"] and out["review"] == []
    r = cli("reconcile")
    assert r.exit_code == 0, r.output
    assert "已对上 2 个" in r.output and "“城关镇党政办机关群”（城关镇） ↔ “党政办通知群”（wrB），依据：成员相同（100%）" in r.output
    assert "只在台账上 3 个" in r.output and "未登记 1 个" in r.output and "“森林防火群”（wrC" in r.output


def test_reconcile_pure_one_to_one_best_first():
    lg = [GroupView("ledger:1", "防汛群", "城关镇", frozenset("abc")),
          GroupView("ledger:2", "防汛群", "下坪村", frozenset())]
    gs = [GroupView("w1", "防汛群", None, frozenset("abcd")), GroupView("w2", "防汛工作群", "下坪村", frozenset())]
    out = reconcile(lg, gs)
    assert [(m.ledger_id, m.group_id) for m in out.matched] == [("ledger:1", "w1"), ("ledger:2", "w2")]
    assert out.ledger_only == [] and out.unregistered == []
    out = reconcile(lg[:1], [GroupView("w3", "防汛群", "下坪村", frozenset("xyz"))])
    assert out.matched == [] and out.ledger_only == ["ledger:1"] and out.unregistered == ["w3"]


def test_confidence_orders_the_evidence():
    lg = GroupView("ledger:1", "防汛抗旱群", "城关镇", frozenset("abcd"))
    both = reconcile([lg], [GroupView("w1", "防汛抗旱群", "城关镇", frozenset("abcd"))]).matched[0]
    name_unit = reconcile([lg], [GroupView("w1", "防汛抗旱群", "城关镇", frozenset())]).matched[0]
    members = reconcile([lg], [GroupView("w1", "党政办通知群", None, frozenset("abcd"))]).matched[0]
    assert both.confidence > name_unit.confidence and both.confidence > members.confidence
    assert all(0 < m.confidence <= 1 for m in (both, name_unit, members))


def test_two_groups_equally_like_a_row_go_to_review_not_matched():
    lg = [GroupView("ledger:1", "防汛群", "城关镇", frozenset())]
    gs = [GroupView("w1", "防汛群", "城关镇", frozenset("abc")), GroupView("w2", "防汛工作群", "城关镇", frozenset("xyz"))]
    out = reconcile(lg, gs)
    assert out.matched == [] and out.ledger_only == []
    assert [(r.ledger_id, sorted(r.candidates)) for r in out.review] == [("ledger:1", ["w1", "w2"])]
    assert out.unregistered == []  # a candidate under review is not reported twice


def test_a_weak_name_only_likeness_is_asked_not_assumed():
    # similar tokens, no unit on the platform side, no members: not enough to link for good
    out = reconcile([GroupView("ledger:1", "秋粮收购专班群", "城关镇", frozenset())],
                    [GroupView("w1", "秋粮收购群", None, frozenset())], name_threshold=0.6)
    assert out.matched == [] and [r.candidates for r in out.review] == [("w1",)]


def test_review_list_in_the_cli(cli, db):
    with db.session() as s:
        s.add(Group(id="ledger:x1", platform="ledger", name="防汛群", unit="城关镇", created_at=NOW, first_seen_at=NOW,
                    source="ledger", status="active", member_count=0, registered_at=NOW))
        _platform_group(s, "wa", "防汛群", ["a", "b", "c"], unit="城关镇")
        _platform_group(s, "wb", "防汛工作群", ["x", "y", "z"], unit="城关镇")
    out = json.loads(cli("reconcile", "--json").output)
    assert out["review"] == [{"ledger_id": "ledger:x1", "candidates": ["wa", "wb"]}]
    assert out["matched"] == [] and out["missing"] == [] and out["unregistered"] == []
    r = cli("reconcile")
    assert "待确认 1 个" in r.output and "“防汛群”（城关镇）可能是：1. “防汛群”（wa）" in r.output, r.output


_names = st.sampled_from(["防汛群", "防汛工作群", "秋粮收购专班", "秋粮群", "党政办通知群", "森林防火群", "防火群"])
_units = st.sampled_from([None, "城关镇", "下坪村"])
_members = st.frozensets(st.sampled_from("abcdefgh"), max_size=6)


@given(st.lists(st.tuples(_names, _units, _members), max_size=6), st.lists(st.tuples(_names, _units, _members), max_size=6))
def test_every_row_lands_in_exactly_one_list(rows, found):
    lg = [GroupView(f"ledger:{i}", n, u, m) for i, (n, u, m) in enumerate(rows)]
    gs = [GroupView(f"w{j}", n, u, m) for j, (n, u, m) in enumerate(found)]
    out = reconcile(lg, gs)
    placed = [m.ledger_id for m in out.matched] + [r.ledger_id for r in out.review] + out.ledger_only
    assert sorted(placed) == sorted(x.id for x in lg)
    linked = [m.group_id for m in out.matched]
    assert len(linked) == len(set(linked))  # never two rows on one group
    asked = {c for r in out.review for c in r.candidates}
    assert not (set(linked) & asked) and not (set(out.unregistered) & (set(linked) | asked))
    assert all(r.candidates for r in out.review)
