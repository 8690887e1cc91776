"""The export command over a year of 1m candles and a million trades, as a user runs it.

    flock /tmp/lead/bench.lock .venv/bin/python bench/bench_export.py [--days 365] [--trades 1000000]

Loads ``--days`` of synthetic 1m candles (bench_queries' seeded random walk) and ``--trades`` synthetic
trades (several per millisecond now and then, so pages split between trades of one time) for one symbol
into a freshly migrated database on the embedded PostgreSQL, then runs ``python -m app.export`` (a
process of its own each time, start-up included, measured by GNU time) for 1m and 1h candles and for
the trades, as CSV and as parquet, and for one day of 1m candles (what a small export costs). Each line
gives the rows, the wall and CPU time of the process, rows per second, its peak RSS and the file's size;
the rows written must be those stored (the script fails otherwise). The peak RSS of a year against a
day's says whether an export holds its range in memory (keyset pages: it should not).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_queries import START, load, server, symbols  # noqa: E402
from sql.migrate import migrate  # noqa: E402

SYMBOL = symbols(1)[0]


def trade_lines(count: int, seed: int = 3) -> Iterator[bytes]:
    """COPY text lines of ``count`` trades of SYMBOL from START, ids ascending, about 30 ms apart; one in
    four shares the millisecond of the one before."""
    rng = np.random.default_rng(seed)
    step = np.where(rng.random(count) < 0.25, 0, rng.integers(1, 60, count))
    ms = np.cumsum(step)
    stamps = np.datetime_as_string(np.datetime64(START.replace(tzinfo=None), "ms") + ms, unit="ms")
    prices = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.0001, count))), 2)
    sizes = np.round(rng.gamma(2.0, 0.05, count) + 0.00001, 8)
    sides = np.where(rng.random(count) < 0.5, "buy", "sell")
    block: list[str] = []
    for n in range(count):
        block.append(
            f"okx\t{SYMBOL}\t{n + 1}\t{stamps[n]}+00\t{prices[n]:.2f}\t{sizes[n]:.8f}\t{sides[n]}"
            f"\t{stamps[n]}+00\t1\t\\N\t0\tws\n"
        )
        if len(block) == 50_000:
            yield "".join(block).encode()
            block = []
    if block:
        yield "".join(block).encode()


def load_trades(url: str, count: int) -> None:
    columns = (
        "exchange, symbol, trade_id, time, price, size, side, received_at, fill_count, seq_id, exch_source,"
    )
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY trades ({columns} origin) FROM STDIN") as copy:
            for block in trade_lines(count):
                copy.write(block)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE trades")


def export(url: str, argv: list[str], path: Path) -> dict[str, Any]:
    """One export command in a process of its own (measured by GNU time): rows, wall and CPU seconds,
    peak RSS, file size."""
    measured = path.with_suffix(".time")
    began = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%U %S %M", "-o", str(measured), sys.executable, "-m", "app.export"]
        + ["--symbol", SYMBOL, *argv, "-o", str(path)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - began
    user, system, peak_kib = measured.read_text().split()[-3:]
    summary = done.stderr.strip().splitlines()[-1]  # export: 525,600 1m candles of ... -> path
    rows = int(summary.split()[1].replace(",", ""))
    return {
        "what": " ".join(argv),
        "rows": rows,
        "wall_s": round(wall, 2),
        "cpu_s": round(float(user) + float(system), 2),
        "rows_per_s": round(rows / wall),
        "peak_rss_mb": round(int(peak_kib) / 1024),
        "file_mb": round(path.stat().st_size / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    day = (START + timedelta(days=1)).isoformat()
    cases = [
        ["--timeframe", "1m", "--end", day, "--format", "csv"],
        ["--timeframe", "1m", "--end", day, "--format", "parquet"],
        ["--timeframe", "1h", "--format", "csv"],
        ["--timeframe", "1m", "--format", "csv"],
        ["--timeframe", "1m", "--format", "parquet"],
        ["--trades", "--format", "csv"],
        ["--trades", "--format", "parquet"],
    ]
    with (
        tempfile.TemporaryDirectory(prefix="bench-export-") as scratch,
        server("postgres", Path(scratch)) as url,
    ):
        migrate(url, "off")
        load(url, [SYMBOL], args.days * 1440)
        load_trades(url, args.trades)
        with psycopg.connect(url) as conn:
            stored = {
                "1m": conn.execute("SELECT count(*) FROM candles_1m").fetchone(),
                "1h": conn.execute("SELECT count(*) FROM candles_1h").fetchone(),
                "trades": conn.execute("SELECT count(*) FROM trades").fetchone(),
            }
        results = []
        for n, case in enumerate(cases):
            result = export(url, case, Path(scratch) / f"out{n}.{case[-1]}")
            key = "trades" if "--trades" in case else case[1]
            row = stored[key]
            if "--end" not in case and (row is None or result["rows"] != row[0]):
                print(f"FAIL: {result['what']} wrote {result['rows']} rows of {row} stored", file=sys.stderr)
                return 1
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(
            json.dumps({"days": args.days, "trades": args.trades, "runs": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
