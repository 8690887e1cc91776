"""A year of 1m candles backtested from the database end to end, against a vectorised formulation.

    flock /tmp/lead/bench.lock .venv/bin/python bench/bench_backtest.py [--days 365] [--engine postgres]

Loads ``--days`` of synthetic 1m candles (bench_queries' seeded random walk with ~5% flat minutes:
525,600 for a year) for one symbol into ``candles_1m`` of a freshly migrated database, then:

1. the backtest command end to end, as a user runs it (``python3 tcp.py backtest --strategy
   ema_crossover`` over the stored range, ``--json``; the process's wall time, start-up included) with the
   split it reports (read, graph, accounting, write), when the command is there;
2. the same graph in this process (``flows.backtest.run_backtest`` over the candles already in memory:
   graph and accounting without reading or writing);
3. the vectorised numpy/pandas formulation of the same strategy and account (``bench/vector_backtest.py``):
   its own read of the candles' open times, opens and closes as floats, and its computation.

The runs must give the same trades (times exact, prices and amounts within 1e-9 relative): the script
fails otherwise, naming the first difference. ``--json`` writes the figures for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_queries import START, load, server, symbols  # noqa: E402
from bench.vector_backtest import backtest as vector_backtest  # noqa: E402
from sql.migrate import migrate  # noqa: E402

SYMBOL = symbols(1)[0]
READ = (
    "SELECT extract(epoch FROM time)::float8 - 60, open::float8, close::float8 FROM candles_1m"
    " WHERE exchange = 'okx' AND symbol = %(symbol)s AND time > %(start)s AND time <= %(end)s ORDER BY time"
)
FULL_READ = (
    "SELECT time, open, high, low, close, volume, quote_volume, trade_count, vwap, first_trade_id,"
    " last_trade_id FROM candles_1m WHERE exchange = 'okx' AND symbol = %(symbol)s"
    " AND time > %(start)s AND time <= %(end)s ORDER BY time"
)
Trade = dict[str, Any]


def vector_run(url: str, end: datetime) -> tuple[list[Trade], float, dict[str, float]]:
    """The vectorised formulation: its read and its computation, timed apart."""
    began = time.perf_counter()
    with psycopg.connect(url) as conn:
        rows = conn.execute(READ, {"symbol": SYMBOL, "start": START, "end": end}).fetchall()
    open_time, open_, close = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    read = time.perf_counter() - began
    began = time.perf_counter()
    run = vector_backtest(open_time, open_, close)
    compute = time.perf_counter() - began
    return run.trades, run.final_equity, {"read": read, "compute": compute}


def stored_candles(url: str, end: datetime) -> list[Any]:
    """The stored candles as the domain's ``Candle`` (for the in-process run; not timed)."""
    from market.types import Candle

    minute = timedelta(minutes=1)
    with psycopg.connect(url) as conn:
        rows = conn.execute(FULL_READ, {"symbol": SYMBOL, "start": START, "end": end}).fetchall()
    return [Candle("okx", SYMBOL, "1m", r[0] - minute, r[0], *r[1:]) for r in rows]


def in_process_run(candles: Sequence[Any]) -> tuple[list[Trade], float, dict[str, float]]:
    """The backtest flow in this process over candles in memory: graph and accounting seconds."""
    from configs.indicators import parse_indicator_config
    from connectors.memory import BatchSource, in_batches
    from flows.backtest import Timings, run_backtest
    from market.backtest import AccountSettings

    config = parse_indicator_config(
        {
            "profiles": [
                {"instruments": "*", "timeframes": ["1m"], "strategies": [{"strategy": "ema_crossover"}]}
            ]
        }
    )
    timings = Timings()
    began = time.perf_counter()
    (run,) = run_backtest(BatchSource(in_batches(candles)), config, AccountSettings(), timings)
    total = time.perf_counter() - began
    trades = [
        {
            "side": t.side,
            "entry_time": t.entry_time.timestamp(),
            "entry_price": t.entry_price,
            "exit_time": None if t.exit_time is None else t.exit_time.timestamp(),
            "exit_price": t.exit_price,
            "quantity": t.quantity,
            "pnl": t.pnl,
            "fees": t.fees,
            "open": t.open,
        }
        for t in run.trades
    ]
    return trades, run.equity.equity[-1], {"total": total, **timings.as_dict()}


def command_run(url: str, end: datetime, scratch: Path) -> tuple[list[Trade], float, dict[str, float]] | None:
    """``python3 tcp.py backtest`` end to end (None when the command is not there)."""
    if not (ROOT / "app" / "backtest.py").exists():
        return None
    out = scratch / "backtest.json"
    argv = [sys.executable, str(ROOT / "tcp.py"), "backtest", "--exchange", "okx", "--symbol", SYMBOL]
    argv += ["--timeframe", "1m", "--start", START.isoformat(), "--end", end.isoformat()]
    argv += ["--strategy", "ema_crossover", "--json", str(out)]
    began = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, check=True)
    total = time.perf_counter() - began
    document = json.loads(out.read_text())
    (run,) = document["runs"]
    trades = [
        t
        | {
            "entry_time": _epoch(t["entry_time"]),
            "exit_time": None if t["exit_time"] is None else _epoch(t["exit_time"]),
        }
        for t in run["trades"]
    ]
    return trades, float(run["metrics"]["final_equity"]), {"total": total, **run["timings"]}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def first_mismatch(mine: list[Trade], theirs: list[Trade]) -> str | None:
    """Where two lists of trades differ (times exact, numbers within 1e-9 relative), or None."""
    if len(mine) != len(theirs):
        return f"{len(mine)} trades against {len(theirs)}"
    for n, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        for key in ("side", "open", "entry_time", "exit_time"):
            if a[key] != b[key]:
                return f"trade {n}: {key} {a[key]!r} against {b[key]!r}"
        for key in ("entry_price", "exit_price", "quantity", "pnl", "fees"):
            x, y = a[key], b[key]
            if (x is None) != (y is None) or (
                x is not None and abs(x - y) > 1e-9 * max(abs(x), abs(y), 1e-300)
            ):
                return f"trade {n}: {key} {x!r} against {y!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--engine", choices=["postgres", "timescale"], default="postgres")
    parser.add_argument(
        "--data-dir", type=Path, help="PostgreSQL: keep the server's files (a rerun reuses them)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    minutes = args.days * 1440
    end = START + timedelta(minutes=minutes)
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as scratch:
        with server(args.engine, args.data_dir or Path(scratch)) as url:
            migrate(url, "on" if args.engine == "timescale" else "off")
            with psycopg.connect(url) as conn:
                present = conn.execute("SELECT count(*) FROM candles_1m").fetchone()
            if present != (minutes,):
                print(f"loading {minutes:,} 1m candles into {args.engine}", file=sys.stderr)
                load(url, [SYMBOL], minutes)
            vector = vector_run(url, end)
            process = in_process_run(stored_candles(url, end))
            command = command_run(url, end, Path(scratch))
    runs = {"vector": vector, "in_process": process, **({"command": command} if command else {})}
    return report(args, minutes, runs)


def report(
    args: argparse.Namespace, candles: int, runs: dict[str, tuple[list[Trade], float, dict[str, float]]]
) -> int:
    vector_trades, vector_equity, vector_times = runs["vector"]
    failed = False
    for name in ("in_process", "command"):
        if name in runs:
            mismatch = first_mismatch(runs[name][0], vector_trades)
            if mismatch is not None:
                print(f"{name} and vectorised trades differ: {mismatch}", file=sys.stderr)
                failed = True
    vector_total = vector_times["read"] + vector_times["compute"]
    print(f"\n{candles:,} 1m candles, ema_crossover 9/21, long-only, fee 10 bps: {len(vector_trades)} trades")
    print(f"vectorised: read {vector_times['read']:.2f} s, compute {vector_times['compute']:.3f} s")
    for name in ("in_process", "command"):
        if name in runs:
            times = runs[name][2]
            split = ", ".join(f"{k} {v:.2f} s" for k, v in times.items() if k != "total")
            ratio = times["total"] / vector_total
            print(f"{name}: {times['total']:.2f} s ({split}), {ratio:.1f}x the vectorised")
    if args.json is not None:
        figures = {
            "candles": candles,
            "engine": args.engine,
            "trades": len(vector_trades),
            "final_equity": vector_equity,
            "same_trades": not failed,
            **{name: run[2] for name, run in runs.items()},
        }
        args.json.write_text(json.dumps(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
