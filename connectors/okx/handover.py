"""What one OKX connection does with its sequencer's actions, apart from the socket: the
exchange-neutral :class:`connectors.handover.Handover`."""

from __future__ import annotations

from connectors.handover import Handover

__all__ = ["Handover"]
