"""OKX-style candles computed from replayed trades (pure; times are integer epoch milliseconds).

Rows follow the ``candle*`` channel format ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` with ``ts``
the bar's open time (PROTOCOL-NOTES 4.4). Bars with no trades are flat at the previous close with zero
volume, as OKX documents for its klines. SPOT volumes: ``vol`` = sum(sz), ``volCcy`` = ``volCcyQuote`` =
sum(px*sz); derivatives with a contract value ``ct_val``: ``vol`` = sum(sz) contracts, ``volCcy`` =
sum(sz*ct_val), ``volCcyQuote`` = sum(px*sz*ct_val) (checked on a real OKX minute, tests/data/tapes/MATIC-*).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
UTC8_MS = 8 * HOUR_MS


@dataclass(frozen=True, slots=True)
class CandleSpec:
    """A candle channel: bar length, and the offset of its grid (OKX aligns 6H/12H/1D to UTC+8)."""

    channel: str
    length_ms: int
    utc_offset_ms: int = 0

    def open_of(self, ts_ms: int) -> int:
        """Open time of the bar containing ``ts_ms`` (a trade on a boundary opens the next bar)."""
        shifted = ts_ms + self.utc_offset_ms
        return shifted - shifted % self.length_ms - self.utc_offset_ms


def _specs() -> dict[str, CandleSpec]:
    specs = [
        CandleSpec("candle1m", MINUTE_MS),
        CandleSpec("candle3m", 3 * MINUTE_MS),
        CandleSpec("candle5m", 5 * MINUTE_MS),
        CandleSpec("candle15m", 15 * MINUTE_MS),
        CandleSpec("candle30m", 30 * MINUTE_MS),
        CandleSpec("candle1H", HOUR_MS),
        CandleSpec("candle2H", 2 * HOUR_MS),
        CandleSpec("candle4H", 4 * HOUR_MS),
        CandleSpec("candle6H", 6 * HOUR_MS, UTC8_MS),
        CandleSpec("candle12H", 12 * HOUR_MS, UTC8_MS),
        CandleSpec("candle1D", DAY_MS, UTC8_MS),
        CandleSpec("candle6Hutc", 6 * HOUR_MS),
        CandleSpec("candle12Hutc", 12 * HOUR_MS),
        CandleSpec("candle1Dutc", DAY_MS),
    ]
    return {spec.channel: spec for spec in specs}


CANDLE_SPECS: dict[str, CandleSpec] = _specs()
FORMING_PUSH_INTERVAL_MS = 1_000  # "the fastest interval 1 second" [DOC-CNDL]


def _text(value: Decimal) -> str:
    return format(value, "f")


def _volume(value: Decimal) -> str:
    """A computed sum without the trailing zeros that adding tape strings accumulates."""
    return format(value.normalize(), "f") if value else "0"


Row = list[str]


class CandleSeries:
    """The bars of one instrument on one channel: ``advance`` closes bars, ``add`` applies a trade.

    Call ``advance(ts)`` before ``add`` of a trade at ``ts`` so that bars ending at or before ``ts`` are
    closed first (TIME.md rule 1: a trade on a boundary belongs to the next bar).
    """

    __slots__ = (
        "spec",
        "ct_val",
        "open_ms",
        "o",
        "h",
        "l",
        "c",
        "vol",
        "vol_ccy",
        "vol_quote",
        "traded",
        "dirty",
        "last_push_ms",
    )

    def __init__(self, spec: CandleSpec, ct_val: Decimal | None = None) -> None:
        self.spec = spec
        self.ct_val = ct_val
        self.open_ms: int | None = None
        self.o = self.h = self.l = self.c = Decimal(0)
        self.vol = self.vol_ccy = self.vol_quote = Decimal(0)
        self.traded = False
        self.dirty = False
        self.last_push_ms: int | None = None

    @property
    def close_ms(self) -> int | None:
        return None if self.open_ms is None else self.open_ms + self.spec.length_ms

    def row(self, confirmed: bool) -> Row:
        assert self.open_ms is not None
        return [
            str(self.open_ms),
            _text(self.o),
            _text(self.h),
            _text(self.l),
            _text(self.c),
            _volume(self.vol),
            _volume(self.vol_ccy),
            _volume(self.vol_quote),
            "1" if confirmed else "0",
        ]

    def advance(self, now_ms: int) -> list[Row]:
        """Close every bar whose close is <= ``now_ms``; flat bars follow a traded one until ``now_ms``."""
        closed: list[Row] = []
        if self.open_ms is None:
            return closed
        length = self.spec.length_ms
        while now_ms >= self.open_ms + length:
            closed.append(self.row(confirmed=True))
            self.open_ms += length
            self.o = self.h = self.l = self.c
            self.vol = self.vol_ccy = self.vol_quote = Decimal(0)
            self.traded = False
            self.dirty = False
        return closed

    def add(self, ts_ms: int, price: Decimal, size: Decimal, quote: Decimal) -> None:
        """Apply one trade (``quote`` = price*size, computed once per trade by the caller)."""
        if self.open_ms is None:
            self.open_ms = self.spec.open_of(ts_ms)
        if self.ct_val is None:
            base, quote_ccy = quote, quote
        else:
            base, quote_ccy = size * self.ct_val, quote * self.ct_val
        if not self.traded:
            self.o = self.h = self.l = self.c = price
            self.vol, self.vol_ccy, self.vol_quote = size, base, quote_ccy
            self.traded = True
        else:
            if price > self.h:
                self.h = price
            elif price < self.l:
                self.l = price
            self.c = price
            self.vol += size
            self.vol_ccy += base
            self.vol_quote += quote_ccy
        self.dirty = True

    def forming_due(self, now_ms: int) -> Row | None:
        """The forming bar's row if it changed and the last push is >= 1 s (replay time) ago."""
        if not self.dirty:
            return None
        if self.last_push_ms is not None and now_ms < self.last_push_ms + FORMING_PUSH_INTERVAL_MS:
            return None
        self.last_push_ms = now_ms
        self.dirty = False
        return self.row(confirmed=False)

    def next_deadline(self) -> int | None:
        """The next replay time at which this series has something to push (a close or a throttled update)."""
        close = self.close_ms
        if close is None:
            return None
        if self.dirty and self.last_push_ms is not None:
            return min(close, self.last_push_ms + FORMING_PUSH_INTERVAL_MS)
        return close

    def current_row(self) -> Row | None:
        """The forming bar as pushed right after a subscription (None before the first trade)."""
        return None if self.open_ms is None else self.row(confirmed=False)
