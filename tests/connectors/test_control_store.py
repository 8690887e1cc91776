"""The control store on a real PostgreSQL: bots' state rules, user indicators, the change log a poller
follows (never skipping an id, even with writers racing) and the snapshot a restarting flow loads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from configs.bots import BotConfig, parse_bot_config
from configs.indicators import IndicatorEntry
from connectors.control_store import ControlError, ControlStore
from market.control import BotChange, ControlChange, IndicatorChange


def config(name: str, **changes: Any) -> BotConfig:
    base: dict[str, Any] = {
        "name": name,
        "symbol": "BTC-USDT",
        "timeframe": "1m",
        "strategy": "ema_crossover",
    }
    return parse_bot_config(base | changes)


@pytest.fixture
def store(migrated: str) -> Any:
    with ControlStore(migrated) as control:
        yield control


def log_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT change_id, kind, action, target, payload->>'state' FROM control_log ORDER BY change_id"
        ).fetchall()


def test_add_bot_stores_config_and_logs_one_change(store: ControlStore, migrated: str) -> None:
    record = store.add_bot(config("alpha", params={"fast": 3, "slow": 8}, close_on_stop=True))
    assert (record.name, record.state, record.symbol, record.timeframe) == (
        "alpha",
        "created",
        "BTC-USDT",
        "1m",
    )
    assert record.config == config("alpha", params={"fast": 3, "slow": 8}, close_on_stop=True)
    assert store.bot("alpha") == record
    assert store.bot("nobody") is None
    with psycopg.connect(migrated) as conn:
        stored = conn.execute("SELECT config FROM bots WHERE name = 'alpha'").fetchone()
    assert stored is not None and stored[0]["params"] == {"fast": 3, "slow": 8}
    assert log_rows(migrated) == [(1, "bot", "add", "alpha", "created")]
    (change,) = store.changes_since(0)
    assert change == BotChange(
        1,
        "add",
        record.bot_id,
        "alpha",
        "okx",
        "BTC-USDT",
        "1m",
        "created",
        record.config.model_dump(mode="json"),
    )


def test_duplicate_name_is_refused_and_logs_nothing(store: ControlStore, migrated: str) -> None:
    store.add_bot(config("alpha"))
    with pytest.raises(ControlError, match="a bot named 'alpha' already exists"):
        store.add_bot(config("alpha", timeframe="5m"))
    assert [row[0] for row in log_rows(migrated)] == [1]


# Every path of actions from 'created', and what each action must do: the allowed moves, written out.
ALLOWED = {
    ("created", "start"): "running",
    ("created", "stop"): "stopped",
    ("running", "pause"): "paused",
    ("running", "stop"): "stopped",
    ("paused", "start"): "running",
    ("paused", "stop"): "stopped",
}
REACH = {"created": [], "running": ["start"], "paused": ["start", "pause"], "stopped": ["stop"]}


@pytest.mark.parametrize("state", list(REACH))
@pytest.mark.parametrize("action", ["start", "pause", "stop"])
def test_state_transitions(store: ControlStore, migrated: str, state: str, action: str) -> None:
    store.add_bot(config("b1"))
    for step in REACH[state]:
        getattr(store, f"{step}_bot")("b1")
    before = store.bot("b1")
    assert before is not None and before.state == state
    logged = len(log_rows(migrated))
    if (state, action) in ALLOWED:
        after = getattr(store, f"{action}_bot")("b1")
        assert after.state == ALLOWED[state, action] == store.bot("b1").state  # type: ignore[union-attr]
        assert after.updated_at >= before.updated_at
        assert log_rows(migrated)[-1][2:] == (action, "b1", ALLOWED[state, action])
    else:
        with pytest.raises(ControlError, match=f"bot 'b1' is {state}: only a .* bot can be"):
            getattr(store, f"{action}_bot")("b1")
        assert store.bot("b1") == before
        assert len(log_rows(migrated)) == logged


@pytest.mark.parametrize("action", ["start", "pause", "stop", "remove"])
def test_unknown_bot(store: ControlStore, action: str) -> None:
    with pytest.raises(ControlError, match="no bot named 'ghost'"):
        getattr(store, f"{action}_bot")("ghost")


def test_remove_takes_the_bots_rows_with_it(store: ControlStore, migrated: str) -> None:
    keep, gone = store.add_bot(config("keep")), store.add_bot(config("gone"))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(migrated) as conn:  # what the flow writes, as the owner
        for bot_id in (keep.bot_id, gone.bot_id):
            conn.execute("INSERT INTO bot_fills VALUES (%s, %s, 0, %s, 'buy', 1, 1, 0)", (bot_id, now, now))
            conn.execute("INSERT INTO bot_equity VALUES (%s, %s, 1, 1, 1, 1)", (bot_id, now))
            conn.execute(
                "INSERT INTO bot_state (bot_id, last_close, runner) VALUES (%s, %s, 'x')", (bot_id, now)
            )
    store.remove_bot("gone")
    assert [b.name for b in store.bots()] == ["keep"]
    with psycopg.connect(migrated) as conn:
        for table in ("bot_fills", "bot_equity", "bot_state"):
            ids = conn.execute(f"SELECT bot_id FROM {table}").fetchall()
            assert ids == [(keep.bot_id,)], table
    change = store.changes_since(2)[-1]
    assert isinstance(change, BotChange)
    assert (change.action, change.bot_id, change.name) == ("remove", gone.bot_id, "gone")


def entry(indicator: str, label: str | None = None, **params: int | float) -> IndicatorEntry:
    return IndicatorEntry(indicator=indicator, label=label, params=params)


def test_user_indicators(store: ControlStore) -> None:
    first = store.add_indicator("okx", "BTC-USDT", "1m", entry("EMA", timeperiod=5))
    assert (first.label, first.entry.label, first.entry.params) == ("ema", "ema", {"timeperiod": 5})
    store.add_indicator("okx", "BTC-USDT", "1m", entry("EMA", "ema_slow", timeperiod=50))
    store.add_indicator("okx", "ETH-USDT", "1m", entry("RSI"))
    store.add_indicator("okx", "BTC-USDT", "5m", entry("EMA", timeperiod=5))
    with pytest.raises(ControlError, match="already has a user indicator labelled 'ema'"):
        store.add_indicator("okx", "BTC-USDT", "1m", entry("SMA", "ema"))
    with pytest.raises(ControlError, match="label 'rsi' is already configured on ETH-USDT 5m"):
        store.add_indicator("okx", "ETH-USDT", "5m", entry("RSI"), reserved={"rsi", "macd"})
    with pytest.raises(ControlError, match="unknown timeframe '2m'"):
        store.add_indicator("okx", "ETH-USDT", "2m", entry("RSI"))
    series = store.indicators("okx", "BTC-USDT", "1m")
    assert [(i.label, i.entry.indicator) for i in series] == [("ema", "EMA"), ("ema_slow", "EMA")]
    assert len(store.indicators()) == 4
    assert [i.symbol for i in store.indicators(symbol="ETH-USDT")] == ["ETH-USDT"]
    assert [i.timeframe for i in store.indicators(timeframe="5m")] == ["5m"]
    store.remove_indicator("okx", "BTC-USDT", "1m", "ema")
    assert [i.label for i in store.indicators("okx", "BTC-USDT", "1m")] == ["ema_slow"]
    with pytest.raises(ControlError, match="has no user indicator labelled 'ema'"):
        store.remove_indicator("okx", "BTC-USDT", "1m", "ema")
    changes = store.changes_since(0)
    assert [(type(c).__name__, c.action) for c in changes] == [("IndicatorChange", "add")] * 4 + [
        ("IndicatorChange", "remove")
    ]
    assert changes[0] == IndicatorChange(
        1,
        "add",
        "okx",
        "BTC-USDT",
        "1m",
        "ema",
        {"indicator": "EMA", "label": "ema", "params": {"timeperiod": 5}},
    )
    assert changes[-1] == IndicatorChange(5, "remove", "okx", "BTC-USDT", "1m", "ema", None)


def test_snapshot_is_the_current_state_and_the_cursor(store: ControlStore) -> None:
    assert store.snapshot() == (0, [])
    store.add_bot(config("a"))
    store.add_bot(config("b", timeframe="5m"))
    store.add_bot(config("c"))
    store.start_bot("a")
    store.start_bot("b")
    store.pause_bot("b")
    store.remove_bot("c")
    store.add_indicator("okx", "BTC-USDT", "1m", entry("EMA", timeperiod=5))
    store.add_indicator("okx", "BTC-USDT", "1m", entry("RSI"))
    store.remove_indicator("okx", "BTC-USDT", "1m", "ema")
    cursor, loads = store.snapshot()
    assert cursor == 10
    bots = {c.name: c for c in loads if isinstance(c, BotChange)}
    assert {name: c.state for name, c in bots.items()} == {"a": "running", "b": "paused"}
    assert bots["b"].timeframe == "5m" and bots["b"].config == config("b", timeframe="5m").model_dump(
        mode="json"
    )
    indicators = [c for c in loads if isinstance(c, IndicatorChange)]
    assert [(c.label, c.entry) for c in indicators] == [
        ("rsi", {"indicator": "RSI", "label": "rsi", "params": {}})
    ]
    assert {c.action for c in loads} == {"load"} and {c.change_id for c in loads} == {cursor}
    assert store.changes_since(cursor) == []
    store.stop_bot("a")
    (after,) = store.changes_since(cursor)
    assert isinstance(after, BotChange) and (after.change_id, after.action, after.state) == (
        11,
        "stop",
        "stopped",
    )


def test_changes_since_pages_in_order(store: ControlStore) -> None:
    for n in range(7):
        store.add_bot(config(f"bot{n}"))
    ids: list[int] = []
    cursor = 0
    while page := store.changes_since(cursor, limit=3):
        assert len(page) <= 3
        ids += [c.change_id for c in page]
        cursor = page[-1].change_id
    assert ids == list(range(1, 8))


def test_concurrent_writers_never_make_a_poller_skip_an_id(migrated: str) -> None:
    """Writers on their own connections race; a poller that always resumes after the last id it saw
    must still see every id (a writer that drew a lower id and committed later would be skipped)."""
    writers, rounds = 6, 12
    done = threading.Event()
    failures: list[BaseException] = []
    seen: list[int] = []

    def write(n: int) -> None:
        try:
            with ControlStore(migrated) as control:
                for r in range(rounds):
                    name = f"w{n}-{r}"
                    control.add_bot(config(name))
                    control.start_bot(name)
                    control.add_indicator("okx", f"W{n}-USDT", "1m", entry("EMA", f"e{r}", timeperiod=3))
                    control.pause_bot(name)
                    if r % 3 == 0:
                        control.remove_bot(name)
                        control.remove_indicator("okx", f"W{n}-USDT", "1m", f"e{r}")
        except BaseException as error:  # reported by the test's thread
            failures.append(error)

    def poll() -> None:
        with ControlStore(migrated) as control:
            cursor = 0
            while True:
                finished = done.is_set()  # read before polling: a last poll after every writer is done
                changes: list[ControlChange] = control.changes_since(cursor, limit=50)
                seen.extend(c.change_id for c in changes)
                cursor = changes[-1].change_id if changes else cursor
                if finished and not changes:
                    return

    poller = threading.Thread(target=poll)
    poller.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    poller.join()
    assert failures == []
    with psycopg.connect(migrated) as conn:
        stored = [row[0] for row in conn.execute("SELECT change_id FROM control_log ORDER BY change_id")]
    assert len(stored) == writers * rounds * 4 + writers * 4 * 2  # 4 per round, 2 more every third round
    assert seen == stored


def test_store_connects_again_after_losing_its_connection(store: ControlStore, migrated: str) -> None:
    store.add_bot(config("a"))
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(psycopg.OperationalError):
        store.bots()
    assert [b.name for b in store.bots()] == ["a"]


def test_a_removed_label_comes_back_only_with_its_parameters(store: ControlStore) -> None:
    """Stored indicator values are final, so a label may not return with other parameters (its chart would
    mix both sets); the same parameters, or the same parameters on another series, are fine."""
    store.add_indicator("okx", "BTC-USDT", "1m", entry("EMA", "ema_a", timeperiod=5))
    store.remove_indicator("okx", "BTC-USDT", "1m", "ema_a")
    with pytest.raises(ControlError, match="before with other parameters"):
        store.add_indicator("okx", "BTC-USDT", "1m", entry("EMA", "ema_a", timeperiod=6))
    assert store.indicators("okx", "BTC-USDT", "1m") == []
    store.add_indicator("okx", "BTC-USDT", "5m", entry("EMA", "ema_a", timeperiod=6))
    again = store.add_indicator("okx", "BTC-USDT", "1m", entry("EMA", "ema_a", timeperiod=5))
    assert again.entry.params == {"timeperiod": 5}
