from datetime import timedelta

from governance.model import Params
from governance.rules_members import duplicates_and_overlaps, rebounds

from .factory import NOW, group, members

D = timedelta(days=1)
P = Params()


def by_kind(findings, kind):
    return [f for f in findings if f.kind == kind]


def test_duplicate_pair_merge_into_registered():
    a = group("a", name="防汛群", member_ids=members("p", 35), registered=False)
    b = group("b", name="防汛工作群", member_ids=members("p", 32) | members("q", 2))
    f = duplicates_and_overlaps([a, b], NOW, P)
    assert len(f) == 1
    f = f[0]
    # |a & b| = 32, |a | b| = 37 -> 0.8649
    assert f.kind == "duplicate" and f.action == "merge" and f.group_ids == ["a", "b"]
    assert f.score == round(32 / 37, 4)
    assert "成员重合度86%（共同成员32人，两群合计37人）" == f.reasons[0]
    assert any("群名相似" in r for r in f.reasons)
    assert "已报备" in f.reasons[-1]


def test_jaccard_exactly_08_is_duplicate_and_just_below_is_not():
    a = group("a", member_ids=members("p", 9))
    b = group("b", member_ids=members("p", 9, start=1))  # 8 / 10
    assert [x.kind for x in duplicates_and_overlaps([a, b], NOW, P)] == ["duplicate"]
    c = group("c", member_ids=members("p", 8, start=1) | {"z1", "z2"})  # with a: 8/11
    kinds = [x.kind for x in duplicates_and_overlaps([a, c], NOW, P)]
    assert kinds == []


def test_same_name_different_towns_different_members_not_duplicate():
    a = group("a", name="脱贫攻坚群", unit="城关镇", member_ids=members("cg", 40))
    b = group("b", name="脱贫攻坚群", unit="河口镇", member_ids=members("hk", 40))
    assert duplicates_and_overlaps([a, b], NOW, P) == []


def test_target_order_larger_then_older_then_name():
    big = group("big", member_ids=members("p", 11), created_at=NOW - 10 * D)
    small = group("small", member_ids=members("p", 10), created_at=NOW - 900 * D)
    f = duplicates_and_overlaps([big, small], NOW, P)[0]
    assert f.group_ids == ["small", "big"] and "人数更多" in f.reasons[-1]
    old = group("old", member_ids=members("p", 10), created_at=NOW - 900 * D)
    new = group("new", member_ids=members("p", 10), created_at=NOW - 10 * D)
    assert duplicates_and_overlaps([new, old], NOW, P)[0].group_ids == ["new", "old"]
    copy = group("c", name="党建群2", member_ids=members("p", 10), created_at=NOW - 900 * D)
    orig = group("o", name="党建群", member_ids=members("p", 10), created_at=NOW - 10 * D)
    assert duplicates_and_overlaps([copy, orig], NOW, P)[0].group_ids == ["c", "o"]


def test_protected_is_never_merged_away():
    prot = group("prot", protected=True, member_ids=members("p", 10), registered=False)
    other = group("other", member_ids=members("p", 12))
    f = duplicates_and_overlaps([prot, other], NOW, P)[0]
    assert f.action == "merge" and f.group_ids == ["other", "prot"] and "受保护群" in f.reasons[-1]


def test_both_protected_is_review():
    a = group("a", protected=True, member_ids=members("p", 10))
    b = group("b", protected=True, member_ids=members("p", 10))
    f = duplicates_and_overlaps([a, b], NOW, P)[0]
    assert f.action == "review" and "两个群都是受保护群" in f.reasons[-1]


def test_overlap_containment_exactly_09():
    small = group("s", name="专班", member_ids=members("p", 9) | {"x"})  # 9 of 10 inside
    large = group("l", name="机关群", member_ids=members("p", 30))
    f = duplicates_and_overlaps([small, large], NOW, P)
    assert [(x.kind, x.group_ids, x.score, x.action) for x in f] == [("overlap", ["s", "l"], 0.9, "merge")]
    assert f[0].reasons[0] == "「专班」的9/10人（90%）都在「机关群」（30人）中"
    below = group("s", member_ids=members("p", 8) | {"x", "y"})  # 8 of 10
    assert duplicates_and_overlaps([below, large], NOW, P) == []


def test_overlap_with_protected_small_group_is_review():
    leaders = group("lead", protected=True, member_ids=members("p", 5))
    office = group("office", protected=True, member_ids=members("p", 50))
    task = group("task", member_ids=members("p", 60))
    f = {tuple(x.group_ids): x for x in duplicates_and_overlaps([leaders, office, task], NOW, P)}
    assert f[("lead", "office")].action == "review"
    assert f[("lead", "task")].action == "review"
    # 50/60 members: a duplicate; the protected office group is the target
    assert (f[("task", "office")].kind, f[("task", "office")].action) == ("duplicate", "merge")


def test_duplicate_is_not_also_overlap_and_small_groups_skipped():
    a = group("a", member_ids=members("p", 10))
    b = group("b", member_ids=members("p", 10))
    assert [x.kind for x in duplicates_and_overlaps([a, b], NOW, P)] == ["duplicate"]
    t1 = group("t1", member_ids=members("p", 2))
    t2 = group("t2", member_ids=members("p", 2))
    assert duplicates_and_overlaps([t1, t2], NOW, P) == []


def test_kept_group_not_merged_away_and_dead_groups_ignored():
    kept = group("kept", member_ids=members("p", 10), kept_until=NOW + 10 * D)
    other = group("other", member_ids=members("p", 10))
    f = duplicates_and_overlaps([kept, other], NOW, P)[0]
    assert f.group_ids == ["other", "kept"]
    kept2 = group("other", member_ids=members("p", 10), kept_until=NOW + 10 * D)
    assert duplicates_and_overlaps([kept, kept2], NOW, P) == []
    dead = group("other", member_ids=members("p", 10), status="dissolved")
    assert duplicates_and_overlaps([kept, dead], NOW, P) == []


# --- rebound ---------------------------------------------------------------

def old_group(gid="old", **kw):
    kw.setdefault("status", "dissolved")
    kw.setdefault("dissolved_at", NOW - 20 * D)
    return group(gid, **kw)


def test_rebound_by_members():
    old = old_group(name="防汛抗旱群", member_ids=members("p", 20))
    new = group("new", name="汛期值班", created_at=NOW - 5 * D, member_ids=members("p", 19) | {"z"})
    f = rebounds([new], [old], NOW, P)
    assert [(x.kind, x.group_ids, x.action) for x in f] == [("rebound", ["new", "old"], "review")]
    assert f[0].score == 0.95  # best evidence: 19 of the new group's 20 members
    assert f[0].reasons[1] == "成员重合度90%；新群95%的成员在另一个群中"


def test_rebound_by_members_containment():
    old = old_group(member_ids=members("p", 40))
    new = group("new", created_at=NOW - 5 * D, member_ids=members("p", 10))
    assert [x.group_ids for x in rebounds([new], [old], NOW, P)] == [["new", "old"]]


def test_rebound_by_name_traditional_and_suffix():
    old = old_group(name="城关镇脱贫攻坚工作群", member_ids=members("a", 10))
    new = group("new", name="城關鎮脫貧攻堅群（新）", created_at=NOW - 2 * D, member_ids=members("b", 10))
    f = rebounds([new], [old], NOW, P)
    assert len(f) == 1 and f[0].score == 1.0 and "群名相同" in f[0].reasons[1]


def test_same_name_other_unit_is_not_rebound():
    old = old_group(name="脱贫攻坚群", unit="城关镇", member_ids=members("a", 10))
    new = group("new", name="脱贫攻坚群", unit="河口镇", created_at=NOW - 2 * D, member_ids=members("b", 10))
    assert rebounds([new], [old], NOW, P) == []
    # unknown units: only the same owner counts
    old2 = old_group(name="脱贫攻坚群", unit=None, owner_id="u1", member_ids=members("a", 10))
    new2 = group("new", name="脱贫攻坚群", unit=None, owner_id="u2", created_at=NOW - 2 * D, member_ids=members("b", 10))
    assert rebounds([new2], [old2], NOW, P) == []
    new3 = group("new", name="脱贫攻坚群", unit=None, owner_id="u1", created_at=NOW - 2 * D, member_ids=members("b", 10))
    assert len(rebounds([new3], [old2], NOW, P)) == 1


def test_rebound_window_and_order():
    old = old_group(member_ids=members("p", 20), dissolved_at=NOW - 91 * D)
    new = group("new", created_at=NOW - 5 * D, member_ids=members("p", 20))
    assert rebounds([new], [old], NOW, P) == []
    old = old_group(member_ids=members("p", 20), dissolved_at=NOW - 90 * D)
    assert len(rebounds([new], [old], NOW, P)) == 1
    # a group that existed before the dissolution is a duplicate, not a rebound
    existing = group("new", created_at=NOW - 200 * D, member_ids=members("p", 20))
    assert rebounds([existing], [old], NOW, P) == []
    # ...unless the bot first saw it after the dissolution
    hidden = group("new", created_at=NOW - 200 * D, first_seen_at=NOW - D, member_ids=members("p", 20))
    assert len(rebounds([hidden], [old], NOW, P)) == 1


def test_different_name_and_members_no_rebound():
    old = old_group(name="防汛群", member_ids=members("a", 10))
    new = group("new", name="党建学习", created_at=NOW - 2 * D, member_ids=members("b", 10))
    assert rebounds([new], [old], NOW, P) == []


def test_pair_rules_agree_with_naive_on_random_groups():
    import random

    from governance.similarity import naive_containment_pairs, naive_jaccard_pairs

    rnd = random.Random(5)
    gs = []
    for i in range(300):
        base = rnd.randrange(40)
        ms = frozenset(f"p{base + rnd.randrange(12)}" for _ in range(rnd.randint(3, 12)))
        gs.append(group(f"g{i:03}", member_ids=ms))
    sets = {g.id: g.member_ids for g in gs if len(g.member_ids) >= 3}
    dup = {(a, b) for a, b, _ in naive_jaccard_pairs(sets, 0.8)}
    ovl = {(a, b) for a, b, _ in naive_containment_pairs(sets, 0.9)} - {
        p for p in {(a, b) for a, b, _ in naive_containment_pairs(sets, 0.9)} if tuple(sorted(p)) in dup
    }
    found = duplicates_and_overlaps(gs, NOW, P)
    assert {tuple(sorted(f.group_ids)) for f in found if f.kind == "duplicate"} == dup
    assert {tuple(f.group_ids) for f in found if f.kind == "overlap"} == ovl
    assert len(dup) > 5 and len(ovl) > 5
