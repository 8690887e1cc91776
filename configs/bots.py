"""A paper-trading bot's configuration (docs/bots.md): one series, one strategy template, one account.

    name: ema-btc-1m             # a-z, 0-9, _ and -, starting with a letter or digit (max 63)
    exchange: okx
    symbol: BTC-USDT
    timeframe: 1m                # 1m, 5m, 15m, 1h, 4h, 1d
    strategy: ema_crossover      # a strategy template (docs/indicators.md)
    params: {fast: 9, slow: 21}  # its parameters, checked as the indicators file checks them
    account: {cash: 10000, fraction: 1.0, fee_bps: 10, slippage_bps: 0, short: false}
    close_on_stop: false         # on stop, close an open position at the next candle's open

The bot trades on the backtest's account (``market.backtest``), so the same configuration backtested
over the same candles gives the same fills. Validation names the offending field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from configs.backtest import AccountSection
from configs.errors import UserError
from configs.indicators import Params
from market.backtest import AccountSettings
from market.strategies import Strategy, build_strategy, strategy_spec
from market.timeframes import TIMEFRAMES

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SYMBOL = re.compile(r"^[A-Z0-9_]+(-[A-Z0-9_]+)+$")
FORMATS = ("json", "yaml")


class BotConfig(BaseModel):
    """A bot: its name, the series it trades, its strategy template and parameters, its account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    exchange: str = "okx"
    symbol: str
    timeframe: str
    strategy: str
    params: Params = Field(default_factory=dict)
    account: AccountSection = Field(default_factory=AccountSection)
    close_on_stop: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(
                f"name {name!r} must start with a-z or 0-9 and contain only a-z, 0-9, _ and - (max 63)"
            )
        return name

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, exchange: str) -> str:
        if exchange != "okx":
            raise ValueError(f"exchange {exchange!r} is not supported; the only exchange is 'okx'")
        return exchange

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, symbol: str) -> str:
        if not _SYMBOL.match(symbol):
            raise ValueError(f"{symbol!r} is not an OKX instrument id such as BTC-USDT (upper case)")
        return symbol

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, name: str) -> str:
        if name not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {name!r}; expected one of {', '.join(TIMEFRAMES)}")
        return name

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, name: str) -> str:
        return strategy_spec(name).name  # raises "unknown strategy ...; known strategies: ..."

    @field_validator("params")
    @classmethod
    def _params(cls, params: Params, info: ValidationInfo) -> Params:
        name = info.data.get("strategy")
        if name is not None:  # an unknown strategy is reported on its own field
            kwargs: dict[str, Any] = dict(params)
            build_strategy(name, **kwargs)  # raises naming the parameter and the allowed range
        return params

    @property
    def series(self) -> str:
        """The key of the series the bot trades (``exchange|symbol|timeframe``)."""
        return f"{self.exchange}|{self.symbol}|{self.timeframe}"

    def account_settings(self) -> AccountSettings:
        """The simulated account, fee and slippage as fractions."""
        a = self.account
        return AccountSettings.from_bps(a.cash, a.fraction, a.fee_bps, a.slippage_bps, a.short)

    def build_strategy(self) -> Strategy:
        """A fresh strategy state object, labelled with the template's name."""
        kwargs: dict[str, Any] = dict(self.params)
        return build_strategy(self.strategy, label=self.strategy, **kwargs)


def parse_bot_config(data: Any) -> BotConfig:
    """Validate already-parsed YAML/JSON data (raises pydantic.ValidationError naming the field)."""
    return BotConfig.model_validate(data if data is not None else {})


def load_bot_config(path: str | Path) -> BotConfig:
    """Load and validate a bot file: JSON (``.json``) or YAML (``.yaml``/``.yml``); raises ValueError for
    another suffix, pydantic.ValidationError naming the field, yaml.YAMLError or json.JSONDecodeError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"{path}: a bot file is .json, .yaml or .yml, not {suffix or 'without a suffix'!r}")
    text = path.read_text(encoding="utf-8")
    return parse_bot_config(json.loads(text) if suffix == ".json" else yaml.safe_load(text))


def dump_bot_config(config: BotConfig, fmt: Literal["json", "yaml"]) -> str:
    """The configuration as a file's text that :func:`load_bot_config` reads back to an equal config."""
    data = config.model_dump(mode="json")
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False)
    raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")


def bot_config_problem(
    error: ValidationError, source: str = "bot", names: Mapping[str, str] | None = None
) -> UserError:
    """The first failure of a validation as one line naming the field (``source: field``, or the name
    ``names`` gives the field or its nearest parent, e.g. a command's flag), and the fix."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    field = ".".join(loc) or "(config)"
    where = f"{source}: {field}"
    for end in range(len(loc), 0, -1):
        if names and (name := names.get(".".join(loc[:end]))) is not None:
            where = name
            break
    reason = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        reason = "unknown field (check the spelling)"
    elif first["type"] == "missing":
        reason = "missing"
    shown = first["type"] == "missing" or "got " in reason
    got = "" if shown else f" (got {first.get('input')!r})"
    return UserError(f"{where}: {reason}{got}.", "Fix it; docs/bots.md lists the fields.")
