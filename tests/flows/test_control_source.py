"""The control source against a real PostgreSQL: the current state at start, then every change once and
in order (oracle: the ``control_log`` table itself), nothing read twice, errors logged once, the input
ends on the stop event."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from configs.bots import parse_bot_config
from configs.indicators import IndicatorEntry
from connectors.control_store import ControlStore
from flows.control import ControlSource, _ControlPartition
from market.control import BotChange, ControlChange, IndicatorChange
from sql.migrate import migrate

INTERVAL = timedelta(milliseconds=20)


def config(name: str) -> dict[str, object]:
    return {"name": name, "symbol": "BTC-USDT", "timeframe": "1m", "strategy": "ema_crossover"}


@pytest.fixture
def parts() -> Iterator[list[_ControlPartition]]:
    """The partitions a test builds, closed (with their stores' connections) afterwards."""
    built: list[_ControlPartition] = []
    yield built
    for part in built:
        part.close()


def partition(
    parts: list[_ControlPartition], store: ControlStore, stop: threading.Event | None = None
) -> _ControlPartition:
    part = ControlSource(store, stop, interval=INTERVAL).build_part("control", "control", None)
    parts.append(part)
    return part


def logged_ids(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT change_id FROM control_log ORDER BY change_id")]


def take(part: _ControlPartition, count: int) -> list[ControlChange]:
    """What the partition hands the dataflow until ``count`` changes came (waiting up to 30 s), then
    nothing more over two further reads of the database."""
    taken: list[ControlChange] = []
    deadline = time.monotonic() + 30
    while len(taken) < count:
        assert time.monotonic() < deadline, f"only {taken} came"
        taken += part.next_batch()
        time.sleep(0.01)
    polls = part.polls
    while part.polls < polls + 2:
        time.sleep(0.01)
    assert part.next_batch() == []  # nothing read twice
    return taken


def test_the_state_at_start_then_each_change_once_in_order(
    pg_url: str, parts: list[_ControlPartition], request: pytest.FixtureRequest
) -> None:
    migrate(pg_url)
    store = ControlStore(pg_url)
    request.addfinalizer(store.close)
    store.add_bot(parse_bot_config(config("one")))
    store.start_bot("one")
    store.add_indicator(
        "okx", "BTC-USDT", "1m", IndicatorEntry(indicator="SMA", label="sma_5", params={"timeperiod": 5})
    )
    part = partition(parts, ControlStore(pg_url))

    loads = take(part, 2)
    assert {(type(c), c.action) for c in loads} == {(BotChange, "load"), (IndicatorChange, "load")}
    (bot,) = [c for c in loads if type(c) is BotChange]
    assert (bot.name, bot.state, bot.config["strategy"]) == ("one", "running", "ema_crossover")

    store.add_bot(parse_bot_config(config("two")))
    store.pause_bot("one")
    store.remove_indicator("okx", "BTC-USDT", "1m", "sma_5")
    store.stop_bot("two")
    seen = take(part, 4)
    assert [c.change_id for c in seen] == logged_ids(pg_url)[3:]
    assert [(c.action, getattr(c, "state", None)) for c in seen] == [
        ("add", "created"),
        ("pause", "paused"),
        ("remove", None),
        ("stop", "stopped"),
    ]


def test_a_database_error_is_logged_once_and_the_read_retried(
    pg_url: str, parts: list[_ControlPartition], caplog: pytest.LogCaptureFixture
) -> None:
    migrate(pg_url)
    missing = ControlStore(pg_url.replace("/t_", "/missing_"), connect_timeout=2)
    with caplog.at_level(logging.WARNING, logger="flows.control"):
        part = partition(parts, missing)
        while part.polls < 3:
            assert part.next_batch() == []
            time.sleep(0.01)
    assert len([r for r in caplog.records if "cannot be read" in r.message]) == 1
    with ControlStore(pg_url) as writer:
        writer.add_bot(parse_bot_config(config("late")))
    part.store = ControlStore(pg_url)  # the database answers again
    missing.close()
    (load,) = take(part, 1)
    assert (load.action, load.name) == ("load", "late")  # type: ignore[union-attr]


class _Stuck:
    """A database that does not answer (until released)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def snapshot(self) -> tuple[int, list[ControlChange]]:
        self.release.wait()
        return 0, []

    def changes_since(self, cursor: int, limit: int = 500) -> list[ControlChange]:
        return []


def test_a_database_that_does_not_answer_never_holds_the_worker(parts: list[_ControlPartition]) -> None:
    stuck = _Stuck()
    part = ControlSource(stuck, interval=INTERVAL).build_part("control", "control", None)
    assert isinstance(part, _ControlPartition)
    assert part.next_batch() == [] and part.next_batch() == []  # returned while the read hangs
    stuck.release.set()
    parts.append(part)


def test_the_input_ends_when_the_flow_stops(pg_url: str, parts: list[_ControlPartition]) -> None:
    migrate(pg_url)
    stop = threading.Event()
    part = partition(parts, ControlStore(pg_url), stop)
    take(part, 0)
    stop.set()
    with pytest.raises(StopIteration):
        part.next_batch()
