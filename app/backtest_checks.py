"""``tcp.py backtest --check lookahead|warmup``: the honesty checks run over the backtest's own graph.

Both re-run ``flows.backtest.graph_outputs`` (the dataflow graph shared with live and replay) over parts
of the candles the backtest read, and compare with the run over all of them (``market.backtest.checks``):

- ``lookahead`` truncates the candles at signal times (every signal time when there are at most
  ``cuts``, else ``cuts`` of them evenly spaced, first and last included) and verifies that every
  indicator value and signal stamped at or before the cut is bit-identical (TIME.md rules 7 and 8);
- ``warmup`` starts the history 1, 2, 5, 10, 20, 50, ... candles later (up to half the candles) and
  reports how many candles each later start needs before all its outputs agree with the full run within
  a relative tolerance: the warm-up the configured indicators and strategies need.

Exit status 0 when the check passes (look-ahead: no difference; warm-up: every later start agreed before
the end of the data), 1 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from configs.indicators import IndicatorsConfig
from market.backtest.checks import (
    CutResult,
    LookaheadReport,
    WarmupReport,
    WarmupRow,
    compare_cut,
    cut_times,
    final_difference,
    index_outputs,
    settled_after,
    warmup_offsets,
)
from market.types import Candle, IndicatorValue, Signal

GraphRun = Callable[[Sequence[Candle], IndicatorsConfig], list[IndicatorValue | Signal]]
Write = Callable[[str], None]

CHECKS = ("lookahead", "warmup")
DEFAULT_CUTS = 50
DEFAULT_TOLERANCE = 1e-9


def _graph() -> GraphRun:
    from flows.backtest import graph_outputs

    return graph_outputs


def check_lookahead(
    candles: Sequence[Candle],
    config: IndicatorsConfig,
    run: GraphRun | None = None,
    cuts: int = DEFAULT_CUTS,
    write: Write | None = None,
) -> LookaheadReport:
    """Truncate at signal times and compare every output at or before each cut with the full run."""
    run = run or _graph()
    outputs = run(candles, config)
    full = index_outputs(outputs)
    signals = [out.time for out in outputs if isinstance(out, Signal)]
    times = [c.close_time for c in candles]
    position = {t: i for i, t in enumerate(times)}
    results: list[CutResult] = []
    chosen = cut_times(signals, cuts)
    for n, cut in enumerate(chosen, 1):
        truncated = index_outputs(run(candles[: position[cut] + 1], config))
        results.append(compare_cut(full, truncated, cut, times))
        if write is not None:
            write(f"  cut {n}/{len(chosen)} at {cut.isoformat()}: {'ok' if results[-1].ok else 'DIFFERS'}")
    return LookaheadReport(len(set(signals)), tuple(results))


def check_warmup(
    candles: Sequence[Candle],
    config: IndicatorsConfig,
    run: GraphRun | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    offsets: Sequence[int] | None = None,
) -> WarmupReport:
    """Start the history later by each offset and measure how long each start takes to agree."""
    run = run or _graph()
    full = index_outputs(run(candles, config))
    times = [c.close_time for c in candles]
    rows = []
    for k in offsets if offsets is not None else warmup_offsets(len(candles)):
        later = index_outputs(run(candles[k:], config))
        rows.append(
            WarmupRow(
                offset=k,
                candles=len(candles) - k,
                settled_after=settled_after(full, later, times[k:], tolerance),
                final_difference=final_difference(full, later, times[-1]),
            )
        )
    return WarmupReport(tolerance, tuple(rows))


def run_check(
    name: str,
    candles: Sequence[Candle],
    config: IndicatorsConfig,
    write: Write = print,
    run: GraphRun | None = None,
) -> int:
    """The CLI's ``--check NAME``: run the check, print its report, return the exit status."""
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r}; choose from {', '.join(CHECKS)}")
    if not candles:
        write(f"{name} check: no candles to check")
        return 1
    report: LookaheadReport | WarmupReport
    if name == "lookahead":
        report = check_lookahead(candles, config, run, write=write)
    else:
        report = check_warmup(candles, config, run)
    for line in report.lines():
        write(line)
    return 0 if (report.ok if isinstance(report, LookaheadReport) else report.needed is not None) else 1
