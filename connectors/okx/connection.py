"""What one OKX websocket connection is built from: the exchange-neutral pieces of
:mod:`connectors.stream_connection` (its options, OKX's process-wide connect limiter of 3 new
connections per second, the bounded handoff of items to the dataflow)."""

from __future__ import annotations

from connectors.stream_connection import PROCESS_LIMITER, ConnectLimiter, Outbox, StreamOptions

__all__ = ["PROCESS_LIMITER", "ConnectLimiter", "Outbox", "StreamOptions"]
