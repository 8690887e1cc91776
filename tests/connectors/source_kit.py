"""The OKX trades source against the real simulator (a ``python -m connectors.okx.simulator`` subprocess):
starting it, pulling partitions like Bytewax does, and the oracle, the tape read with the csv module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from connectors.okx.events import Gap
from connectors.okx.source import OkxItem, OkxTradesPartition, OkxTradesSource
from market.types import Trade, ms_from_utc
from tests.connectors.simulator_kit import BTC, cli_simulator
from tests.support.live_samples import until
from tests.support.tapes import tape_trades

# Short timings so a run stays within seconds; REST pacing low because the replay runs 50-100x real time,
# which also stamps its trades minutes ahead of the clock: the future tolerance is widened accordingly.
FAST: dict[str, Any] = {
    "ping_interval": 1.0,
    "health_interval": 0.5,
    "reconnect_initial": 0.05,
    "rest_min_interval": 0.002,
    "backfill_max_pages": 400,
    "future_tolerance": timedelta(days=1),
}


BTC_ROWS = tape_trades(BTC)


@dataclass
class Sim:
    ws: str
    rest: str
    log: Path

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if needle in line]


@contextmanager
def simulator(tmp_path: Path, *args: str, path: Path = BTC) -> Iterator[Sim]:
    """The simulator as a subprocess serving ``path``; its log is ``tmp_path / "simulator.log"``."""
    with cli_simulator(tmp_path, "--tape", str(path), *args) as (_, ready):
        yield Sim(ready["ws_public"], ready["rest"], tmp_path / "simulator.log")


def drain(part: OkxTradesPartition, within: float) -> list[OkxItem]:
    """Pull a partition like Bytewax does until it ends (or fail after ``within`` seconds)."""
    items: list[OkxItem] = []
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            try:
                items.extend(part.next_batch())
            except StopIteration:
                return items
            time.sleep(0.002)
        raise AssertionError(f"partition did not end within {within} s; health {part.health()}")
    finally:
        part.close()


def collect_until(
    part: OkxTradesPartition, done: Callable[[list[OkxItem]], bool], within: float, what: str
) -> list[OkxItem]:
    """Pull a partition like Bytewax does until ``done(items so far)`` (or fail after ``within`` s)."""
    items: list[OkxItem] = []

    def pulled() -> bool:
        items.extend(part.next_batch())
        return done(items)

    try:
        until(pulled, within, what)
    finally:
        part.close()
    return items


def collect_for(part: OkxTradesPartition, seconds: float) -> list[OkxItem]:
    items: list[OkxItem] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            items.extend(part.next_batch())
            time.sleep(0.005)
    finally:
        part.close()
    return items


def build(source: OkxTradesSource) -> OkxTradesPartition:
    (key,) = source.list_parts()
    return source.build_part("okx", key, None)


def of(items: list[OkxItem], kind: type) -> list:
    return [item for item in items if isinstance(item, kind)]


def assert_exact(items: list[OkxItem], expected: Sequence[Trade]) -> list[Trade]:
    """The trades are the expected tape rows, once each, in order, with the tape's fields."""
    trades: list[Trade] = of(items, Trade)
    assert [t.trade_id for t in trades] == [r.trade_id for r in expected]
    offsets = {
        ms_from_utc(t.ts_event) - ms_from_utc(r.ts_event) for t, r in zip(trades, expected, strict=True)
    }
    assert len(offsets) == 1  # one constant rebase shift
    for trade, row in zip(trades, expected, strict=True):
        assert (trade.side, trade.price, trade.size) == (row.side, row.price, row.size)
        assert trade.symbol == "BTC-USDT"
        assert trade.origin in ("ws", "rest")
    gaps: list[Gap] = of(items, Gap)
    assert sum(g.trades_backfilled for g in gaps) == sum(t.origin == "rest" for t in trades)
    return trades


def cut(first: int, last: int) -> list[Trade]:
    return [r for r in BTC_ROWS if first <= r.trade_id <= last]


def btc_source(sim: Sim, first: int, last: int, **options: Any) -> OkxTradesSource:
    return OkxTradesSource(
        sim.ws,
        sim.rest,
        ["BTC-USDT"],
        start_after={"BTC-USDT": first - 1},
        end_trade_ids={"BTC-USDT": last},
        **{**FAST, **options},
    )
