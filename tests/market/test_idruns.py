"""``IdRuns`` and ``ClosedIds`` hold exactly the ids a plain set/dict model holds, for any ids (runs,
scattered, repeated, at the ends of the 64-bit range), and their copies share nothing."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.idruns import BELOW_ALL, ClosedIds, IdRuns

TOP = 2**63 - 1
BOTTOM = -(2**63)

# ids around a few bases: consecutive stretches, gaps of one, repeats, and the extremes of int64
ids = st.one_of(
    st.integers(0, 40),
    st.integers(3_735_683_259, 3_735_683_299),
    st.integers(TOP - 5, TOP),
    st.integers(BOTTOM, BOTTOM + 5),
    st.integers(BOTTOM, TOP),
)
probes = st.lists(ids, max_size=30)


def runs_of(runs: IdRuns) -> list[tuple[int, int]]:
    return list(zip(runs.starts, runs.ends, strict=True))


def assert_canonical(runs: IdRuns) -> None:
    """Sorted, disjoint and non-adjacent: the fewest runs for the set."""
    pairs = runs_of(runs)
    assert all(start <= end for start, end in pairs)
    assert all(end + 1 < start for (_, end), (start, _) in zip(pairs, pairs[1:], strict=False))


@settings(max_examples=300, deadline=None)
@given(st.lists(ids, max_size=60), st.lists(ids, max_size=30), probes)
def test_id_runs_hold_exactly_the_set(initial: list[int], added: list[int], probe: list[int]) -> None:
    runs, model = IdRuns(initial), set(initial)
    assert_canonical(runs)
    for tid in added:
        assert runs.add(tid) == (tid not in model)
        model.add(tid)
        assert_canonical(runs)
    assert set(runs) == model and len(runs) == len(model)
    assert list(runs) == sorted(model)
    for tid in [*probe, *model, *(t + 1 for t in model if t < TOP), *(t - 1 for t in model if t > BOTTOM)]:
        assert (tid in runs) == (tid in model)
    if model:
        assert (runs.low, runs.high) == (min(model), max(model))


@settings(max_examples=300, deadline=None)
@given(st.sets(ids, max_size=80), probes)
def test_runs_of_distinct_ids_hold_exactly_them(distinct: set[int], probe: list[int]) -> None:
    given_ids = list(distinct)
    runs = IdRuns.of_distinct(given_ids)
    assert_canonical(runs)
    assert list(runs) == sorted(distinct) == sorted(given_ids)
    assert runs_of(runs) == runs_of(IdRuns(distinct))
    assert all((t in runs) == (t in distinct) for t in probe)


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 7, 8, 9, 1_000, 147_001])
def test_a_long_stretch_is_one_run_and_a_gap_splits_it(length: int) -> None:
    stretch = list(range(3_735_683_259, 3_735_683_259 + length))
    assert runs_of(IdRuns.of_distinct(list(stretch))) == [(stretch[0], stretch[-1])]
    for cut in {0, 1, length // 2, length - 1} - {length}:
        gapped = stretch[:cut] + [t + 1 for t in stretch[cut:]]
        expected = (
            [(stretch[0], stretch[cut - 1]), (gapped[cut], gapped[-1])] if cut else [(gapped[0], gapped[-1])]
        )
        assert runs_of(IdRuns.of_distinct(gapped[::-1])) == expected


def test_consecutive_ids_are_one_run_whatever_their_order() -> None:
    runs = IdRuns([7, 5, 6, 9, 8, 5])
    assert runs_of(runs) == [(5, 9)] and len(runs) == 5
    runs.add(11)
    assert runs_of(runs) == [(5, 9), (11, 11)]
    runs.add(10)  # fills the hole: the two runs become one
    assert runs_of(runs) == [(5, 11)]
    assert runs.add(4) and runs.add(12) and not runs.add(8)
    assert runs_of(runs) == [(4, 12)]


def test_ids_beyond_64_bits_are_refused_not_misheld() -> None:
    with pytest.raises(OverflowError):
        IdRuns([TOP + 1])


@st.composite
def minute_ops(draw: st.DrawFn) -> list[tuple[str, int, list[int]]]:
    """close(minute, ids) / add(minute, id) / forget(horizon) in any order, minutes 0..9."""
    op = st.sampled_from(["close", "add", "forget"])
    return draw(st.lists(st.tuples(op, st.integers(0, 10), st.lists(ids, max_size=12)), max_size=25))


@settings(max_examples=300, deadline=None)
@given(minute_ops(), probes)
def test_closed_ids_match_a_dict_of_sets(ops: list[tuple[str, int, list[int]]], probe: list[int]) -> None:
    closed, model = ClosedIds(), dict[int, set[int]]()
    for op, minute, given_ids in ops:
        everything = set().union(*model.values())
        fresh = [t for t in dict.fromkeys(given_ids) if t not in everything]  # as a window gives them
        if op == "close":
            closed.close(minute, list(fresh))
            if fresh:
                model.setdefault(minute, set()).update(fresh)
        elif op == "add" and fresh:
            closed.add(minute, fresh[0])
            model.setdefault(minute, set()).add(fresh[0])
        elif op == "forget":
            closed.forget(minute)
            model = {m: held for m, held in model.items() if m >= minute}
        everything = set().union(*model.values())
        assert closed.minutes() == {m: frozenset(held) for m, held in model.items()}
        assert len(closed) == sum(len(held) for held in model.values())
        assert closed.high >= max(everything, default=BELOW_ALL)  # an upper bound: no false absence
        for tid in [*probe, *everything, *(t + 1 for t in everything if t < TOP)]:
            assert (tid in closed) == (tid in everything)


def test_high_follows_what_is_held() -> None:
    closed = ClosedIds()
    assert closed.high == BELOW_ALL and 5 not in closed
    closed.close(3, [10, 11, 12, 20])
    closed.close(4, [21, 22])
    closed.add(2, 5)  # a late trade of an earlier minute
    assert (closed.high, closed.runs, len(closed)) == (22, 4, 7)
    closed.forget(4)
    assert (closed.high, closed.minutes()) == (22, {4: frozenset({21, 22})})
    assert 12 not in closed and 21 in closed
    closed.forget(5)
    assert closed.high == BELOW_ALL and len(closed) == 0


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda c: pickle.loads(pickle.dumps(c))])
def test_copies_hold_the_same_and_share_nothing(clone: object) -> None:
    closed = ClosedIds()
    closed.close(1, [1, 2, 3, 7])
    copied = clone(closed)  # type: ignore[operator]
    assert copied.minutes() == closed.minutes() and copied.high == closed.high
    copied.add(1, 5)
    copied.close(2, [9])
    assert closed.minutes() == {1: frozenset({1, 2, 3, 7})} and closed.high == 7
    assert 5 in copied and 9 in copied and 5 not in closed
