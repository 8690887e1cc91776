"""``up --control``: the dashboard (and only it) gets the control switch and a working URL of the control
role; without the flag neither is passed; a server that refuses the role leaves the switch without URL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from app import stack
from app.services import CONTROL_ENV, CONTROL_URL_ENV, control_env, services_for
from configs.bots import parse_bot_config
from configs.settings import Settings, load_settings
from connectors.control_store import ControlStore
from sql.migrate import migrate
from sql.roles import CONTROLLER, ControllerUnavailable


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path)


def by_name(services: list[stack.Service]) -> dict[str, dict[str, str]]:
    return {s.name: s.env for s in services}


def test_control_env() -> None:
    assert control_env(False, "postgresql://x") == {}
    assert control_env(True, None) == {CONTROL_ENV: "true"}
    assert control_env(True, "postgresql://c") == {CONTROL_ENV: "true", CONTROL_URL_ENV: "postgresql://c"}


def test_without_control_nothing_is_passed(settings: Settings) -> None:
    envs = by_name(services_for(settings, "postgresql://owner", {}, "postgresql://reader"))
    assert envs["dashboard"]["DATABASE_URL"] == "postgresql://reader"
    for env in envs.values():
        assert CONTROL_ENV not in env and CONTROL_URL_ENV not in env


def test_up_with_control_hands_the_dashboard_a_working_control_url(settings: Settings, pg_url: str) -> None:
    migrate(pg_url, "off")
    running = stack._Running()
    stack._add_services(settings, pg_url, "redis://localhost:1/0", None, running, control=True)
    envs = by_name(running.services)
    dashboard = envs["dashboard"]
    assert dashboard[CONTROL_ENV] == "true"
    assert f"{CONTROLLER}:" in dashboard[CONTROL_URL_ENV]
    assert CONTROL_URL_ENV not in envs["flow"] and CONTROL_ENV not in envs["flow"]
    with ControlStore(dashboard[CONTROL_URL_ENV]) as store:
        store.add_bot(
            parse_bot_config({"name": "x", "symbol": "BTC-USDT", "timeframe": "1m", "strategy": "macd_cross"})
        )
    with (
        psycopg.connect(dashboard[CONTROL_URL_ENV]) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT 1 FROM candles_1m")


def test_a_refused_role_leaves_control_without_url(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(url: str, data_dir: Path) -> str:
        raise ControllerUnavailable("permission denied to create role")

    monkeypatch.setattr(stack, "ensure_controller", refuse)
    monkeypatch.setattr(stack, "ensure_reader", lambda url, data_dir: "postgresql://reader")
    running = stack._Running()
    stack._add_services(settings, "postgresql://owner", "redis://localhost:1/0", None, running, control=True)
    dashboard = by_name(running.services)["dashboard"]
    assert dashboard[CONTROL_ENV] == "true" and CONTROL_URL_ENV not in dashboard
    assert (
        "Control: unavailable: the role tcp_control could not be created (permission denied"
        in capsys.readouterr().out
    )
