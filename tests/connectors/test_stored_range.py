"""A series' stored candles in a range of close times, any timeframe, on a real PostgreSQL: what a bot
replays for the candles it missed and what a user indicator's history is computed from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connectors import resume
from connectors.database import DatabaseWriter
from connectors.resume import StoredHistory
from market.types import Candle
from sql.migrate import migrate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
MINUTES = 15


def minute(n: int) -> Candle:
    """The 1m candle n minutes after T0 (prices vary so a 5m rollup has distinct open/high/low/close)."""
    o, c = Decimal(100 + n), Decimal(100 + (n * 7) % 5)
    return Candle(
        "okx", "BTC-USDT", "1m", T0 + n * MINUTE, T0 + (n + 1) * MINUTE,
        o, max(o, c) + 1, min(o, c) - 1, c, Decimal(1), c, 1, c, 10 + n, 10 + n,
    )  # fmt: skip


@pytest.fixture
def stored(pg_url: str, tmp_path: Path) -> str:
    migrate(pg_url, "off")
    writer = DatabaseWriter(pg_url, spool_dir=tmp_path / "spool")
    writer.write([minute(n) for n in range(MINUTES)])
    writer.close()
    return pg_url


def at(n: int) -> datetime:
    return T0 + n * MINUTE


@pytest.mark.parametrize("page", [1, 2, 5000])
def test_1m_range_is_every_close_in_after_until_oldest_first(
    stored: str, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resume, "HISTORY_PAGE", page)
    history = StoredHistory(stored)
    # close times (after, until]: candle n closes at minute n + 1
    assert list(history.range("okx", "BTC-USDT", "1m", at(3), at(7))) == [minute(n) for n in (3, 4, 5, 6)]
    assert list(history.range("okx", "BTC-USDT", "1m", None, at(2))) == [minute(0), minute(1)]
    assert list(history.range("okx", "BTC-USDT", "1m", None, at(99))) == [minute(n) for n in range(MINUTES)]
    assert list(history.range("okx", "BTC-USDT", "1m", at(7), at(7))) == []
    assert list(history.range("okx", "BTC-USDT", "1m", at(MINUTES), at(99))) == []
    assert list(history.range("okx", "ETH-USDT", "1m", None, at(99))) == []


def test_a_higher_timeframe_range_holds_the_rolled_up_candles(stored: str) -> None:
    history = StoredHistory(stored)
    fives = list(history.range("okx", "BTC-USDT", "5m", None, at(MINUTES)))
    # the oracle: each 5m candle from its five minutes, built here
    expected = []
    for k in range(MINUTES // 5):
        ms = [minute(n) for n in range(5 * k, 5 * k + 5)]
        expected.append(
            (
                at(5 * k),
                at(5 * k + 5),
                ms[0].open,
                max(m.high for m in ms),
                min(m.low for m in ms),
                ms[-1].close,
            )
        )
    assert [(c.open_time, c.close_time, c.open, c.high, c.low, c.close) for c in fives] == expected
    assert all(c.timeframe == "5m" for c in fives)
    assert [c.close_time for c in history.range("okx", "BTC-USDT", "5m", at(5), at(14))] == [at(10)]
