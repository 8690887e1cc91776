"""The Bots page's create form: a name, a series, one of the strategy templates with its parameters, the
account and whether a stop closes the position.

Each template's parameters are numeric inputs with the registry's defaults and bounds
(``market.strategies.registry``); the whole is validated as a bot file is (``configs.bots.BotConfig``)
and a failure is shown in one line naming the field. A valid configuration goes to ``submit`` (the page
writes it through the control store); what that refuses (``ControlError``: a name already taken) is
shown the same way. Widgets carry CSS classes for the browser tests: ``tcp-bot-name``,
``tcp-bot-symbol``, ``tcp-bot-timeframe``, ``tcp-bot-strategy``, ``tcp-bot-param-<name>``,
``tcp-bot-cash``, ``tcp-bot-fraction``, ``tcp-bot-fee``, ``tcp-bot-slippage``, ``tcp-bot-short``,
``tcp-bot-close-on-stop``, ``tcp-bot-create`` and ``tcp-bot-form-error``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import panel as pn
from pydantic import ValidationError

from configs.backtest import AccountSection
from configs.bots import BotConfig, bot_config_problem
from connectors.control_store import ControlError
from market.indicators.registry import ParamSpec
from market.strategies.registry import STRATEGIES
from market.timeframes import TIMEFRAMES

__all__ = ["BotForm", "param_input"]

ACCOUNT = AccountSection()
"""The account's defaults, shown in the form."""
Outcome = Literal["success", "danger"]
"""How a message is shown: green or red."""
Submit = Callable[[BotConfig], str]
"""Writes a valid configuration; returns what to say, raises ``ControlError`` when refused."""


def param_input(spec: ParamSpec) -> pn.widgets.Widget:
    """A numeric input for one template parameter: its default, its bounds, whole numbers for ``int``."""
    kind = pn.widgets.IntInput if spec.kind is int else pn.widgets.FloatInput
    bounds = {"start": spec.minimum, "end": spec.maximum}
    return kind(
        label=spec.name,
        value=spec.kind(spec.default),
        width=110,
        css_classes=[f"tcp-bot-param-{spec.name}"],
        **{k: v for k, v in bounds.items() if v is not None},
    )


class BotForm(pn.viewable.Viewer):
    """The create form; ``submit`` receives each valid configuration."""

    def __init__(self, instruments: Sequence[str], submit: Submit, **params: Any) -> None:
        super().__init__(**params)
        self.submit = submit
        self.name_input = pn.widgets.TextInput(
            label="Name", placeholder="ema-btc-1m", width=160, css_classes=["tcp-bot-name"]
        )
        self.symbol = pn.widgets.Select(
            label="Instrument", options=list(instruments), width=150, css_classes=["tcp-bot-symbol"]
        )
        self.timeframe = pn.widgets.Select(
            label="Timeframe", options=list(TIMEFRAMES), width=90, css_classes=["tcp-bot-timeframe"]
        )
        self.strategy = pn.widgets.Select(
            label="Strategy", options=list(STRATEGIES), width=170, css_classes=["tcp-bot-strategy"]
        )
        self.params_row = pn.Row()
        self.param_inputs: dict[str, pn.widgets.Widget] = {}
        self.description = pn.pane.HTML("", margin=(0, 10))
        self.cash = pn.widgets.FloatInput(
            label="Cash", value=ACCOUNT.cash, start=0.0, width=110, css_classes=["tcp-bot-cash"]
        )
        self.fraction = pn.widgets.FloatInput(
            label="Fraction", value=ACCOUNT.fraction, start=0.0, end=1.0, step=0.1, width=90,
            css_classes=["tcp-bot-fraction"],
        )  # fmt: skip
        self.fee = pn.widgets.FloatInput(
            label="Fee (bps)", value=ACCOUNT.fee_bps, start=0.0, width=90, css_classes=["tcp-bot-fee"]
        )
        self.slippage = pn.widgets.FloatInput(
            label="Slippage (bps)", value=ACCOUNT.slippage_bps, start=0.0, width=110,
            css_classes=["tcp-bot-slippage"],
        )  # fmt: skip
        self.short = pn.widgets.Checkbox(
            label="Short on sell", value=ACCOUNT.short, css_classes=["tcp-bot-short"]
        )
        self.close_on_stop = pn.widgets.Checkbox(label="Close on stop", css_classes=["tcp-bot-close-on-stop"])
        self.create = pn.widgets.Button(
            label="Create bot", color="primary", width=120, css_classes=["tcp-bot-create"]
        )
        self.message = pn.pane.Alert("", visible=False, css_classes=["tcp-bot-form-error"])
        self.strategy.param.watch(lambda _: self._show_params(), "value")
        self.create.on_click(self._clicked)
        self._show_params()

    def __panel__(self) -> pn.viewable.Viewable:
        checks = pn.Column(self.short, self.close_on_stop, margin=(20, 5, 5, 5))
        return pn.Column(
            pn.pane.HTML("<b>New bot</b>"),
            pn.Row(self.name_input, self.symbol, self.timeframe, self.strategy, self.params_row),
            self.description,
            pn.Row(self.cash, self.fraction, self.fee, self.slippage, checks),
            self.create,
            self.message,
            css_classes=["tcp-bot-form"],
        )

    def _clicked(self, _: object) -> None:
        self.send()

    def _show_params(self) -> None:
        spec = STRATEGIES[self.strategy.value]
        self.param_inputs = {p.name: param_input(p) for p in spec.params}
        self.params_row[:] = list(self.param_inputs.values())
        self.description.object = f"<i>{spec.name}</i>: {spec.description}"

    def data(self) -> dict[str, Any]:
        """What the form holds, as a bot file would (inputs left empty are ``None``)."""
        return {
            "name": (self.name_input.value or "").strip(),
            "symbol": self.symbol.value,
            "timeframe": self.timeframe.value,
            "strategy": self.strategy.value,
            "params": {name: getattr(w, "value", None) for name, w in self.param_inputs.items()},
            "account": {
                "cash": self.cash.value,
                "fraction": self.fraction.value,
                "fee_bps": self.fee.value,
                "slippage_bps": self.slippage.value,
                "short": self.short.value,
            },
            "close_on_stop": self.close_on_stop.value,
        }

    def send(self) -> BotConfig | None:
        """Validate the form and submit it; the outcome is shown in one line. The configuration sent,
        or None when it was invalid or refused."""
        try:
            config = BotConfig.model_validate(self.data())
        except ValidationError as error:
            self.say(bot_config_problem(error, "bot").problem, "danger")
            return None
        try:
            said = self.submit(config)
        except ControlError as error:
            self.say(str(error), "danger")
            return None
        self.say(said, "success")
        return config

    def say(self, text: str, kind: Outcome) -> None:
        self.message.object = text
        self.message.alert_type = kind
        self.message.visible = True
