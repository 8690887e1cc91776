"""Latency of the dashboard's main reads (sql.queries: Core selects run on psycopg) over synthetic 1m candles.

Generates ``--days`` of 1m candles for ``--symbols`` symbols (a seeded random walk with ~5% flat
minutes), COPYs them into ``candles_1m`` of a freshly migrated database, lets the engine build the
higher timeframes (plain PostgreSQL: the triggers, fired by each COPY; TimescaleDB: a refresh of the
continuous aggregates), then times each named query ``--repeat`` times on random series and days.

    .venv/bin/python bench/bench_queries.py                    # embedded PostgreSQL, 10 symbols x 365 days
    .venv/bin/python bench/bench_queries.py --engine timescale --symbols 2   # PGlite TimescaleDB
    git show REV:sql/queries.py > /tmp/former.py
    .venv/bin/python bench/bench_queries.py --data-dir DIR --against /tmp/former.py   # before/after

Prints a Markdown table for docs/benchmarks.md: median and p95 of the named query as the dashboard calls
it (rows decoded to dicts of Decimal), and the server's own execution time (EXPLAIN ANALYZE). With
``--against``, the same reads of a former ``sql/queries.py`` run alternately with the current ones (each
going first in turn, on one connection), so machine load affects both alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sql import queries, statements  # noqa: E402
from sql.migrate import migrate  # noqa: E402
from sql.policies import engine_of, refresh_rollups  # noqa: E402

START = datetime(2023, 1, 1, tzinfo=UTC)
COLUMNS = (
    "exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count, vwap,"
    " first_trade_id, last_trade_id"
)


def symbols(n: int) -> list[str]:
    return [f"SYN{i:02d}-USDT" for i in range(n)]


def candle_lines(symbol: str, minutes: int, seed: int) -> Iterator[bytes]:
    """COPY text lines of ``minutes`` consecutive 1m candles closing from START + 1 minute."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.0008, minutes)
    close = 100 * np.exp(np.cumsum(steps))
    open_ = np.concatenate(([100.0], close[:-1]))
    wiggle = np.abs(rng.normal(0, 0.0004, (2, minutes))) * close
    high = np.maximum(open_, close) + wiggle[0]
    low = np.minimum(open_, close) - wiggle[1]
    traded = rng.random(minutes) > 0.05
    counts = np.where(traded, rng.integers(1, 400, minutes), 0)
    volume = np.where(traded, np.round(rng.gamma(2.0, 3.0, minutes) + 0.001, 4), 0)
    first_ids = np.cumsum(counts) - counts + 1
    first_minute = np.datetime64(START.replace(tzinfo=None), "m") + 1
    stamps = np.datetime_as_string(first_minute + np.arange(minutes), unit="s")
    o, h, lo, c = (np.round(x, 4) for x in (open_, high, low, close))
    h, lo = np.maximum(h, np.maximum(o, c)), np.minimum(lo, np.minimum(o, c))
    vwap = np.round((o + h + lo + c) / 4, 6)
    quote = np.round(vwap * volume, 10)
    prefix = f"okx\t{symbol}\t"
    chunk: list[str] = []
    last_close = 100.0
    for i in range(minutes):
        if traded[i]:
            n, first = int(counts[i]), int(first_ids[i])
            chunk.append(
                f"{prefix}{stamps[i]}Z\t{o[i]}\t{h[i]}\t{lo[i]}\t{c[i]}\t{volume[i]}\t{quote[i]}\t{n}"
                f"\t{vwap[i]}\t{first}\t{first + n - 1}\n"
            )
            last_close = c[i]
        else:
            p = last_close
            chunk.append(f"{prefix}{stamps[i]}Z\t{p}\t{p}\t{p}\t{p}\t0\t0\t0\t\\N\t\\N\t\\N\n")
        if len(chunk) == 50_000:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()


def load(url: str, names: list[str], minutes: int) -> dict[str, float]:
    """COPY every symbol (one COPY, one transaction each); returns timings in seconds."""
    copy_seconds = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        for n, symbol in enumerate(names):
            began = time.perf_counter()
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy(f"COPY candles_1m ({COLUMNS}) FROM STDIN") as copy:  # constant text
                    for block in candle_lines(symbol, minutes, seed=n):
                        copy.write(block)
            copy_seconds += time.perf_counter() - began
            print(f"  {symbol}: {minutes} rows loaded", file=sys.stderr, flush=True)
        began = time.perf_counter()
        if engine_of(conn) == "timescale":  # plain PostgreSQL rolled up inside each COPY
            refresh_rollups(conn)
        refresh_seconds = time.perf_counter() - began
        conn.execute("ANALYZE")
    return {"copy": copy_seconds, "refresh": refresh_seconds}


def timed(runs: list[Callable[[], list[Any]]], repeat: int) -> tuple[list[list[float]], int]:
    """Milliseconds of ``repeat`` calls of each of ``runs``, taking turns (each goes first in turn)."""
    samples: list[list[float]] = [[] for _ in runs]
    rows = 0
    for run in runs:
        run()  # warm the cache
    for n in range(repeat):
        for i in [(n + k) % len(runs) for k in range(len(runs))]:
            began = time.perf_counter()
            rows = len(runs[i]())
            samples[i].append((time.perf_counter() - began) * 1000)
    return [sorted(s) for s in samples], rows


def load_former(path: Path) -> ModuleType:
    """A former ``sql/queries.py`` (e.g. ``git show REV:sql/queries.py``), imported under another name."""
    spec = importlib.util.spec_from_file_location("former_queries", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def server_ms(
    conn: psycopg.Connection[Any], statement: statements.Statement, params: dict[str, Any]
) -> float:
    """The server's own execution time of one run (EXPLAIN ANALYZE), without transfer and decoding."""
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.text, params).fetchone()
    assert row is not None
    return float(row[0][0]["Execution Time"])


Case = tuple[str, str, Callable[[], dict[str, Any]], statements.Statement]


Result = tuple[str, float, float, float, int, float | None]


def measure(url: str, names: list[str], days: int, repeat: int, former: ModuleType | None) -> list[Result]:
    rng = np.random.default_rng(7)
    results = []

    def pick() -> str:
        return names[int(rng.integers(len(names)))]

    def one_day() -> dict[str, Any]:
        day = START + timedelta(days=int(rng.integers(days - 1)))
        return {"symbol": pick(), "start": day, "end": day + timedelta(days=1)}

    def month() -> dict[str, Any]:
        day = START + timedelta(days=int(rng.integers(max(1, days - 30))))
        return {"symbol": pick(), "start": day, "end": day + timedelta(days=30)}

    def whole() -> dict[str, Any]:
        return {"symbol": pick(), "start": START, "end": START + timedelta(days=days)}

    def newest(limit: int) -> dict[str, Any]:
        return {"symbol": pick(), "limit": limit}

    between, latest = statements.CANDLES_BETWEEN, statements.LATEST_CANDLES
    cases: list[Case] = [
        ("one day of 1m candles, one symbol (`candles_between`)", "1m", one_day, between["1m"]),
        (f"{days} days of 1h candles, one symbol (`candles_between`)", "1h", whole, between["1h"]),
        ("30 days of 5m candles, one symbol (`candles_between`)", "5m", month, between["5m"]),
        ("latest 500 1m candles (`latest_candles`)", "1m", lambda: newest(500), latest["1m"]),
        ("latest 500 15m candles (`latest_candles`)", "15m", lambda: newest(500), latest["15m"]),
        ("latest 200 1d candles (`latest_candles`)", "1d", lambda: newest(200), latest["1d"]),
        (
            f"latest 1m close of {len(names)} symbols (`latest_closes`)",
            "1m",
            lambda: {"symbols": names},
            statements.LATEST_CLOSES["1m"],
        ),
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        for label, timeframe, arguments, statement in cases:

            def run(
                module: Any = queries,
                tf: str = timeframe,
                arguments: Callable[[], dict[str, Any]] = arguments,
            ) -> list[Any]:
                args = arguments()
                if "symbols" in args:
                    return module.latest_closes(conn, "okx", args["symbols"], tf)
                if "limit" in args:
                    return module.latest_candles(conn, "okx", args["symbol"], tf, args["limit"])
                return module.candles_between(conn, "okx", args["symbol"], tf, args["start"], args["end"])

            runs: list[Callable[[], list[Any]]] = [run] if former is None else [run, lambda: run(former)]
            samples, rows = timed(runs, repeat)
            median, p95 = statistics.median(samples[0]), samples[0][min(repeat - 1, int(repeat * 0.95))]
            former_median = statistics.median(samples[1]) if former is not None else None
            server = statistics.median(
                server_ms(conn, statement, {"exchange": "okx", "limit": queries.MAX_ROWS, **arguments()})
                for _ in range(5)
            )
            results.append((label, median, p95, server, rows, former_median))
            print(
                f"  {label}: median {median:.1f} ms, p95 {p95:.1f} ms, server {server:.1f} ms, {rows} rows",
                file=sys.stderr,
            )
    return results


@contextmanager
def server(engine: str, data_dir: Path) -> Iterator[str]:
    if engine == "postgres":
        from app.embedded_postgres import EmbeddedPostgres

        with EmbeddedPostgres(data_dir / "pg") as pg:
            assert pg.url is not None
            with psycopg.connect(pg.url, autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bench'").fetchone() is None:
                    conn.execute("CREATE DATABASE bench")
            yield EmbeddedPostgres.database_url(pg.url, "bench")
    else:
        from tests.support.timescale_server import TimescaleTestServer

        with TimescaleTestServer(start_timeout=120) as ts:
            yield ts.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["postgres", "timescale"], default="postgres")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--against", type=Path, help="a former sql/queries.py to time alternately")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="PostgreSQL: keep the server's files here; a second run reuses the loaded data",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    names = symbols(args.symbols)
    minutes = args.days * 1440
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as scratch:
        with server(args.engine, args.data_dir or Path(scratch)) as url:
            migrate(url, "on" if args.engine == "timescale" else "off")
            total = args.symbols * minutes
            with psycopg.connect(url) as conn:
                present = conn.execute("SELECT count(*) FROM candles_1m").fetchone()
            if present == (total,):  # a reused --data-dir already holds this data set
                print("data already loaded", file=sys.stderr)
                load_times = {"copy": float("nan"), "refresh": float("nan")}
            else:
                print(f"loading {args.symbols} x {minutes} 1m candles into {args.engine}", file=sys.stderr)
                load_times = load(url, names, minutes)
            former = None if args.against is None else load_former(args.against)
            results = measure(url, names, args.days, args.repeat, former)
    copy_s, refresh_s = load_times["copy"], load_times["refresh"]
    print(
        f"\nEngine: {args.engine}; data: {args.symbols} symbols x {args.days} days of 1m candles "
        f"({total:,} rows). Load: COPY {copy_s:.1f} s ({total / copy_s:,.0f} rows/s, rollups included on "
        f"PostgreSQL), refresh {refresh_s:.1f} s. {args.repeat} runs each.\n"
    )
    extra = "" if args.against is None else " former median ms |"
    print(f"| read | median ms | p95 ms | server execution ms | rows |{extra}")
    print("|---|---|---|---|---|" + ("---|" if extra else ""))
    for label, median, p95, server_time, rows, former_median in results:
        former_cell = "" if former_median is None else f" {former_median:.2f} |"
        print(f"| {label} | {median:.2f} | {p95:.1f} | {server_time:.1f} | {rows} |{former_cell}")
    if args.json is not None:
        args.json.write_text(json.dumps(query_figures(args, total, results)))
    return 0


def query_figures(args: argparse.Namespace, total: int, results: list[Result]) -> dict[str, Any]:
    reads = [
        {"label": label, "median_ms": median, "p95_ms": p95, "server_ms": server_time, "rows": rows}
        for label, median, p95, server_time, rows, _ in results
    ]
    run = {"engine": args.engine, "symbols": args.symbols, "days": args.days, "repeat": args.repeat}
    return {**run, "rows": total, "reads": reads}


if __name__ == "__main__":
    sys.exit(main())
