"""Bytewax source of live trades from every selected exchange, over each one's public websocket,
gap-filled from its REST history.

Items: :class:`market.types.Trade` (``origin`` ``ws`` or ``rest``), :class:`market.types.Rejected`
(refused frames and trades, ``source`` ``<exchange>-ws`` or ``<exchange>-rest``),
:class:`market.types.FeedState`, :class:`connectors.okx.events.Gap` and
:class:`connectors.okx.events.ConnectionHealth`, each carrying its exchange. An exchange is an
:class:`connectors.exchange.ExchangeSpec`; a :class:`Venue` is one exchange's part of a source (its
URLs, instruments, where they start and end). See docs/okx-connectivity.md and docs/binance.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.exchange import ExchangeSpec
from connectors.metrics import count_source_batch
from connectors.okx.events import ConnectionHealth, Gap
from connectors.okx.recording import SessionRecorder, SessionRecording
from connectors.stream_connection import ConnectLimiter, Outbox, StreamOptions, exchange_limiter
from connectors.trade_stream import DEFAULT_CLOSE_PROBE, TradeStream
from market.sequencing import Limits, Position
from market.types import FeedState, Rejected, Trade, ms_from_utc

TradesItem = Trade | Rejected | FeedState | Gap | ConnectionHealth
Positions = dict[str, Position]
"""Resume state of one partition: instrument -> (last trade id emitted, its time in epoch ms or None)."""

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class TradesPartition(StatefulSourcePartition[TradesItem, Positions]):
    """One websocket connection for a few instruments, run by an event loop in its own thread.

    A dedicated loop thread (rather than :func:`bytewax.inputs.batch_async`, which runs the loop only
    while ``next_batch`` is being called) keeps heartbeats, reconnects and backfills on time however
    slowly the dataflow pulls, and lets :meth:`close` cancel the task and close the socket. The thread
    hands items over through a bounded :class:`Outbox`: once ``queue_max_items`` wait, it stops reading
    the socket; ``next_batch`` only drains it and never waits. With a ``recorder``, the session is
    recorded, ending with how many items the dataflow took.
    """

    def __init__(
        self,
        spec: ExchangeSpec,
        key: str,
        ws_url: str,
        rest_url: str,
        instruments: Sequence[str],
        options: StreamOptions,
        positions: Mapping[str, Position],
        end_ids: Mapping[str, int],
        batch_size: int,
        poll_interval: float,
        limiter: ConnectLimiter,
        queue_max_items: int,
        recorder: SessionRecorder | None = None,
        close_probe: timedelta | None = DEFAULT_CLOSE_PROBE,
        renew_after: timedelta | None = None,
    ) -> None:
        self.key = key
        self._recorder = recorder
        self._taken = 0
        self._queue = Outbox(queue_max_items)
        self._emitted: Positions = {inst: positions[inst] for inst in instruments if inst in positions}
        self._batch_size = batch_size
        self._poll = timedelta(seconds=poll_interval)
        self._idle = False
        self._ended = False
        self._stream = TradeStream(
            spec,
            ",".join(instruments),  # the connection's name in its health (the exchange is beside it)
            ws_url,
            rest_url,
            instruments,
            options,
            self._queue,
            positions=self._emitted,
            end_ids=end_ids,
            limiter=limiter,
            recorder=recorder,
            close_probe=close_probe,
            renew_after=renew_after,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._closing = False
        self._thread = threading.Thread(
            target=self._thread_main, name=f"{spec.name}-trades[{key}]", daemon=True
        )
        self._thread.start()
        self._ready.wait()

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._ready.set()
        try:
            await self._stream.run()
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a bug: re-raised in the dataflow by next_batch
            self._queue.put(_Failed(exc))
            return
        self._queue.put(_END)

    def health(self) -> ConnectionHealth:
        """The connection's current health (the same record is emitted every ``health_interval``)."""
        return self._stream.health()

    @property
    def queued(self) -> int:
        """Items waiting for the dataflow."""
        return len(self._queue)

    stop: threading.Event | None = None
    """Set from outside (a signal handler) to end this partition's input."""

    def next_batch(self) -> list[TradesItem]:
        if self._ended or (self.stop is not None and self.stop.is_set()):
            self._end()
        batch: list[TradesItem] = []
        for item in self._queue.take(self._batch_size):
            if item is _END:
                self._ended = True
                break
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, Trade):
                self._emitted[item.symbol] = (item.trade_id, ms_from_utc(item.ts_event))
            self._taken += not isinstance(item, ConnectionHealth)
            batch.append(item)  # type: ignore[arg-type]
        count_source_batch(batch)
        if self._ended and not batch:
            self._end()
        self._idle = not batch
        return batch

    def _end(self) -> NoReturn:
        """No more items: the recording notes how many the dataflow took (a replay stops there)."""
        if self._recorder is not None:
            self._recorder.end(self._taken)
        raise StopIteration

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + self._poll if self._idle else None

    def snapshot(self) -> Positions:
        return dict(self._emitted)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop finished in the meantime
                pass
        self._thread.join(timeout=10)
        if self._recorder is not None:
            self._recorder.close()


@dataclass(frozen=True)
class Venue:
    """One exchange's part of a :class:`TradesSource`: its endpoints, its instruments (``BASE-QUOTE``
    ids), where they start without resume state and where they end (see :class:`TradesSource`)."""

    spec: ExchangeSpec
    ws_url: str
    rest_url: str
    instruments: tuple[str, ...]
    start_after: Mapping[str, int | Position] = field(default_factory=dict)
    end_trade_ids: Mapping[str, int] = field(default_factory=dict)
    renew_after: timedelta | None = None
    """Replace each connection this old (default the spec's ``heartbeat.renew_after``)."""


def shard_key(exchange: str, chunk: Sequence[str]) -> str:
    """A partition's key: the comma-joined instruments, prefixed ``<exchange>:`` except for OKX (whose
    keys, and so its recovery snapshots, stay what they were before other exchanges came)."""
    joined = ",".join(chunk)
    return joined if exchange == "okx" else f"{exchange}:{joined}"


class TradesSource(FixedPartitionedSource[TradesItem, Positions]):
    """Live trades of every :class:`Venue`, one partition per websocket connection.

    Each exchange's instruments are sharded over ``ceil(n / max_instruments_per_connection)``
    connections (capped by the exchange's streams per connection; partition key: :func:`shard_key`).
    Each connection subscribes, keeps the link alive, reconnects (and renews itself before the
    exchange's connection age limit), drops trade ids already emitted, fills holes in the id sequence
    from REST and refuses poison (docs/okx-connectivity.md), emitting a :class:`Gap` before the trades
    of every hole it backfilled, a ``Rejected`` for everything refused, ``FeedState`` items telling
    whether each instrument's feed is complete up to when, and a :class:`ConnectionHealth` every
    ``health_interval`` seconds.

    Delivery guarantee: per exchange and instrument, trades are emitted in strictly increasing
    trade-id order and no trade id is emitted twice within one run. Every trade between the starting
    point and the end is emitted unless REST cannot return it, and then a ``Gap(filled=False)``
    covering it is emitted instead: a loss is never silent. The resume state (per instrument of a
    partition, the last trade id and time handed to the dataflow) makes the source at-least-once across
    Bytewax recovery: after a restart it backfills from the snapshot, so trades emitted after the last
    snapshot are emitted again and must be (and are, by trade id, TIME.md rule 10) dropped downstream.
    Without resume state or ``start_after`` an instrument starts after the newest trade REST reports
    when it subscribes.

    ``start_after`` (per venue): instrument -> trade id, or (trade id, its time in epoch ms), to start
    after when there is no resume state (the trades after it are backfilled; with the time, the backfill
    is also checked against it). ``end_trade_ids``: instrument -> last trade id to emit; a partition ends
    once all of its instruments reached theirs (finite replays and tests; default: run forever). The
    feed limits (``future_tolerance`` .. ``queue_max_items``) are those of
    ``configs.settings.FeedSettings``. ``recording``: record the session of each OKX partition
    (``connectors.okx.recording``) for a replay.
    """

    def __init__(
        self,
        venues: Sequence[Venue],
        *,
        max_instruments_per_connection: int = 20,
        ping_interval: float = 1.0,
        pong_timeout: float = 20.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        health_interval: float = 5.0,
        ack_timeout: float = 10.0,
        open_timeout: float = 10.0,
        rest_timeout: float = 10.0,
        rest_retries: int = 3,
        rest_min_interval: float = 0.1,
        backfill_max_pages: int = 50,
        reorder_window: float = 0.5,
        batch_size: int = 1000,
        poll_interval: float = 0.005,
        stop: threading.Event | None = None,
        future_tolerance: timedelta = timedelta(seconds=5),
        max_behind: timedelta = timedelta(minutes=10),
        max_frame_bytes: int = 1024 * 1024,
        max_trades_per_push: int = 1000,
        queue_max_items: int = 100_000,
        recording: SessionRecording | None = None,
        close_probe: timedelta | None = DEFAULT_CLOSE_PROBE,
    ) -> None:
        """``stop``: when set, every partition ends its input (a graceful shutdown: Bytewax then
        closes the sinks and the run returns). ``close_probe``: the candle grace; a connection silent
        when a candle is due to close (each minute plus it) sends a ping then, so the feed's clock
        reaches the close one round trip later (None: only the probe after ``ping_interval``)."""
        if not any(venue.instruments for venue in venues):
            raise ValueError("at least one instrument is needed")
        if max_instruments_per_connection < 1:
            raise ValueError("max_instruments_per_connection must be >= 1")
        limits = Limits(
            future_tolerance=future_tolerance,
            max_behind=max_behind,
            max_trades_per_push=max_trades_per_push,
            reorder_window=timedelta(seconds=reorder_window),
            close_grace=close_probe,
        )
        self.options = StreamOptions(
            ping_interval=ping_interval,
            pong_timeout=pong_timeout,
            reconnect_initial=reconnect_initial,
            reconnect_max=reconnect_max,
            open_timeout=open_timeout,
            ack_timeout=ack_timeout,
            health_interval=health_interval,
            rest_timeout=rest_timeout,
            rest_retries=rest_retries,
            rest_min_interval=rest_min_interval,
            backfill_max_pages=backfill_max_pages,
            max_frame_bytes=max_frame_bytes,
            limits=limits,
        )
        self.queue_max_items = queue_max_items
        self.venues: dict[str, Venue] = {}
        self.shards: dict[str, tuple[str, ...]] = {}
        self._venue_of: dict[str, Venue] = {}
        for venue in venues:
            unique = tuple(dict.fromkeys(venue.instruments))
            venue = Venue(**{**venue.__dict__, "instruments": unique})
            self.venues[venue.spec.name] = venue
            for chunk in venue.spec.connections(unique, max_instruments_per_connection):
                key = shard_key(venue.spec.name, chunk)
                self.shards[key], self._venue_of[key] = chunk, venue
        self.limiters: dict[str, ConnectLimiter] = {
            name: exchange_limiter(v.spec) for name, v in self.venues.items()
        }
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stop = stop
        self.recording = recording
        self.close_probe = close_probe

    def list_parts(self) -> list[str]:
        return list(self.shards)

    def build_part(self, step_id: str, for_part: str, resume_state: Positions | None) -> TradesPartition:
        venue, instruments = self._venue_of[for_part], self.shards[for_part]
        if resume_state is not None:
            positions: dict[str, Position] = dict(resume_state)
        else:
            positions = {
                inst: _position(venue.start_after[inst]) for inst in instruments if inst in venue.start_after
            }
        end_ids = {inst: venue.end_trade_ids[inst] for inst in instruments if inst in venue.end_trade_ids}
        name = venue.spec.name
        recorder = None
        if self.recording is not None and name == "okx":
            recorder = SessionRecorder(self.recording, for_part)
        partition = TradesPartition(
            venue.spec,
            for_part,
            venue.ws_url,
            venue.rest_url,
            instruments,
            self.options,
            positions,
            end_ids,
            self.batch_size,
            self.poll_interval,
            self.limiters[name],
            self.queue_max_items,
            recorder,
            self.close_probe,
            venue.renew_after,
        )
        partition.stop = self.stop
        return partition


def _position(after: int | Position) -> Position:
    return (after, None) if isinstance(after, int) else after


__all__ = ["Positions", "TradesItem", "TradesPartition", "TradesSource", "Venue", "shard_key"]
