"""Parsing of OKX v5 websocket frames and REST market-data bodies: pure functions, no I/O.

Entry points (all pure, safe on arbitrary input):

- :func:`parse_frame` turns one websocket frame into ``list[Trade]`` (``trades`` / ``trades-all`` pushes),
  an event (:class:`SubscriptionAck`, :class:`ErrorEvent`, :class:`Notice`, :class:`Pong`,
  :class:`OtherEvent`), an :class:`OtherPush` (channels the pipeline does not consume: books, tickers,
  candles, ...), or a :class:`market.types.Rejected` with a precise reason. It never raises.
- :func:`parse_candle_push` turns an :class:`OtherPush` of a ``candle*`` channel (``/ws/v5/business``)
  into :class:`ExchangeCandle` rows, for comparing our candles with the exchange's.
- :func:`parse_rest_trades` / :func:`parse_rest_candles` read ``GET /api/v5/market/trades``,
  ``history-trades``, ``candles`` and ``history-candles`` bodies; they raise :class:`OkxRestError`
  (a non-"0" code) or :class:`OkxParseError` (a malformed body), because a REST answer is requested by us
  and a bad one is a failed request, not a message to route to a dead-letter sink.

The wire format is documented in tests/data/okx-samples/PROTOCOL-NOTES.md: every number is a JSON string
(except the integer ``seqId``); ``count``, ``source`` and ``seqId`` only exist in newer ``trades`` pushes;
acks carry ``connId`` only since 2023 and ``id`` only when the request had one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson

from market.types import EPOCH as _EPOCH
from market.types import Rejected, Side, Trade, utc_from_ms

EXCHANGE = "okx"
TRADE_CHANNELS: frozenset[str] = frozenset({"trades", "trades-all"})

# Strict shapes of OKX's decimal and integer strings: no sign, exponent, whitespace, NaN or Infinity.
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")
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


class _Bad(Exception):
    """Internal: a field failed validation; the message becomes the Rejected reason."""


# --------------------------------------------------------------------------- field readers


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REASON_VALUE else text[: _MAX_REASON_VALUE - 3] + "..."


def _string(
    item: dict[str, Any], key: str, shape: re.Pattern[str] | None = None, what: str = "a non-empty string"
) -> str:
    value = item.get(key)
    if value is None:
        raise _Bad(f"missing {key}")
    if type(value) is not str or not value or (shape is not None and shape.fullmatch(value) is None):
        raise _Bad(f"{key} {_show(value)} is not {what}")
    return value


def _positive_decimal(item: dict[str, Any], key: str) -> Decimal:
    number = Decimal(_string(item, key, _DECIMAL, "a decimal string"))
    if not number:
        raise _Bad(f"{key} {_show(item[key])} is zero")
    return number


def _integer_string(item: dict[str, Any], key: str) -> int:
    return int(_string(item, key, _INTEGER, "an integer string"))


def _optional_string(msg: dict[str, Any], key: str) -> str | None:
    value = msg.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise _Bad(f"{key} {_show(value)} is not a string")
    return value


def _trade(item: object, ts_recv: datetime | None) -> Trade:
    """One trade item; the fast path accepts well-formed items, anything else gets a precise reason."""
    if type(item) is dict:
        inst_id = item.get("instId")
        trade_id = item.get("tradeId")
        px = item.get("px")
        sz = item.get("sz")
        side = item.get("side")
        ts = item.get("ts")
        count = item.get("count", "1")
        seq_id = item.get("seqId")
        source = item.get("source")
        if (
            type(inst_id) is str
            and inst_id
            and type(trade_id) is str
            and trade_id.isascii()
            and trade_id.isdigit()
            and type(px) is str
            and _DECIMAL.fullmatch(px) is not None
            and type(sz) is str
            and _DECIMAL.fullmatch(sz) is not None
            and (side == "buy" or side == "sell")
            and type(ts) is str
            and ts.isascii()
            and ts.isdigit()
            and type(count) is str
            and count.isascii()
            and count.isdigit()
            and (seq_id is None or type(seq_id) is int)
            and (source is None or type(source) is str)
        ):
            price = Decimal(px)
            size = Decimal(sz)
            n = int(count)
            if price and size and n >= 1:
                ms = int(ts)
                return Trade(
                    EXCHANGE,
                    inst_id,
                    int(trade_id),
                    price,
                    size,
                    side,
                    _EPOCH + timedelta(0, ms // 1000, (ms % 1000) * 1000),
                    ts_recv,
                    n,
                    seq_id,
                    source,
                )
    return _checked_trade(item, ts_recv)


def _checked_trade(item: object, ts_recv: datetime | None) -> Trade:
    if type(item) is not dict:
        raise _Bad(f"item {_show(item)} is not an object")
    side = item.get("side")
    if side != "buy" and side != "sell":
        raise _Bad(f"unknown side {_show(side)}")
    count = 1
    if "count" in item:
        count = _integer_string(item, "count")
        if count < 1:
            raise _Bad(f"count {_show(item['count'])} is below 1")
    seq_id = item.get("seqId")
    if seq_id is not None and type(seq_id) is not int:
        raise _Bad(f"seqId {_show(seq_id)} is not an integer")
    side_: Side = side
    return Trade(
        exchange=EXCHANGE,
        symbol=_string(item, "instId"),
        trade_id=_integer_string(item, "tradeId"),
        price=_positive_decimal(item, "px"),
        size=_positive_decimal(item, "sz"),
        side=side_,
        ts_event=utc_from_ms(_integer_string(item, "ts")),
        ts_recv=ts_recv,
        count=count,
        seq_id=seq_id,
        source=_optional_string(item, "source"),
    )


# --------------------------------------------------------------------------- websocket frames


def _as_bytes(raw: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogatepass")
    return bytes(raw)


def parse_frame(raw: bytes | str, ts_recv: datetime) -> FrameResult:
    """Parse one websocket frame received at ``ts_recv`` (aware UTC). Never raises.

    Returns ``list[Trade]`` for ``trades``/``trades-all`` pushes (one Trade per ``data`` item; a push
    with any bad item is rejected whole), an event for acks/errors/notices/``pong``, an
    :class:`OtherPush` for data of other channels, or :class:`Rejected` with the reason.
    """
    try:
        if raw == "pong" or raw == b"pong":
            return PONG
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return Rejected(_as_bytes(raw), f"malformed JSON: {exc}", ts_recv)
        if type(msg) is not dict:
            return Rejected(_as_bytes(raw), f"not a JSON object but {type(msg).__name__}", ts_recv)
        if "event" in msg:
            return _event(msg, raw, ts_recv)
        arg = msg.get("arg")
        if arg is None:
            return Rejected(_as_bytes(raw), "neither event nor arg", ts_recv)
        if type(arg) is not dict:
            return Rejected(_as_bytes(raw), f"arg {_show(arg)} is not an object", ts_recv)
        channel = arg.get("channel")
        if type(channel) is not str or not channel:
            reason = f"arg.channel {_show(channel)} is not a non-empty string"
            return Rejected(_as_bytes(raw), reason, ts_recv)
        data = msg.get("data")
        if type(data) is not list:
            return Rejected(_as_bytes(raw), f"{channel} push: data {_show(data)} is not an array", ts_recv)
        if channel in TRADE_CHANNELS:
            return _trades(data, raw, ts_recv, channel)
        inst_id = arg.get("instId")
        return OtherPush(channel, inst_id if type(inst_id) is str else None, data, _as_bytes(raw), ts_recv)
    except _Bad as exc:
        return Rejected(_as_bytes(raw), str(exc), ts_recv)
    except Exception as exc:  # boundary: a frame must never crash the stream
        return Rejected(_as_bytes(raw), f"unparseable frame ({type(exc).__name__}: {exc})", ts_recv)


def _trades(data: list[Any], raw: bytes | str, ts_recv: datetime, channel: str) -> list[Trade] | Rejected:
    if not data:
        return Rejected(_as_bytes(raw), f"{channel} push with empty data", ts_recv)
    trades: list[Trade] = []
    for index, item in enumerate(data):
        try:
            trades.append(_trade(item, ts_recv))
        except _Bad as exc:
            return Rejected(_as_bytes(raw), f"{channel} item {index}: {exc}", ts_recv)
    return trades


def _event(msg: dict[str, Any], raw: bytes | str, ts_recv: datetime) -> Event | Rejected:
    event = msg["event"]
    if type(event) is not str:
        return Rejected(_as_bytes(raw), f"event {_show(event)} is not a string", ts_recv)
    if event == "subscribe" or event == "unsubscribe":
        arg = msg.get("arg")
        if type(arg) is not dict or not all(type(v) is str for v in arg.values()):
            reason = f"{event} ack: arg {_show(arg)} is not an object of strings"
            return Rejected(_as_bytes(raw), reason, ts_recv)
        if type(arg.get("channel")) is not str:
            return Rejected(_as_bytes(raw), f"{event} ack: arg has no channel", ts_recv)
        op: Literal["subscribe", "unsubscribe"] = "subscribe" if event == "subscribe" else "unsubscribe"
        return SubscriptionAck(op, arg, _optional_string(msg, "connId"), _optional_string(msg, "id"))
    if event == "error":
        return ErrorEvent(
            _string(msg, "code"),
            _optional_string(msg, "msg") or "",
            _optional_string(msg, "connId"),
            _optional_string(msg, "id"),
        )
    if event == "notice":
        return Notice(
            _string(msg, "code"), _optional_string(msg, "msg") or "", _optional_string(msg, "connId")
        )
    return OtherEvent(event, msg)


# --------------------------------------------------------------------------- candles


def _candle_row(row: object, inst_id: str | None, channel: str | None) -> ExchangeCandle:
    if type(row) is not list or len(row) < 9:
        raise OkxParseError(f"candle row {_show(row)} is not an array of 9 strings")
    if not all(type(v) is str for v in row[:9]):
        raise OkxParseError(f"candle row {_show(row)} has non-string fields")
    ts, o, h, low, c, vol, vol_ccy, vol_ccy_quote, confirm = row[:9]
    if _INTEGER.fullmatch(ts) is None:
        raise OkxParseError(f"candle open time {ts!r} is not an integer string")
    for name, value in (
        ("o", o),
        ("h", h),
        ("l", low),
        ("c", c),
        ("vol", vol),
        ("volCcy", vol_ccy),
        ("volCcyQuote", vol_ccy_quote),
    ):
        if _DECIMAL.fullmatch(value) is None:
            raise OkxParseError(f"candle {name} {value!r} is not a decimal string")
    if confirm not in ("0", "1"):
        raise OkxParseError(f"candle confirm {confirm!r} is neither '0' nor '1'")
    return ExchangeCandle(
        inst_id,
        channel,
        utc_from_ms(int(ts)),
        Decimal(o),
        Decimal(h),
        Decimal(low),
        Decimal(c),
        Decimal(vol),
        Decimal(vol_ccy),
        Decimal(vol_ccy_quote),
        confirm == "1",
    )


def parse_candle_push(push: OtherPush) -> list[ExchangeCandle] | Rejected:
    """Read the rows of a ``candle*`` push (from :func:`parse_frame`); a bad push becomes Rejected."""
    if not push.channel.startswith("candle"):
        return Rejected(push.raw, f"{push.channel} is not a candle channel", push.ts_recv)
    if type(push.data) is not list or not push.data:
        return Rejected(push.raw, f"{push.channel} push with empty data", push.ts_recv)
    try:
        return [_candle_row(row, push.inst_id, push.channel) for row in push.data]
    except OkxParseError as exc:
        return Rejected(push.raw, str(exc), push.ts_recv)


# --------------------------------------------------------------------------- REST


def _rest_data(body: bytes | str) -> list[Any]:
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OkxParseError(f"malformed JSON body: {exc}") from None
    if type(envelope) is not dict:
        raise OkxParseError("REST body is not a JSON object")
    code = envelope.get("code")
    if code != "0":
        raise OkxRestError(str(code), str(envelope.get("msg", "")))
    data = envelope.get("data")
    if type(data) is not list:
        raise OkxParseError(f"REST data {_show(data)} is not an array")
    return data


def parse_rest_trades(body: bytes | str, ts_recv: datetime | None = None) -> list[Trade]:
    """Trades of a ``GET /api/v5/market/trades`` or ``history-trades`` body, in the body's order
    (OKX answers newest first). Raises :class:`OkxRestError` or :class:`OkxParseError`.
    """
    trades: list[Trade] = []
    for index, item in enumerate(_rest_data(body)):
        try:
            trades.append(_trade(item, ts_recv))
        except _Bad as exc:
            raise OkxParseError(f"REST trade {index}: {exc}") from None
    return trades


def parse_rest_candles(
    body: bytes | str, inst_id: str | None = None, bar: str | None = None
) -> list[ExchangeCandle]:
    """Candles of a ``GET /api/v5/market/candles`` or ``history-candles`` body (newest first)."""
    channel = f"candle{bar}" if bar else None
    return [_candle_row(row, inst_id, channel) for row in _rest_data(body)]
