"""Parsing of Binance spot aggregate-trade frames and REST bodies: pure functions, no I/O.

- :class:`FrameParser` (one per connection, knowing the instruments it follows) turns a websocket frame
  into ``list[Trade]`` (an ``aggTrade`` event, raw or wrapped in a combined stream's
  ``{"stream":..,"data":..}``), a control event of :mod:`connectors.exchange` (``{"result":null,"id":N}``
  -> :class:`Acked`; an error -> :class:`Refused`; ``serverShutdown`` -> :class:`ServerNotice`;
  other events and query answers -> :class:`Ignored`), or a :class:`market.types.Rejected` with the
  reason. It never raises.
- :func:`parse_rest_agg_trades` reads a ``GET /api/v3/aggTrades`` body (ascending, the symbol implied by
  the request); it raises :class:`BinanceParseError` or :class:`BinanceRestError`, because a bad
  answer to our own request is a failed request, not a message for the dead-letter sink.

An aggregate trade becomes a :class:`Trade` with ``trade_id`` = ``a`` (aggregate ids are consecutive,
so the gap rule ``trade_id - count == previous id`` holds with ``count`` 1), ``ts_event`` = ``T``,
``side`` the taker's (``m``, the buyer is the maker, means the taker sold), price ``p`` and size ``q``
as exact decimals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from connectors.binance.wire import EXCHANGE, TRADE_STREAM, SymbolMap
from connectors.exchange import Acked, FrameResult, Ignored, Refused, ServerNotice
from market.types import EPOCH, Rejected, Trade

DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
SOURCE = "binance-ws"
SHUTDOWN = "serverShutdown"


class BinanceParseError(ValueError):
    """A malformed REST body."""


INVALID_SYMBOL = -1121


class BinanceRestError(RuntimeError):
    """An error answer ``{"code": -1121, "msg": "Invalid symbol."}`` (with its HTTP status)."""

    def __init__(self, status: int, code: int | None, msg: str) -> None:
        super().__init__(f"Binance REST error {code} (HTTP {status}): {msg}")
        self.status = status
        self.code = code
        self.msg = msg

    @property
    def unknown_instrument(self) -> bool:
        """-1121 ``Invalid symbol.``: Binance subscribes a stream of any name, REST says it is not one."""
        return self.code == INVALID_SYMBOL


class _Bad(Exception):
    """A field failed validation; the message becomes the reason."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(item: dict[str, Any], key: str) -> int:
    value = item.get(key)
    if type(value) is not int or value < 0:
        raise _Bad(f"{key} {_show(value)} is not a non-negative integer")
    return value


def _positive(item: dict[str, Any], key: str) -> Decimal:
    value = item.get(key)
    if type(value) is not str or DECIMAL.fullmatch(value) is None:
        raise _Bad(f"{key} {_show(value)} is not a decimal string")
    number = Decimal(value)
    if not number:
        raise _Bad(f"{key} {value!r} is zero")
    return number


def agg_trade(item: object, inst_id: str, ts_recv: datetime | None, origin: str = "ws") -> Trade:
    """One aggregate trade (``a p q f l T m``) of ``inst_id``; raises :class:`_Bad` with the reason."""
    if type(item) is not dict:
        raise _Bad(f"trade {_show(item)} is not an object")
    maker = item.get("m")
    if type(maker) is not bool:
        raise _Bad(f"m {_show(maker)} is not a boolean")
    first, last = _integer(item, "f"), _integer(item, "l")
    if last < first:
        raise _Bad(f"last trade id l {last} is below the first f {first}")
    ms = _integer(item, "T")
    return Trade(
        exchange=EXCHANGE,
        symbol=inst_id,
        trade_id=_integer(item, "a"),
        price=_positive(item, "p"),
        size=_positive(item, "q"),
        side="sell" if maker else "buy",
        ts_event=EPOCH + timedelta(milliseconds=ms),
        ts_recv=ts_recv,
        origin=origin,
    )


def _raw(raw: bytes | str) -> bytes:
    return raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)


class FrameParser:
    """Frames of one connection following ``instruments`` (``BASE-QUOTE`` ids); see the module."""

    def __init__(self, instruments: Iterable[str]) -> None:
        self.symbols = SymbolMap.of(instruments)

    def __call__(self, raw: bytes | str, ts_recv: datetime) -> FrameResult:
        try:
            try:
                msg = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return Rejected(_raw(raw), f"malformed JSON: {exc}", ts_recv, SOURCE)
            if type(msg) is not dict:
                return Rejected(_raw(raw), f"not a JSON object but {type(msg).__name__}", ts_recv, SOURCE)
            return self._message(msg, raw, ts_recv)
        except _Bad as exc:
            return Rejected(_raw(raw), str(exc), ts_recv, SOURCE)
        except Exception as exc:  # boundary: a frame must never crash the stream
            reason = f"unparseable frame ({type(exc).__name__}: {exc})"
            return Rejected(_raw(raw), reason, ts_recv, SOURCE)

    def _message(self, msg: dict[str, Any], raw: bytes | str, ts_recv: datetime) -> FrameResult:
        if "stream" in msg or "data" in msg:
            stream, data = msg.get("stream"), msg.get("data")
            if type(stream) is not str or type(data) is not dict:
                raise _Bad(f"combined frame: stream {_show(stream)} / data {_show(data)} malformed")
            return self._event(data, stream, ts_recv)
        if "id" in msg and ("result" in msg or "error" in msg or "code" in msg):
            return _answer(msg)
        if type(msg.get("event")) is dict:  # {"event": {"e": "serverShutdown", ..}}
            return self._event(msg["event"], None, ts_recv)
        if "e" in msg:
            return self._event(msg, None, ts_recv)
        raise _Bad("neither an event, a combined stream frame nor an answer")

    def _event(self, data: dict[str, Any], stream: str | None, ts_recv: datetime) -> FrameResult:
        kind = data.get("e")
        if kind == SHUTDOWN:
            return ServerNotice(SHUTDOWN, "the server is about to shut down", True)
        if type(kind) is not str:
            raise _Bad(f"event type e {_show(kind)} is not a string")
        if kind != TRADE_STREAM:
            return Ignored(f"{kind} event")
        symbol = data.get("s")
        if type(symbol) is not str:
            raise _Bad(f"aggTrade: symbol s {_show(symbol)} is not a string")
        inst_id = self.symbols.from_exchange(symbol)
        if inst_id is None:
            raise _Bad(f"aggTrade of {symbol!r}, an instrument this connection does not follow")
        if stream is not None and stream.partition("@")[0] != symbol.lower():
            raise _Bad(f"aggTrade of {symbol!r} on stream {stream!r}")
        return [agg_trade(data, inst_id, ts_recv)]


def _answer(msg: dict[str, Any]) -> FrameResult:
    """``{"result":..,"id":..}`` or an error, ``{"error":{"code":..,"msg":..},"id":..}`` or flat."""
    request_id = msg.get("id")
    rid = None if request_id is None else str(request_id)
    error = msg.get("error", msg if "code" in msg else None)
    if error is not None:
        if type(error) is not dict:
            raise _Bad(f"error {_show(error)} is not an object")
        return Refused(rid, str(error.get("code")), str(error.get("msg", "")))
    if msg["result"] is None:
        return Acked(rid)
    return Ignored(f"answer to request {rid}")


def parse_rest_agg_trades(body: bytes | str, inst_id: str, ts_recv: datetime | None = None) -> list[Trade]:
    """Trades of a ``GET /api/v3/aggTrades`` body in its (ascending) order, origin ``rest``."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BinanceParseError(f"malformed JSON body: {exc}") from None
    if type(items) is dict and "code" in items:
        raise BinanceRestError(200, _code(items.get("code")), str(items.get("msg", "")))
    if type(items) is not list:
        raise BinanceParseError(f"aggTrades body {_show(items)} is not an array")
    trades = []
    for index, item in enumerate(items):
        try:
            trades.append(agg_trade(item, inst_id, ts_recv, "rest"))
        except _Bad as exc:
            raise BinanceParseError(f"aggTrades item {index}: {exc}") from None
    return trades


def _code(value: object) -> int | None:
    return value if type(value) is int else None


def error_of(status: int, body: bytes) -> BinanceRestError:
    """The error an HTTP error answer carries (``{"code":..,"msg":..}``, or the status alone)."""
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError:
        msg = None
    if type(msg) is dict:
        return BinanceRestError(status, _code(msg.get("code")), str(msg.get("msg", "")))
    return BinanceRestError(status, None, body[:200].decode("utf-8", "replace"))
