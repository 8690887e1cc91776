"""Settings: defaults, precedence (env > YAML > defaults) and clear errors naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from configs.settings import ConfigError, load_settings

ENV_NAMES = [
    "DATABASE_URL",
    "REDIS_URL",
    "OKX_WS_URL",
    "OKX_REST_URL",
    "INSTRUMENTS",
    "CANDLE_GRACE",
    "EMIT_FLAT_CANDLES",
    "DATA_DIR",
    "REPLAY_TAPES",
    "REPLAY_END",
    "LOG_LEVEL",
    "TCP_CONFIG",
    "DASHBOARD__PORT",
    "DASHBOARD__HOST",
    "DATABASE__TIMESCALEDB",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tcp.yaml"
    path.write_text(text)
    return path


def test_defaults_match_the_documented_ones() -> None:
    settings = load_settings()
    assert settings.database_url is None and settings.redis_url is None
    assert settings.okx_ws_url == "wss://ws.okx.com:8443/ws/v5/public"
    assert settings.okx_rest_url == "https://www.okx.com"
    assert settings.instruments == ["BTC-USDT", "ETH-USDT"]
    assert settings.candle_grace == timedelta(seconds=2)
    assert settings.emit_flat_candles is True
    assert settings.dashboard.host == "127.0.0.1"


def test_yaml_overrides_defaults_and_env_overrides_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_yaml(tmp_path, "instruments: [XRP-ETH]\ncandle_grace: 5\ndashboard:\n  port: 6000\n")
    monkeypatch.setenv("TCP_CONFIG", str(config))
    from_yaml = load_settings()
    assert from_yaml.instruments == ["XRP-ETH"]
    assert from_yaml.candle_grace == timedelta(seconds=5)
    assert from_yaml.dashboard.port == 6000

    monkeypatch.setenv("INSTRUMENTS", "BTC-USDT, SOL-USDT")
    monkeypatch.setenv("CANDLE_GRACE", "750ms")
    monkeypatch.setenv("DASHBOARD__PORT", "7000")
    from_env = load_settings()
    assert from_env.instruments == ["BTC-USDT", "SOL-USDT"]
    assert from_env.candle_grace == timedelta(milliseconds=750)
    assert from_env.dashboard.port == 7000


def test_env_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db.example/tcp")
    monkeypatch.setenv("REPLAY_TAPES", "a.csv,b.csv")
    monkeypatch.setenv("REPLAY_END", "2019-10-13T11:20:00Z")
    monkeypatch.setenv("EMIT_FLAT_CANDLES", "false")
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://u:pw@db.example/tcp"
    assert "pw" not in repr(settings)
    assert settings.replay_tapes == [Path("a.csv"), Path("b.csv")]
    assert settings.replay_end == datetime(2019, 10, 13, 11, 20, tzinfo=UTC)
    assert settings.emit_flat_candles is False


@pytest.mark.parametrize(
    ("name", "value", "field", "reason"),
    [
        ("CANDLE_GRACE", "-1", "candle_grace", "must not be negative"),
        ("CANDLE_GRACE", "-5s", "candle_grace", "must not be negative"),
        ("CANDLE_GRACE", "two seconds", "candle_grace", "seconds (2, 2.5, 2s), milliseconds (500ms) or ISO"),
        ("FEED__FUTURE_TOLERANCE", "-3", "feed.future_tolerance", "must be positive"),
        ("RECOVERY__SNAPSHOT_INTERVAL", "0.5", "recovery.snapshot_interval", "whole number of seconds"),
        ("CANDLE_GRACE", "3600", "candle_grace", "more than 10 minutes"),
        ("INSTRUMENTS", "btc-usdt", "instruments", "not an OKX instrument id"),
        ("INSTRUMENTS", "BTC-USDT,BTC-USDT", "instruments", "more than once"),
        ("OKX_WS_URL", "https://ws.okx.com", "okx_ws_url", "ws:// or wss://"),
        ("DATABASE_URL", "mysql://localhost/x", "database_url", "postgresql://"),
        ("REDIS_URL", "http://localhost", "redis_url", "redis://"),
        ("REPLAY_END", "2019-10-13T11:20:00", "replay_end", "time zone"),
        ("DASHBOARD__PORT", "70000", "dashboard.port", "less than or equal to 65535"),
        ("DATABASE__TIMESCALEDB", "maybe", "database.timescaledb", "'auto', 'on' or 'off'"),
    ],
)
def test_a_bad_value_names_the_field_and_the_reason(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str, reason: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert f"  {field}: " in message
    assert reason in message


def test_secrets_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2@host/db")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "hunter2" not in str(error.value)


def test_unknown_yaml_key_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCP_CONFIG", str(write_yaml(tmp_path, "instrumnets: [BTC-USDT]\n")))
    with pytest.raises(ConfigError, match=r"instrumnets: unknown setting"):
        load_settings()


def test_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCP_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="TCP_CONFIG: no such file"):
        load_settings()


def test_shipped_yaml_is_valid_and_matches_the_defaults() -> None:
    shipped = load_settings()
    assert shipped.instruments == ["BTC-USDT", "ETH-USDT"]
    assert shipped.candle_grace == timedelta(seconds=2)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("dashboard:\n  port: 5006\n host: x\n", "line 3, column 2", "expected <block end>"),
        ("instruments: [BTC-USDT\n", "line 2, column 1", "expected ',' or ']'"),
        ("okx_ws_url: wss://a: b\n", "line 1, column 20", "mapping values are not allowed here"),
    ],
)
def test_a_yaml_syntax_error_names_the_file_line_and_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, where: str, problem: str
) -> None:
    path = write_yaml(tmp_path, text)
    monkeypatch.setenv("TCP_CONFIG", str(path))
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert f"{path}, {where}: {problem}" in message
    assert "Fix the YAML there" in message
    assert len(message.splitlines()) == 3


def test_a_yaml_file_that_is_not_a_mapping_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCP_CONFIG", str(write_yaml(tmp_path, "- BTC-USDT\n- ETH-USDT\n")))
    with pytest.raises(ConfigError, match=r"tcp.yaml: must hold settings as `name: value` lines, not a list"):
        load_settings()


def test_an_empty_yaml_file_means_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCP_CONFIG", str(write_yaml(tmp_path, "# nothing set\n")))
    assert load_settings().dashboard.port == 5006


def test_dashboard_database_url_is_checked_and_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD__DATABASE_URL", "mysql://reader:hunter2@db/tcp")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "dashboard.database_url: must be a postgresql:// URL (got ***)" in str(raised.value)
    assert "hunter2" not in str(raised.value)
