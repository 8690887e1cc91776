"""Close-to-row and close-to-Redis latency of live candles.

    .venv/bin/python bench/bench_latency.py [--minutes 5] [--grace 2]

Runs the OKX simulator on the BTC-USDT tape rebased to exactly now (no minute alignment, so event
time and wall time agree to within delivery delay), the live flow (`python -m bytewax.run flows.okx`)
into a fresh embedded PostgreSQL and Redis, for ``--minutes`` minutes. For every 1m candle it records
the wall time the candle's row was inserted (`inserted_at`) and the time its message reached a Redis
subscriber, minus the candle's close. The time contract makes grace the floor: a candle can only be
emitted once the watermark (newest trade time - grace, advanced by wall time) passes its close.
"""

from __future__ import annotations

import argparse
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
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from app.embedded_postgres import EmbeddedPostgres  # noqa: E402
from app.embedded_redis import EmbeddedRedis  # noqa: E402
from connectors.redis_reader import RedisLiveReader  # noqa: E402
from sql.migrate import migrate  # noqa: E402

BTC = ROOT / "tests/data/tapes/BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--grace", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pg, redis = EmbeddedPostgres(tmp / "pg"), EmbeddedRedis(tmp / "redis")
        url, redis_url = pg.start(), redis.start()
        migrate(url)
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connectors.okx.simulator",
                "--tape",
                str(BTC),
                "--rebase-now",
                "--rebase-align",
                "0.001",
                "--start-offset",
                "30",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert sim.stdout is not None
        ready = json.loads(sim.stdout.readline())
        arrivals: dict[str, float] = {}
        reader = RedisLiveReader(redis_url)
        subscription = reader.subscribe(["tcp:candles:okx:BTC-USDT:1m"])

        def listen() -> None:
            try:
                for message in subscription:
                    arrivals[message.payload["time"].isoformat()] = time.time()
            except (OSError, ValueError):  # the subscription was closed under us at the end
                pass

        threading.Thread(target=listen, daemon=True).start()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "OKX_WS_URL": ready["ws_public"],
            "OKX_REST_URL": ready["rest"],
            "INSTRUMENTS": "BTC-USDT",
            "CANDLE_GRACE": str(args.grace),
            "DATA_DIR": str(tmp / "data"),
            "LOG_LEVEL": "WARNING",
        }
        flow = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "flows.okx"], cwd=ROOT, env=env, start_new_session=True
        )
        try:
            time.sleep(args.minutes * 60)
        finally:
            flow.send_signal(signal.SIGINT)
            flow.wait(30)
            sim.send_signal(signal.SIGTERM)
            sim.wait(30)
            subscription.close()
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT time, inserted_at FROM candles_1m ORDER BY time").fetchall()
        reader.close()
        redis.stop()
        pg.stop()
    to_row = [(inserted - close).total_seconds() for close, inserted in rows[1:]]  # first: partial start
    to_redis = [
        arrivals[close.astimezone(UTC).isoformat()] - close.timestamp()
        for close, _ in rows[1:]
        if close.astimezone(UTC).isoformat() in arrivals
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{args.minutes} min, grace {args.grace} s, {len(to_row)} candles; {datetime.now(UTC):%Y-%m-%d}"
    )
    print("| latency after the close | p50 | p99 | max | minus grace, p50 | minus grace, p99 |")
    print("|---|---|---|---|---|---|")
    for name, values in (("row in candles_1m (inserted_at)", to_row), ("message on Redis", to_redis)):
        if values:
            p50, p99 = statistics.median(values), percentile(values, 0.99)
            print(
                f"| {name} | {p50:.3f} s | {p99:.3f} s | {max(values):.3f} s "
                f"| {(p50 - args.grace) * 1000:.0f} ms | {(p99 - args.grace) * 1000:.0f} ms |"
            )


if __name__ == "__main__":
    main()
