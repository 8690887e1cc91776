"""The honesty checks' comparison logic against brute-force formulations of what each check means."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from market.backtest.checks import (
    agree,
    close_enough,
    compare_cut,
    cut_times,
    final_difference,
    first_difference,
    index_outputs,
    settled_after,
    warmup_offsets,
)
from market.types import IndicatorValue, Signal

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def stamp(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


def value(i: int, label: str, v: float) -> IndicatorValue:
    return IndicatorValue("okx", "BTC-USDT", "1m", stamp(i), label, {"value": v})


def signal(i: int, action: str = "buy", v: float = 1.0) -> Signal:
    return Signal("okx", "BTC-USDT", "1m", stamp(i), "ema_crossover", action, "why", {"close": v})  # type: ignore[arg-type]


def series(n: int) -> list[IndicatorValue | Signal]:
    out: list[IndicatorValue | Signal] = []
    for i in range(n):
        out += [value(i, "ema", 100.0 + i), value(i, "rsi", 50.0 - i / 7)]
        if i % 4 == 3:
            out.append(signal(i, "buy" if i % 8 == 3 else "sell", 100.0 + i))
    return out


def test_identical_runs_have_no_difference() -> None:
    full = index_outputs(series(20))
    assert first_difference(full, index_outputs(series(20)), [stamp(i) for i in range(20)]) is None


@given(st.integers(0, 19), st.sampled_from(["ema", "rsi", "signal", "drop"]))
def test_the_first_difference_is_the_changed_output(at: int, what: str) -> None:
    changed: list[IndicatorValue | Signal] = []
    for out in series(20):
        if out.time != stamp(at):
            changed.append(out)
        elif isinstance(out, Signal):
            if what == "signal":
                changed.append(signal(at, "flat", 100.0 + at))
            elif what != "drop":
                changed.append(out)
        elif what == "drop":
            continue
        elif out.indicator != what:
            changed.append(out)
        else:
            changed.append(value(at, out.indicator, out.values["value"] + 1e-12))
    if what == "signal" and at % 4 != 3:
        changed.append(signal(at, "flat", 1.0))
    found = first_difference(index_outputs(series(20)), index_outputs(changed), [stamp(i) for i in range(20)])
    if what == "signal" and at % 4 != 3:  # a new signal where there was none
        assert found is not None and found.full is None and found.kind == "signal"
    elif what == "signal":
        assert found is not None and found.kind == "signal" and found.other is not None
        assert found.other[0] == "flat"
    elif what == "drop":
        assert found is not None and found.other is None and found.label == "ema"  # first in key order
    else:
        assert found is not None and (found.kind, found.label) == ("indicator", what)
    assert found.time == stamp(at)


def test_a_cut_flags_outputs_after_it_and_ignores_the_full_runs_later_ones() -> None:
    full = index_outputs(series(20))
    times = [stamp(i) for i in range(20)]
    assert compare_cut(full, index_outputs(series(11)), stamp(10), times).ok
    leaked = compare_cut(full, index_outputs(series(12)), stamp(10), times)
    assert not leaked.ok and leaked.outside == stamp(11) and leaked.difference is None


@given(st.lists(st.integers(0, 500), max_size=80), st.integers(1, 30))
def test_cut_times_take_every_signal_or_an_even_sample_with_both_ends(ids: list[int], limit: int) -> None:
    times = [stamp(i) for i in ids]
    cuts = cut_times(times, limit)
    distinct = sorted(set(times))
    assert cuts == sorted(set(cuts)) and set(cuts) <= set(distinct)
    if len(distinct) <= limit:
        assert cuts == distinct
    else:
        assert len(cuts) == limit and cuts[-1] == distinct[-1]
        assert limit == 1 or cuts[0] == distinct[0]
        gaps = [distinct.index(b) - distinct.index(a) for a, b in zip(cuts, cuts[1:], strict=False)]
        assert not gaps or max(gaps) - min(gaps) <= 1


@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_settled_after_is_where_agreement_holds_to_the_end(pattern: list[bool]) -> None:
    full = index_outputs(value(i, "ema", 1.0) for i in range(len(pattern)))
    other = index_outputs(value(i, "ema", 1.0 if ok else 2.0) for i, ok in enumerate(pattern))
    times = [stamp(i) for i in range(len(pattern))]
    expected = next((i for i in range(len(pattern)) if all(pattern[i:])), None)
    assert settled_after(full, other, times, 1e-9) == expected


@given(st.floats(1e-9, 1e9), st.sampled_from([1.0, -1.0]), st.floats(1e-12, 1e-6))
def test_close_enough_is_relative_to_the_magnitude(size: float, sign: float, rel: float) -> None:
    x = sign * size
    assert close_enough((("v", x),), (("v", x * (1 + rel / 2)),), rel)
    assert not close_enough((("v", x),), (("v", x * (1 + rel * 2)),), rel)
    assert close_enough((("v", 0.0),), (("v", 0.0),), 0.0)
    assert not close_enough((("v", x),), (("w", x),), rel)


def test_signals_agree_only_with_the_same_action() -> None:
    full = index_outputs([signal(1, "buy")])[stamp(1)]
    assert agree(full, index_outputs([signal(1, "buy", 1.0 + 1e-12)])[stamp(1)], 1e-9)
    assert not agree(full, index_outputs([signal(1, "sell")])[stamp(1)], 1e-9)
    assert not agree(full, {}, 1e-9)


def test_final_difference_is_the_largest_relative_one_or_missing() -> None:
    full = index_outputs([value(5, "ema", 200.0), value(5, "rsi", 0.5)])
    other = index_outputs([value(5, "ema", 201.0), value(5, "rsi", 0.75)])
    assert final_difference(full, other, stamp(5)) == 0.25 / 0.75  # beats 1 / 201
    assert final_difference(full, index_outputs([value(5, "ema", 200.0)]), stamp(5)) == math.inf
    signals_only = index_outputs([signal(5)])
    assert final_difference(signals_only, signals_only, stamp(5)) is None


def test_warmup_offsets_grow_1_2_5_and_leave_half() -> None:
    assert warmup_offsets(250) == [1, 2, 5, 10, 20, 50, 100]
    assert warmup_offsets(3) == [1]
    assert warmup_offsets(1) == []
