"""Close-to-row and close-to-Redis latency of live candles, and the live flow's memory, at N instruments.

    .venv/bin/python bench/bench_latency.py [--instruments 20] [--minutes 30] [--density 4] [--grace 2]
                                            [--json PATH]

Builds one tape per instrument from the real BTC-USDT tape (repeated back to back as long as the run
needs, ``--density`` copies overlaid a fraction of a second apart for a busier market, ids renumbered
consecutively; instrument k from k/n of the tape in, so the instruments' bursts do not coincide) and
serves them all from one OKX simulator rebased to exactly now (no minute alignment, so event time and
wall time agree to within delivery delay). The live flow (`python -m bytewax.run flows.okx`) subscribes
to every instrument and writes into a fresh embedded PostgreSQL and Redis for ``--minutes`` minutes. For
every 1m candle it records the wall time the candle's row was inserted (`inserted_at`) and the time its
message reached a Redis subscriber, minus the candle's close; each instrument's first, partial minute is
left out. The time contract makes grace the floor: a candle can only be emitted once the watermark
(newest trade time - grace, advanced by wall time) passes its close. The flow's RSS (its process and
children) is sampled every ``--rss-every`` seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from app.embedded_postgres import EmbeddedPostgres  # noqa: E402
from app.embedded_redis import EmbeddedRedis  # noqa: E402
from bench.measuring import percentile, rss_mb, slope  # noqa: E402
from connectors.redis_reader import RedisLiveReader  # noqa: E402
from sql.migrate import migrate  # noqa: E402

BTC = ROOT / "tests/data/tapes/BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
NAMES = "BTC ETH SOL XRP DOGE ADA AVAX LINK DOT TRX LTC BCH UNI ATOM ETC FIL APT ARB OP NEAR".split()
START_OFFSET = 30  # tape seconds played as history before the simulator starts pushing


def instrument_names(n: int) -> list[str]:
    """``n`` OKX-style instrument ids: 20 familiar USDT pairs, then numbered ones."""
    return [f"{NAMES[i]}-USDT" if i < len(NAMES) else f"T{i:03d}-USDT" for i in range(n)]


def tape_span(body: list[list[str]]) -> int:
    """Milliseconds from one repeat of the tape to the next (its length plus a second)."""
    return int(body[-1][5]) - int(body[0][5]) + 1000


def tape_rows(
    body: list[list[str]], seconds: float, density: int, phase: int = 0
) -> Iterator[tuple[int, int, int]]:
    """(time ms, copy, row index) of the tape repeated back to back for ``seconds``, ``density`` copies
    overlaid (copy j shifted by j/density of a second plus j ms), in time order; with ``phase`` (ms),
    the repeated tape from that far in, moved back to the tape's first time."""
    first = int(body[0][5])
    span = tape_span(body)
    low, limit = first + phase, first + phase + int(seconds * 1000)
    rows = []
    for rep in range(int((seconds * 1000 + phase) // span) + 1):
        for j in range(density):
            shift = rep * span + j * (1000 // density) + j
            rows.extend(
                (int(r[5]) + shift - phase, j, i)
                for i, r in enumerate(body)
                if low <= int(r[5]) + shift < limit
            )
    rows.sort()
    return iter(rows)


def write_tapes(directory: Path, names: list[str], seconds: float, density: int) -> list[Path]:
    """One tape per instrument, the same trades under each name, ids consecutive from the tape's first;
    instrument k plays the repeated tape from k/n of its span in (real instruments do not burst on the
    same milliseconds; the simulator sends one frame per trade)."""
    with BTC.open() as handle:
        header, *body = list(csv.reader(handle))
    first_id = int(body[0][1])
    paths = []
    for n, name in enumerate(names):
        order = list(tape_rows(body, seconds, density, phase=n * tape_span(body) // len(names)))
        path = directory / f"{name}.csv"
        with path.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(header)
            for k, (ts, _, i) in enumerate(order):
                row = body[i]
                out.writerow([name, first_id + k, row[2], row[3], row[4], ts])
        paths.append(path)
    return paths


def start_simulator(tapes: list[Path]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    argv = [sys.executable, "-m", "connectors.okx.simulator", "--rebase-now", "--rebase-align", "0.001"]
    argv += ["--start-offset", str(START_OFFSET), "--max-queue", "2000000"]
    for tape in tapes:
        argv += ["--tape", str(tape)]
    sim = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert sim.stdout is not None
    return sim, json.loads(sim.stdout.readline())


def sample_memory(pid: int, every: float, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    began = time.monotonic()
    while not stop.wait(every):
        out.append((time.monotonic() - began, rss_mb(pid)))


def run_live(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run simulator, flow, database and Redis; return the raw observations."""
    names = instrument_names(args.instruments)
    tapes = write_tapes(tmp, names, START_OFFSET + args.minutes * 60 + 90, args.density)
    pg, redis = EmbeddedPostgres(tmp / "pg"), EmbeddedRedis(tmp / "redis")
    url, redis_url = pg.start(), redis.start()
    try:
        migrate(url)
        seen = observe(args, names, tapes, {"DATABASE_URL": url, "REDIS_URL": redis_url}, tmp)
        return {**seen, **stored(url)}
    finally:
        redis.stop()
        pg.stop()


def observe(
    args: argparse.Namespace, names: list[str], tapes: list[Path], urls: dict[str, str], tmp: Path
) -> dict[str, Any]:
    """The live run: Redis arrivals of final 1m candles and the flow's memory samples."""
    sim, ready = start_simulator(tapes)
    arrivals: dict[tuple[str, str], float] = {}
    reader = RedisLiveReader(urls["REDIS_URL"])
    subscription = reader.subscribe(["tcp:candles:okx:*:1m"])

    def listen() -> None:
        try:
            for message in subscription:
                symbol = message.channel.split(":")[3]
                arrivals.setdefault((symbol, message.payload["time"].isoformat()), time.time())
        except (OSError, ValueError):  # the subscription was closed under us at the end
            pass

    threading.Thread(target=listen, daemon=True).start()
    env = {
        **os.environ,
        **urls,
        "OKX_WS_URL": ready["ws_public"],
        "OKX_REST_URL": ready["rest"],
        "INSTRUMENTS": ",".join(names),
        "CANDLE_GRACE": str(args.grace),
        "DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "WARNING",
    }
    flow = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "flows.okx"], cwd=ROOT, env=env, start_new_session=True
    )
    memory: list[tuple[float, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(flow.pid, args.rss_every, stop, memory))
    sampler.start()
    try:
        time.sleep(args.minutes * 60)
    finally:
        stop.set()
        sampler.join()
        for process, signum in ((flow, signal.SIGINT), (sim, signal.SIGTERM)):
            process.send_signal(signum)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        subscription.close()
        reader.close()
    return {"arrivals": arrivals, "memory": memory}


def stored(url: str) -> dict[str, Any]:
    """The candles' rows, the count of late trades, and trades per minute (by close, all instruments)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT symbol, time, inserted_at FROM candles_1m ORDER BY symbol, time"
        ).fetchall()
        late = conn.execute("SELECT count(*) FROM late_trades").fetchone()
        per_minute = conn.execute(
            "SELECT date_trunc('minute', time) + interval '1 minute', count(*) FROM trades GROUP BY 1"
        ).fetchall()
    trades = {close.timestamp(): count for close, count in per_minute}
    return {"rows": rows, "late": late[0] if late else 0, "trades": trades}


def latency_stats(points: list[tuple[float, float]]) -> dict[str, float] | None:
    """p50/p99/max of latencies (s), and their trend in ms per minute of candle close time."""
    if not points:
        return None
    values = [v for _, v in points]
    first = min(t for t, _ in points)
    trend = slope([((t - first) / 60, v * 1000) for t, v in points])
    return {
        "p50": statistics.median(values),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "n": len(values),
        "slope_ms_per_min": trend,
    }


def memory_stats(samples: list[tuple[float, float]], every: float, warmup: float) -> dict[str, float]:
    settled = [(t, mb) for t, mb in samples if t >= warmup and mb > 0] or samples or [(0.0, 0.0)]
    return {
        "every_s": every,
        "warmup_s": warmup,
        "samples": len(settled),
        "first_mb": settled[0][1],
        "max_mb": max(mb for _, mb in settled),
        "last_mb": settled[-1][1],
        "slope_mb_per_min": slope([(t / 60, mb) for t, mb in settled]),
    }


def figures(args: argparse.Namespace, seen: dict[str, Any]) -> dict[str, Any]:
    """The run's figures: latencies past each instrument's first (partial) candle, trade rate, memory."""
    to_row: list[tuple[float, float]] = []
    to_redis: list[tuple[float, float]] = []
    previous = None
    for symbol, close, inserted in seen["rows"]:
        if symbol != previous:  # the first, partial minute of each instrument
            previous = symbol
            continue
        to_row.append((close.timestamp(), (inserted - close).total_seconds()))
        arrived = seen["arrivals"].get((symbol, close.astimezone(UTC).isoformat()))
        if arrived is not None:
            to_redis.append((close.timestamp(), arrived - close.timestamp()))
    closes = {t for t, _ in to_row}
    traded = sum(count for close, count in seen["trades"].items() if close in closes)
    return {
        "instruments": args.instruments,
        "minutes": args.minutes,
        "density": args.density,
        "grace_s": args.grace,
        "candles": len(to_row),
        "late_trades": seen["late"],
        "trades_per_s": traded / (60 * len(closes)) if closes else 0.0,
        "row": latency_stats(to_row),
        "redis": latency_stats(to_redis),
        "rss": memory_stats(seen["memory"], args.rss_every, args.warmup),
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }


def print_table(result: dict[str, Any]) -> None:
    grace = result["grace_s"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{result['instruments']} instruments, {result['minutes']} min, {result['trades_per_s']:,.0f} "
        f"trades/s, grace {grace} s, {result['candles']} candles, {result['late_trades']} late trades"
    )
    print("| latency after the close | p50 | p99 | max | minus grace, p50 | minus grace, p99 | trend |")
    print("|---|---|---|---|---|---|---|")
    for name, key in (("row in candles_1m (inserted_at)", "row"), ("message on Redis", "redis")):
        stats = result[key]
        if stats:
            print(
                f"| {name} | {stats['p50']:.3f} s | {stats['p99']:.3f} s | {stats['max']:.3f} s "
                f"| {(stats['p50'] - grace) * 1000:.0f} ms | {(stats['p99'] - grace) * 1000:.0f} ms "
                f"| {stats['slope_ms_per_min']:+.2f} ms/min |"
            )
    rss = result["rss"]
    print(
        f"flow RSS after warm-up {rss['first_mb']:.0f} MB, max {rss['max_mb']:.0f} MB, end "
        f"{rss['last_mb']:.0f} MB, slope {rss['slope_mb_per_min']:+.3f} MB/min ({rss['samples']} samples)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--density", type=int, default=1, help="overlaid copies of the tape per instrument")
    parser.add_argument("--grace", type=float, default=2.0)
    parser.add_argument("--rss-every", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument(
        "--warmup",
        type=float,
        metavar="SECONDS",
        help="RSS samples left out (default: a quarter, at most 300)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = min(300.0, args.minutes * 15)
    with tempfile.TemporaryDirectory() as tmp_name:
        result = figures(args, run_live(args, Path(tmp_name)))
    print_table(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
