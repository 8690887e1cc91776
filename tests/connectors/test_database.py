"""The database sink against real servers: exact values, one transaction per batch, idempotence, final
candles never updated (a different value is a conflict kept aside), invalid rows rejected one by one, and
real outages (a server stopped and restarted) that lose nothing and never write into another database."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from app.embedded_postgres import EmbeddedPostgres
from connectors.database import DatabaseWriter, drain_spool
from connectors.okx.events import Gap
from connectors.tape import read_tape
from market.types import Candle, IndicatorValue, Rejected, Signal, Trade
from market.windowing import LateTrade
from sql.migrate import migrate
from sql.policies import refresh_rollups
from tests.conftest import TEST_DATA

XRP_TAPE = TEST_DATA / "tapes" / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
T0 = datetime(2019, 10, 11, tzinfo=UTC)


def tape_trades(n: int) -> list[Trade]:
    trades = []
    for trade in read_tape(XRP_TAPE):
        trades.append(trade)
        if len(trades) == n:
            break
    return trades


def candle(close: datetime, price: str = "1.5", flat: bool = False, complete: bool = True) -> Candle:
    p = Decimal(price)
    return Candle(
        exchange="okx",
        symbol="XRP-ETH",
        timeframe="1m",
        open_time=close - timedelta(minutes=1),
        close_time=close,
        open=p,
        high=p,
        low=p,
        close=p,
        volume=Decimal(0) if flat else Decimal("2"),
        quote_volume=Decimal(0) if flat else 2 * p,
        trade_count=0 if flat else 1,
        vwap=None if flat else p,
        first_trade_id=None if flat else 7,
        last_trade_id=None if flat else 7,
        complete=complete,
    )


def minutes(n: int) -> list[Candle]:
    """1m candles closing 00:01 ... 00:n, priced 1.6, 1.7, ... (the minute closing 00:07 incomplete)."""
    return [
        candle(T0 + timedelta(minutes=i), f"{Decimal('1.5') + Decimal(i) / 10}", complete=i != 7)
        for i in range(1, n + 1)
    ]


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]  # constant test queries


@pytest.fixture
def migrated(pg_url: str) -> str:
    migrate(pg_url)
    return pg_url


@pytest.fixture(params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def engine_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database on each engine in turn (PGlite serves one connection at a time: tests
    disconnect the writer before reading)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        migrate(url, "off")
        yield url
        return
    from tests.support.timescale_server import TimescaleTestServer

    with TimescaleTestServer() as server:
        migrate(server.url, "on")
        yield server.url


def rollups(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT engine FROM schema_migrations LIMIT 1").fetchone() == ("timescale",):
            refresh_rollups(conn)  # plain PostgreSQL keeps them in the writing transaction
        columns = "time, open, high, low, close, volume, trade_count, complete"
        return {
            tf: conn.execute(f"SELECT {columns} FROM candles_{tf} ORDER BY time").fetchall()
            for tf in ("5m", "15m")
        }


def test_trades_are_stored_exactly_and_only_once(migrated: str, tmp_path: Path) -> None:
    trades = tape_trades(2000)
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write(trades)
    writer.write(trades[:500])  # a re-delivered overlap
    writer.close()
    stored = rows(
        migrated, "SELECT trade_id, price::text, size::text, side, time, origin FROM trades ORDER BY trade_id"
    )
    with XRP_TAPE.open() as tape:
        next(tape)
        expected = [line.strip().split(",") for _, line in zip(range(2000), tape, strict=False)]
    assert [(r[0], r[1], r[2], r[3]) for r in stored] == [(int(e[1]), e[3], e[4], e[2]) for e in expected]
    assert [r[4] for r in stored] == [datetime.fromtimestamp(int(e[5]) / 1000, tz=UTC) for e in expected]
    assert {r[5] for r in stored} == {"tape"}
    assert writer.stats.trades_inserted == 2000 and writer.stats.trades_duplicate == 500


def test_text_that_needs_escaping_round_trips_exactly(migrated: str, tmp_path: Path) -> None:
    odd = Trade(
        "ex\\change",
        "A\tB\\C\nD",
        1,
        Decimal("1.5"),
        Decimal("2"),
        "buy",
        datetime(2024, 1, 1, tzinfo=UTC),
        source="we\\ird\r",
        origin="o\tther",
    )
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write([odd])
    writer.close()
    assert rows(migrated, "SELECT exchange, symbol, exch_source, origin FROM trades") == [
        (odd.exchange, odd.symbol, odd.source, odd.origin)
    ]


def test_candles_late_trades_and_rejects_in_one_batch(migrated: str, tmp_path: Path) -> None:
    close = T0 + timedelta(minutes=1)
    late_trade = tape_trades(1)[0]
    items = [
        candle(close),
        candle(close + timedelta(minutes=1), flat=True),
        LateTrade(trade=late_trade, candle_close=close, watermark=close + timedelta(seconds=3)),
        Rejected(raw=b'{"arg": broken', reason="malformed JSON", ts_recv=close),
    ]
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write(items)
    writer.write(items)  # idempotent
    writer.close()
    assert rows(migrated, "SELECT time, trade_count, vwap, complete FROM candles_1m ORDER BY time") == [
        (close, 1, Decimal("1.5"), True),
        (close + timedelta(minutes=1), 0, None, True),
    ]
    assert rows(migrated, "SELECT trade_id, candle_close, lateness FROM late_trades") == [
        (late_trade.trade_id, close, close + timedelta(seconds=3) - late_trade.ts_event)
    ]
    assert rows(migrated, "SELECT reason, raw FROM rejects") == [("malformed JSON", b'{"arg": broken')]


def test_identical_redelivery_of_candles_changes_nothing(engine_url: str, tmp_path: Path) -> None:
    writer = DatabaseWriter(engine_url, tmp_path / "spool")
    writer.write(minutes(10))
    writer.disconnect()
    before = rows(engine_url, "SELECT * FROM candles_1m ORDER BY time")
    views = rollups(engine_url)
    writer.write(minutes(10))
    writer.write(minutes(10)[3:6])
    writer.close()
    assert rows(engine_url, "SELECT * FROM candles_1m ORDER BY time") == before
    assert rows(engine_url, "SELECT count(*) FROM candle_conflicts") == [(0,)]
    assert rollups(engine_url) == views
    # the minute closing 00:07 is incomplete, and so is the 5m interval holding it
    assert [r[2].minute for r in before if not r[-2]] == [7]  # r[-2]: complete (contract_value is last)
    assert [(r[0].minute, r[2], r[4], r[6], r[7]) for r in views["5m"]] == [
        (5, Decimal("2.0"), Decimal("2.0"), 5, True),
        (10, Decimal("2.5"), Decimal("2.5"), 5, False),
    ]
    assert (writer.stats.candles_written, writer.stats.candles_duplicate, writer.stats.candle_conflicts) == (
        10,
        13,
        0,
    )


def test_a_different_candle_for_a_stored_key_is_kept_aside(
    engine_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = DatabaseWriter(engine_url, tmp_path / "spool")
    writer.write(minutes(10))
    writer.disconnect()
    before = rows(engine_url, "SELECT * FROM candles_1m ORDER BY time")
    views = rollups(engine_url)
    other = candle(T0 + timedelta(minutes=3), "9.9")  # the stored one closes at 1.8
    with caplog.at_level(logging.ERROR, logger="connectors.database"):
        writer.write([candle(T0 + timedelta(minutes=11), "2.6"), other])
        writer.write([other])  # offered again: still an error, kept once
    writer.close()
    after = rows(engine_url, "SELECT * FROM candles_1m ORDER BY time")
    assert after[:10] == before and len(after) == 11
    assert rollups(engine_url) == views
    assert rows(
        engine_url,
        """
        SELECT symbol, time, stored->>'close', offered->>'close', offered->>'high', offered->>'trade_count',
               stored ? 'inserted_at'
        FROM candle_conflicts""",
    ) == [("XRP-ETH", T0 + timedelta(minutes=3), "1.8", "9.9", "9.9", "1", True)]
    assert writer.stats.candle_conflicts == 2
    conflicts = [r for r in caplog.records if "candle conflict" in r.getMessage()]
    assert len(conflicts) == 2 and all(r.levelno == logging.ERROR for r in conflicts)


def test_indicator_values_and_signals_are_never_updated(migrated: str, tmp_path: Path) -> None:
    at = T0 + timedelta(minutes=5)
    value = IndicatorValue("okx", "XRP-ETH", "1m", at, "ema_fast", {"value": 1.25})
    signal = Signal("okx", "XRP-ETH", "1m", at, "cross", "buy", "fast above slow", {"fast": 1.25})
    writer = DatabaseWriter(migrated, tmp_path / "spool")
    writer.write([value, signal])
    writer.write(
        [
            dataclasses.replace(value, values={"value": 9.0}),
            dataclasses.replace(signal, action="sell", reason="changed", values={"fast": 9.0}),
        ]
    )
    writer.close()
    assert rows(migrated, "SELECT indicator, output, value FROM indicators") == [("ema_fast", "value", 1.25)]
    assert rows(migrated, "SELECT action, reason, values FROM signals") == [
        ("buy", "fast above slow", {"fast": 1.25})
    ]


def test_one_invalid_row_does_not_sink_its_batch(engine_url: str, tmp_path: Path) -> None:
    trades = tape_trades(10)
    too_many = dataclasses.replace(trades[4], count=2**31)  # beyond the integer column
    inverted = dataclasses.replace(candle(T0 + timedelta(minutes=2)), high=Decimal("0.1"))  # high < open
    late = LateTrade(trade=trades[0], candle_close=T0, watermark=T0 + timedelta(seconds=3))
    batch = [
        *trades[:4],
        too_many,
        *trades[5:],
        candle(T0 + timedelta(minutes=1)),
        inverted,
        candle(T0 + timedelta(minutes=3)),
        late,
        Rejected(b"\xff", "not JSON", T0),
    ]
    writer = DatabaseWriter(engine_url, tmp_path / "spool")
    writer.write(batch)
    writer.write(batch)  # re-delivered: the same rejects, recorded once
    writer.close()
    stored = [r[0] for r in rows(engine_url, "SELECT trade_id FROM trades ORDER BY trade_id")]
    assert stored == sorted(t.trade_id for t in trades if t is not trades[4])
    assert rows(engine_url, "SELECT time FROM candles_1m ORDER BY time") == [
        (T0 + timedelta(minutes=1),),
        (T0 + timedelta(minutes=3),),
    ]
    assert rows(engine_url, "SELECT count(*) FROM late_trades") == [(1,)]
    refused = rows(
        engine_url,
        "SELECT received_at, reason, raw FROM rejects WHERE source = 'database' ORDER BY received_at",
    )
    assert rows(engine_url, "SELECT reason FROM rejects WHERE source <> 'database'") == [("not JSON",)]
    assert len(refused) == 2
    by_kind = {json.loads(raw)["kind"]: (at, reason, json.loads(raw)) for at, reason, raw in refused}
    at, reason, row = by_kind["trade"]
    assert (row["trade_id"], row["count"], at) == (trades[4].trade_id, 2**31, trades[4].ts_event)
    assert "out of range for type integer" in reason
    at, reason, row = by_kind["candle"]
    assert (row["high"], row["open"], at) == ("0.1", "1.5", T0 + timedelta(minutes=2))
    assert "candles_1m_ohlc" in reason
    assert writer.stats.rows_rejected == 4 and writer.stats.batches_written == 2


def test_a_batch_is_one_transaction(migrated: str, tmp_path: Path) -> None:
    """A batch whose statements the database refuses (here: a table missing) leaves none of its rows
    behind; it waits in the spool and is written whole once the database accepts it."""
    gap = Gap("okx", "XRP-ETH", 1, 5, None, None, False, 0, "sequence", T0)
    writer = DatabaseWriter(migrated, tmp_path / "spool", retry_initial=0.01, retry_max=0.01)
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("ALTER TABLE gaps RENAME TO gaps_away")
    writer.write([*tape_trades(10), gap])
    assert rows(migrated, "SELECT count(*) FROM trades") == [(0,)]
    assert len(writer.pending_batches()) == 1 and "gaps" in (writer.stats.last_error or "")
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("ALTER TABLE gaps_away RENAME TO gaps")
    assert writer.flush(timeout=5)
    writer.close()
    assert rows(migrated, "SELECT count(*) FROM trades") == [(10,)]
    assert rows(migrated, "SELECT from_trade_id, to_trade_id FROM gaps") == [(1, 5)]


def test_database_outage_spools_then_writes_everything(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    migrate(url)
    trades = tape_trades(3000)
    at = T0 + timedelta(minutes=2)
    others = [  # one row of every other kind, through the spool
        candle(at, "1.25", complete=False),
        LateTrade(trade=trades[0], candle_close=at, watermark=at + timedelta(seconds=3)),
        Rejected(b"\x00\xffraw", "bad frame", at, source="okx-ws"),
        IndicatorValue("okx", "XRP-ETH", "1m", at, "rsi", {"value": 0.1 + 0.2}),
        Signal("okx", "XRP-ETH", "1m", at, "cross", "sell", "why", {"rsi": 70.5}),
        Gap("okx", "XRP-ETH", 10, 20, at, None, False, 3, "reconnect", at, 1.5, "REST down"),
    ]
    writer = DatabaseWriter(url, tmp_path / "spool", retry_initial=0.05, retry_max=0.2, connect_timeout=1)
    try:
        writer.write(trades[:1000])
        server.stop()  # a real outage: the server is gone
        began = time.monotonic()
        writer.write(trades[1000:2000])
        writer.write([*trades[2000:2500], *others])
        assert time.monotonic() - began < 5, "writes must not block while the database is down"
        assert len(writer.pending_batches()) == 2
        assert writer.stats.write_failures >= 1 and writer.stats.last_error
        server.start()
        writer.write(trades[2500:])
        assert writer.flush(timeout=10)
    finally:
        writer.close()
        ids = [r[0] for r in rows(url, "SELECT trade_id FROM trades ORDER BY trade_id")]
        stored = [
            rows(url, "SELECT time, open::text, volume::text, quote_volume::text, complete FROM candles_1m"),
            rows(url, "SELECT trade_id, candle_close, lateness FROM late_trades"),
            rows(url, "SELECT received_at, source, reason, raw FROM rejects"),
            rows(url, "SELECT time, indicator, output, value FROM indicators"),
            rows(url, "SELECT time, strategy, action, reason, values FROM signals"),
            rows(
                url,
                "SELECT from_trade_id, to_time, filled, trades_backfilled, recovery_seconds, error FROM gaps",
            ),
        ]
        server.stop()
    assert ids == [t.trade_id for t in trades]
    assert writer.pending_batches() == []
    assert stored == [
        [(at, "1.25", "2", "2.50", False)],
        [(trades[0].trade_id, at, timedelta(seconds=3) + at - trades[0].ts_event)],
        [(at, "okx-ws", "bad frame", b"\x00\xffraw")],
        [(at, "rsi", "value", 0.30000000000000004)],
        [(at, "cross", "sell", "why", {"rsi": 70.5})],
        [(10, None, False, 3, 1.5, "REST down")],
    ]


def test_spooled_batches_survive_a_restart_of_the_writer(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    migrate(url)
    server.stop()
    first = DatabaseWriter(url, tmp_path / "spool", connect_timeout=1)
    first.write(tape_trades(100))  # never connected: the spool knows only the URL
    first.close()
    assert len(first.pending_batches()) == 1
    server.start()
    try:
        second = DatabaseWriter(url, tmp_path / "spool")
        second.write([])
        second.close()
        assert rows(url, "SELECT count(*) FROM trades") == [(100,)]
    finally:
        server.stop()


def test_a_spool_for_one_database_is_never_written_into_another(migrated: str, tmp_path: Path) -> None:
    """Database A (its own server) goes down with batches spooled; a start pointed at database B (another
    server) writes none of them; once A is back, a start pointed at A writes them all."""
    server = EmbeddedPostgres(tmp_path / "pg")
    url_a = server.start()
    migrate(url_a)
    spool = tmp_path / "spool"
    trades = tape_trades(300)
    writer_a = DatabaseWriter(url_a, spool / "worker0", connect_timeout=1, retry_initial=0.01)
    writer_a.write(trades[:100])
    server.stop()
    try:
        writer_a.write(trades[100:200])
        writer_a.close()
        assert len(writer_a.pending_batches()) == 1
        drain_spool(migrated, spool, connect_timeout=1)  # a start pointed at B
        writer_b = DatabaseWriter(migrated, spool / "worker0")
        writer_b.write(trades[200:])
        writer_b.close()
        assert [r[0] for r in rows(migrated, "SELECT trade_id FROM trades ORDER BY 1")] == [
            t.trade_id for t in trades[200:]
        ]
        assert len(list((spool / "worker0").glob("db-*/*.batch"))) == 1
        server.start()
        drain_spool(url_a, spool, connect_timeout=1)  # a start pointed at A again
        assert [r[0] for r in rows(url_a, "SELECT trade_id FROM trades ORDER BY 1")] == [
            t.trade_id for t in trades[:200]
        ]
        assert list(spool.glob("*/db-*/*.batch")) == []
    finally:
        server.stop()


def test_a_spool_is_not_written_into_a_new_database_at_the_same_url(
    pg_server: str, pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The URL is the same, the database behind it is not (dropped and created again while the writer
    could not reach it): the batches spooled for the old one are quarantined, never written."""
    name = conninfo_to_dict(pg_url)["dbname"]
    migrate(pg_url)
    writer = DatabaseWriter(pg_url, tmp_path / "spool", connect_timeout=1, retry_initial=0.01, retry_max=0.01)
    writer.write(tape_trades(10))
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    writer.write(tape_trades(20)[10:])
    assert len(writer.pending_batches()) == 1
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(pg_url)
    with caplog.at_level(logging.ERROR, logger="connectors.database"):
        assert writer.flush(timeout=5)
    writer.close()
    assert rows(pg_url, "SELECT count(*) FROM trades") == [(0,)]
    quarantined = list((tmp_path / "spool").glob("db-*/quarantine/*.batch"))
    assert len(quarantined) == 1 and writer.stats.batches_quarantined == 1
    assert "another database" in quarantined[0].with_name(quarantined[0].name + ".why").read_text()
    assert any("not written" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


@pytest.mark.timescale
def test_writes_into_hypertables(timescale_url: str, tmp_path: Path) -> None:
    migrate(timescale_url)
    writer = DatabaseWriter(timescale_url, tmp_path / "spool")
    writer.write([*tape_trades(500), candle(T0 + timedelta(minutes=1))])
    writer.write(tape_trades(500))
    writer.close()
    assert rows(timescale_url, "SELECT count(*), count(DISTINCT trade_id) FROM trades") == [(500, 500)]
    assert rows(timescale_url, "SELECT count(*) FROM candles_1m") == [(1,)]
