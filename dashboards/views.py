"""The candle chart's view: the selectors, the summary, the alerts and the figures of one ``ChartStore``.

``CandleChart`` is thin: its widgets are made from the store's parameters, and it watches what the store
publishes (``plan``: the figures are rebuilt by ``dashboards.figures.chart_layout``; ``state``: the summary
line and the empty-state notice of ``dashboards.summary``; ``load_error``: the red alert). Loading, live
updates and the checks of the database are the store's (``dashboards.chart_store``); the health page is
``dashboards.health``.

Given a control store (``CandleChart(store, control=ControlStore(...))``: the dashboard runs with control
on), the chart also shows ``dashboards.indicator_form.IndicatorForm``: the "Add indicator" form and the
series' user indicators with a remove button each; without one it is read-only. CSS classes for the
browser tests: the picker ``tcp-indicators``; the form ``tcp-indicator-form``, ``tcp-add-indicator-name``,
``tcp-indicator-param-<name>``, ``tcp-add-indicator-label``, ``tcp-add-indicator`` (Add),
``tcp-indicator-message``; the list ``tcp-user-indicators``, ``tcp-user-indicator`` (``data-label``) and
``tcp-remove-indicator-<label>``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import panel as pn
import param
from param.parameters import NoNone

from connectors.control_store import ControlStore
from dashboards.chart_store import ChartStore
from dashboards.figures import chart_layout
from dashboards.indicator_form import IndicatorForm
from dashboards.summary import empty_html, summary_html

__all__ = ["CandleChart"]


class CandleChart(pn.viewable.Viewer):
    """Candles of one series with volume, indicator overlays and sub-panels, signals and the live candle."""

    store: param.ClassSelector[ChartStore] = param.ClassSelector(
        class_=ChartStore, allow_None=NoNone, doc="The series shown (given to the constructor)"
    )

    def __init__(self, store: ChartStore, control: ControlStore | None = None, **params: Any) -> None:
        super().__init__(store=store, **params)
        self.form = IndicatorForm(store, control) if control is not None else None
        self.summary = pn.pane.HTML(
            "Loading ...", css_classes=["tcp-chart-summary"], sizing_mode="stretch_width"
        )
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["tcp-chart-alert"])
        self.notice = pn.pane.HTML("", visible=False, css_classes=["tcp-empty"], sizing_mode="stretch_width")
        self.plot = pn.pane.Bokeh(sizing_mode="stretch_width", css_classes=["tcp-chart"])
        store.param.watch(lambda _: self._show_plan(), ["plan"])
        store.param.watch(lambda _: self._show_state(), ["state"])
        store.param.watch(lambda _: self._show_error(), ["load_error"])
        self._show_error()
        self._show_plan()
        self._show_state()

    def __panel__(self) -> pn.viewable.Viewable:
        store = self.store
        controls = pn.Row(
            pn.widgets.Select.from_param(store.param.symbol, width=170, css_classes=["tcp-instrument"]),
            pn.widgets.RadioButtonGroup.from_param(
                store.param.timeframe,
                name="Timeframe",
                css_classes=["tcp-timeframe"],
                margin=(26, 10, 10, 10),
            ),
            pn.widgets.Select.from_param(store.param.history, width=130, css_classes=["tcp-history"]),
        )
        picker = pn.widgets.CheckButtonGroup.from_param(
            store.param.indicators, css_classes=["tcp-indicators"]
        )
        return pn.Column(
            controls,
            pn.Row(pn.pane.HTML("<b>Indicators</b>", margin=(12, 5)), picker),
            *([self.form] if self.form is not None else []),
            self.summary,
            self.alert,
            self.notice,
            self.plot,
            sizing_mode="stretch_width",
        )

    def _show_plan(self) -> None:
        if self.store.plan is not None:
            self.plot.object = chart_layout(self.store.plan, self.store.sources)

    def _show_error(self) -> None:
        """The history could not be read: say why, until the next load succeeds."""
        error = self.store.load_error
        if error is not None:
            self.alert.object = error
        self.alert.visible = error is not None

    def _show_state(self) -> None:
        state = self.store.state
        if state is None:
            return
        now = datetime.now(UTC)
        self.summary.object = summary_html(state, now)
        empty = not state.candles["time"] and state.database_answers
        if empty:
            self.notice.object = empty_html(state, now)
        self.notice.visible = empty
