"""A bot's configuration: validation names the field, files round-trip, the account and strategy it
builds are the backtest's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from configs.bots import (
    BotConfig,
    bot_config_problem,
    dump_bot_config,
    load_bot_config,
    parse_bot_config,
)
from configs.errors import UserError
from market.backtest import AccountSettings
from market.strategies import EmaCrossover, RsiReversion

GOOD: dict[str, Any] = {
    "name": "ema-btc_1m",
    "symbol": "BTC-USDT",
    "timeframe": "5m",
    "strategy": "ema_crossover",
    "params": {"fast": 5, "slow": 13},
}


def problem(data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as caught:
        parse_bot_config(data)
    first = caught.value.errors()[0]
    return first["loc"], first["msg"]


def test_defaults() -> None:
    config = parse_bot_config(GOOD)
    assert (config.exchange, config.close_on_stop) == ("okx", False)
    assert config.account.model_dump() == {
        "cash": 10_000.0,
        "fraction": 1.0,
        "fee_bps": 10.0,
        "slippage_bps": 0.0,
        "short": False,
    }
    assert config.series == "okx|BTC-USDT|5m"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"params": {"fast": 1}}, ("params",), "'fast' must be >= 2"),
        ({"params": {"fast": 9.5}}, ("params",), "'fast' must be an integer"),
        ({"params": {"speed": 3}}, ("params",), "unknown parameter 'speed'"),
        ({"params": {"fast": True}}, ("params", "fast", "int"), "valid integer"),
        ({"strategy": "moon_shot"}, ("strategy",), "unknown strategy 'moon_shot'"),
        ({"timeframe": "2m"}, ("timeframe",), "unknown timeframe '2m'"),
        ({"timeframe": "1M"}, ("timeframe",), "unknown timeframe '1M'"),
        ({"name": "Upper"}, ("name",), "must start with a-z or 0-9"),
        ({"name": "-dash"}, ("name",), "must start with a-z or 0-9"),
        ({"name": "a" * 64}, ("name",), "max 63"),
        ({"name": "has space"}, ("name",), "only a-z, 0-9, _ and -"),
        ({"symbol": "btc-usdt"}, ("symbol",), "upper case"),
        ({"exchange": "binance"}, ("exchange",), "only exchange is 'okx'"),
        ({"account": {"cash": 0}}, ("account", "cash"), "greater than 0"),
        ({"account": {"fraction": 1.5}}, ("account", "fraction"), "less than or equal to 1"),
        ({"colour": "red"}, ("colour",), "Extra inputs are not permitted"),
    ],
)
def test_bad_field_is_named(change: dict[str, Any], field: tuple[Any, ...], words: str) -> None:
    loc, message = problem(GOOD | change)
    assert loc == field
    assert words in message


def test_params_checked_against_the_named_template() -> None:
    # rsi_reversion has no 'fast'; ema_crossover has no 'timeperiod': each template's own spec applies
    assert problem(GOOD | {"strategy": "rsi_reversion"})[0] == ("params",)
    config = parse_bot_config(GOOD | {"strategy": "RSI_Reversion", "params": {"timeperiod": 7}})
    assert config.strategy == "rsi_reversion"


def test_missing_required_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_bot_config({})
    assert {e["loc"][0] for e in caught.value.errors()} == {"name", "symbol", "timeframe", "strategy"}


def test_problem_is_one_line_naming_field_and_fix() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_bot_config(GOOD | {"params": {"slow": 1}})
    told = bot_config_problem(caught.value, "bot.yaml")
    assert isinstance(told, UserError)
    assert told.problem == "bot.yaml: params: ema_crossover parameter 'slow' must be >= 2, got 1."
    assert "docs/bots.md" in told.fix
    with pytest.raises(ValidationError) as caught:
        parse_bot_config({k: v for k, v in GOOD.items() if k != "symbol"})
    assert bot_config_problem(caught.value).problem == "bot: symbol: missing."


def test_account_settings_are_the_backtest_account_in_fractions() -> None:
    account = {"cash": 2_500, "fraction": 0.5, "fee_bps": 7.5, "slippage_bps": 2, "short": True}
    config = parse_bot_config(GOOD | {"account": account})
    assert config.account_settings() == AccountSettings(2_500.0, 0.5, 0.00075, 0.0002, True)


def test_strategy_is_the_template_with_the_params_and_its_name_as_label() -> None:
    strategy = parse_bot_config(GOOD).build_strategy()
    assert isinstance(strategy, EmaCrossover)
    assert (strategy.params, strategy.label) == ({"fast": 5, "slow": 13}, "ema_crossover")
    other = parse_bot_config(GOOD | {"strategy": "rsi_reversion", "params": {}}).build_strategy()
    assert isinstance(other, RsiReversion) and other.label == "rsi_reversion"
    assert parse_bot_config(GOOD).build_strategy() is not strategy  # fresh state each time


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    config = parse_bot_config(
        GOOD | {"close_on_stop": True, "account": {"cash": 123.5, "short": True}, "params": {"fast": 4}}
    )
    path = tmp_path / f"bot{suffix}"
    path.write_text(dump_bot_config(config, "json" if suffix == ".json" else "yaml"))
    assert load_bot_config(path) == config


def test_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text("name = 'x'")
    with pytest.raises(ValueError, match=r"\.json, \.yaml or \.yml"):
        load_bot_config(path)


def test_config_is_frozen() -> None:
    config = parse_bot_config(GOOD)
    with pytest.raises(ValidationError):
        config.name = "other"
    assert isinstance(config, BotConfig)
