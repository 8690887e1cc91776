"""The Markdown ``python3 tcp.py bench`` writes into docs/benchmarks.md (bench/report.py): figures given
here become ratios to their floors with their run's stamp, blocks not re-run are kept as they were, a
failed benchmark keeps its earlier figures with a note, and text outside the generated part is untouched."""

from __future__ import annotations

from typing import Any

import pytest

from bench.measuring import percentile, slope
from bench.report import BEGIN, END, FAILED, SECTIONS, Machine, Measured, existing_blocks, update_document

DOCUMENT = "# Benchmarks\n\nIntro.\n\n## Indicators\n\nHand-written notes.\n"
MACHINE = Machine(cpu="Test CPU", cores=2, ram_gb=23.5, python="3.11.7", load_start=0.5, load_end=1.25)

REPLAY = {
    "runs": [
        {
            "trades": 200_000,
            "processes": 1,
            "floor_s": 1.0,
            "baseline_s": 2.0,
            "flow_s": 4.0,
            "startup_s": 0.5,
        },
        {
            "trades": 200_000,
            "processes": 2,
            "floor_s": 1.0,
            "baseline_s": 2.0,
            "flow_s": 2.5,
            "startup_s": 0.5,
        },
    ]
}
LATENCY = {
    "instruments": 20,
    "minutes": 30,
    "density": 4,
    "grace_s": 2.0,
    "candles": 580,
    "late_trades": 0,
    "trades_per_s": 2400.0,
    "row": {"p50": 2.017, "p99": 2.040, "max": 2.050, "n": 580, "slope_ms_per_min": 0.01},
    "redis": {"p50": 2.030, "p99": 2.060, "max": 2.070, "n": 580, "slope_ms_per_min": -0.02},
    "rss": {
        "every_s": 10,
        "warmup_s": 120,
        "samples": 168,
        "first_mb": 120.0,
        "max_mb": 123.0,
        "last_mb": 121.0,
        "slope_mb_per_min": 0.004,
    },
}
INDICATORS = {"candles": 10_000, "indicators": 43, "talib_indicators": 38, "repeat": 3}
QUERIES = {
    "engine": "postgres",
    "symbols": 2,
    "days": 30,
    "repeat": 20,
    "rows": 86_400,
    "reads": [{"label": "one day", "median_ms": 6.0, "p95_ms": 7.5, "server_ms": 1.5, "rows": 1440}],
}
DASHBOARD = {
    "loads_s": [3.0, 4.0, 5.0],
    "pages": 4,
    "minutes": 20,
    "series": 4,
    "published": 9680,
    "took_s": 30.0,
    "idle_mb": 80.0,
    "before_mb": 180.0,
    "after_mb": 181.0,
    "rss_min_mb": 180.0,
    "rss_max_mb": 182.0,
}


def measured(figures: Any, failure: str | None = None, date: str = "2026-11-30 20:05 UTC") -> Measured:
    return Measured(figures, "quick", date, "bench/bench_x.py --n 1", 0.5, 1.5, failure)


def write(document: str, **items: Measured) -> str:
    return update_document(document, "Last run: test.", items)


def block(document: str, name: str) -> str:
    return existing_blocks(document)[name]


def test_a_first_run_goes_after_the_introduction_and_keeps_the_rest() -> None:
    out = write(DOCUMENT, indicators=measured({**INDICATORS, "incremental_s": 2.0, "talib_s": 0.01}))
    assert out.startswith("# Benchmarks\n\nIntro.\n\n" + BEGIN)
    assert out.endswith(END + "\n\n## Indicators\n\nHand-written notes.\n")
    assert block(out, "run") == "Last run: test."
    text = block(out, "indicators")
    assert text.startswith(
        "Measured 2026-11-30 20:05 UTC, quick mode: `bench/bench_x.py --n 1`; load average 0.50 at start, "
        "1.50 at end."
    )
    assert "| 5,000 | 0.0050x |" in text and "| 1,000,000 | 1x |" in text
    assert "Not measured by `python3 tcp.py bench` yet" in block(out, "replay")


def test_every_section_has_a_heading_in_order() -> None:
    out = write(DOCUMENT)
    positions = [out.index(f"### {heading}\n") for heading, _ in SECTIONS.values()]
    assert positions == sorted(positions)


def test_replay_figures_are_ratios_to_the_floor_with_the_goals() -> None:
    text = block(write(DOCUMENT, replay=measured(REPLAY)), "replay")
    assert "| 1 | 200,000 | 200,000 | 100,000 | 0.50x | 50,000 | 0.25x | 57,143 | 0.29x |" in text
    assert "| 2 | 200,000 | 200,000 | 100,000 | 0.50x | 80,000 | 0.40x | 100,000 | 0.50x |" in text
    assert "at least 100,000 trades/s (**not met**)" in text
    assert "at least 0.5x the floor (**not met**)" in text
    assert "Two processes against one, end to end: 1.60x (met)." in text


def test_latency_and_memory_against_the_grace_and_the_memory_goal() -> None:
    out = write(DOCUMENT, latency=measured(LATENCY), memory=measured(LATENCY))
    latency = block(out, "latency")
    assert (
        "| row in `candles_1m` (`inserted_at`) | 2.017 s | 2.040 s | 2.050 s | +17 ms | +40 ms | 1.02x"
        in latency
    )
    assert (
        "| message on Redis | 2.030 s | 2.060 s | 2.070 s | +30 ms | +60 ms | 1.03x | -0.02 ms/min |"
        in latency
    )
    assert "20 instruments on the simulator for 30 minutes, 2,400 trades/s" in latency
    assert (
        "p99 at most 50 ms beyond the grace (met), over at least 500 candles from 20 instruments (met)"
        in latency
    )
    memory = block(out, "memory")
    assert "| max | 123 | 0.82x |" in memory
    assert "| slope after warm-up (least squares over 168 samples) | +0.004 MB/min | |" in memory
    assert "at most 150 MB (met)" in memory


def test_a_short_latency_run_says_it_has_too_few_candles() -> None:
    short = {**LATENCY, "candles": 60, "row": {**LATENCY["row"], "p99": 2.080}}
    text = block(write(DOCUMENT, latency=measured(short)), "latency")
    assert (
        "beyond the grace (**not met**), over at least 500 candles from 20 instruments (**not met**)" in text
    )


def test_queries_and_dashboard() -> None:
    out = write(DOCUMENT, queries=measured(QUERIES), dashboard=measured(DASHBOARD))
    assert "| one day | 6.00 | 7.5 | 1.50 | 4.00x | 1440 |" in block(out, "queries")
    dashboard = block(out, "dashboard")
    assert "median 4.00 s (min 3.00 s, max 5.00 s)" in dashboard
    assert "9,680 messages (323/s)" in dashboard


def test_a_second_run_replaces_only_what_it_ran() -> None:
    first = write(
        DOCUMENT,
        replay=measured(REPLAY, date="2026-11-30 19:00 UTC"),
        queries=measured(QUERIES, date="2026-11-30 19:00 UTC"),
    )
    second = update_document(
        first, "Last run: second.", {"replay": measured(REPLAY, date="2026-11-30 21:00 UTC")}
    )
    assert block(second, "run") == "Last run: second."
    assert "Measured 2026-11-30 21:00 UTC" in block(second, "replay")
    assert block(second, "queries") == block(first, "queries")
    assert "Measured 2026-11-30 19:00 UTC" in block(second, "queries")
    assert second.count(BEGIN) == 1 and second.endswith("## Indicators\n\nHand-written notes.\n")


def test_a_failed_benchmark_keeps_its_earlier_figures_with_a_note() -> None:
    first = write(DOCUMENT, queries=measured(QUERIES, date="2026-11-30 19:00 UTC"))
    failed = measured(None, failure="`bench_queries.py` exited with code 1", date="2026-11-30 21:00 UTC")
    second = write(first, queries=failed)
    third = write(second, queries=failed)
    text = block(third, "queries")
    assert text.startswith(block(first, "queries"))
    assert text.count(FAILED) == 1
    assert text.endswith(
        "the run of 2026-11-30 21:00 UTC (quick mode) failed: `bench_queries.py` exited with code 1.*"
    )


def test_a_failure_without_earlier_figures_is_only_the_note() -> None:
    text = block(write(DOCUMENT, dashboard=measured(None, failure="Chromium not found")), "dashboard")
    assert text.startswith(FAILED) and "Chromium not found" in text


def test_a_document_without_headings_gets_the_section_at_the_end() -> None:
    out = write("# Benchmarks\n")
    assert out.startswith("# Benchmarks\n\n" + BEGIN) and out.endswith(END + "\n")


def test_the_run_line_names_the_machine_and_the_load() -> None:
    from bench.report import run_text

    text = run_text("python3 tcp.py bench --quick", "2026-11-30 20:05 UTC", 600, MACHINE)
    assert "`python3 tcp.py bench --quick` on 2026-11-30 20:05 UTC, 10.0 minutes" in text
    assert "2 cores (Test CPU), 23.5 GB RAM, Python 3.11.7; load average 0.50 at start, 1.25 at end" in text


@pytest.mark.parametrize(("q", "expected"), [(0.0, 1.0), (0.5, 3.0), (0.99, 5.0), (1.0, 5.0)])
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert percentile([5.0, 1.0, 4.0, 2.0, 3.0], q) == expected


def test_slope_is_least_squares() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope([(1, 1)]) == 0.0 and slope([(1, 1), (1, 2)]) == 0.0


def test_a_partly_failed_run_keeps_what_it_measured_with_a_note() -> None:
    one = {"runs": REPLAY["runs"][:1]}
    text = block(
        write(DOCUMENT, replay=measured(one, failure="`bench_replay.py` exited with code 1")), "replay"
    )
    assert text.startswith("Measured 2026-11-30 20:05 UTC") and "| 1 | 200,000 |" in text
    assert "Two processes" not in text
    assert text.endswith("*Part of this run failed: `bench_replay.py` exited with code 1.*")
