"""The live benchmark's inputs and figures (bench/bench_latency.py): the tapes it builds for N instruments
read back as valid, ordered OKX tapes with consecutive ids, and its figures leave out each instrument's
first, partial minute."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.bench_latency import figures, instrument_names, tape_rows, tape_span, write_tapes
from connectors.tape import read_tape

BODY = [["BTC-USDT", str(100 + i), "buy", "1", "1", str(1_000_000 + 400 * i)] for i in range(5)]


def test_twenty_familiar_names_then_numbered_ones() -> None:
    names = instrument_names(22)
    assert names[0] == "BTC-USDT" and names[19] == "NEAR-USDT" and names[21] == "T021-USDT"
    assert len(set(names)) == 22


@pytest.mark.parametrize("density", [1, 2, 4])
def test_rows_repeat_back_to_back_and_overlay_in_time_order(density: int) -> None:
    # the tape spans 1.6 s, repeats start 2.6 s apart: 3.1 s hold one repeat and 2 rows of the next
    rows = list(tape_rows(BODY, seconds=3.1, density=density))
    assert rows == sorted(rows)
    assert len([r for r in rows if r[1] == 0]) == 5 + 2  # copy 0: 5 rows, then 2 of the next repeat
    assert {copy for _, copy, _ in rows} == set(range(density))
    assert all(ts < 1_000_000 + 3100 for ts, _, _ in rows)


def test_a_phase_plays_the_repeated_tape_from_that_far_in() -> None:
    # the tape at 0, 400, ..., 1600 ms repeats every 2.6 s; 3 s from 1,000 ms in: 1,200 ms ... 3,800 ms
    assert tape_span(BODY) == 2600
    rows = list(tape_rows(BODY, seconds=3.0, density=1, phase=1000))
    offsets = [ts - 1_000_000 for ts, _, _ in rows]
    assert offsets == [200, 600, 1600, 2000, 2400, 2800]  # 1200, 1600, 2600 ... 3800 less the phase
    assert [i for _, _, i in rows] == [3, 4, 0, 1, 2, 3]


def test_written_tapes_read_back_ordered_with_consecutive_ids(tmp_path: Path) -> None:
    paths = write_tapes(tmp_path, instrument_names(2), seconds=20, density=2)
    for path, name in zip(paths, instrument_names(2), strict=True):
        trades = list(read_tape(path))  # raises on a row out of (time, id) order
        assert {t.symbol for t in trades} == {name}
        ids = [t.trade_id for t in trades]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert trades[-1].ts_event - trades[0].ts_event < timedelta(seconds=20)


def test_figures_leave_out_each_instruments_first_minute() -> None:
    close = datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    minute = timedelta(minutes=1)
    rows = [
        (symbol, close + k * minute, close + k * minute + timedelta(seconds=2, milliseconds=10 * (k + 1)))
        for symbol in ("A-USDT", "B-USDT")
        for k in range(3)
    ]
    arrivals = {("A-USDT", (close + minute).isoformat()): (close + minute).timestamp() + 2.5}
    trades = {(close + k * minute).timestamp(): 600 for k in range(3)}
    args = argparse.Namespace(instruments=2, minutes=3, density=1, grace=2.0, rss_every=10.0, warmup=0.0)
    seen = {
        "rows": rows,
        "arrivals": arrivals,
        "late": 0,
        "trades": trades,
        "memory": [(10.0, 50.0), (20.0, 52.0)],
    }
    result = figures(args, seen)
    assert result["candles"] == 4
    assert result["row"]["p50"] == pytest.approx(2.02, abs=0.006) and result["row"]["max"] == pytest.approx(
        2.03
    )
    assert result["redis"]["n"] == 1 and result["redis"]["p50"] == pytest.approx(2.5)
    assert result["trades_per_s"] == pytest.approx(10.0)  # 600 trades a minute in each measured minute
    assert result["rss"]["slope_mb_per_min"] == pytest.approx(12.0)
