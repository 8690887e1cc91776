"""A recovery snapshot of the candle step (``CandleLogic.snapshot``: a deep copy of ``CandleState``),
restored as is or through pickle, continues exactly as the uninterrupted step: the same trades batches,
candles, late trades and duplicates dropped, whatever ids it had remembered when it was taken."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

from flows.candles import CandleConfig, CandleLogic, CandleOut
from market.types import Trade
from market.windowing import LateTrade
from tests.market.test_windowing import with_overlaps
from tests.market.windowing_kit import XRP
from tests.support.tapes import tape_trades


def _feed(logic: CandleLogic, batches: list[list[Trade]]) -> list[CandleOut]:
    out: list[CandleOut] = []
    for batch in batches:
        emitted, _ = logic.on_batch(list(batch))
        out.extend(emitted)
    emitted, _ = logic.on_eof()
    return [*out, *emitted]


@pytest.mark.parametrize("via_pickle", [False, True])
@pytest.mark.parametrize("cut", [3, 40, 120])
def test_a_restored_snapshot_continues_identically(cut: int, via_pickle: bool) -> None:
    trades = tape_trades(XRP)[:9_000]
    noisy = with_overlaps(tuple(trades), 250, timedelta(minutes=50))  # repeats reaching far back
    noisy[-50:-50] = [trades[10], trades[2_000]]  # and two repeats from hours before: late
    batches = [noisy[i : i + 97] for i in range(0, len(noisy), 97)]
    config = CandleConfig(clock="event")
    original = CandleLogic(config, None)
    _feed(original, batches[:cut])
    state = original.snapshot()
    assert state is not None
    restored = pickle.loads(pickle.dumps(state)) if via_pickle else state
    resumed = CandleLogic(config, restored)
    from_snapshot = _feed(resumed, batches[cut:])
    assert from_snapshot == _feed(original, batches[cut:])
    late = [item.trade for item in from_snapshot if isinstance(item, LateTrade)]
    assert late[-2:] == [trades[10], trades[2_000]]
