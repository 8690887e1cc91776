"""The honesty checks' comparison logic: look-ahead (TIME.md rules 7 and 8) and warm-up. Pure.

Both checks compare the indicator values and signals of a run over all the candles (the *full* run) with
runs over part of them; running the graph is the caller's business (``app/backtest_checks.py``).

- **Look-ahead.** A run over the candles up to a cut time T must give, for every stamp at or before T,
  exactly the outputs of the full run (prefix invariance): same indicator labels, bit-identical values,
  same signals (action, reason, values). The first difference in time order is reported.
- **Warm-up.** A run whose history starts ``k`` candles later differs from the full run at first (every
  indicator and strategy starts from fresh state) and agrees again once its state has forgotten the
  missing start. For each ``k`` the check finds how many candles that takes: the first candle of the later
  run from which every output agrees with the full run (values within a relative tolerance, signals by
  action) through the end. The warm-up a configuration needs is the largest such count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from market.types import IndicatorValue, Signal

Output = IndicatorValue | Signal
Key = tuple[str, str]
"""("indicator", label) or ("signal", strategy label)."""
Payload = tuple[object, ...]
"""What is compared: an indicator's values by name; a signal's action, reason and values."""
Index = dict[datetime, dict[Key, Payload]]


def index_outputs(outputs: Iterable[Output]) -> Index:
    """The outputs by stamp, then by (kind, label)."""
    index: Index = {}
    for out in outputs:
        at = index.setdefault(out.time, {})
        if isinstance(out, Signal):
            at[("signal", out.strategy)] = (out.action, out.reason, *sorted(out.values.items()))
        else:
            at[("indicator", out.indicator)] = tuple(sorted(out.values.items()))
    return index


@dataclass(frozen=True, slots=True)
class Difference:
    """The first output at which two runs differ: ``None`` on a side where the output is missing."""

    time: datetime
    kind: str
    label: str
    full: Payload | None
    other: Payload | None

    def describe(self) -> str:
        return (
            f"{self.kind} {self.label!r} at {self.time.isoformat()}: full run {_show(self.full)}, "
            f"other run {_show(self.other)}"
        )


def _show(payload: Payload | None) -> str:
    return "nothing" if payload is None else repr(payload)


def first_difference(full: Index, other: Index, times: Iterable[datetime]) -> Difference | None:
    """The first stamp of ``times`` (in their order) at which the two runs' outputs are not identical."""
    for time in times:
        mine, theirs = full.get(time, {}), other.get(time, {})
        if mine == theirs:
            continue
        for key in sorted(mine.keys() | theirs.keys()):
            if mine.get(key) != theirs.get(key):
                return Difference(time, key[0], key[1], mine.get(key), theirs.get(key))
    return None


def cut_times(signal_times: Sequence[datetime], limit: int) -> list[datetime]:
    """Where to truncate for the look-ahead check: every signal time when there are at most ``limit``,
    else ``limit`` of them evenly spaced over the run, the first and the last included."""
    times = sorted(set(signal_times))
    if len(times) <= limit:
        return times
    if limit == 1:
        return [times[-1]]
    step = (len(times) - 1) / (limit - 1)
    return sorted({times[round(i * step)] for i in range(limit)})


@dataclass(frozen=True, slots=True)
class CutResult:
    """One truncated run of the look-ahead check."""

    cut: datetime
    difference: Difference | None
    outside: datetime | None = None
    """A stamp after the cut in the truncated run's outputs (a run cannot know a later candle)."""

    @property
    def ok(self) -> bool:
        return self.difference is None and self.outside is None


def compare_cut(full: Index, truncated: Index, cut: datetime, times: Sequence[datetime]) -> CutResult:
    """Prefix invariance at ``cut``: the truncated run's outputs stamped at or before ``cut`` (``times``,
    the candles' close times in order) are exactly the full run's, and it has none after it."""
    outside = min((t for t in truncated if t > cut), default=None)
    upto = [t for t in times if t <= cut]
    return CutResult(cut, first_difference(full, truncated, upto), outside)


@dataclass(frozen=True, slots=True)
class LookaheadReport:
    """The look-ahead check: each cut's result, and how the cuts were chosen."""

    signals: int
    cuts: tuple[CutResult, ...]

    @property
    def ok(self) -> bool:
        return all(cut.ok for cut in self.cuts)

    def lines(self) -> list[str]:
        chosen = (
            f"every one of the {self.signals} signal times"
            if len(self.cuts) >= self.signals
            else f"{len(self.cuts)} of {self.signals} signal times, evenly spaced (first and last included)"
        )
        out = [f"look-ahead check: truncated at {chosen}"]
        failed = [cut for cut in self.cuts if not cut.ok]
        for cut in failed[:5]:
            if cut.outside is not None:
                out.append(f"  cut {cut.cut.isoformat()}: output stamped {cut.outside.isoformat()} after it")
            if cut.difference is not None:
                out.append(f"  cut {cut.cut.isoformat()}: {cut.difference.describe()}")
        if failed:
            out.append(
                f"FAILED: {len(failed)} of {len(self.cuts)} cuts differ (first {min(5, len(failed))} shown)"
            )
        else:
            out.append("passed: every indicator value and signal at or before each cut is unchanged")
        return out


def close_enough(a: Payload, b: Payload, tolerance: float) -> bool:
    """Same fields; numbers within ``tolerance`` relative to the larger magnitude of the two."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, tuple) and isinstance(y, tuple):
            if x[0] != y[0] or not close_enough(x[1:], y[1:], tolerance):
                return False
        elif isinstance(x, float) and isinstance(y, float):
            if abs(x - y) > tolerance * max(abs(x), abs(y)):
                return False
        elif x != y:
            return False
    return True


def agree(full: Mapping[Key, Payload], other: Mapping[Key, Payload], tolerance: float) -> bool:
    """One stamp's outputs agree: the same indicators and signals, values within ``tolerance``, signals
    with the same action (their reasons and values are compared as numbers too)."""
    if full.keys() != other.keys():
        return False
    return all(close_enough(full[key], other[key], tolerance) for key in full)


@dataclass(frozen=True, slots=True)
class WarmupRow:
    """The run starting ``offset`` candles later: the candles it needed until it agreed with the full run
    for good (None: not within the data), and its final indicator values' largest relative difference
    (``inf``: one missing; None: no indicator configured)."""

    offset: int
    candles: int
    settled_after: int | None
    final_difference: float | None


def settled_after(full: Index, other: Index, times: Sequence[datetime], tolerance: float) -> int | None:
    """How many of ``times`` (the later run's candle close times, in order) pass before every stamp from
    there to the end agrees: 0 if they all agree, None if the last one does not."""
    for back, time in enumerate(reversed(times)):
        if not agree(full.get(time, {}), other.get(time, {}), tolerance):
            return None if back == 0 else len(times) - back
    return 0


def final_difference(full: Index, other: Index, last: datetime) -> float | None:
    """The largest relative difference between the two runs' indicator values stamped ``last``: ``inf``
    when one is missing from the other run, None when the full run has none there."""
    mine, theirs = full.get(last, {}), other.get(last, {})
    if not any(key[0] == "indicator" for key in mine):
        return None
    worst = 0.0
    for key, payload in mine.items():
        if key[0] != "indicator":
            continue
        if key not in theirs:
            return math.inf
        for mine_item, their_item in zip(payload, theirs[key], strict=True):
            x, y = float(mine_item[1]), float(their_item[1])  # type: ignore[index]
            if x != y:
                worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return worst


@dataclass(frozen=True, slots=True)
class WarmupReport:
    """The warm-up check over several start offsets."""

    tolerance: float
    rows: tuple[WarmupRow, ...]

    @property
    def needed(self) -> int | None:
        """The most candles any later start needed before agreeing for good (None: one never did)."""
        settled = [row.settled_after for row in self.rows]
        return (
            None if any(s is None for s in settled) else max((s for s in settled if s is not None), default=0)
        )

    def lines(self) -> list[str]:
        out = [
            f"warm-up check: the history starting later; outputs agree within {self.tolerance:g}, relative",
            "  start offset | candles run | candles until agreement | final indicator difference",
        ]
        for row in self.rows:
            settled = "never (within the data)" if row.settled_after is None else str(row.settled_after)
            diff = _final(row.final_difference)
            out.append(f"  {row.offset:>12} | {row.candles:>11} | {settled:>23} | {diff}")
        needed = self.needed
        out.append(
            "warm-up needed: not reached within the data"
            if needed is None
            else f"warm-up needed: {needed} candles"
        )
        return out


def _final(difference: float | None) -> str:
    if difference is None:
        return "no indicators"
    return "missing" if math.isinf(difference) else f"{difference:.3g}"


def warmup_offsets(candles: int, smallest: int = 1) -> list[int]:
    """Start offsets growing 1, 2, 5 per decade, leaving at least half the candles to run."""
    offsets: list[int] = []
    decade = 1
    while True:
        for step in (1, 2, 5):
            k = step * decade
            if k > candles // 2:
                return offsets
            if k >= smallest:
                offsets.append(k)
        decade *= 10
