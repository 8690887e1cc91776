"""The one typed configuration of TCP Dashboard.

Precedence (highest first): explicit arguments > environment variables > the YAML file > defaults.
The YAML file is ``configs/tcp.yaml`` unless ``TCP_CONFIG`` names another one. Every entry point
loads settings once with :func:`load_settings` and passes them down; connectors never read the
environment themselves. A bad value fails at start with the field name and the reason
(:class:`ConfigError`).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent / "tcp.yaml"
CONFIG_FILE_ENV = "TCP_CONFIG"

_INSTRUMENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class ConfigError(Exception):
    """Configuration that cannot start the system; the message names each bad field and why."""


_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s)?\s*$")
_DURATION_FORMS = "a duration: seconds (2, 2.5, 2s), milliseconds (500ms) or ISO 8601 (PT2S)"
_SECRET_FIELDS = frozenset({"database_url", "redis_url"})


def _parse_duration(value: Any) -> Any:
    """Accept seconds as a number or as text ("2", "2.5", "2s", "500ms"); ISO 8601 passes through."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        number = float(match.group(1))
        return timedelta(milliseconds=number) if match.group(2) == "ms" else timedelta(seconds=number)
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
"""A duration setting: seconds (``2``, ``2.5``, ``2s``), milliseconds (``500ms``) or ISO 8601 (``PT2S``)."""


def _split_csv(value: Any) -> Any:
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

    @field_validator("trades_retention", "candles_retention", "indicators_retention", "rejects_retention",
                     mode="before")
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


class DashboardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=5006, ge=0, le=65535)
    database_url: SecretStr | None = None
    """A SELECT-only role's URL for the dashboard; unset: ``up`` creates the role ``tcp_dashboard``."""

    @field_validator("database_url")
    @classmethod
    def _reader_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value


class Settings(BaseSettings):
    """Everything configurable, with the defaults the run command uses."""

    model_config = SettingsConfigDict(
        env_prefix="",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    database_url: SecretStr | None = None
    """PostgreSQL/TimescaleDB URL; unset means: the run command starts an embedded server under data_dir."""
    redis_url: SecretStr | None = None
    """Redis URL; unset means: the run command starts an embedded Redis under data_dir."""
    okx_ws_url: str = "wss://ws.okx.com:8443/ws/v5/public"
    okx_rest_url: str = "https://www.okx.com"
    instruments: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["BTC-USDT", "ETH-USDT"])
    """OKX instrument ids; comma-separated in the environment (``INSTRUMENTS=BTC-USDT,ETH-USDT``)."""
    candle_grace: Duration = timedelta(seconds=2)
    """Event-time grace before a candle closes (TIME.md rule 4); seconds or ISO 8601 (``PT2S``)."""
    emit_flat_candles: bool = True
    """Flat candles for intervals without trades (TIME.md rule 5)."""
    contract_values: dict[str, Decimal] = Field(default_factory=dict)
    """Contract value of derivatives whose sizes are in contracts (OKX ``ctVal``), e.g.
    ``{"MATIC-USDT-SWAP": 10}``: quote volume is then price x size x value, as OKX's ``volCcyQuote``."""
    indicators_config: Path = Path(__file__).resolve().parent / "indicators.yaml"
    """Which indicators and strategies run on which series (docs/indicators.md)."""
    data_dir: Path = PROJECT_ROOT / ".data"
    """Where the embedded database and Redis keep their files."""
    session_files: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """A recorded live session for ``flows.session``: its directory under ``data_dir/sessions``, or some
    of its files; comma-separated in the environment."""
    replay_tapes: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """OKX archive CSV tapes for ``flows.replay``; comma-separated in the environment."""
    replay_end: datetime | None = None
    """Declared end of a replay (TIME.md rule 9); default: the latest trade time of each tape."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    database: DatabaseSettings = DatabaseSettings()
    feed: FeedSettings = FeedSettings()
    recovery: RecoverySettings = RecoverySettings()
    recording: RecordingSettings = RecordingSettings()
    dashboard: DashboardSettings = DashboardSettings()
    storage: StorageSettings = StorageSettings()

    @field_validator("instruments", mode="before")
    @classmethod
    def _instruments_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("replay_tapes", "session_files", mode="before")
    @classmethod
    def _tapes_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("instruments")
    @classmethod
    def _instruments_valid(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one instrument is required")
        for inst in value:
            if not set(inst) <= _INSTRUMENT_CHARS or "-" not in inst:
                raise ValueError(f"{inst!r} is not an OKX instrument id such as BTC-USDT (upper case)")
        if len(set(value)) != len(value):
            raise ValueError("instruments are listed more than once")
        return value

    @field_validator("candle_grace")
    @classmethod
    def _grace_valid(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        if value > timedelta(minutes=10):
            raise ValueError("more than 10 minutes would hold every candle back that long")
        return value

    @field_validator("contract_values")
    @classmethod
    def _positive_values(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = [symbol for symbol, v in value.items() if v <= 0]
        if bad:
            raise ValueError(f"contract values must be positive ({', '.join(bad)})")
        return value

    @field_validator("replay_end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2019-10-13T11:20:00Z")
        return value

    @field_validator("okx_ws_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @field_validator("okx_rest_url")
    @classmethod
    def _rest_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get(CONFIG_FILE_ENV) or str(DEFAULT_CONFIG_FILE)
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))


def describe_validation_error(error: ValidationError, what: str = "configuration") -> str:
    lines = []
    for err in error.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(settings)"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown setting (check the spelling)"
        elif err["type"].startswith("time_delta"):
            reason = f"not {_DURATION_FORMS}"
        shown = "***" if err["loc"] and err["loc"][-1] in _SECRET_FIELDS else repr(err.get("input"))
        lines.append(f"  {field}: {reason} (got {shown})")
    return f"invalid {what}:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Load settings once at an entry point; raises :class:`ConfigError` naming each bad field (or the
    file, line and column of a YAML syntax error)."""
    yaml_file = os.environ.get(CONFIG_FILE_ENV)
    if yaml_file and not Path(yaml_file).is_file():
        raise ConfigError(f"invalid configuration:\n  {CONFIG_FILE_ENV}: no such file {yaml_file!r}")
    _check_yaml_file(Path(yaml_file) if yaml_file else DEFAULT_CONFIG_FILE)
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None


def _check_yaml_file(path: Path) -> None:
    """The configuration file is readable YAML holding a mapping (or nothing)."""
    import yaml

    from configs.errors import yaml_problem

    if not path.exists():
        return
    try:
        shown = str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        shown = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(
            f"invalid configuration:\n  {yaml_problem(error, shown)}\n"
            "  Fix the YAML there (quote values holding ': ' or ' #'; indent nested settings evenly)."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(f"invalid configuration:\n  {shown}: cannot read it ({reason})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"invalid configuration:\n  {shown}: must hold settings as `name: value` lines, "
            f"not a {type(data).__name__}"
        )
