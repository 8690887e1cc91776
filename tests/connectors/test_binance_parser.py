"""Binance spot frames and REST bodies, built to the formats of Binance's own documentation
("WebSocket Streams": aggregate trade streams, combined streams, SUBSCRIBE answers, errors; "Market data
endpoints": aggTrades, exchangeInfo); docs/binance.md cites them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.binance import wire
from connectors.binance.parser import (
    BinanceParseError,
    BinanceRestError,
    FrameParser,
    error_of,
    parse_rest_agg_trades,
)
from connectors.exchange import Acked, Ignored, Refused, ServerNotice
from market.types import Rejected, Trade, utc_from_ms

NOW = datetime(2023, 1, 1, tzinfo=UTC)
# The documented payload of <symbol>@aggTrade, verbatim.
DOC_AGG_TRADE: dict[str, Any] = {
    "e": "aggTrade",
    "E": 1672515782136,
    "s": "BNBBTC",
    "a": 12345,
    "p": "0.001",
    "q": "100",
    "f": 100,
    "l": 105,
    "T": 1672515782136,
    "m": True,
    "M": True,
}
# The documented answer of GET /api/v3/aggTrades, verbatim.
DOC_REST = [
    {
        "a": 26129,
        "p": "0.01633102",
        "q": "4.70443515",
        "f": 27781,
        "l": 27781,
        "T": 1498793709153,
        "m": True,
        "M": True,
    }
]
PARSE = FrameParser(["BNB-BTC", "BTC-USDT"])


def frame(msg: object) -> bytes:
    return json.dumps(msg).encode()


def test_the_documented_aggtrade_event_raw_and_combined() -> None:
    expected = Trade(
        "binance", "BNB-BTC", 12345, Decimal("0.001"), Decimal("100"), "sell", utc_from_ms(1672515782136), NOW
    )
    assert PARSE(frame(DOC_AGG_TRADE), NOW) == [expected]
    assert PARSE(frame({"stream": "bnbbtc@aggTrade", "data": DOC_AGG_TRADE}), NOW) == [expected]
    buyer_taker = PARSE(json.dumps({**DOC_AGG_TRADE, "m": False}), NOW)
    assert isinstance(buyer_taker, list) and buyer_taker[0].side == "buy"


def test_answers_errors_and_the_shutdown_event() -> None:
    assert PARSE(b'{"result":null,"id":1}', NOW) == Acked("1")
    assert PARSE(b'{"result":["btcusdt@aggTrade"],"id":3}', NOW) == Ignored("answer to request 3")
    error = b'{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":7}'
    assert PARSE(error, NOW) == Refused("7", "2", "Invalid request: unknown variant")
    flat = b'{"code":0,"msg":"Unknown property","id":5}'
    assert PARSE(flat, NOW) == Refused("5", "0", "Unknown property")
    shutdown = ServerNotice("serverShutdown", "the server is about to shut down", True)
    assert PARSE(b'{"e":"serverShutdown","E":1770123456789}', NOW) == shutdown
    assert PARSE(b'{"event":{"e":"serverShutdown","E":1770123456789}}', NOW) == shutdown
    trade_event = {
        "e": "trade",
        "E": 1,
        "s": "BNBBTC",
        "t": 1,
        "p": "1",
        "q": "1",
        "T": 1,
        "m": True,
        "M": True,
    }
    assert PARSE(frame(trade_event), NOW) == Ignored("trade event")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"p": 0.001}, "p 0.001 is not a decimal string"),
        ({"p": "-1"}, "p '-1' is not a decimal string"),
        ({"p": "1e3"}, "p '1e3' is not a decimal string"),
        ({"q": "0.000"}, "q '0.000' is zero"),
        ({"a": "12345"}, "a '12345' is not a non-negative integer"),
        ({"a": -1}, "a -1 is not a non-negative integer"),
        ({"a": True}, "a True is not a non-negative integer"),
        ({"T": None}, "T None is not a non-negative integer"),
        ({"m": "true"}, "m 'true' is not a boolean"),
        ({"l": 99}, "last trade id l 99 is below the first f 100"),
        ({"s": "ETHBTC"}, "aggTrade of 'ETHBTC', an instrument this connection does not follow"),
        ({"s": 5}, "aggTrade: symbol s 5 is not a string"),
        ({"e": 5}, "event type e 5 is not a string"),
    ],
)
def test_bad_events_are_rejected_with_the_reason(change: dict[str, Any], reason: str) -> None:
    raw = frame({**DOC_AGG_TRADE, **change})
    got = PARSE(raw, NOW)
    assert got == Rejected(raw, reason, NOW, "binance-ws")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "malformed JSON"),
        (b"[1]", "not a JSON object but list"),
        (b'{"foo":1}', "neither an event, a combined stream frame nor an answer"),
        (b'{"stream":"bnbbtc@aggTrade","data":[1]}', "combined frame"),
        (frame({"stream": "btcusdt@aggTrade", "data": DOC_AGG_TRADE}), "aggTrade of 'BNBBTC' on stream"),
        (b'{"error":"x","id":1}', "error 'x' is not an object"),
    ],
)
def test_bad_frames_are_rejected_with_the_reason(raw: bytes, reason: str) -> None:
    got = PARSE(raw, NOW)
    assert isinstance(got, Rejected) and got.reason.startswith(reason) and got.raw == raw


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                list("eEsapqflTmM") + ["stream", "data", "id", "result", "error", "code", "event"]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_the_parser_never_raises(value: object) -> None:
    raw = json.dumps(value).encode()
    result = PARSE(raw, NOW)
    assert isinstance(result, list | Rejected | Acked | Refused | Ignored | ServerNotice)


@given(st.binary(max_size=64))
def test_the_parser_never_raises_on_bytes(raw: bytes) -> None:
    assert PARSE(raw, NOW) is not None


@given(
    st.dictionaries(
        st.sampled_from(sorted(DOC_AGG_TRADE)), st.integers() | st.text(max_size=5) | st.booleans()
    )
)
def test_events_with_any_fields_never_raise(change: dict[str, Any]) -> None:
    result = PARSE(frame({**DOC_AGG_TRADE, **change}), NOW)
    if isinstance(result, list):
        (trade,) = result
        assert trade.price > 0 and trade.size > 0 and trade.trade_id >= 0


def test_rest_agg_trades_documented_body() -> None:
    (trade,) = parse_rest_agg_trades(json.dumps(DOC_REST), "BNB-BTC", NOW)
    assert trade == Trade(
        "binance",
        "BNB-BTC",
        26129,
        Decimal("0.01633102"),
        Decimal("4.70443515"),
        "sell",
        utc_from_ms(1498793709153),
        NOW,
        origin="rest",
    )
    with pytest.raises(BinanceRestError, match="-1121"):
        parse_rest_agg_trades(b'{"code":-1121,"msg":"Invalid symbol."}', "BNB-BTC")
    with pytest.raises(BinanceParseError, match="item 0: p"):
        parse_rest_agg_trades(json.dumps([{**DOC_REST[0], "p": None}]), "BNB-BTC")
    with pytest.raises(BinanceParseError, match="malformed JSON"):
        parse_rest_agg_trades(b"<html>", "BNB-BTC")
    assert error_of(418, b'{"code":-1003,"msg":"Way too much request weight used"}').code == -1003
    assert error_of(502, b"Bad Gateway").code is None


def test_symbols_urls_and_subscribe_requests() -> None:
    assert wire.exchange_symbol("BTC-USDT") == "BTCUSDT"
    assert wire.stream_name("BTC-USDT") == "btcusdt@aggTrade"
    for bad in ("BTCUSDT", "BTC-", "-USDT", "BTC-USDT-SWAP"):
        with pytest.raises(ValueError, match="BASE-QUOTE"):
            wire.exchange_symbol(bad)
    base = "wss://stream.binance.com:9443"
    assert wire.raw_stream_url(base, "BNB-BTC") == f"{base}/ws/bnbbtc@aggTrade"
    assert wire.combined_stream_url(base, ["BNB-BTC", "BTC-USDT"]) == (
        f"{base}/stream?streams=bnbbtc@aggTrade/btcusdt@aggTrade"
    )
    with pytest.raises(ValueError, match="1..1024"):
        wire.combined_stream_url(base, [f"C{i}-USDT" for i in range(1025)])
    assert json.loads(wire.subscribe_message(1, ["BTC-USDT"])) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@aggTrade"],
        "id": 1,
    }


def test_symbol_map_from_exchange_info() -> None:
    info = {
        "timezone": "UTC",
        "symbols": [
            {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"},
            {"symbol": "XRPETH", "status": "TRADING", "baseAsset": "XRP", "quoteAsset": "ETH"},
            {"symbol": "OLDBTC", "status": "BREAK", "baseAsset": "OLD", "quoteAsset": "BTC"},
            {"symbol": "BAD", "status": "TRADING"},
        ],
    }
    symbols = wire.SymbolMap.from_exchange_info(json.dumps(info))
    assert symbols.by_symbol == {"BTCUSDT": "BTC-USDT", "XRPETH": "XRP-ETH"}
    assert symbols.from_exchange("btcusdt") == "BTC-USDT" and symbols.to_exchange("XRP-ETH") == "XRPETH"
    assert "XRP-ETH" in symbols and "OLD-BTC" not in symbols and symbols.from_exchange("OLDBTC") is None
    every = wire.SymbolMap.from_exchange_info(json.dumps(info), trading_only=False)
    assert every.from_exchange("OLDBTC") == "OLD-BTC"
    with pytest.raises(ValueError, match="no symbols"):
        wire.SymbolMap.from_exchange_info(b"{}")
