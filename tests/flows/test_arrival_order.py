"""Arrival-order replays through the real dataflow (TIME.md rules 1, 3, 4, 8, 9).

Tapes are real (tests/data/SOURCES.md: the BTC-USDT websocket capture, the XRP-ETH trades with the
exchange's own klines), rearranged here into recordings: trades shuffled within the grace, one trade
displaced beyond it, poison rows. Expected candles come from the exchange's klines or from pandas
``resample(closed="left", label="right")`` over the tape's rows, never from the code under test; the
sorted replay they are also compared with is itself checked against the klines in test_replay_flow.py.
"""

from __future__ import annotations

import functools
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.testing import TestingSink
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.types import Candle, Rejected, TradeBatch
from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.flows.flowkit import BTC_TAPE, TAPES, XRP_TAPE, Captured, ohlcv, run_replay
from tests.support.tapes import MINUTE_MS, TapeRow, exchange_candles, tape_records

HEADER = "instrument_name,trade_id,side,price,size,created_time\n"
FEW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def write_tape(path: Path, lines: list[str]) -> Path:
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


def shuffle_within(rows: list[TapeRow], span_ms: int, seed: int) -> list[TapeRow]:
    """Cut the time-ordered rows into blocks spanning less than ``span_ms`` (and at random points) and
    permute each block. With ``span_ms`` <= the grace no trade becomes late: a trade of block B arrives
    after earlier blocks (all stamped <= min(B) <= its time) and part of B (stamped < min(B) + span), so
    the watermark at its arrival (newest - grace) stays below its own time, hence below its close."""
    rng = random.Random(seed)
    ordered = sorted(rows, key=lambda r: (r.ms, r.trade_id))
    out: list[TapeRow] = []
    block: list[TapeRow] = []
    for row in ordered:
        if block and (row.ms - block[0].ms >= span_ms or rng.random() < 0.02):
            rng.shuffle(block)
            out += block
            block = []
        block.append(row)
    rng.shuffle(block)
    return out + block


def displace_late(
    rows: list[TapeRow], victim: TapeRow, grace_ms: int, extra: int = 0
) -> tuple[list[TapeRow], int]:
    """Move ``victim`` to arrive right after the ``extra``-th row following the first one stamped at or
    after its close + grace (so its window is closed when it arrives); return the rows and its expected
    lateness in ms (the watermark at its arrival, newest time before it - grace, minus its time)."""
    others = [r for r in rows if r != victim]
    first = next(i for i, r in enumerate(others) if r.ms >= victim.close_ms + grace_ms)
    at = min(first + 1 + extra, len(others))
    arrival = others[:at] + [victim] + others[at:]
    newest = max(r.ms for r in others[:at])
    return arrival, newest - grace_ms - victim.ms


def utc_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def pandas_candles(rows: list[TapeRow], end_ms: int, rule: str = "1min") -> dict[datetime, tuple[Any, ...]]:
    """Candles closing at or before the end, from the trades alone (rules 1, 2, 5, 6): OHLCV and count
    of each [open, close) bin ordered by (time, id); a bin without trades is flat at the previous close
    (rolled-up flat bins are skipped, since traded-minute rollups only define traded bins)."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "ms": [r.ms for r in rows],
            "id": [r.trade_id for r in rows],
            "price": [Decimal(r.price) for r in rows],
            "size": [Decimal(r.size) for r in rows],
        }
    )
    frame["time"] = pd.to_datetime(frame["ms"], unit="ms", utc=True)
    frame = frame.sort_values(["time", "id"], kind="stable").set_index("time")
    out: dict[datetime, tuple[Any, ...]] = {}
    previous = None
    for label, group in frame.resample(rule, closed="left", label="right", origin="epoch"):
        close = label.to_pydatetime()
        if close > utc_ms(end_ms):
            break
        if len(group):
            prices = list(group["price"])
            previous = prices[-1]
            out[close] = (prices[0], max(prices), min(prices), prices[-1], sum(group["size"]), len(group))
        elif rule == "1min":
            out[close] = (previous, previous, previous, previous, Decimal(0), 0)
    return out


def got_1m(captured: Captured) -> dict[datetime, tuple[Any, ...]]:
    return {c.close_time: (*ohlcv(c), c.trade_count) for c in captured.of("1m")}


def by_key(candles: list[Candle]) -> list[Candle]:
    return sorted(candles, key=lambda c: (c.symbol, c.timeframe, c.close_time))


def replay(tapes: list[Path], grace_ms: int = 2000, **kwargs: Any) -> tuple[Captured, list[object]]:
    """The replay flow in-process; also returns what reached the database sink."""
    stored: list[object] = []
    captured = run_replay(
        tapes, database=TestingSink(stored), candle_grace=timedelta(milliseconds=grace_ms), **kwargs
    )
    return captured, stored


BTC_ROWS = tape_records(BTC_TAPE)
BTC_END = max(r.ms for r in BTC_ROWS)


@functools.cache
def sorted_btc(grace_ms: int = 2000) -> list[Candle]:
    """The candles of the sorted archive (rule 8: the same whatever the grace, as nothing is late)."""
    return by_key(run_replay([BTC_TAPE], candle_grace=timedelta(milliseconds=grace_ms)).candles)


@pytest.mark.slow
@FEW
@given(
    seed=st.integers(0, 2**32 - 1),
    grace_ms=st.sampled_from([2000, 5000]),
    span=st.floats(min_value=0.2, max_value=1.0),
)
def test_shuffles_within_the_grace_give_identical_candles(
    tmp_path_factory: pytest.TempPathFactory, seed: int, grace_ms: int, span: float
) -> None:
    """Rule 1 through the flow: any arrival order within the grace gives the sorted replay's candles, and
    none is late; also when the recording is split over two tapes of the same instrument."""
    arrival = shuffle_within(BTC_ROWS, max(1, int(grace_ms * span)), seed)
    assert arrival != BTC_ROWS  # a busy tape: every block of trades over a second is really shuffled
    tmp = tmp_path_factory.mktemp("shuffled")
    tape = write_tape(tmp / "btc.csv", [r.line for r in arrival])
    captured, stored = replay([tape], grace_ms)
    assert captured.late == []
    assert by_key(captured.candles) == sorted_btc(grace_ms)
    assert got_1m(captured) == pandas_candles(BTC_ROWS, BTC_END)
    assert sum(len(b) for b in stored if isinstance(b, TradeBatch)) == len(BTC_ROWS)
    halves = [write_tape(tmp / f"half{k}.csv", [r.line for r in arrival[k::2]]) for k in (0, 1)]
    split, _ = replay(halves, grace_ms)
    assert split.late == []
    assert by_key(split.candles) == sorted_btc(grace_ms)


@pytest.mark.slow
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_xrp_shuffled_within_a_minute_grace_still_equals_the_exchange_klines(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    rows = tape_records(XRP_TAPE)
    arrival = shuffle_within(rows, 60_000, seed)
    assert arrival != rows
    tape = write_tape(tmp_path_factory.mktemp("xrp") / "xrp.csv", [r.line for r in arrival])
    captured, _ = replay([tape], grace_ms=60_000)
    assert captured.late == []
    for timeframe in ("1m", "5m"):
        expected = exchange_candles(TAPES / f"XRP-ETH-exchange-candles-{timeframe}.csv")
        got = {c.close_time: ohlcv(c) for c in captured.of(timeframe)}
        assert set(got) == set(expected) - {max(expected)}  # the last kline was still forming
        assert all(got[close] == expected[close] for close in got)


def test_two_workers_replay_shuffled_tapes_like_one_worker_replays_sorted_ones(tmp_path: Path) -> None:
    tapes = [
        write_tape(tmp_path / f"{n}.csv", [r.line for r in shuffle_within(tape_records(p), 2000, seed=7)])
        for n, p in (("btc", BTC_TAPE), ("xrp", XRP_TAPE))
    ]
    two, _ = replay(tapes, workers=2)
    assert two.late == []
    assert by_key(two.candles) == by_key(run_replay([BTC_TAPE, XRP_TAPE]).candles)


@pytest.mark.slow
@FEW
@given(
    index=st.integers(min_value=0, max_value=len(BTC_ROWS) - 2000),
    extra=st.integers(0, 500),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_trade_displaced_beyond_the_grace_is_late_and_changes_no_candle(
    tmp_path_factory: pytest.TempPathFactory, index: int, extra: int, seed: int
) -> None:
    """Rule 4: it is stored and reported late with its lateness, and the candles are those of the tape
    without it (pandas), every timeframe equal to the sorted replay of the tape without it."""
    victim = sorted(BTC_ROWS, key=lambda r: (r.ms, r.trade_id))[index]
    arrival, lateness_ms = displace_late(shuffle_within(BTC_ROWS, 2000, seed), victim, 2000, extra)
    tmp = tmp_path_factory.mktemp("late")
    captured, stored = replay([write_tape(tmp / "late.csv", [r.line for r in arrival])])
    [late] = captured.late
    assert (late.trade.trade_id, late.trade.ts_event) == (victim.trade_id, utc_ms(victim.ms))
    assert late.candle_close == utc_ms(victim.close_ms)
    assert late.lateness == timedelta(milliseconds=lateness_ms) > timedelta(0)
    stored_ids = [t.trade_id for b in stored if isinstance(b, TradeBatch) for t in b.trades]
    assert sorted(stored_ids) == sorted(r.trade_id for r in BTC_ROWS)  # the late one is stored too
    without = [r for r in BTC_ROWS if r != victim]
    assert got_1m(captured) == pandas_candles(without, BTC_END)
    clean = write_tape(tmp / "without.csv", [r.line for r in without])
    assert by_key(captured.candles) == by_key(run_replay([clean]).candles)


POISON = [  # (row, part of the reason); ids beyond the tape's, so nothing is a duplicate
    ("BTC-USDT,3800000001,buy," + "9" * 400 + ",0.1,{ms}", "is not below 1E+12"),
    ("BTC-USDT,3800000002,sell,1E-301,0.1,{ms}", "more than 16 digits after the point"),
    ("BTC-USDT,3800000003,buy,61000,0.1,253402300799000", "outside [2009-01-03, 2100-01-01)"),  # 9999
    ("BTC-USDT,3800000004,buy,61000,0.1,4102444800000", "outside [2009-01-03, 2100-01-01)"),  # 2100
    (f"BTC-USDT,{2**63},sell,61000,0.1,{{ms}}", "outside 1..2^63-1"),  # beyond bigint
    ("BTC-USDT,3800000005,buy,61000,0.1,99999999999999999999999", "out of range"),
    ("<html>503 Service Unavailable</html>", "1 fields, expected 6"),
]


@pytest.mark.slow
@FEW
@given(
    positions=st.lists(st.integers(0, len(BTC_ROWS)), min_size=len(POISON), max_size=len(POISON)),
    seed=st.integers(0, 2**32 - 1),
)
def test_poison_rows_are_rejects_and_the_other_candles_are_unchanged(
    tmp_path_factory: pytest.TempPathFactory, positions: list[int], seed: int
) -> None:
    arrival = shuffle_within(BTC_ROWS, 2000, seed)
    lines: list[str | tuple[str, str]] = [r.line for r in arrival]
    for (row, reason), at in sorted(zip(POISON, positions, strict=True), key=lambda p: -p[1]):
        neighbour = arrival[min(at, len(arrival) - 1)]
        lines.insert(at, (row.format(ms=neighbour.ms), reason))
    tape = tmp_path_factory.mktemp("poison") / "poison.csv"
    write_tape(tape, [line if isinstance(line, str) else line[0] for line in lines])
    captured, stored = replay([tape])
    rejects = [item for item in stored if isinstance(item, Rejected)]
    expected = [(n + 2, line) for n, line in enumerate(lines) if not isinstance(line, str)]
    assert len(rejects) == len(POISON)
    for reject in rejects:
        line_no = int(reject.reason.split(":")[1])
        match = next(item for n, item in expected if n == line_no)
        assert reject.reason.startswith(f"{tape}:{line_no}: ") and match[1] in reject.reason
        assert (reject.raw, reject.source) == (match[0].encode(), "tape")
    assert captured.late == []
    assert sum(len(b) for b in stored if isinstance(b, TradeBatch)) == len(BTC_ROWS)
    assert by_key(captured.candles) == sorted_btc()  # the year-9999 row did not become the end


@FEW
@given(cut_ms=st.integers(0, BTC_END - BTC_ROWS[0].ms), seed=st.integers(0, 2**32 - 1))
def test_a_declared_end_cuts_an_arrival_order_tape_by_time_not_by_row(
    tmp_path_factory: pytest.TempPathFactory, cut_ms: int, seed: int
) -> None:
    """Rule 8 with arrival order: trades stamped after the end are skipped wherever they arrive, so a
    trade stamped before the end that arrives after one stamped after it still counts."""
    cut = utc_ms(BTC_ROWS[0].ms + cut_ms)
    tape = write_tape(
        tmp_path_factory.mktemp("cut") / "cut.csv", [r.line for r in shuffle_within(BTC_ROWS, 2000, seed)]
    )
    early, _ = replay([tape], replay_end=cut)
    assert all(c.close_time <= cut for c in early.candles)
    assert by_key(early.candles) == [c for c in sorted_btc() if c.close_time <= cut]
    end_ms = BTC_ROWS[0].ms + cut_ms
    assert got_1m(early) == pandas_candles([r for r in BTC_ROWS if r.ms <= end_ms], end_ms)


def test_a_trade_before_the_end_arriving_after_one_past_it_still_counts(tmp_path: Path) -> None:
    ordered = sorted(BTC_ROWS, key=lambda r: (r.ms, r.trade_id))
    boundary = (ordered[len(ordered) // 2].ms // MINUTE_MS) * MINUTE_MS  # a minute inside the tape
    cut_ms = boundary + 500
    before = max((r for r in ordered if r.ms < boundary), key=lambda r: (r.ms, r.trade_id))
    after = next(r for r in ordered if r.ms > cut_ms)
    assert after.ms - before.ms < 2000  # within the grace: it is not late, it belongs to [.., boundary)
    arrival = [r for r in ordered if r != before]
    arrival.insert(arrival.index(after) + 1, before)
    tape = write_tape(tmp_path / "cut.csv", [r.line for r in arrival])
    early, _ = replay([tape], replay_end=utc_ms(cut_ms))
    assert early.late == []
    expected = pandas_candles([r for r in BTC_ROWS if r.ms <= cut_ms], cut_ms)
    assert got_1m(early)[utc_ms(boundary)] == expected[utc_ms(boundary)]
    assert got_1m(early) == expected


# --- the real entry point ---------------------------------------------------------------------------


def run_entry_point(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.replay"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_replay_entry_point_stores_an_arrival_order_recording(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    victim = sorted(BTC_ROWS, key=lambda r: (r.ms, r.trade_id))[7000]
    arrival, lateness_ms = displace_late(shuffle_within(BTC_ROWS, 2000, 2024), victim, 2000, extra=40)
    lines = [r.line for r in arrival]
    bad = {
        100: "BTC-USDT,3800000001,buy," + "9" * 400 + f",0.1,{arrival[99].ms}",
        9000: "BTC-USDT,3800000002,buy,61000,0.1,253402300799000",
        15000: "BTC-USDT,3800000003,buy,61000,0.1",
    }
    for at in sorted(bad):  # in ascending order, each lands at its index
        lines.insert(at, bad[at])
    tape = write_tape(tmp_path / "recording.csv", lines)
    result = run_entry_point(
        {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, "REPLAY_TAPES": str(tape), "LOG_LEVEL": "WARNING"},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"{tape}: 3 rows rejected" in result.stderr
    without = [r for r in BTC_ROWS if r != victim]
    with psycopg.connect(pg_url) as conn:
        stored = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                "SELECT time, open, high, low, close, volume, trade_count FROM candles_1m"
                " WHERE exchange = 'okx' AND symbol = 'BTC-USDT'"
            )
        }
        stored_5m = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                "SELECT time, open, high, low, close, volume, trade_count FROM candles_5m"
                " WHERE exchange = 'okx' AND symbol = 'BTC-USDT' AND trade_count > 0"
            )
        }
        trades = conn.execute("SELECT count(*) FROM trades WHERE symbol = 'BTC-USDT'").fetchone()
        late = conn.execute("SELECT trade_id, time, candle_close, lateness FROM late_trades").fetchall()
        rejects = conn.execute("SELECT source, reason, raw FROM rejects ORDER BY reason").fetchall()
    assert stored == pandas_candles(without, BTC_END)
    assert stored_5m == pandas_candles(without, BTC_END, "5min")
    assert trades == (len(BTC_ROWS),)
    assert late == [
        (victim.trade_id, utc_ms(victim.ms), utc_ms(victim.close_ms), timedelta(milliseconds=lateness_ms))
    ]
    # The header is line 1, lines[0] line 2.
    line_of = {at + 2: row for at, row in bad.items()}
    assert {(source, reason.split(": ", 1)[0], bytes(raw)) for source, reason, raw in rejects} == {
        ("tape", f"{tape}:{n}", row.encode()) for n, row in line_of.items()
    }


def test_a_file_that_is_not_a_tape_stops_the_entry_point_with_one_line(tmp_path: Path) -> None:
    tape = tmp_path / "prices.csv"
    tape.write_text("symbol,time,price\nBTC-USDT,1723161255342,61837.63\n")
    # An unreachable database: the tapes are checked before anything connects to it.
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "REDIS_URL": "redis://127.0.0.1:9/0"}
    result = run_entry_point({**env, "REPLAY_TAPES": str(tape)}, tmp_path)
    assert result.returncode == 2
    fix = "  Name an OKX trades CSV tape (bundled ones: tests/data/tapes)."
    assert result.stderr.strip().splitlines() == [
        f"error: REPLAY_TAPES: {tape}:1: header 'symbol,time,price' is not "
        "instrument_name,trade_id,side,price,size,created_time[,source]",
        fix,
    ]
    missing = tmp_path / "missing.csv"
    result = run_entry_point({**env, "REPLAY_TAPES": str(missing)}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: REPLAY_TAPES: tape {missing} does not exist.", fix]
