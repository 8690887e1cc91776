"""User indicators in the per-series indicator step: one added in the middle of a run gives, over the
stored candles (its history) and then live, the values TA-Lib computes over the whole series; removed, it
stops; invalid, colliding or repeated changes change nothing; after a restart (fresh step, the indicator
loaded again) the outputs continue exactly as an uninterrupted run's.

Oracle: TA-Lib over the exchange's own 1m klines (``tests/market/test_indicators.py``'s helpers). The
"database" is a list the test appends each candle to before the step sees it (as the live flow's
candle output is built before its indicator step), or a real PostgreSQL for the restart.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from configs.indicators import parse_indicator_config
from connectors.database import DatabaseWriter
from connectors.resume import StoredHistory
from flows.graph import indicator_stream
from flows.indicators import IndicatorOut, IndicatorStep
from market.control import IndicatorChange
from market.indicators import indicator_spec
from market.types import Candle, IndicatorValue
from sql.migrate import migrate
from tests.market.test_indicators import arrays, dataset, talib_outputs

CONFIG = parse_indicator_config(
    {
        "profiles": [
            {
                "instruments": "*",
                "timeframes": ["1m"],
                "indicators": [{"indicator": "EMA", "label": "ema_9", "params": {"timeperiod": 9}}],
                "strategies": [{"strategy": "ema_crossover", "params": {"fast": 9, "slow": 21}}],
            }
        ]
    }
)
CANDLES = dataset("1m")[:900]


class ListHistory:
    """Stored candles in a list (``connectors.resume.StoredHistory``'s interface)."""

    def __init__(self) -> None:
        self.stored: list[Candle] = []
        self.reads = 0

    def __call__(self, first: Candle) -> list[Candle]:
        return [c for c in self.stored if c.close_time < first.close_time]

    def range(
        self, exchange: str, symbol: str, timeframe: str, after: datetime | None, until: datetime
    ) -> list[Candle]:
        self.reads += 1
        return [
            c
            for c in self.stored
            if (exchange, symbol, timeframe) == (c.exchange, c.symbol, c.timeframe)
            and (after is None or c.close_time > after)
            and c.close_time <= until
        ]


def change(action: str, label: str, indicator: str | None = None, **params: Any) -> IndicatorChange:
    entry = None if indicator is None else {"indicator": indicator, "label": label, "params": params}
    return IndicatorChange(1, action, "okx", "XRP-ETH", "1m", label, entry)  # type: ignore[arg-type]


def run(
    step: IndicatorStep,
    candles: tuple[Candle, ...] | list[Candle],
    changes: dict[int, list[IndicatorChange]],
    history: ListHistory | None = None,
    state: Any = None,
) -> tuple[Any, list[IndicatorOut]]:
    """The step over ``candles``, applying ``changes[i]`` before candle i; the final state and outputs.
    ``history``: each candle is stored before the step sees it."""
    out: list[IndicatorOut] = []
    for i, candle in enumerate([*candles, None]):
        for c in changes.get(i, []):
            state, emitted = step(state, c)
            out.extend(emitted)
        if candle is not None:
            if history is not None:
                history.stored.append(candle)
            state, emitted = step(state, candle)
            out.extend(emitted)
    return state, out


def of(label: str, outputs: list[IndicatorOut]) -> dict[datetime, dict[str, float]]:
    values = [o for o in outputs if isinstance(o, IndicatorValue) and o.indicator == label]
    by_time = {v.time: dict(v.values) for v in values}
    assert len(by_time) == len(values), f"{label}: a time was output twice"
    return by_time


def talib(name: str, params: dict[str, Any], candles: tuple[Candle, ...]) -> dict[datetime, dict[str, float]]:
    """TA-Lib's values by candle close (after its lookback), keyed like the indicator's outputs."""
    lookback, refs = talib_outputs(name, params, arrays(candles))
    keys = indicator_spec(name).outputs
    return {
        c.close_time: {k: float(ref[i]) for k, ref in zip(keys, refs, strict=True)}
        for i, c in enumerate(candles)
        if i >= lookback
    }


def assert_equal(got: dict[datetime, dict[str, float]], expected: dict[datetime, dict[str, float]]) -> None:
    assert list(got) == list(expected)
    for t, values in expected.items():
        assert got[t].keys() == values.keys()
        for k, v in values.items():
            assert np.isclose(got[t][k], v, rtol=1e-9, atol=1e-12 * max(1.0, abs(v))), (t, k)


CASES = [
    ("MACD", {}),
    ("BBANDS", {"timeperiod": 10, "nbdevup": 1.5}),
    ("RSI", {"timeperiod": 7}),
    ("OBV", {}),
]


@pytest.mark.parametrize(("name", "params"), CASES, ids=[n for n, _ in CASES])
def test_an_indicator_added_mid_run_equals_talib_over_its_history_and_live(
    name: str, params: dict[str, Any]
) -> None:
    history = ListHistory()
    added = change("add", "mine", name, **params)
    step = IndicatorStep(CONFIG, history)
    state, before = run(step, CANDLES[:400], {}, history)
    state, filled = step(state, added)
    # the history: every stored candle (all 400 processed), values at their closes, as TA-Lib's
    assert_equal(of("mine", list(filled)), talib(name, params, CANDLES[:400]))
    state = pickle.loads(pickle.dumps(state))  # the state is small and picklable
    _, after = run(step, CANDLES[400:], {}, history, state)
    assert_equal(of("mine", [*filled, *after]), talib(name, params, CANDLES))
    # the configured indicators and the strategy are untouched by it
    alone = ListHistory()
    _, plain = run(IndicatorStep(CONFIG, alone), CANDLES, {}, alone)
    assert [o for o in [*before, *after] if getattr(o, "indicator", None) != "mine"] == plain


def test_a_history_the_database_has_not_finished_storing_is_completed_from_the_next_candle() -> None:
    history = ListHistory()
    step = IndicatorStep(CONFIG, history)
    state, _ = run(step, CANDLES[:300], {})
    history.stored = list(CANDLES[:297])  # the last three processed candles are not stored yet
    state, filled = step(state, change("add", "mine", "SMA", timeperiod=20))
    assert max(of("mine", list(filled))) == CANDLES[296].close_time
    history.stored = list(CANDLES[:300])
    _, after = run(step, CANDLES[300:], {}, history, state)
    assert_equal(of("mine", [*filled, *after]), talib("SMA", {"timeperiod": 20}, CANDLES))


def test_a_history_the_database_never_completes_is_said(caplog: pytest.LogCaptureFixture) -> None:
    history = ListHistory()
    step = IndicatorStep(CONFIG, history)
    state, _ = run(step, CANDLES[:300], {})
    history.stored = list(CANDLES[:297])  # and the database never stores candles 297..299
    state, _ = step(state, change("add", "mine", "SMA", timeperiod=20))
    with caplog.at_level(logging.WARNING, logger="flows.indicators"):
        step(state, CANDLES[300])
        step(state, CANDLES[301])
    [record] = caplog.records  # said once: the next candle follows the one before
    assert f"end at {CANDLES[296].close_time.isoformat()}" in record.getMessage()


def test_an_indicator_loaded_before_any_candle_reads_every_stored_candle() -> None:
    history = ListHistory()
    history.stored = list(CANDLES[:500])
    step = IndicatorStep(CONFIG, history)
    _, out = run(step, CANDLES[500:], {0: [change("load", "mine", "ATR", timeperiod=5)]}, history)
    assert_equal(of("mine", out), talib("ATR", {"timeperiod": 5}, CANDLES))


def test_a_removed_indicator_stops_and_added_again_starts_over_from_the_stored_candles() -> None:
    history = ListHistory()
    step = IndicatorStep(CONFIG, history)
    changes = {
        200: [change("add", "mine", "EMA", timeperiod=30)],
        400: [change("remove", "mine")],
        600: [change("add", "mine", "EMA", timeperiod=5)],
    }
    _, out = run(step, CANDLES, changes, history)
    values = [o for o in out if isinstance(o, IndicatorValue) and o.indicator == "mine"]
    cut = [i for i, v in enumerate(values) if i and v.time <= values[i - 1].time][0]  # the second history
    first, second = values[:cut], values[cut:]
    slow = talib("EMA", {"timeperiod": 30}, CANDLES[:400])
    assert_equal({v.time: dict(v.values) for v in first}, slow)
    assert_equal({v.time: dict(v.values) for v in second}, talib("EMA", {"timeperiod": 5}, CANDLES))


def test_invalid_colliding_and_repeated_changes_change_nothing(caplog: pytest.LogCaptureFixture) -> None:
    history = ListHistory()
    step = IndicatorStep(CONFIG, history)
    changes = {
        100: [change("add", "mine", "SMA", timeperiod=20)],
        150: [
            change("load", "mine", "SMA", timeperiod=20),  # already running
            change("add", "mine", "SMA", timeperiod=50),  # the label is taken
            change("add", "ema_9", "SMA", timeperiod=20),  # a configured label
            change("add", "bad", "RSI", timeperiod=0),  # below TA-Lib's minimum
            change("add", "odd", "NOPE"),  # not in the registry
            IndicatorChange(2, "add", "okx", "XRP-ETH", "1m", "other", {"indicator": "SMA", "label": "x"}),
            change("remove", "never"),  # not there
        ],
    }
    with caplog.at_level(logging.WARNING, logger="flows.indicators"):
        _, out = run(step, CANDLES, changes, history)
    expected_log = ["a configured indicator's", "timeperiod", "indicator", "labelled 'x'"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(expected_log)
    assert all(part in message for part, message in zip(expected_log, messages, strict=True))
    other = ListHistory()
    _, alone = run(IndicatorStep(CONFIG, other), CANDLES, {100: changes[100]}, other)
    assert out == alone
    assert {o.indicator for o in out if isinstance(o, IndicatorValue)} == {"ema_9", "mine"}


@pytest.mark.parametrize("load_first", [True, False], ids=["load-then-candles", "candles-then-load"])
def test_a_restart_continues_exactly_as_an_uninterrupted_run(
    pg_url: str, tmp_path: Path, load_first: bool
) -> None:
    added, restart = 250, 600
    entry = change("add", "mine", "STOCH", fastk_period=9)
    first = ListHistory()
    _, uninterrupted = run(IndicatorStep(CONFIG, first), CANDLES, {added: [entry]}, first)
    # the first run stored candles up to the restart (and, when the load comes after three candles, the
    # flow has stored those three too)
    migrate(pg_url, "off")
    writer = DatabaseWriter(pg_url, spool_dir=tmp_path / "spool")
    # (trade ids as the table requires of a traded candle; the klines carry none, nothing reads them)
    stored = [
        replace(c, first_trade_id=i, last_trade_id=i) if c.trade_count else c for i, c in enumerate(CANDLES)
    ]
    writer.write(stored[: restart if load_first else restart + 3])
    writer.close()
    loaded = change("load", "mine", "STOCH", fastk_period=9)
    step = IndicatorStep(CONFIG, StoredHistory(pg_url))
    changes = {0: [loaded]} if load_first else {3: [loaded]}
    _, resumed = run(step, CANDLES[restart:], changes)
    # the restart's history values repeat stored ones (written again, nothing changes); live ones continue
    assert of("mine", resumed) == of("mine", uninterrupted)
    later = CANDLES[restart - 1].close_time
    others = [o for o in uninterrupted if o.time > later and getattr(o, "indicator", None) != "mine"]
    assert [o for o in resumed if getattr(o, "indicator", None) != "mine"] == others


@pytest.mark.parametrize("workers", [1, 2])
def test_in_a_dataflow_the_changes_reach_their_series_in_any_interleaving(workers: int) -> None:
    """Changes merged into the candles as the live flow merges them, keyed by series: wherever the add
    falls among the candles, the values equal TA-Lib's over the whole series (the history covers what the
    step had processed)."""
    history = ListHistory()
    history.stored = list(CANDLES)  # stored before the step sees them
    flow = Dataflow("user_indicators")
    candles = op.input("candles", flow, TestingSource(list(CANDLES)))
    changes = op.input("changes", flow, TestingSource([change("add", "mine", "WILLR", timeperiod=9)]))
    out: list[IndicatorOut] = []
    op.output("out", indicator_stream(candles, IndicatorStep(CONFIG, history), changes), TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert_equal(of("mine", sorted(out, key=lambda o: o.time)), talib("WILLR", {"timeperiod": 9}, CANDLES))
