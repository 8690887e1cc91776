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
acks carry ``connId`` only since 2023 and ``id`` only when the request had one. The result types, the
errors and the field readers are in :mod:`connectors.okx.wire`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson

from connectors.okx.wire import (
    DECIMAL,
    INTEGER,
    PONG,
    BadField,
    ErrorEvent,
    Event,
    ExchangeCandle,
    FrameResult,
    Notice,
    OkxParseError,
    OkxRestError,
    OtherEvent,
    OtherPush,
    SubscriptionAck,
    integer_string,
    optional_string,
    positive_decimal,
    show,
    string_field,
)
from market.types import EPOCH as _EPOCH
from market.types import Rejected, Side, Trade, utc_from_ms

EXCHANGE = "okx"
TRADE_CHANNELS: frozenset[str] = frozenset({"trades", "trades-all"})


# --------------------------------------------------------------------------- trades


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
            and DECIMAL.fullmatch(px) is not None
            and type(sz) is str
            and DECIMAL.fullmatch(sz) is not None
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
        raise BadField(f"item {show(item)} is not an object")
    side = item.get("side")
    if side != "buy" and side != "sell":
        raise BadField(f"unknown side {show(side)}")
    count = 1
    if "count" in item:
        count = integer_string(item, "count")
        if count < 1:
            raise BadField(f"count {show(item['count'])} is below 1")
    seq_id = item.get("seqId")
    if seq_id is not None and type(seq_id) is not int:
        raise BadField(f"seqId {show(seq_id)} is not an integer")
    side_: Side = side
    return Trade(
        exchange=EXCHANGE,
        symbol=string_field(item, "instId"),
        trade_id=integer_string(item, "tradeId"),
        price=positive_decimal(item, "px"),
        size=positive_decimal(item, "sz"),
        side=side_,
        ts_event=utc_from_ms(integer_string(item, "ts")),
        ts_recv=ts_recv,
        count=count,
        seq_id=seq_id,
        source=optional_string(item, "source"),
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
            return Rejected(_as_bytes(raw), f"arg {show(arg)} is not an object", ts_recv)
        channel = arg.get("channel")
        if type(channel) is not str or not channel:
            reason = f"arg.channel {show(channel)} is not a non-empty string"
            return Rejected(_as_bytes(raw), reason, ts_recv)
        data = msg.get("data")
        if type(data) is not list:
            return Rejected(_as_bytes(raw), f"{channel} push: data {show(data)} is not an array", ts_recv)
        if channel in TRADE_CHANNELS:
            return _trades(data, raw, ts_recv, channel)
        inst_id = arg.get("instId")
        return OtherPush(channel, inst_id if type(inst_id) is str else None, data, _as_bytes(raw), ts_recv)
    except BadField as exc:
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
        except BadField as exc:
            return Rejected(_as_bytes(raw), f"{channel} item {index}: {exc}", ts_recv)
    return trades


def _event(msg: dict[str, Any], raw: bytes | str, ts_recv: datetime) -> Event | Rejected:
    event = msg["event"]
    if type(event) is not str:
        return Rejected(_as_bytes(raw), f"event {show(event)} is not a string", ts_recv)
    if event == "subscribe" or event == "unsubscribe":
        arg = msg.get("arg")
        if type(arg) is not dict or not all(type(v) is str for v in arg.values()):
            reason = f"{event} ack: arg {show(arg)} is not an object of strings"
            return Rejected(_as_bytes(raw), reason, ts_recv)
        if type(arg.get("channel")) is not str:
            return Rejected(_as_bytes(raw), f"{event} ack: arg has no channel", ts_recv)
        op: Literal["subscribe", "unsubscribe"] = "subscribe" if event == "subscribe" else "unsubscribe"
        return SubscriptionAck(op, arg, optional_string(msg, "connId"), optional_string(msg, "id"))
    if event == "error":
        return ErrorEvent(
            string_field(msg, "code"),
            optional_string(msg, "msg") or "",
            optional_string(msg, "connId"),
            optional_string(msg, "id"),
        )
    if event == "notice":
        return Notice(
            string_field(msg, "code"),
            optional_string(msg, "msg") or "",
            optional_string(msg, "connId"),
        )
    return OtherEvent(event, msg)


# --------------------------------------------------------------------------- candles


def _candle_row(row: object, inst_id: str | None, channel: str | None) -> ExchangeCandle:
    if type(row) is not list or len(row) < 9:
        raise OkxParseError(f"candle row {show(row)} is not an array of 9 strings")
    if not all(type(v) is str for v in row[:9]):
        raise OkxParseError(f"candle row {show(row)} has non-string fields")
    ts, o, h, low, c, vol, vol_ccy, vol_ccy_quote, confirm = row[:9]
    if INTEGER.fullmatch(ts) is None:
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
        if DECIMAL.fullmatch(value) is None:
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
        raise OkxParseError(f"REST data {show(data)} is not an array")
    return data


def parse_rest_trades(body: bytes | str, ts_recv: datetime | None = None) -> list[Trade]:
    """Trades of a ``GET /api/v5/market/trades`` or ``history-trades`` body, in the body's order
    (OKX answers newest first). Raises :class:`OkxRestError` or :class:`OkxParseError`.
    """
    trades: list[Trade] = []
    for index, item in enumerate(_rest_data(body)):
        try:
            trades.append(_trade(item, ts_recv))
        except BadField as exc:
            raise OkxParseError(f"REST trade {index}: {exc}") from None
    return trades


def parse_rest_candles(
    body: bytes | str, inst_id: str | None = None, bar: str | None = None
) -> list[ExchangeCandle]:
    """Candles of a ``GET /api/v5/market/candles`` or ``history-candles`` body (newest first)."""
    channel = f"candle{bar}" if bar else None
    return [_candle_row(row, inst_id, channel) for row in _rest_data(body)]
