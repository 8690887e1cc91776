"""Collector health for the live fan-out: a source's ``ConnectionHealth`` records, per connection, turned
into the ``CollectorHealth`` snapshots the dashboard shows (status, counters, issues).

A stateful step keyed by connection keeps the previous snapshot, so rates (errors, reconnects) are
judged over the interval between snapshots (``market.health.assess_health``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from connectors.okx.events import ConnectionHealth
from market.health import CollectorHealth, Status, assess_health

_STATUS: dict[str, Status] = {
    "connecting": "starting",
    "subscribed": "running",
    "backoff": "reconnecting",
    "stopped": "stopped",
}


RESTARTS_ENV = ("TCP_RESTARTS", "TCP_LAST_RESTART")
"""Set by the supervisor of ``tcp.py up`` on a restarted flow: how often, and when last."""
AUTO_RESTART_ENV = "TCP_AUTO_RESTART"
"""``true`` when a supervisor restarts the flow's process if it exits (``tcp.py up``, a container's
restart policy)."""
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class Restarts:
    """How often this flow's process was restarted by its supervisor, when last, and whether a
    supervisor restarts it at all (a process that was restarted has one)."""

    count: int = 0
    last: datetime | None = None
    supervised: bool = False
    """Told so by ``AUTO_RESTART_ENV``."""

    @property
    def auto_restart(self) -> bool:
        return self.supervised or self.count > 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Restarts:
        count, last = (environ.get(name, "") for name in RESTARTS_ENV)
        supervised = environ.get(AUTO_RESTART_ENV, "").strip().lower() in _TRUE
        return cls(int(count or 0), datetime.fromisoformat(last) if last else None, supervised)


NO_RESTARTS = Restarts()

HealthState = tuple[datetime, CollectorHealth]
"""When this flow first saw the connection, and its previous snapshot."""


def health_step(
    state: HealthState | None, h: ConnectionHealth, restarts: Restarts = NO_RESTARTS
) -> tuple[HealthState, CollectorHealth]:
    """``op.stateful_map`` step keyed by connection: the snapshot's uptime counts from when the
    connection was first seen; rates are judged against the previous snapshot, and the health check
    interval is the time since it; ``restarts`` are the process's own."""
    started, previous = state if state is not None else (h.time, None)
    since_check = None if previous is None else (h.time - previous.time).total_seconds()
    collector = f"{h.exchange}:{h.connection}"
    status: Status = (
        "error" if h.subscribe_errors and h.state != "subscribed" else _STATUS.get(h.state, "error")
    )
    same = previous is not None and previous.status == status
    snapshot = CollectorHealth(
        collector=collector,
        time=h.time,
        status=status,
        status_since=previous.status_since if same and previous is not None else h.time,
        should_be_running=h.state != "stopped",
        messages_received=h.messages_received,
        messages_processed=h.trades_emitted,
        errors=h.rejects + h.subscribe_errors + h.gaps_unfilled,
        restarts=restarts.count,
        last_restart_time=restarts.last,
        uptime_seconds=(h.time - started).total_seconds(),
        reconnect_attempts=h.reconnects,
        last_message_time=h.last_message_at,
        last_error=h.last_error,
        symbols=tuple(h.instruments),
        data_types=h.data_types,
        auto_restart=restarts.auto_restart,
        health_check_interval_seconds=since_check,
        details={
            "instruments": float(len(h.instruments)),
            "trades_backfilled": float(h.trades_backfilled),
            "duplicates_dropped": float(h.duplicates_dropped),
            "gaps_filled": float(h.gaps_filled),
            "gaps_unfilled": float(h.gaps_unfilled),
            "rejects": float(h.rejects),
            "ingestion_stalled_seconds": h.stalled_seconds,
            "queued": float(h.queued),
        },
    )
    assessed = assess_health(snapshot, previous=previous)
    return (started, assessed), assessed
