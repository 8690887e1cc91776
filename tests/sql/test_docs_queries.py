"""Every ```sql block of docs/sql.md runs on both engines and returns rows for the XRP-ETH replay; every
```python block runs too, given ``url``, the database holding it."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from tests.conftest import REPO_ROOT
from tests.sql.conftest import Loaded

DOC = REPO_ROOT / "docs" / "sql.md"
BLOCKS = re.findall(r"^```sql\n(.*?)^```", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)
PYTHON = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_page_has_the_promised_examples() -> None:
    assert len(BLOCKS) >= 10
    assert len(PYTHON) >= 2


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


def run_example(number: int, url: str) -> dict[str, Any]:
    names: dict[str, Any] = {"url": url}
    exec(compile(PYTHON[number], f"{DOC}:python-{number}", "exec"), names)
    return names


@pytest.mark.parametrize("number", range(len(PYTHON)))
def test_documented_python_runs(xrp_db: Loaded, number: int) -> None:
    run_example(number, xrp_db.url)


def test_the_pandas_example_reads_the_stream_hours(xrp_db: Loaded) -> None:
    (number,) = [n for n, block in enumerate(PYTHON) if "read_sql" in block]
    hourly = run_example(number, xrp_db.url)["hourly"]
    hours = xrp_db.stream.of("1h")
    assert list(hourly.index) == [c.close_time for c in hours]
    assert list(hourly["close"]) == [float(c.close) for c in hours]  # read_sql gives floats
