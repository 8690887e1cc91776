"""Indicators and signals continue exactly after a restart: a series that resumes stored data replays
the stored candles (read back from a real PostgreSQL) through fresh state before its first new candle.

Oracle: the uninterrupted replay of the same tape (whose indicators equal TA-Lib,
tests/market/test_indicators.py). The restart is a replay of the tape cut at C into the database,
then the uninterrupted run's candles after C fed to the indicator step.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from configs.indicators import parse_indicator_config
from connectors.database import DatabaseSink
from connectors.resume import StoredHistory
from flows.indicators import IndicatorOut, IndicatorStep, series_key
from market.types import Candle
from sql.migrate import migrate
from tests.flows.flowkit import XRP_TAPE, run_replay

CONFIG = parse_indicator_config(
    {
        "profiles": [
            {
                "instruments": "*",
                "timeframes": ["1m", "5m", "1h"],
                "indicators": [
                    {"indicator": "EMA", "label": "ema_slow", "params": {"timeperiod": 50}},
                    {"indicator": "RSI", "params": {"timeperiod": 14}},
                    {"indicator": "MACD"},
                    {"indicator": "OBV"},
                    {"indicator": "ADX"},
                    {"indicator": "SAR"},
                ],
                "strategies": [{"strategy": "ema_crossover", "params": {"fast": 9, "slow": 21}}],
            }
        ]
    }
)
CUT = datetime(2019, 10, 12, 7, 3, tzinfo=UTC)


def continued(candles: list[Candle], step: IndicatorStep) -> list[IndicatorOut]:
    """The step's outputs for ``candles`` (any order of series; each series in time order)."""
    states: dict[str, object] = defaultdict(lambda: None)
    out: list[IndicatorOut] = []
    for candle in candles:
        key = series_key(candle)
        states[key], emitted = step(states[key], candle)  # type: ignore[arg-type]
        out.extend(emitted)
    return out


def test_indicators_after_a_restart_equal_the_uninterrupted_run(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    full = run_replay([XRP_TAPE], indicators=CONFIG)
    run_replay(
        [XRP_TAPE], indicators=CONFIG, replay_end=CUT, database=DatabaseSink(pg_url, tmp_path / "spool")
    )
    after = [c for c in full.candles if c.close_time > CUT and c.timeframe in ("1m", "5m", "1h")]
    expected = sorted((o for o in full.indicators if o.time > CUT), key=lambda o: o.key)
    assert {o.timeframe for o in expected} == {"1m", "5m", "1h"}

    resumed = continued(after, IndicatorStep(CONFIG, StoredHistory(pg_url)))
    assert sorted(resumed, key=lambda o: o.key) == expected

    fresh = continued(after, IndicatorStep(CONFIG))  # without the stored history: not the same values
    assert sorted(fresh, key=lambda o: o.key) != expected
