"""The three rule-6 rollups against each other: the same 1m candles, written by the real writer, give the
same 5m ... 1d candles on plain PostgreSQL (trigger-kept tables), on TimescaleDB (continuous aggregates)
and in Python (``market.candles.rollup``, the ``RollupBuilder`` the stream rolls up with), and all equal
an independent pandas computation of TIME.md rule 6.

The swap's contract value has 16 significant digits: the 12-digit recovery from the stored vwap that the
rollups used before the ``contract_value`` column would give a different vwap, so these tests fail if a
database rollup does not read the stored column.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.database import DatabaseWriter
from market.candles import EXACT, VWAP_CONTEXT, flat_candle, rollup, vwap_of
from market.timeframes import TF_1M, Timeframe, timeframe
from market.types import Candle
from sql.migrate import migrate
from sql.policies import engine_of, refresh_rollups
from tests.sql.test_rollups import FIELDS, HIGHER

START = datetime(2024, 3, 1, tzinfo=UTC)  # a boundary of every timeframe
MINUTES = 24 * 60 + 130  # one whole day and a bit: every timeframe closes at least once
SWAP, SPOT = "TST-USDT-SWAP", "TST-USDT"
CONTRACT_VALUES = {SWAP: Decimal("0.0001234567890123"), SPOT: Decimal(1)}
Key = tuple[str, datetime]  # (symbol, close)


def minutes(symbol: str, seed: int) -> list[Candle]:
    """Consecutive 1m candles of one series: traded minutes of 1-4 trades, single flat minutes, and a flat
    hour-quarter (12:00-12:15 UTC: a 15m interval with no trade at all)."""
    rng = random.Random(seed)
    contract_value = CONTRACT_VALUES[symbol]
    out: list[Candle] = []
    price, trade_id = Decimal("100.00"), 1_000
    for k in range(MINUTES):
        opened = START + timedelta(minutes=k)
        if k > 0 and (rng.random() < 0.25 or 720 <= k < 735):
            out.append(flat_candle("okx", symbol, TF_1M, opened, out[-1].close))
            continue
        prices, sizes = [], []
        for _ in range(rng.randint(1, 4)):
            price = max(Decimal("1.00"), price + Decimal(rng.randint(-50, 50)) / 100)
            prices.append(price)
            sizes.append(Decimal(rng.randint(1, 40)))
        volume = sum(sizes, Decimal(0))
        quote = sum(
            (
                EXACT.multiply(EXACT.multiply(p, s), contract_value)
                for p, s in zip(prices, sizes, strict=True)
            ),
            Decimal(0),
        )
        out.append(
            Candle(
                exchange="okx",
                symbol=symbol,
                timeframe="1m",
                open_time=opened,
                close_time=opened + TF_1M.length,
                open=prices[0],
                high=max(prices),
                low=min(prices),
                close=prices[-1],
                volume=volume,
                quote_volume=quote,
                trade_count=len(prices),
                vwap=vwap_of(quote, volume, contract_value),
                first_trade_id=trade_id,
                last_trade_id=trade_id + len(prices) - 1,
            )
        )
        trade_id += len(prices)
    return out


_NOTHING = (Decimal(0), Decimal(0), 0, None, None, None)
CANDLES = {symbol: minutes(symbol, seed) for seed, symbol in enumerate(CONTRACT_VALUES)}


def values(candle: Candle) -> tuple[Any, ...]:
    return tuple(getattr(candle, name) for name in FIELDS)


def python_rollups(interval: Timeframe) -> dict[Key, tuple[Any, ...]]:
    """The stream's engine: ``rollup`` of each whole interval, flat ones at the previous close."""
    out: dict[Key, tuple[Any, ...]] = {}
    for symbol, candles in CANDLES.items():
        by_open: dict[datetime, list[Candle]] = {}
        for candle in candles:
            by_open.setdefault(interval.open_of(candle.open_time), []).append(candle)
        previous: Decimal | None = None
        for opened, group in sorted(by_open.items()):
            if group[-1].close_time == opened + interval.length:  # whole: its closing minute is in
                built = rollup(group, interval, previous, CONTRACT_VALUES[symbol])
                out[(symbol, built.close_time)] = values(built)
            previous = group[-1].close
    return out


def pandas_rollups(timeframe: str) -> dict[Key, tuple[Any, ...]]:
    """Independent oracle: pandas groups the minutes by the close of their interval (rule 6 by hand)."""
    import pandas as pd

    rule = {"5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}[timeframe]
    rows = [(c.symbol, c.close_time, *values(c)) for candles in CANDLES.values() for c in candles]
    frame = pd.DataFrame(rows, columns=["symbol", "time", *FIELDS])
    frame["label"] = frame["time"].dt.ceil(rule)
    out: dict[Key, tuple[Any, ...]] = {}
    for (symbol, label), group in frame.groupby(["symbol", "label"]):
        if group["time"].iloc[-1] != label:
            continue
        traded = group[group["trade_count"] > 0]
        if traded.empty:
            last = group["close"].iloc[-1]
            out[(symbol, label.to_pydatetime())] = (last, last, last, last, *_NOTHING)
            continue
        volume, quote = sum(traded["volume"]), sum(traded["quote_volume"])
        base = EXACT.multiply(volume, CONTRACT_VALUES[symbol])
        out[(symbol, label.to_pydatetime())] = (
            traded["open"].iloc[0],
            max(traded["high"]),
            min(traded["low"]),
            traded["close"].iloc[-1],
            volume,
            quote,
            int(traded["trade_count"].sum()),
            VWAP_CONTEXT.divide(quote, base),
            int(traded["first_trade_id"].iloc[0]),
            int(traded["last_trade_id"].iloc[-1]),
        )
    return out


def database_rollups(url: str, timeframe: str) -> dict[Key, tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT symbol, time, {', '.join(FIELDS)} FROM candles_{timeframe}"  # constant names
        ).fetchall()
    return {(row[0], row[1]): tuple(row[2:]) for row in rows}


def load(url: str, engine: str, spool: Path) -> str:
    """Migrate, then write the minutes as the sink does: an hour of both series per batch."""
    migrate(url, "on" if engine == "timescale" else "off")
    writer = DatabaseWriter(url, spool, contract_values=CONTRACT_VALUES)
    merged = sorted((c for candles in CANDLES.values() for c in candles), key=lambda c: c.close_time)
    for at in range(0, len(merged), 120):
        writer.write(merged[at : at + 120])
    assert not writer.spool.pending() and writer.stats.candles_written == len(merged)
    writer.close()
    with psycopg.connect(url, autocommit=True) as conn:
        if engine_of(conn) == "timescale":  # plain PostgreSQL rolled up in the writing transactions
            refresh_rollups(conn)
    return url


@pytest.fixture(scope="module")
def postgres_rollups(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import fresh_database

    with fresh_database(pg_server) as url:
        yield load(url, "postgres", tmp_path_factory.mktemp("spool-pg"))


@pytest.fixture(scope="module")
def timescale_rollups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.support.timescale_server import TimescaleTestServer

    with TimescaleTestServer() as server:
        yield load(server.url, "timescale", tmp_path_factory.mktemp("spool-ts"))


def test_the_swap_contract_value_cannot_be_recovered_from_the_vwap(postgres_rollups: str) -> None:
    """What makes the tests below tell the stored contract value from the recovered one."""
    with psycopg.connect(postgres_rollups) as conn:
        stored, recovered = conn.execute(
            "SELECT DISTINCT contract_value, tcp_contract_value(quote_volume, volume, vwap) FROM candles_1m"
            " WHERE symbol = %s AND trade_count > 0",
            (SWAP,),
        ).fetchone() or (None, None)
    assert stored == CONTRACT_VALUES[SWAP] and recovered != stored


@pytest.mark.parametrize("name", HIGHER)
def test_python_rollup_equals_the_pandas_oracle(name: str) -> None:
    expected = pandas_rollups(name)
    assert expected and any(v[6] == 0 for v in expected.values()) == (name in ("5m", "15m"))
    assert python_rollups(timeframe(name)) == expected


@pytest.mark.parametrize("name", HIGHER)
def test_plain_postgres_rollup_equals_the_python_rollup(postgres_rollups: str, name: str) -> None:
    assert database_rollups(postgres_rollups, name) == python_rollups(timeframe(name))


@pytest.mark.timescale
@pytest.mark.parametrize("name", HIGHER)
def test_timescaledb_rollup_equals_plain_postgres(
    timescale_rollups: str, postgres_rollups: str, name: str
) -> None:
    got = database_rollups(timescale_rollups, name)
    assert got and got == database_rollups(postgres_rollups, name)
