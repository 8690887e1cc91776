"""User indicators on the chart without a browser, on a real PostgreSQL: the picker lists a series' user
indicators with the configured ones and draws their stored values; with a control store the "Add
indicator" form offers the registry's indicators with their defaults and bounds, adds one (which is drawn
once the flow has stored its history), says in one line why an entry is refused, and removes one.

The flow is played by the indicator step itself: it receives the control store's snapshot, computes the
history from the stored candles and its values are written as the live flow writes them. Oracle for the
values: TA-Lib over the stored closes.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
import pytest
import talib

from configs.indicators import IndicatorEntry
from connectors.control_store import ControlStore
from connectors.database import DatabaseWriter
from connectors.redis_codec import decode, encode, indicator_message
from connectors.redis_reader import LiveMessage
from connectors.resume import StoredHistory
from dashboards import chart_store
from dashboards.chart_store import ChartStore, columns
from dashboards.data import DashboardData
from dashboards.views import CandleChart
from flows.indicators import IndicatorOut, IndicatorStep
from market.control import IndicatorChange
from market.indicators import INDICATORS
from market.types import IndicatorValue
from sql.migrate import migrate
from tests.dashboards.chart_kit import CONFIG, MINUTE, T0, candle

CANDLES = [
    candle(T0 + i * MINUTE, str(Decimal(100) + Decimal(i % 7) * 3 - Decimal(i % 3))) for i in range(80)
]
CLOSES = np.array([float(c.close) for c in CANDLES])


@pytest.fixture
def url(pg_url: str, tmp_path: Path) -> str:
    """A database holding the series' candles and its configured indicators' values."""
    migrate(pg_url, "off")
    writer = DatabaseWriter(pg_url, spool_dir=tmp_path / "spool")
    step, state, out = IndicatorStep(CONFIG), None, list[IndicatorOut]()
    for c in CANDLES:
        state, emitted = step(state, c)
        out.extend(emitted)
    writer.write([*CANDLES, *out])
    writer.close()
    return pg_url


@pytest.fixture
def data(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[DashboardData]:
    monkeypatch.setattr(chart_store, "CHECK_SECONDS", 0.0)
    monkeypatch.setattr(chart_store, "PENDING_SECONDS", 0.0)
    shared = DashboardData.connect(url, None)
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def control(url: str) -> Iterator[ControlStore]:
    store = ControlStore(url)
    try:
        yield store
    finally:
        store.close()


def flow_applies(url: str, tmp_path: Path) -> list[IndicatorValue]:
    """What the running flow does with the stored user indicators: their history, written."""
    with ControlStore(url) as control:
        _, changes = control.snapshot()
    step, state, out = IndicatorStep(CONFIG, StoredHistory(url)), None, list[IndicatorOut]()
    for change in changes:
        if isinstance(change, IndicatorChange):
            state, emitted = step(state, change)
            out.extend(emitted)
    writer = DatabaseWriter(url, spool_dir=tmp_path / "flow-spool")
    writer.write(out)
    writer.close()
    return [v for v in out if isinstance(v, IndicatorValue)]


def shown_values(store: ChartStore, label: str, output: str = "value") -> list[float]:
    values = columns(store.sources[label])[output]
    return [float(v) for v in values if v == v]  # NaN: the warm-up


def add(control: ControlStore, label: str, indicator: str, **params: float) -> None:
    entry = IndicatorEntry(indicator=indicator, label=label, params=params)
    control.add_indicator("okx", "BTC-USDT", "1m", entry)


def test_a_read_only_chart_lists_the_user_indicators_and_draws_their_values(
    data: DashboardData, control: ControlStore, url: str, tmp_path: Path
) -> None:
    add(control, "sma_fast", "SMA", timeperiod=4)
    flow_applies(url, tmp_path)
    store = ChartStore(data, ["BTC-USDT"], CONFIG)
    chart = CandleChart(store)
    assert chart.form is None  # no control store: no form
    assert store.param.indicators.objects == ["ema_fast", "bbands", "rsi", "atr", "macd", "sma_fast"]
    store.indicators = [*store.indicators, "sma_fast"]
    expected = talib.SMA(CLOSES, timeperiod=4)
    assert shown_values(store, "sma_fast") == pytest.approx(list(expected[~np.isnan(expected)]), rel=1e-12)
    assert ("sma_fast", "value") in store.plan.overlays  # type: ignore[union-attr]
    other = ChartStore(data, ["BTC-USDT"], CONFIG, timeframe="5m")  # another series: not offered
    assert "sma_fast" not in other.param.indicators.objects


def test_the_form_offers_the_registry_with_its_defaults_and_bounds(
    data: DashboardData, control: ControlStore
) -> None:
    form = CandleChart(ChartStore(data, ["BTC-USDT"], CONFIG), control=control).form
    assert form is not None
    assert form.indicator.options == sorted(INDICATORS)
    for name in ("BBANDS", "STOCH", "SAR", "OBV"):
        form.indicator.value = name
        spec = INDICATORS[name]
        assert list(form.param_inputs) == [p.name for p in spec.params]
        for p in spec.params:
            widget: Any = form.param_inputs[p.name]
            assert (widget.value, widget.start, widget.end) == (p.default, p.minimum, p.maximum)
            assert widget.css_classes == [f"tcp-indicator-param-{p.name}"]
        assert form.label.placeholder == name.lower()


def test_an_added_indicator_is_drawn_once_its_history_is_stored(
    data: DashboardData, control: ControlStore, url: str, tmp_path: Path
) -> None:
    store = ChartStore(data, ["BTC-USDT"], CONFIG)
    form = CandleChart(store, control=control).form
    assert form is not None
    form.indicator.value = "EMA"
    form.param_inputs["timeperiod"].value = 6
    form.label.value = "ema_six"
    form.add_button.clicks += 1  # as the page's click does
    assert form.message.alert_type == "success" and "ema_six" in form.message.object
    [stored] = control.indicators()
    assert (stored.label, stored.entry.indicator, stored.entry.params) == (
        "ema_six",
        "EMA",
        {"timeperiod": 6},
    )
    assert "ema_six" in store.indicators  # offered and shown at once, waiting for its values
    assert store.pending == ["ema_six"]
    store.poll_live()
    assert store.pending == ["ema_six"] and shown_values(store, "ema_six") == []
    history = flow_applies(url, tmp_path)
    # its history published at once: not streamed value by value into the empty source, read stored
    store.apply(
        [
            LiveMessage(channel, decode(encode(payload)))
            for _, channel, payload in map(indicator_message, history)
        ]
    )
    assert shown_values(store, "ema_six") == []
    store.poll_live()
    assert store.pending == []
    expected = talib.EMA(CLOSES, timeperiod=6)
    assert shown_values(store, "ema_six") == pytest.approx(list(expected[~np.isnan(expected)]), rel=1e-12)
    listed = form.listing.select(pn.pane.HTML)
    assert any(
        'data-label="ema_six"' in str(p.object) and "EMA(timeperiod=6)" in str(p.object) for p in listed
    )


@pytest.mark.parametrize(
    ("label", "params", "says"),
    [
        ("Bad Label", {}, "indicator: label: label 'Bad Label' must start with a lower-case letter"),
        ("ema_fast", {}, "label 'ema_fast' is already configured on BTC-USDT 1m"),
        ("taken", {}, "BTC-USDT 1m already has a user indicator labelled 'taken'"),
        ("", {"timeperiod": 1}, "indicator: params: RSI parameter 'timeperiod' must be >= 2"),
    ],
)
def test_a_refused_entry_is_said_in_one_line(
    data: DashboardData, control: ControlStore, label: str, params: dict[str, int], says: str
) -> None:
    add(control, "taken", "SMA")
    store = ChartStore(data, ["BTC-USDT"], CONFIG)
    form = CandleChart(store, control=control).form
    assert form is not None
    form.indicator.value = "RSI"
    form.label.value = label if label != "taken" else "taken"
    for name, value in params.items():
        form.param_inputs[name].param.update(start=None)  # what a page edited by hand may send
        form.param_inputs[name].value = value
    assert form.add() is None
    text = form.message.object
    assert form.message.alert_type == "danger" and form.message.visible
    assert says in text and "\n" not in text and "Traceback" not in text
    assert [i.label for i in control.indicators()] == ["taken"]


def test_remove_and_changes_made_elsewhere_reach_the_picker(
    data: DashboardData, control: ControlStore
) -> None:
    store = ChartStore(data, ["BTC-USDT"], CONFIG)
    form = CandleChart(store, control=control).form
    assert form is not None
    add(control, "elsewhere", "WMA", timeperiod=3)  # another session, or the command line
    store.poll_live()
    assert "elsewhere" in store.param.indicators.objects
    buttons = [
        b for b in form.listing.select(pn.widgets.Button) if "tcp-remove-indicator-elsewhere" in b.css_classes
    ]
    assert len(buttons) == 1
    buttons[0].clicks += 1
    assert control.indicators() == []
    assert "elsewhere" not in store.param.indicators.objects and "elsewhere" not in store.indicators
    assert form.message.alert_type == "success"
    assert not form.remove("elsewhere")  # gone already: said, not raised
    assert "has no user indicator labelled 'elsewhere'" in form.message.object
