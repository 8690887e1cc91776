"""The simulated account against hand-worked examples and an independent loop over (open, close, action)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.backtest import Account, AccountSettings, EquityCurve, EquityPoint
from market.types import Candle, Signal

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)


def at(minute: int) -> datetime:
    return T0 + minute * MIN


def candle(minute: int, open_: float, close: float) -> Candle:
    """The 1m candle opening at ``minute``."""
    o, c = Decimal(repr(open_)), Decimal(repr(close))
    return Candle(
        "okx", "BTC-USDT", "1m", at(minute), at(minute + 1), o, max(o, c), min(o, c), c,
        Decimal(1), Decimal(1), 1, None, None, None,
    )  # fmt: skip


def signal(minute: int, action: str) -> Signal:
    return Signal("okx", "BTC-USDT", "1m", at(minute), "test", action, "", {})  # type: ignore[arg-type]


# --- hand-worked examples ------------------------------------------------------------------------


def test_buy_then_sell_with_fee_and_slippage_by_hand() -> None:
    # fee 10 bps, slippage 1 %; cash chosen so the quantity is round:
    # buy at open 100: p = 100 * 1.01 = 101; q = 10110.1 / (101 * 1.001) = 10110.1 / 101.101 = 100;
    #   fee = 100 * 101 * 0.001 = 10.1; cash = 10110.1 - 100 * 101 * 1.001 = 0.
    # sell at open 120: p = 120 * 0.99 = 118.8; proceeds 11880; fee 11.88; cash = 11880 * 0.999 = 11868.12.
    # pnl = 11880 - 11.88 - 10100 - 10.1 = 1758.02 = final equity - starting cash.
    account = Account(AccountSettings(cash=10110.1, fee=0.001, slippage=0.01))
    assert account.on_candle(candle(0, 99, 100)).fills == ()
    account.on_signal(signal(1, "buy"))  # stamped at the first candle's close = the next one's open
    step = account.on_candle(candle(1, 100, 110))
    (buy,) = step.fills
    assert (buy.side, buy.time, buy.signal_time) == ("buy", at(1), at(1))
    assert buy.price == pytest.approx(101)
    assert buy.quantity == pytest.approx(100)
    assert buy.fee == pytest.approx(10.1)
    assert step.equity.cash == pytest.approx(0, abs=1e-9)
    assert step.equity.position == pytest.approx(100)
    assert step.equity.equity == pytest.approx(11000)  # 100 * close 110
    assert step.equity.time == at(2) and step.equity.close == 110
    account.on_signal(signal(2, "sell"))
    step = account.on_candle(candle(2, 120, 125))
    (sell,) = step.fills
    assert (sell.side, sell.price, sell.fee) == ("sell", pytest.approx(118.8), pytest.approx(11.88))
    (trade,) = step.closed
    assert (trade.side, trade.entry_time, trade.exit_time, trade.open) == ("long", at(1), at(2), False)
    assert (trade.entry_price, trade.exit_price) == (pytest.approx(101), pytest.approx(118.8))
    assert trade.pnl == pytest.approx(1758.02)
    assert trade.fees == pytest.approx(21.98)
    assert step.equity.cash == pytest.approx(11868.12)
    assert step.equity.equity == pytest.approx(11868.12) and step.equity.position == 0
    assert account.open_trade() is None


def test_short_then_cover_by_hand() -> None:
    # short at open 100 with slippage 1 %: p = 99; q = 9909.9 / (99 * 1.001) = 100; proceeds 9900,
    #   fee 9.9, cash = 9909.9 + 9900 * 0.999 = 19800; equity at close 95 = 19800 - 100 * 95 = 10300.
    # cover at open 90: p = 90.9; cost 9090, fee 9.09; cash = 19800 - 9090 * 1.001 = 10700.91.
    # pnl = 9900 - 9.9 - 9090 - 9.09 = 791.01.
    account = Account(AccountSettings(cash=9909.9, fee=0.001, slippage=0.01, short=True))
    account.on_signal(signal(0, "sell"))
    step = account.on_candle(candle(0, 100, 95))
    (fill,) = step.fills
    assert (fill.side, fill.price, fill.quantity) == ("sell", pytest.approx(99), pytest.approx(100))
    assert step.equity.cash == pytest.approx(19800)
    assert step.equity.position == pytest.approx(-100)
    assert step.equity.equity == pytest.approx(10300)
    account.on_signal(signal(1, "flat"))
    step = account.on_candle(candle(1, 90, 91))
    (trade,) = step.closed
    assert (trade.side, trade.exit_price, trade.pnl) == ("short", pytest.approx(90.9), pytest.approx(791.01))
    assert step.equity.equity == pytest.approx(10700.91)


def test_long_only_ignores_what_it_cannot_do() -> None:
    account = Account(AccountSettings(fee=0))
    account.on_signal(signal(0, "sell"))  # flat and long-only: nothing to sell
    assert account.on_candle(candle(0, 100, 100)).fills == ()
    account.on_signal(signal(1, "buy"))
    assert len(account.on_candle(candle(1, 100, 100)).fills) == 1
    account.on_signal(signal(2, "buy"))  # already long
    assert account.on_candle(candle(2, 100, 100)).fills == ()
    account.on_signal(signal(3, "flat"))  # flat closes a long
    assert len(account.on_candle(candle(3, 100, 100)).closed) == 1
    account.on_signal(signal(4, "flat"))
    assert account.on_candle(candle(4, 100, 100)).fills == ()
    assert account.position == 0 and account.cash == 10_000


def test_reversal_closes_and_opens_at_the_same_fill() -> None:
    # no fee, no slippage: buy 100 at 100, then sell at 125 closes (pnl 2500) and shorts 12500 / 125 = 100.
    account = Account(AccountSettings(fee=0, short=True))
    account.on_signal(signal(0, "buy"))
    account.on_candle(candle(0, 100, 120))
    account.on_signal(signal(1, "sell"))
    step = account.on_candle(candle(1, 125, 130))
    assert [(f.side, f.quantity) for f in step.fills] == [("sell", 100), ("sell", 100)]
    (trade,) = step.closed
    assert trade.pnl == 2500
    assert step.equity.position == -100 and step.equity.cash == 25_000
    assert step.equity.equity == 25_000 - 100 * 130
    account.on_signal(signal(2, "buy"))  # covers the short at 120 (pnl 500) and goes long 13000 / 120
    step = account.on_candle(candle(2, 120, 120))
    assert [trade.side for trade in step.closed] == ["short"]
    assert step.closed[0].pnl == 500
    assert step.equity.position == pytest.approx(13_000 / 120)


def test_a_signal_before_a_missing_candle_fills_at_the_first_later_open() -> None:
    account = Account(AccountSettings(fee=0))
    account.on_candle(candle(0, 100, 101))
    account.on_signal(signal(1, "buy"))  # minutes 1 to 4 have no candle
    step = account.on_candle(candle(5, 200, 201))
    (fill,) = step.fills
    assert (fill.time, fill.signal_time, fill.price) == (at(5), at(1), 200)


def test_a_signal_never_fills_at_a_price_before_its_time() -> None:
    account = Account(AccountSettings(fee=0))
    account.on_signal(signal(3, "buy"))
    assert account.on_candle(candle(1, 50, 51)).fills == ()  # opens before the signal
    assert account.on_candle(candle(2, 60, 61)).fills == ()
    (fill,) = account.on_candle(candle(3, 70, 71)).fills
    assert (fill.time, fill.price) == (at(3), 70)


def test_a_signal_delivered_late_fills_at_the_next_candle_not_in_the_past() -> None:
    account = Account(AccountSettings(fee=0))
    account.on_candle(candle(1, 100, 100))
    account.on_signal(signal(1, "buy"))  # its candle is already through
    (fill,) = account.on_candle(candle(2, 110, 110)).fills
    assert (fill.time, fill.price) == (at(2), 110)


def test_of_several_due_signals_only_the_latest_acts() -> None:
    account = Account(AccountSettings(fee=0, short=True))
    account.on_signal(signal(2, "sell"))
    account.on_signal(signal(1, "buy"))  # out of order: kept sorted by time
    account.on_signal(signal(9, "buy"))  # not due yet
    step = account.on_candle(candle(3, 100, 100))
    assert [(f.side, f.signal_time) for f in step.fills] == [("sell", at(2))]
    assert account.position < 0
    assert account.on_candle(candle(4, 100, 100)).fills == ()
    assert [f.side for f in account.on_candle(candle(9, 90, 90)).fills] == ["buy", "buy"]


def test_an_open_position_at_the_end_is_reported_open_and_marked_at_the_last_close() -> None:
    # buy 10,000 / (100 * 1.001) at 100 with fee 10 bps; marked at close 150:
    # pnl = q * 150 - q * 100 * 1.001 = q * 150 - 10,000.
    account = Account(AccountSettings())
    account.on_signal(signal(0, "buy"))
    account.on_candle(candle(0, 100, 120))
    account.on_candle(candle(1, 120, 150))
    trade = account.open_trade()
    assert trade is not None
    q = 10_000 / 100.1
    assert (trade.open, trade.exit_time, trade.exit_price, trade.side) == (True, None, None, "long")
    assert trade.quantity == pytest.approx(q)
    assert trade.pnl == pytest.approx(q * 150 - 10_000)
    assert trade.fees == pytest.approx(q * 100 * 0.001)
    assert account.equity == pytest.approx(10_000 + trade.pnl)


def test_settings_are_checked_and_bps_convert() -> None:
    assert AccountSettings.from_bps(fee_bps=25, slippage_bps=5) == AccountSettings(
        fee=0.0025, slippage=0.0005
    )
    for bad in ({"cash": 0}, {"fraction": 0}, {"fraction": 1.5}, {"fee": -0.1}, {"slippage": 1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AccountSettings(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="action"):
        Account().on_action(T0, "hold")  # type: ignore[arg-type]


def test_equity_needs_a_candle() -> None:
    with pytest.raises(ValueError, match="no candle"):
        Account().equity_point()
    assert Account().open_trade() is None


# --- the independent formulation -----------------------------------------------------------------


@dataclass
class Oracle:
    """The issue's formulas applied in a plain loop, with its own reading of the signal rules."""

    cash: float
    fraction: float
    fee: float
    slip: float
    short: bool
    qty: float = 0.0  # signed
    entry: tuple[float, float, datetime] | None = None  # price, fee, time
    trades: list[tuple[str, datetime, datetime, float]] = field(default_factory=list)

    def open_position(self, sign: int, open_: float, when: datetime) -> None:
        if self.cash <= 0:
            return
        p = open_ * (1 + self.slip) if sign > 0 else open_ * (1 - self.slip)
        q = self.fraction * self.cash / (p * (1 + self.fee))
        fee = q * p * self.fee
        self.cash += -(q * p + fee) if sign > 0 else q * p - fee
        self.qty = sign * q
        self.entry = (p, fee, when)

    def close_position(self, open_: float, when: datetime) -> None:
        assert self.entry is not None
        pe, fe, te = self.entry
        q = abs(self.qty)
        if self.qty > 0:
            p = open_ * (1 - self.slip)
            pnl = q * p - q * p * self.fee - q * pe - fe
            self.cash += q * p * (1 - self.fee)
            self.trades.append(("long", te, when, pnl))
        else:
            p = open_ * (1 + self.slip)
            pnl = q * pe - fe - q * p - q * p * self.fee
            self.cash -= q * p + q * p * self.fee
            self.trades.append(("short", te, when, pnl))
        self.qty = 0.0
        self.entry = None

    def act(self, action: str, open_: float, when: datetime) -> None:
        held = (self.qty > 0) - (self.qty < 0)
        want = {"buy": 1, "sell": -1 if self.short else 0, "flat": 0}[action]
        if want == held:
            return
        if held:
            self.close_position(open_, when)
        if want:
            self.open_position(want, open_, when)


def run_oracle(
    bars: list[tuple[int, float, float]], signals: list[tuple[int, str]], s: AccountSettings
) -> tuple[Oracle, list[float]]:
    """``bars``: (open minute, open, close); ``signals``: (minute, action) in arrival order."""
    # Each signal fills at the first bar opening at or after it; per bar, the latest signal acts.
    by_bar: dict[int, tuple[int, int, str]] = {}
    for order, (minute, action) in enumerate(signals):
        target = next((i for i, bar in enumerate(bars) if bar[0] >= minute), None)
        if target is not None:
            by_bar[target] = max(by_bar.get(target, (-1, -1, "")), (minute, order, action))
    oracle = Oracle(s.cash, s.fraction, s.fee, s.slippage, s.short)
    equity = []
    for i, (minute, open_, close) in enumerate(bars):
        if i in by_bar:
            oracle.act(by_bar[i][2], open_, at(minute))
        equity.append(oracle.cash + oracle.qty * close)
    return oracle, equity


prices = st.floats(min_value=1.0, max_value=1000.0, allow_nan=False)
account_settings = st.builds(
    AccountSettings,
    cash=st.floats(min_value=10.0, max_value=1e6),
    fraction=st.floats(min_value=0.01, max_value=1.0),
    fee=st.sampled_from([0.0, 0.0005, 0.001, 0.01]),
    slippage=st.sampled_from([0.0, 0.0001, 0.002]),
    short=st.booleans(),
)


@st.composite
def sessions(draw: st.DrawFn) -> tuple[list[tuple[int, float, float]], list[tuple[int, str]]]:
    """Bars with gaps (missing candles) and signals at arbitrary minutes, some where no bar is."""
    steps = draw(st.lists(st.integers(1, 3), min_size=1, max_size=40))
    minutes = [sum(steps[: i + 1]) for i in range(len(steps))]
    bars = [(m, draw(prices), draw(prices)) for m in minutes]
    actions = st.sampled_from(["buy", "sell", "flat"])
    signals = draw(st.lists(st.tuples(st.integers(0, minutes[-1] + 2), actions), max_size=30))
    signals.sort(key=lambda item: item[0])  # a strategy emits in time order
    return bars, signals


def drive(account: Account, bars: list[tuple[int, float, float]], signals: list[tuple[int, str]]):
    """Feed signals before the first bar opening at or after them, as the flow does; collect the steps."""
    steps, fed = [], 0
    for minute, open_, close in bars:
        while fed < len(signals) and signals[fed][0] <= minute:
            account.on_signal(signal(*signals[fed]))
            fed += 1
        steps.append(account.on_candle(candle(minute, open_, close)))
    return steps


@settings(max_examples=300, deadline=None)
@given(sessions(), account_settings)
def test_account_matches_the_independent_loop(session, s: AccountSettings) -> None:
    bars, signals = session
    account = Account(s)
    steps = drive(account, bars, signals)
    oracle, equity = run_oracle(bars, signals, s)
    scale = s.cash * 1e-9
    assert [step.equity.equity for step in steps] == pytest.approx(equity, rel=1e-9, abs=scale)
    assert account.cash == pytest.approx(oracle.cash, rel=1e-9, abs=scale)
    assert account.position == pytest.approx(oracle.qty, rel=1e-9)
    closed = [t for step in steps for t in step.closed]
    assert [(t.side, t.entry_time, t.exit_time) for t in closed] == [t[:3] for t in oracle.trades]
    assert [t.pnl for t in closed] == pytest.approx([t[3] for t in oracle.trades], rel=1e-9, abs=scale)
    # every fill is at or after its signal, at the open of the candle it is stamped with
    opens = {at(m): o for m, o, _ in bars}
    for step in steps:
        for fill in step.fills:
            assert fill.signal_time <= fill.time and fill.time in opens
    # the books balance: final equity = starting cash + closed pnl + the open trade's marked pnl
    still_open = account.open_trade()
    assert (still_open is not None) == (oracle.qty != 0)
    total = sum(t.pnl for t in closed) + (still_open.pnl if still_open else 0.0)
    assert account.equity == pytest.approx(s.cash + total, rel=1e-9, abs=scale)


@settings(max_examples=50, deadline=None)
@given(sessions(), account_settings, st.integers(0, 40))
def test_pickled_mid_run_the_account_continues_identically(session, s: AccountSettings, cut: int) -> None:
    bars, signals = session
    cut = min(cut, len(bars))
    straight = Account(s)
    whole = drive(straight, bars, signals)
    first = Account(s)
    head = drive(first, bars[:cut], [x for x in signals if x[0] <= (bars[cut - 1][0] if cut else -1)])
    resumed = pickle.loads(pickle.dumps(first))
    rest = drive(resumed, bars[cut:], [x for x in signals if x[0] > (bars[cut - 1][0] if cut else -1)])
    assert head + rest == whole
    assert resumed.open_trade() == straight.open_trade()


def test_the_account_pickles_small() -> None:
    account = Account()
    account.on_signal(signal(0, "buy"))
    for minute in range(1000):
        account.on_candle(candle(minute, 100 + minute % 7, 101))
    assert len(pickle.dumps(account)) < 600


def test_the_equity_curve_is_a_sequence_of_points() -> None:
    account, curve = Account(AccountSettings(fee=0)), EquityCurve()
    account.on_signal(signal(0, "buy"))
    points = []
    for minute, (o, c) in enumerate([(100, 110), (110, 90), (90, 95)]):
        points.append(account.on_candle(candle(minute, o, c)).equity)
        curve.record(account)
    assert list(curve) == points and curve[1] == points[1] and curve[-2:] == points[-2:]
    other = EquityCurve()
    other.append(EquityPoint(at(9), 110.0, 0.0, 100.0, 11_000.0))
    assert len(other) == 1 and other[0].equity == 11_000
    curve.extend(other)
    assert list(curve) == [*points, other[0]]
    assert list(pickle.loads(pickle.dumps(curve))) == list(curve)
