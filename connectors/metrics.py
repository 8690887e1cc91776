"""The flow's Prometheus metrics and its ``/metrics`` endpoint (docs/metrics.md).

Counters and the histogram live in ``prometheus_client``'s default registry, next to its process and
garbage-collector metrics, so one scrape of :func:`serve_metrics` sees them all (and so does Bytewax's
own endpoint, ``BYTEWAX_DATAFLOW_API_ENABLED``, which serves the same registry with its step metrics).
The connectors count with the small functions below, at the points where they already count for their
health records; gauges are read at scrape time from the live objects registered with :func:`watch_stream`
and :func:`watch_spool` (held weakly: a finished run's objects disappear with it), so nothing on the
trade path keeps them up to date. Names follow Prometheus' conventions: the ``tcp_`` prefix, ``_total``
counters, base units (seconds, bytes).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from market.sequencing import Gap
from market.types import Candle, Rejected, Trade
from market.window_items import LateTrade

log = logging.getLogger(__name__)

TRADES = Counter(
    "tcp_trades",
    "Trades the collector handed to the flow (websocket and REST backfill).",
    ["exchange", "symbol"],
)
REJECTS = Counter("tcp_rejects", "Frames and trades refused at the boundary (the rejects table).", ["source"])
RECONNECTS = Counter("tcp_reconnects", "Websocket connections lost and opened again.", ["exchange"])
GAPS_OPENED = Counter(
    "tcp_gaps_opened",
    "Holes in the trade-id sequence for which a REST backfill was asked.",
    ["exchange", "symbol"],
)
GAPS_FILLED = Counter("tcp_gaps_filled", "Holes REST filled completely.", ["exchange", "symbol"])
GAPS_UNFILLED = Counter(
    "tcp_gaps_unfilled", "Holes REST could not fill (trades missing for good).", ["exchange", "symbol"]
)
LATE_TRADES = Counter(
    "tcp_late_trades", "Trades whose 1m candle was already final when they arrived.", ["exchange", "symbol"]
)
REDIS_DROPPED = Counter(
    "tcp_redis_dropped", "Live messages not published to Redis (outage or refusal).", ["kind"]
)
CANDLE_CLOSE_TO_ROW = Histogram(
    "tcp_candle_close_to_row_seconds",
    "From a 1m candle's close to the commit of the transaction that stored its row (includes the grace).",
    ["exchange"],
    buckets=(0.25, 0.5, 1, 1.5, 2, 2.1, 2.25, 2.5, 3, 4, 5, 7.5, 10, 15, 30, 60, 120, 300, 600),
)


_TRADES_OF: dict[tuple[str, str], Counter] = {}
"""``TRADES`` by (exchange, symbol), kept so a batch does not look its labels up again."""


# ------------------------------------------------------------------------------------------ counting
def count_source_batch(items: Iterable[object]) -> None:
    """Count what a trade source hands the flow in one batch: trades, rejects, and gaps by outcome."""
    trades: dict[tuple[str, str], int] = {}
    for item in items:
        if type(item) is Trade:
            key = (item.exchange, item.symbol)
            trades[key] = trades.get(key, 0) + 1
        elif type(item) is Rejected:
            REJECTS.labels(item.source).inc()
        elif type(item) is Gap:
            outcome = GAPS_FILLED if item.filled else GAPS_UNFILLED
            outcome.labels(item.exchange, item.symbol).inc()
    for key, n in trades.items():
        child = _TRADES_OF.get(key)
        if child is None:
            child = _TRADES_OF.setdefault(key, TRADES.labels(*key))
        child.inc(n)


def count_gap_opened(exchange: str, symbol: str) -> None:
    """A hole was found; its outcome's series start at 0 with it, so ``opened - filled - unfilled`` (the
    holes still open) exists from then on."""
    GAPS_OPENED.labels(exchange, symbol).inc()
    GAPS_FILLED.labels(exchange, symbol)
    GAPS_UNFILLED.labels(exchange, symbol)


def count_reconnect(exchange: str) -> None:
    RECONNECTS.labels(exchange).inc()


def count_late(late: Iterable[LateTrade]) -> None:
    for item in late:
        LATE_TRADES.labels(item.trade.exchange, item.trade.symbol).inc()


def count_redis_dropped(kind: str, n: int = 1) -> None:
    REDIS_DROPPED.labels(kind).inc(n)


def observe_candle_rows(candles: Sequence[Candle], inserted: int, committed: datetime | None = None) -> None:
    """``inserted`` of ``candles`` were stored by a transaction committed at ``committed`` (default: now).
    When some were already stored (a re-delivery after recovery), the newest ``inserted`` by close are
    taken for the new rows."""
    if inserted <= 0:
        return
    at = committed or datetime.now(UTC)
    chosen = candles if inserted >= len(candles) else sorted(candles, key=_close)[-inserted:]
    for candle in chosen:
        CANDLE_CLOSE_TO_ROW.labels(candle.exchange).observe((at - candle.close_time).total_seconds())


def _close(candle: Candle) -> datetime:
    return candle.close_time


# ------------------------------------------------------------------------------- gauges at scrape time
class StreamView(Protocol):
    """What a websocket connection shows the metrics (``connectors.okx.stream.TradeStream``)."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def last_message_at(self) -> datetime | None: ...

    @property
    def outbox(self) -> Sized: ...


class Sized(Protocol):
    def __len__(self) -> int: ...


class SpoolView(Protocol):
    """What an outage spool shows the metrics (``connectors.spool.Spool``)."""

    @property
    def max_bytes(self) -> int: ...

    @property
    def bytes_used(self) -> int: ...

    def pending(self) -> Sequence[object]: ...


class _LiveObjects(Collector):
    """Gauges read from the registered connections and spools when Prometheus scrapes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: weakref.WeakKeyDictionary[StreamView, str] = weakref.WeakKeyDictionary()
        self._spools: weakref.WeakKeyDictionary[SpoolView, str] = weakref.WeakKeyDictionary()

    def add_stream(self, stream: StreamView, exchange: str) -> None:
        with self._lock:
            self._streams[stream] = exchange

    def add_spool(self, spool: SpoolView, name: str) -> None:
        with self._lock:
            self._spools[spool] = name

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            streams = list(self._streams.items())
            spools = list(self._spools.items())
        up, heard, queued, batches, used, limit = self._families()
        for stream, exchange in streams:
            labels = [exchange, stream.name]
            up.add_metric(labels, 1.0 if stream.state == "subscribed" else 0.0)
            if (last := stream.last_message_at) is not None:
                heard.add_metric(labels, last.timestamp())
            queued.add_metric(labels, len(stream.outbox))
        by_name: dict[str, list[float]] = {}
        for spool, name in spools:
            try:
                row = [len(spool.pending()), spool.bytes_used, spool.max_bytes]
            except RuntimeError:  # its files changed while being counted: skipped this scrape
                continue
            total = by_name.setdefault(name, [0.0, 0.0, 0.0])
            for i, value in enumerate(row):
                total[i] += value
        for name, (count, size, most) in sorted(by_name.items()):
            batches.add_metric([name], count)
            used.add_metric([name], size)
            limit.add_metric([name], most)
        yield from (up, heard, queued, batches, used, limit)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        connection = ["exchange", "connection"]
        return (
            GaugeMetricFamily(
                "tcp_connection_up",
                "1 while the websocket connection is subscribed, else 0.",
                labels=connection,
            ),
            GaugeMetricFamily(
                "tcp_connection_last_message_timestamp_seconds",
                "When the connection last received a frame of any kind (Unix time).",
                labels=connection,
            ),
            GaugeMetricFamily(
                "tcp_source_queued_items",
                "Items the connection has received that wait for the flow (bounded by queue_max_items).",
                labels=connection,
            ),
            GaugeMetricFamily(
                "tcp_spool_batches", "Batches waiting in the database outage spool.", labels=["spool"]
            ),
            GaugeMetricFamily("tcp_spool_bytes", "Disk used by the database outage spool.", labels=["spool"]),
            GaugeMetricFamily(
                "tcp_spool_max_bytes",
                "Disk the database outage spool may use before the flow stops.",
                labels=["spool"],
            ),
        )


LIVE = _LiveObjects()
REGISTRY.register(LIVE)


def watch_stream(stream: StreamView, exchange: str) -> None:
    """Report ``stream``'s connection gauges while it lives."""
    LIVE.add_stream(stream, exchange)


def watch_spool(spool: SpoolView, name: str) -> None:
    """Report ``spool``'s depth under ``name`` (spools sharing a name are added up) while it lives."""
    LIVE.add_spool(spool, name)


# ------------------------------------------------------------------------------------------- serving
class _Endpoint:
    """The process's one metrics server."""

    lock = threading.Lock()
    server: WSGIServer | None = None


def serve_metrics(port: int, host: str = "127.0.0.1", process: int = 0) -> tuple[str, int] | None:
    """Serve ``/metrics`` on ``host``:``port + process`` from a daemon thread, once per process (a later
    call returns the address first served); ``port`` 0: off. A port already taken is logged, not fatal:
    the flow goes on collecting without its metrics (and Prometheus' ``up`` says so). Returns the address
    served, or None."""
    if port == 0:
        return None
    with _Endpoint.lock:
        if _Endpoint.server is None:
            try:
                _Endpoint.server, _thread = start_http_server(port + process, addr=host)
            except OSError as error:
                log.error(
                    "metrics: cannot serve on %s:%d (%s); going on without /metrics",
                    host,
                    port + process,
                    error,
                )
                return None
            log.info("metrics: serving http://%s:%d/metrics", host, port + process)
        bound = _Endpoint.server.server_address
    return str(bound[0]), int(bound[1])


def stop_metrics() -> None:
    """Stop the endpoint (tests; otherwise it lives as long as the process)."""
    with _Endpoint.lock:
        if _Endpoint.server is not None:
            _Endpoint.server.shutdown()
            _Endpoint.server.server_close()
            _Endpoint.server = None


__all__ = [
    "count_gap_opened",
    "count_late",
    "count_reconnect",
    "count_redis_dropped",
    "count_source_batch",
    "observe_candle_rows",
    "serve_metrics",
    "stop_metrics",
    "watch_spool",
    "watch_stream",
]
