"""Binance spot's wire rules: endpoints, stream names, subscribe requests and symbol <-> ``BASE-QUOTE`` ids.

Sources (docs/binance.md cites them): Binance's "WebSocket Streams" (raw streams at ``/ws/<stream>``,
combined streams at ``/stream?streams=a/b`` wrapped as ``{"stream":..,"data":..}``, stream names in
lower case, ``SUBSCRIBE`` requests answered ``{"result":null,"id":..}``, at most 1024 streams per
connection, 5 incoming messages per second, 300 connections per 5 minutes per IP, a connection lives at
most 24 hours) and the REST "Market data endpoints" (``/api/v3/exchangeInfo`` lists every symbol with
its ``baseAsset`` and ``quoteAsset``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

import orjson

EXCHANGE = "binance"
WS_URL = "wss://stream.binance.com:9443"
MARKET_DATA_WS_URL = "wss://data-stream.binance.vision"
"""Market data only (no user data): the same streams."""
REST_URL = "https://api.binance.com"
TRADE_STREAM = "aggTrade"
MAX_STREAMS_PER_CONNECTION = 1024
STREAMS_PER_REQUEST = 200
"""Stream names per ``SUBSCRIBE`` request: a connection's 1024 streams fit in 6 requests, which at the
limit of 5 messages a second are sent over 2 seconds."""


def exchange_symbol(inst_id: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``: Binance's symbol is base and quote assets joined."""
    base, sep, quote_ = inst_id.partition("-")
    if not sep or not base or not quote_ or "-" in quote_:
        raise ValueError(f"{inst_id!r} is not a BASE-QUOTE instrument id")
    return base + quote_


def stream_name(inst_id: str, kind: str = TRADE_STREAM) -> str:
    """``BTC-USDT`` -> ``btcusdt@aggTrade`` (stream symbols are lower case)."""
    return f"{exchange_symbol(inst_id).lower()}@{kind}"


def raw_stream_url(base: str, inst_id: str) -> str:
    """The raw stream of one instrument: events arrive unwrapped."""
    return f"{base.rstrip('/')}/ws/{stream_name(inst_id)}"


def combined_stream_url(base: str, instruments: Sequence[str]) -> str:
    """A combined stream already subscribed to every instrument (no ``SUBSCRIBE`` needed); events
    arrive wrapped in ``{"stream":..,"data":..}``."""
    if not 0 < len(instruments) <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(f"a connection carries 1..{MAX_STREAMS_PER_CONNECTION} streams")
    names = "/".join(stream_name(inst) for inst in instruments)
    return f"{base.rstrip('/')}/stream?streams={quote(names, safe='/@')}"


def connect_url(base: str, instruments: Sequence[str]) -> str:
    """The combined-stream endpoint with no stream yet: the collector subscribes by request, so that
    every subscription is acknowledged and the URL stays short whatever the instrument count."""
    return f"{base.rstrip('/')}/stream"


def subscribe_message(request_id: int, instruments: Sequence[str], method: str = "SUBSCRIBE") -> str:
    """``{"method":"SUBSCRIBE","params":["btcusdt@aggTrade",..],"id":N}`` (``id``: an integer)."""
    params = [stream_name(inst) for inst in instruments]
    return orjson.dumps({"method": method, "params": params, "id": request_id}).decode()


class SymbolMap:
    """Binance symbols (``BTCUSDT``) and instrument ids (``BTC-USDT``) of the instruments known.

    A symbol cannot be split without knowing its assets (``BTCUSDT`` could be ``BTCU-SDT``), so the map
    is built from ``exchangeInfo``'s ``baseAsset``/``quoteAsset`` or from the instrument ids followed.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._to_inst: dict[str, str] = {}
        for base, quote_ in pairs:
            self._to_inst[base + quote_] = f"{base}-{quote_}"
        self._to_symbol = {inst: symbol for symbol, inst in self._to_inst.items()}

    @classmethod
    def of(cls, instruments: Iterable[str]) -> SymbolMap:
        """The map of instrument ids followed (``BASE-QUOTE``)."""
        pairs = []
        for inst in instruments:
            exchange_symbol(inst)  # validates
            base, _, quote_ = inst.partition("-")
            pairs.append((base, quote_))
        return cls(pairs)

    @classmethod
    def from_exchange_info(cls, body: bytes | str, *, trading_only: bool = True) -> SymbolMap:
        """The map of an ``/api/v3/exchangeInfo`` body (``symbols[].baseAsset/quoteAsset/status``)."""
        info = orjson.loads(body)
        if type(info) is not dict or type(info.get("symbols")) is not list:
            raise ValueError("exchangeInfo body has no symbols array")
        pairs = []
        for item in info["symbols"]:
            if type(item) is not dict:
                continue
            base, quote_, status = item.get("baseAsset"), item.get("quoteAsset"), item.get("status")
            if type(base) is not str or type(quote_) is not str or not base or not quote_:
                continue
            if trading_only and status != "TRADING":
                continue
            pairs.append((base, quote_))
        return cls(pairs)

    def to_exchange(self, inst_id: str) -> str:
        return exchange_symbol(inst_id)

    def from_exchange(self, symbol: str) -> str | None:
        return self._to_inst.get(symbol.upper())

    def __contains__(self, inst_id: object) -> bool:
        return inst_id in self._to_symbol

    def __len__(self) -> int:
        return len(self._to_inst)

    @property
    def by_symbol(self) -> Mapping[str, str]:
        return self._to_inst
