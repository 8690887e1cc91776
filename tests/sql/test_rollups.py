"""Higher timeframes in the database (candles_5m ... candles_1d, candles) on both engines.

Oracles: the stream's own candles for the XRP-ETH tape (TIME.md rule 6: stream and database give
identical candles), and candles computed here in Python from the 1m rows for the sealing tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from market.types import Candle
from sql.migrate import migrate
from sql.policies import engine_of, refresh_rollups
from tests.sql.conftest import Loaded

HIGHER = ["5m", "15m", "1h", "4h", "1d"]
FIELDS = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "vwap",
    "first_trade_id",
    "last_trade_id",
]
COLUMNS = ["exchange", "symbol", "time", *FIELDS, "inserted_at", "complete", "contract_value"]
WIDTH = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}


def stored(url: str, relation: str, where: str = "") -> dict[datetime, tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT time, {', '.join(FIELDS)} FROM {relation} {where} ORDER BY time"  # constant names
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def of_stream(candle: Candle) -> tuple[Any, ...]:
    return tuple(getattr(candle, name) for name in FIELDS)


@pytest.mark.parametrize("timeframe", HIGHER)
def test_database_candles_equal_the_stream_interval_for_interval(xrp_db: Loaded, timeframe: str) -> None:
    expected = {c.close_time: of_stream(c) for c in xrp_db.stream.of(timeframe)}
    got = stored(xrp_db.url, f"candles_{timeframe}")
    assert expected, "the tape closes every timeframe at least once"
    assert sorted(got) == sorted(expected)
    for close, values in expected.items():
        assert got[close] == values, (timeframe, close)
    # the flat and partly flat intervals are the ones a naive rollup gets wrong: make sure they are here
    if timeframe == "5m":
        assert any(v[6] == 0 for v in got.values())
        assert any(v[6] > 0 and v[0] != v[3] for v in got.values())


def test_1m_rows_and_the_candles_relation(xrp_db: Loaded) -> None:
    assert stored(xrp_db.url, "candles_1m") == {c.close_time: of_stream(c) for c in xrp_db.stream.of("1m")}
    with psycopg.connect(xrp_db.url) as conn:
        counts = dict(conn.execute("SELECT timeframe, count(*) FROM candles GROUP BY timeframe").fetchall())
        assert counts == {tf: len(xrp_db.stream.of(tf)) for tf in ["1m", *HIGHER]}
        one_hour = conn.execute(
            f"SELECT time, {', '.join(FIELDS)} FROM candles WHERE timeframe = '1h' ORDER BY time"
        ).fetchall()
    assert [tuple(r) for r in one_hour] == [(c.close_time, *of_stream(c)) for c in xrp_db.stream.of("1h")]


def test_every_public_timeframe_has_the_columns_of_candles_1m(xrp_db: Loaded) -> None:
    with psycopg.connect(xrp_db.url) as conn:

        def columns(relation: str) -> list[tuple[str, str]]:
            return [
                (r[0], r[1])
                for r in conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                    (relation,),
                )
            ]

        reference = columns("candles_1m")
        assert [name for name, _ in reference] == COLUMNS
        for timeframe in HIGHER:
            assert columns(f"candles_{timeframe}") == reference, timeframe
        assert columns("candles") == [("timeframe", "text"), *reference]


def test_one_day_closes_at_midnight_utc(xrp_db: Loaded) -> None:
    days = stored(xrp_db.url, "candles_1d")
    assert list(days) == [datetime(2019, 10, 12, tzinfo=UTC), datetime(2019, 10, 13, tzinfo=UTC)]


# -- sealing: no interval before all its minutes are in ----------------------------------------------

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)  # a 1d/4h/1h/15m/5m boundary
PREVIOUS_CLOSE = Decimal("10")


def minute(
    close: datetime, prices: tuple[str, str, str, str] | None, size: str = "2", first_id: int = 0
) -> tuple[Any, ...]:
    """A 1m candle row closing at ``close``: traded with (o, h, l, c), or flat at PREVIOUS_CLOSE."""
    if prices is None:
        p = PREVIOUS_CLOSE
        return ("okx", "TST-USDT", close, p, p, p, p, Decimal(0), Decimal(0), 0, None, None, None)
    o, h, low, c = (Decimal(x) for x in prices)
    volume = Decimal(size)
    quote = (o + c) / 2 * volume
    return ("okx", "TST-USDT", close, o, h, low, c, volume, quote, 3, quote / volume, first_id, first_id + 2)


def python_rollup(rows: list[tuple[Any, ...]], close: datetime) -> tuple[Any, ...]:
    """Rule 6 computed directly from the 1m rows (oracle)."""
    traded = [r for r in rows if r[9] > 0]
    if not traded:
        last = rows[-1][6]
        return (last, last, last, last, Decimal(0), Decimal(0), 0, None, None, None)
    volume = sum(r[7] for r in traded)
    quote = sum(r[8] for r in traded)
    return (
        traded[0][3],
        max(r[4] for r in traded),
        min(r[5] for r in traded),
        traded[-1][6],
        volume,
        quote,
        sum(r[9] for r in traded),
        (quote / volume),
        traded[0][11],
        traded[-1][12],
    )


INSERT = (
    "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume, quote_volume,"
    " trade_count, vwap, first_trade_id, last_trade_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " %s, %s, %s)"
)


@pytest.fixture(params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def empty_db(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        migrate(url, "off")
        yield url
    else:
        from tests.support.timescale_server import TimescaleTestServer

        with TimescaleTestServer() as server:
            migrate(server.url, "on")
            yield server.url


def write(url: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert 1m rows one statement each (as the sink does); on TimescaleDB then refresh the aggregates,
    on plain PostgreSQL nothing more (its triggers roll up in the writing transaction)."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.cursor().executemany(INSERT, rows)
        if engine_of(conn) == "timescale":
            refresh_rollups(conn)


def test_an_interval_appears_only_once_every_minute_is_in_and_then_never_changes(empty_db: str) -> None:
    m = lambda k: T0 + timedelta(minutes=k)  # noqa: E731 - the close of minute k
    # 12:00-12:05: first minute flat, then traded; 12:05-12:10 all flat; 12:10-12:15 traded
    first = [
        minute(m(1), None),
        minute(m(2), ("11", "13", "11", "12"), first_id=100),
        minute(m(3), ("12", "12", "9", "9.5"), first_id=200),
    ]
    write(empty_db, first)
    for timeframe in HIGHER:
        assert stored(empty_db, f"candles_{timeframe}") == {}, timeframe

    rest = [minute(m(4), None), minute(m(5), ("9.5", "10.5", "9.5", "10"), first_id=300)]
    write(empty_db, rest)
    five = stored(empty_db, "candles_5m")
    assert five == {m(5): python_rollup(first + rest, m(5))}
    assert five[m(5)][0] == Decimal("11")  # the first traded minute's open, not the flat minute's price
    with psycopg.connect(empty_db) as conn:
        sealed_at = conn.execute("SELECT inserted_at FROM candles_5m").fetchone()

    flat = [minute(m(k), None) for k in range(6, 11)]  # flat at 10, the close of 12:05
    traded = [minute(m(k), ("10", "11", "8", "8.5"), "1.5", 1000 + 10 * k) for k in range(11, 15)]
    write(empty_db, flat + traded)
    five = stored(empty_db, "candles_5m")
    assert sorted(five) == [m(5), m(10)]  # 12:15 lacks its closing minute
    assert five[m(10)] == (Decimal(10),) * 4 + (Decimal(0), Decimal(0), 0, None, None, None)
    assert stored(empty_db, "candles_15m") == {}
    with psycopg.connect(empty_db) as conn:
        again = conn.execute("SELECT inserted_at FROM candles_5m WHERE time = %s", (m(5),)).fetchone()
    assert again == sealed_at

    last = [minute(m(15), ("8.5", "8.6", "7", "7.5"), "1", 2000)]
    write(empty_db, last)
    all_rows = first + rest + flat + traded + last
    assert stored(empty_db, "candles_5m")[m(15)] == python_rollup(all_rows[10:], m(15))
    assert stored(empty_db, "candles_15m") == {m(15): python_rollup(all_rows, m(15))}
    assert stored(empty_db, "candles_1h") == {}
