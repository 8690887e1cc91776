"""The processes of a replay cluster reporting to process 0 over the database they share (PostgreSQL
``LISTEN``/``NOTIFY`` on one channel per run).

Process 0 listens from when its flow is built, which is before ``bytewax.run`` connects the processes,
so no report can precede it (no process runs a step until all have connected). Every other process
notifies its progress (rows read) every few seconds and, once its database sink has closed (all its rows
written), its tally. Process 0 adds the others' progress to its progress line and, once its own sink has
closed, waits for every other process's tally before it refreshes the rollups and prints the one summary.

Messages are JSON, at most ``MAX_PAYLOAD`` bytes: ``{"process": i, "rows_read": n}`` and
``{"process": i, "rows_read": n, "done": {...}}``. Delivery: a notification reaches the sessions listening
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

    # -- process 0 -------------------------------------------------------------------------------------

    def listen(self) -> ClusterBoard:
        """Start listening (process 0); raises ``psycopg.Error`` if the database cannot be reached."""
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
