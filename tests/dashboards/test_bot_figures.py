"""The Bots page's pure parts: the summary cells, the open position, the fills drawn on the candles,
and the create form (defaults and bounds from the strategy registry, one-line errors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from bokeh.models import ColumnDataSource

from configs.bots import BotConfig
from connectors.control_store import ControlError
from dashboards.bot_figures import bot_layout, bot_rows, empty_fills, position_html, summary_cells
from dashboards.bot_form import BotForm
from market.strategies.registry import STRATEGIES

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = {
    "name": "ema-btc",
    "symbol": "BTC-USDT",
    "timeframe": "1m",
    "strategy": "ema_crossover",
    "params": {"fast": 2, "slow": 3},
    "account": {"cash": 1000.0},
}


def bot(**fields: Any) -> dict[str, Any]:
    return {
        "bot_id": 1,
        "name": "ema-btc",
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "timeframe": "1m",
        "state": "running",
        "config": CONFIG,
        "time": T0,
        "close": 50.0,
        "cash": 600.0,
        "position": 10.0,
        "equity": 1100.0,
        "fills": 3,
        **fields,
    }


def test_summary_cells_give_pnl_against_the_starting_cash_and_exposure() -> None:
    cells = summary_cells(bot())
    assert cells[:4] == ["ema-btc", "okx BTC-USDT 1m", "ema_crossover(fast=2, slow=3)", "running"]
    # equity 1100 from cash 1000: +100 (+10 %); 10 units at 50 = 500 of 1100 equity exposed
    assert cells[4:9] == ["1,100.00", "+100.00 (+10.00 %)", "45.45 %", "long 10", "3"]
    assert cells[9] == "2026-03-01 12:00 UTC"
    short = summary_cells(bot(position=-2.0, equity=900.0, close=45.0))
    assert short[5:8] == ["-100.00 (-10.00 %)", "10.00 %", "short 2"]


def test_a_bot_before_its_first_candle_has_no_numbers() -> None:
    cells = summary_cells(bot(time=None, close=None, cash=None, position=None, equity=None, fills=0))
    assert cells[4:] == ["n/a", "n/a", "n/a", "flat", "0", ""]


def test_rows_escape_names_and_carry_state() -> None:
    table = bot_rows([bot(), bot(name="x<y", state="paused")], selected="ema-btc")
    assert table.count('data-testid="bot-row"') == 2
    assert 'data-bot="ema-btc" data-state="running" class="tcp-bot-selected"' in table
    assert 'data-bot="x&lt;y" data-state="paused">' in table and "<y" not in table


def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    times = pd.date_range(T0 + MINUTE, periods=6, freq="1min", tz="UTC")
    closes = [100.0, 102.0, 101.0, 104.0, 103.0, 106.0]
    opens = [100.0, *closes[:-1]]
    candles = pd.DataFrame(
        {"time": times, "open": opens, "high": [max(o, c) for o, c in zip(opens, closes, strict=True)],
         "low": [min(o, c) for o, c in zip(opens, closes, strict=True)], "close": closes, "volume": 1.0}
    )  # fmt: skip
    # bought 9.9 at the third candle's open (102), sold at the fifth's (104), bought 9.5 at the sixth's
    fills = pd.DataFrame(
        {
            "time": [times[1], times[3], times[4]],
            "seq": [0, 0, 0],
            "signal_time": [times[1], times[3], times[4]],
            "side": ["buy", "sell", "buy"],
            "price": [102.0, 104.0, 104.0],
            "quantity": [9.9, 9.9, 9.5],
            "fee": [1.0, 1.0, 0.5],
        }
    )
    position = [0.0, 0.0, 9.9, 9.9, 0.0, 9.5]
    cash = [1000.0, 1000.0, 0.0, 0.0, 1026.0, 37.5]
    equity = pd.DataFrame(
        {"time": times, "close": closes, "cash": cash, "position": position,
         "equity": [c + p * x for c, p, x in zip(cash, position, closes, strict=True)]}
    )  # fmt: skip
    return candles, equity, fills


def test_the_open_position_is_the_last_fill_marked_at_the_last_close() -> None:
    _, equity, fills = frames()
    text = position_html("BTC-USDT", equity, fills)
    # 9.5 bought at 104 with a fee of 0.5, marked at 106: 9.5 * 2 - 0.5 = +18.50
    assert "long 9.5 BTC-USDT since 2026-03-01 12:05 UTC at 104" in text
    assert "close 106 of 2026-03-01 12:06 UTC" in text and "unrealised +18.50" in text
    assert "equity 1,044.50" in text
    flat = position_html("BTC-USDT", equity.iloc[:5], fills.iloc[:2])
    assert flat.startswith('<p data-testid="bot-position">Flat;') and "equity 1,026.00" in flat
    assert "No candle processed yet" in position_html("BTC-USDT", equity.iloc[:0], empty_fills())


def sources(layout: Any) -> dict[str, ColumnDataSource]:
    return {m.name: m for m in layout.references() if isinstance(m, ColumnDataSource) and m.name}


def test_the_fills_are_drawn_on_the_candles_with_the_equity_below() -> None:
    candles, equity, fills = frames()
    layout = bot_layout(candles, equity, fills, 1000.0, "ema-btc")
    drawn = sources(layout)
    marks = drawn["tcp-bot-fills"].data
    assert list(marks["price"]) == [102.0, 104.0, 104.0]
    assert list(marks["marker"]) == ["triangle", "inverted_triangle", "triangle"]
    assert list(marks["time"]) == [t.timestamp() * 1000 for t in fills["time"]]
    assert list(drawn["tcp-bt-candles"].data["close"]) == list(candles["close"])
    assert list(drawn["tcp-bt-equity-points"].data["equity"]) == list(equity["equity"])
    assert len(drawn["tcp-bt-trades"].data["entry_time"]) == 0  # a bot's fills, not a backtest's trades
    empty = bot_layout(candles, equity.iloc[:1], empty_fills(), 1000.0, "new")
    assert len(sources(empty)["tcp-bot-fills"].data["price"]) == 0


# -- the create form --------------------------------------------------------------------------------
class Sent:
    def __init__(self, refuse: str | None = None) -> None:
        self.configs: list[BotConfig] = []
        self.refuse = refuse

    def __call__(self, config: BotConfig) -> str:
        if self.refuse:
            raise ControlError(self.refuse)
        self.configs.append(config)
        return f"created {config.name}"


def test_each_template_shows_its_parameters_with_the_registry_defaults_and_bounds() -> None:
    form = BotForm(["BTC-USDT", "ETH-USDT"], Sent())
    for name, spec in STRATEGIES.items():
        form.strategy.value = name
        shown = {n: (w.value, w.start, w.end) for n, w in form.param_inputs.items()}
        assert shown == {p.name: (p.default, p.minimum, p.maximum) for p in spec.params}, name


def test_a_valid_form_sends_the_config_a_bot_file_would_give() -> None:
    sent = Sent()
    form = BotForm(["BTC-USDT"], sent)
    form.name_input.value = " ema-btc "
    form.param_inputs["fast"].value, form.param_inputs["slow"].value = 2, 3
    form.cash.value, form.close_on_stop.value = 1000.0, True
    assert form.send() is not None
    expected = BotConfig.model_validate(CONFIG | {"close_on_stop": True})
    assert sent.configs == [expected]
    assert form.message.visible and form.message.alert_type == "success"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"name": "Bad Name"}, "bot: name: name 'Bad Name' must start with a-z or 0-9"),
        ({"fast": 1}, "bot: params: ema_crossover parameter 'fast' must be >= 2, got 1."),
        ({"fast": None}, "bot: params."),
        ({"fraction": 1.5}, "bot: account.fraction: Input should be less than or equal to 1"),
    ],
)
def test_an_invalid_form_says_what_is_wrong_in_one_line(change: dict[str, Any], said: str) -> None:
    sent = Sent()
    form = BotForm(["BTC-USDT"], sent)
    form.name_input.value = change.get("name", "ema-btc")
    if "fast" in change:
        form.param_inputs["fast"].value = change["fast"]
    form.fraction.value = change.get("fraction", 1.0)
    assert form.send() is None and sent.configs == []
    text = str(form.message.object)
    assert form.message.alert_type == "danger" and "\n" not in text
    assert text.startswith(said), text


def test_a_refused_bot_is_said_in_the_form() -> None:
    form = BotForm(["BTC-USDT"], Sent(refuse="a bot named 'ema-btc' already exists"))
    form.name_input.value = "ema-btc"
    assert form.send() is None
    assert form.message.object == "a bot named 'ema-btc' already exists"
