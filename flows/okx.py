"""The live flow: websocket trades of every configured exchange through the same dataflow as a replay.

    python -m bytewax.run flows.okx

It follows every exchange ``INSTRUMENTS`` selects (``okx:BTC-USDT,binance:BTC-USDT``; a bare entry is
OKX's), each through its own websocket and REST endpoints (``OKX_WS_URL``/``OKX_REST_URL``,
``BINANCE_WS_URL``/``BINANCE_REST_URL``) in one source (:class:`connectors.trades_source.TradesSource`);
the module keeps its name, the one the run command and users start. Candles close on a wall-clock
advanced watermark: about ``CANDLE_GRACE`` after each minute ends, even when an instrument is quiet.
With ``RECORDING__ENABLED=true`` the source records the OKX connections' session under
``DATA_DIR/sessions`` for ``flows.session`` to replay.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from configs.indicators import IndicatorsConfig
from configs.settings import Settings
from connectors.exchange import exchange
from connectors.resume import StoredEnds
from connectors.trades_source import TradesSource, Venue
from flows.bots import NO_RESUME, BotResume
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from flows.health import NO_RESTARTS, Restarts
from flows.indicators import History
from flows.session import session_recording


def live_source(settings: Settings, stored: StoredEnds, stop: threading.Event | None = None) -> TradesSource:
    """The websockets of every exchange the settings follow, each instrument starting after its last
    stored trade; ``stop``: ends the inputs (a graceful shutdown)."""
    venues = [
        Venue(
            exchange(name),
            getattr(settings, f"{name}_ws_url"),
            getattr(settings, f"{name}_rest_url"),
            instruments,
            stored.last_trades_of(name),
        )
        for name, instruments in settings.followed().items()
    ]
    return TradesSource(
        venues,
        stop=stop,
        recording=session_recording(settings),
        close_probe=settings.candle_grace,
        **settings.feed.model_dump(),
    )


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
    """The live dataflow; ``source`` defaults to :func:`live_source` (every configured exchange).
    ``stored``: where each instrument's stored data ends; its candles continue from there, and its
    indicators from ``history`` (the stored candles before). ``control``: the bots' and user
    indicators' changes (``flows.control.ControlSource``), and ``bots`` where the bots resume from."""
    stored = stored or StoredEnds()
    if source is None:
        source = live_source(settings, stored)
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
