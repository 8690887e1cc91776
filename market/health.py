"""Collector health: a collector's status snapshot and the pure rules that judge it.

``CollectorHealth`` is what a collector reports at one instant; ``health_issues`` says what is wrong
with it (docs/redis.md, "Health schema and issue rules") and ``assess_health`` fills the verdict in.
No I/O and no clock reads: the time judged is the snapshot's own ``time``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

Status = Literal["starting", "running", "reconnecting", "stopped", "error"]

HEALTH_EXPIRES_AFTER = timedelta(seconds=30)
"""A snapshot older than this is not current: its collector is not reporting (stopped, killed or from an
earlier run). The Redis key of the latest snapshot expires after it; readers of the ``collector_health``
table compare its ``time`` with it."""


@dataclass(frozen=True, slots=True)
class HealthRules:
    """Thresholds of ``assess_health``; see docs/redis.md for each issue."""

    stale_after: timedelta = timedelta(seconds=60)
    max_error_rate: float = 0.05
    min_messages_for_rate: int = 20
    max_reconnects: int = 5
    reconnect_window: timedelta = timedelta(minutes=5)
    max_backlog: int = 10_000
    max_ingestion_stall: timedelta = timedelta(seconds=10)
    """Longest span over which trade pushes may keep arriving while none is accepted (``details``
    ``ingestion_stalled_seconds``): beyond it ingestion has stopped although the socket is up."""


@dataclass(frozen=True, slots=True)
class CollectorHealth:
    """A collector's status snapshot at ``time``: its status, what it follows and collects, whether it
    is restarted, its statistics and how it is checked (docs/redis.md); ``is_healthy``/``issues``,
    ``last_check_time`` and ``stale_data_threshold_seconds`` come from ``assess_health``."""

    collector: str
    time: datetime
    status: Status
    should_be_running: bool
    messages_received: int = 0
    messages_processed: int = 0
    errors: int = 0
    restarts: int = 0
    uptime_seconds: float = 0.0
    reconnect_attempts: int = 0
    last_message_time: datetime | None = None
    last_error: str | None = None
    is_healthy: bool = True
    issues: tuple[str, ...] = ()
    details: Mapping[str, float] = field(default_factory=dict)
    """Free-form extra numbers (e.g. per-kind publish counters)."""
    status_since: datetime | None = None
    """When the collector entered ``status`` (None: unknown)."""
    last_restart_time: datetime | None = None
    """When the collector's process was last restarted by the supervisor (None: never)."""
    symbols: tuple[str, ...] = ()
    """The instruments the collector follows (``BTC-USDT``, ...)."""
    data_types: tuple[str, ...] = ()
    """What it collects for them (``trades``)."""
    auto_restart: bool | None = None
    """Whether a supervisor restarts the collector's process when it exits (``tcp.py up``; None: the
    record does not say)."""
    health_check_interval_seconds: float | None = None
    """Seconds since the collector's previous health check (None: this is its first)."""
    stale_data_threshold_seconds: float | None = None
    """The silence after which the check calls the data stale (``HealthRules.stale_after``; None: not
    checked by the rules)."""
    last_check_time: datetime | None = None
    """When the rules last checked the collector: the snapshot's own ``time``, as no rule reads a clock
    (None: not checked by them)."""


Rule = Callable[[CollectorHealth, HealthRules, "CollectorHealth | None"], list[str]]
"""One check: ``(snapshot, rules, the previous snapshot if it is older, else None) -> its issues``."""


def _status(h: CollectorHealth, rules: HealthRules, base: CollectorHealth | None) -> list[str]:
    if h.status == "error":
        return [f"status is error: {h.last_error or 'no error message'}"]
    if h.should_be_running and h.status != "running":
        return [f"status is {h.status} but the collector should be running"]
    return []


def _silence(h: CollectorHealth, rules: HealthRules, base: CollectorHealth | None) -> list[str]:
    if not h.should_be_running:
        return []
    stale = rules.stale_after.total_seconds()
    if h.last_message_time is None:
        if h.uptime_seconds > stale:
            return [f"no message received in {h.uptime_seconds:.0f} s since start (limit {stale:.0f} s)"]
        return []
    quiet = (h.time - h.last_message_time).total_seconds()
    return [f"no message for {quiet:.0f} s (limit {stale:.0f} s)"] if quiet > stale else []


def _error_rate(h: CollectorHealth, rules: HealthRules, base: CollectorHealth | None) -> list[str]:
    received = h.messages_received - (base.messages_received if base else 0)
    errors = h.errors - (base.errors if base else 0)
    enough = rules.min_messages_for_rate
    if received >= enough and errors / received > rules.max_error_rate:
        return [
            f"error rate {errors / received:.1%} over {received} messages (limit {rules.max_error_rate:.1%})"
        ]
    if received < enough and errors >= enough:
        return [f"{errors} errors over only {received} messages"]
    return []


def _reconnects(h: CollectorHealth, rules: HealthRules, base: CollectorHealth | None) -> list[str]:
    window = rules.reconnect_window.total_seconds()
    if base is not None:
        reconnects = h.reconnect_attempts - base.reconnect_attempts
        span = (h.time - base.time).total_seconds()
    else:
        reconnects, span = h.reconnect_attempts, h.uptime_seconds
    per_window = reconnects * window / max(span, window)
    if reconnects and per_window >= rules.max_reconnects:
        return [
            f"reconnect storm: {reconnects} reconnect attempts in {span:.0f} s "
            f"(limit {rules.max_reconnects} per {window:.0f} s)"
        ]
    return []


def _ingestion(h: CollectorHealth, rules: HealthRules, base: CollectorHealth | None) -> list[str]:
    stalled = h.details.get("ingestion_stalled_seconds", 0.0)
    limit = rules.max_ingestion_stall.total_seconds()
    if h.should_be_running and stalled > limit:
        return [
            f"ingestion stopped: trade pushes kept arriving for {stalled:.0f} s and none was "
            f"accepted (limit {limit:.0f} s); last error: {h.last_error or 'none'}"
        ]
    return []


def _backlog(h: CollectorHealth, rules: HealthRules, base: CollectorHealth | None) -> list[str]:
    backlog = h.messages_received - h.messages_processed
    if backlog > rules.max_backlog:
        return [f"backlog of {backlog} received but unprocessed messages (limit {rules.max_backlog})"]
    return []


RULES: tuple[Rule, ...] = (_status, _silence, _error_rate, _reconnects, _ingestion, _backlog)
"""The checks, in the order their issues are listed."""


def health_issues(
    h: CollectorHealth, rules: HealthRules = HealthRules(), previous: CollectorHealth | None = None
) -> tuple[str, ...]:
    """What is wrong with a collector, judged from its counters and timestamps at ``h.time``.

    Rates use the change since ``previous`` (the collector's previous snapshot) when given, else the
    totals since start.
    """
    base = previous if previous is not None and previous.time < h.time else None
    return tuple(issue for rule in RULES for issue in rule(h, rules, base))


def assess_health(
    h: CollectorHealth, rules: HealthRules = HealthRules(), previous: CollectorHealth | None = None
) -> CollectorHealth:
    """``h`` checked at its own ``time``: ``issues`` and ``is_healthy`` filled in by ``health_issues``,
    with the check's time and stale-data threshold."""
    issues = health_issues(h, rules, previous)
    return replace(
        h,
        issues=issues,
        is_healthy=not issues,
        last_check_time=h.time,
        stale_data_threshold_seconds=rules.stale_after.total_seconds(),
    )
