"""Five strategy templates. Each computes its indicators internally and signals on stance changes.

- ``ema_crossover``: buy when EMA(fast) crosses above EMA(slow), sell when it crosses below.
- ``rsi_reversion``: buy when RSI falls below ``oversold``, sell when it rises above ``overbought``;
  a long (short) position goes flat when RSI climbs back to ``exit_level`` (falls back to it).
- ``macd_cross``: buy when the MACD line crosses above its signal line, sell when it crosses below.
- ``bollinger_breakout``: buy when the close breaks above the upper band, sell when it breaks below the
  lower band; a position goes flat when the close crosses back over the middle band.
- ``donchian_breakout``: buy when the close exceeds the highest high of the previous ``timeperiod``
  candles (the current one excluded), sell when it falls below their lowest low.

"Crosses above" means at or below on the previous candle and strictly above on this one, so the first
candle with values never signals. A rule that would re-enter the current stance does not signal.
"""

from __future__ import annotations

from collections.abc import Mapping

from market.indicators import Bar, build_indicator
from market.strategies.base import Strategy, crossed_above, crossed_below
from market.types import Action

Decision = tuple[Action, str, Mapping[str, float]] | None


class EmaCrossover(Strategy):
    """Trend following on two EMAs of the close."""

    name = "ema_crossover"

    def __init__(self, fast: int = 9, slow: int = 21, label: str | None = None) -> None:
        if fast >= slow:
            raise ValueError(f"ema_crossover needs fast < slow, got fast={fast}, slow={slow}")
        super().__init__(label, fast=fast, slow=slow)
        self.fast = build_indicator("EMA", timeperiod=fast)
        self.slow = build_indicator("EMA", timeperiod=slow)
        self.prev: tuple[float, float] | None = None

    def decide(self, bar: Bar) -> Decision:
        f = self.fast.update_bar(bar)
        s = self.slow.update_bar(bar)
        if f is None or s is None:
            return None
        fast, slow = f["value"], s["value"]
        prev, self.prev = self.prev, (fast, slow)
        if prev is None:
            return None
        values = {"close": bar.close, "ema_fast": fast, "ema_slow": slow}
        p = self.params
        if crossed_above(prev[0], prev[1], fast, slow) and self.position != 1:
            return "buy", f"EMA({p['fast']}) crossed above EMA({p['slow']})", values
        if crossed_below(prev[0], prev[1], fast, slow) and self.position != -1:
            return "sell", f"EMA({p['fast']}) crossed below EMA({p['slow']})", values
        return None


class RsiReversion(Strategy):
    """Mean reversion on RSI extremes."""

    name = "rsi_reversion"

    def __init__(
        self,
        timeperiod: int = 14,
        oversold: float = 30.0,
        overbought: float = 70.0,
        exit_level: float = 50.0,
        label: str | None = None,
    ) -> None:
        if not 0.0 < oversold < exit_level < overbought < 100.0:
            raise ValueError(
                "rsi_reversion needs 0 < oversold < exit_level < overbought < 100, got "
                f"oversold={oversold}, exit_level={exit_level}, overbought={overbought}"
            )
        super().__init__(
            label, timeperiod=timeperiod, oversold=oversold, overbought=overbought, exit_level=exit_level
        )
        self.rsi = build_indicator("RSI", timeperiod=timeperiod)
        self.prev: float | None = None

    def decide(self, bar: Bar) -> Decision:
        out = self.rsi.update_bar(bar)
        if out is None:
            return None
        rsi = out["value"]
        prev, self.prev = self.prev, rsi
        if prev is None:
            return None
        p = self.params
        name = f"RSI({p['timeperiod']})"
        values = {"close": bar.close, "rsi": rsi, "prev_rsi": prev}
        if self.position != 1 and crossed_below(prev, p["oversold"], rsi, p["oversold"]):
            return "buy", f"{name} fell below {p['oversold']:g} (oversold)", values
        if self.position != -1 and crossed_above(prev, p["overbought"], rsi, p["overbought"]):
            return "sell", f"{name} rose above {p['overbought']:g} (overbought)", values
        exit_level = p["exit_level"]
        if self.position == 1 and prev < exit_level <= rsi:
            return "flat", f"{name} recovered to {exit_level:g}: exit long", values
        if self.position == -1 and prev > exit_level >= rsi:
            return "flat", f"{name} fell back to {exit_level:g}: exit short", values
        return None


class MacdCross(Strategy):
    """MACD line against its signal line."""

    name = "macd_cross"

    def __init__(
        self, fastperiod: int = 12, slowperiod: int = 26, signalperiod: int = 9, label: str | None = None
    ) -> None:
        if fastperiod >= slowperiod:
            raise ValueError(f"macd_cross needs fastperiod < slowperiod, got {fastperiod} and {slowperiod}")
        super().__init__(label, fastperiod=fastperiod, slowperiod=slowperiod, signalperiod=signalperiod)
        self.macd = build_indicator(
            "MACD", fastperiod=fastperiod, slowperiod=slowperiod, signalperiod=signalperiod
        )
        self.prev: tuple[float, float] | None = None

    def decide(self, bar: Bar) -> Decision:
        out = self.macd.update_bar(bar)
        if out is None:
            return None
        macd, signal = out["macd"], out["macdsignal"]
        prev, self.prev = self.prev, (macd, signal)
        if prev is None:
            return None
        values = {"close": bar.close, "macd": macd, "macdsignal": signal, "macdhist": out["macdhist"]}
        if crossed_above(prev[0], prev[1], macd, signal) and self.position != 1:
            return "buy", "MACD crossed above its signal line", values
        if crossed_below(prev[0], prev[1], macd, signal) and self.position != -1:
            return "sell", "MACD crossed below its signal line", values
        return None


class BollingerBreakout(Strategy):
    """Breakout of the Bollinger bands, exit at the middle band."""

    name = "bollinger_breakout"

    def __init__(self, timeperiod: int = 20, nbdev: float = 2.0, label: str | None = None) -> None:
        super().__init__(label, timeperiod=timeperiod, nbdev=nbdev)
        self.bands = build_indicator("BBANDS", timeperiod=timeperiod, nbdevup=nbdev, nbdevdn=nbdev)
        self.prev: tuple[float, float, float, float] | None = None  # close, upper, middle, lower

    def decide(self, bar: Bar) -> Decision:
        out = self.bands.update_bar(bar)
        if out is None:
            return None
        close = bar.close
        upper, middle, lower = out["upperband"], out["middleband"], out["lowerband"]
        prev, self.prev = self.prev, (close, upper, middle, lower)
        if prev is None:
            return None
        values = {"close": close, "upper": upper, "middle": middle, "lower": lower}
        if self.position != 1 and crossed_above(prev[0], prev[1], close, upper):
            return "buy", "close broke above the upper Bollinger band", values
        if self.position != -1 and crossed_below(prev[0], prev[3], close, lower):
            return "sell", "close broke below the lower Bollinger band", values
        if self.position == 1 and close < middle:
            return "flat", "close fell back below the middle band: exit long", values
        if self.position == -1 and close > middle:
            return "flat", "close rose back above the middle band: exit short", values
        return None


class DonchianBreakout(Strategy):
    """Turtle-style breakout of the previous candles' range."""

    name = "donchian_breakout"

    def __init__(self, timeperiod: int = 20, label: str | None = None) -> None:
        super().__init__(label, timeperiod=timeperiod)
        self.channel = build_indicator("DONCHIAN", timeperiod=timeperiod)
        self.prev: tuple[float, float] | None = None  # the channel up to the previous candle

    def decide(self, bar: Bar) -> Decision:
        out = self.channel.update_bar(bar)
        prev = self.prev
        self.prev = None if out is None else (out["upper"], out["lower"])
        if prev is None:
            return None
        upper, lower = prev
        values = {"close": bar.close, "upper": upper, "lower": lower}
        n = self.params["timeperiod"]
        if self.position != 1 and bar.close > upper:
            return "buy", f"close above the {n}-candle high", values
        if self.position != -1 and bar.close < lower:
            return "sell", f"close below the {n}-candle low", values
        return None
