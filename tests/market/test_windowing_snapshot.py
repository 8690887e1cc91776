"""A deep copy of ``SeriesWindows`` (what the candle step's snapshot takes) continues exactly as the
original would, and shares nothing mutable with it: feeding one never changes the other."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from market.types import Trade
from market.windowing import Emitted, SeriesWindows
from tests.market.windowing_kit import GRACE, XRP
from tests.support.tapes import tape_trades


def _rest(windows: SeriesWindows, trades: list[Trade]) -> tuple[Emitted, Emitted]:
    out = windows.on_trades(trades)
    return out, windows.finish(trades[-1].ts_event)


@pytest.mark.parametrize("cut", [1, 777, 6_000, 12_476])
def test_a_copy_continues_identically_and_alone(cut: int) -> None:
    trades = tape_trades(XRP)
    windows = SeriesWindows("okx", "XRP-ETH", GRACE, dedup_retention=timedelta(hours=1))
    windows.mark_incomplete(trades[cut - 1].ts_event, trades[cut - 1].ts_event)
    windows.on_trades(trades[:cut])
    clone = copy.deepcopy(windows)
    seen, ids = set(clone._seen), {m: list(v) for m, v in clone._ids.items()}
    closed = clone._closed_ids.minutes()
    from_clone = _rest(clone, trades[cut:])
    assert (windows._seen, windows._ids) == (seen, ids)  # the original is untouched
    assert windows._closed_ids.minutes() == closed
    assert _rest(windows, trades[cut:]) == from_clone
    again = copy.deepcopy(windows)  # a copy of a finished series finishes the same way
    assert again.on_trades(trades[-5:]) == windows.on_trades(trades[-5:])


def test_the_copy_of_the_open_window_is_the_copy_the_cache_points_at() -> None:
    trades = tape_trades(XRP)[:50]
    windows = SeriesWindows("okx", "XRP-ETH", GRACE)
    windows.on_trades(trades)
    clone = copy.deepcopy(windows)
    assert clone._cur in clone._windows.values() and clone._cur is not windows._cur
    assert any(ids is clone._cur_ids for ids in clone._ids.values())
