"""Replay throughput: the whole dataflow into PostgreSQL versus parsing + COPY alone.

    .venv/bin/python bench/bench_replay.py [--copies 10] [--processes 1] [--json PATH]

Builds a synthetic tape by repeating the real BTC-USDT tape (19,904 trades) ``--copies`` times back to
back (ids and times shifted, so every trade is new), then measures, each on a fresh embedded PostgreSQL:
1. floor: read the CSV, split each row and COPY its fields into ``trades`` as text (the time formatted
   from the row's milliseconds), 5,000 rows per transaction: nothing of the pipeline's own;
2. baseline: read + parse the tape into ``Trade`` objects (``connectors.tape.read_tape``) and write them
   through the database sink's writer (``DatabaseWriter``), 5,000 per transaction, nothing else;
3. end to end: ``python -m bytewax.run flows.replay`` over the same tape into an empty database
   (candles of every timeframe, indicators from configs/indicators.yaml, trades, all stored), timed
   from process start to exit, and again less the start-up (measured as a one-trade replay).
Prints the machine, the load average, and a Markdown table with each figure as a ratio to the floor.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
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


def floor(tape: Path, url: str) -> float:
    """Plain parse + COPY: the CSV's fields straight into ``trades``, in transactions of 5,000 rows."""
    import psycopg

    from market.types import utc_from_ms

    columns = "exchange, symbol, trade_id, time, price, size, side, fill_count, origin"
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        began = time.perf_counter()
        with tape.open() as handle:
            handle.readline()
            while lines := list(itertools.islice(handle, 5000)):
                rows = []
                for line in lines:
                    symbol, trade_id, side, price, size, created = line.rstrip("\n").split(",")[:6]
                    stamp = utc_from_ms(int(created)).isoformat()
                    rows.append(f"okx\t{symbol}\t{trade_id}\t{stamp}\t{price}\t{size}\t{side}\t1\ttape\n")
                with conn.transaction(), cur.copy(f"COPY trades ({columns}) FROM STDIN") as copy:
                    copy.write("".join(rows))
        return time.perf_counter() - began


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
    parser.add_argument("--json", type=Path, help="also write the timings to this file (for tcp.py bench)")
    args = parser.parse_args()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tape = tmp / "BTC-USDT-synthetic.csv"
        n = synthetic_tape(tape, args.copies)
        tiny = tmp / "tiny.csv"
        with BTC.open() as handle:
            tiny.write_text(handle.readline() + handle.readline())
        servers = []
        try:
            server, url = fresh_database(tmp, "pg-floor")
            servers.append(server)
            plain = floor(tape, url)
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
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {n:,} trades; {args.processes} process(es); "
        f"load average before the run {load_before}, after {load}"
    )

    def row(what: str, seconds: float) -> str:
        return f"| {what} | {seconds:.2f} | {n / seconds:,.0f} | {plain / seconds:.2f} |"

    print("| what | seconds | trades/s | x floor |")
    print("|---|---|---|---|")
    print(row("floor: plain parse + COPY of the CSV fields into trades", plain))
    print(row("parse into `Trade` + the sink's writer (COPY) into trades", base))
    print(row("`bytewax.run flows.replay`, end to end incl. start-up", flow))
    print(row(f"same, less the start-up of a one-trade replay ({startup:.2f} s)", flow - startup))
    if args.json is not None:
        timings = {"floor_s": plain, "baseline_s": base, "flow_s": flow, "startup_s": startup}
        args.json.write_text(json.dumps({"trades": n, "processes": args.processes, **timings}))


if __name__ == "__main__":
    main()
