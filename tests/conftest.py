"""Shared fixtures: real database servers started by the test suite itself.

- ``pg_server``: one embedded PostgreSQL (the same bundled server the run command uses) per session;
  ``pg_url`` gives each test a fresh, empty database on it.
- ``redis_url``: a real Redis (the embedded server) per test.
- ``timescale_server_factory``: starts the PGlite TimescaleDB wire server (tests/support/pglite).
  That server serves one client at a time and has one database, so tests get a fresh server each
  (about 2 s) rather than sharing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import pytest

from app.embedded_postgres import EmbeddedPostgres
from app.embedded_redis import EmbeddedRedis

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = REPO_ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's embedded PostgreSQL server (its ``postgres`` database)."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new, empty database on ``server``; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield EmbeddedPostgres.database_url(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real Redis (the embedded server) for one test."""
    server = EmbeddedRedis(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def timescale_server_factory() -> Iterator[Callable[..., AbstractContextManager[object]]]:
    """Returns ``start(data_dir=None)``: a context manager yielding a running TimescaleDB test server."""
    from tests.support.timescale_server import TimescaleTestServer

    yield TimescaleTestServer


@pytest.fixture
def timescale_url() -> Iterator[str]:
    """URL of a fresh in-memory TimescaleDB (PGlite) server for one test."""
    from tests.support.timescale_server import TimescaleTestServer

    with TimescaleTestServer() as server:
        yield server.url
