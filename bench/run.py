"""Run the benchmarks in one go and write their figures into docs/benchmarks.md.

    python3 tcp.py bench [--quick] [--only NAME[,NAME ...]] [--latency-minutes M] [--output PATH]

Each script of bench/ runs in its own process with ``--json``; the figures go into the generated part
of docs/benchmarks.md (bench/report.py), each benchmark stamped with the date, the mode and the load
average of its run; benchmarks not run keep their earlier figures. The full mode measures what the goals
name (30 minutes of live data from 20 instruments at about 2,400 trades/s, the 365-day query data set,
...) and takes about 45 minutes; ``--quick`` runs the same benchmarks smaller in about 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measuring import cpu_model, load_average, ram_gb  # noqa: E402
from bench.report import Machine, Measured, run_text, update_document  # noqa: E402

INSTRUMENTS, DENSITY = 20, 4  # 20 instruments x 4 overlaid BTC-USDT tapes: about 2,400 trades/s
QUICK_MINUTES, FULL_MINUTES = 4.0, 30.0
NAMES = ("replay", "latency", "indicators", "queries", "dashboard", "backtest")

ARGS: dict[str, tuple[list[str], list[str]]] = {  # name: (quick, full) arguments of its script
    "indicators": (["--repeat", "1"], ["--repeat", "3"]),
    "queries": (["--symbols", "2", "--days", "30", "--repeat", "20"], ["--symbols", "10", "--days", "365"]),
    "dashboard": (["--loads", "3", "--minutes", "20", "--seconds", "30"], []),
    "backtest": (["--days", "30"], ["--days", "365"]),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 tcp.py bench",
        description="Run the benchmarks of bench/ in one run and write their figures, with the machine and "
        "the command, into docs/benchmarks.md (about 45 minutes; --quick about 10).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smaller runs: {QUICK_MINUTES:g} minutes of live data instead of {FULL_MINUTES:g}, 2 symbols "
        "x 30 days of candles instead of 10 x 365, fewer page loads, 30 days backtested instead of 365",
    )
    parser.add_argument(
        "--only",
        default=",".join(NAMES),
        metavar="NAME[,NAME ...]",
        help=f"run only these, comma-separated (default: all of {', '.join(NAMES)}; latency includes the "
        "flow's memory)",
    )
    parser.add_argument(
        "--latency-minutes", type=float, metavar="M", help="minutes of live data (overrides the mode's)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", metavar="PATH")
    args = parser.parse_args(argv)
    wrong = set(args.only.split(",")) - set(NAMES)
    if wrong:
        parser.error(f"--only: unknown {', '.join(sorted(wrong))} (choose from {', '.join(NAMES)})")
    return args


def commands(name: str, quick: bool, latency_minutes: float | None) -> list[list[str]]:
    """The script invocations (without ``--json``) that measure ``name``."""
    if name == "replay":
        # the same trades both times, over two instruments: one series cannot be spread over processes
        shape = ["--copies", "10", "--instruments", "2"]
        return [["bench_replay.py", *shape, "--processes", str(p)] for p in (1, 2)]
    if name == "latency":
        minutes = latency_minutes or (QUICK_MINUTES if quick else FULL_MINUTES)
        shape = ["--instruments", str(INSTRUMENTS), "--density", str(DENSITY), "--minutes", f"{minutes:g}"]
        return [["bench_latency.py", *shape]]
    return [[f"bench_{name}.py", *ARGS[name][0 if quick else 1]]]


def run_script(argv: list[str], out: Path, timeout: float) -> str | None:
    """Run one script with ``--json out``; None if it succeeded, else why not."""
    try:
        code = subprocess.run(
            [sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:], "--json", str(out)],
            cwd=ROOT,
            timeout=timeout,
        ).returncode
    except subprocess.TimeoutExpired:
        return f"`{argv[0]}` did not finish within {timeout / 60:.0f} minutes"
    if code != 0 or not out.exists():
        return f"`{argv[0]}` exited with code {code} (its output is in the run's log)"
    return None


def measure(name: str, quick: bool, latency_minutes: float | None, scratch: Path) -> Measured:
    """Run ``name``'s scripts; their figures (one script's JSON, or replay's runs as a list)."""
    load_start, began = load_average(), f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    runs, failure = [], None
    argvs = commands(name, quick, latency_minutes)
    if name == "dashboard" and not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        failure = "Chromium not found (apt-get install chromium)"
    for k, argv in enumerate(argvs if failure is None else []):
        out = scratch / f"{name}-{k}.json"
        minutes = float(argv[argv.index("--minutes") + 1]) if name == "latency" else 0.0
        print(f"\n== {name}: bench/{' '.join(argv)}", flush=True)
        failure = run_script(argv, out, timeout=minutes * 60 + 1800)
        if failure is not None:
            break
        runs.append(json.loads(out.read_text()))
    figures = ({"runs": runs} if name == "replay" else runs[0]) if runs else None
    return Measured(
        figures=figures,  # with a failure too: what did run (one process of the replay) is kept
        mode="quick" if quick else "full",
        date=began,
        command="`, `".join("bench/" + " ".join(argv) for argv in argvs),  # each in its own backticks
        load_start=load_start,
        load_end=load_average(),
        failure=failure,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python3 tcp.py bench", *(sys.argv[1:] if argv is None else argv)])
    load_start, started, date = load_average(), time.monotonic(), f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    measured: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory(prefix="tcp-bench-") as scratch:
        for name in NAMES:
            if name in args.only.split(","):
                measured[name] = measure(name, args.quick, args.latency_minutes, Path(scratch))
    if "latency" in measured:
        measured["memory"] = measured["latency"]  # the flow's RSS is sampled in the same live run
    machine = Machine(
        cpu=cpu_model(),
        cores=os.cpu_count() or 1,
        ram_gb=ram_gb(),
        python=platform.python_version(),
        load_start=load_start,
        load_end=load_average(),
    )
    run = run_text(command, date, time.monotonic() - started, machine)
    args.output.write_text(update_document(args.output.read_text(), run, measured))
    failed = [name for name, item in measured.items() if item.failure is not None]
    print(f"\nwrote {args.output}" + (f"; not measured: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
