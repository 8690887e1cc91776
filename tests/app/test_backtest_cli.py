"""``python3 tcp.py backtest`` on a real PostgreSQL: a run over a tape is stored as the independent
account loop computes it from the replay's candles and signals; over stored candles (1m, and 5m from the
rollups) the signals are exactly those the replay flow stored; bad flags stop it naming the flag."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from app.backtest import main
from configs.indicators import parse_indicator_config
from connectors.database import DatabaseSink
from market.types import Signal
from sql.migrate import migrate
from tests.flows.backtest_oracle import EXACT, NUMBERS, exact_parts, number_parts, replay_account
from tests.flows.flowkit import XRP_TAPE, run_replay

STRATEGIES = [
    {"strategy": "ema_crossover", "params": {"fast": 5, "slow": 13}},
    {
        "strategy": "rsi_reversion",
        "label": "rsi",
        "params": {"timeperiod": 7, "oversold": 35, "overbought": 65},
    },
]
PROFILES = [{"instruments": "*", "timeframes": ["1m", "5m"], "strategies": STRATEGIES}]


@pytest.fixture
def env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    migrate(pg_url, "off")
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return pg_url


def config_file(tmp_path: Path, account: dict[str, object]) -> Path:
    path = tmp_path / "backtest.yaml"
    path.write_text(json.dumps({"account": account, "profiles": PROFILES}))  # JSON is YAML
    return path


def test_a_run_over_a_tape_is_stored_as_the_account_computes_it(env: str, tmp_path: Path) -> None:
    config = config_file(tmp_path, {"cash": 2500, "fee_bps": 7.5})
    out = tmp_path / "run.json"
    argv = ["--tapes", str(XRP_TAPE), "--config", str(config), "--slippage-bps", "3", "--json", str(out)]
    assert main(argv) == 0
    document = json.loads(out.read_text())
    assert [(r["strategy"], r["timeframe"]) for r in document["runs"]] == [
        ("ema_crossover", "1m"),
        ("rsi", "1m"),
    ]
    replayed = run_replay([XRP_TAPE], indicators=parse_indicator_config({"profiles": PROFILES}))
    candles = [(c.open_time, c.close_time, float(c.open), float(c.close)) for c in replayed.of("1m")]
    with psycopg.connect(env) as conn:
        for run in document["runs"]:
            assert run["config"]["account"] == {
                "cash": 2500.0,
                "fraction": 1.0,
                "fee_bps": 7.5,
                "slippage_bps": 3.0,
                "short": False,
            }
            signals = [
                (o.time, o.action)
                for o in replayed.indicators
                if type(o) is Signal and o.strategy == run["strategy"] and o.timeframe == "1m"
            ]
            oracle = replay_account(candles, signals, cash=2500.0, fee=0.00075, slippage=0.0003)
            assert len(oracle.trades) > 3
            trades = conn.execute(
                f"SELECT {', '.join(EXACT).replace('open', 'is_open')}, {', '.join(NUMBERS)}"
                " FROM backtest_trades WHERE run_id = %s ORDER BY entry_time",
                (run["run_id"],),
            ).fetchall()
            stored = [dict(zip((*EXACT, *NUMBERS), row, strict=True)) for row in trades]
            assert exact_parts(stored) == exact_parts(oracle.trades)
            assert number_parts(stored) == pytest.approx(number_parts(oracle.trades), rel=1e-12, abs=1e-9)
            equity = conn.execute(
                "SELECT time, close, cash, position, equity FROM backtest_equity WHERE run_id = %s"
                " ORDER BY time",
                (run["run_id"],),
            ).fetchall()
            assert [row[0] for row in equity] == [row[0] for row in oracle.equity]
            assert [v for row in equity for v in row[1:]] == pytest.approx(
                [v for row in oracle.equity for v in row[1:]], rel=1e-12, abs=1e-9
            )
            final = conn.execute(
                "SELECT source, candles, data_start, data_end, (metrics->>'final_equity')::float8"
                " FROM backtest_runs WHERE run_id = %s",
                (run["run_id"],),
            ).fetchone()
            assert final is not None
            assert final[:4] == ("tapes", len(candles), candles[0][0], candles[-1][1])
            assert final[4] == pytest.approx(oracle.equity[-1][4], rel=1e-12)
            # the JSON carries the same trades
            assert exact_parts(run["trades"]) == [
                (t[0].isoformat(), t[1] and t[1].isoformat(), t[2]) for t in exact_parts(oracle.trades)
            ]


@pytest.mark.parametrize("timeframe", ["1m", "5m"])
def test_over_stored_candles_the_signals_are_those_the_replay_stored(
    env: str, tmp_path: Path, timeframe: str
) -> None:
    run_replay(
        [XRP_TAPE],
        database=DatabaseSink(env, tmp_path / "spool"),
        indicators=parse_indicator_config({"profiles": PROFILES}),
    )
    out = tmp_path / "run.json"
    argv = ["--symbol", "XRP-ETH", "--timeframe", timeframe, "--config", str(config_file(tmp_path, {}))]
    assert main([*argv, "--json", str(out), "--no-store"]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["strategy"] for r in runs] == ["ema_crossover", "rsi"]
    from app.backtest import options, run

    outputs = run(options([*argv, "--no-store"]))
    with psycopg.connect(env) as conn:
        for output in outputs:
            stored = conn.execute(
                "SELECT time, action FROM signals WHERE symbol = 'XRP-ETH' AND timeframe = %s"
                " AND strategy = %s ORDER BY time",
                (timeframe, output.result.strategy),
            ).fetchall()
            assert stored, "the replay stored signals"
            assert [(s.time, s.action) for s in output.result.signals] == stored
            stored_closes = conn.execute(
                "SELECT time FROM candles WHERE symbol = 'XRP-ETH' AND timeframe = %s ORDER BY time",
                (timeframe,),
            ).fetchall()
            assert [p.time for p in output.result.equity] == [row[0] for row in stored_closes]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--symbol", "X", "--timeframe", "7m", "--strategy", "ema_crossover"], "--timeframe"),
        (["--symbol", "X", "--strategy", "ema_crossover", "--param", "fast"], "--param"),
        (["--strategy", "ema_crossover"], "--symbol"),
        (["--symbol", "X"], "--strategy"),
        (["--symbol", "X", "--strategy", "ema_crossover", "--fee-bps", "-1"], "--fee-bps"),
        (["--symbol", "X", "--strategy", "ema_crossover", "--fraction", "2"], "--fraction"),
        (["--symbol", "X", "--strategy", "no_such"], "--strategy"),
        (["--symbol", "X", "--strategy", "ema_crossover", "--start", "yesterday"], "--start"),
        (["--tapes", "/nonexistent.csv", "--strategy", "ema_crossover", "--no-store"], "--tapes"),
    ],
)
def test_a_bad_flag_stops_it_naming_the_flag(
    argv: list[str],
    names: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and names in err.splitlines()[0]
    assert "Traceback" not in err


def test_no_stored_candles_says_so(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--symbol", "BTC-USDT", "--strategy", "ema_crossover"]) == 2
    assert "no stored 1m candle of okx BTC-USDT" in capsys.readouterr().err


@pytest.mark.timescale
def test_on_timescaledb_a_run_goes_into_the_hypertables(
    timescale_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(timescale_url, "on")
    monkeypatch.setenv("DATABASE_URL", timescale_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "run.json"
    assert main(["--tapes", str(XRP_TAPE), "--strategy", "ema_crossover", "--json", str(out)]) == 0
    (run,) = json.loads(out.read_text())["runs"]
    with psycopg.connect(timescale_url) as conn:
        hypertables = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
            " WHERE hypertable_name LIKE 'backtest%%' ORDER BY 1"
        ).fetchall()
        assert hypertables == [("backtest_equity",), ("backtest_trades",)]
        rows = conn.execute(
            "SELECT entry_time, exit_time, pnl FROM backtest_trades WHERE run_id = %s ORDER BY entry_time",
            (run["run_id"],),
        ).fetchall()
        assert [(r[0].isoformat(), r[1] and r[1].isoformat(), r[2]) for r in rows] == [
            (t["entry_time"], t["exit_time"], t["pnl"]) for t in run["trades"]
        ]
        equity = conn.execute(
            "SELECT count(*), (array_agg(equity ORDER BY time DESC))[1] FROM backtest_equity"
            " WHERE run_id = %s",
            (run["run_id"],),
        ).fetchone()
        assert equity == (run["metrics"]["candles"], run["metrics"]["final_equity"])
