"""A backtest's configuration file: the indicators schema (``configs.indicators``, docs/indicators.md)
plus an ``account`` section (docs/backtest.md, "Running a backtest").

    account:
      cash: 10000          # starting cash, quote currency (> 0)
      fraction: 1.0        # of cash committed per entry, in (0, 1]
      fee_bps: 10          # fee per fill, basis points of the notional (10 bps = 0.1 %)
      slippage_bps: 0      # fill price moved against the trade, basis points
      short: false         # sell signals open shorts
    profiles:
      - instruments: "*"
        timeframes: [1m]
        strategies:
          - {strategy: ema_crossover, params: {fast: 9, slow: 21}}

Validation names the offending field, as for the indicators file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from configs.indicators import IndicatorsConfig


class AccountSection(BaseModel):
    """The simulated account (``market.backtest.AccountSettings``, with fee and slippage in bps)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cash: float = Field(default=10_000.0, gt=0)
    fraction: float = Field(default=1.0, gt=0, le=1)
    fee_bps: float = Field(default=10.0, ge=0, lt=10_000)
    slippage_bps: float = Field(default=0.0, ge=0, lt=10_000)
    short: bool = False


class BacktestConfig(IndicatorsConfig):
    """The indicator/strategy profiles and the account they trade with."""

    account: AccountSection = Field(default_factory=AccountSection)

    def indicators(self) -> IndicatorsConfig:
        """The profiles alone, as the live flow's indicator step takes them."""
        return IndicatorsConfig(profiles=self.profiles)


def parse_backtest_config(data: Any) -> BacktestConfig:
    """Validate already-parsed YAML/JSON data (raises pydantic.ValidationError naming the field)."""
    return BacktestConfig.model_validate(data if data is not None else {})


def load_backtest_config(path: str | Path) -> BacktestConfig:
    """Load and validate a YAML (``.yaml``/``.yml``) or JSON (``.json``) backtest configuration."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    return parse_backtest_config(data)
