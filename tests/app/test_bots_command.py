"""``python3 tcp.py bots`` on a real PostgreSQL: add from flags and files, list, show, the state actions,
export and import; a bad flag, file or action is one line naming it (exit 2), checked before the database
is touched. Also docs/bots.md's example file and SQL."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from app.bots import PAPER, main
from configs.bots import load_bot_config, parse_bot_config
from connectors.control_store import ControlStore
from sql.migrate import migrate
from tests.conftest import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "bots.md").read_text()
ADD = ["add", "--name", "ema", "--symbol", "BTC-USDT", "--strategy", "ema_crossover"]
UNREACHABLE = "postgresql://nobody:secret@127.0.0.1:1/none"


@pytest.fixture
def database(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    migrate(pg_url, "off")
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return pg_url


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out), out.getvalue()


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _ = run(*argv)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 2, err
    return err.splitlines()[0].removeprefix("error: ")


def test_add_start_pause_stop_remove(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        *ADD, "--param", "fast=5", "--param", "slow=13", "--timeframe", "5m", "--cash", "2500", "--short"
    )
    assert code == 0 and "Added bot ema (created)" in out and PAPER in out
    with ControlStore(database) as store:
        record = store.bot("ema")
    assert record is not None
    assert record.config == parse_bot_config(
        {
            "name": "ema",
            "symbol": "BTC-USDT",
            "timeframe": "5m",
            "strategy": "ema_crossover",
            "params": {"fast": 5, "slow": 13},
            "account": {"cash": 2500, "short": True},
        }
    )
    for action, state in (
        ("start", "running"),
        ("pause", "paused"),
        ("start", "running"),
        ("stop", "stopped"),
    ):
        code, out = run(action, "ema")
        assert code == 0 and f"Bot ema is {state}:" in out
    assert (
        refused(capsys, "start", "ema")
        == "bot 'ema' is stopped: only a created or paused bot can be running."
    )
    assert refused(capsys, "pause", "nobody") == "no bot named 'nobody'."
    code, out = run("remove", "ema")
    assert code == 0 and "Removed bot ema" in out
    assert run("list") == (0, f"{PAPER}\nNo bots yet: add one with bots add.\n")


def test_list_and_show_give_the_summary(database: str) -> None:
    assert run(*ADD)[0] == 0
    assert run(*ADD[:2], "idle", *ADD[3:], "--timeframe", "1h")[0] == 0
    with ControlStore(database) as store:
        bot_id = store.bot("ema").bot_id  # type: ignore[union-attr]
    close = datetime(2026, 2, 1, 12, 1, tzinfo=UTC)
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO bot_equity VALUES (%s, %s, 200, 0, 55, 11000)", (bot_id, close))
        conn.execute(
            "INSERT INTO bot_fills VALUES (%s, %s, 0, %s, 'buy', 180, 55, 9.9)",
            (bot_id, close - timedelta(minutes=1), close),
        )
    code, out = run("list")
    lines = out.splitlines()
    assert code == 0 and lines[0] == PAPER
    assert (
        lines[1].split()
        == "name state series strategy equity P&L position exposure fills last candle".split()
    )
    assert lines[2].split()[:2] == ["ema", "created"] and lines[3].split()[:2] == ["idle", "created"]
    # equity 11,000 against 10,000 cash: +1,000 (+10 %); exposure 55 * 200 / 11,000 = 100 %
    assert re.search(
        r"11,000\.00\s+\+1,000\.00 \(\+10\.00 %\)\s+long 55\s+100\.0 %\s+1\s+2026-02-01 12:01Z", lines[2]
    )
    assert re.search(r"ema_crossover\(\)\s+-\s+-\s+flat\s+-\s+0\s+-$", lines[3])
    code, out = run("show", "ema")
    assert code == 0 and PAPER in out and "bot ema (id 1): created" in out
    assert "  strategy: ema_crossover\n" in out and "  close_on_stop: false\n" in out
    assert "+1,000.00" in out


def test_export_and_import(database: str, tmp_path: Path) -> None:
    assert run(*ADD, "--param", "fast=4", "--close-on-stop")[0] == 0
    code, text = run("export", "ema")
    assert code == 0 and text.startswith("name: ema\n")
    path = tmp_path / "ema.json"
    assert run("export", "ema", "-o", str(path))[0] == 0
    exported = load_bot_config(path)
    with ControlStore(database) as store:
        assert exported == store.bot("ema").config  # type: ignore[union-attr]
        path.write_text(path.read_text().replace('"ema"', '"ema-copy"'))
        assert run("import", str(path))[0] == 0
        copy = store.bot("ema-copy")
    assert copy is not None and copy.config == exported.model_copy(update={"name": "ema-copy"})


def test_the_example_file_of_the_docs(database: str, tmp_path: Path) -> None:
    (example,) = re.findall(r"^```yaml\n(.*?)^```", DOC, flags=re.DOTALL | re.MULTILINE)
    path = tmp_path / "bot.yaml"
    path.write_text(example)
    config = load_bot_config(path)
    assert (config.name, config.params, config.account.cash, config.close_on_stop) == (
        "ema-btc-1m",
        {"fast": 9, "slow": 21},
        10_000.0,
        False,
    )
    assert run("add", "--file", str(path))[0] == 0
    for action in ("start", "pause"):
        assert run(action, "ema-btc-1m")[0] == 0
    close = datetime(2026, 2, 1, 12, 1, tzinfo=UTC)
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO bot_equity SELECT bot_id, %s, 100, 0, 1, 100 FROM bots", (close,))
        conn.execute(
            "INSERT INTO bot_fills SELECT bot_id, %s, 0, %s, 'buy', 100, 1, 0.1 FROM bots", (close, close)
        )
        for query in re.findall(r"^```sql\n(.*?)^```", DOC, flags=re.DOTALL | re.MULTILINE):
            assert conn.execute(query.encode()).fetchall(), query


@pytest.mark.parametrize(
    ("argv", "told"),
    [
        (
            (*ADD, "--timeframe", "2m"),
            "--timeframe: unknown timeframe '2m'; expected one of 1m, 5m, 15m, 1h, 4h, 1d",
        ),
        ((*ADD, "--param", "fast=1"), "--param: ema_crossover parameter 'fast' must be >= 2, got 1."),
        (
            (*ADD, "--param", "speed=3"),
            "--param: unknown parameter 'speed' for ema_crossover; expected: fast, slow",
        ),
        ((*ADD, "--param", "fast"), "--param 'fast': not NAME=NUMBER."),
        ((*ADD[:6], "moon"), "--strategy: unknown strategy 'moon'; known strategies:"),
        ((*ADD[:2], "Big Bot", *ADD[3:]), "--name: name 'Big Bot' must start with a-z or 0-9"),
        ((*ADD[:3], *ADD[5:]), "--symbol: missing."),
        ((*ADD, "--cash", "-5"), "--cash: Input should be greater than 0 (got -5.0)."),
        ((*ADD, "--fee-bps", "20000"), "--fee-bps: Input should be less than 10000"),
        ((*ADD, "--file", "bot.yaml"), "--file and --name both given."),
    ],
)
def test_bad_flags_are_named_before_the_database(
    argv: tuple[str, ...], told: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)  # never reached: the flags are checked first
    assert refused(capsys, *argv).startswith(told)


@pytest.mark.parametrize(
    ("name", "text", "told"),
    [
        (
            "bot.yaml",
            "name: x\nsymbol: BTC-USDT\ntimeframe: 1m\nstrategy: macd_cross\nparams: {signalperiod: 0}\n",
            "bot.yaml: params: macd_cross parameter 'signalperiod' must be >= 1, got 0.",
        ),
        (
            "bot.yaml",
            "name: x\nsymbol: BTC-USDT\ntimeframe: 1m\nstrategy: macd_cross\ncolour: red\n",
            "bot.yaml: colour: unknown field (check the spelling)",
        ),
        ("bot.json", '{"name": "x",', "bot.json: Expecting"),
        ("bot.yaml", "name: [x\n", "bot.yaml, line 2, column 1: "),
        ("bot.txt", "name: x\n", "bot.txt: a bot file is .json, .yaml or .yml"),
    ],
)
def test_bad_files_are_named(
    name: str,
    text: str,
    told: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    path = tmp_path / name
    path.write_text(text)
    assert refused(capsys, "import", str(path)).removeprefix(str(tmp_path) + "/").startswith(told)


def test_an_old_schema_is_told(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)  # not migrated
    assert refused(capsys, "list") == "the database has no bots table: its schema is older than this code."


def test_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no-such.yaml" in refused(capsys, "import", str(tmp_path / "no-such.yaml"))


def test_help_says_paper_trading_and_up_names_control() -> None:
    def launcher(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "tcp.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())

    bots = launcher("bots", "--help")
    assert bots.startswith("usage: python3 tcp.py bots") and PAPER in bots
    assert "list|add|show|start|pause|stop|remove|export|import" in bots
    assert "--control let the dashboard create, start, pause, stop and delete paper-trading bots" in launcher(
        "up", "--help"
    )
