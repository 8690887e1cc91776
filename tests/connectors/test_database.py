"""The database sink against real servers: exact values, one transaction per batch, idempotence, final
candles never updated (a different value is a conflict kept aside), invalid rows rejected one by one,
hypertables (real outages: test_database_outages.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from connectors.database import DatabaseWriter
from connectors.okx.events import Gap
from market.types import IndicatorValue, Rejected, Signal, Trade
from market.windowing import LateTrade
from sql.migrate import migrate
from tests.connectors.database_kit import T0, XRP_TAPE, candle, minutes, rollups, rows, tape_trades


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


@pytest.mark.timescale
def test_writes_into_hypertables(timescale_url: str, tmp_path: Path) -> None:
    migrate(timescale_url)
    writer = DatabaseWriter(timescale_url, tmp_path / "spool")
    writer.write([*tape_trades(500), candle(T0 + timedelta(minutes=1))])
    writer.write(tape_trades(500))
    writer.close()
    assert rows(timescale_url, "SELECT count(*), count(DISTINCT trade_id) FROM trades") == [(500, 500)]
    assert rows(timescale_url, "SELECT count(*) FROM candles_1m") == [(1,)]
