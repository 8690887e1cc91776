"""Backtests on the one dataflow graph of the live and replay flows (flows/graph.py).

Over stored candles of one timeframe (``source="candles"``), the candles go straight to the live
flow's per-series indicator step; over stored trades or tapes (``"trades"``, ``"tapes"``) the trades
first go through the live flow's source split and candle step, and the final candles of the chosen
timeframe go on:

    candles ────────────────────────────────────────────────┐
    trades ─► split_source ─► candles ─► split_candles ─► candles of the timeframe (open >= start)
                                                            └─► indicators + accounts (by series) ─► runs

The step ``indicators`` runs the live flow's ``IndicatorStep`` on each final candle (so the signals
are the live signals for the same candles, TIME.md rule 7) and keeps, beside its state, one simulated
account (``market.backtest.Account``) per strategy of the series. For each candle, in order: every
account first fills the signals due at this candle's open and marks its equity at the close, then the
candle goes through the indicator step and each new signal is queued on its strategy's account, to
fill at the next candle's open. One ``BacktestBatch`` comes out per input batch and series; at the end
of the input a last one carries each account's open position.

``run_backtest`` runs the flow in this process and returns one ``RunResult`` per (series, strategy);
``graph_outputs`` runs the graph's own indicator path over given candles and returns what it computed.
The flow has no recovery: a backtest is re-run, never resumed. ``python -m flows.backtest`` is the
command ``python3 tcp.py backtest`` (``app.backtest``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import run_main

from configs.indicators import IndicatorsConfig, RunPlan
from connectors.memory import BatchSource, CallbackSink, in_batches
from flows.candles import CandleConfig
from flows.graph import candle_streams, indicator_stream
from flows.indicators import IndicatorOut, IndicatorStep, series_key
from market.backtest import Account, AccountSettings, BacktestTrade, EquityCurve, Fill
from market.types import Candle, Signal

__all__ = [
    "BacktestBatch",
    "RunResult",
    "Timings",
    "backtest_flow",
    "graph_outputs",
    "run_backtest",
]


@dataclass
class Timings:
    """Seconds spent in each part of a backtest (``graph``: the dataflow without reading and accounting)."""

    read: float = 0.0
    graph: float = 0.0
    accounting: float = 0.0
    write: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"read": self.read, "graph": self.graph, "accounting": self.accounting, "write": self.write}


@dataclass(frozen=True)
class AccountBatch:
    """One strategy's account over a batch of candles: its equity at each close, its fills and the trades
    they closed."""

    equity: EquityCurve
    fills: list[Fill]
    closed: list[BacktestTrade]


@dataclass(frozen=True)
class BacktestBatch:
    """What the step made of one batch of one series' candles (one item per batch, not per candle)."""

    series: str
    """``exchange|symbol|timeframe``."""
    candles: tuple[Candle, ...]
    accounts: dict[str, AccountBatch]
    """Per strategy label."""
    signals: tuple[Signal, ...]
    open_trades: dict[str, BacktestTrade | None] | None = None
    """At the end of the input only: each account's open position, marked at the last close."""


@dataclass
class SeriesState:
    """One series' indicator and strategy state (the live step's) and its strategies' accounts."""

    plan: RunPlan | None = None
    accounts: dict[str, Account] = field(default_factory=dict)


class BacktestLogic(StatefulBatchLogic[Candle, BacktestBatch, SeriesState]):
    """The live indicator step on each candle of one series, with an account per strategy."""

    def __init__(
        self, step: IndicatorStep, settings: AccountSettings, timings: Timings, state: SeriesState | None
    ) -> None:
        self.step = step
        self.settings = settings
        self.timings = timings
        self.state = state or SeriesState()
        self.series = ""

    def on_batch(self, values: list[Candle]) -> tuple[Iterable[BacktestBatch], bool]:
        state = self.state
        self.series = series_key(values[0])
        out = {label: AccountBatch(EquityCurve(), [], []) for label in state.accounts}
        signals: list[Signal] = []
        spent = 0.0
        for candle in values:
            first = state.plan is None
            if not first:  # fills due at this candle's open, equity at its close
                spent += self._mark(candle, out)
            state.plan, computed = self.step(state.plan, candle)
            if first:  # a new series: its accounts start with the candle that made its plan
                for label in state.plan.strategies if state.plan is not None else ():
                    state.accounts[label] = Account(self.settings)
                    out[label] = AccountBatch(EquityCurve(), [], [])
                spent += self._mark(candle, out)
            for item in computed:
                if type(item) is Signal:  # fills at the open of the next candle
                    signals.append(item)
                    state.accounts[item.strategy].on_signal(item)
        self.timings.accounting += spent
        return [BacktestBatch(self.series, tuple(values), out, tuple(signals))], StatefulBatchLogic.RETAIN

    def _mark(self, candle: Candle, out: dict[str, AccountBatch]) -> float:
        """Every account on ``candle`` (its Decimals converted once); the seconds it took."""
        started = time.perf_counter()
        accounts = self.state.accounts
        if accounts:
            open_time, close_time = candle.open_time, candle.close_time
            open, close = float(candle.open), float(candle.close)
            for label, account in accounts.items():
                events = account.on_bar(open_time, close_time, open, close)
                batch = out[label]
                if events.fills:
                    batch.fills.extend(events.fills)
                    batch.closed.extend(events.closed)
                batch.equity.record(account)
        return time.perf_counter() - started

    def on_eof(self) -> tuple[Iterable[BacktestBatch], bool]:
        ends = {label: account.open_trade() for label, account in self.state.accounts.items()}
        return [BacktestBatch(self.series, (), {}, (), ends)], StatefulBatchLogic.RETAIN

    def snapshot(self) -> SeriesState:
        return copy.deepcopy(self.state)


def backtest_flow(
    source: Source,
    runs: CallbackSink[BacktestBatch],
    indicators: IndicatorsConfig,
    account: AccountSettings,
    timings: Timings,
    trades: CandleConfig | None = None,
    timeframe: str | None = None,
    start: datetime | None = None,
    symbol: str | None = None,
) -> Dataflow:
    """The backtest dataflow over ``source``: final candles, or (``trades``: the candle step's
    configuration) the live flow's source items, of which the final candles of ``timeframe`` (and
    ``symbol``, if given) opening at or after ``start`` are backtested."""
    flow = Dataflow("backtest")
    if trades is None:
        candles: Stream[Candle] = op.input("candles", flow, source)
    else:
        _, out = candle_streams(flow, source, trades)
        candles = op.filter("timeframe", out.candles, partial(_wanted, timeframe, start, symbol))
    # Candle (final, one timeframe)
    by_series = op.key_on("by_series", candles, series_key)
    # ("exchange|symbol|timeframe", Candle)
    step = IndicatorStep(indicators)
    logic = partial(BacktestLogic, step, account, timings)
    batches = op.key_rm("unkey_series", op.stateful_batch("indicators", by_series, logic))
    # BacktestBatch
    op.output("runs", batches, runs)
    return flow


def _wanted(timeframe: str | None, start: datetime | None, symbol: str | None, candle: Candle) -> bool:
    return (
        (timeframe is None or candle.timeframe == timeframe)
        and (start is None or candle.open_time >= start)
        and (symbol is None or candle.symbol == symbol)
    )


@dataclass
class RunResult:
    """One strategy's backtest on one series: its signals, account steps and open position."""

    exchange: str
    symbol: str
    timeframe: str
    strategy: str
    signals: list[Signal] = field(default_factory=list)
    equity: EquityCurve = field(default_factory=EquityCurve)
    fills: list[Fill] = field(default_factory=list)
    closed: list[BacktestTrade] = field(default_factory=list)
    open_trade: BacktestTrade | None = None
    first_candle: Candle | None = None
    last_candle: Candle | None = None
    candles: list[Candle] = field(default_factory=list)
    """Every candle, only when kept (``keep_candles``: for a report)."""

    @property
    def trades(self) -> list[BacktestTrade]:
        """The closed trades in order, then the open one."""
        return self.closed + ([self.open_trade] if self.open_trade is not None else [])


def _extend(curve: EquityCurve, more: EquityCurve) -> None:
    curve.times.extend(more.times)
    curve.closes.extend(more.closes)
    curve.cash.extend(more.cash)
    curve.positions.extend(more.positions)
    curve.equity.extend(more.equity)


class _Collector:
    """Sorts the batches of every series into one ``RunResult`` per (series, strategy)."""

    def __init__(self, keep_candles: bool, progress: Callable[[int], None] | None) -> None:
        self.keep_candles = keep_candles
        self.progress = progress
        self.runs: dict[tuple[str, str], RunResult] = {}

    def deliver(self, batches: list[BacktestBatch]) -> None:
        for batch in batches:
            for label, done in batch.accounts.items():
                run = self._run(batch.series, label)
                _extend(run.equity, done.equity)
                run.fills.extend(done.fills)
                run.closed.extend(done.closed)
                if batch.candles:
                    run.first_candle = run.first_candle or batch.candles[0]
                    run.last_candle = batch.candles[-1]
                    if self.keep_candles:
                        run.candles.extend(batch.candles)
            for signal in batch.signals:
                self._run(batch.series, signal.strategy).signals.append(signal)
            for label, trade in (batch.open_trades or {}).items():
                self._run(batch.series, label).open_trade = trade
            if self.progress is not None and batch.candles:
                self.progress(len(batch.candles))

    def _run(self, series: str, strategy: str) -> RunResult:
        run = self.runs.get((series, strategy))
        if run is None:
            exchange, symbol, timeframe = series.split("|")
            run = self.runs[(series, strategy)] = RunResult(exchange, symbol, timeframe, strategy)
        return run


def run_backtest(
    source: Source,
    indicators: IndicatorsConfig,
    account: AccountSettings,
    timings: Timings | None = None,
    trades: CandleConfig | None = None,
    timeframe: str | None = None,
    start: datetime | None = None,
    symbol: str | None = None,
    keep_candles: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[RunResult]:
    """Run the backtest flow in this process (one worker); the runs in (series, strategy) order.
    ``timings`` gets the read (when the source is a ``BatchSource``), graph and accounting seconds;
    ``progress(n)`` is called as each batch of ``n`` candles is done."""
    timings = timings if timings is not None else Timings()
    collector = _Collector(keep_candles, progress)
    sink = CallbackSink(collector.deliver)
    flow = backtest_flow(source, sink, indicators, account, timings, trades, timeframe, start, symbol)
    began, accounted = time.perf_counter(), timings.accounting
    read = source.read_seconds if isinstance(source, BatchSource) else 0.0
    run_main(flow)
    read = (source.read_seconds if isinstance(source, BatchSource) else 0.0) - read
    timings.read += read
    timings.graph += time.perf_counter() - began - read - (timings.accounting - accounted)
    return [collector.runs[key] for key in sorted(collector.runs)]


def graph_outputs(candles: Sequence[Candle], config: IndicatorsConfig) -> list[IndicatorOut]:
    """The indicator values and signals the shared graph's indicator path (``flows.graph``, as the live
    and replay flows run it) computes over these final candles of one series, in order."""
    flow = Dataflow("graph_outputs")
    stream: Stream[Candle] = op.input("candles", flow, BatchSource(in_batches(candles)))
    computed: list[IndicatorOut] = []
    op.output("outputs", indicator_stream(stream, IndicatorStep(config)), CallbackSink(computed.extend))
    run_main(flow)
    return computed


if __name__ == "__main__":
    import sys

    from app.backtest import main  # a flow module's __main__ hands over to app (app/__init__.py)

    sys.exit(main())
