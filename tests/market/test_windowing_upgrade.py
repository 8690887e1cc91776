"""A recovery snapshot taken by the former layout of ``SeriesWindows`` (every remembered id in one set,
tests/data/snapshots, see SOURCES.md) restores into the current code and continues exactly as a series
fed the same trades by the current code: same candles, same late trades, same duplicates."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from market.windowing import SeriesWindows
from tests.market.windowing_kit import GRACE, XRP
from tests.support.tapes import tape_trades

FORMER = Path(__file__).parents[1] / "data/snapshots/series-windows-v1.pickle"
CUT = 6_000  # the trades the snapshot was fed


def test_a_former_snapshot_continues_as_the_current_code_would() -> None:
    trades = list(tape_trades(XRP))
    restored = pickle.loads(FORMER.read_bytes())
    current = SeriesWindows("okx", "XRP-ETH", GRACE, dedup_retention=timedelta(hours=1))
    current.on_trades(trades[:CUT])
    assert restored.remembered_ids == current.remembered_ids == 100
    # repeats of trades of closed windows within the retention, one of an older one, then the rest
    repeats = [trades[CUT - 1], trades[CUT - 40], trades[CUT - 99], trades[CUT - 300]]
    rewritten = [replace(trades[CUT - 2], price=trades[CUT - 2].price * 2)]  # same id, other price
    rest = repeats + rewritten + trades[CUT:]
    from_restored = [restored.on_trade(trade) for trade in rest]
    assert from_restored == [current.on_trade(trade) for trade in rest]
    assert sum(out.duplicates for out in from_restored[:5]) == 4  # the 300th back is past retention
    assert restored.finish(trades[-1].ts_event) == current.finish(trades[-1].ts_event)
