"""The indicator/strategy configuration: the shipped YAML loads, and bad configs name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from configs.indicators import DEFAULT_CONFIG_PATH, load_indicator_config, parse_indicator_config
from market.indicators.averages import EMA
from market.strategies import EmaCrossover
from market.timeframes import TIMEFRAMES
from market.types import Candle


def test_default_yaml_loads_and_plans_every_timeframe() -> None:
    config = load_indicator_config()
    for tf in TIMEFRAMES:
        plan = config.plan("BTC-USDT", tf)
        expected = {"ema_fast", "ema_slow", "sma_50", "rsi", "macd", "bbands", "atr", "keltner", "donchian"}
        assert expected <= set(plan.indicators)
        assert ("vwap" in plan.indicators) == (tf != "1d")
        assert set(plan.strategies) == {"ema_crossover", "rsi_reversion"}
    plan = config.plan("ETH-USDT", "1m")
    fast, slow = plan.indicators["ema_fast"], plan.indicators["ema_slow"]
    assert isinstance(fast, EMA) and fast.params == {"timeperiod": 9}
    assert isinstance(slow, EMA) and slow.params == {"timeperiod": 21}
    assert isinstance(plan.strategies["ema_crossover"], EmaCrossover)


def test_plans_are_fresh_state() -> None:
    config = load_indicator_config()
    a = config.plan("BTC-USDT", "1m")
    b = config.plan("BTC-USDT", "1m")
    assert a.indicators["rsi"] is not b.indicators["rsi"]
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    one = Decimal(1)
    candle = Candle(
        "okx", "BTC-USDT", "1m", t0, t0 + timedelta(minutes=1), one, one, one, one, one, one, 1, one, 1, 1
    )
    a.indicators["ema_fast"].update(candle)
    assert a.indicators["ema_fast"].count == 1 and b.indicators["ema_fast"].count == 0


def test_json_and_instrument_selection(tmp_path: Path) -> None:
    data = {
        "profiles": [
            {"instruments": ["BTC-USDT"], "timeframes": ["1m", "1h"], "indicators": [{"indicator": "rsi"}]},
            {
                "instruments": "*",
                "timeframes": ["1m"],
                "indicators": [{"indicator": "EMA", "label": "ema_200", "params": {"timeperiod": 200}}],
                "strategies": [{"strategy": "macd_cross", "label": "macd_fast", "params": {"fastperiod": 6}}],
            },
        ]
    }
    path = tmp_path / "indicators.json"
    path.write_text(json.dumps(data))
    config = load_indicator_config(path)
    assert set(config.plan("BTC-USDT", "1m").indicators) == {"rsi", "ema_200"}
    assert set(config.plan("BTC-USDT", "1h").indicators) == {"rsi"}
    assert set(config.plan("ETH-USDT", "1m").indicators) == {"ema_200"}
    assert config.plan("ETH-USDT", "4h").indicators == {}
    assert config.plan("ETH-USDT", "1m").strategies["macd_fast"].label == "macd_fast"
    with pytest.raises(ValueError, match="unknown timeframe"):
        config.plan("ETH-USDT", "2m")


def test_same_label_allowed_in_profiles_that_never_meet() -> None:
    parse_indicator_config(
        {
            "profiles": [
                {"timeframes": ["1m"], "indicators": [{"indicator": "EMA", "params": {"timeperiod": 5}}]},
                {"timeframes": ["1h"], "indicators": [{"indicator": "EMA", "params": {"timeperiod": 50}}]},
                {"instruments": ["A-B"], "indicators": [{"indicator": "SMA"}]},
                {"instruments": ["C-D"], "indicators": [{"indicator": "SMA"}]},
            ]
        }
    )


def one_profile(**profile: Any) -> dict[str, Any]:
    return {"profiles": [profile]}


BAD_CONFIGS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "unknown indicator",
        one_profile(indicators=[{"indicator": "EMA"}, {"indicator": "FOO"}]),
        "profiles.0.indicators.1.indicator",
        "unknown indicator 'FOO'",
    ),
    (
        "unknown param",
        one_profile(indicators=[{"indicator": "EMA", "params": {"period": 9}}]),
        "profiles.0.indicators.0.params",
        "unknown parameter 'period' for EMA",
    ),
    (
        "bad period",
        one_profile(indicators=[{"indicator": "RSI", "params": {"timeperiod": 1}}]),
        "profiles.0.indicators.0.params",
        "RSI parameter 'timeperiod' must be >= 2, got 1",
    ),
    (
        "non-integer period",
        one_profile(indicators=[{"indicator": "SMA", "params": {"timeperiod": 2.5}}]),
        "profiles.0.indicators.0.params",
        "must be an integer",
    ),
    (
        "string period",
        one_profile(indicators=[{"indicator": "SMA", "params": {"timeperiod": "nine"}}]),
        "profiles.0.indicators.0.params.timeperiod",
        "valid integer",
    ),
    (
        "unknown timeframe",
        one_profile(timeframes=["1m", "2m"]),
        "profiles.0.timeframes",
        "unknown timeframe '2m'",
    ),
    (
        "duplicate label",
        one_profile(indicators=[{"indicator": "EMA"}, {"indicator": "EMA", "params": {"timeperiod": 5}}]),
        "profiles.0",
        "indicators: duplicate label 'ema'",
    ),
    (
        "duplicate explicit label",
        one_profile(
            indicators=[{"indicator": "EMA", "label": "fast"}, {"indicator": "SMA", "label": "fast"}],
        ),
        "profiles.0",
        "indicators: duplicate label 'fast'",
    ),
    (
        "duplicate label across overlapping profiles",
        {
            "profiles": [
                {"indicators": [{"indicator": "EMA"}]},
                {"instruments": ["BTC-USDT"], "timeframes": ["5m"], "indicators": [{"indicator": "EMA"}]},
            ]
        },
        "",
        "profiles.1.indicators: duplicate label 'ema', also used by profiles.0",
    ),
    (
        "bad label",
        one_profile(indicators=[{"indicator": "EMA", "label": "EMA Fast"}]),
        "profiles.0.indicators.0.label",
        "must start with a lower-case letter",
    ),
    (
        "unknown strategy",
        one_profile(strategies=[{"strategy": "martingale"}]),
        "profiles.0.strategies.0.strategy",
        "unknown strategy 'martingale'",
    ),
    (
        "bad strategy params",
        one_profile(strategies=[{"strategy": "ema_crossover", "params": {"fast": 50}}]),
        "profiles.0.strategies.0.params",
        "ema_crossover needs fast < slow",
    ),
    (
        "duplicate strategy label",
        one_profile(strategies=[{"strategy": "rsi_reversion"}, {"strategy": "rsi_reversion"}]),
        "profiles.0",
        "strategies: duplicate label 'rsi_reversion'",
    ),
    (
        "unknown key",
        one_profile(indicators=[{"indicator": "EMA", "periods": 3}]),
        "profiles.0.indicators.0.periods",
        "Extra inputs are not permitted",
    ),
    (
        "empty instruments",
        one_profile(instruments=[]),
        "profiles.0.instruments",
        "instruments must not be empty",
    ),
]


@pytest.mark.parametrize(("case", "data", "loc", "message"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_field(case: str, data: dict[str, Any], loc: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_indicator_config(data)
    errors = info.value.errors()
    locs = [".".join(str(part) for part in e["loc"]) for e in errors]
    assert any(found.startswith(loc) for found in locs), f"{case}: error at {locs}, expected {loc}"
    assert message in str(info.value), f"{case}: {info.value}"


def test_bad_yaml_file_reports_field(tmp_path: Path) -> None:
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["profiles"][0]["timeframes"] = ["1m", "3m"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValidationError, match=r"profiles\.0\.timeframes"):
        load_indicator_config(path)
