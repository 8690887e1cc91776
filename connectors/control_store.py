"""The control plane's store: paper-trading bots and user indicators in the database, and the change log
the running flow follows (docs/control.md, docs/bots.md).

Every change to ``bots`` or ``user_indicators`` is written in the same transaction as one ``control_log``
row, and every writer first takes one transaction-scoped advisory lock (:data:`WRITE_LOCK`) before it
draws a change id: writers run one at a time, so change ids commit in id order and a reader that has seen
id N has seen every id below N (rolled-back writes only leave gaps). The lock is advisory rather than a
table lock so that the narrow ``tcp_control`` role, which may only insert into ``control_log``, can take
it (``LOCK TABLE ... IN EXCLUSIVE MODE`` needs UPDATE or DELETE on the table). Readers take no lock.

``snapshot`` reads the current bots and user indicators and the newest change id in one REPEATABLE READ
transaction; ``changes_since`` then gives the changes after that id, in order. Together: every change
once, in order, and a restart starts again from a snapshot (so nothing is lost or applied twice).

A store keeps one connection, used by one call at a time (a lock: the dashboard's sessions share one
store); a call that loses it raises ``psycopg.OperationalError`` and the next call connects again.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from configs.bots import BotConfig
from configs.indicators import IndicatorEntry
from market.control import BotChange, BotState, ControlChange, IndicatorChange
from market.timeframes import TIMEFRAMES

WRITE_LOCK = 0x7463705F63746C  # pg_advisory_xact_lock key of the control writers ("tcp_ctl")

TRANSITIONS: dict[str, tuple[frozenset[str], BotState]] = {
    "start": (frozenset({"created", "paused"}), "running"),
    "pause": (frozenset({"running"}), "paused"),
    "stop": (frozenset({"created", "running", "paused"}), "stopped"),
}
"""Each state change: the states it may start from, the state it leads to. ``stopped`` is final."""

_BOT_COLUMNS = "bot_id, name, exchange, symbol, timeframe, state, config, created_at, updated_at"
_INDICATOR_COLUMNS = "indicator_id, exchange, symbol, timeframe, label, entry, created_at"
_LOG = """
INSERT INTO control_log (kind, action, exchange, symbol, timeframe, target, payload)
VALUES (%(kind)s, %(action)s, %(exchange)s, %(symbol)s, %(timeframe)s, %(target)s, %(payload)s)
"""
_INSERT_BOT = f"""
INSERT INTO bots (name, exchange, symbol, timeframe, config)
VALUES (%(name)s, %(exchange)s, %(symbol)s, %(timeframe)s, %(config)s)
RETURNING {_BOT_COLUMNS}
"""
_BOT = f"SELECT {_BOT_COLUMNS} FROM bots WHERE name = %(name)s"
_BOTS = f"SELECT {_BOT_COLUMNS} FROM bots ORDER BY name"
_SET_STATE = f"""
UPDATE bots SET state = %(state)s, updated_at = now() WHERE bot_id = %(bot_id)s RETURNING {_BOT_COLUMNS}
"""
_DELETE_BOT = f"DELETE FROM bots WHERE name = %(name)s RETURNING {_BOT_COLUMNS}"
_INSERT_INDICATOR = f"""
INSERT INTO user_indicators (exchange, symbol, timeframe, label, entry)
VALUES (%(exchange)s, %(symbol)s, %(timeframe)s, %(label)s, %(entry)s)
ON CONFLICT (exchange, symbol, timeframe, label) DO NOTHING
RETURNING {_INDICATOR_COLUMNS}
"""
_EARLIER_ENTRY = """
SELECT payload -> 'entry' AS entry FROM control_log
WHERE kind = 'indicator' AND action = 'add' AND exchange = %(exchange)s AND symbol = %(symbol)s
  AND timeframe = %(timeframe)s AND target = %(label)s
ORDER BY change_id DESC LIMIT 1
"""
_DELETE_INDICATOR = f"""
DELETE FROM user_indicators
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s AND label = %(label)s
RETURNING {_INDICATOR_COLUMNS}
"""
_INDICATORS = f"""
SELECT {_INDICATOR_COLUMNS} FROM user_indicators
WHERE (%(exchange)s::text IS NULL OR exchange = %(exchange)s)
  AND (%(symbol)s::text IS NULL OR symbol = %(symbol)s)
  AND (%(timeframe)s::text IS NULL OR timeframe = %(timeframe)s)
ORDER BY exchange, symbol, timeframe, indicator_id
"""
_CURSOR = "SELECT coalesce(max(change_id), 0) AS cursor FROM control_log"
_CHANGES = """
SELECT change_id, kind, action, exchange, symbol, timeframe, target, payload FROM control_log
WHERE change_id > %(cursor)s ORDER BY change_id LIMIT %(limit)s
"""


class ControlError(Exception):
    """A control action that cannot be done as asked; the message says why in one line."""


@dataclass(frozen=True)
class BotRecord:
    """A stored bot: its configuration and state."""

    bot_id: int
    name: str
    exchange: str
    symbol: str
    timeframe: str
    state: BotState
    config: BotConfig
    created_at: datetime
    updated_at: datetime

    def change(self, change_id: int, action: str) -> BotChange:
        """The bot as the flow receives it after ``action``."""
        return BotChange(
            change_id,
            cast(Any, action),
            self.bot_id,
            self.name,
            self.exchange,
            self.symbol,
            self.timeframe,
            self.state,
            self.config.model_dump(mode="json"),
        )


@dataclass(frozen=True)
class UserIndicator:
    """A stored user indicator of one series; ``entry.label`` is always set (it equals ``label``)."""

    indicator_id: int
    exchange: str
    symbol: str
    timeframe: str
    label: str
    entry: IndicatorEntry
    created_at: datetime

    def change(self, change_id: int, action: str) -> IndicatorChange:
        entry = None if action == "remove" else self.entry.model_dump(mode="json")
        return IndicatorChange(
            change_id, cast(Any, action), self.exchange, self.symbol, self.timeframe, self.label, entry
        )


def _bot(row: dict[str, Any]) -> BotRecord:
    return BotRecord(**(row | {"config": BotConfig.model_validate(row["config"])}))


def _indicator(row: dict[str, Any]) -> UserIndicator:
    return UserIndicator(**(row | {"entry": IndicatorEntry.model_validate(row["entry"])}))


def _change(row: dict[str, Any]) -> ControlChange:
    """A ``control_log`` row as the flow receives it."""
    payload = row["payload"]
    if row["kind"] == "bot":
        return BotChange(
            row["change_id"],
            row["action"],
            payload["bot_id"],
            row["target"],
            row["exchange"],
            row["symbol"],
            row["timeframe"],
            payload["state"],
            payload["config"],
        )
    return IndicatorChange(
        row["change_id"],
        row["action"],
        row["exchange"],
        row["symbol"],
        row["timeframe"],
        row["target"],
        payload.get("entry"),
    )


class ControlStore:
    """Reads and writes the bots and user indicators, each write logged for the running flow."""

    def __init__(self, url: str, connect_timeout: int = 10) -> None:
        self._url = url
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ControlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """The store's connection (autocommit: a lone read is one round trip), connected on first use
        and again after a loss."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._url, autocommit=True, row_factory=dict_row, connect_timeout=self._timeout
                )
            conn = self._conn
            try:
                yield conn
            except psycopg.OperationalError:
                conn.close()
                self._conn = None
                raise

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One transaction; a writing one holds the writers' lock from its start to its commit."""
        with self._connection() as conn, conn.transaction():
            if write:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield conn

    @staticmethod
    def _log(conn: psycopg.Connection[Any], kind: str, action: str, target: str, **fields: Any) -> None:
        conn.execute(_LOG, {"kind": kind, "action": action, "target": target, **fields})

    # --- bots ---------------------------------------------------------------------------------------

    def add_bot(self, config: BotConfig) -> BotRecord:
        """Store a new bot, state ``created``; a bot of the same name is a :class:`ControlError`."""
        series = {"exchange": config.exchange, "symbol": config.symbol, "timeframe": config.timeframe}
        try:
            with self._transaction(write=True) as conn:
                row = conn.execute(
                    _INSERT_BOT,
                    {"name": config.name, "config": Jsonb(config.model_dump(mode="json")), **series},
                ).fetchone()
                assert row is not None
                record = _bot(row)
                self._log(conn, "bot", "add", config.name, payload=Jsonb(_bot_payload(record)), **series)
        except psycopg.errors.UniqueViolation:
            raise ControlError(
                f"a bot named {config.name!r} already exists: choose another name, or remove that bot first"
            ) from None
        return record

    def start_bot(self, name: str) -> BotRecord:
        """created or paused -> running."""
        return self._transition(name, "start")

    def pause_bot(self, name: str) -> BotRecord:
        """running -> paused."""
        return self._transition(name, "pause")

    def stop_bot(self, name: str) -> BotRecord:
        """created, running or paused -> stopped (final)."""
        return self._transition(name, "stop")

    def _transition(self, name: str, action: str) -> BotRecord:
        allowed, target = TRANSITIONS[action]
        with self._transaction(write=True) as conn:
            row = conn.execute(_BOT, {"name": name}).fetchone()
            if row is None:
                raise ControlError(f"no bot named {name!r}")
            if row["state"] not in allowed:
                states = " or ".join(sorted(allowed))
                raise ControlError(f"bot {name!r} is {row['state']}: only a {states} bot can be {target}")
            row = conn.execute(_SET_STATE, {"state": target, "bot_id": row["bot_id"]}).fetchone()
            assert row is not None
            record = _bot(row)
            self._log(conn, "bot", action, name, payload=Jsonb(_bot_payload(record)), **_series(record))
        return record

    def remove_bot(self, name: str) -> None:
        """Delete the bot, its fills, equity and state (in any state)."""
        with self._transaction(write=True) as conn:
            row = conn.execute(_DELETE_BOT, {"name": name}).fetchone()
            if row is None:
                raise ControlError(f"no bot named {name!r}")
            record = _bot(row)
            self._log(conn, "bot", "remove", name, payload=Jsonb(_bot_payload(record)), **_series(record))

    def bots(self) -> list[BotRecord]:
        """Every bot, by name."""
        with self._connection() as conn:
            return [_bot(row) for row in conn.execute(_BOTS).fetchall()]

    def bot(self, name: str) -> BotRecord | None:
        with self._connection() as conn:
            row = conn.execute(_BOT, {"name": name}).fetchone()
        return None if row is None else _bot(row)

    # --- user indicators ----------------------------------------------------------------------------

    def add_indicator(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        entry: IndicatorEntry,
        reserved: Collection[str] = (),
    ) -> UserIndicator:
        """Store a user indicator on one series. ``reserved``: the labels configured for the series
        (configs/indicators.yaml), which a user indicator may not take."""
        if timeframe not in TIMEFRAMES:
            raise ControlError(f"unknown timeframe {timeframe!r}: expected one of {', '.join(TIMEFRAMES)}")
        label = entry.key
        if label in reserved:
            raise ControlError(
                f"label {label!r} is already configured on {symbol} {timeframe}: "
                "give the indicator another label"
            )
        entry = entry.model_copy(update={"label": label})
        series = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
        with self._transaction(write=True) as conn:
            dumped = entry.model_dump(mode="json")
            row = conn.execute(
                _INSERT_INDICATOR, {"label": label, "entry": Jsonb(dumped), **series}
            ).fetchone()
            if row is None:
                raise ControlError(
                    f"{symbol} {timeframe} already has a user indicator labelled {label!r}: "
                    "give it another label, or remove that one first"
                )
            earlier = conn.execute(_EARLIER_ENTRY, {"label": label, **series}).fetchone()
            if earlier is not None and earlier["entry"] != dumped:
                # Stored values are final: the label's values would mix the two parameter sets.
                raise ControlError(
                    f"label {label!r} was used on {symbol} {timeframe} before with other parameters "
                    f"({earlier['entry']}) and its values are stored: give the indicator another label"
                )
            record = _indicator(row)
            self._log(conn, "indicator", "add", label, payload=Jsonb({"entry": row["entry"]}), **series)
        return record

    def remove_indicator(self, exchange: str, symbol: str, timeframe: str, label: str) -> None:
        """Stop computing a user indicator (its stored values stay)."""
        series = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
        with self._transaction(write=True) as conn:
            if conn.execute(_DELETE_INDICATOR, {"label": label, **series}).fetchone() is None:
                raise ControlError(
                    f"{exchange} {symbol} {timeframe} has no user indicator labelled {label!r}"
                )
            self._log(conn, "indicator", "remove", label, payload=Jsonb({}), **series)

    def indicators(
        self, exchange: str | None = None, symbol: str | None = None, timeframe: str | None = None
    ) -> list[UserIndicator]:
        """The user indicators, of one series or more (``None``: any), oldest first per series."""
        params = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
        with self._connection() as conn:
            return [_indicator(row) for row in conn.execute(_INDICATORS, params).fetchall()]

    # --- what the flow follows ----------------------------------------------------------------------

    def snapshot(self) -> tuple[int, list[ControlChange]]:
        """The newest change id and the current bots and user indicators as ``load`` changes (each with
        that id), read in one REPEATABLE READ transaction: the changes after the id are what follows."""
        with self._transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor_row = conn.execute(_CURSOR).fetchone()
            assert cursor_row is not None
            cursor = int(cursor_row["cursor"])
            bots = [_bot(row) for row in conn.execute(_BOTS).fetchall()]
            empty = {"exchange": None, "symbol": None, "timeframe": None}
            indicators = [_indicator(row) for row in conn.execute(_INDICATORS, empty).fetchall()]
        loads: list[ControlChange] = [b.change(cursor, "load") for b in bots]
        loads += [i.change(cursor, "load") for i in indicators]
        return cursor, loads

    def changes_since(self, cursor: int, limit: int = 500) -> list[ControlChange]:
        """Up to ``limit`` changes with an id above ``cursor``, oldest first."""
        with self._connection() as conn:
            rows = conn.execute(_CHANGES, {"cursor": cursor, "limit": limit}).fetchall()
        return [_change(row) for row in rows]


def _series(record: BotRecord) -> dict[str, str]:
    return {"exchange": record.exchange, "symbol": record.symbol, "timeframe": record.timeframe}


def _bot_payload(record: BotRecord) -> dict[str, Any]:
    return {"bot_id": record.bot_id, "config": record.config.model_dump(mode="json"), "state": record.state}
