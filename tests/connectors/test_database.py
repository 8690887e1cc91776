"""The database sink against real servers: exact values, one transaction per batch, idempotence, and a
real outage (the server stopped and restarted) that loses nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from connectors.database import DatabaseWriter
from connectors.embedded_postgres import EmbeddedPostgres
from connectors.tape import read_tape
from market.types import Candle, Rejected, Trade
from market.windowing import LateTrade
from sql.migrate import migrate
from tests.conftest import TEST_DATA

XRP_TAPE = TEST_DATA / "tapes" / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"


def tape_trades(n: int) -> list[Trade]:
    trades = []
    for trade in read_tape(XRP_TAPE):
        trades.append(trade)
        if len(trades) == n:
            break
    return trades


def candle(close: datetime, price: str = "1.5", flat: bool = False) -> Candle:
    p = Decimal(price)
    return Candle(
        exchange="okx", symbol="XRP-ETH", timeframe="1m", open_time=close - timedelta(minutes=1),
        close_time=close, open=p, high=p, low=p, close=p,
        volume=Decimal(0) if flat else Decimal("2"), quote_volume=Decimal(0) if flat else 2 * p,
        trade_count=0 if flat else 1, vwap=None if flat else p,
        first_trade_id=None if flat else 7, last_trade_id=None if flat else 7,
    )


@pytest.fixture
def migrated(pg_url: str) -> str:
    migrate(pg_url)
    return pg_url


def test_trades_are_stored_exactly_and_only_once(migrated: str, tmp_path: Path) -> None:
    trades = tape_trades(2000)
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write(trades)
    writer.write(trades[:500])  # a re-delivered overlap
    writer.close()
    with psycopg.connect(migrated) as conn:
        rows = conn.execute(
            "SELECT trade_id, price::text, size::text, side, time, origin FROM trades ORDER BY trade_id"
        ).fetchall()
    with XRP_TAPE.open() as tape:
        next(tape)
        expected = [line.strip().split(",") for _, line in zip(range(2000), tape, strict=False)]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(int(e[1]), e[3], e[4], e[2]) for e in expected]
    assert [r[4] for r in rows] == [datetime.fromtimestamp(int(e[5]) / 1000, tz=UTC) for e in expected]
    assert {r[5] for r in rows} == {"tape"}
    assert writer.stats.trades_inserted == 2000 and writer.stats.trades_duplicate == 500


def test_text_that_needs_escaping_round_trips_exactly(migrated: str, tmp_path: Path) -> None:
    odd = Trade("ex\\change", "A\tB\\C\nD", 1, Decimal("1.5"), Decimal("2"), "buy",
                datetime(2024, 1, 1, tzinfo=UTC), source="we\\ird\r", origin="o\tther")
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write([odd])
    writer.close()
    with psycopg.connect(migrated) as conn:
        row = conn.execute("SELECT exchange, symbol, exch_source, origin FROM trades").fetchone()
    assert row == (odd.exchange, odd.symbol, odd.source, odd.origin)


def test_candles_late_trades_and_rejects_in_one_batch(migrated: str, tmp_path: Path) -> None:
    close = datetime(2019, 10, 11, 0, 1, tzinfo=UTC)
    late_trade = tape_trades(1)[0]
    items = [
        candle(close), candle(close + timedelta(minutes=1), flat=True),
        LateTrade(trade=late_trade, candle_close=close, watermark=close + timedelta(seconds=3)),
        Rejected(raw=b'{"arg": broken', reason="malformed JSON", ts_recv=close),
    ]
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write(items)
    writer.write(items)  # idempotent
    writer.close()
    with psycopg.connect(migrated) as conn:
        candles = conn.execute("SELECT time, trade_count, vwap FROM candles_1m ORDER BY time").fetchall()
        late = conn.execute("SELECT trade_id, candle_close, lateness FROM late_trades").fetchall()
        rejects = conn.execute("SELECT reason, raw FROM rejects").fetchall()
    assert candles == [(close, 1, Decimal("1.5")), (close + timedelta(minutes=1), 0, None)]
    assert late == [(late_trade.trade_id, close, close + timedelta(seconds=3) - late_trade.ts_event)]
    assert rejects == [("malformed JSON", b'{"arg": broken')]


def test_a_batch_is_one_transaction(migrated: str, tmp_path: Path) -> None:
    """A batch the database refuses leaves none of its rows behind, and is kept, not dropped."""
    bad = candle(datetime(2019, 10, 11, 0, 1, tzinfo=UTC))
    bad = Candle(**{**{f: getattr(bad, f) for f in bad.__slots__}, "high": Decimal("0.1")})  # high < open
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write([*tape_trades(10), bad])
    writer.write(tape_trades(3))
    writer.close()
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM trades").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM candles_1m").fetchone() == (0,)
    assert writer.stats.batches_refused == 1
    assert len(list((tmp_path / "spool" / "rejected").glob("*.batch"))) == 1


def test_database_outage_spools_then_writes_everything(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    migrate(url)
    trades = tape_trades(3000)
    writer = DatabaseWriter(url, tmp_path / "spool", retry_initial=0.05, retry_max=0.2, connect_timeout=1)
    try:
        writer.write(trades[:1000])
        server.stop()  # a real outage: the server is gone
        began = time.monotonic()
        writer.write(trades[1000:2000])
        writer.write(trades[2000:2500])
        assert time.monotonic() - began < 5, "writes must not block while the database is down"
        assert len(writer.pending_batches()) == 2
        assert writer.stats.write_failures >= 1 and writer.stats.last_error
        server.start()
        writer.write(trades[2500:])
        assert writer.flush(timeout=10)
    finally:
        writer.close()
        with psycopg.connect(url) as conn:
            ids = [r[0] for r in conn.execute("SELECT trade_id FROM trades ORDER BY trade_id")]
        server.stop()
    assert ids == [t.trade_id for t in trades]
    assert writer.pending_batches() == []


def test_spooled_batches_survive_a_restart_of_the_writer(migrated: str, tmp_path: Path) -> None:
    unreachable = "postgresql://postgres@/nowhere?host=/nonexistent-socket-dir"
    first = DatabaseWriter(unreachable, tmp_path / "spool", connect_timeout=1)
    first.write(tape_trades(100))
    first.close()
    assert len(first.pending_batches()) == 1
    second = DatabaseWriter(migrated, tmp_path / "spool")
    second.write([])
    second.close()
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM trades").fetchone() == (100,)


@pytest.mark.timescale
def test_writes_into_hypertables(timescale_url: str, tmp_path: Path) -> None:
    migrate(timescale_url)
    writer = DatabaseWriter(timescale_url, tmp_path / "spool")
    writer.write([*tape_trades(500), candle(datetime(2019, 10, 11, 0, 1, tzinfo=UTC))])
    writer.write(tape_trades(500))
    writer.close()
    with psycopg.connect(timescale_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT trade_id) FROM trades").fetchone() == (500, 500)
        assert conn.execute("SELECT count(*) FROM candles_1m").fetchone() == (1,)
