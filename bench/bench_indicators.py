"""Throughput of the incremental indicator bank vs TA-Lib's batch functions over the same candles.

Run: .venv/bin/python bench/bench_indicators.py [--repeat N] [--tile K]

The input is the exchange's XRP-ETH 1m candles (tests/data/tapes), tiled K times end to end (the tiles are
shifted in time so the series stays ordered). The bank is every registered indicator with its default
parameters, fed one candle at a time: the candle's Decimal fields are converted to floats once
(``Bar.from_candle``) and each indicator's ``update_bar`` is called. TA-Lib computes the TA-Lib
indicators of the bank over the whole float arrays in one call each. Reported: candles per second
(best of N runs) and the mean cost of one indicator update.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
from talib import abstract

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from market.indicators import INDICATORS, Bar, build_indicator  # noqa: E402
from market.types import Candle, utc_from_ms  # noqa: E402

CANDLES = ROOT / "tests" / "data" / "tapes" / "XRP-ETH-exchange-candles-1m.csv"


def load(tile: int) -> list[Candle]:
    base = []
    with CANDLES.open() as f:
        for row in csv.DictReader(f):
            volume = Decimal(row["volume"])
            base.append(
                Candle(
                    "okx",
                    "XRP-ETH",
                    "1m",
                    utc_from_ms(int(row["open_time"])),
                    utc_from_ms(int(row["close_time"])),
                    Decimal(row["open"]),
                    Decimal(row["high"]),
                    Decimal(row["low"]),
                    Decimal(row["close"]),
                    volume,
                    Decimal(0),
                    0 if volume == 0 else 1,
                    None,
                    None,
                    None,
                )
            )
    span = base[-1].close_time - base[0].open_time
    out = []
    for k in range(tile):
        shift = k * span
        out.extend(replace(c, open_time=c.open_time + shift, close_time=c.close_time + shift) for c in base)
    return out


def bench_incremental(candles: list[Candle]) -> float:
    bank = [build_indicator(name) for name in INDICATORS]
    start = time.perf_counter()
    for candle in candles:
        bar = Bar.from_candle(candle)
        for indicator in bank:
            indicator.update_bar(bar)
    return time.perf_counter() - start


def bench_talib(candles: list[Candle]) -> float:
    data = {
        k: np.array([float(getattr(c, k)) for c in candles], dtype=float)
        for k in ("open", "high", "low", "close", "volume")
    }
    functions = [abstract.Function(name) for name, spec in INDICATORS.items() if spec.talib]
    start = time.perf_counter()
    for fn in functions:
        fn.run(data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tile", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    candles = load(args.tile)
    n = len(candles)
    n_all = len(INDICATORS)
    n_talib = sum(spec.talib for spec in INDICATORS.values())
    inc = min(bench_incremental(candles) for _ in range(args.repeat))
    tal = min(bench_talib(candles) for _ in range(args.repeat))
    print(f"python {platform.python_version()} on {platform.machine()}, {n} candles, best of {args.repeat}")
    per_update = inc / n / n_all * 1e6
    print(f"incremental bank ({n_all} indicators): {n / inc:,.0f} candles/s, {per_update:.2f} us/update")
    print(f"TA-Lib batch ({n_talib} indicators):    {n / tal:,.0f} candles/s")
    print(f"ratio (TA-Lib batch / incremental): {inc / tal:,.0f}x")
    if args.json is not None:
        figures = {"candles": n, "indicators": n_all, "talib_indicators": n_talib, "repeat": args.repeat}
        args.json.write_text(json.dumps({**figures, "incremental_s": inc, "talib_s": tal}))


if __name__ == "__main__":
    main()
