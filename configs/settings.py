"""The one typed configuration of TCP Dashboard.

Precedence (highest first): explicit arguments > environment variables > the YAML file > defaults.
The YAML file is ``configs/tcp.yaml`` unless ``TCP_CONFIG`` names another one. Every entry point
loads settings once with :func:`load_settings` and passes them down; connectors never read the
environment themselves. A bad value fails at start with the field name and the reason
(:class:`ConfigError`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from configs.logs import LogFormat, LogSettings
from configs.metrics_settings import MetricsSettings
from configs.sections import (
    DURATION_FORMS,
    DashboardSettings,
    DatabaseSettings,
    Duration,
    FeedSettings,
    RecordingSettings,
    RecoverySettings,
    StorageSettings,
    SupervisorSettings,
    split_csv,
)
from configs.selection import Followed, by_exchange, parse_selection

__all__ = [
    "ConfigError",
    "DashboardSettings",
    "DatabaseSettings",
    "Duration",
    "FeedSettings",
    "LogSettings",
    "RecordingSettings",
    "RecoverySettings",
    "Settings",
    "StorageSettings",
    "SupervisorSettings",
    "describe_validation_error",
    "load_settings",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent / "tcp.yaml"
CONFIG_FILE_ENV = "TCP_CONFIG"


_INSTRUMENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class ConfigError(Exception):
    """Configuration that cannot start the system; the message names each bad field and why."""


_SECRET_FIELDS = frozenset({"database_url", "redis_url"})


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
    binance_ws_url: str = "wss://stream.binance.com:9443"
    binance_rest_url: str = "https://api.binance.com"
    instruments: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["BTC-USDT", "ETH-USDT"])
    """What to follow, ``exchange:INSTRUMENT`` entries (an entry without ``exchange:`` is OKX's);
    comma-separated in the environment (``INSTRUMENTS=BTC-USDT,binance:BTC-USDT``). See
    :attr:`selection`."""
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
    log_format: LogFormat = "text"
    """``json``: one JSON object per log line, on stderr and in the log files (configs/logs.py)."""
    logs: LogSettings = LogSettings()
    database: DatabaseSettings = DatabaseSettings()
    feed: FeedSettings = FeedSettings()
    recovery: RecoverySettings = RecoverySettings()
    recording: RecordingSettings = RecordingSettings()
    dashboard: DashboardSettings = DashboardSettings()
    storage: StorageSettings = StorageSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("instruments", mode="before")
    @classmethod
    def _instruments_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("replay_tapes", "session_files", mode="before")
    @classmethod
    def _tapes_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("instruments")
    @classmethod
    def _instruments_valid(cls, value: list[str]) -> list[str]:
        for inst in value:  # an entry without ``exchange:`` is an OKX instrument id
            if ":" not in inst and (not set(inst) <= _INSTRUMENT_CHARS or "-" not in inst):
                raise ValueError(f"{inst!r} is not an OKX instrument id such as BTC-USDT (upper case)")
        parse_selection(value)
        return value

    @property
    def selection(self) -> tuple[Followed, ...]:
        """The (exchange, instrument) pairs :attr:`instruments` names, in order."""
        return parse_selection(self.instruments)

    def followed(self) -> dict[str, tuple[str, ...]]:
        """The instruments followed on each exchange (exchanges in order of first mention)."""
        return by_exchange(self.selection)

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

    @field_validator("okx_ws_url", "binance_ws_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @field_validator("okx_rest_url", "binance_rest_url")
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
        if value is not None and not value.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
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
            reason = f"not {DURATION_FORMS}"
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
