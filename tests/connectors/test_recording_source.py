"""Recorded sessions, real: the live source against the OKX simulator with drops, reorders, duplicates,
malformed frames, poison and poisoned REST answers, recorded and replayed through Bytewax: the same
items, in order.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.okx.events import ConnectionHealth, Gap
from connectors.okx.recording import SessionRecording
from connectors.okx.session import SessionSource, read_session
from connectors.okx.source import OkxItem, OkxTradesSource
from market.types import Rejected, Trade
from tests.connectors.recording_kit import replayed
from tests.connectors.source_kit import BTC_ROWS, FAST, simulator

# ------------------------------------------------------------------------------------ the real source


def test_the_live_source_against_a_hostile_simulator_replays_item_for_item(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, last = BTC_ROWS[0].trade_id, BTC_ROWS[5000].trade_id
    faults = [
        "--drop-every-seconds",
        "1",
        "--reorder-every",
        "7",
        "--duplicate-every",
        "11",
        "--malformed-every",
        "97",
        "--poison-every",
        "89",
        "--poison",
        "huge-price",
        "--poison",
        "foreign",
        "--rest-poison",
        "id",
    ]
    recording = SessionRecording(tmp_path / "sessions", rotate_bytes=32 * 1024, flush_seconds=0.2)
    with simulator(tmp_path, "--rebase-now", "--speed", "60", *faults) as sim:
        source = OkxTradesSource(
            sim.ws,
            sim.rest,
            ["BTC-USDT"],
            start_after={"BTC-USDT": first - 1},
            end_trade_ids={"BTC-USDT": last},
            recording=recording,
            **FAST,
        )
        flow = Dataflow("okx_recorded")
        out: list[OkxItem] = []
        op.output("out", op.input("okx", flow, source), TestingSink(out))
        run_main(flow)
    live = [item for item in out if not isinstance(item, ConnectionHealth)]
    assert [t.trade_id for t in live if isinstance(t, Trade)][-1] == last
    assert {type(item).__name__ for item in live} == {"Trade", "Gap", "FeedState", "Rejected"}
    assert {g.reason for g in live if isinstance(g, Gap)} >= {"reconnect"}
    assert {r.source for r in live if isinstance(r, Rejected)} == {"okx-ws", "okx-rest"}
    directory = tmp_path / "sessions" / recording.session
    assert len(list(directory.iterdir())) >= 2  # rotated

    flow = Dataflow("okx_replayed")
    again: list[object] = []
    op.output("out", op.input("session", flow, SessionSource([directory])), TestingSink(again))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_main(flow)
    assert again == live
    assert not caplog.records  # the recording was closed: read whole


def test_a_stopped_source_records_how_many_items_the_dataflow_took(tmp_path: Path) -> None:
    recording = SessionRecording(tmp_path / "sessions", flush_seconds=0.2)
    stop = threading.Event()
    with simulator(tmp_path, "--rebase-now", "--speed", "20", "--drop-every-seconds", "1") as sim:
        source = OkxTradesSource(
            sim.ws,
            sim.rest,
            ["BTC-USDT"],
            start_after={"BTC-USDT": BTC_ROWS[0].trade_id - 1},
            recording=recording,
            stop=stop,
            **FAST,
        )
        (key,) = source.list_parts()
        part = source.build_part("okx", key, None)
        taken: list[object] = []
        deadline = time.monotonic() + 4
        try:
            while True:
                if time.monotonic() > deadline:
                    stop.set()
                taken.extend(part.next_batch())
                time.sleep(0.01)
        except StopIteration:
            pass
        finally:
            part.close()
    live = [item for item in taken if not isinstance(item, ConnectionHealth)]
    assert sum(isinstance(item, Trade) for item in live) > 100
    session = tmp_path / "sessions" / recording.session
    (part_read,) = read_session([session])
    assert part_read.taken == len(live)
    assert replayed([session]) == live
    shutil.rmtree(session)
