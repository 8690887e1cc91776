"""The one dataflow graph shared by live, replay and backtest: only the source differs.

source ─► split_source ─┬─ rejects ──────────────────────────────────────────────► database
                        ├─ trades, feed states, gaps (by instrument) ─► candles ─► split_candles:
                        │     trades; stored (final 1m candles, late trades, gaps) ──► database
                        │     live (candles, provisional, late trades, in order) ────► fan-out (Redis)
                        │     candles ─► indicators (by series): values + signals ──► database, fan-out
                        │     candles ─► bots (by series): progress ─► bot tables; updates ─► fan-out
                        └─ connection health ─► health (by connection) ───► fan-out, collector_health
control (live only) ─► split_control ─┬─ bot changes ─► bots
                                      └─ indicator changes ─► indicators

Streams are split by typed operators (``split_source``, ``flows.candles.split_candles``) that return
small dataclasses of typed streams; each sink receives the one item type (or declared union) it stores.
The stateful steps keep their ids (``candles``, ``indicators``, ``health``; ``bots``) so recovery
snapshots resume. The control source (``flows.control.ControlSource``, docs/control.md) is given to the
live flow only; without it the graph has no bots step and the indicator step sees only candles.
The candle step's outputs have database and fan-out outputs of their own, built before the indicator
step, so a final candle is written and published without waiting for the indicators on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeGuard, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source
from bytewax.operators import KeyedStream
from bytewax.outputs import Sink

from configs.indicators import IndicatorsConfig
from connectors.okx.events import ConnectionHealth, Gap
from connectors.redis_codec import LiveItem
from connectors.spool import StoredItem
from flows.bots import NO_RESUME, BotResume, bot_stream, series_of
from flows.candles import CandleConfig, CandleIn, CandleLogic, CandlesOut, split_candles
from flows.health import NO_RESTARTS, Restarts, health_step
from flows.indicators import History, IndicatorOut, IndicatorStep
from market.bots import BotProgress
from market.control import BotChange, ControlChange, IndicatorChange
from market.health import CollectorHealth
from market.types import Candle, FeedState, Rejected, Trade
from market.windowing import LateTrade

X = TypeVar("X")

SourceItem = Trade | Rejected | FeedState | Gap | ConnectionHealth
"""What a source yields (anything else is ignored)."""


@dataclass
class FlowSinks:
    """Where the flow's outputs go."""

    database: Sink[StoredItem] | None = None
    """Trades, final 1m candles, late trades, gaps, rejects, indicator values and signals."""
    candles: list[Sink[Candle]] = field(default_factory=list)
    """Every final candle of every timeframe."""
    late: list[Sink[LateTrade]] = field(default_factory=list)
    indicators: list[Sink[IndicatorOut]] = field(default_factory=list)
    """Indicator values and signals."""
    fanout: list[Sink[LiveItem]] = field(default_factory=list)
    """Live fan-out (Redis): final candles of every timeframe, provisional candles, late trades,
    indicator values, signals and collector health."""
    health: list[Sink[CollectorHealth]] = field(default_factory=list)
    """Collector health snapshots (the ``collector_health`` table)."""
    bots: list[Sink[BotProgress]] = field(default_factory=list)
    """The running bots' fills, equity and state (``connectors.bot_store.BotSink``)."""


@dataclass(frozen=True)
class SourceOut:
    """A source's items by kind."""

    keyed: KeyedStream[CandleIn]
    """Trades, feed states and gaps, keyed by :func:`series_key` (what the candle step takes)."""
    rejects: Stream[Rejected]
    health: Stream[ConnectionHealth]


def _is_candle_input(item: SourceItem) -> TypeGuard[CandleIn]:
    kind = type(item)
    return kind is Trade or kind is FeedState or kind is Gap


def _is_reject(item: SourceItem) -> TypeGuard[Rejected]:
    return type(item) is Rejected


def _is_health(item: SourceItem) -> TypeGuard[ConnectionHealth]:
    return type(item) is ConnectionHealth


def series_key(exchange: str, symbol: str) -> str:
    """The candle step's key of an instrument: ``exchange|symbol``, so the same instrument on two exchanges
    is two series; OKX's is its symbol alone, the key it had before other exchanges came (its recovery
    snapshots resume, and a cluster replay still reads each tape where ``flows.placement`` says its
    symbol's candles are built)."""
    return symbol if exchange == "okx" else f"{exchange}|{symbol}"


def _series(item: CandleIn) -> str:
    return series_key(item.exchange, item.symbol)


@operator
def split_source(step_id: str, up: Stream[SourceItem]) -> SourceOut:
    """Split a source's items: the trade path, and the rare records routed without touching it."""
    split = op.branch("split_trades", up, _is_candle_input)
    records = split.falses
    # Rejected | ConnectionHealth
    return SourceOut(
        keyed=op.key_on("by_instrument", split.trues, _series),
        rejects=op.branch("rejects", records, _is_reject).trues,
        health=op.branch("health", records, _is_health).trues,
    )


@dataclass(frozen=True)
class ControlOut:
    """The control changes by kind."""

    bots: Stream[BotChange]
    indicators: Stream[IndicatorChange]


def _is_bot_change(item: ControlChange) -> TypeGuard[BotChange]:
    return type(item) is BotChange


@operator
def split_control(step_id: str, up: Stream[ControlChange]) -> ControlOut:
    """Split the control changes: bots' go to the bots step, user indicators' to the indicator step."""
    split = op.branch("split", up, _is_bot_change)
    return ControlOut(bots=split.trues, indicators=split.falses)  # type: ignore[arg-type]


def _connection(h: ConnectionHealth) -> str:
    return f"{h.exchange}:{h.connection}"


def _outputs(step_id: str, stream: Stream[X], sinks: Sequence[Sink[X]]) -> None:
    for i, sink in enumerate(sinks):
        op.output(f"{step_id}_{i}", stream, sink)


def candle_streams(
    flow: Dataflow, source: Source, candle_config: CandleConfig
) -> tuple[SourceOut, CandlesOut]:
    """The source's items by kind, and what the candle step made of them (the first half of the graph,
    shared with the backtest over trades)."""
    items = split_source("split", op.input("source", flow, source))
    # keyed: (series_key, Trade | FeedState | Gap); rejects: Rejected; health: ConnectionHealth
    windows = op.stateful_batch("candles", items.keyed, partial(CandleLogic, candle_config))
    # (series_key, TradeBatch | Candle | LateTrade | ProvisionalCandle | Gap)
    return items, split_candles("split_batches", op.key_rm("unkey", windows))


def indicator_stream(
    candles: Stream[Candle], step: IndicatorStep, changes: Stream[IndicatorChange] | None = None
) -> Stream[IndicatorOut]:
    """Final candles (and, live, the user indicators' changes) through the per-series indicator step
    (shared with the backtest over candles)."""
    inputs: Stream[Candle | IndicatorChange] = (
        candles if changes is None else op.merge("indicator_input", candles, changes)
    )
    by_series = op.key_on("by_series", inputs, series_of)
    # ("exchange|symbol|timeframe", Candle | IndicatorChange)
    return op.key_rm("unkey_series", op.stateful_flat_map("indicators", by_series, step))


def build_flow(
    flow_id: str,
    source: Source,
    candle_config: CandleConfig,
    sinks: FlowSinks,
    indicators: IndicatorsConfig | None = None,
    history: History | None = None,
    restarts: Restarts = NO_RESTARTS,
    control: Source | None = None,
    bots: BotResume = NO_RESUME,
) -> Dataflow:
    """Build the dataflow over ``source`` (items: ``Trade``, ``Rejected``, ``FeedState``, ``Gap``,
    ``ConnectionHealth``; others are ignored). ``history``: stored candles a series continues from.
    ``control``: the control changes (``market.control.ControlChange``) that run bots and user
    indicators; ``bots``: where the bots resume from after a restart."""
    flow = Dataflow(flow_id)
    items, out = candle_streams(flow, source, candle_config)
    changes = None if control is None else split_control("control", op.input("control_in", flow, control))
    # bots: BotChange; indicators: IndicatorChange
    # The candle step's outputs are written (and published) by outputs of their own, built before the
    # indicator step: Bytewax runs a worker's operators in the order they were built, so a final candle's
    # row and message do not wait for the indicators computed on the same candles.
    if sinks.database is not None:
        stored = op.merge("to_database", out.trades, out.stored, items.rejects)
        op.output("database", stored, sinks.database)
    _outputs("fanout_candles", out.live, sinks.fanout)
    _outputs("candles_out", out.candles, sinks.candles)
    _outputs("late_out", out.late, sinks.late)
    later: list[Stream[LiveItem]] = []
    if indicators is not None:
        user = None if changes is None else changes.indicators
        computed = indicator_stream(out.candles, IndicatorStep(indicators, history), user)
        # IndicatorValue | Signal
        if sinks.database is not None:
            op.output("database_indicators", computed, sinks.database)
        later.append(computed)
        _outputs("indicators_out", computed, sinks.indicators)
    if changes is not None:
        ran = bot_stream("bots", out.candles, changes.bots, bots)
        # progress: BotProgress (per bot and batch); updates: BotUpdate (per bot and candle)
        _outputs("bots_out", ran.progress, sinks.bots)
        later.append(ran.updates)
    if sinks.fanout or sinks.health:
        by_connection = op.key_on("by_connection", items.health, _connection)
        snapshots = op.key_rm(
            "unkey_health", op.stateful_map("health", by_connection, partial(health_step, restarts=restarts))
        )
        # CollectorHealth
        later.append(snapshots)
        _outputs("health_out", snapshots, sinks.health)
    if sinks.fanout and later:
        _outputs("fanout", op.merge("to_fanout", *later), sinks.fanout)
    return flow
