"""The terminal status of ``tcp.py up`` read from a real database: the no-route message with its cause,
said once per episode, never for a collector of an earlier run; the periodic line's numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from app.status import OFFLINE_HINT, StatusWatch
from connectors.health_table import HealthTableWriter
from market.health import CollectorHealth
from sql.migrate import migrate

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GAIERROR = "gaierror: [Errno -2] Name or service not known"


def health(
    at: datetime, status: str, processed: int = 0, error: str | None = None, collector: str = "okx:BTC-USDT"
) -> CollectorHealth:
    return CollectorHealth(
        collector=collector,
        time=at,
        status=status,  # type: ignore[arg-type]
        should_be_running=True,
        messages_processed=processed,
        reconnect_attempts=3,
        last_error=error,
        status_since=at - timedelta(seconds=4),
    )


@pytest.fixture
def url(pg_url: str) -> str:
    migrate(pg_url, "off")
    return pg_url


def add_candle(url: str, close: datetime, exchange: str = "okx") -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume, quote_volume,"
            " trade_count, vwap, first_trade_id, last_trade_id)"
            " VALUES (%s, 'BTC-USDT', %s, 1, 1, 1, 1, 1, 1, 1, 1, 7, 7)",
            (exchange, close),
        )
        conn.execute(
            "INSERT INTO trades (exchange, symbol, trade_id, time, price, size, side, origin)"
            " VALUES (%s, 'BTC-USDT', %s, %s, %s, 1, 'buy', 'ws')",
            (exchange, int(close.timestamp()), close - timedelta(seconds=1), Decimal("1")),
        )


def test_no_route_is_said_once_with_its_cause_and_the_offline_hint(url: str, tmp_path: Path) -> None:
    said: list[str] = []
    watch = StatusWatch(url, [("okx", "BTC-USDT")], tmp_path, START, offline=False, say=said.append)
    writer = HealthTableWriter(url)
    writer.write([health(START - timedelta(minutes=5), "reconnecting", error="an earlier run's error")])
    watch.poll(START + timedelta(seconds=1))
    assert not any("not reachable" in line for line in said)  # an earlier run is not this one
    for seconds in (5, 10, 15):
        writer.write([health(START + timedelta(seconds=seconds), "reconnecting", error=GAIERROR)])
        watch.poll(START + timedelta(seconds=seconds + 1))
    writer.write([health(START + timedelta(seconds=20), "running")])
    watch.poll(START + timedelta(seconds=21))
    writer.close()
    down = [line for line in said if "not reachable" in line]
    assert down == [
        f"OKX not reachable (okx:BTC-USDT reconnecting since 12:00:01 UTC): {GAIERROR}. "
        f"The flow keeps retrying. {OFFLINE_HINT}"
    ]
    assert "okx:BTC-USDT connected again at 12:00:21 UTC" in said
    assert "python3 tcp.py up --offline" in OFFLINE_HINT


def test_status_line_counts_candles_written_since_start_trade_rate_and_lag(url: str, tmp_path: Path) -> None:
    add_candle(url, START - timedelta(minutes=1))  # stored before this run: not counted
    said: list[str] = []
    followed = [("okx", "BTC-USDT"), ("binance", "BTC-USDT")]
    watch = StatusWatch(url, followed, tmp_path, START, offline=True, say=said.append)
    writer = HealthTableWriter(url)
    writer.write([health(START + timedelta(seconds=1), "running", processed=100)])
    watch.poll(START + timedelta(seconds=5))  # too early for the first line
    watch.poll(START + timedelta(seconds=10))
    for minute in (0, 1):
        add_candle(url, START + timedelta(minutes=minute))
    add_candle(url, START + timedelta(minutes=1), "binance")  # followed too
    add_candle(url, START + timedelta(minutes=1), "bybit")  # not followed
    spool = tmp_path / "db-0123" / "1-2-3.batch"
    spool.parent.mkdir()
    spool.write_text("{}")
    writer.write([health(START + timedelta(seconds=121), "running", processed=700)])
    watch.poll(START + timedelta(seconds=25))  # within 30 s of the first line: none
    watch.poll(START + timedelta(seconds=130))
    writer.close()
    assert said == [
        "12:00:10 status: okx:BTC-USDT running · 0 candles written · lag 71.0 s · reconnects 3 · spool 0",
        # 600 trades over the 120 s between the two lines; the newest stored trade is at 12:00:59.
        "12:02:10 status: okx:BTC-USDT running · 3 candles written · 5.0 trades/s · lag 71.0 s"
        " · reconnects 3 · spool 1",
    ]


def test_a_binance_collector_down_names_binance(url: str, tmp_path: Path) -> None:
    said: list[str] = []
    watch = StatusWatch(url, [("binance", "BTC-USDT")], tmp_path, START, offline=True, say=said.append)
    writer = HealthTableWriter(url)
    down = health(START + timedelta(seconds=5), "reconnecting", error=GAIERROR, collector="binance:BTC-USDT")
    writer.write([down])
    watch.poll(START + timedelta(seconds=6))
    writer.close()
    assert said == [
        "the Binance simulator not reachable (binance:BTC-USDT reconnecting since 12:00:01 UTC): "
        f"{GAIERROR}. The flow keeps retrying."
    ]
