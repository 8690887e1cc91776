"""The async side of the OKX trades source: one websocket connection's life for a set of instruments.

:class:`TradeStream` owns the socket and does the I/O, nothing else: connect (at most 3 new connections
per second process-wide, :class:`ConnectLimiter`), subscribe ``trades`` and check the per-arg acks, probe
a silent socket with OKX's text ``ping``, reconnect with exponential backoff and jitter after any loss
(64008 notices, server closes and 1009 included). A socket silent when a candle is due to close (each
minute's close plus ``close_probe``, the candle grace, plus the feed's delivery delay) is probed with a
``ping`` then, so the ``pong`` moves the feed's clock past the close and the candle closes about one
round trip later rather than at the next trade or the once-a-second probe; a socket that does not
answer still closes nothing. Every decision about trades belongs to the pure
:class:`market.sequencing.Sequencer`: the stream feeds it frames, timer ticks and connection events, and
its :class:`Handover` performs the actions it returns (REST requests whose answers go back to it, items
handed to an :class:`Outbox`; see docs/okx-connectivity.md). Given a :class:`SessionRecorder`, the
sequencer records every input.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from connectors.metrics import count_reconnect, watch_stream
from connectors.okx.connection import PROCESS_LIMITER, ConnectLimiter, Outbox, StreamOptions
from connectors.okx.events import ConnectionHealth, ConnectionState
from connectors.okx.handover import Handover
from connectors.okx.parser import EXCHANGE, parse_frame
from connectors.okx.recording import RecordedSequencer, SessionRecorder
from connectors.okx.rest import OkxRestClient
from connectors.okx.wire import ErrorEvent, Notice, Pong, SubscriptionAck
from market.sequencing import (
    Disconnected,
    Event,
    Heard,
    Position,
    Push,
    Refused,
    Sequencer,
    Start,
    Subscribed,
    Tick,
    Unreadable,
)
from market.types import Rejected

MESSAGE_TOO_BIG = 1009
_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_CLOSE_PROBE = timedelta(seconds=2)
"""The candle grace the probes are timed for (the default ``CANDLE_GRACE``)."""


def probe_close(at: datetime, grace: timedelta, delay: timedelta) -> datetime:
    """The first 1m close ``C`` whose probe instant ``C + grace + delay`` is after ``at``."""
    return _EPOCH + ((at - grace - delay - _EPOCH) // _MINUTE + 1) * _MINUTE


class _Reconnect(Exception):
    """Leave this connection and open another one (after the backoff)."""


class _Finished(Exception):
    """Every instrument reached its end trade id, or every instrument was refused."""


def _now() -> datetime:
    return datetime.now(UTC)


class TradeStream:
    """One connection's worth of instruments; ``run`` until cancelled or every end id is reached."""

    def __init__(
        self,
        name: str,
        ws_url: str,
        rest_url: str,
        instruments: Sequence[str],
        options: StreamOptions,
        outbox: Outbox,
        *,
        positions: Mapping[str, Position] | None = None,
        end_ids: Mapping[str, int] | None = None,
        limiter: ConnectLimiter = PROCESS_LIMITER,
        recorder: SessionRecorder | None = None,
        close_probe: timedelta | None = DEFAULT_CLOSE_PROBE,
    ) -> None:
        """``close_probe``: the candle grace to time the probes of a silent socket for (None: none)."""
        self.name = name
        self.ws_url = ws_url
        self.instruments = tuple(instruments)
        self.options = options
        self.outbox = outbox
        self._limiter = limiter
        make: Callable[..., Sequencer] = partial(RecordedSequencer, recorder) if recorder else Sequencer
        self.sequencer = make(
            EXCHANGE,
            self.instruments,
            options.limits,
            positions=positions,
            end_ids=end_ids,
            push_source="okx-ws",
            rest_source="okx-rest",
        )
        rest = OkxRestClient(
            rest_url,
            timeout=options.rest_timeout,
            retries=options.rest_retries,
            min_interval=options.rest_min_interval,
        )
        self._handover = Handover(name, self.sequencer, rest, outbox, options)
        self.refused: set[str] = set()
        self._attempts = 0
        self._requests = 0
        self._pending: set[str] = set()
        self._batch: tuple[str, list[str]] = ("", [])
        self._singles: dict[str, str] = {}
        self._last_frame = 0.0
        self._last_ping = float("-inf")
        self._unanswered: float | None = None
        self._subscribed_at: float | None = None
        self._close_probe = close_probe
        self._probe_close: datetime | None = None  # the close the next probe is for
        self._delay = timedelta(0)  # the delivery delay of the last push (receive time - trade time)
        # health
        self.state: ConnectionState = "connecting"
        self.connected_since: datetime | None = None
        self.last_message_at: datetime | None = None
        self.messages_received = 0
        self.reconnects = 0
        self.subscribe_errors = 0
        self.pings_sent = 0
        self.pongs_received = 0
        watch_stream(self, EXCHANGE)

    def health(self) -> ConnectionHealth:
        stalled, symbol = self.sequencer.stall()
        handover = self._handover
        return ConnectionHealth(
            EXCHANGE,
            self.name,
            self.instruments,
            _now(),
            self.state,
            self.connected_since,
            self.last_message_at,
            self.messages_received,
            handover.trades_emitted,
            handover.trades_backfilled,
            self.sequencer.duplicates,
            self.reconnects,
            handover.gaps_filled,
            handover.gaps_unfilled,
            handover.rejects,
            self.subscribe_errors,
            self.pings_sent,
            self.pongs_received,
            handover.last_error,
            stalled,
            symbol,
            len(self.outbox),
        )

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        health_task = loop.create_task(self._health_loop())
        self._handover.hand_all(self.sequencer.feed(Start(_now())))
        try:
            while not self.sequencer.finished:
                delay = self._limiter.reserve()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.state = "connecting"
                reason = "the connection ended"
                try:
                    await self._session()
                except _Finished:
                    break
                except _Reconnect as exc:
                    reason = str(exc)
                except ConnectionClosed as exc:
                    reason = await self._closed(exc)
                except (OSError, TimeoutError, WebSocketException) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                self._error(reason)
                if (
                    self._subscribed_at is not None
                    and loop.time() - self._subscribed_at >= self.options.stable_after
                ):
                    self._attempts = 0
                self._subscribed_at = self.connected_since = None
                self.reconnects += 1
                count_reconnect(EXCHANGE)
                self.state = "backoff"
                await self._handover.apply(
                    self.sequencer.feed(Disconnected(_now(), f"connection lost: {reason}"))
                )
                ceiling = min(self.options.reconnect_max, self.options.reconnect_initial * 2**self._attempts)
                self._attempts += 1
                await asyncio.sleep(ceiling * random.uniform(0.5, 1.0))
        finally:
            health_task.cancel()
            await asyncio.gather(health_task, return_exceptions=True)
            self.state = "stopped"
            self.connected_since = None
            self._handover.hand_all(self.sequencer.feed(Disconnected(_now(), "stopped")))
            self.outbox.put(self.health())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.health_interval)
            if not self.outbox.full:  # a snapshot: skipped rather than queued past the bound
                self.outbox.put(self.health())

    def _error(self, text: str) -> None:
        self._handover.error(text)

    async def _closed(self, exc: ConnectionClosed) -> str:
        """Why the connection closed; a frame too large for the websocket library is also a reject."""
        if exc.sent is not None and exc.sent.code == MESSAGE_TOO_BIG:
            limit = 4 * self.options.max_frame_bytes
            reason = f"frame over {limit} bytes: the connection was closed with 1009 (message too big)"
            await self._handover.apply(self.sequencer.feed(Unreadable(b"", reason, _now())))
            return reason
        if exc.rcvd is not None:
            return f"closed by the server: {exc.rcvd.code} {exc.rcvd.reason}".rstrip()
        return f"{type(exc).__name__}: {exc}"

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        options = self.options
        async with connect(
            self.ws_url,
            ping_interval=None,
            open_timeout=options.open_timeout,
            close_timeout=min(1.0, options.pong_timeout),
            max_size=4 * options.max_frame_bytes,
            max_queue=16,
        ) as ws:
            wanted = [inst for inst in self.instruments if inst not in self.refused]
            if not wanted:
                self._error(f"every instrument was refused: {sorted(self.refused)}; stopping")
                raise _Finished
            self._pending = set(wanted)
            self._batch = (await self._subscribe(ws, wanted), wanted)
            self._singles = {}
            ack_deadline = loop.time() + options.ack_timeout
            self._last_frame, self._last_ping, self._unanswered = loop.time(), float("-inf"), None
            while True:
                await self.outbox.room()
                raw = await self._receive(ws)
                if raw is None:
                    await self._handover.apply(self.sequencer.feed(Tick(_now())))
                else:
                    if await self._on_frame(ws, raw, _now()):
                        ack_deadline = loop.time() + options.ack_timeout
                if self._pending and loop.time() > ack_deadline:
                    raise _Reconnect(
                        f"no subscribe ack for {sorted(self._pending)} within {options.ack_timeout} s"
                    )
                if not self._pending and self.state != "subscribed":
                    self.state, self.connected_since = "subscribed", _now()
                    self._subscribed_at = loop.time()
                if self.sequencer.finished:
                    raise _Finished

    async def _subscribe(self, ws: ClientConnection, instruments: Sequence[str]) -> str:
        self._requests += 1
        request_id = f"s{self._requests}"
        args = [{"channel": "trades", "instId": inst} for inst in instruments]
        await ws.send(orjson.dumps({"id": request_id, "op": "subscribe", "args": args}).decode())
        return request_id

    async def _receive(self, ws: ClientConnection) -> bytes | None:
        """The next frame, or None when the sequencer has something due first. After ``ping_interval``
        of silence send ``ping`` (again every ``ping_interval`` while silent); after ``pong_timeout``
        without any frame since the first unanswered ``ping``, give up on the connection."""
        loop = asyncio.get_running_loop()
        options = self.options
        now = loop.time()
        if self._unanswered is not None and now - self._unanswered >= options.pong_timeout:
            raise _Reconnect(f"no pong or message within {options.pong_timeout} s after ping")
        ping_at = max(self._last_frame, self._last_ping) + options.ping_interval
        if now >= ping_at:
            self.pings_sent += 1
            self._last_ping = now
            if self._unanswered is None:
                self._unanswered = now
            await ws.send("ping")
            ping_at = now + options.ping_interval
        wake = ping_at
        if self._unanswered is not None:
            wake = min(wake, self._unanswered + options.pong_timeout)
        clock = _now()
        due = self.sequencer.next_wakeup()
        if due is not None:
            wake = min(wake, now + max(0.0, (due - clock).total_seconds()))
        probe = await self._probe(ws, clock)
        if probe is not None:
            wake = min(wake, now + max(0.0, (probe - clock).total_seconds()))
        try:
            async with asyncio.timeout_at(wake):
                frame = await ws.recv(decode=False)
        except TimeoutError:
            return None
        self._last_frame, self._unanswered = loop.time(), None
        return frame

    async def _probe(self, ws: ClientConnection, now: datetime) -> datetime | None:
        """Probe the socket if it has been silent since the instant the next candle is due to close;
        return when the next probe is due (None without probes)."""
        grace = self._close_probe
        if grace is None:
            return None
        if self._probe_close is None:
            self._probe_close = probe_close(now, grace, self._delay)
        due = self._probe_close + grace + self._delay
        if due > now:
            return due
        if self.last_message_at is None or self.last_message_at < due:
            self.pings_sent += 1
            self._last_ping = asyncio.get_running_loop().time()
            if self._unanswered is None:
                self._unanswered = self._last_ping
            await ws.send("ping")
        self._probe_close = probe_close(now, grace, self._delay)
        return self._probe_close + grace + self._delay

    async def _on_frame(self, ws: ClientConnection, raw: bytes, now: datetime) -> bool:
        """Feed one frame to the sequencer; True when new subscribe requests were sent."""
        self.messages_received += 1
        self.last_message_at = now
        resent = False
        notice: str | None = None
        event: Event = Heard(now)
        if len(raw) > self.options.max_frame_bytes:
            event = Unreadable(
                raw, f"frame of {len(raw)} bytes is over the {self.options.max_frame_bytes} byte limit", now
            )
        else:
            result = parse_frame(raw, now)
            if isinstance(result, list):
                event = Push(tuple(result), raw, now)
                delay = now - result[-1].ts_event if result else _MINUTE
                if -_SECOND < delay < _SECOND:  # a stale or future stamp says nothing of the delivery
                    self._delay = delay
            elif isinstance(result, Rejected):
                event = Unreadable(result.raw, result.reason, now)
            elif isinstance(result, SubscriptionAck):
                inst = result.inst_id or ""
                if result.op == "subscribe" and result.channel == "trades" and inst in self._pending:
                    self._pending.discard(inst)
                    event = Subscribed(inst, now)
            elif isinstance(result, ErrorEvent):
                event, resent = await self._on_error(ws, result, now)
            elif isinstance(result, Pong):
                self.pongs_received += 1
            elif isinstance(result, Notice):
                self._error(f"notice {result.code}: {result.msg}")
                if result.code == "64008":
                    notice = "64008 service-upgrade notice: reconnecting"
        await self._handover.apply(self.sequencer.feed(event))
        if notice is not None:
            raise _Reconnect(notice)
        return resent

    async def _on_error(self, ws: ClientConnection, error: ErrorEvent, now: datetime) -> tuple[Event, bool]:
        """A refused subscription: OKX refuses a whole request for one bad arg, so the batch is retried
        one instrument at a time; an instrument refused alone is not asked for again."""
        self.subscribe_errors += 1
        self._error(f"error event {error.code}: {error.msg}")
        batch_id, wanted = self._batch
        if error.request_id == batch_id and len(wanted) > 1:
            for inst in self._pending:
                self._singles[await self._subscribe(ws, [inst])] = inst
            return Heard(now), True
        if error.request_id in self._singles or error.request_id == batch_id:
            refused = self._singles.get(error.request_id or "") or wanted[0]
            self.refused.add(refused)
            self._pending.discard(refused)
            if self.refused.issuperset(self.instruments):
                self._error(f"every instrument was refused: {sorted(self.refused)}; stopping")
                raise _Finished
            return Refused(refused, now, f"{error.code} {error.msg}"), False
        return Heard(now), False
