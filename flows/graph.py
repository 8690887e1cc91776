"""The one dataflow graph shared by live, replay and backtest: only the source differs.

    source ─► split ─► rejects, gaps ─────────────────────────────────────────────────┐
                  ├─► trades ─► key by instrument ─► candles (per instrument) ────────┤
                  │                       candles ─► key by series ─► indicators ─────┼─► database
                  │                                                    + signals      ├─► fan-out (Redis)
                  └─► connection health ─► key by connection ─► collector health ─────┘
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from configs.indicators import IndicatorsConfig
from connectors.okx.events import ConnectionHealth, Gap
from flows.candles import CandleConfig, CandleLogic, CandleState
from flows.health import health_step
from flows.indicators import IndicatorStep, series_key
from market.types import Candle, Rejected, Trade
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
    indicator values and signals."""


def _candle_or_none(item: object) -> Candle | None:
    return item if isinstance(item, Candle) else None


def _trade_or_none(item: object) -> Trade | None:
    return item if isinstance(item, Trade) else None


def _gap_or_none(item: object) -> Gap | None:
    return item if isinstance(item, Gap) else None


def _health_or_none(item: object) -> ConnectionHealth | None:
    return item if isinstance(item, ConnectionHealth) else None


def _is_stored(item: object) -> bool:
    """What the database keeps: trades, late trades and final 1m candles (longer ones are rollups)."""
    if isinstance(item, Candle):
        return item.timeframe == "1m"
    return isinstance(item, Trade | LateTrade)


def _is_fanned_out(item: object) -> bool:
    return not isinstance(item, Trade)


def build_flow(
    flow_id: str,
    source: Source,
    candle_config: CandleConfig,
    sinks: FlowSinks,
    indicators: IndicatorsConfig | None = None,
) -> Dataflow:
    """Build the dataflow over ``source`` (items: ``Trade`` and ``Rejected``; others are ignored)."""
    flow = Dataflow(flow_id)
    items = op.input("source", flow, source)
    # Trade | Rejected | connector records
    split = op.branch("split_rejects", items, lambda x: isinstance(x, Rejected))
    rejects = split.trues
    # Rejected
    trades = op.filter_map("trades_only", split.falses, _trade_or_none)
    # Trade
    keyed = op.key_on("by_instrument", trades, lambda t: t.symbol)
    # (symbol, Trade)

    def builder(state: CandleState | None) -> CandleLogic:
        return CandleLogic(candle_config, state)

    out = op.stateful_batch("candles", keyed, builder)
    # (symbol, Trade | Candle | LateTrade)
    results = op.key_rm("unkey", out)
    # Trade | Candle | LateTrade
    candles = op.filter_map("candles_only", results, _candle_or_none)
    # Candle (every timeframe, final)
    gaps = op.filter_map("gaps_only", split.falses, _gap_or_none)
    # Gap (from a live source: holes in the trade ids, filled by backfill or not)
    to_database = [op.filter("stored", results, _is_stored), rejects, gaps]
    # Trade | Candle(1m) | LateTrade, Rejected, Gap
    if indicators is not None:
        by_series = op.key_on("by_series", candles, series_key)
        # ("exchange|symbol|timeframe", Candle)
        computed = op.key_rm("unkey_series", op.stateful_flat_map("indicators", by_series,
                                                                   IndicatorStep(indicators)))
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
    if sinks.fanout:
        live = op.filter("fanned_out", results, _is_fanned_out)
        # Candle | ProvisionalCandle | LateTrade
        if computed is not None:
            live = op.merge("with_indicators", live, computed)
        # ... | IndicatorValue | Signal
        health = op.filter_map("health_only", split.falses, _health_or_none)
        # ConnectionHealth
        by_connection = op.key_on("by_connection", health, lambda h: f"{h.exchange}:{h.connection}")
        snapshots = op.key_rm("unkey_health", op.stateful_map("health", by_connection, health_step))
        # CollectorHealth
        live = op.merge("with_health", live, snapshots)
        for i, sink in enumerate(sinks.fanout):
            op.output(f"fanout_{i}", live, sink)
    if sinks.late:
        late = op.filter("late_only", results, lambda x: isinstance(x, LateTrade))
        # LateTrade
        for i, sink in enumerate(sinks.late):
            op.output(f"late_out_{i}", late, sink)
    return flow
