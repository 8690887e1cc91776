"""Every ```sql block of docs/sql.md runs on both engines and returns rows for the XRP-ETH replay."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.conftest import REPO_ROOT
from tests.sql.conftest import Loaded

DOC = REPO_ROOT / "docs" / "sql.md"
BLOCKS = re.findall(r"^```sql\n(.*?)^```", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_page_has_the_promised_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_documented_query_runs_and_returns_rows(xrp_db: Loaded, number: int) -> None:
    query = BLOCKS[number]
    with psycopg.connect(xrp_db.url) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        rows = conn.execute(query.encode()).fetchall()
    assert rows, query


def test_the_daily_range_example_matches_the_stream(xrp_db: Loaded) -> None:
    with psycopg.connect(xrp_db.url) as conn:
        rows = conn.execute(BLOCKS[0].encode()).fetchall()
    days = sorted(xrp_db.stream.of("1d"), key=lambda c: c.close_time, reverse=True)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (c.open_time, c.open, c.high, c.low, c.close) for c in days
    ]
