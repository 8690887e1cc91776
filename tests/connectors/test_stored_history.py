"""A series' stored history (what its indicators replay after a restart) on a real PostgreSQL that is
down when it is asked for: the read waits for the database and then gives every stored candle once, in
order, so the indicators never start without their history."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from app.embedded_postgres import EmbeddedPostgres
from connectors import resume
from connectors.database import DatabaseWriter
from connectors.resume import StoredHistory
from market.types import Candle
from sql.migrate import migrate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def candle(n: int) -> Candle:
    price = Decimal(100 + n)
    return Candle(
        "okx",
        "BTC-USDT",
        "1m",
        T0 + n * MINUTE,
        T0 + (n + 1) * MINUTE,
        price,
        price,
        price,
        price,
        Decimal(1),
        price,
        1,
        price,
        10 + n,
        10 + n,
    )


def five_candles_stored(tmp_path: Path) -> tuple[EmbeddedPostgres, str]:
    """A migrated PostgreSQL holding the 1m candles 0..4 (started; the caller stops it)."""
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    migrate(url, "off")
    writer = DatabaseWriter(url, spool_dir=tmp_path / "spool")
    writer.write([candle(n) for n in range(5)])
    writer.close()
    return server, url


def test_the_history_waits_for_the_database_and_gives_every_candle_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = five_candles_stored(tmp_path)
    try:
        history = StoredHistory(url, retry_initial=0.2)
        assert [c.close_time for c in history(candle(5))] == [c.close_time for c in map(candle, range(5))]
        server.stop()
        restarted = threading.Timer(1.5, server.start)
        restarted.start()
        began = time.monotonic()
        read = list(history(candle(5)))
        restarted.join()
        assert time.monotonic() - began >= 1.5  # it waited for the database
        assert read == [candle(n) for n in range(5)]
        assert any("its indicators wait for the database" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()


def test_the_reads_share_one_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every series' first longer candle closes at the same instant: its reads must not each connect."""
    server, url = five_candles_stored(tmp_path)
    try:

        def sessions() -> int:  # sessions established so far, the counter's own one included
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()
                conn.execute("SELECT pg_stat_force_next_flush()")
            assert row is not None
            return int(row[0])

        history = StoredHistory(url)
        before = sessions()
        reads = [list(history(candle(n))) for n in range(1, 6)]
        after = sessions()
        assert [len(read) for read in reads] == [1, 2, 3, 4, 5]
        assert after - before == 2  # the reader's one connection and the second counter
        # Read in pages shorter than the history: every candle once, in order, from the same connection.
        for page in (1, 2, 5):
            monkeypatch.setattr(resume, "HISTORY_PAGE", page)
            assert list(history(candle(5))) == [candle(n) for n in range(5)]
            assert list(history(candle(2))) == [candle(0), candle(1)]
        assert sessions() - after == 1  # only the counter's own
    finally:
        server.stop()
