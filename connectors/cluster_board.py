"""The processes of a replay cluster reporting to process 0 over the database they share (PostgreSQL
``LISTEN``/``NOTIFY`` on one channel per run).

Process 0 listens from when its flow is built, which is before ``bytewax.run`` connects the processes,
so no report can precede it (no process runs a step until all have connected). Every other process
notifies its progress (rows read) every few seconds and, once its database sink has closed (all its rows
written), its tally. Process 0 adds the others' progress to its progress line and, once its own sink has
closed, waits for every other process's tally before it refreshes the rollups and prints the one summary.

Before the cluster connects, the processes also meet on the board (:meth:`ClusterBoard.meet`): Bytewax's
process i connects to every process j < i and, if j is not listening yet, retries only a second later.
So each process but the last announces when its cluster port listens (seen in ``/proc/net/tcp``), and
each process i waits for the announcements of the processes before it (asking for them once it listens
itself, in case they came earlier) before it hands its flow to Bytewax.

Messages are JSON, at most ``MAX_PAYLOAD`` bytes: ``{"process": i, "rows_read": n}``,
``{"process": i, "rows_read": n, "done": {...}}``, ``{"process": i, "listening": true}`` and
``{"process": i, "ask": true}``. Delivery: a notification reaches the sessions listening
when it is sent, in order; a process that cannot reach the database cannot report, so process 0 stops
waiting after a timeout and names the processes it did not hear from. Progress reports are best effort.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

log = logging.getLogger(__name__)

MAX_PAYLOAD = 7900
"""PostgreSQL's limit on a notification's payload is 8000 bytes."""
MEET_WAIT = 60.0
"""Seconds a process waits to hear that the processes before it listen (then Bytewax retries as usual)."""
POLL = 0.05
"""Seconds the listener waits for a notification before it checks whether it is to stop (``close`` waits
up to this long for it, at the end of a replay)."""


def channel_for(*parts: Iterable[str] | str) -> str:
    """A channel name (an identifier) that every process of one run derives alike from ``parts``."""
    digest = hashlib.sha256()
    for part in parts:
        for text in [part] if isinstance(part, str) else part:
            digest.update(text.encode() + b"\0")
    return f"tcp_replay_{digest.hexdigest()[:20]}"


class ClusterBoard:
    """Reports between the ``processes`` processes of one replay, on ``channel`` of the database ``url``."""

    def __init__(
        self, url: str, channel: str, process: int, processes: int, connect_timeout: float = 5.0
    ) -> None:
        self.url = url
        self.channel = channel
        self.process = process
        self.processes = processes
        self.connect_timeout = max(1, round(connect_timeout))
        self._read: dict[int, int] = {}
        self._done: dict[int, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._sender: psycopg.Connection[Any] | None = None
        self._sending = threading.Lock()
        self._listening: set[int] = set()
        """Processes whose cluster port listens, as announced."""
        self._ready = threading.Event()
        """This process's cluster port listens."""

    # -- process 0 -------------------------------------------------------------------------------------

    def listen(self) -> ClusterBoard:
        """Start listening (process 0 from the start, the others to meet); raises ``psycopg.Error`` if the
        database cannot be reached."""
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)
        conn.execute(f'LISTEN "{self.channel}"')  # the channel is a hex digest: no quoting issue
        self._listener = threading.Thread(
            target=self._receive, args=(conn,), name="cluster-board", daemon=True
        )
        self._listener.start()
        return self

    def _receive(self, conn: psycopg.Connection[Any]) -> None:
        with conn:
            while not self._stop.is_set():
                try:
                    notes = list(conn.notifies(timeout=POLL))
                except psycopg.Error as error:
                    log.warning("cluster reports: listening failed (%s)", error)
                    return
                for note in notes:
                    self._take(note.payload)

    def _take(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            process = int(message["process"])
        except (ValueError, KeyError, TypeError):
            log.warning("cluster reports: ignored a message that is not one: %.80s", payload)
            return
        if "listening" in message or "ask" in message:
            self._meeting(process, message)
            return
        with self._changed:
            self._read[process] = max(self._read.get(process, 0), int(message.get("rows_read", 0)))
            if "done" in message:
                self._done[process] = dict(message["done"])
            self._changed.notify_all()

    def others_read(self) -> int:
        """Rows read so far by the other processes, as last reported."""
        with self._changed:
            return sum(self._read.values())

    def wait_for_others(self, timeout: float) -> tuple[list[dict[str, Any]], list[int]]:
        """Every other process's final tally, waiting up to ``timeout`` seconds for them; and the
        processes not heard from by then."""
        others = set(range(self.processes)) - {self.process}
        deadline = time.monotonic() + timeout
        with self._changed:
            while not others <= self._done.keys() and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(min(left, 1.0))
            return [self._done[p] for p in sorted(others & self._done.keys())], sorted(
                others - self._done.keys()
            )

    # -- start-up ----------------------------------------------------------------------------------------

    def meet(self, port: int | None, timeout: float = MEET_WAIT) -> bool:
        """Announce when this process's cluster ``port`` listens (from a thread), and wait up to ``timeout``
        seconds until every process before this one has announced its own; whether all of them did."""
        if self._listener is None:
            try:
                self.listen()
            except psycopg.Error as error:
                log.warning("cluster reports: cannot meet the other processes (%s)", error)
                return False
        if self.process < self.processes - 1:  # the last process has nobody connecting to it
            threading.Thread(target=self._announce, args=(port,), name="cluster-meet", daemon=True).start()
        earlier = set(range(self.process))
        if not earlier:
            return True
        self._send_quietly({"process": self.process, "ask": True})
        deadline = time.monotonic() + timeout
        with self._changed:
            while not earlier <= self._listening and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(min(left, 0.5))
            return earlier <= self._listening

    def _announce(self, port: int | None) -> None:
        deadline = time.monotonic() + MEET_WAIT
        while not self._stop.is_set() and time.monotonic() < deadline:
            listening = listening_on(port) if port is not None else None
            if listening is None:  # cannot tell: announce after a pause instead
                self._stop.wait(0.3)
            if listening is not False:
                break
            self._stop.wait(0.01)
        self._ready.set()
        self._send_quietly({"process": self.process, "listening": True})

    def _meeting(self, process: int, message: Mapping[str, Any]) -> None:
        if process == self.process:
            return
        if "listening" in message:
            with self._changed:
                self._listening.add(process)
                self._changed.notify_all()
        elif self._ready.is_set():  # asked by a process that began listening after the announcement
            self._send_quietly({"process": self.process, "listening": True})

    def _send_quietly(self, message: Mapping[str, Any]) -> None:
        with self._sending:
            try:
                self._notify(message)
            except psycopg.Error as error:
                log.debug("cluster reports: %s not sent (%s)", message, error)
                self._disconnect()

    # -- the other processes ---------------------------------------------------------------------------

    def report_progress(self, rows_read: int) -> None:
        """Tell process 0 how many rows this process has read (best effort: a failure is logged)."""
        with self._sending:
            try:
                self._notify({"process": self.process, "rows_read": rows_read})
            except psycopg.Error as error:
                log.debug("cluster reports: progress not sent (%s)", error)
                self._disconnect()

    def report_done(self, rows_read: int, tally: Mapping[str, Any]) -> bool:
        """Tell process 0 that this process has written everything, with its tally; False (logged) if the
        database cannot be reached."""
        message = {"process": self.process, "rows_read": rows_read, "done": dict(tally)}
        with self._sending:
            try:
                self._notify(message)
                return True
            except psycopg.Error as error:
                log.warning("cluster reports: could not tell process 0 this process is done (%s)", error)
                return False
            finally:
                self._disconnect()

    def _notify(self, message: Mapping[str, Any]) -> None:
        payload = json.dumps(message, separators=(",", ":"), default=str)
        if len(payload.encode()) > MAX_PAYLOAD:
            raise ValueError(f"cluster report of {len(payload)} bytes is over {MAX_PAYLOAD}")
        if self._sender is None or self._sender.closed:
            self._sender = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)
        self._sender.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))

    def _disconnect(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        with self._sending:
            self._disconnect()


def listening_on(port: int) -> bool | None:
    """Whether a socket of this network namespace listens on TCP ``port`` (``/proc/net/tcp``, ``tcp6``);
    None where that cannot be read."""
    found: bool | None = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        found = found or False
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return found
