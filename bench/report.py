"""The Markdown that ``python3 tcp.py bench`` writes into docs/benchmarks.md, from the figures the bench
scripts report (their ``--json`` output). Pure: text and figures in, text out.

The generated part of the document lies between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``; in
it each benchmark has its own block (``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``) that starts
with the date, mode and load average of the run that measured it. A run replaces the blocks of the
benchmarks it ran and keeps the others as they were, so every figure stays next to the run behind it.
Everything outside the generated part (method notes, earlier measurements) is left alone.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
FAILED = "*Not re-measured:"

Figures = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Machine:
    """Where and when a run happened; load averages are the 1-minute figure."""

    cpu: str
    cores: int
    ram_gb: float
    python: str
    load_start: float
    load_end: float


@dataclass(frozen=True, slots=True)
class Measured:
    """One benchmark's part of a run: its figures (the script's JSON), or why it has none."""

    figures: Figures | None
    mode: str  # "quick" or "full"
    date: str  # "2026-11-30 20:05 UTC"
    command: str  # the script and its arguments
    load_start: float
    load_end: float
    failure: str | None = None


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor else "n/a"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def replay_block(figures: Figures) -> str:
    """Replay throughput: each process count against its own plain parse + COPY floor of the same trades."""
    rows = figures["runs"]
    lines = [
        "| processes | trades | floor: plain parse + COPY, trades/s | `Trade` + sink writer | x floor "
        "| end to end | x floor | less start-up | x floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    flows: dict[int, tuple[float, float]] = {}
    for run in rows:
        n = run["trades"]
        floor, writer = n / run["floor_s"], n / run["baseline_s"]
        flow, net = n / run["flow_s"], n / (run["flow_s"] - run["startup_s"])
        flows[run["processes"]] = (flow, floor)
        lines.append(
            f"| {run['processes']} | {_n(n)} | {_n(floor)} | {_n(writer)} | {_ratio(writer, floor)} "
            f"| {_n(flow)} | {_ratio(flow, floor)} | {_n(net)} | {_ratio(net, floor)} |"
        )
    shapes = sorted({run.get("instruments", 1) for run in rows})
    lines.append(
        "\nTrades/s throughout; end to end includes the process start-up, measured apart. Instruments "
        f"per run: {', '.join(map(str, shapes))} (the same trades shared out, so the runs compare)."
    )
    if 1 in flows:
        flow, floor = flows[1]
        lines.append(
            f"Goal on one process, end to end: at least 100,000 trades/s ({_met(flow >= 100_000)}) and "
            f"at least 0.5x the floor ({_met(flow >= 0.5 * floor)})."
        )
    if 1 in flows and 2 in flows:
        gain = flows[2][0] / flows[1][0]
        lines.append(f"Two processes against one, end to end: {gain:.2f}x ({_met(gain > 1)}).")
    return "\n".join(lines)


def _latency_row(name: str, stats: Figures, grace: float) -> str:
    beyond = "".join(f" | {(stats[q] - grace) * 1000:+.0f} ms" for q in ("p50", "p99"))
    return (
        f"| {name} | {stats['p50']:.3f} s | {stats['p99']:.3f} s | {stats['max']:.3f} s{beyond} "
        f"| {_ratio(stats['p99'], grace)} | {stats['slope_ms_per_min']:+.2f} ms/min |"
    )


def latency_block(figures: Figures) -> str:
    """Close to row and close to Redis, against the grace (the contract's floor)."""
    grace = figures["grace_s"]
    lines = [
        f"{figures['instruments']} instruments on the simulator for {figures['minutes']:g} minutes, "
        f"{figures['trades_per_s']:,.0f} trades/s stored in all ({figures['density']} overlaid copies of "
        f"the BTC-USDT tape per instrument, each instrument from its own point in the tape), "
        f"grace {grace:g} s: {figures['candles']} 1m candles (each "
        f"instrument's first, partial minute left out), {figures['late_trades']} late trades.",
        "",
        "| latency after the close | p50 | p99 | max | beyond grace, p50 | beyond grace, p99 "
        "| p99 x grace | trend over the run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, key in (("row in `candles_1m` (`inserted_at`)", "row"), ("message on Redis", "redis")):
        if figures.get(key):
            lines.append(_latency_row(name, figures[key], grace))
    row = figures.get("row")
    if row:
        within = (row["p99"] - grace) <= 0.050
        enough = figures["candles"] >= 500
        lines.append(
            f"\nGoal: close-to-row p99 at most 50 ms beyond the grace ({_met(within)}), over at least 500 "
            f"candles from 20 instruments ({_met(enough and figures['instruments'] >= 20)}); the trend "
            "is the least-squares slope of close-to-row latency against the candle's close."
        )
    return "\n".join(lines)


def memory_block(figures: Figures) -> str:
    """Flow RSS over the latency run, against the 150 MB goal, with its slope."""
    rss = figures["rss"]
    lines = [
        f"RSS of the live flow (`python -m bytewax.run flows.okx` and its children) with "
        f"{figures['instruments']} instruments, sampled every {rss['every_s']:g} s over the same "
        f"{figures['minutes']:g} minutes.",
        "",
        "| flow RSS | MB | x 150 MB goal |",
        "|---|---|---|",
        f"| after warm-up ({rss['warmup_s']:g} s) | {rss['first_mb']:.0f} | {rss['first_mb'] / 150:.2f}x |",
        f"| max | {rss['max_mb']:.0f} | {rss['max_mb'] / 150:.2f}x |",
        f"| at the end | {rss['last_mb']:.0f} | {rss['last_mb'] / 150:.2f}x |",
        f"| slope after warm-up (least squares over {rss['samples']} samples) "
        f"| {rss['slope_mb_per_min']:+.3f} MB/min | |",
        f"\nGoal: at most 150 MB ({_met(rss['max_mb'] <= 150)}) and flat over 30 minutes "
        f"(slope {rss['slope_mb_per_min']:+.3f} MB/min over {figures['minutes']:g} minutes).",
    ]
    return "\n".join(lines)


def indicators_block(figures: Figures) -> str:
    """The incremental bank against TA-Lib's batch functions over the same candles."""
    n = figures["candles"]
    incremental, batch = n / figures["incremental_s"], n / figures["talib_s"]
    per_update = figures["incremental_s"] / n / figures["indicators"] * 1e6
    return "\n".join(
        [
            f"{_n(n)} candles (XRP-ETH 1m, tiled), best of {figures['repeat']}.",
            "",
            "| what | candles/s | x TA-Lib batch |",
            "|---|---|---|",
            f"| incremental bank: {figures['indicators']} indicators, one candle at a time "
            f"({per_update:.2f} us per indicator update) | {_n(incremental)} | {incremental / batch:.4f}x |",
            f"| TA-Lib batch: the bank's {figures['talib_indicators']} TA-Lib indicators over whole arrays "
            f"(anchor) | {_n(batch)} | 1x |",
        ]
    )


def queries_block(figures: Figures) -> str:
    """The dashboard's named reads, the client's time against the server's execution time."""
    lines = [
        f"{figures['engine']}: {figures['symbols']} symbols x {figures['days']} days of 1m candles "
        f"({_n(figures['rows'])} rows), {figures['repeat']} calls each.",
        "",
        "| read | client median ms | client p95 ms | server ms (anchor) | client x server | rows |",
        "|---|---|---|---|---|---|",
    ]
    for read in figures["reads"]:
        lines.append(
            f"| {read['label']} | {read['median_ms']:.2f} | {read['p95_ms']:.1f} | {read['server_ms']:.2f} "
            f"| {_ratio(read['median_ms'], read['server_ms'])} | {read['rows']} |"
        )
    return "\n".join(lines)


def dashboard_block(figures: Figures) -> str:
    """Page load (no floor measured) and the panel server's memory under accelerated live data."""
    loads = figures["loads_s"]
    median = statistics.median(loads)
    return "\n".join(
        [
            "| what | result |",
            "|---|---|",
            f"| page load, navigation to chart rendered ({len(loads)} loads; no floor measured) "
            f"| median {median:.2f} s (min {min(loads):.2f} s, max {max(loads):.2f} s) |",
            f"| panel server RSS: idle / {figures['pages']} pages open / after the live data "
            f"| {figures['idle_mb']:.0f} MB / {figures['before_mb']:.0f} MB / {figures['after_mb']:.0f} MB |",
            f"| live data: {figures['minutes']} minutes x {figures['series']} series in "
            f"{figures['took_s']:.0f} s | {_n(figures['published'])} messages "
            f"({figures['published'] / figures['took_s']:,.0f}/s), RSS min {figures['rss_min_mb']:.0f} MB, "
            f"max {figures['rss_max_mb']:.0f} MB |",
        ]
    )


def backtest_block(figures: Figures) -> str:
    """The backtest command end to end and in process, against the vectorised formulation (anchor)."""
    n, vector = figures["candles"], figures["vector"]
    anchor = vector["read"] + vector["compute"]
    lines = [
        f"{figures['engine']}: {_n(n)} 1m candles of one symbol, `ema_crossover` 9/21, long-only account, "
        f"fee 10 bps: {_n(figures['trades'])} trades, "
        + ("the same in every run." if figures["same_trades"] else "**not the same in every run**."),
        "",
        "| run | total s | read | graph | accounting | write | candles/s | x vectorised |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "command": "`tcp.py backtest` end to end (process start-up included)",
        "in_process": "the backtest flow in process, candles in memory",
    }
    for name, label in labels.items():
        if name in figures:
            t = figures[name]
            parts = " | ".join(f"{t[k]:.2f}" for k in ("read", "graph", "accounting", "write"))
            speed, ratio = _n(n / t["total"]), t["total"] / anchor
            lines.append(f"| {label} | {t['total']:.2f} | {parts} | {speed} | {ratio:.1f}x |")
    anchor_label = "vectorised numpy/pandas (anchor; its computation under graph)"
    lines.append(
        f"| {anchor_label} | {anchor:.2f} | {vector['read']:.2f} | {vector['compute']:.3f} | | "
        f"| {_n(n / anchor)} | 1x |"
    )
    if "command" in figures:
        t = figures["command"]
        rest = t["total"] - sum(t[k] for k in ("read", "graph", "accounting", "write"))
        lines.append(
            f"\nThe command's wall time beyond its split (start-up, metrics, summary, JSON): {rest:.2f} s."
        )
    if "command" in figures and n >= 525_600:
        lines.append(
            f"Goal: a year of 1m candles from the database in at most 10 s end to end "
            f"({_met(figures['command']['total'] <= 10)})."
        )
    return "\n".join(lines)


SECTIONS: dict[str, tuple[str, Callable[[Figures], str]]] = {
    "replay": ("Replay throughput against the parse + COPY floor", replay_block),
    "latency": ("Live candle latency at 20 instruments", latency_block),
    "memory": ("Live flow memory at 20 instruments", memory_block),
    "indicators": ("Indicator bank against TA-Lib batch", indicators_block),
    "queries": ("Dashboard queries", queries_block),
    "dashboard": ("Dashboard page load", dashboard_block),
    "backtest": ("Backtest of a year of 1m candles against a vectorised formulation", backtest_block),
}
"""Each generated block: its heading and how its figures become Markdown, in document order."""


def _stamp(measured: Measured) -> str:
    return (
        f"Measured {measured.date}, {measured.mode} mode: `{measured.command}`; load average "
        f"{measured.load_start:.2f} at start, {measured.load_end:.2f} at end."
    )


def block_text(name: str, measured: Measured, previous: str | None) -> str:
    """A block's new content: the figures with their stamp (and a note if part of the run failed), or
    when the run gave none, the previous figures kept with a line saying why they were not re-measured."""
    if measured.figures is not None:
        text = _stamp(measured) + "\n\n" + SECTIONS[name][1](measured.figures)
        return (
            text if measured.failure is None else f"{text}\n\n*Part of this run failed: {measured.failure}.*"
        )
    kept = "\n".join(line for line in (previous or "").splitlines() if not line.startswith(FAILED)).strip()
    note = f"{FAILED} the run of {measured.date} ({measured.mode} mode) failed: {measured.failure}.*"
    return f"{kept}\n\n{note}" if kept else note


def run_text(command: str, date: str, seconds: float, machine: Machine) -> str:
    """The run's own line: command, machine and load."""
    return (
        f"Last run: `{command}` on {date}, {seconds / 60:.1f} minutes. Machine: {machine.cores} cores "
        f"({machine.cpu}), {machine.ram_gb:.1f} GB RAM, Python {machine.python}; load average "
        f"{machine.load_start:.2f} at start, {machine.load_end:.2f} at end (1-minute; the machine may be "
        "shared, so each figure below is a ratio to a floor measured in the same run where one exists)."
    )


_BLOCK = re.compile(r"<!-- bench:(\w+) -->\n(.*?)\n<!-- /bench:\1 -->", re.DOTALL)


def existing_blocks(document: str) -> dict[str, str]:
    """The generated blocks already in ``document``, by name."""
    return {match[1]: match[2].strip() for match in _BLOCK.finditer(document)}


def generated_section(blocks: Mapping[str, str]) -> str:
    parts = [
        BEGIN,
        "## Latest `python3 tcp.py bench` figures",
        "",
        f"<!-- bench:run -->\n{blocks.get('run', 'Not run yet.')}\n<!-- /bench:run -->",
    ]
    for name, (heading, _) in SECTIONS.items():
        body = blocks.get(name, "Not measured by `python3 tcp.py bench` yet; see the sections below.")
        parts += ["", f"### {heading}", "", f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->"]
    parts += ["", END]
    return "\n".join(parts)


def update_document(
    document: str, run: str, measured: Mapping[str, Measured], intro_end: str = "\n## "
) -> str:
    """``document`` with the generated section rewritten: ``run`` as its first block, the blocks of
    ``measured`` replaced, every other block kept. Without a generated section yet, it goes before the
    first second-level heading (after the introduction), or at the end."""
    blocks = existing_blocks(document)
    blocks["run"] = run
    for name, item in measured.items():
        blocks[name] = block_text(name, item, blocks.get(name))
    section = generated_section(blocks)
    if BEGIN in document and END in document:
        head, _, rest = document.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + section + tail
    cut = document.find(intro_end)
    if cut < 0:
        return document.rstrip("\n") + "\n\n" + section + "\n"
    return document[: cut + 1] + section + "\n" + document[cut:]
