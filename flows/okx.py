"""The live flow: OKX websocket trades through the same dataflow as a replay.

    python -m bytewax.run flows.okx

Reads ``OKX_WS_URL``/``OKX_REST_URL``/``INSTRUMENTS`` from the settings. Candles close on a wall-clock
advanced watermark: about ``CANDLE_GRACE`` after each minute ends, even when an instrument is quiet.
With ``RECORDING__ENABLED=true`` the source records the session under ``DATA_DIR/sessions`` for
``flows.session`` to replay.
"""

from __future__ import annotations

from datetime import timedelta

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from configs.indicators import IndicatorsConfig
from configs.settings import Settings
from connectors.okx.source import OkxTradesSource
from connectors.resume import StoredEnds
from flows.bots import NO_RESUME, BotResume
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from flows.health import NO_RESTARTS, Restarts
from flows.indicators import History
from flows.session import session_recording


def live_flow(
    settings: Settings,
    sinks: FlowSinks,
    source: Source | None = None,
    indicators: IndicatorsConfig | None = None,
    stored: StoredEnds | None = None,
    history: History | None = None,
    restarts: Restarts = NO_RESTARTS,
    control: Source | None = None,
    bots: BotResume = NO_RESUME,
) -> Dataflow:
    """The live dataflow; ``source`` defaults to OKX's websocket for the configured instruments.
    ``stored``: where each instrument's stored data ends; its candles continue from there, and its
    indicators from ``history`` (the stored candles before). ``control``: the bots' and user
    indicators' changes (``flows.control.ControlSource``), and ``bots`` where the bots resume from."""
    stored = stored or StoredEnds()
    if source is None:
        source = OkxTradesSource(
            settings.okx_ws_url,
            settings.okx_rest_url,
            settings.instruments,
            start_after=stored.last_trades,
            recording=session_recording(settings),
            close_probe=settings.candle_grace,
            **settings.feed.model_dump(),
        )
    config = CandleConfig(
        grace=settings.candle_grace,
        emit_flat=settings.emit_flat_candles,
        clock="wall",
        contract_values=settings.contract_values,
        provisional_every=timedelta(milliseconds=500),
        resume=stored.points,
    )
    return build_flow("okx", source, config, sinks, indicators, history, restarts, control, bots)


def __getattr__(name: str) -> Dataflow:
    """``flow`` is built on first access (by ``bytewax.run``), so importing this module has no effects.
    The run's wiring (settings, database, Redis, stop signal) is the run command's room: the one import of
    ``app`` from ``flows/`` is this lazy one, in each flow module's entry point."""
    if name != "flow":
        raise AttributeError(name)
    from app.entrypoints import live_dataflow

    return live_dataflow()
