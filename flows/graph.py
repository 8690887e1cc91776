"""The one dataflow graph shared by live, replay and backtest: only the source differs.

source ─► split ─► rejects, gaps ─────────────────────────────────────────────────┐
              ├─► trades, feed states, gaps ─► key by instrument ─► candles ──────┤
              │                       candles ─► key by series ─► indicators ─────┼─► database
              │                                                    + signals      ├─► fan-out (Redis)
              └─► connection health ─► key by connection ─► collector health ─────┴─► collector_health
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from configs.indicators import IndicatorsConfig
from connectors.okx.events import ConnectionHealth, Gap
from flows.candles import CandleConfig, CandleLogic, CandleState
from flows.health import NO_RESTARTS, Restarts, health_step
from flows.indicators import History, IndicatorStep, series_key
from market.types import Candle, FeedState, Rejected, Trade, TradeBatch
from market.windowing import LateTrade


@dataclass
class FlowSinks:
    """Where the flow's outputs go. ``database`` takes trades, final 1m candles, late trades, rejects,
    indicator values and signals; ``candles`` every final candle of every timeframe; ``late`` the late
    trades; ``indicators`` indicator values and signals."""

    database: Sink | None = None
    candles: list[Sink] = field(default_factory=list)
    late: list[Sink] = field(default_factory=list)
    indicators: list[Sink] = field(default_factory=list)
    """Indicator values and signals."""
    fanout: list[Sink] = field(default_factory=list)
    """Live fan-out (Redis): final candles of every timeframe, provisional candles, late trades,
    indicator values, signals and collector health."""
    health: list[Sink] = field(default_factory=list)
    """Collector health snapshots (the ``collector_health`` table)."""


def _candle_or_none(item: object) -> Candle | None:
    return item if isinstance(item, Candle) else None


def _is_keyed(item: object) -> bool:
    """What the candle step takes, keyed by instrument: trades, feed states and gaps."""
    kind = type(item)
    return kind is Trade or kind is FeedState or kind is Gap


def _symbol(item: Trade | FeedState | Gap) -> str:
    return item.symbol


def _is_trade_batch(item: object) -> bool:
    return type(item) is TradeBatch


def _reject_or_none(item: object) -> Rejected | None:
    return item if isinstance(item, Rejected) else None


def _health_or_none(item: object) -> ConnectionHealth | None:
    return item if isinstance(item, ConnectionHealth) else None


def _is_stored(item: object) -> bool:
    """Of the candle step's events, what the database keeps: late trades, gaps and final 1m candles
    (longer timeframes are rollups there; provisional candles are never stored)."""
    if isinstance(item, Candle):
        return item.timeframe == "1m"
    return isinstance(item, LateTrade | Gap)


def _is_published(item: object) -> bool:
    """Of the candle step's events, what the live fan-out publishes: all but gaps."""
    return not isinstance(item, Gap)


def build_flow(
    flow_id: str,
    source: Source,
    candle_config: CandleConfig,
    sinks: FlowSinks,
    indicators: IndicatorsConfig | None = None,
    history: History | None = None,
    restarts: Restarts = NO_RESTARTS,
) -> Dataflow:
    """Build the dataflow over ``source`` (items: ``Trade``, ``Rejected``, ``FeedState``, ``Gap``,
    ``ConnectionHealth``; others are ignored). ``history``: stored candles a series continues from."""
    flow = Dataflow(flow_id)
    items = op.input("source", flow, source)
    # Trade | Rejected | FeedState | Gap | ConnectionHealth
    split = op.branch("split_trades", items, _is_keyed)
    keyed = op.key_on("by_instrument", split.trues, _symbol)
    # (symbol, Trade | FeedState | Gap)
    records = split.falses
    # Rejected | ConnectionHealth (rare: routed without touching the trade path)
    rejects = op.filter_map("rejects_only", records, _reject_or_none)

    def builder(state: CandleState | None) -> CandleLogic:
        return CandleLogic(candle_config, state)

    out = op.stateful_batch("candles", keyed, builder)
    # (symbol, TradeBatch | Candle | LateTrade | ProvisionalCandle | Gap)
    results = op.branch("split_batches", op.key_rm("unkey", out), _is_trade_batch)
    batches, events = results.trues, results.falses
    # TradeBatch; and Candle | LateTrade | ProvisionalCandle | Gap
    candles = op.filter_map("candles_only", events, _candle_or_none)
    # Candle (every timeframe, final)
    to_database: list[Stream[Any]] = [batches, op.filter("stored", events, _is_stored), rejects]
    # TradeBatch, Candle(1m) | LateTrade | Gap, Rejected
    if indicators is not None:
        by_series = op.key_on("by_series", candles, series_key)
        # ("exchange|symbol|timeframe", Candle)
        computed = op.key_rm(
            "unkey_series", op.stateful_flat_map("indicators", by_series, IndicatorStep(indicators, history))
        )
        # IndicatorValue | Signal
        to_database.append(computed)
        for i, sink in enumerate(sinks.indicators):
            op.output(f"indicators_out_{i}", computed, sink)
    else:
        computed = None
    if sinks.database is not None:
        op.output("database", op.merge("to_database", *to_database), sinks.database)
    for i, sink in enumerate(sinks.candles):
        op.output(f"candles_out_{i}", candles, sink)
    if sinks.fanout or sinks.health:
        health = op.filter_map("health_only", records, _health_or_none)
        # ConnectionHealth
        by_connection = op.key_on("by_connection", health, lambda h: f"{h.exchange}:{h.connection}")
        step = partial(health_step, restarts=restarts)
        snapshots = op.key_rm("unkey_health", op.stateful_map("health", by_connection, step))
        # CollectorHealth
        for i, sink in enumerate(sinks.health):
            op.output(f"health_out_{i}", snapshots, sink)
    if sinks.fanout:
        live = op.filter("published", events, _is_published)
        # Candle | ProvisionalCandle | LateTrade
        if computed is not None:
            live = op.merge("with_indicators", live, computed)
        # ... | IndicatorValue | Signal
        live = op.merge("with_health", live, snapshots)
        for i, sink in enumerate(sinks.fanout):
            op.output(f"fanout_{i}", live, sink)
    if sinks.late:
        late = op.filter("late_only", events, lambda x: isinstance(x, LateTrade))
        # LateTrade
        for i, sink in enumerate(sinks.late):
            op.output(f"late_out_{i}", late, sink)
    return flow
