"""Dashboard page load time and server memory under an hour of accelerated live updates.

Fills a fresh embedded PostgreSQL with the XRP-ETH and BTC-USDT tapes through the real replay dataflow
(indicators and signals of configs/indicators.yaml), starts an embedded Redis and ``panel serve
dashboards/app.py`` as the run command does, then with headless Chromium:

1. page load: ``--loads`` fresh browser contexts each open the page; the time is from navigation start to
   the chart rendered (the candle count shown and the browser's copy of the candle source filled);
2. live: ``--pages`` pages stay open, each on the 1m chart of a different series, while the script
   publishes ``--minutes`` minutes of 1m candles for ``--series`` series with provisional updates at 2/s per
   series and one indicator message per candle, compressed into ``--seconds`` seconds; the RSS of the panel
   process is sampled throughout.

    .venv/bin/python bench/bench_dashboard.py            # 60 minutes over 90 s, 4 series, 4 pages

Needs Chromium (apt-get install -y chromium). Prints a Markdown report for docs/benchmarks.md.
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
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded_postgres import EmbeddedPostgres  # noqa: E402
from app.embedded_redis import EmbeddedRedis  # noqa: E402
from bench.measuring import cpu_model, rss_mb  # noqa: E402
from configs.indicators import load_indicator_config  # noqa: E402
from connectors.database import DatabaseSink  # noqa: E402
from connectors.redis_fanout import RedisFanout  # noqa: E402
from market.provisional import ProvisionalCandle  # noqa: E402
from market.types import Candle, IndicatorValue  # noqa: E402
from sql import queries  # noqa: E402
from sql.migrate import migrate  # noqa: E402
from tests.flows.flowkit import BTC_TAPE, XRP_TAPE, run_replay  # noqa: E402
from tests.support.browser import chromium, serve_dashboard  # noqa: E402

SERIES = ["XRP-ETH", "BTC-USDT", "ETH-USDT", "SOL-USDT"]
MINUTE = timedelta(minutes=1)
RENDERED_JS = """() => { for (const doc of window.Bokeh?.documents ?? []) {
    const m = doc.get_model_by_name('tcp-candles'); if (m && m.data.time.length > 0) return true; }
    return false; }"""


def load_once(browser: object, url: str) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url)
    page.get_by_test_id("candle-count").first.wait_for(timeout=60_000)
    page.wait_for_function(RENDERED_JS, timeout=60_000)
    elapsed = time.perf_counter() - start
    context.close()
    return elapsed


def publish_hour(
    redis_url: str,
    lasts: dict[str, object],
    minutes: int,
    seconds: float,
    pid: int,
    samples: list[tuple[float, float]],
) -> int:
    """Publish ``minutes`` minutes of live data per series over ``seconds``; returns messages published."""
    fanout = RedisFanout(redis_url)
    steps = 120  # provisional updates per candle: 2 per second of a minute
    pause = seconds / minutes / steps
    published, start = 0, time.perf_counter()
    for m in range(1, minutes + 1):
        for step in range(1, steps + 1):
            batch: list[object] = []
            for i, symbol in enumerate(SERIES):
                close_time = lasts[symbol] + m * MINUTE  # type: ignore[operator]
                price = Decimal(100 + i * 10 + m) + Decimal(step) / 1000
                if step == steps:
                    batch.append(
                        Candle(
                            "okx",
                            symbol,
                            "1m",
                            close_time - MINUTE,
                            close_time,
                            price,
                            price + 1,
                            price - 1,
                            price,
                            Decimal(5),
                            price * 5,
                            40,
                            price,
                            m * 100,
                            m * 100 + 39,
                        )
                    )
                    batch.append(
                        IndicatorValue("okx", symbol, "1m", close_time, "ema_fast", {"value": float(price)})
                    )
                else:
                    batch.append(
                        ProvisionalCandle(
                            "okx",
                            symbol,
                            "1m",
                            close_time - MINUTE,
                            close_time,
                            price,
                            price + 1,
                            price - 1,
                            price,
                            Decimal(step) / 10,
                            price,
                            step,
                            price,
                            close_time - MINUTE + timedelta(seconds=step / 2),
                        )
                    )
            published += fanout.publish(batch)  # type: ignore[arg-type]
            target = start + ((m - 1) * steps + step) * pause
            time.sleep(max(0.0, target - time.perf_counter()))
        samples.append((time.perf_counter() - start, rss_mb(pid)))
    fanout.close()
    return published


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pg = EmbeddedPostgres(work / "pg")
        url = pg.start()
        redis = EmbeddedRedis(work / "redis")
        redis_url = redis.start()
        process: subprocess.Popen[bytes] | None = None
        try:
            migrate(url)
            config_path = ROOT / "configs" / "indicators.yaml"
            run_replay(
                [XRP_TAPE, BTC_TAPE],
                database=DatabaseSink(url, work / "spool"),
                indicators=load_indicator_config(config_path),
            )
            import psycopg

            with psycopg.connect(url) as conn:
                lasts = {r["symbol"]: r["time"] for r in queries.latest_closes(conn, "okx", SERIES)}
            default_last = max(lasts.values())
            lasts = {s: lasts.get(s, default_last) for s in SERIES}
            env = {
                "DATABASE_URL": url,
                "REDIS_URL": redis_url,
                "INSTRUMENTS": ",".join(SERIES),
                "INDICATORS_CONFIG": str(config_path),
            }
            process, page_url = serve_dashboard(env, work / "panel.log")
            idle_rss = rss_mb(process.pid)
            with chromium() as browser:
                loads = [load_once(browser, page_url) for _ in range(args.loads)]
                pages = []
                for symbol in SERIES[: args.pages]:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(page_url)
                    page.get_by_test_id("candle-count").first.wait_for(timeout=60_000)
                    page.locator(".tcp-instrument select").select_option(symbol)
                    pages.append(page)
                time.sleep(3)
                before = rss_mb(process.pid)
                samples: list[tuple[float, float]] = []
                started = time.perf_counter()
                published = publish_hour(redis_url, lasts, args.minutes, args.seconds, process.pid, samples)
                took = time.perf_counter() - started
                time.sleep(3)
                after = rss_mb(process.pid)
                counts = [p.get_by_test_id("candle-count").first.inner_text() for p in pages]
        finally:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(20)
            redis.stop()
            pg.stop()
    print(f"Machine: {os.cpu_count()} vCPU ({cpu_model()}), Python {platform.python_version()}\n")
    print("| what | result |\n|---|---|")
    print(
        f"| page load, navigation to chart rendered ({args.loads} fresh contexts; XRP-ETH 1m, 1000 candles,"
        f" EMA/SMA/BBANDS overlays, RSI and MACD panels, signals) | median {statistics.median(loads):.2f} s"
        f" (min {min(loads):.2f}, max {max(loads):.2f}) |"
    )
    print(
        f"| panel server RSS: idle after start / with {args.pages} pages open before the live hour / after |"
        f" {idle_rss:.0f} MB / {before:.0f} MB / {after:.0f} MB |"
    )
    print(
        f"| live hour: {args.minutes} minutes x {len(SERIES)} series (1m candles, 2 provisional/s per series,"
        f" indicator values) | {published} messages in {took:.0f} s ({published / took:.0f}/s) |"
    )
    print(
        f"| RSS during the live hour (every simulated minute) | min {min(r for _, r in samples):.0f} MB,"
        f" max {max(r for _, r in samples):.0f} MB, last {samples[-1][1]:.0f} MB |"
    )
    print(f"| candles shown at the end, per page | {'; '.join(counts)} |")
    if args.json is not None:
        live = {"minutes": args.minutes, "series": len(SERIES), "published": published, "took_s": took}
        rss = {"idle_mb": idle_rss, "before_mb": before, "after_mb": after}
        extremes = {"rss_min_mb": min(r for _, r in samples), "rss_max_mb": max(r for _, r in samples)}
        args.json.write_text(json.dumps({"loads_s": loads, "pages": args.pages, **live, **rss, **extremes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
