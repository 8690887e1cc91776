"""The processes ``up`` runs: the live flow (``python -m bytewax.run flows.okx``), the dashboard and,
with ``--offline``, the local exchange simulators (OKX's, and Binance's on the demo tape), each a
:class:`~app.supervisor.Service` with the resolved URLs in its environment."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from app.resources import recovery_env
from app.supervisor import Service
from configs.settings import Settings
from flows.health import AUTO_RESTART_ENV

TAPES = Path(__file__).resolve().parent.parent / "tests" / "data" / "tapes"
DEMO_TAPE = TAPES / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
"""The tape ``up --offline`` replays when none is named: real Binance spot BTCUSDT trades
(tests/data/SOURCES.md), which OKX's simulator replays as OKX's BTC-USDT and Binance's as its own."""
SIMULATOR_OPTIONS = {"okx": ["--start-offset", "60"]}
"""Options of an exchange's simulator beyond its tapes (OKX's plays its first minute as REST history)."""
LABELS = {"okx": "OKX", "binance": "Binance"}


def offline_tapes_by_exchange(tapes: list[Path]) -> dict[str, list[Path]]:
    """What each exchange's simulator replays: the named tapes on OKX's; the demo tape (real Binance
    trades) on Binance's too, so that ``up --offline`` follows OKX and Binance together."""
    plan = {"okx": tapes}
    if tapes == [DEMO_TAPE]:
        plan["binance"] = [DEMO_TAPE]
    return plan


def start_simulator(
    tapes: list[Path], database_url: str, name: str = "okx"
) -> tuple[Service, dict[str, str]]:
    """Start the local simulator of exchange ``name`` on the tapes (rebased to now); returns it and the
    settings that point the flow at it. The simulated market continues the stored one: its trade ids
    follow the newest stored id of each instrument and its trades come after that trade's time
    (docs/okx-simulator.md). A restart keeps its port and continues from what is stored then."""
    from connectors.exchange import exchange
    from connectors.resume import load_stored_ends
    from connectors.tape import tape_instruments

    spec = exchange(name)
    label = LABELS.get(name, name)
    instruments = sorted({symbol for tape in tapes for symbol in tape_instruments(tape)})
    stored = load_stored_ends(database_url, name, instruments).last_trades

    def argv(port: int) -> list[str]:
        ends = stored if port == 0 else load_stored_ends(database_url, name, instruments).last_trades
        args = [
            sys.executable,
            "-m",
            spec.simulator.module,
            "--rebase-now",
            *SIMULATOR_OPTIONS.get(name, []),
            "--port",
            str(port),
        ]
        for tape in tapes:
            args += ["--tape", str(tape)]
        for symbol, (trade_id, ms) in ends.items():
            args += ["--continue-after", f"{symbol}={trade_id}@{ms}"]
        return args

    simulator = Service(f"{name}-simulator", argv(0))
    simulator.start(stdout=subprocess.PIPE)
    assert simulator.process is not None and simulator.process.stdout is not None
    line = simulator.process.stdout.readline()
    if not line:
        raise RuntimeError(f"the {label} simulator exited before it was ready")
    ready = json.loads(line)
    ws_url, rest_url = ready[spec.simulator.ws_key], ready[spec.simulator.rest_key]
    port = urlsplit(rest_url).port or 0
    simulator.prepare = lambda: argv(port)
    simulator.stdout = subprocess.DEVNULL
    prefix = "" if name == "okx" else f"{name}:"  # a bare instrument is OKX's
    env = {
        f"{name.upper()}_WS_URL": ws_url,
        f"{name.upper()}_REST_URL": rest_url,
        "INSTRUMENTS": ",".join(prefix + inst for inst in instruments),
    }
    print(f"Offline: {label} simulator at {ws_url} replaying {', '.join(instruments)} from now", flush=True)
    for symbol, (trade_id, _) in stored.items():
        print(
            f"Offline: {prefix}{symbol} continues the stored market (trade ids from {trade_id + 1})",
            flush=True,
        )
    return simulator, env


def start_simulators(tapes: list[Path], database_url: str) -> tuple[list[Service], dict[str, str]]:
    """Start the simulator of each exchange :func:`offline_tapes_by_exchange` gives tapes; returns them
    and the settings pointing the flow at all of them (``INSTRUMENTS`` naming every exchange's)."""
    services: list[Service] = []
    env: dict[str, str] = {}
    selection: list[str] = []
    for name, exchange_tapes in offline_tapes_by_exchange(tapes).items():
        simulator, simulator_env = start_simulator(exchange_tapes, database_url, name)
        services.append(simulator)
        selection.append(simulator_env.pop("INSTRUMENTS"))
        env |= simulator_env
    return services, {**env, "INSTRUMENTS": ",".join(selection)}


def dashboard_argv(host: str, port: int) -> list[str]:
    """How the dashboard is served: by the run command, and by the tests and benchmarks."""
    return [
        sys.executable,
        "-m",
        "panel",
        "serve",
        "dashboards/app.py",
        "--setup",
        "dashboards/serve_logs.py",
        "--address",
        host,
        "--port",
        str(port),
        "--allow-websocket-origin",
        f"{host}:{port}",
    ]


CONTROL_ENV = "DASHBOARD__CONTROL"
CONTROL_URL_ENV = "DASHBOARD_CONTROL_URL"


def control_env(control: bool, control_url: str | None) -> dict[str, str]:
    """What turns the dashboard's control actions on (``up --control``): the switch and, when the control
    role could be made, its URL (without it the dashboard says control is unavailable); nothing when off."""
    if not control:
        return {}
    return {CONTROL_ENV: "true", **({CONTROL_URL_ENV: control_url} if control_url else {})}


def services_for(
    settings: Settings,
    database_url: str,
    extra_env: dict[str, str] | None = None,
    dashboard_url: str | None = None,
    control: bool = False,
    control_url: str | None = None,
) -> list[Service]:
    """The processes that make up the running system, given the resolved database URL (and the
    read-only one the dashboard reads with; with ``control``, the control role's URL it writes the bots
    and user indicators with)."""
    env = {"DATABASE_URL": database_url, **(extra_env or {})}
    services = []
    if importlib.util.find_spec("flows.okx") is not None:
        services.append(
            Service(
                "flow",
                [sys.executable, "-m", "bytewax.run", "flows.okx"],
                # up restarts the flow when it exits (its collectors' health says so from the start).
                {**env, **recovery_env(settings), AUTO_RESTART_ENV: "true"},
            )
        )
    if importlib.util.find_spec("dashboards.app") is not None:
        dash = settings.dashboard
        services.append(
            Service(
                "dashboard",
                dashboard_argv(dash.host, dash.port),
                {**env, "DATABASE_URL": dashboard_url or database_url, **control_env(control, control_url)},
            )
        )
    return services
