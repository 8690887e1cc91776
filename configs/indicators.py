"""Which indicators and strategies run on which instruments and timeframes.

The configuration is a list of *profiles*. A profile names instruments (or ``"*"`` for all) and
timeframes (or ``"*"`` for 1m, 5m, 15m, 1h, 4h, 1d) and the indicators and strategies to run on each
matching series. Every indicator and strategy has a *label* (default: its lower-case name) that keys its
outputs, so the same indicator can run twice with different parameters (``ema_fast``/``ema_slow``).

Validation happens when the file is loaded and names the offending field: unknown indicator or strategy,
unknown parameter, bad value (e.g. a period below TA-Lib's minimum), unknown timeframe, duplicate label
(within a profile, or across profiles that can apply to the same series).

    config = load_indicator_config("configs/indicators.yaml")
    plan = config.plan("BTC-USDT", "5m")     # fresh state objects for one series
    for candle in candles:
        outputs = {label: ind.update(candle) for label, ind in plan.indicators.items()}
        signals = [s for strat in plan.strategies.values() if (s := strat.update(candle))]

``IndicatorsConfig`` is a plain pydantic model so it can also be nested as a section of the
application's settings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from market.indicators import Indicator, build_indicator, indicator_spec
from market.strategies import Strategy, build_strategy, strategy_spec
from market.timeframes import TIMEFRAMES, timeframe

DEFAULT_CONFIG_PATH = Path(__file__).with_name("indicators.yaml")

_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

Params = dict[str, StrictInt | StrictFloat]


def _check_label(label: str | None) -> str | None:
    if label is not None and not _LABEL.match(label):
        raise ValueError(
            f"label {label!r} must start with a lower-case letter and contain only a-z, 0-9 and _ (max 63)"
        )
    return label


class IndicatorEntry(BaseModel):
    """One indicator to run: registry name, optional label, parameters (TA-Lib names and defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    indicator: str
    label: str | None = None
    params: Params = Field(default_factory=dict)

    @field_validator("indicator")
    @classmethod
    def _known_indicator(cls, name: str) -> str:
        return indicator_spec(name).name

    @field_validator("label")
    @classmethod
    def _label(cls, label: str | None) -> str | None:
        return _check_label(label)

    @field_validator("params")
    @classmethod
    def _params(cls, params: Params, info: ValidationInfo) -> Params:
        name = info.data.get("indicator")
        if name is not None:  # an unknown indicator is reported on its own field
            build_indicator(name, **params)
        return params

    @property
    def key(self) -> str:
        return self.label or self.indicator.lower()

    def build(self) -> Indicator:
        return build_indicator(self.indicator, **self.params)


class StrategyEntry(BaseModel):
    """One strategy template to run: registry name, optional label, parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str
    label: str | None = None
    params: Params = Field(default_factory=dict)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        return strategy_spec(name).name

    @field_validator("label")
    @classmethod
    def _label(cls, label: str | None) -> str | None:
        return _check_label(label)

    @field_validator("params")
    @classmethod
    def _params(cls, params: Params, info: ValidationInfo) -> Params:
        name = info.data.get("strategy")
        if name is not None:
            kwargs: dict[str, Any] = dict(params)
            build_strategy(name, **kwargs)
        return params

    @property
    def key(self) -> str:
        return self.label or self.strategy

    def build(self) -> Strategy:
        kwargs: dict[str, Any] = dict(self.params)
        return build_strategy(self.strategy, label=self.key, **kwargs)


def _duplicate(keys: list[str]) -> str | None:
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            return k
        seen.add(k)
    return None


class Profile(BaseModel):
    """Indicators and strategies for a set of instruments and timeframes (``"*"`` = all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruments: Literal["*"] | list[str] = "*"
    timeframes: Literal["*"] | list[str] = "*"
    indicators: list[IndicatorEntry] = Field(default_factory=list)
    strategies: list[StrategyEntry] = Field(default_factory=list)

    @field_validator("instruments")
    @classmethod
    def _instruments(cls, value: Literal["*"] | list[str]) -> Literal["*"] | list[str]:
        if value == "*":
            return value
        if not value:
            raise ValueError('instruments must not be empty; use "*" for every instrument')
        if "*" in value:
            return "*"
        for symbol in value:
            if not symbol.strip() or symbol != symbol.strip():
                raise ValueError(f"instrument {symbol!r} must be a non-empty symbol without spaces")
        return value

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, value: Literal["*"] | list[str]) -> Literal["*"] | list[str]:
        if value == "*":
            return value
        if not value:
            raise ValueError('timeframes must not be empty; use "*" for every timeframe')
        if "*" in value:
            return "*"
        for name in value:
            timeframe(name)  # raises "unknown timeframe ..."
        return value

    @model_validator(mode="after")
    def _unique_labels(self) -> Profile:
        dup = _duplicate([e.key for e in self.indicators])
        if dup is not None:
            raise ValueError(
                f"indicators: duplicate label {dup!r}; give each entry of the same indicator a label"
            )
        dup = _duplicate([e.key for e in self.strategies])
        if dup is not None:
            raise ValueError(
                f"strategies: duplicate label {dup!r}; give each entry of the same strategy a label"
            )
        return self

    def instrument_set(self) -> set[str] | None:
        return None if self.instruments == "*" else set(self.instruments)

    def timeframe_set(self) -> set[str]:
        return set(TIMEFRAMES) if self.timeframes == "*" else set(self.timeframes)

    def applies_to(self, symbol: str, tf: str) -> bool:
        instruments = self.instrument_set()
        return (instruments is None or symbol in instruments) and tf in self.timeframe_set()

    def overlaps(self, other: Profile) -> bool:
        mine, theirs = self.instrument_set(), other.instrument_set()
        instruments_meet = mine is None or theirs is None or bool(mine & theirs)
        return instruments_meet and bool(self.timeframe_set() & other.timeframe_set())


@dataclass
class RunPlan:
    """Fresh indicator and strategy state objects for one (symbol, timeframe) series, by label."""

    symbol: str
    timeframe: str
    indicators: dict[str, Indicator] = field(default_factory=dict)
    strategies: dict[str, Strategy] = field(default_factory=dict)


class IndicatorsConfig(BaseModel):
    """The whole indicator/strategy configuration: a list of profiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profiles: list[Profile] = Field(default_factory=list)

    @model_validator(mode="after")
    def _labels_unique_across_overlapping_profiles(self) -> IndicatorsConfig:
        for j, later in enumerate(self.profiles):
            for i, earlier in enumerate(self.profiles[:j]):
                if not later.overlaps(earlier):
                    continue
                for kind in ("indicators", "strategies"):
                    mine = {e.key for e in getattr(later, kind)}
                    theirs = {e.key for e in getattr(earlier, kind)}
                    common = sorted(mine & theirs)
                    if common:
                        raise ValueError(
                            f"profiles.{j}.{kind}: duplicate label {common[0]!r}, also used by profiles.{i} "
                            "for overlapping instruments and timeframes"
                        )
        return self

    def plan(self, symbol: str, tf: str) -> RunPlan:
        """Fresh state objects for every indicator and strategy configured for ``symbol`` on ``tf``."""
        timeframe(tf)
        plan = RunPlan(symbol, tf)
        for profile in self.profiles:
            if profile.applies_to(symbol, tf):
                for ind in profile.indicators:
                    plan.indicators[ind.key] = ind.build()
                for strat in profile.strategies:
                    plan.strategies[strat.key] = strat.build()
        return plan


def parse_indicator_config(data: Any) -> IndicatorsConfig:
    """Validate already-parsed YAML/JSON data (raises pydantic.ValidationError naming the field)."""
    return IndicatorsConfig.model_validate(data if data is not None else {})


def load_indicator_config(path: str | Path = DEFAULT_CONFIG_PATH) -> IndicatorsConfig:
    """Load and validate a YAML (``.yaml``/``.yml``) or JSON (``.json``) configuration file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    return parse_indicator_config(data)
