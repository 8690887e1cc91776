"""The sections of the settings (``database``, ``storage``, ``feed``, ``recovery``, ``recording``,
``dashboard``) and the ``Duration`` type every duration setting uses; assembled by
:class:`configs.settings.Settings`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s)?\s*$")
DURATION_FORMS = "a duration: seconds (2, 2.5, 2s), milliseconds (500ms) or ISO 8601 (PT2S)"


def _parse_duration(value: Any) -> Any:
    """Accept seconds as a number or as text ("2", "2.5", "2s", "500ms"); ISO 8601 passes through."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        number = float(match.group(1))
        return timedelta(milliseconds=number) if match.group(2) == "ms" else timedelta(seconds=number)
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
"""A duration setting: seconds (``2``, ``2.5``, ``2s``), milliseconds (``500ms``) or ISO 8601 (``PT2S``)."""


def split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class DatabaseSettings(BaseModel):
    """Storage options; the URL itself is the top-level ``DATABASE_URL``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timescaledb: Literal["auto", "on", "off"] = "auto"
    """Use TimescaleDB hypertables when the server offers the extension (auto), insist on it, or never."""
    pool_max_size: int = Field(default=4, ge=1, le=64)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    spool_max_mb: int = Field(default=1024, ge=1)
    """Disk the outage spool may use (under data_dir) while the database is unreachable."""


class StorageSettings(BaseModel):
    """Retention, compression and rollup refresh (docs/sql.md, "Policies"); durations are ISO 8601
    (``P90D``, ``PT1M``), ``HH:MM:SS``, ``90d``/``90 days`` or seconds.
    Retention is opt-in: every ``*_retention`` defaults to ``never`` (keep forever; also ``null``,
    ``none``, ``off``), and a duration enables it for its tables. Applied by ``python -m sql.policies``
    and at every ``python3 tcp.py up``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trades_retention: timedelta | None = None
    """Raw trades older than this are deleted (None: kept forever)."""
    candles_retention: timedelta | None = None
    """1m candles, every higher timeframe and the gaps log (None: kept forever)."""
    indicators_retention: timedelta | None = None
    """Indicator values and signals (None: kept forever)."""
    rejects_retention: timedelta | None = None
    """Rejected input and the late-trade log (None: kept forever)."""
    trades_compress_after: timedelta = timedelta(days=7)
    """TimescaleDB: trade chunks older than this go to the columnstore."""
    candles_compress_after: timedelta = timedelta(days=14)
    """TimescaleDB: 1m candle and indicator chunks older than this are compressed."""
    rollups_compress_after: timedelta = timedelta(days=30)
    """TimescaleDB: higher-timeframe chunks older than this are compressed (beyond the refresh window)."""
    rollup_refresh_window: timedelta = timedelta(days=3)
    """TimescaleDB: how far back each rollup refresh looks for changed 1m candles."""
    rollup_refresh_lag: timedelta | None = None
    """TimescaleDB: a rollup refresh stops this long before now (None: the candle grace, the least
    allowed)."""
    rollup_refresh_every: timedelta = timedelta(seconds=15)
    """TimescaleDB: how often the rollup refresh jobs run."""

    @field_validator(
        "trades_retention", "candles_retention", "indicators_retention", "rejects_retention", mode="before"
    )
    @classmethod
    def _never(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in {"never", "none", "null", "off", ""}:
            return None
        return value

    @field_validator("*")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be positive (or never, for no retention)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StorageSettings:
        pairs = [
            ("trades_compress_after", "trades_retention"),
            ("candles_compress_after", "candles_retention"),
            ("rollups_compress_after", "candles_retention"),
        ]
        for shorter, longer in pairs:
            limit = getattr(self, longer)
            if limit is not None and getattr(self, shorter) >= limit:
                raise ValueError(f"{shorter} must be shorter than {longer}")
        lag = self.rollup_refresh_lag or timedelta(0)
        if self.rollup_refresh_window < timedelta(days=2) + lag:
            raise ValueError("rollup_refresh_window must cover two days (two 1d candles) plus the lag")
        if self.rollups_compress_after <= self.rollup_refresh_window:
            raise ValueError("rollups_compress_after must be longer than rollup_refresh_window")
        return self


class FeedSettings(BaseModel):
    """What the live feed accepts (docs/reliability.md, "Poison"): anything outside is a reject."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    future_tolerance: Duration = timedelta(seconds=5)
    """A trade stamped later than this ahead of its receive time is refused."""
    max_behind: Duration = timedelta(minutes=10)
    """A pushed (not backfilled) trade stamped longer than this before its receive time is refused."""
    max_frame_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Websocket frames above this size are refused (and recorded)."""
    max_trades_per_push: int = Field(default=1000, ge=1)
    queue_max_items: int = Field(default=100_000, ge=100)
    """Items the source's network thread may hold for the dataflow before it stops reading."""

    @field_validator("future_tolerance", "max_behind")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


class RecoverySettings(BaseModel):
    """Bytewax recovery of the live flow (docs/reliability.md): snapshots of every step's state in
    ``data_dir/recovery``, so a restart continues from the last snapshot as well as from the database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    partitions: int = Field(default=1, ge=1)
    snapshot_interval: Duration = timedelta(seconds=10)
    """``-s``: how often every step's state is snapshotted (an epoch)."""
    backup_interval: Duration = timedelta(0)
    """``-b``: how long superseded snapshots are kept (0: none; longer for an archived store)."""

    @field_validator("snapshot_interval", "backup_interval")
    @classmethod
    def _whole_seconds(cls, value: timedelta) -> timedelta:
        if value < timedelta(0) or value.microseconds:
            raise ValueError("must be a whole number of seconds, not negative")
        return value

    @field_validator("snapshot_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be at least 1 second")
        return value


class RecordingSettings(BaseModel):
    """Recording of what the live source receives (docs/reliability.md, "Recorded sessions"): session
    files under ``data_dir/sessions`` that ``flows.session`` replays through the same dataflow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    rotate_mb: int = Field(default=64, ge=1)
    """Start a new (compressed) session file once the current one holds this much."""
    keep_files: int = Field(default=200, ge=1)
    """Oldest session files beyond this many are deleted."""


class SupervisorSettings(BaseModel):
    """How ``tcp.py up`` restarts a service that exits (app/supervisor.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    restart_initial: Duration = timedelta(seconds=1)
    """Backoff before the first restart; it doubles with each exit in the window (with jitter)."""
    restart_max: Duration = timedelta(seconds=30)
    """The longest backoff."""
    crash_loop_exits: int = Field(default=5, ge=1)
    """This many exits within ``crash_loop_window`` is a crash loop: the service is not restarted again."""
    crash_loop_window: Duration = timedelta(minutes=2)

    @field_validator("restart_initial", "restart_max", "crash_loop_window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


class DashboardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=5006, ge=0, le=65535)
    database_url: SecretStr | None = None
    """A SELECT-only role's URL for the dashboard; unset: ``up`` creates the role ``tcp_dashboard``."""
    control: bool = False
    """Whether the page may change bots and user indicators (``up --control`` sets it, with the URL of
    the narrow role ``tcp_control`` in ``DASHBOARD_CONTROL_URL``); off: the page is read-only."""

    @field_validator("database_url")
    @classmethod
    def _reader_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value
