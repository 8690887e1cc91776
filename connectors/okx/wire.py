"""The shapes of OKX's v5 wire: the events and candle rows a frame or REST body holds, the parse errors,
and the strict field readers :mod:`connectors.okx.parser` builds them with (see
tests/data/okx-samples/PROTOCOL-NOTES.md for the format)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from market.types import Rejected, Trade

# Strict shapes of OKX's decimal and integer strings: no sign, exponent, whitespace, NaN or Infinity.
DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
INTEGER = re.compile(r"[0-9]+")
_MAX_REASON_VALUE = 40


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class SubscriptionAck:
    """``{"event":"subscribe"|"unsubscribe","arg":{...}}``, one per requested arg.

    ``conn_id`` (8 hex chars) is absent before 2023; ``request_id`` echoes the request's ``id`` if any.
    """

    op: Literal["subscribe", "unsubscribe"]
    arg: dict[str, str]
    conn_id: str | None = None
    request_id: str | None = None

    @property
    def channel(self) -> str:
        return self.arg.get("channel", "")

    @property
    def inst_id(self) -> str | None:
        return self.arg.get("instId")


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """``{"event":"error","code":..,"msg":..}``: a refused request (it has no ``arg``; match on ``id``)."""

    code: str
    msg: str
    conn_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """``{"event":"notice","code":"64008",..}``: the server will close this connection soon; reconnect."""

    code: str
    msg: str
    conn_id: str | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    """The text ``pong`` answering our text ``ping``."""


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """Any other ``event`` (``login``, ``channel-conn-count``, ...): not consumed, worth logging."""

    event: str
    msg: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OtherPush:
    """A data push of a channel the trade pipeline does not consume (books, tickers, candles, ...).

    ``data`` is the decoded ``data`` member, kept so that e.g. :func:`parse_candle_push` can read it.
    """

    channel: str
    inst_id: str | None
    data: Any
    raw: bytes
    ts_recv: datetime


Event = SubscriptionAck | ErrorEvent | Notice | Pong | OtherEvent | OtherPush
FrameResult = list[Trade] | Event | Rejected

PONG = Pong()


@dataclass(frozen=True, slots=True)
class ExchangeCandle:
    """One OKX candle row ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` (open-time labelled).

    For SPOT ``vol`` is in base currency and ``vol_ccy`` = ``vol_ccy_quote`` in quote currency; for
    derivatives ``vol`` is in contracts, ``vol_ccy`` in base currency. ``confirmed`` is the bar closed.
    """

    inst_id: str | None
    channel: str | None
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    vol: Decimal
    vol_ccy: Decimal
    vol_ccy_quote: Decimal
    confirmed: bool


class OkxParseError(ValueError):
    """A malformed REST body or candle row."""


class OkxRestError(RuntimeError):
    """A REST answer whose envelope ``code`` is not ``"0"`` (e.g. 51001 instrument doesn't exist)."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"OKX REST error {code}: {msg}")
        self.code = code
        self.msg = msg


class BadField(Exception):
    """A field failed validation; the message becomes the Rejected reason (or the REST error's)."""


# --------------------------------------------------------------------------- field readers


def show(value: object) -> str:
    """``value`` for a reason text, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _MAX_REASON_VALUE else text[: _MAX_REASON_VALUE - 3] + "..."


def string_field(
    item: dict[str, Any], key: str, shape: re.Pattern[str] | None = None, what: str = "a non-empty string"
) -> str:
    value = item.get(key)
    if value is None:
        raise BadField(f"missing {key}")
    if type(value) is not str or not value or (shape is not None and shape.fullmatch(value) is None):
        raise BadField(f"{key} {show(value)} is not {what}")
    return value


def positive_decimal(item: dict[str, Any], key: str) -> Decimal:
    number = Decimal(string_field(item, key, DECIMAL, "a decimal string"))
    if not number:
        raise BadField(f"{key} {show(item[key])} is zero")
    return number


def integer_string(item: dict[str, Any], key: str) -> int:
    return int(string_field(item, key, INTEGER, "an integer string"))


def optional_string(msg: dict[str, Any], key: str) -> str | None:
    value = msg.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise BadField(f"{key} {show(value)} is not a string")
    return value
