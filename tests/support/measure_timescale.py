"""Measure the PGlite + TimescaleDB test server: start times, ingest and query speed, memory.

    .venv/bin/python -m tests.support.measure_timescale [--trades 100000] [--repeat 3]

Prints one line per measurement; docs/timescale-test-server.md quotes its output.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from tests.support.timescale_server import TimescaleTestServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)

OHLCV = """
SELECT time_bucket('1 minute', ts) AS bucket,
       first(price, ts) AS open, max(price) AS high, min(price) AS low, last(price, ts) AS close,
       sum(qty) AS volume, count(*) AS trades
FROM trades
GROUP BY bucket
ORDER BY bucket
"""


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def trades(n: int, offset: int = 0) -> Iterator[tuple[datetime, float, float]]:
    for i in range(offset, offset + n):
        yield (T0 + timedelta(milliseconds=250 * i), 40_000 + (i * 7919 % 1000) / 10, 0.001 * (1 + i % 5))


def make_table(conn: psycopg.Connection) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute("DROP TABLE IF EXISTS trades")
    conn.execute(
        "CREATE TABLE trades (ts timestamptz NOT NULL, price double precision, qty double precision)"
    )
    conn.execute("SELECT create_hypertable('trades', by_range('ts', INTERVAL '1 day'))")
    conn.commit()


def report(name: str, value: str) -> None:
    print(f"{name:<58} {value}", flush=True)


def measure_starts(repeat: int) -> None:
    fresh = []
    for _ in range(repeat):
        with TimescaleTestServer() as server:
            assert server.startup_seconds is not None
            fresh.append(server.startup_seconds)
    report("start, in memory (s, median/min/max)", summary(fresh))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "db"
        with TimescaleTestServer(data_dir) as server:
            assert server.startup_seconds is not None
            first = server.startup_seconds
            with psycopg.connect(server.url) as conn:
                make_table(conn)
        report("start, new data dir (s)", f"{first:.2f}")
        reopen = []
        for _ in range(repeat):
            with TimescaleTestServer(data_dir) as server:
                assert server.startup_seconds is not None
                reopen.append(server.startup_seconds)
        report("start, reopening a data dir (s, median/min/max)", summary(reopen))


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} / {min(values):.2f} / {max(values):.2f}"


def measure_workload(n: int, repeat: int) -> None:
    with TimescaleTestServer(queued_idle_timeout=0) as server:
        report("node RSS after start (MiB)", f"{rss_mib(server.pid)[0]:.0f}")
        with psycopg.connect(server.url) as conn:
            make_table(conn)

            def copy_all() -> None:
                with conn.cursor() as cur, cur.copy("COPY trades (ts, price, qty) FROM STDIN") as copy:
                    for row in trades(n):
                        copy.write_row(row)
                conn.commit()

            seconds = timed(copy_all)
            report(f"COPY FROM STDIN text, {n} rows (rows/s)", f"{n / seconds:,.0f} ({seconds:.2f} s)")

            def copy_binary() -> None:
                with conn.cursor() as cur:
                    with cur.copy("COPY trades (ts, price, qty) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(["timestamptz", "float8", "float8"])
                        for row in trades(n, offset=n):
                            copy.write_row(row)
                conn.commit()

            seconds = timed(copy_binary)
            report(f"COPY FROM STDIN binary, {n} rows (rows/s)", f"{n / seconds:,.0f} ({seconds:.2f} s)")
            conn.execute("TRUNCATE trades")
            conn.commit()

            m = n // 2

            def insert_many() -> None:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO trades (ts, price, qty) VALUES (%s, %s, %s)", list(trades(m))
                    )
                conn.commit()

            seconds = timed(insert_many)
            report(f"executemany INSERT, {m} rows (rows/s)", f"{m / seconds:,.0f} ({seconds:.2f} s)")
            with conn.cursor() as cur, cur.copy("COPY trades (ts, price, qty) FROM STDIN") as copy:
                for row in trades(n - m, offset=m):
                    copy.write_row(row)
            conn.commit()

            count = conn.execute("SELECT count(*) FROM trades").fetchone()
            assert count == (n,)
            rows: list[tuple[object, ...]] = []
            runs = [timed(lambda: rows.extend(conn.execute(OHLCV).fetchall())) for _ in range(repeat + 2)]
            report(
                f"OHLCV 1-minute time_bucket over {n} trades (ms, median/min/max)",
                " / ".join(f"{v * 1000:.0f}" for v in (statistics.median(runs), min(runs), max(runs))),
            )
            conn.commit()

            conn.execute("ALTER TABLE trades SET (timescaledb.compress)")
            job = conn.execute("SELECT add_compression_policy('trades', INTERVAL '1 hour')").fetchone()
            conn.commit()
            assert job is not None
            conn.autocommit = True
            seconds = timed(lambda: conn.execute("CALL run_job(%s)", job))
            compressed = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed"
            ).fetchone()
            report("CALL run_job(compression policy) (s, chunks compressed)", f"{seconds:.2f}, {compressed}")
            runs = [timed(lambda: conn.execute(OHLCV).fetchall()) for _ in range(repeat)]
            report("OHLCV query on compressed chunks (ms, median)", f"{statistics.median(runs) * 1000:.0f}")

            conn.execute("LISTEN ticks")
            conn.execute("NOTIFY ticks, 'same-session'")
            got = [n.payload for n in conn.notifies(timeout=1, stop_after=1)]
            report("LISTEN/NOTIFY within one session", repr(got))

        cycles = 20
        seconds = timed(lambda: [psycopg.connect(server.url).close() for _ in range(cycles)])
        report("connect + session reset + close (ms each)", f"{seconds / cycles * 1000:.1f}")

        with psycopg.connect(server.url) as first:
            waited: list[float] = []

            def second() -> None:
                started = time.perf_counter()
                with psycopg.connect(server.url, connect_timeout=20) as other:
                    other.execute("SELECT 1")
                waited.append(time.perf_counter() - started)

            thread = threading.Thread(target=second)
            thread.start()
            time.sleep(1.0)
            first.execute("SELECT 1")
        thread.join()
        report("second connection waited for the first (s)", f"{waited[0]:.2f}")
        current, peak = rss_mib(server.pid)
        report("node RSS at the end, peak (MiB)", f"{current:.0f}, {peak:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    measure_starts(args.repeat)
    measure_workload(args.trades, args.repeat)


if __name__ == "__main__":
    main()
