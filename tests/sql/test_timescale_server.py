"""The PGlite + TimescaleDB test server (tests/support/pglite/server.mjs) against real clients.

Each test asserts behaviour a wrong server gets wrong: framing (large messages, big pipelines),
COPY FROM STDIN, SSL negotiation, session reset between clients, one-client-at-a-time queueing,
crash resistance, and a data directory that survives a restart with its TimescaleDB state.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from tests.support.timescale_server import TimescaleServerError, TimescaleTestServer

pytestmark = pytest.mark.timescale

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[TimescaleTestServer]:
    with TimescaleTestServer(queued_idle_timeout=3.0) as running:
        with psycopg.connect(running.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        yield running


@pytest.fixture
def conn(server: TimescaleTestServer) -> Iterator[psycopg.Connection]:
    with psycopg.connect(server.url) as connection:
        yield connection


def make_trades_table(conn: psycopg.Connection, name: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (ts timestamptz NOT NULL, price double precision, qty bigint)")
    conn.execute(f"SELECT create_hypertable('{name}', by_range('ts', INTERVAL '1 day'))")
    conn.commit()


def startup_packet() -> bytes:
    body = b"user\0postgres\0database\0postgres\0\0"
    return struct.pack("!ii", 8 + len(body), 196608) + body


def read_until_ready(sock: socket.socket) -> bytes:
    """Read backend messages up to and including ReadyForQuery."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"server closed the connection after {data!r}")
        data += chunk
        offset = 0
        while offset + 5 <= len(data):
            kind = data[offset : offset + 1]
            length = struct.unpack("!i", data[offset + 1 : offset + 5])[0]
            if offset + 1 + length > len(data):
                break
            if kind == b"Z":
                return data
            offset += 1 + length


def test_connects_with_default_sslmode_and_with_ssl_disabled(server: TimescaleTestServer) -> None:
    default_url = f"postgresql://postgres:postgres@{server.host}:{server.port}/postgres"
    for url in (default_url, server.url, default_url + "?sslmode=prefer&gssencmode=prefer"):
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT 1 + 1, current_setting('search_path')").fetchone()
            assert row == (2, "public")
            assert conn.pgconn.ssl_in_use is False


def test_session_settings_and_utc_timestamps(conn: psycopg.Connection) -> None:
    settings = conn.execute(
        "SELECT current_setting('client_min_messages'), current_setting('TimeZone'), "
        "current_setting('enable_seqscan'), now()"
    ).fetchone()
    assert settings is not None
    assert settings[:3] == ("notice", "UTC", "on")
    assert settings[3].utcoffset() == timedelta(0)
    assert conn.info.parameter_status("TimeZone") == "UTC"


def test_hypertable_appears_in_timescaledb_information(conn: psycopg.Connection) -> None:
    version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    assert version is not None and version[0].startswith("2.")
    make_trades_table(conn, "ht_info")
    rows = conn.execute(
        "SELECT hypertable_name, num_dimensions FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = 'ht_info'"
    ).fetchall()
    assert rows == [("ht_info", 1)]
    conn.execute(
        "INSERT INTO ht_info SELECT t, 1.0, 1 FROM generate_series(%s::timestamptz, %s, '1 hour') t",
        (T0, T0 + timedelta(days=2, hours=23)),
    )
    chunks = conn.execute("SELECT count(*) FROM show_chunks('ht_info')").fetchone()
    assert chunks == (3,)
    buckets = conn.execute(
        "SELECT time_bucket('1 day', ts) AS day, count(*) FROM ht_info GROUP BY day ORDER BY day"
    ).fetchall()
    assert buckets == [(T0 + timedelta(days=d), 24) for d in range(3)]


def test_copy_from_stdin_text_and_binary(conn: psycopg.Connection) -> None:
    make_trades_table(conn, "copy_trades")
    n = 50_000
    with conn.cursor() as cur:
        with cur.copy("COPY copy_trades (ts, price, qty) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((T0 + timedelta(seconds=i), 100.0 + i / 1000, i))
        with cur.copy("COPY copy_trades (ts, price, qty) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["timestamptz", "float8", "int8"])
            for i in range(n):
                copy.write_row((T0 + timedelta(days=1, seconds=i), 200.0, -i))
    conn.commit()
    total = conn.execute("SELECT count(*), sum(qty), max(ts), sum(price)::bigint FROM copy_trades").fetchone()
    expected_price = sum(100.0 + i / 1000 for i in range(n)) + 200.0 * n
    assert total == (2 * n, 0, T0 + timedelta(days=1, seconds=n - 1), int(expected_price))


def test_failed_copy_rolls_back_and_leaves_the_connection_usable(conn: psycopg.Connection) -> None:
    make_trades_table(conn, "copy_fail")

    class Abort(Exception):
        pass

    # psycopg answers an exception inside the block with CopyFail; the server must fail the COPY.
    with pytest.raises(Abort):
        with conn.cursor() as cur:
            with cur.copy("COPY copy_fail (ts, price, qty) FROM STDIN") as copy:
                copy.write_row((T0, 1.0, 1))
                raise Abort
    assert conn.info.transaction_status == TransactionStatus.INERROR
    conn.rollback()
    with pytest.raises(errors.InvalidTextRepresentation):
        with conn.cursor() as cur:
            with cur.copy("COPY copy_fail (ts, price, qty) FROM STDIN") as copy:
                copy.write(b"2024-01-01 00:00:00+00\tnot-a-number\t1\n")
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM copy_fail").fetchone() == (0,)


def test_copy_through_the_extended_protocol_is_refused(server: TimescaleTestServer) -> None:
    """PGlite traps on COPY FROM STDIN sent with Parse/Bind: the server answers an error instead."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.pgconn.send_query_params(b"COPY pg_catalog.pg_am FROM STDIN", None)
        results = []
        while (result := conn.pgconn.get_result()) is not None:
            results.append((result.status, result.error_message))
        assert len(results) == 1
        assert results[0][0] == psycopg.pq.ExecStatus.FATAL_ERROR
        assert b"works only as a simple query" in results[0][1]
        assert conn.execute("SELECT 5").fetchone() == (5,)
    assert server.running


def test_executemany_20k_rows_into_a_hypertable(conn: psycopg.Connection) -> None:
    make_trades_table(conn, "many_trades")
    n = 20_000
    rows = [(T0 + timedelta(seconds=i), float(i), i) for i in range(n)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO many_trades (ts, price, qty) VALUES (%s, %s, %s)", rows)
    conn.commit()
    result = conn.execute("SELECT count(*), sum(qty), min(ts), max(ts) FROM many_trades").fetchone()
    assert result == (n, n * (n - 1) // 2, T0, T0 + timedelta(seconds=n - 1))


def test_parameter_larger_than_64_kib(conn: psycopg.Connection) -> None:
    payload = "".join(chr(0x41 + i % 26) for i in range(300_000))
    row = conn.execute("SELECT length(%s::text), md5(%s::text)", (payload, payload)).fetchone()
    assert row == (300_000, hashlib.md5(payload.encode()).hexdigest())
    blob = bytes(range(256)) * 1024
    assert conn.execute("SELECT %b::bytea", (blob,)).fetchone() == (blob,)


def test_session_state_does_not_leak_to_the_next_client(server: TimescaleTestServer) -> None:
    with psycopg.connect(server.url, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS leak_check")
        setup.execute("CREATE TABLE leak_check (id int)")

    first = psycopg.connect(server.url)
    try:
        assert first.execute("SELECT %s::int", (1,), prepare=True).fetchone() == (1,)
        first.execute("SET work_mem = '7MB'")
        first.execute("SET search_path = pg_catalog")
        first.execute("CREATE TEMP TABLE scratch (x int)")
        first.execute("INSERT INTO public.leak_check VALUES (1)")  # never committed
        first.execute("LISTEN leak_channel")
    finally:
        first.close()

    with psycopg.connect(server.url) as second:
        # psycopg names its prepared statements _pg3_0, _pg3_1, ... on every connection.
        assert second.execute("SELECT %s::int", (2,), prepare=True).fetchone() == (2,)
        row = second.execute(
            "SELECT current_setting('work_mem'), current_setting('search_path'), "
            "to_regclass('pg_temp.scratch'), (SELECT count(*) FROM leak_check), "
            "(SELECT count(*) FROM pg_listening_channels()), "
            "(SELECT count(*) FROM pg_prepared_statements)"
        ).fetchone()
        assert row == ("4MB", "public", None, 0, 0, 1)


def test_second_connection_waits_until_the_first_disconnects(server: TimescaleTestServer) -> None:
    """One backend serves one client: a second connection is held (no error) until the first one
    closes. A connection attempt that timed out meanwhile is left open by psycopg until garbage
    collection; the server drops it once it got the backend and stayed silent (3 s here)."""
    first = psycopg.connect(server.url)
    try:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.ConnectionTimeout):
            psycopg.connect(server.url, connect_timeout=2).close()
        assert time.monotonic() - started >= 1.9

        connected_at: list[float] = []
        failures: list[BaseException] = []

        def second_client() -> None:
            try:
                with psycopg.connect(server.url, connect_timeout=30) as second:
                    connected_at.append(time.monotonic())
                    assert second.execute("SELECT 1").fetchone() == (1,)
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        thread = threading.Thread(target=second_client)
        thread.start()
        time.sleep(1.0)
        assert connected_at == []
        assert first.execute("SELECT 42").fetchone() == (42,)
    finally:
        closed_at = time.monotonic()
        first.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert failures == []
    assert len(connected_at) == 1
    # After the first client: the abandoned attempt gets the backend, is dropped, then the waiter.
    assert 2.5 <= connected_at[0] - closed_at < 10


VICTIM = """
import sys, psycopg
conn = psycopg.connect(sys.argv[1])
conn.execute("CREATE TEMP TABLE t_victim AS SELECT 1 AS x")
conn.execute("INSERT INTO victim_rows VALUES (1)")
print("in transaction", flush=True)
sys.stdin.read()
"""


def test_abrupt_disconnects_do_not_kill_the_server(server: TimescaleTestServer) -> None:
    address = (server.host, server.port)
    with psycopg.connect(server.url, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS victim_rows")
        setup.execute("CREATE TABLE victim_rows (id int)")
    # A client that resets the connection in the middle of a message.
    for _ in range(3):
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(startup_packet())
        read_until_ready(sock)
        sock.sendall(b"Q\0\0\x01\0SELECT")  # a 256-byte message cut short
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
    # A client process killed in the middle of an open transaction.
    victim = subprocess.Popen(
        [sys.executable, "-c", VICTIM, server.url], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == b"in transaction"
    finally:
        victim.kill()
        victim.wait(timeout=10)
        if victim.stdout is not None:
            victim.stdout.close()
    # A client that connects and never sends a startup packet does not block others.
    silent = socket.create_connection(address, timeout=10)
    try:
        with psycopg.connect(server.url, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT to_regclass('pg_temp.t_victim'), (SELECT count(*) FROM victim_rows)"
            ).fetchone()
            assert row == (None, 0)
    finally:
        silent.close()
    assert server.running


def test_data_dir_survives_restart_with_compressed_chunks(tmp_path: Path) -> None:
    data_dir = tmp_path / "tsdb"
    with TimescaleTestServer(data_dir) as first:
        with psycopg.connect(first.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute(
                "CREATE TABLE candles (time timestamptz NOT NULL, symbol text NOT NULL, "
                "close double precision)"
            )
            conn.execute("SELECT create_hypertable('candles', by_range('time', INTERVAL '1 day'))")
            conn.execute(
                "ALTER TABLE candles SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol')"
            )
            conn.execute(
                "INSERT INTO candles SELECT t, 'BTC-USDT', 100 "
                "FROM generate_series(%s::timestamptz, %s, '1 minute') t",
                (T0, T0 + timedelta(days=2) - timedelta(minutes=1)),
            )
            compressed = conn.execute(
                "SELECT count(compress_chunk(c)) "
                "FROM show_chunks('candles', older_than => %s::timestamptz) c",
                (T0 + timedelta(days=1),),
            ).fetchone()
            assert compressed == (1,)
    assert first.exit_code == 0
    assert not Path(f"{data_dir}.lock").exists()

    with TimescaleTestServer(data_dir) as second:
        with pytest.raises(TimescaleServerError, match="locked by another server"):
            TimescaleTestServer(data_dir, start_timeout=30).start()
        with psycopg.connect(second.url, autocommit=True) as conn:
            per_day = conn.execute(
                "SELECT time_bucket('1 day', time) AS day, count(*) FROM candles GROUP BY day ORDER BY day"
            ).fetchall()
            assert per_day == [(T0, 1440), (T0 + timedelta(days=1), 1440)]
            chunk_state = conn.execute(
                "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks "
                "WHERE hypertable_name = 'candles'"
            ).fetchone()
            assert chunk_state == (1, 2)
            conn.execute("INSERT INTO candles VALUES (%s, 'ETH-USDT', 50)", (T0 + timedelta(days=3),))
            conn.execute("INSERT INTO candles VALUES (%s, 'ETH-USDT', 51)", (T0 + timedelta(hours=1),))
            counts = conn.execute(
                "SELECT symbol, count(*) FROM candles GROUP BY symbol ORDER BY symbol"
            ).fetchall()
            assert counts == [("BTC-USDT", 2880), ("ETH-USDT", 2)]
