"""The async side of a live trades source: one websocket connection's life for a set of instruments
of one exchange, driven by its :class:`connectors.exchange.ExchangeSpec`.

:class:`TradeStream` owns the socket and does the I/O, nothing else: connect (within the exchange's
connection rate, process-wide, :class:`ConnectLimiter`), send the spec's subscriptions (paced under its
``messages_per_second``) and check their acks, probe a silent socket with a ping (the exchange's text
``ping`` when it has one, else a websocket ping frame), reconnect with exponential backoff and jitter
after any loss (server notices asking to move, server closes and 1009 included), and replace a
connection at the spec's ``renew_after`` before the exchange ends it (Binance: 24 h), the switch-over
backfilled by id like any reconnect. A socket silent when a candle is due to close (each minute's close
plus ``close_probe``, the candle grace, plus the feed's delivery delay) is probed then, so the pong moves
the feed's clock past the close and the candle closes about one round trip later rather than at the
next trade or the once-a-second probe; a socket that does not answer still closes nothing. Every
decision about trades belongs to the pure :class:`market.sequencing.Sequencer`: the stream feeds it
frames, timer ticks and connection events, and its :class:`Handover` performs the actions it returns
(REST requests whose answers go back to it, items handed to an :class:`Outbox`; see
docs/okx-connectivity.md and docs/binance.md). Given a :class:`SessionRecorder`, the sequencer records
every input.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from connectors.exchange import Acked, ExchangeSpec, Pong, ServerNotice
from connectors.exchange import Refused as RequestRefused
from connectors.handover import Handover
from connectors.metrics import count_reconnect, watch_stream
from connectors.okx.events import ConnectionHealth, ConnectionState
from connectors.okx.recording import RecordedSequencer, SessionRecorder
from connectors.stream_connection import ConnectLimiter, Outbox, PingFrames, StreamOptions, exchange_limiter
from connectors.stream_subscriptions import Subscriptions
from market.sequencing import (
    Disconnected,
    Event,
    Heard,
    Position,
    Push,
    Sequencer,
    Start,
    Tick,
    Unreadable,
)
from market.types import Rejected

MESSAGE_TOO_BIG = 1009
_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PONG_POLL = 0.02
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
    """One connection's worth of one exchange's instruments; ``run`` until cancelled or every end id is
    reached."""

    def __init__(
        self,
        spec: ExchangeSpec,
        name: str,
        ws_url: str,
        rest_url: str,
        instruments: Sequence[str],
        options: StreamOptions,
        outbox: Outbox,
        *,
        positions: Mapping[str, Position] | None = None,
        end_ids: Mapping[str, int] | None = None,
        limiter: ConnectLimiter | None = None,
        recorder: SessionRecorder | None = None,
        close_probe: timedelta | None = DEFAULT_CLOSE_PROBE,
        renew_after: timedelta | None = None,
    ) -> None:
        """``close_probe``: the candle grace to time the probes of a silent socket for (None: none).
        ``limiter``: default the exchange's process-wide one. ``renew_after``: replace a connection
        this old (default the spec's ``heartbeat.renew_after``; None there: never)."""
        self.spec = spec
        self.exchange = spec.name
        self.name = name
        self.instruments = tuple(instruments)
        self.ws_url = spec.connect_url(ws_url, self.instruments)
        self.options = options
        self.outbox = outbox
        self._limiter = limiter or exchange_limiter(spec)
        self._parse = spec.parser(self.instruments)
        self._renew_after = renew_after or spec.heartbeat.renew_after
        self._text_ping = spec.heartbeat.client_ping
        self._frames = PingFrames()
        make: Callable[..., Sequencer] = partial(RecordedSequencer, recorder) if recorder else Sequencer
        self.sequencer = make(
            spec.name,
            self.instruments,
            options.limits,
            positions=positions,
            end_ids=end_ids,
            push_source=f"{spec.name}-ws",
            rest_source=f"{spec.name}-rest",
        )
        rest = spec.rest_client(
            rest_url, options.rest_timeout, options.rest_retries, options.rest_min_interval
        )
        self._handover = Handover(name, self.sequencer, rest, outbox, options)
        self.subscriptions = Subscriptions(spec, self.instruments)
        self.refused = self.subscriptions.refused
        self._handover.refused = self.refused  # refused on REST's word: not asked for again
        self._attempts = 0
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
        watch_stream(self, spec.name)

    def health(self) -> ConnectionHealth:
        stalled, symbol = self.sequencer.stall()
        handover = self._handover
        return ConnectionHealth(
            self.exchange,
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
                count_reconnect(self.exchange)
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
            wanted = self.subscriptions.wanted()
            if not wanted:
                self._error(f"every instrument was refused: {sorted(self.refused)}; stopping")
                raise _Finished
            opened = loop.time()
            await self.subscriptions.subscribe(ws, wanted)
            ack_deadline = loop.time() + options.ack_timeout
            self._last_frame, self._last_ping, self._unanswered = loop.time(), float("-inf"), None
            self._frames.reset()
            while True:
                await self.outbox.room()
                raw = await self._receive(ws)
                if raw is None:
                    await self._handover.apply(self.sequencer.feed(self._pong_or_tick()))
                else:
                    if await self._on_frame(ws, raw, _now()):
                        ack_deadline = loop.time() + options.ack_timeout
                pending = self.subscriptions.pending
                if pending and loop.time() > ack_deadline:
                    raise _Reconnect(f"no subscribe ack for {sorted(pending)} within {options.ack_timeout} s")
                if not pending and self.state != "subscribed":
                    self.state, self.connected_since = "subscribed", _now()
                    self._subscribed_at = loop.time()
                if self.sequencer.finished:
                    raise _Finished
                self._check_age(loop.time() - opened)

    def _check_age(self, age: float) -> None:
        """Replace a connection at ``renew_after``, before the exchange ends it."""
        renew = self._renew_after
        if renew is not None and age >= renew.total_seconds():
            raise _Reconnect(
                f"renewing the connection after {age:.0f} s (the exchange ends it at its max age)"
            )

    def _pong_or_tick(self) -> Event:
        """A ping frame's pong counts as a frame heard (it moves the feed's clock); else a timer tick."""
        if self._frames.answered():
            self.pongs_received += 1
            self._last_frame, self._unanswered = asyncio.get_running_loop().time(), None
            now = _now()
            self.last_message_at = now
            return Heard(now)
        return Tick(_now())

    async def _ping(self, ws: ClientConnection) -> None:
        """The exchange's text ping, or a websocket ping frame whose pong is noted when it comes."""
        if self._text_ping is not None:
            await ws.send(self._text_ping)
        else:
            await self._frames.send(ws)

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
            await self._ping(ws)
            ping_at = now + options.ping_interval
        wake = ping_at
        if self._unanswered is not None:
            wake = min(wake, self._unanswered + options.pong_timeout)
        if self._frames.waiting:  # a ping frame's pong is looked for every few milliseconds
            wake = min(wake, now + _PONG_POLL)
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
            await self._ping(ws)
        self._probe_close = probe_close(now, grace, self._delay)
        return self._probe_close + grace + self._delay

    async def _on_frame(self, ws: ClientConnection, raw: bytes, now: datetime) -> bool:
        """Feed one frame to the sequencer; True when new subscribe requests were sent."""
        self.messages_received += 1
        self.last_message_at = now
        resent = False
        notice: str | None = None
        events: list[Event] = [Heard(now)]
        if len(raw) > self.options.max_frame_bytes:
            events = [
                Unreadable(
                    raw,
                    f"frame of {len(raw)} bytes is over the {self.options.max_frame_bytes} byte limit",
                    now,
                )
            ]
        else:
            result = self._parse(raw, now)
            if isinstance(result, list):
                events = [Push(tuple(result), raw, now)]
                delay = now - result[-1].ts_event if result else _MINUTE
                if -_SECOND < delay < _SECOND:  # a stale or future stamp says nothing of the delivery
                    self._delay = delay
            elif isinstance(result, Rejected):
                events = [Unreadable(result.raw, result.reason, now)]
            elif isinstance(result, Acked):
                events = self.subscriptions.acked(result, now) or events
            elif isinstance(result, RequestRefused):
                event, resent = await self._on_error(ws, result, now)
                events = [event]
            elif isinstance(result, Pong):
                self.pongs_received += 1
            elif isinstance(result, ServerNotice):
                self._error(f"notice {result.code}: {result.msg}")
                if result.reconnect:
                    notice = f"notice {result.code}: reconnecting"
        for event in events:
            await self._handover.apply(self.sequencer.feed(event))
        if notice is not None:
            raise _Reconnect(notice)
        return resent

    async def _on_error(
        self, ws: ClientConnection, error: RequestRefused, now: datetime
    ) -> tuple[Event, bool]:
        """A refused subscription (:meth:`Subscriptions.refusal`); stop once every one is refused."""
        self.subscribe_errors += 1
        self._error(f"error event {error.code}: {error.msg}")
        event, resent = await self.subscriptions.refusal(ws, error, now)
        if self.subscriptions.all_refused:
            self._error(f"every instrument was refused: {sorted(self.refused)}; stopping")
            raise _Finished
        return event, resent
