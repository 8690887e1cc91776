"""The chart's "Add indicator" form and the series' user indicators, each with a remove button: shown
only when the dashboard runs with control on (it is given a ``ControlStore``).

The form offers every indicator of the registry (``market.indicators.registry``) with its parameters as
numeric inputs (the registry's defaults and bounds) and an optional label (default: the indicator's
name in lower case). An entry is validated as configs/indicators.yaml's are
(``configs.indicators.IndicatorEntry``) and written through the control store, which refuses a label the
series already has (configured or user); any refusal is shown in one line. The running flow computes
the new indicator's history from the stored candles and then follows it live; the chart shows it as soon
as its first values are stored (``ChartStore.refresh_user_indicators``, ``ChartStore.pending``).

CSS classes for the browser tests: ``tcp-indicator-form`` (the whole), ``tcp-add-indicator-name`` (the
indicator), ``tcp-indicator-param-<name>`` (each parameter), ``tcp-add-indicator-label``,
``tcp-add-indicator`` (the Add button), ``tcp-indicator-message`` (the one-line outcome),
``tcp-user-indicators`` (the list), ``tcp-user-indicator`` (one entry, ``data-label``) and
``tcp-remove-indicator-<label>`` (its remove button).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import panel as pn
import psycopg
from pydantic import ValidationError

from configs.bots import bot_config_problem
from configs.indicators import IndicatorEntry
from connectors.control_store import ControlError, ControlStore
from dashboards.bot_form import Outcome, param_input
from dashboards.chart_store import ChartStore
from dashboards.data import split_series
from market.indicators import INDICATORS

__all__ = ["IndicatorForm", "describe"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def describe(entry: Mapping[str, Any]) -> str:
    """A user indicator in one line: ``SMA(timeperiod=20)``."""
    params = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry["params"].items()
    )
    return f"{entry['indicator']}({params})"


class IndicatorForm(pn.viewable.Viewer):
    """Adds user indicators to the store's series and removes them, through ``control``."""

    def __init__(self, store: ChartStore, control: ControlStore, **params: Any) -> None:
        super().__init__(**params)
        self.store, self.control = store, control
        self.indicator = pn.widgets.Select(
            label="Indicator", options=sorted(INDICATORS), value="SMA", width=130,
            css_classes=["tcp-add-indicator-name"],
        )  # fmt: skip
        self.params_row = pn.Row()
        self.param_inputs: dict[str, pn.widgets.Widget] = {}
        self.label = pn.widgets.TextInput(
            label="Label (optional)", width=140, css_classes=["tcp-add-indicator-label"]
        )
        self.add_button = pn.widgets.Button(
            label="Add",
            color="primary",
            width=80,
            margin=(24, 10, 10, 10),
            css_classes=["tcp-add-indicator"],
        )
        self.message = pn.pane.Alert("", visible=False, css_classes=["tcp-indicator-message"])
        self.listing = pn.Column(css_classes=["tcp-user-indicators"])
        self.indicator.param.watch(lambda _: self._show_params(), "value")
        self.add_button.on_click(self._add_clicked)
        store.param.watch(lambda _: self._show_user(), ["plan"])
        self._show_params()
        self._show_user()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.HTML("<b>Add indicator</b>", margin=(5, 5, 0, 5)),
            pn.Row(self.indicator, self.params_row, self.label, self.add_button),
            self.message,
            self.listing,
            css_classes=["tcp-indicator-form"],
            sizing_mode="stretch_width",
        )

    def _show_params(self) -> None:
        spec = INDICATORS[self.indicator.value]
        self.param_inputs = {}
        for p in spec.params:
            widget = param_input(p)
            widget.css_classes = [f"tcp-indicator-param-{p.name}"]
            self.param_inputs[p.name] = widget
        self.params_row[:] = list(self.param_inputs.values())
        self.label.placeholder = spec.name.lower()

    def _show_user(self) -> None:
        """One line per user indicator of the series, with its remove button."""
        rows = []
        for label, entry in self.store.user.items():
            remove = pn.widgets.Button(
                label="Remove",
                color="danger",
                variant="outline",
                width=80,
                css_classes=[f"tcp-remove-indicator-{label}"],
            )
            remove.on_click(partial(self._remove_clicked, label))
            text = f"<b>{html.escape(label)}</b>: {html.escape(describe(entry))}"
            line = f'<span class="tcp-user-indicator" data-label="{html.escape(label)}">{text}</span>'
            rows.append(pn.Row(pn.pane.HTML(line, margin=(12, 5)), remove))
        self.listing[:] = rows

    def _add_clicked(self, _: object) -> None:
        self.add()

    def _remove_clicked(self, label: str, _: object) -> None:
        self.remove(label)

    def entry(self) -> IndicatorEntry:
        """What the form holds, validated (raises ``ValidationError``)."""
        return IndicatorEntry.model_validate(
            {
                "indicator": self.indicator.value,
                "label": (self.label.value or "").strip() or None,
                "params": {name: getattr(w, "value", None) for name, w in self.param_inputs.items()},
            }
        )

    def add(self) -> IndicatorEntry | None:
        """Validate the form and add the indicator to the series; the outcome in one line. The entry
        added, or None when it was invalid or refused."""
        store = self.store
        try:
            entry = self.entry()
        except ValidationError as error:
            self.say(bot_config_problem(error, "indicator").problem, "danger")
            return None
        series = (*split_series(store.symbol), store.timeframe)
        try:
            _written(lambda: self.control.add_indicator(*series, entry, reserved=store.configured))
        except ControlError as error:
            self.say(str(error), "danger")
            return None
        self.say(
            f"Added {entry.key!r} to {store.symbol} {store.timeframe}: it is drawn once the flow has "
            "computed its history from the stored candles.",
            "success",
        )
        store.refresh_user_indicators(select=entry.key)
        return entry

    def remove(self, label: str) -> bool:
        """Stop computing a user indicator of the series (its stored values stay); whether it was."""
        store = self.store
        exchange, symbol = split_series(store.symbol)
        try:
            _written(lambda: self.control.remove_indicator(exchange, symbol, store.timeframe, label))
        except ControlError as error:
            self.say(str(error), "danger")
            return False
        self.say(f"Removed {label!r} from {store.symbol} {store.timeframe}.", "success")
        store.refresh_user_indicators()
        return True

    def say(self, text: str, kind: Outcome) -> None:
        self.message.object = " ".join(text.split())  # one line, whatever the error held
        self.message.alert_type = kind
        self.message.visible = True


def _written(write: Callable[[], T]) -> T:
    """A write through the control store; a database failure becomes a one-line ``ControlError``."""
    try:
        return write()
    except psycopg.Error as error:
        log.warning("user indicator write failed: %s: %s", type(error).__name__, error)
        raise ControlError(
            f"the database did not take the change ({type(error).__name__}); try again"
        ) from None
