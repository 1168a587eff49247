from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.similarity import (
    as_fraction,
    containment_pairs,
    csr_from_rows,
    join_csr,
    jaccard_pairs,
    naive_containment_pairs,
    naive_jaccard_pairs,
    similar_pairs,
)


def S(*ids):
    return {f"p{i}" for i in ids}


def test_threshold_is_exact_fraction():
    assert as_fraction(0.8) == Fraction(4, 5)
    assert as_fraction(0.9) == Fraction(9, 10)
    assert as_fraction(Fraction(2, 3)) == Fraction(2, 3)


def test_jaccard_exactly_at_threshold_counts():
    # |A & B| = 8, |A | B| = 10 -> J = 0.8 exactly
    sets = {"a": S(*range(9)), "b": S(*range(1, 10))}
    assert jaccard_pairs(sets, 0.8) == [("a", "b", 0.8)]
    # 7/9 = 0.777... is below
    sets = {"a": S(*range(8)), "b": S(*range(1, 9))}
    assert jaccard_pairs(sets, 0.8) == []


def test_containment_exactly_at_threshold_counts():
    small = S(*range(10))
    large = S(*range(1, 30))  # 9 of the 10 are inside
    assert containment_pairs({"s": small, "l": large}, 0.9) == [("s", "l", 0.9)]
    large2 = S(*range(2, 30))  # 8 of 10
    assert containment_pairs({"s": small, "l": large2}, 0.9) == []


def test_equal_sizes_smaller_id_first():
    assert containment_pairs({"z": S(1, 2, 3), "a": S(1, 2, 3)}, 0.9) == [("a", "z", 1.0)]


def test_similar_pairs_both_kinds_and_overlap_counts():
    sets = {"a": S(*range(10)), "b": S(*range(10)), "c": S(*range(100, 110)), "d": S(*range(100, 140))}
    res = similar_pairs(sets, 0.8, 0.9)
    assert res.jaccard == [("a", "b", 1.0)]
    assert res.containment == [("a", "b", 1.0), ("c", "d", 1.0)]
    assert res.overlap[("c", "d")] == 10


def test_duplicate_members_in_input_and_empty_sets():
    sets = {"a": ["x", "x", "y", "z"], "b": ["x", "y", "z"], "e": []}
    assert jaccard_pairs(sets, 0.8) == [("a", "b", 1.0)]


def test_csr_from_rows_and_join():
    csr = csr_from_rows(["g1", "g1", "g1", "g2", "g2", "g2", "g1"], ["a", "b", "c", "a", "b", "c", "a"])
    s, l, inter = join_csr(csr, jaccard=0.8)
    assert sorted(csr.ids[i] for i in (*s.tolist(), *l.tolist())) == ["g1", "g2"] and inter.tolist() == [3]


def test_rejects_bad_threshold():
    with pytest.raises(ValueError):
        jaccard_pairs({"a": S(1)}, 0)


family = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.frozensets(st.integers(0, 25), max_size=14),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(family, st.sampled_from([0.3, 0.5, 0.6, 0.8, 0.9, 1.0]))
def test_prefix_join_equals_naive(sets, t):
    assert jaccard_pairs(sets, t) == naive_jaccard_pairs(sets, t)
    assert containment_pairs(sets, t) == naive_containment_pairs(sets, t)


@settings(max_examples=100, deadline=None)
@given(family, st.data())
def test_prefix_join_with_planted_near_duplicates(sets, data):
    # copy sets with one member dropped/added so that pairs sit near the thresholds
    for k, v in list(sets.items()):
        v2 = set(v)
        if v2 and data.draw(st.booleans()):
            v2.discard(min(v2))
        if data.draw(st.booleans()):
            v2.add(data.draw(st.integers(0, 30)))
        sets[k + "_copy"] = frozenset(v2)
    for t in (0.8, 0.9):
        assert jaccard_pairs(sets, t) == naive_jaccard_pairs(sets, t)
        assert containment_pairs(sets, t) == naive_containment_pairs(sets, t)


@settings(max_examples=60, deadline=None)
@given(family, st.sampled_from([1, 2, 3, 5, 16]), st.sampled_from([0.6, 0.8, 0.9]))
def test_any_prefix_extension_is_exact(sets, extra, t):
    from governance.similarity import csr_from_sets

    csr = csr_from_sets(sets)
    s, l, _ = join_csr(csr, jaccard=t, containment=t, extra=extra)
    got = {tuple(sorted((csr.ids[a], csr.ids[b]))) for a, b in zip(s.tolist(), l.tolist())}
    want = {(a, b) for a, b, _ in naive_jaccard_pairs(sets, t)}
    want |= {tuple(sorted((a, b))) for a, b, _ in naive_containment_pairs(sets, t)}
    assert got == want
