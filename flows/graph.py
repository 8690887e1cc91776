"""The one dataflow graph shared by live, replay and backtest: only the source differs.

    source ─► split ─► rejects ────────────────────────────────────────────────┐
                  └─► trades ─► key by instrument ─► candles (per instrument) ─┼─► database
                                                                └─► candles ───┴─► extra sinks
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.candles import CandleConfig, CandleLogic, CandleState
from market.types import Candle, Rejected, Trade
from market.windowing import LateTrade


@dataclass
class FlowSinks:
    """Where the flow's outputs go. ``database`` takes trades, final 1m candles, late trades and
    rejects; ``candles`` (optional) every final candle of every timeframe, ``late`` the late trades."""

    database: Sink | None = None
    candles: list[Sink] = field(default_factory=list)
    late: list[Sink] = field(default_factory=list)


def _is_stored(item: object) -> bool:
    if isinstance(item, Candle):
        return item.timeframe == "1m"
    return True


def build_flow(flow_id: str, source: Source, candle_config: CandleConfig, sinks: FlowSinks) -> Dataflow:
    """Build the dataflow over ``source`` (items: ``Trade`` and ``Rejected``; others are ignored)."""
    flow = Dataflow(flow_id)
    items = op.input("source", flow, source)
    # Trade | Rejected | connector records
    split = op.branch("split_rejects", items, lambda x: isinstance(x, Rejected))
    rejects = split.trues
    # Rejected
    trades = op.filter("trades_only", split.falses, lambda x: isinstance(x, Trade))
    # Trade
    keyed = op.key_on("by_instrument", trades, lambda t: t.symbol)
    # (symbol, Trade)

    def builder(state: CandleState | None) -> CandleLogic:
        return CandleLogic(candle_config, state)

    out = op.stateful_batch("candles", keyed, builder)
    # (symbol, Trade | Candle | LateTrade)
    results = op.key_rm("unkey", out)
    # Trade | Candle | LateTrade
    if sinks.database is not None:
        stored = op.filter("stored", results, _is_stored)
        # Trade | Candle(1m) | LateTrade
        op.output("database", op.merge("to_database", stored, rejects), sinks.database)
    if sinks.candles:
        candles = op.filter("candles_only", results, lambda x: isinstance(x, Candle))
        # Candle (every timeframe)
        for i, sink in enumerate(sinks.candles):
            op.output(f"candles_out_{i}", candles, sink)
    if sinks.late:
        late = op.filter("late_only", results, lambda x: isinstance(x, LateTrade))
        # LateTrade
        for i, sink in enumerate(sinks.late):
            op.output(f"late_out_{i}", late, sink)
    return flow
