"""Read-only databases holding the XRP-ETH replay, shared by the SQL tests of a session.

``xrp_postgres`` and ``xrp_timescale`` each run the real replay dataflow (with a few indicators and a
strategy) with the real ``DatabaseSink`` into a freshly migrated database, refresh the rollups, add the
known late trades, rejects and gaps below, and give back the URL with what the stream emitted (the
oracle). Tests that change data make their own database instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from app.embedded_postgres import EmbeddedPostgres
from configs.indicators import parse_indicator_config
from connectors.database import DatabaseSink
from sql.migrate import migrate
from sql.policies import refresh_rollups
from tests.flows.flowkit import XRP_TAPE, Captured, run_replay

INDICATORS = parse_indicator_config(
    {
        "profiles": [
            {
                "instruments": "*",
                "timeframes": ["1m", "1h"],
                "indicators": [
                    {"indicator": "EMA", "label": "ema_fast", "params": {"timeperiod": 9}},
                    {"indicator": "RSI", "params": {"timeperiod": 14}},
                    {"indicator": "MACD"},
                ],
                "strategies": [{"strategy": "ema_crossover", "params": {"fast": 9, "slow": 21}}],
            }
        ]
    }
)

T = datetime(2019, 10, 12, tzinfo=UTC)
LATE_TRADES = [  # (symbol, trade_id, time, lateness): known rows for the late-trade queries
    ("XRP-ETH", 90_000_001, T + timedelta(minutes=5, seconds=1), timedelta(seconds=3)),
    ("XRP-ETH", 90_000_002, T + timedelta(minutes=59, seconds=59), timedelta(seconds=9)),
    ("XRP-ETH", 90_000_003, T + timedelta(hours=1, minutes=2), timedelta(seconds=4)),
    ("BTC-USDT", 90_000_004, T + timedelta(minutes=30), timedelta(seconds=5)),
]
REJECTS = [  # (received_at, source, reason)
    (T + timedelta(minutes=1), "okx-ws", "bad json"),
    (T + timedelta(minutes=2), "okx-ws", "bad json"),
    (T + timedelta(hours=1, minutes=1), "okx-rest", "unknown instrument"),
]
GAPS = [  # (symbol, from_trade_id, to_trade_id, from_time, filled, trades_backfilled, detected_at)
    ("XRP-ETH", 13_520_000, 13_520_010, T, True, 9, T + timedelta(seconds=5)),
    ("XRP-ETH", 13_530_000, 13_530_002, T + timedelta(hours=2), False, 0, T + timedelta(hours=2, seconds=5)),
    ("BTC-USDT", 100, 105, T + timedelta(hours=3), True, 4, T + timedelta(hours=3, seconds=1)),
]


def add_known_rows(conn: psycopg.Connection) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO late_trades (exchange, symbol, trade_id, time, price, size, side, candle_close,"
            " lateness) VALUES ('okx', %s, %s, %s, 1, 1, 'buy', %s, %s)",
            [
                (s, i, t, t + timedelta(minutes=1) - timedelta(seconds=t.second), late)
                for s, i, t, late in LATE_TRADES
            ],
        )
        cursor.executemany(
            "INSERT INTO rejects (received_at, source, reason, raw, raw_digest) VALUES (%s, %s, %s, %s, %s)",
            [(t, src, why, f"raw {n}".encode(), bytes([n])) for n, (t, src, why) in enumerate(REJECTS)],
        )
        cursor.executemany(
            "INSERT INTO gaps (exchange, symbol, from_trade_id, to_trade_id, from_time, to_time, filled,"
            " trades_backfilled, detected_at) VALUES ('okx', %s, %s, %s, %s, %s, %s, %s, %s)",
            [(s, a, b, t, t + timedelta(seconds=1), f, n, d) for s, a, b, t, f, n, d in GAPS],
        )


@dataclass(frozen=True)
class Loaded:
    """A database with the XRP-ETH replay in it, and what the stream emitted for the same tape."""

    url: str
    engine: str
    stream: Captured


def _load(url: str, engine: str, spool: Path) -> Loaded:
    migrate(url, "on" if engine == "timescale" else "off")
    captured = run_replay([XRP_TAPE], database=DatabaseSink(url, spool), indicators=INDICATORS)
    with psycopg.connect(url) as conn:
        add_known_rows(conn)
    if engine == "timescale":  # plain PostgreSQL keeps its rollups in the writing transaction
        with psycopg.connect(url, autocommit=True) as conn:
            refresh_rollups(conn)
    return Loaded(url, engine, captured)


@pytest.fixture(scope="session")
def xrp_postgres(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    name = f"xrp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # Left in place: the session's server (and its data directory) goes away with the session.
    url = EmbeddedPostgres.database_url(pg_server, name)
    yield _load(url, "postgres", tmp_path_factory.mktemp("spool-pg"))


@pytest.fixture(scope="session")
def xrp_timescale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    from tests.support.timescale_server import TimescaleTestServer

    with TimescaleTestServer() as server:
        yield _load(server.url, "timescale", tmp_path_factory.mktemp("spool-ts"))


@pytest.fixture(params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def xrp_db(request: pytest.FixtureRequest) -> Loaded:
    """The XRP-ETH replay on each engine in turn."""
    loaded: Loaded = request.getfixturevalue(f"xrp_{request.param}")
    return loaded
