"""Replay recorded tapes through the same dataflow as the live flow.

    REPLAY_TAPES=tests/data/tapes/XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv \\
        python -m bytewax.run flows.replay

Writes to the same tables as the live flow and exits at the end of the tapes; windows closing after
the declared end (``REPLAY_END``, default: the tapes' last trade) are incomplete and not emitted.
"""

from __future__ import annotations

from bytewax.dataflow import Dataflow

from configs.indicators import IndicatorsConfig
from configs.settings import Settings
from connectors.replay import TapeSource, instrument_ends
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from flows.runtime import production_sinks, settings_or_exit


def replay_flow(settings: Settings, sinks: FlowSinks, indicators: IndicatorsConfig | None = None) -> Dataflow:
    if not settings.replay_tapes:
        raise SystemExit("REPLAY_TAPES is empty: name one or more OKX archive CSV tapes (comma-separated)")
    config = CandleConfig(
        grace=settings.candle_grace, emit_flat=settings.emit_flat_candles, clock="event",
        ends=instrument_ends(settings.replay_tapes, settings.replay_end),
        contract_values=settings.contract_values,
    )
    source = TapeSource(settings.replay_tapes, until=settings.replay_end)
    return build_flow("replay", source, config, sinks, indicators)


def __getattr__(name: str) -> Dataflow:
    """``flow`` is built on first access (by ``bytewax.run``), so importing this module has no effects."""
    if name != "flow":
        raise AttributeError(name)
    settings, indicators = settings_or_exit()
    return replay_flow(settings, production_sinks(settings), indicators)
