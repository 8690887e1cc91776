"""What a trade must satisfy before anything is built from it: the bounds of storage and of exact arithmetic.

These checks need no context (no clock, no sequence), so tapes and live feeds share them; the checks
that compare a trade with the receive clock or with the trades before it live in the live sequencer.
``trade_problem`` returns the reason a trade is refused, or None: a refused trade becomes a ``Rejected``
and moves no watermark, sequence or candle (the poison rules of docs/reliability.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from market.types import Trade

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class TradeLimits:
    """Bounds every stored trade keeps.

    Prices and sizes: positive, finite, below ``10**max_integer_digits`` with at most ``max_scale``
    digits after the point, so that candle sums and products stay exact (market.candles.EXACT) and fit
    the NUMERIC columns. Trade ids fit ``bigint``; ``count`` (fills in one push) fits ``integer`` and
    stays below ``max_count``. ``ts_event`` lies within [``earliest``, ``latest``).
    """

    max_integer_digits: int = 12
    max_scale: int = 16
    max_count: int = 1_000_000
    earliest: datetime = datetime(2009, 1, 3, tzinfo=UTC)
    latest: datetime = datetime(2100, 1, 1, tzinfo=UTC)
    max_symbol_length: int = 64


DEFAULT_LIMITS = TradeLimits()


def decimal_problem(name: str, value: Decimal, limits: TradeLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``value`` is not an acceptable price or size, or None."""
    if not value.is_finite():
        return f"{name} {value} is not finite"
    if value <= 0:
        return f"{name} {value} is not positive"
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    scale = -exponent if exponent < 0 else 0
    if scale > limits.max_scale and any(digits[len(digits) - (scale - limits.max_scale) :]):
        return f"{name} {_short(value)} has more than {limits.max_scale} digits after the point"
    if value.adjusted() >= limits.max_integer_digits:
        return f"{name} {_short(value)} is not below 1E+{limits.max_integer_digits}"
    return None


def trade_problem(trade: Trade, limits: TradeLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``trade`` cannot be accepted by any source, or None when it is within every bound."""
    symbol = trade.symbol
    if not symbol or len(symbol) > limits.max_symbol_length or not symbol.isprintable():
        shown = symbol[: limits.max_symbol_length]
        return f"instrument id {shown!r} is unprintable or over {limits.max_symbol_length} characters"
    if not 0 < trade.trade_id <= INT8_MAX:
        return f"trade id {_short(trade.trade_id)} is outside 1..2^63-1"
    if not 1 <= trade.count <= min(limits.max_count, INT4_MAX):
        return f"count {_short(trade.count)} is outside 1..{min(limits.max_count, INT4_MAX)}"
    if trade.count > trade.trade_id:
        return f"count {trade.count} exceeds the trade id {trade.trade_id}"
    if not limits.earliest <= trade.ts_event < limits.latest:
        span = f"[{limits.earliest.date()}, {limits.latest.date()})"
        return f"time {trade.ts_event.isoformat()} is outside {span}"
    return decimal_problem("price", trade.price, limits) or decimal_problem("size", trade.size, limits)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"
