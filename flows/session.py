"""Replay a recorded live session through the live dataflow, into the same tables.

    SESSION_FILES=.data/sessions/20250101T120000123456Z-4242 python -m bytewax.run flows.session

``SESSION_FILES``: a session's directory under ``DATA_DIR/sessions`` (recorded by the live flow with
``RECORDING__ENABLED=true``), or some of its files, comma-separated. The recorded inputs of each live
partition are fed to a fresh sequencer built as the live one was; its items go through the live graph
with the live clock policy, the feed's recorded receive clock moving the watermark. With the candle
settings recorded in the session, into a database holding what the live one held when the session
began, the rows come out as the live run wrote them (docs/reliability.md, "Recorded sessions").
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from configs.indicators import IndicatorsConfig
from configs.settings import Settings
from connectors.okx.recording import SessionRecording
from connectors.okx.session import SessionSource
from connectors.okx.session_format import SessionError
from connectors.resume import StoredEnds
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from flows.indicators import History

log = logging.getLogger("tcp.flows.session")

SESSION_FILES = "SESSION_FILES"
_US = timedelta(microseconds=1)


def session_recording(settings: Settings) -> SessionRecording | None:
    """Where the live source records its session (``RECORDING__*``), with the candle settings a replay
    needs; None when recording is off."""
    recording = settings.recording
    if not recording.enabled:
        return None
    flow = {
        "candle_grace_us": settings.candle_grace // _US,
        "emit_flat_candles": settings.emit_flat_candles,
        "contract_values": {symbol: str(value) for symbol, value in settings.contract_values.items()},
    }
    return SessionRecording(
        settings.data_dir / "sessions", recording.rotate_mb * 1024 * 1024, recording.keep_files, flow
    )


def recorded_contract_values(recorded: dict[str, Any], settings: Settings) -> dict[str, Decimal]:
    """The contract values the session was recorded with (``settings``' when the recording holds none):
    its candles are built with them and its database sink stores them."""
    kept = recorded.get("contract_values")
    return dict(settings.contract_values) if kept is None else {s: Decimal(v) for s, v in kept.items()}


def candle_config(recorded: dict[str, Any], settings: Settings, stored: StoredEnds) -> CandleConfig:
    """The live flow's candle configuration, with the settings the session was recorded with (those of
    ``settings`` where the recording holds none)."""
    grace = timedelta(microseconds=recorded.get("candle_grace_us", settings.candle_grace // _US))
    emit_flat = bool(recorded.get("emit_flat_candles", settings.emit_flat_candles))
    values = recorded_contract_values(recorded, settings)
    if (grace, emit_flat, values) != (
        settings.candle_grace,
        settings.emit_flat_candles,
        settings.contract_values,
    ):
        log.info(
            "replaying with the recorded candle settings: grace %s, flat candles %s, contract values %s",
            grace,
            emit_flat,
            values,
        )
    return CandleConfig(
        grace=grace,
        emit_flat=emit_flat,
        clock="wall",
        contract_values=values,
        provisional_every=timedelta(milliseconds=500),
        resume=stored.points,
    )


def session_flow(
    settings: Settings,
    sinks: FlowSinks,
    source: SessionSource,
    indicators: IndicatorsConfig | None = None,
    stored: StoredEnds | None = None,
    history: History | None = None,
) -> Dataflow:
    """The live graph over a recorded session. ``stored``/``history``: as for the live flow, where the
    stored data of each instrument ends (what the live run started from)."""
    config = candle_config(dict(source.header.flow), settings, stored or StoredEnds())
    return build_flow("session", source, config, sinks, indicators, history)


def session_paths(paths: list[Path]) -> list[Path]:
    """The session's paths, or a clear error when none is named."""
    if not paths:
        raise SessionError(
            f"{SESSION_FILES} is empty: name a recorded session's directory "
            "(DATA_DIR/sessions/<session>) or its files, comma-separated"
        )
    return paths


def __getattr__(name: str) -> Dataflow:
    """``flow`` is built on first access (by ``bytewax.run``), so importing this module has no effects.
    The run's wiring (settings, database, sinks) is the run command's room (app/entrypoints.py)."""
    if name != "flow":
        raise AttributeError(name)
    from app.entrypoints import session_dataflow

    return session_dataflow()
