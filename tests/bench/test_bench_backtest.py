"""The backtest benchmark's trade comparison and its block of docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

from bench.bench_backtest import first_mismatch
from bench.report import backtest_block

TRADE = {
    "side": "long",
    "open": False,
    "entry_time": 60.0,
    "exit_time": 600.0,
    "entry_price": 100.0,
    "exit_price": 101.0,
    "quantity": 99.9,
    "pnl": 80.0,
    "fees": 20.0,
}


def test_trades_match_within_1e9_relative_and_times_exactly() -> None:
    close = TRADE | {"pnl": 80.0 * (1 + 5e-10)}
    assert first_mismatch([TRADE], [close]) is None
    assert (
        first_mismatch([TRADE], [TRADE | {"pnl": 80.0 * (1 + 5e-9)}])
        == "trade 0: pnl 80.0 against 80.0000004"
    )
    assert first_mismatch([TRADE], [TRADE | {"exit_time": 660.0}]) == "trade 0: exit_time 600.0 against 660.0"
    assert first_mismatch([TRADE], []) == "1 trades against 0"
    held = TRADE | {"open": True, "exit_time": None, "exit_price": None}
    assert first_mismatch([held], [held]) is None
    assert first_mismatch([held], [held | {"open": False}]) == "trade 0: open True against False"


FIGURES: dict[str, Any] = {
    "candles": 525_600,
    "engine": "postgres",
    "trades": 12_037,
    "same_trades": True,
    "vector": {"read": 0.9, "compute": 0.1},
    "in_process": {"total": 5.0, "read": 0.0, "graph": 4.2, "accounting": 0.8, "write": 0.0},
    "command": {"total": 12.0, "read": 3.8, "graph": 2.7, "accounting": 0.5, "write": 3.0},
}


def test_the_block_gives_each_run_against_the_vectorised_anchor_and_the_goal() -> None:
    text = backtest_block(FIGURES)
    assert "525,600 1m candles" in text and "12,037 trades, the same in every run." in text
    assert "**not the same in every run**" in backtest_block(FIGURES | {"same_trades": False})
    assert "| 12.00 | 3.80 | 2.70 | 0.50 | 3.00 | 43,800 | 12.0x |" in text  # 525,600 / 12 s; 12 s / 1 s
    assert "| 5.00 | 0.00 | 4.20 | 0.80 | 0.00 | 105,120 | 5.0x |" in text
    assert "(anchor; its computation under graph) | 1.00 | 0.90 | 0.100 | | | 525,600 | 1x |" in text
    assert "at most 10 s end to end (**not met**)" in text
    assert "beyond its split (start-up, metrics, summary, JSON): 2.00 s." in text  # 12 - 10
    fast = backtest_block(FIGURES | {"command": FIGURES["command"] | {"total": 9.5}})
    assert "(met)" in fast


def test_a_short_run_without_the_command_states_no_goal() -> None:
    text = backtest_block({k: v for k, v in FIGURES.items() if k != "command"} | {"candles": 43_200})
    assert "end to end" not in text and "Goal" not in text and "beyond its split" not in text
