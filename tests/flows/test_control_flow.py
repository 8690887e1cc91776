"""User indicator changes through the running graph (``flows.graph.build_flow`` with a control source),
on 1 and 2 workers: an added indicator reaches its series' indicator step and computes there what the
same indicator configured under another label computes (configured values equal TA-Lib,
tests/flows/test_indicator_flow.py); a series without it is left alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

from configs.indicators import parse_indicator_config
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from market.control import IndicatorChange
from market.types import IndicatorValue
from tests.flows.test_bots_flow import _Gate, _Source, trades

CONFIG = parse_indicator_config(
    {
        "profiles": [
            {
                "timeframes": ["1m", "5m"],
                "indicators": [{"indicator": "SMA", "label": "sma", "params": {"timeperiod": 5}}],
            }
        ]
    }
)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_added_user_indicator_runs_on_its_series_only(workers: int) -> None:
    market = sorted(trades("BTC-USDT", 30, 1) + trades("ETH-USDT", 30, 2), key=lambda t: t.ts_event)
    entry = {"indicator": "SMA", "label": "sma_user", "params": {"timeperiod": 5}}
    changes = [IndicatorChange(1, "add", "okx", "BTC-USDT", "1m", "sma_user", entry)]
    gate = _Gate()
    computed: list[Any] = []
    sinks = FlowSinks(indicators=[TestingSink(computed)])
    config = CandleConfig(grace=timedelta(seconds=2), clock="event")
    flow = build_flow(
        "user", _Source(market, gate, False), config, sinks, CONFIG, control=_Source(changes, gate, True)
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)

    values = [v for v in computed if type(v) is IndicatorValue]
    user = sorted(
        (v.symbol, v.timeframe, v.time, v.values["value"]) for v in values if v.indicator == "sma_user"
    )
    configured = sorted(
        (v.symbol, v.timeframe, v.time, v.values["value"])
        for v in values
        if v.indicator == "sma" and (v.symbol, v.timeframe) == ("BTC-USDT", "1m")
    )
    assert len(user) >= 20 and user == configured
