"""Replay throughput: the whole dataflow into PostgreSQL versus parsing + COPY alone.

    .venv/bin/python bench/bench_replay.py [--copies 10] [--instruments 1] [--processes 1] [--json PATH]

Builds a synthetic tape by repeating the real BTC-USDT tape (19,904 trades) ``--copies`` times back to
back (ids and times shifted, so every trade is new); with ``--instruments K`` the copies are shared out
over K tapes of K instruments (a series is one key of the graph, so only several can be spread over
processes). Bytewax gives each instrument to a worker by a hash of its name (``flows.placement``), so
two names land on one worker half the time; the instruments are chosen from ``INSTRUMENTS`` so that
the processes build equally many (with one process, the first K, which spread over two), so the
figure measures the scale-out rather than the draw of names. Then measures, each on a fresh embedded
PostgreSQL:
1. floor: read the CSV, split each row and COPY its fields into ``trades`` as text (the time formatted
   from the row's milliseconds), 5,000 rows per transaction: nothing of the pipeline's own;
2. baseline: read + parse the tape into ``Trade`` objects (``connectors.tape.read_tape``) and write them
   through the database sink's writer (``DatabaseWriter``), 5,000 per transaction, nothing else;
3. end to end: ``python -m bytewax.run flows.replay`` over the same tape into an empty database
   (candles of every timeframe, indicators from configs/indicators.yaml, trades, all stored), timed
   from process start to exit, and again less the start-up (measured as a one-trade replay); with
   ``--processes N`` as a Bytewax cluster of N processes over loopback (``-i``/``-a``, docs/scaling.md)
   sharing the database and an embedded Redis, timed until the last process exits; the floor is then
   also run by that many processes at once (each over the tapes its process of the cluster reads), the
   ceiling of the cluster on this machine, since the database server shares its CPUs. Ratios stay to
   the one-process floor, so one- and several-process runs compare directly.
Prints the machine, the load average, and a Markdown table with each figure as a ratio to the floor.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded_postgres import EmbeddedPostgres  # noqa: E402
from app.embedded_redis import EmbeddedRedis  # noqa: E402
from connectors.database import DatabaseWriter  # noqa: E402
from connectors.tape import read_tape  # noqa: E402
from flows.placement import key_owner  # noqa: E402
from sql.migrate import migrate  # noqa: E402

BTC = ROOT / "tests/data/tapes/BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
PACKAGES = ("app", "configs", "connectors", "flows", "market", "sql")


INSTRUMENTS = (
    "BTC-USDT",
    "XRP-USDT",
    "ETH-USDT",
    "DOGE-USDT",
    "SOL-USDT",
    "ADA-USDT",
    "LTC-USDT",
    "TRX-USDT",
)
"""Alternately built by worker 1 and worker 0 of two (``flows.placement.key_owner``)."""


def spread(instruments: int, processes: int) -> list[str]:
    """``instruments`` names of ``INSTRUMENTS`` that the ``processes`` processes (one worker each) build
    in equal numbers, as far as the names allow; the first ones for one process."""
    if processes == 1:
        return list(INSTRUMENTS[:instruments])
    left = list(INSTRUMENTS)
    chosen: list[str] = []
    while len(chosen) < instruments:
        turn = len(chosen) % processes
        name = next((n for n in left if key_owner(n, processes) == turn), left[0])
        left.remove(name)
        chosen.append(name)
    return chosen


def synthetic_tapes(
    folder: Path, copies: int, instruments: int, processes: int = 1
) -> tuple[list[Path], int]:
    """``copies`` back-to-back copies of the BTC-USDT tape, shared out over ``instruments`` tapes (one
    instrument each, :func:`spread` over ``processes``); the tapes and the number of trades."""
    if not 1 <= instruments <= len(INSTRUMENTS) or copies % instruments:
        raise SystemExit(f"--copies must be a multiple of --instruments (1 to {len(INSTRUMENTS)})")
    with BTC.open() as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    span_ms = int(body[-1][5]) - int(body[0][5]) + 1000
    span_ids = int(body[-1][1]) - int(body[0][1]) + 1
    tapes = []
    for symbol in spread(instruments, processes):
        tape = folder / f"{symbol}-synthetic.csv"
        with tape.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(header)
            for k in range(copies // instruments):
                for r in body:
                    out.writerow(
                        [symbol, int(r[1]) + k * span_ids, r[2], r[3], r[4], int(r[5]) + k * span_ms]
                    )
        tapes.append(tape)
    return tapes, copies * len(body)


def fresh_database(root: Path, name: str) -> tuple[EmbeddedPostgres, str]:
    server = EmbeddedPostgres(root / name)
    url = server.start()
    migrate(url)
    return server, url


def floor(tapes: list[Path], url: str) -> float:
    """Plain parse + COPY: the CSV's fields straight into ``trades``, in transactions of 5,000 rows."""
    import psycopg

    from market.types import utc_from_ms

    columns = "exchange, symbol, trade_id, time, price, size, side, fill_count, origin"
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        began = time.perf_counter()
        for tape in tapes:
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


def parallel_floor(tapes: list[Path], url: str, processes: int) -> float:
    """The floor run by ``processes`` processes at once, each over the tapes whose instruments it would
    build in the cluster (one connection each): seconds from their start to the last one's end."""
    import multiprocessing

    shares: list[list[Path]] = [[] for _ in range(processes)]
    for tape in tapes:
        shares[key_owner(tape.name.removesuffix("-synthetic.csv"), processes)].append(tape)
    began = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.starmap(floor, [(share, url) for share in shares if share])
    return time.perf_counter() - began


def baseline(tapes: list[Path], url: str, spool: Path) -> float:
    writer = DatabaseWriter(url, spool)
    began = time.perf_counter()
    for tape in tapes:
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_flow(tapes: list[Path], url: str, redis_url: str, data_dir: Path, processes: int) -> float:
    """Seconds from the start of the replay's processes to the exit of the last one."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},  # as a user runs it
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "REPLAY_TAPES": ",".join(str(tape) for tape in tapes),
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "bytewax.run", "flows.replay"]
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    cluster = [["-i", str(i), "-a", addresses] for i in range(processes)] if processes > 1 else [[]]
    began = time.perf_counter()
    running = [subprocess.Popen([*argv, *extra], env=env, cwd=ROOT) for extra in cluster]
    codes = [process.wait() for process in running]
    elapsed = time.perf_counter() - began
    if any(codes):
        raise SystemExit(f"the replay exited with {codes}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--instruments", type=int, default=1, help="tapes (one instrument each) to share out")
    parser.add_argument("--processes", type=int, default=1, help="a Bytewax cluster of this many processes")
    parser.add_argument("--json", type=Path, help="also write the timings to this file (for tcp.py bench)")
    args = parser.parse_args()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    for package in PACKAGES:  # the replay starts from compiled modules, as an installed copy does
        compileall.compile_dir(ROOT / package, quiet=1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tapes, n = synthetic_tapes(tmp, args.copies, args.instruments, args.processes)
        tiny = tmp / "tiny.csv"
        with BTC.open() as handle:
            tiny.write_text(handle.readline() + handle.readline())
        servers: list[EmbeddedPostgres | EmbeddedRedis] = []
        try:
            server, url = fresh_database(tmp, "pg-floor")
            servers.append(server)
            plain = floor(tapes, url)
            floor_n = None
            if args.processes > 1:
                server, url = fresh_database(tmp, "pg-floor-n")
                servers.append(server)
                floor_n = parallel_floor(tapes, url, args.processes)
            server, url = fresh_database(tmp, "pg-baseline")
            servers.append(server)
            base = baseline(tapes, url, tmp / "spool")
            server, url = fresh_database(tmp, "pg-flow")
            servers.append(server)
            redis = EmbeddedRedis(tmp / "redis")
            servers.append(redis)
            redis_url = redis.start()
            startup = run_flow([tiny], url, redis_url, tmp / "d0", args.processes)
            flow = run_flow(tapes, url, redis_url, tmp / "d1", args.processes)
        finally:
            for started in servers:
                started.stop()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {n:,} trades of {args.instruments} instrument(s); "
        f"{args.processes} process(es); "
        f"load average before the run {load_before}, after {load}"
    )

    def row(what: str, seconds: float) -> str:
        return f"| {what} | {seconds:.2f} | {n / seconds:,.0f} | {plain / seconds:.2f} |"

    print("| what | seconds | trades/s | x floor |")
    print("|---|---|---|---|")
    print(row("floor: plain parse + COPY of the CSV fields into trades", plain))
    if floor_n is not None:
        print(
            row(f"the floor on {args.processes} processes at once, each over its share of the tapes", floor_n)
        )
    print(row("parse into `Trade` + the sink's writer (COPY) into trades", base))
    print(row("`bytewax.run flows.replay`, end to end incl. start-up", flow))
    print(row(f"same, less the start-up of a one-trade replay ({startup:.2f} s)", flow - startup))
    if args.json is not None:
        timings = {"floor_s": plain, "baseline_s": base, "flow_s": flow, "startup_s": startup}
        if floor_n is not None:
            timings["floor_processes_s"] = floor_n
        shape = {"trades": n, "instruments": args.instruments, "processes": args.processes}
        args.json.write_text(json.dumps({**shape, **timings}))


if __name__ == "__main__":
    main()
