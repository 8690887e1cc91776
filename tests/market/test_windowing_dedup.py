"""Rule 10 and the dedup retention (docs/candles.md, "Duplicates and dedup retention"): every trade of a
random stream (repeats, reordering, scattered and consecutive ids, retention expiry, quiet advances) is
classified duplicate / late / accepted exactly as a plain dict model of the documented rules says, and a
copy or pickle taken anywhere continues identically."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.timeframes import TF_1M, TF_5M
from market.windowing import Emitted, SeriesWindows
from tests.market.windowing_kit import MIN, at, trade

Op = tuple[str, int, int]  # ("trade", ms, id) or ("advance", ms, 0)


@dataclass
class DedupModel:
    """The documented rules on plain values. The watermark is max(advances, newest ts_event - grace); a
    1m window [m, m + 1 min) closes when the watermark passes a minute boundary at or after the close of
    the first window a trade opened; when windows close, the ids of minutes whose close is more than
    ``retention`` behind the watermark are forgotten. A trade is a duplicate if its id is remembered
    (checked first), else late if its window's close is at or before the watermark (remembered only
    when that close is within the retention), else accepted and remembered."""

    grace: int
    retention: int
    watermark: int | None = None
    first: int | None = None  # minute of the first window opened
    remembered: dict[int, int] = field(default_factory=dict)  # id -> minute

    def trade(self, ms: int, tid: int) -> str:
        if tid in self.remembered:
            return "duplicate"
        minute = ms // MIN
        close = (minute + 1) * MIN
        if self.watermark is not None and close <= self.watermark:
            if close > self.watermark - self.retention:
                self.remembered[tid] = minute
            return "late"
        self.remembered[tid] = minute
        if self.first is None or minute < self.first:
            self.first = minute
        self.advance(ms - self.grace)
        return "accepted"

    def advance(self, ms: int) -> None:
        before = self.watermark
        if before is not None and ms <= before:
            return
        self.watermark = ms
        boundary = ms // MIN * MIN  # the latest minute boundary the watermark reached
        crossed = before is None or boundary > before
        if self.first is not None and crossed and boundary >= (self.first + 1) * MIN:
            horizon = (ms - self.retention) // MIN
            self.remembered = {t: m for t, m in self.remembered.items() if m >= horizon}


def classify(out: Emitted) -> str:
    if out.duplicates:
        return "duplicate"
    return "late" if out.late else "accepted"


def apply(windows: SeriesWindows, op: Op) -> Emitted:
    kind, ms, tid = op
    return windows.on_trade(trade(ms, "100", tid)) if kind == "trade" else windows.advance(at(ms))


ids = st.one_of(
    st.integers(1, 30),  # many repeats
    st.integers(3_735_683_259, 3_735_683_300),  # an exchange's consecutive ids
    st.integers(1, 2**63 - 1),  # scattered
)
times = st.one_of(  # anywhere, or on a minute boundary (with or without the grace on top)
    st.integers(0, 40 * MIN),
    st.integers(0, 40).map(lambda k: k * MIN),
    st.integers(0, 40).map(lambda k: k * MIN + 2_000),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("trade"), times, ids),
        st.tuples(st.just("advance"), times, st.just(0)),
    ),
    max_size=80,
)


@st.composite
def walks(draw: st.DrawFn) -> list[Op]:
    """Mostly forward in time with ids mostly consecutive, as a feed is, plus jumps back (overlaps)."""
    ms, tid, out = draw(st.integers(0, 3 * MIN)), 3_735_683_259, []
    for _ in range(draw(st.integers(0, 120))):
        step = draw(st.sampled_from(["next", "next", "next", "back", "repeat", "advance"]))
        if step == "next":
            ms += draw(st.integers(0, 40_000))
            tid += draw(st.sampled_from([1, 1, 1, 2, 7]))
            out.append(("trade", ms, tid))
        elif step == "back" and out:  # an old trade again, maybe under another timestamp
            _, old_ms, old_id = draw(st.sampled_from(out))
            out.append(("trade", draw(st.sampled_from([old_ms, ms, max(0, old_ms - 70_000)])), old_id))
        elif step == "repeat":
            out.append(("trade", max(0, ms - draw(st.integers(0, 10 * MIN))), tid - draw(st.integers(0, 50))))
        else:
            out.append(("advance", ms + draw(st.integers(0, 3 * MIN)), 0))
    return out


settings_ = settings(max_examples=300, deadline=None)
retentions = st.sampled_from([0, 1_000, MIN, 90_000, 3 * MIN, 10 * MIN])
graces = st.sampled_from([0, 2_000, 5_000, 61_000])


def check(stream: list[Op], grace: int, retention: int, emit_flat: bool) -> None:
    windows = SeriesWindows(
        "okx",
        "BTC-USDT",
        timedelta(milliseconds=grace),
        timeframes=(TF_1M, TF_5M),
        emit_flat=emit_flat,
        dedup_retention=timedelta(milliseconds=retention),
    )
    model = DedupModel(grace, retention)
    for op in stream:
        out = apply(windows, op)
        if op[0] == "trade":
            assert classify(out) == model.trade(op[1], op[2]), op
        else:
            model.advance(op[1])
        assert windows.remembered_ids == len(model.remembered), op


@settings_
@given(ops, graces, retentions, st.booleans())
def test_classification_matches_the_model_on_random_streams(
    stream: list[Op], grace: int, retention: int, emit_flat: bool
) -> None:
    check(stream, grace, retention, emit_flat)


@settings_
@given(walks(), graces, retentions, st.booleans())
def test_classification_matches_the_model_on_feed_like_streams(
    stream: list[Op], grace: int, retention: int, emit_flat: bool
) -> None:
    check(stream, grace, retention, emit_flat)


@settings(max_examples=150, deadline=None)
@given(walks(), st.integers(0, 120), st.booleans())
def test_a_copy_or_pickle_taken_anywhere_continues_identically(
    stream: list[Op], cut: int, pickled: bool
) -> None:
    windows = SeriesWindows("okx", "BTC-USDT", timedelta(seconds=2), dedup_retention=timedelta(minutes=3))
    for op in stream[:cut]:
        apply(windows, op)
    clone = pickle.loads(pickle.dumps(windows)) if pickled else copy.deepcopy(windows)
    rest = stream[cut:]
    from_clone = [apply(clone, op) for op in rest]
    assert [apply(windows, op) for op in rest] == from_clone
    assert windows.remembered_ids == clone.remembered_ids


def test_rules_by_example() -> None:
    """Duplicate before late; a repeat under another timestamp is a duplicate while remembered; a late
    trade within the retention is remembered; beyond it a repeat is late, again."""
    windows = SeriesWindows(
        "okx", "BTC-USDT", timedelta(seconds=2), timeframes=(TF_1M,), dedup_retention=timedelta(minutes=2)
    )
    for i in range(100):  # ids 1000..1099 over the first minute and a half
        windows.on_trade(trade(i * 900, "100", 1000 + i))
    assert windows.on_trade(trade(30 * 900, "100", 1030)).duplicates == 1  # its window is closed
    assert windows.on_trade(trade(89_000, "100", 1005)).duplicates == 1  # another timestamp, same id
    late = windows.on_trade(trade(10_000, "100", 7))  # a new id in a closed window
    assert len(late.late) == 1 and windows.on_trade(trade(10_000, "100", 7)).duplicates == 1
    windows.advance(at(3 * MIN + 30_000))  # minute 0 closed 3.5 minutes ago: forgotten
    assert windows.on_trade(trade(1_800, "100", 1002)).late
    assert windows.on_trade(trade(1_800, "100", 1002)).late  # not remembered: late again
    assert windows.on_trade(trade(61_200, "100", 1068)).duplicates == 1  # minute 1 is still within
    windows.advance(at(4 * MIN))  # a close exactly the retention behind the watermark is not within
    assert windows.on_trade(trade(MIN + 5, "100", 8)).late and windows.on_trade(trade(MIN + 5, "100", 8)).late
    assert windows.on_trade(trade(2 * MIN, "100", 9)).late
    assert windows.on_trade(trade(2 * MIN, "100", 9)).duplicates == 1


@pytest.mark.parametrize("ids_step", [1, 3])
def test_remembered_ids_are_runs_once_their_window_closes(ids_step: int) -> None:
    """A feed's consecutive ids are held as one run per minute, not one entry per id."""
    windows = SeriesWindows("okx", "BTC-USDT", timedelta(seconds=2), timeframes=(TF_1M,))
    trades = [trade(i * 100, "100", 10_000 + i * ids_step) for i in range(6_000)]  # 10 minutes
    windows.on_trades(trades)
    closed = windows._closed_ids
    assert len(closed) + len(windows._seen) == windows.remembered_ids == 6_000
    assert closed.runs == (9 if ids_step == 1 else len(closed))
    assert all(t.trade_id in closed or t.trade_id in windows._seen for t in trades)


def test_the_model_agrees_with_itself_on_a_known_case() -> None:
    """The oracle's own arithmetic on a hand-worked case (so a wrong model cannot pass silently)."""
    model = DedupModel(grace=2_000, retention=MIN)
    assert model.trade(10_000, 1) == "accepted" and model.trade(10_000, 1) == "duplicate"
    assert model.trade(70_000, 2) == "accepted"  # watermark 68 s: minute 0 closed
    assert model.trade(59_000, 3) == "late" and 3 in model.remembered  # close 60 s > 68 s - 60 s
    model.advance(2 * MIN + 1)  # closes minute 1: minute 0 (close 60 s <= 120.001 s - 60 s) forgotten
    assert model.remembered == {2: 1}
