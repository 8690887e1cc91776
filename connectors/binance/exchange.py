"""Binance spot through the exchange interface (:mod:`connectors.exchange`); see docs/binance.md.

Trades come from ``<symbol>@aggTrade`` streams on one combined-stream connection per group of
instruments, subscribed by ``SUBSCRIBE`` requests (each acknowledged ``{"result":null,"id":N}``);
Binance pings every 20 s at the websocket level and drops a connection that has not answered within a
minute, and ends every connection at 24 hours, so the collector renews it at 23 hours and backfills the
switch-over by aggregate trade id over REST.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from connectors.binance import wire
from connectors.binance.parser import FrameParser
from connectors.binance.rest import AGG_TRADES_WEIGHT, PAGE_LIMIT, WEIGHT_BUDGET, BinanceRestClient
from connectors.exchange import (
    ExchangeLimits,
    ExchangeSpec,
    Heartbeat,
    SimulatorProfile,
    Subscription,
    TradeHistory,
)


def subscriptions(instruments: Sequence[str], first_number: int) -> list[Subscription]:
    """``SUBSCRIBE`` requests of at most :data:`wire.STREAMS_PER_REQUEST` streams, ids numbered on."""
    out = []
    step = wire.STREAMS_PER_REQUEST
    for offset, start in enumerate(range(0, len(instruments), step)):
        chunk = tuple(instruments[start : start + step])
        number = first_number + offset
        out.append(Subscription(str(number), wire.subscribe_message(number, chunk), chunk))
    return out


def parser(instruments: Sequence[str]) -> FrameParser:
    """Binance frames name symbols (``BTCUSDT``): the parser maps those of the connection's instruments."""
    return FrameParser(instruments)


def rest_client(base_url: str, timeout: float, retries: int, min_interval: float) -> TradeHistory:
    return BinanceRestClient(base_url, timeout=timeout, retries=retries, min_interval=min_interval)


SPEC = ExchangeSpec(
    name=wire.EXCHANGE,
    ws_url=wire.WS_URL,
    rest_url=wire.REST_URL,
    connect_url=wire.connect_url,
    subscriptions=subscriptions,
    parser=parser,
    rest_client=rest_client,
    ids=wire.SymbolMap(()),  # symbols split only with exchangeInfo or the ids followed (SymbolMap.of)
    heartbeat=Heartbeat(
        client_ping=None,  # the server pings; the websocket library answers each ping with its pong
        ping_after=30.0,  # silence before the client probes with a ping frame of its own
        pong_timeout=30.0,
        server_ping_every=20.0,
        pong_within=60.0,
        idle_close=None,
        max_age=timedelta(hours=24),
        renew_after=timedelta(hours=23),
    ),
    limits=ExchangeLimits(
        connections=300,  # per 5 minutes per IP
        connections_window=300.0,
        streams_per_connection=wire.MAX_STREAMS_PER_CONNECTION,
        messages_per_second=5.0,  # pings, pongs and requests sent by the client, together
        rest_budget=WEIGHT_BUDGET,
        rest_window=60.0,
        page_limit=PAGE_LIMIT,
        page_weight=AGG_TRADES_WEIGHT,
        latest_limit=PAGE_LIMIT,
    ),
    simulator=SimulatorProfile("connectors.binance.simulator", ws_key="ws", rest_key="rest"),
)
