"""One batch for the database sorted by table: what ``DatabaseWriter`` writes in one transaction.

The sink and the spool speak ``StoredItem`` (the items of a batch, in order); ``StoredBatch.of`` sorts
them once, by type, into typed lists, so the writer handles each table's rows by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from connectors.okx.events import Gap
from connectors.spool import StoredItem
from market.types import Candle, IndicatorValue, Rejected, Signal, Trade, TradeBatch
from market.windowing import LateTrade

_FIELD: dict[type, str] = {
    Trade: "loose_trades",
    Candle: "candles",
    LateTrade: "late",
    Rejected: "rejects",
    IndicatorValue: "values",
    Signal: "signals",
    Gap: "gaps",
}
"""The list each stored type goes to (a ``TradeBatch`` adds its trades to ``batched_trades``)."""


@dataclass
class StoredBatch:
    """The rows of one batch, per table."""

    batched_trades: list[Trade] = field(default_factory=list)
    loose_trades: list[Trade] = field(default_factory=list)
    candles: list[Candle] = field(default_factory=list)
    """Final 1m candles (the longer timeframes are rollups in the database)."""
    late: list[LateTrade] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    values: list[IndicatorValue] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @classmethod
    def of(cls, items: Iterable[StoredItem]) -> StoredBatch:
        """``items`` by table; raises TypeError for an item the database does not store (a wiring bug)
        and ValueError for a candle other than 1m."""
        batch = cls()
        unknown = 0
        for item in items:
            if type(item) is TradeBatch:
                batch.batched_trades.extend(item.trades)
            elif (name := _FIELD.get(type(item))) is not None:
                getattr(batch, name).append(item)
            else:
                unknown += 1
        if unknown:
            raise TypeError(f"{unknown} item(s) of a type the database sink does not store")
        for candle in batch.candles:
            if candle.timeframe != "1m":
                raise ValueError(f"only 1m candles are stored, not {candle.timeframe} (those are rollups)")
        return batch

    @property
    def trades(self) -> list[Trade]:
        """Every trade: those of trade batches first, then single ones."""
        return self.batched_trades + self.loose_trades
