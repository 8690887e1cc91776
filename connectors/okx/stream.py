"""The async side of the OKX trades source: :class:`connectors.trade_stream.TradeStream` driven by OKX's
:class:`connectors.exchange.ExchangeSpec` (``trades`` subscribed per arg, the text ``ping``, the 64008
notice that asks for a new connection; see docs/okx-connectivity.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from connectors.okx.exchange import SPEC
from connectors.okx.recording import SessionRecorder
from connectors.stream_connection import PROCESS_LIMITER, ConnectLimiter, Outbox, StreamOptions
from connectors.trade_stream import DEFAULT_CLOSE_PROBE, probe_close
from connectors.trade_stream import TradeStream as ExchangeTradeStream
from market.sequencing import Position

__all__ = ["DEFAULT_CLOSE_PROBE", "TradeStream", "probe_close"]


class TradeStream(ExchangeTradeStream):
    """One OKX connection's worth of instruments; ``run`` until cancelled or every end id is reached."""

    def __init__(
        self,
        name: str,
        ws_url: str,
        rest_url: str,
        instruments: Sequence[str],
        options: StreamOptions,
        outbox: Outbox,
        *,
        positions: Mapping[str, Position] | None = None,
        end_ids: Mapping[str, int] | None = None,
        limiter: ConnectLimiter = PROCESS_LIMITER,
        recorder: SessionRecorder | None = None,
        close_probe: timedelta | None = DEFAULT_CLOSE_PROBE,
    ) -> None:
        super().__init__(
            SPEC,
            name,
            ws_url,
            rest_url,
            instruments,
            options,
            outbox,
            positions=positions,
            end_ids=end_ids,
            limiter=limiter,
            recorder=recorder,
            close_probe=close_probe,
        )
