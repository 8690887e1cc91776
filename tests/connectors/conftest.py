"""Databases for the connector tests: migrated on PostgreSQL, or on each engine in turn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sql.migrate import migrate


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
