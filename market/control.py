"""Control-plane changes as the running flow receives them (docs/control.md).

A change is one ``control_log`` row: a bot or a user indicator of one series was added, changed state or
removed. ``change_id`` orders them; the flow applies each once, in that order. At start the flow first
receives the current state as changes (``action="load"``), every one with ``change_id`` 0.. the cursor it
read them at, then the changes logged after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

BotState = Literal["created", "running", "paused", "stopped"]
BotAction = Literal["load", "add", "start", "pause", "stop", "remove"]
IndicatorAction = Literal["load", "add", "remove"]


@dataclass(frozen=True, slots=True)
class BotChange:
    """A bot was loaded at start, added, started, paused, stopped or removed.

    ``config`` is the bot's validated configuration as stored (``configs.bots.BotConfig`` dumped to
    JSON-compatible data); ``state`` the bot's state after the change."""

    change_id: int
    action: BotAction
    bot_id: int
    name: str
    exchange: str
    symbol: str
    timeframe: str
    state: BotState
    config: dict[str, Any]

    @property
    def series(self) -> str:
        """The key of the series the bot trades (``flows.indicators.series_key``'s format)."""
        return f"{self.exchange}|{self.symbol}|{self.timeframe}"


@dataclass(frozen=True, slots=True)
class IndicatorChange:
    """A user indicator was loaded at start, added or removed on one series.

    ``entry`` is the validated ``configs.indicators.IndicatorEntry`` as stored (``{"indicator", "label",
    "params"}``), ``None`` on remove."""

    change_id: int
    action: IndicatorAction
    exchange: str
    symbol: str
    timeframe: str
    label: str
    entry: dict[str, Any] | None

    @property
    def series(self) -> str:
        return f"{self.exchange}|{self.symbol}|{self.timeframe}"


ControlChange = BotChange | IndicatorChange
