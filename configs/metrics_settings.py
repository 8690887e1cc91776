"""The ``metrics`` section of the settings: where the flow serves its Prometheus ``/metrics``
(docs/metrics.md). In the environment: ``METRICS__PORT``, ``METRICS__HOST``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MetricsSettings(BaseModel):
    """The flow's metrics endpoint: ``http://host:port/metrics``; process ``i`` of a cluster serves on
    ``port + i``. ``port`` 0 turns it off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(default=9108, ge=0, le=65535)
    """0: no endpoint."""
    host: str = "127.0.0.1"
    """Loopback by default: only this machine can scrape. ``0.0.0.0`` serves every interface (a
    container whose Prometheus runs in another one, as in docker-compose.yml)."""
