"""Replay recorded tapes through the same dataflow as the live flow.

    REPLAY_TAPES=tests/data/tapes/XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv \\
        python -m bytewax.run flows.replay

Tapes are read in their row (arrival) order, sorted archives and out-of-order recordings alike; the
watermark follows that order as it does live, so trades out of order within the grace are folded in
and those beyond it are late. Writes to the same tables as the live flow (bad rows to ``rejects``) and
exits at the end of the tapes; windows closing after the declared end (``REPLAY_END``, default: the
tapes' latest trade time) are incomplete and not emitted. A file that is not a tape stops it at the
start with one line naming the file and the problem.
"""

from __future__ import annotations

import sys

from bytewax.dataflow import Dataflow

from configs.indicators import IndicatorsConfig
from configs.settings import Settings
from connectors.replay import TapeSource
from connectors.tape import TapeError
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from flows.runtime import production_sinks, settings_or_exit


def tape_source(settings: Settings) -> TapeSource:
    """The replay's source over ``REPLAY_TAPES``; raises ``TapeError`` on a file that is not a tape."""
    if not settings.replay_tapes:
        raise SystemExit("REPLAY_TAPES is empty: name one or more OKX archive CSV tapes (comma-separated)")
    return TapeSource(settings.replay_tapes, until=settings.replay_end)


def replay_flow(
    settings: Settings,
    sinks: FlowSinks,
    indicators: IndicatorsConfig | None = None,
    source: TapeSource | None = None,
) -> Dataflow:
    source = source or tape_source(settings)
    config = CandleConfig(
        grace=settings.candle_grace,
        emit_flat=settings.emit_flat_candles,
        clock="event",
        ends=source.ends,
        contract_values=settings.contract_values,
    )
    return build_flow("replay", source, config, sinks, indicators)


def __getattr__(name: str) -> Dataflow:
    """``flow`` is built on first access (by ``bytewax.run``), so importing this module has no effects.
    The tapes are checked before any database is started."""
    if name != "flow":
        raise AttributeError(name)
    settings, indicators = settings_or_exit()
    try:
        source = tape_source(settings)
    except TapeError as error:
        print(f"cannot replay: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return replay_flow(settings, production_sinks(settings), indicators, source)
