"""The embedded PostgreSQL server: started and stopped by its owner (the wheel never stops it on its own),
data kept across restarts in one process, one owner per directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from app.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError


def answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_stop_stops_it_and_a_restart_in_the_same_process_reopens_the_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    assert EmbeddedPostgres.running_url(data_dir) == url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.stop()
    assert EmbeddedPostgres.running_url(data_dir) is None and not answers(url)
    again = server.start()
    try:
        with psycopg.connect(again) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
    finally:
        server.stop()
    assert EmbeddedPostgres.running_url(data_dir) is None


def test_a_directory_has_one_owner(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg"):
        with pytest.raises(EmbeddedPostgresError, match="in use by another TCP Dashboard process"):
            EmbeddedPostgres(tmp_path / "pg").start()


def test_the_server_outlives_a_process_that_exits_without_stopping_it(tmp_path: Path) -> None:
    """Stopping is the owner's call, never the wheel's at exit: a process that started the server and
    exits without ``stop()`` leaves it running, and the next owner takes it over and stops it."""
    data_dir = tmp_path / "pg"
    code = (
        "import sys; from pathlib import Path; from app.embedded_postgres import EmbeddedPostgres;"
        "print(EmbeddedPostgres(Path(sys.argv[1])).start())"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, timeout=60, check=True
    )
    url = run.stdout.strip()
    try:
        assert EmbeddedPostgres.running_url(data_dir) == url and answers(url)
    finally:
        server = EmbeddedPostgres(data_dir)
        server.start()  # takes over the running server
        server.stop()
    assert EmbeddedPostgres.running_url(data_dir) is None
