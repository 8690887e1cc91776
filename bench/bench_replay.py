"""Replay throughput: the whole dataflow into PostgreSQL versus parsing + COPY alone.

    .venv/bin/python bench/bench_replay.py [--copies 10] [--processes 1]

Builds a synthetic tape by repeating the real BTC-USDT tape (19,904 trades) ``--copies`` times back to
back (ids and times shifted, so every trade is new), then measures on a fresh embedded PostgreSQL:
1. baseline: read + parse the tape and COPY the trades into ``trades`` (the same COPY-then-merge the
   sink uses), nothing else;
2. end to end: ``python -m bytewax.run flows.replay`` over the same tape into an empty database
   (candles of every timeframe, indicators from configs/indicators.yaml, trades, all stored), timed
   from process start to exit, and again less the start-up (measured as a one-trade replay).
Prints a Markdown table row set.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded_postgres import EmbeddedPostgres  # noqa: E402
from connectors.database import DatabaseWriter  # noqa: E402
from connectors.tape import read_tape  # noqa: E402
from sql.migrate import migrate  # noqa: E402

BTC = ROOT / "tests/data/tapes/BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"


def synthetic_tape(path: Path, copies: int) -> int:
    with BTC.open() as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    span_ms = int(body[-1][5]) - int(body[0][5]) + 1000
    span_ids = int(body[-1][1]) - int(body[0][1]) + 1
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        for k in range(copies):
            for r in body:
                out.writerow([r[0], int(r[1]) + k * span_ids, r[2], r[3], r[4], int(r[5]) + k * span_ms])
    return copies * len(body)


def fresh_database(root: Path, name: str) -> tuple[EmbeddedPostgres, str]:
    server = EmbeddedPostgres(root / name)
    url = server.start()
    migrate(url)
    return server, url


def baseline(tape: Path, url: str, spool: Path) -> float:
    writer = DatabaseWriter(url, spool)
    began = time.perf_counter()
    batch = []
    for trade in read_tape(tape):
        batch.append(trade)
        if len(batch) == 5000:
            writer.write(batch)
            batch = []
    writer.write(batch)
    elapsed = time.perf_counter() - began
    writer.close()
    return elapsed


def run_flow(tape: Path, url: str, data_dir: Path, processes: int) -> float:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REPLAY_TAPES": str(tape),
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "bytewax.run", "flows.replay"]
    if processes > 1:
        argv[3:3] = ["-p", str(processes)]
    began = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tape = tmp / "BTC-USDT-synthetic.csv"
        n = synthetic_tape(tape, args.copies)
        tiny = tmp / "tiny.csv"
        with BTC.open() as handle:
            tiny.write_text(handle.readline() + handle.readline())
        servers = []
        try:
            server, url = fresh_database(tmp, "pg-baseline")
            servers.append(server)
            base = baseline(tape, url, tmp / "spool")
            server, url = fresh_database(tmp, "pg-flow")
            servers.append(server)
            startup = run_flow(tiny, url, tmp / "d0", args.processes)
            flow = run_flow(tape, url, tmp / "d1", args.processes)
        finally:
            for server in servers:
                server.stop()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {n:,} trades"
    )
    print("| what | seconds | trades/s |")
    print("|---|---|---|")
    print(f"| parse + COPY into trades (baseline) | {base:.2f} | {n / base:,.0f} |")
    print(f"| `bytewax.run flows.replay`, end to end incl. start-up | {flow:.2f} | {n / flow:,.0f} |")
    print(
        f"| same, less the start-up of a one-trade replay ({startup:.2f} s) | {flow - startup:.2f} "
        f"| {n / (flow - startup):,.0f} |"
    )


if __name__ == "__main__":
    main()
