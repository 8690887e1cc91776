"""The database sink through real outages (a server stopped and restarted): batches are spooled and
written on return or at the next start, losing nothing and never written into another database.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from app.embedded_postgres import EmbeddedPostgres
from connectors.database import DatabaseWriter, drain_spool
from connectors.okx.events import Gap
from market.types import IndicatorValue, Rejected, Signal
from market.windowing import LateTrade
from sql.migrate import migrate
from tests.connectors.database_kit import T0, candle, rows, tape_trades


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
