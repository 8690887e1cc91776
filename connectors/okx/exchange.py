"""OKX through the exchange interface (:mod:`connectors.exchange`): the existing OKX pieces, unchanged.

The websocket URL and the ``trades`` subscription are what :class:`connectors.okx.stream.TradeStream`
sends, the parser is :func:`connectors.okx.parser.parse_frame` with its events given their neutral
meaning, the REST client is :class:`connectors.okx.rest.OkxRestClient`, and the heartbeat and limits
are those of :class:`connectors.okx.connection.StreamOptions` and docs/okx-connectivity.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson

from connectors.exchange import (
    Acked,
    ExchangeLimits,
    ExchangeSpec,
    FrameParser,
    FrameResult,
    Heartbeat,
    Ignored,
    Pong,
    Refused,
    ServerNotice,
    SimulatorProfile,
    Subscription,
    TradeHistory,
)
from connectors.okx import wire
from connectors.okx.connection import StreamOptions
from connectors.okx.parser import EXCHANGE, parse_frame
from connectors.okx.rest import OkxRestClient
from market.types import Rejected

WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
REST_URL = "https://www.okx.com"
RECONNECT_NOTICE = "64008"
"""The notice code OKX sends about 60 s before closing a connection for a service upgrade."""


def connect_url(base: str, instruments: Sequence[str]) -> str:
    """OKX has one public trades endpoint; instruments are chosen by subscription."""
    return base


def subscriptions(instruments: Sequence[str], first_number: int) -> list[Subscription]:
    """One ``subscribe`` request for every instrument of the connection (OKX acknowledges each arg)."""
    request_id = f"s{first_number}"
    args = [{"channel": "trades", "instId": inst} for inst in instruments]
    message = orjson.dumps({"id": request_id, "op": "subscribe", "args": args}).decode()
    return [Subscription(request_id, message, tuple(instruments))]


def neutral(result: wire.FrameResult) -> FrameResult:
    """An OKX parse result with its events given their exchange-neutral meaning."""
    if isinstance(result, list | Rejected):
        return result
    if isinstance(result, wire.SubscriptionAck):
        if result.op == "subscribe" and result.channel == "trades":
            return Acked(result.request_id, result.inst_id or "")  # per arg, as the stream reads it
        return Ignored(f"{result.op} ack for {result.channel}")
    if isinstance(result, wire.ErrorEvent):
        return Refused(result.request_id, result.code, result.msg)
    if isinstance(result, wire.Notice):
        return ServerNotice(result.code, result.msg, result.code == RECONNECT_NOTICE)
    if isinstance(result, wire.Pong):
        return Pong()
    if isinstance(result, wire.OtherEvent):
        return Ignored(f"event {result.event}")
    return Ignored(f"{result.channel} push")


def parse(raw: bytes | str, ts_recv: datetime) -> FrameResult:
    """:func:`connectors.okx.parser.parse_frame`, neutral events; never raises."""
    return neutral(parse_frame(raw, ts_recv))


def parser(instruments: Sequence[str]) -> FrameParser:
    """OKX frames name their instrument id; the parser is the same for every connection."""
    return parse


def rest_client(base_url: str, timeout: float, retries: int, min_interval: float) -> TradeHistory:
    return OkxRestClient(base_url, timeout=timeout, retries=retries, min_interval=min_interval)


class OkxIds:
    """OKX instrument ids already are ``BASE-QUOTE`` (``BTC-USDT``; derivatives add ``-SWAP`` etc.)."""

    def to_exchange(self, inst_id: str) -> str:
        return inst_id

    def from_exchange(self, symbol: str) -> str | None:
        return symbol


_OPTIONS = StreamOptions()

SPEC = ExchangeSpec(
    name=EXCHANGE,
    ws_url=WS_URL,
    rest_url=REST_URL,
    connect_url=connect_url,
    subscriptions=subscriptions,
    parser=parser,
    rest_client=rest_client,
    ids=OkxIds(),
    heartbeat=Heartbeat(
        client_ping="ping",
        ping_after=_OPTIONS.ping_interval,
        pong_timeout=_OPTIONS.pong_timeout,
        idle_close=30.0,  # OKX closes a connection without traffic for 30 s (code 4004)
    ),
    limits=ExchangeLimits(
        connections=3,  # new connections per second per IP
        connections_window=1.0,
        streams_per_connection=480,  # subscribe requests per hour and connection; one request each
        messages_per_second=None,
        rest_budget=20,  # history-trades requests per 2 s per IP
        rest_window=2.0,
        page_limit=100,
        page_weight=1,
        latest_limit=500,
    ),
    simulator=SimulatorProfile("connectors.okx.simulator", ws_key="ws_public", rest_key="rest"),
)
