"""A small flow for ``python -m bytewax.run tests.flows.api_flow`` with Bytewax's dataflow API on
(tests/flows/test_bytewax_api.py): it passes ``API_FLOW_TRADES`` trades through a step that counts
them with the project's metrics, then waits until the file ``API_FLOW_RELEASE`` exists, so a test can
scrape Bytewax's endpoint while the flow runs."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import TestingSink

from connectors.metrics import count_source_batch
from market.types import Trade

SYMBOL = "API-TEST"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class _HeldPartition(StatelessSourcePartition[Trade]):
    def __init__(self, trades: int, release: Path) -> None:
        self._pending = [
            Trade("okx", SYMBOL, i, Decimal(100), Decimal(1), "buy", T0 + timedelta(seconds=i))
            for i in range(1, trades + 1)
        ]
        self._release = release

    def next_batch(self) -> list[Trade]:
        batch, self._pending = self._pending, []
        if not batch and self._release.exists():
            raise StopIteration
        return batch

    def next_awake(self) -> datetime | None:
        return None if self._pending else datetime.now(UTC) + timedelta(milliseconds=50)


class HeldSource(DynamicSource[Trade]):
    """``trades`` trades at once, then nothing until ``release`` exists."""

    def __init__(self, trades: int, release: Path) -> None:
        self.trades = trades
        self.release = release

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _HeldPartition:
        return _HeldPartition(self.trades if worker_index == 0 else 0, self.release)


def _counted(trade: Trade) -> Trade:
    count_source_batch([trade])
    return trade


flow = Dataflow("api")
_trades = op.input(
    "trades", flow, HeldSource(int(os.environ["API_FLOW_TRADES"]), Path(os.environ["API_FLOW_RELEASE"]))
)
op.output("out", op.map("count", _trades, _counted), TestingSink([]))
