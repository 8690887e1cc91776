"""What every exchange provides to the collector, behind one interface, and the factory that finds it.

An exchange is one folder, ``connectors/<name>/``, whose ``exchange.py`` holds a module-level
:class:`ExchangeSpec` named ``SPEC``; :func:`exchange` imports it by name. The spec is data and pure
functions, nothing that holds a connection: where to connect and what to send (:attr:`connect_url`,
:attr:`subscriptions`), how to read a frame (:attr:`parser`: a pure function that never raises, giving
trades, a :class:`market.types.Rejected`, or one of the control events below), a REST client that reads
the newest trades and backfills a hole by trade id (:attr:`rest_client`, a :class:`TradeHistory`), how
instrument ids map between the exchange and ``BASE-QUOTE`` (:attr:`ids`), the heartbeat and reconnect
rules (:class:`Heartbeat`), the published limits (:class:`ExchangeLimits`) and how to start its
simulator (:class:`SimulatorProfile`). Nothing in it is particular to one exchange, so that one socket
loop driving a :class:`market.sequencing.Sequencer` can serve every exchange (the live flow still runs
OKX's own loop, :class:`connectors.okx.stream.TradeStream`).

Control events are the exchange-neutral meaning of a non-trade frame: :class:`Acked` (a subscription
confirmed), :class:`Refused` (a request refused), :class:`ServerNotice` (the server says something;
``reconnect`` when it is about to close the connection), :class:`Pong` (an answer to a text ping) and
:class:`Ignored` (anything else, worth a debug line).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from market.types import Rejected, Trade

EXCHANGES: tuple[str, ...] = ("okx", "binance")
"""The exchanges this project can collect from; ``connectors/<name>/exchange.py`` defines each."""


# --------------------------------------------------------------------------- control events


@dataclass(frozen=True, slots=True)
class Acked:
    """A subscription request confirmed: for ``symbol`` (an instrument id), or, when None, for every
    instrument the request ``request_id`` asked for (exchanges that acknowledge a request as a whole)."""

    request_id: str | None
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """A request refused by the exchange (``request_id`` None when the exchange does not say which)."""

    request_id: str | None
    code: str
    msg: str


@dataclass(frozen=True, slots=True)
class ServerNotice:
    """A message from the server about the connection; ``reconnect``: it will close soon, move now."""

    code: str
    msg: str
    reconnect: bool


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a text ping (exchanges with websocket-level pings never produce one)."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid frame the trade pipeline does not consume (another channel, a query's answer, ...)."""

    what: str


Control = Acked | Refused | ServerNotice | Pong | Ignored
FrameResult = list[Trade] | Rejected | Control


class FrameParser(Protocol):
    """``(raw frame, receive time) -> trades | Rejected | control event``; pure and never raises."""

    def __call__(self, raw: bytes | str, ts_recv: datetime) -> FrameResult: ...


# --------------------------------------------------------------------------- REST


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """Trades strictly between two ids, ascending; ``complete`` when every id in between is present.
    ``outside``: trades the pages held beyond the ids asked for (a correct server returns none)."""

    trades: list[Trade]
    complete: bool
    requests: int
    error: str | None = None
    outside: list[Trade] = field(default_factory=list)


class BackfillOutcome(Protocol):
    """What a backfill reports (:class:`BackfillResult`, or an exchange's own class of that shape)."""

    @property
    def trades(self) -> list[Trade]: ...
    @property
    def complete(self) -> bool: ...
    @property
    def requests(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def outside(self) -> list[Trade]: ...


class TradeHistory(Protocol):
    """An exchange's public REST trades, by instrument id (``BASE-QUOTE``); trades have origin ``rest``."""

    requests: int

    async def latest_trades(self, inst_id: str, limit: int = 20) -> list[Trade]:
        """The newest ``limit`` trades, in any order."""
        ...

    async def backfill(
        self, inst_id: str, after_id: int, until_id: int, *, max_pages: int = 50
    ) -> BackfillOutcome:
        """Trades with ``after_id < trade_id < until_id``; never raises for REST failures."""
        ...


RestClientFactory = Callable[[str, float, int, float], TradeHistory]
"""``(base url, timeout s, retries, min interval s) -> client``."""


# --------------------------------------------------------------------------- rules and limits


class InstrumentIds(Protocol):
    """Instrument ids: the exchange's symbol for ``BASE-QUOTE`` and back."""

    def to_exchange(self, inst_id: str) -> str: ...

    def from_exchange(self, symbol: str) -> str | None:
        """The ``BASE-QUOTE`` id of an exchange symbol, or None when the rule cannot tell."""
        ...


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """How a connection is kept alive and when it must be replaced (seconds unless a timedelta).

    ``client_ping``: the text frame the client sends after ``ping_after`` of silence (None: the
    exchange pings at the websocket level and the client only answers). ``server_ping_every`` /
    ``pong_within``: the exchange's own ping frames and how soon it wants the pong. ``idle_close``:
    the exchange closes a connection silent this long. ``max_age``: the exchange ends every connection
    at this age; ``renew_after``: the collector replaces it earlier, backfilling the switch-over.
    """

    client_ping: str | None
    ping_after: float
    pong_timeout: float
    server_ping_every: float | None = None
    pong_within: float | None = None
    idle_close: float | None = None
    max_age: timedelta | None = None
    renew_after: timedelta | None = None

    def __post_init__(self) -> None:
        if self.idle_close is not None and self.ping_after >= self.idle_close:
            raise ValueError(f"ping_after {self.ping_after} s must be below idle_close {self.idle_close} s")
        if self.max_age is not None and (self.renew_after is None or self.renew_after >= self.max_age):
            raise ValueError("a connection with a max_age must be renewed before it (renew_after)")

    def renewal_due(self, connected_for: timedelta) -> bool:
        """Whether a connection open this long should be replaced now (before the exchange ends it)."""
        return self.renew_after is not None and connected_for >= self.renew_after


@dataclass(frozen=True, slots=True)
class ExchangeLimits:
    """An exchange's published limits, per IP unless said otherwise.

    ``connections`` new connections per ``connections_window`` seconds; ``streams_per_connection``
    subscriptions one connection may hold; ``messages_per_second`` messages the client may send on a
    connection (None: no documented limit); REST: ``rest_budget`` weight per ``rest_window`` seconds,
    a page of ``page_limit`` trades costing ``page_weight``; ``latest_limit`` the most trades the
    newest-trades request returns.
    """

    connections: int
    connections_window: float
    streams_per_connection: int
    messages_per_second: float | None
    rest_budget: int
    rest_window: float
    page_limit: int
    page_weight: int
    latest_limit: int

    @property
    def min_connect_interval(self) -> float:
        """The even spacing of new connections that stays within the limit."""
        return self.connections_window / self.connections


@dataclass(frozen=True, slots=True)
class SimulatorProfile:
    """How to run the exchange's simulator: ``python -m <module> --tape FILE [--speed X]``; once
    listening it prints one JSON line whose ``ws_key`` and ``rest_key`` members are the base URLs."""

    module: str
    ws_key: str
    rest_key: str


@dataclass(frozen=True, slots=True)
class Subscription:
    """One request to send after connecting: ``message`` (a text frame) asks for ``symbols``."""

    request_id: str
    message: str
    symbols: tuple[str, ...]


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """Everything the collector needs to know about one exchange (see the module docstring).

    ``connect_url(base, instruments)``: the websocket URL to open for these instruments;
    ``subscriptions(instruments, first_number)``: the requests to send once open (request ids are
    numbered from ``first_number`` so that a connection's ids stay unique); ``parser(instruments)``:
    the frame parser for a connection following these instruments.
    """

    name: str
    ws_url: str
    rest_url: str
    connect_url: Callable[[str, Sequence[str]], str]
    subscriptions: Callable[[Sequence[str], int], list[Subscription]]
    parser: Callable[[Sequence[str]], FrameParser]
    rest_client: RestClientFactory
    ids: InstrumentIds
    heartbeat: Heartbeat
    limits: ExchangeLimits
    simulator: SimulatorProfile

    def connections(self, instruments: Sequence[str], per_connection: int) -> list[tuple[str, ...]]:
        """Instruments split into connections of at most ``per_connection`` (and the exchange's cap)."""
        size = max(1, min(per_connection, self.limits.streams_per_connection))
        return [tuple(instruments[i : i + size]) for i in range(0, len(instruments), size)]


def exchange(name: str) -> ExchangeSpec:
    """The spec of exchange ``name`` (``"okx"``, ``"binance"``); ValueError for an unknown name."""
    if name not in EXCHANGES:
        raise ValueError(f"unknown exchange {name!r}; known: {', '.join(EXCHANGES)}")
    spec = importlib.import_module(f"connectors.{name}.exchange").SPEC
    if not isinstance(spec, ExchangeSpec) or spec.name != name:
        raise TypeError(f"connectors.{name}.exchange.SPEC is not the ExchangeSpec of {name!r}")
    return spec
