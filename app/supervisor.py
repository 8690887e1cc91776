"""The services of ``tcp.py up`` and how they are kept running.

A :class:`Service` is a child process in a session of its own (Ctrl-C reaches only the supervisor,
which stops the children in order); its stderr is passed through to the terminal and its last lines
kept. :class:`Supervisor` restarts a service that exits while ``up`` runs, after a backoff that doubles
from ``restart_initial`` up to ``restart_max`` with jitter (each delay drawn in [½, 1] of it), until
``crash_loop_exits`` exits fall within ``crash_loop_window``: then it stops restarting that service and
says so with the service's last error lines. Each service's state (running, restarting, crash loop) and
restart count are written to ``collector_health`` as the collector ``service:<name>``, so the Health
page shows them; the flow resumes from the database after a restart (docs/reliability.md), so a restart
changes no stored candle.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import IO

from configs.sections import SupervisorSettings
from connectors.health_table import HealthTableWriter
from flows.health import RESTARTS_ENV
from market.health import CollectorHealth, Status

log = logging.getLogger("tcp.stack")

SERVICE_PREFIX = "service:"
"""Collector names of the services in ``collector_health`` (``service:flow``, ``service:dashboard``)."""
TAIL_LINES = 20
"""Lines of a service's stderr kept to explain its exit."""


@dataclass
class Service:
    """A child process of the stack. ``prepare``, when given, returns the argv of the next start (for
    a service whose arguments depend on the stored data, like the simulator's continuation)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    prepare: Callable[[], list[str]] | None = None
    stdout: int | None = None
    """Where a (re)start sends the service's stdout (None: the terminal)."""
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _relay_thread: threading.Thread | None = None

    def start(self, stdout: int | None = None) -> None:
        if self.prepare is not None and self.process is not None:
            self.argv = self.prepare()
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            start_new_session=True,
            stdout=stdout if stdout is not None else self.stdout,
            stderr=subprocess.PIPE,
        )
        assert self.process.stderr is not None
        self._relay_thread = threading.Thread(target=self._relay, args=(self.process.stderr,), daemon=True)
        self._relay_thread.start()
        log.info("started %s (pid %d): %s", self.name, self.process.pid, " ".join(self.argv))

    def _relay(self, stream: IO[bytes]) -> None:
        """Pass the service's stderr through, keeping its last lines."""
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace")
                sys.stderr.write(line)
                sys.stderr.flush()
                self.tail.append(line.rstrip())

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
            self.process.kill()
            self.process.wait()
        log.info("stopped %s", self.name)

    def last_error(self) -> str:
        """The last lines that look like an error (else the last lines), joined on one line; waits up to
        a second for an exited service's last output."""
        if self._relay_thread is not None and self.process is not None and self.process.poll() is not None:
            self._relay_thread.join(timeout=1.0)
        lines = [line for line in self.tail if line.strip()]
        errors = [
            line for line in lines if any(w in line for w in ("Error", "error", "Traceback", "CRITICAL"))
        ]
        return " | ".join((errors or lines)[-3:]) or "no output"


@dataclass
class _Track:
    """What the supervisor knows of one service."""

    exits: deque[float] = field(default_factory=deque)
    restarts: int = 0
    last_restart: datetime | None = None
    restart_at: float | None = None
    crash_loop: str | None = None
    status: Status = "running"
    since: datetime = field(default_factory=lambda: datetime.now(UTC))


class Supervisor:
    """Watches the services; call :meth:`check` often (every 0.5 s). ``say`` prints one line."""

    def __init__(
        self,
        services: list[Service],
        policy: SupervisorSettings,
        database_url: str | None = None,
        say: Callable[[str], None] = print,
        rng: random.Random | None = None,
    ) -> None:
        self.services = services
        self.policy = policy
        self.say = say
        self.rng = rng or random.Random()
        self.tracks = {s.name: _Track() for s in services}
        self.health = HealthTableWriter(database_url) if database_url else None
        self._reported = 0.0

    def delay(self, exits: int) -> float:
        """Backoff before the restart after ``exits`` recent exits, with jitter."""
        base = min(
            self.policy.restart_max.total_seconds(),
            self.policy.restart_initial.total_seconds() * 2 ** max(0, exits - 1),
        )
        return base * self.rng.uniform(0.5, 1.0)

    def check(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for service in self.services:
            track = self.tracks[service.name]
            if track.crash_loop is not None:
                continue
            if track.restart_at is not None:
                if now >= track.restart_at:
                    self._restart(service, track)
                continue
            assert service.process is not None
            code = service.process.poll()
            if code is not None:
                self._exited(service, track, code, now)
        if self.health is not None and now - self._reported >= 2.0:
            self._reported = now
            self.health.write([self.snapshot(s) for s in self.services])

    def _exited(self, service: Service, track: _Track, code: int, now: float) -> None:
        window = self.policy.crash_loop_window.total_seconds()
        track.exits.append(now)
        while track.exits and now - track.exits[0] > window:
            track.exits.popleft()
        cause = service.last_error()
        if len(track.exits) >= self.policy.crash_loop_exits:
            track.crash_loop = (
                f"crash loop: {len(track.exits)} exits within {window:.0f} s, not restarted "
                f"(last exit code {code}): {cause}"
            )
            self._set(track, "error")
            self.say(f"{service.name}: {track.crash_loop}. Fix the cause and run `python3 tcp.py up` again.")
            log.error("%s: %s", service.name, track.crash_loop)
            return
        wait = self.delay(len(track.exits))
        track.restart_at = now + wait
        self._set(track, "reconnecting")
        self.say(f"{service.name} exited with code {code} ({cause}); restarting in {wait:.1f} s")

    def _restart(self, service: Service, track: _Track) -> None:
        track.restart_at = None
        track.restarts += 1
        track.last_restart = datetime.now(UTC)
        # The flow reports them in its collectors' health (flows/health.py).
        count, last = RESTARTS_ENV
        service.env |= {count: str(track.restarts), last: track.last_restart.isoformat()}
        service.start()
        self._set(track, "running")
        log.info("%s restarted (restart %d)", service.name, track.restarts)

    @staticmethod
    def _set(track: _Track, status: Status) -> None:
        if track.status != status:
            track.status, track.since = status, datetime.now(UTC)

    def snapshot(self, service: Service) -> CollectorHealth:
        """The service's state as a collector of its own, ``service:<name>``."""
        track = self.tracks[service.name]
        error = track.crash_loop or (service.last_error() if track.status != "running" else None)
        now = datetime.now(UTC)
        return CollectorHealth(
            collector=f"{SERVICE_PREFIX}{service.name}",
            time=now,
            status=track.status,
            should_be_running=track.crash_loop is None,
            auto_restart=track.crash_loop is None,  # up restarts it until a crash loop
            uptime_seconds=(now - track.since).total_seconds() if track.status == "running" else 0.0,
            restarts=track.restarts,
            last_error=error,
            is_healthy=track.status == "running",
            status_since=track.since,
            issues=(track.crash_loop,) if track.crash_loop else (),
            last_restart_time=track.last_restart,
        )

    def close(self) -> None:
        if self.health is not None:
            stopped = [
                replace(self.snapshot(s), status="stopped", should_be_running=False) for s in self.services
            ]
            self.health.write(stopped)
            self.health.close()
