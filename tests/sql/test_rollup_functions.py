"""The SQL helpers of the rollups against the stream's own Python arithmetic (market.candles)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from market.candles import vwap_of
from sql.migrate import migrate


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection]:
    migrate(pg_url)
    with psycopg.connect(pg_url) as connection:
        yield connection


def test_tcp_vwap_rounds_like_the_stream(conn: psycopg.Connection) -> None:
    rng = random.Random(11)
    pairs = [
        (Decimal("1"), Decimal("3")),
        (Decimal("2"), Decimal("3")),
        (Decimal("10"), Decimal("4")),
        (Decimal("0"), Decimal("5")),
        # exact ties at the 29th significant digit: half-even keeps an even last digit
        (Decimal("1234567890123456789012345678.5"), Decimal("1")),
        (Decimal("1234567890123456789012345677.5"), Decimal("1")),
        (Decimal("0.00000000012345678901234567895"), Decimal("1")),
        (Decimal("99999999999999999999999999995"), Decimal("10")),
    ]
    for _ in range(300):
        base = Decimal(rng.randint(1, 10**9)) / Decimal(10) ** rng.randint(0, 12)
        price = Decimal(rng.randint(1, 10**8)) / Decimal(10) ** rng.randint(0, 10)
        pairs.append((base * price + Decimal(rng.randint(0, 999)) / Decimal(10) ** 14, base))
    got = [conn.execute("SELECT tcp_vwap(%s, %s)", pair).fetchone() for pair in pairs]
    assert conn.execute("SELECT tcp_vwap(1, 0)").fetchone() == (None,)
    for (quote, base), row in zip(pairs, got, strict=True):
        assert row is not None and row[0] == vwap_of(quote, base), (quote, base)


def test_tcp_contract_value_recovers_the_multiplier(conn: psycopg.Connection) -> None:
    cases = [
        (Decimal("10"), Decimal("0.2841"), Decimal("1523")),
        (Decimal("1"), Decimal("0.00141342"), Decimal("23")),
        (Decimal("0.01"), Decimal("61234.5"), Decimal("7")),
        (Decimal("100"), Decimal("0.000012345"), Decimal("3")),
    ]
    for contract_value, price, contracts in cases:
        quote = price * contracts * contract_value * Decimal("1.000001")  # a vwap that is not a price
        vwap = vwap_of(quote, contracts, contract_value)
        row = conn.execute("SELECT tcp_contract_value(%s, %s, %s)", (quote, contracts, vwap)).fetchone()
        assert row is not None and row[0] == contract_value
    assert conn.execute("SELECT tcp_contract_value(0, 0, NULL)").fetchone() == (None,)
