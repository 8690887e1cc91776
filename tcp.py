#!/usr/bin/env python3
"""TCP Dashboard launcher. Needs only Python 3.11 or 3.12; creates ./.venv on first use.

    python3 tcp.py up [--offline [TAPE ...]] [--control] [--once] [--debug]
        run the whole system on embedded defaults (Ctrl-C stops everything); --offline runs it against
        the bundled OKX simulator replaying TAPE (default: a real BTC-USDT tape) from now; --control lets
        the dashboard manage paper-trading bots and user indicators; --once only starts the database and
        applies the migrations (a health check)
    python3 tcp.py test [PYTEST ARGS ...]
        run the whole test suite (e.g. python3 tcp.py test tests/flows -x)
    python3 tcp.py migrate [--database-url URL] [--debug]
        apply the database migrations (default: DATABASE_URL)
    python3 tcp.py backtest --symbol SYMBOL --strategy NAME [--param K=V ...] [OPTIONS ...]
        backtest strategies on the live dataflow over stored candles (or trades, or --tapes TAPE ...), store
        the runs, print their metrics; --json PATH, --report PATH.html, --check lookahead|warmup
        (python3 tcp.py backtest --help; docs/backtest.md)
    python3 tcp.py bots list|add|show|start|pause|stop|remove|export ...
        manage the paper-trading bots the live flow runs (python3 tcp.py bots --help; docs/bots.md)
    python3 tcp.py export --symbol SYMBOL --timeframe TF|--trades [--start --end --format csv|parquet] ...
        export stored candles (right-labelled, as in SQL) or trades to a file (python3 tcp.py export --help)
    python3 tcp.py sim --tape TAPE [OPTIONS ...] [--debug]
        run the local OKX simulator (faults, hostile frames: python3 tcp.py sim --help)
    python3 tcp.py lint
        ruff (lint and format check) and mypy; the test suite checks the same (tests/test_code_health.py)
    python3 tcp.py bench [--quick] [--only NAME,...]
        run the benchmarks of bench/ in one go and write their figures, with the machine and the command,
        into docs/benchmarks.md (about 45 minutes; --quick about 10)

Each command takes --help. Replays run the same dataflow directly (README, "Replays"):
    REPLAY_TAPES=TAPE.csv .venv/bin/python -m bytewax.run flows.replay
    SESSION_FILES=.data/sessions/SESSION .venv/bin/python -m bytewax.run flows.session

A bad input (database or Redis URL, configuration file, tape, option, busy port) stops a command with one or
two lines naming the problem and the fix, exit code 2; --debug (TCP_DEBUG=1 for the flows) also shows the
traceback. docs/troubleshooting.md lists each message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
SUPPORTED = ((3, 11), (3, 12))
MODULES = {
    "up": ("app.stack", "up"),
    "migrate": ("sql.migrate",),
    "backtest": ("app.backtest",),
    "bots": ("app.bots",),
    "export": ("app.export",),
    "sim": ("connectors.okx.simulator",),
}
"""The commands that run a module of the project in the runtime environment."""


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _supported_interpreter() -> str:
    if sys.version_info[:2] in SUPPORTED:
        return sys.executable
    for major, minor in reversed(SUPPORTED):
        candidate = shutil.which(f"python{major}.{minor}")
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    sys.exit(f"TCP Dashboard needs Python 3.11 or 3.12 (this is {sys.version.split()[0]}); none on PATH")


def ensure_environment(dev: bool) -> Path:
    """Create or update ./.venv when pyproject.toml (or the wanted extras) changed since last time."""
    extras = ".[dev]" if dev else "."
    fingerprint = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / ".tcp-installed"
    have = stamp.read_text().split() if stamp.exists() else []
    # A dev install also satisfies a plain run.
    if fingerprint in have or (not dev and _dev_fingerprint() in have):
        return _venv_python()
    interpreter = _supported_interpreter()
    if not _venv_python().exists():
        print(f"Creating the environment in {VENV} (first run only) ...", flush=True)
        if interpreter == sys.executable:
            venv.EnvBuilder(with_pip=True).create(VENV)
        else:
            subprocess.run([interpreter, "-m", "venv", str(VENV)], check=True)
    print(f"Installing TCP Dashboard{' and its test tools' if dev else ''} into {VENV} ...", flush=True)
    pip = [str(_venv_python()), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", extras], check=True, cwd=ROOT)
    stamp.write_text(" ".join([fingerprint, *have]))
    return _venv_python()


def _dev_fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + b".[dev]").hexdigest()


def ensure_chromium() -> None:
    """The dashboard's browser tests drive Debian's Chromium; install it when we may (root with apt).
    Elsewhere those tests are skipped with the reason and the command that installs it."""
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        print("Chromium not found: browser tests will be skipped (install with: apt-get install chromium)")
        return
    print("Installing Chromium for the browser tests (apt-get install chromium) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        if subprocess.run(argv, stdout=subprocess.DEVNULL, env=env).returncode != 0:
            print("Chromium could not be installed: browser tests will be skipped", flush=True)
            return


def _exec(python: Path, *args: str) -> None:
    os.chdir(ROOT)
    os.execv(str(python), [str(python), *args])


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    if command in MODULES:
        _exec(ensure_environment(dev=False), "-m", *MODULES[command], *rest)
    elif command == "test":
        python = ensure_environment(dev=True)
        ensure_chromium()
        _exec(python, "-m", "pytest", *rest)
    elif command == "lint":
        if rest:
            print("usage: python3 tcp.py lint\n\nruff check, ruff format --check and mypy (no arguments)")
            sys.exit(0 if rest[0] in ("-h", "--help") else 2)
        python = ensure_environment(dev=True)
        code = subprocess.run([str(python), "-m", "ruff", "check", "."], cwd=ROOT).returncode
        code |= subprocess.run([str(python), "-m", "ruff", "format", "--check", "."], cwd=ROOT).returncode
        code |= subprocess.run([str(python), "-m", "mypy"], cwd=ROOT).returncode
        sys.exit(code)
    elif command == "bench":
        python = ensure_environment(dev=True)
        if not {"-h", "--help"} & set(rest):
            ensure_chromium()  # the dashboard's page load is measured in Chromium
        _exec(python, "bench/run.py", *rest)
    else:
        sys.exit(f"unknown command {command!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
