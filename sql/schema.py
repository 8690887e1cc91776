"""SQLAlchemy Core metadata of every public relation the migrations create (docs/sql.md, "Python").

For reading in Python: ``select(candles_1h).where(candles_1h.c.symbol == "BTC-USDT")``, or
``pandas.read_sql(statement, engine)``. The schema itself comes from the numbered migrations
(``sql/migrations``), never from ``metadata.create_all``: the candle views, hypertables, continuous
aggregates and triggers are not expressed here. A test checks these definitions against the migrated
schema of both engines (``tests/sql/test_schema.py``).

Relations:

- tables: ``trades``, ``late_trades``, ``rejects``, ``gaps``, ``candles_1m``, ``candle_conflicts``,
  ``indicators``, ``signals``, ``collector_health``, ``backtest_runs``, ``backtest_trades``,
  ``backtest_equity``, ``bots``, ``user_indicators``, ``control_log``, ``bot_fills``, ``bot_equity``,
  ``bot_state``;
- views (``info["view"]`` is True): ``candles_5m`` ... ``candles_1d``, the same columns as
  ``candles_1m`` (views on both engines over the ``rollup_*`` storage, continuous aggregates on
  TimescaleDB), and ``candles``, every timeframe with a leading ``timeframe`` column. A view has no
  primary key in the database; its columns keep the nullability of the candles they show.

The internal relations (``rollup_*``, ``rollup_pending``, ``schema_migrations``) are left out on purpose.
Every time is ``TIMESTAMP WITH TIME ZONE`` (UTC, aware datetimes); a candle's ``time`` is its close.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Boolean,
    Column,
    Double,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import INTERVAL, JSONB

TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")

metadata = MetaData()


def _time(name: str, nullable: bool = False) -> Column[Any]:
    return Column(name, TIMESTAMP(timezone=True), nullable=nullable)


def _text(name: str, nullable: bool = False) -> Column[Any]:
    return Column(name, Text, nullable=nullable)


def _candle_columns(view: bool = True) -> list[Column[Any]]:
    """The columns of ``candles_1m`` (``view=False``) and of every higher-timeframe view, in the
    migrations' order."""
    return [
        _text("exchange"),
        _text("symbol"),
        _time("time"),  # the close: the candle covers [time - timeframe, time)
        Column("open", Numeric, nullable=False),
        Column("high", Numeric, nullable=False),
        Column("low", Numeric, nullable=False),
        Column("close", Numeric, nullable=False),
        Column("volume", Numeric, nullable=False),
        Column("quote_volume", Numeric, nullable=False),
        Column("trade_count", Integer, nullable=False),  # 0 marks a flat candle
        Column("vwap", Numeric),  # NULL for a flat candle
        Column("first_trade_id", BigInteger),
        Column("last_trade_id", BigInteger),
        _time("inserted_at"),
        Column("complete", Boolean, nullable=False),  # false when trades of the interval are missing
        # OKX ctVal (1 for spot): what the vwap divides by (volume x contract value); in a higher
        # timeframe that of its traded minutes, NULL when every minute was flat.
        Column("contract_value", Numeric, nullable=view),
    ]


def _trade_columns() -> list[Column[Any]]:
    """The leading columns of ``trades`` and ``late_trades``."""
    return [
        _text("exchange"),
        _text("symbol"),
        Column("trade_id", BigInteger, nullable=False),
        _time("time"),  # ts_event
        Column("price", Numeric, nullable=False),
        Column("size", Numeric, nullable=False),
        _text("side"),  # the taker side: 'buy' | 'sell'
        _time("received_at", nullable=True),  # ts_recv; NULL for trades read from a tape
    ]


trades = Table(
    "trades",
    metadata,
    *_trade_columns(),
    Column("fill_count", Integer, nullable=False),
    Column("seq_id", BigInteger),
    _text("exch_source", nullable=True),
    _text("origin"),  # 'ws' | 'rest' | 'tape'
    _time("ingested_at"),
    UniqueConstraint("exchange", "symbol", "time", "trade_id", name="trades_key"),
)

candles_1m = Table(
    "candles_1m",
    metadata,
    *_candle_columns(view=False),
    PrimaryKeyConstraint("exchange", "symbol", "time", name="candles_1m_pkey"),
)

late_trades = Table(
    "late_trades",
    metadata,
    *_trade_columns(),
    _time("candle_close"),  # close of the 1m candle it missed
    Column("lateness", INTERVAL, nullable=False),
    _time("detected_at"),
    UniqueConstraint("exchange", "symbol", "trade_id", "time", name="late_trades_key"),
)

rejects = Table(
    "rejects",
    metadata,
    _time("received_at"),
    _text("source"),
    _text("reason"),
    Column("raw", LargeBinary, nullable=False),
    Column("raw_digest", LargeBinary, nullable=False),
    UniqueConstraint("received_at", "source", "raw_digest", name="rejects_key"),
)

gaps = Table(
    "gaps",
    metadata,
    _text("exchange"),
    _text("symbol"),
    Column("from_trade_id", BigInteger, nullable=False),
    Column("to_trade_id", BigInteger, nullable=False),
    _time("from_time", nullable=True),
    _time("to_time", nullable=True),
    Column("filled", Boolean, nullable=False),
    Column("trades_backfilled", Integer, nullable=False),
    _text("reason"),  # 'reconnect' | 'sequence' | 'resume'
    Column("recovery_seconds", Double),
    _text("error", nullable=True),
    _time("detected_at"),
    UniqueConstraint("exchange", "symbol", "from_trade_id", "to_trade_id", name="gaps_key"),
)

indicators = Table(
    "indicators",
    metadata,
    _text("exchange"),
    _text("symbol"),
    _text("timeframe"),
    _time("time"),  # close of the candle the value was computed on
    _text("indicator"),  # the configured label
    _text("output"),  # TA-Lib's output name
    Column("value", Double, nullable=False),
    _time("inserted_at"),
    PrimaryKeyConstraint(
        "exchange", "symbol", "timeframe", "indicator", "output", "time", name="indicators_pkey"
    ),
)

signals = Table(
    "signals",
    metadata,
    _text("exchange"),
    _text("symbol"),
    _text("timeframe"),
    _time("time"),  # close of the candle that caused the signal
    _text("strategy"),
    _text("action"),  # 'buy' | 'sell' | 'flat'
    _text("reason"),
    Column("values", JSONB, nullable=False),
    _time("inserted_at"),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe", "strategy", "time", name="signals_pkey"),
)

candle_conflicts = Table(
    "candle_conflicts",
    metadata,
    _text("exchange"),
    _text("symbol"),
    _time("time"),
    Column("stored", JSONB, nullable=False),
    Column("offered", JSONB, nullable=False),
    _time("detected_at"),
    UniqueConstraint("exchange", "symbol", "time", "offered", name="candle_conflicts_key"),
)

collector_health = Table(
    "collector_health",
    metadata,
    _text("collector"),
    _time("time"),
    _text("status"),
    Column("is_healthy", Boolean, nullable=False),
    _time("status_since", nullable=True),
    _text("last_error", nullable=True),
    Column("payload", JSONB, nullable=False),
    PrimaryKeyConstraint("collector", name="collector_health_pkey"),
)

backtest_runs = Table(
    "backtest_runs",
    metadata,
    Column("run_id", BigInteger, Identity(always=True), nullable=False),
    _time("created_at"),
    _text("exchange"),
    _text("symbol"),
    _text("timeframe"),
    _text("strategy"),  # the strategy's label
    _text("source"),  # 'candles' | 'trades' | 'tapes'
    _time("data_start"),  # first candle's open
    _time("data_end"),  # last candle's close
    Column("candles", BigInteger, nullable=False),
    Column("config", JSONB, nullable=False),  # {"strategy", "params", "account", ...}
    _text("code_version"),
    Column("metrics", JSONB, nullable=False),  # market.backtest.compute_metrics(...)
    PrimaryKeyConstraint("run_id", name="backtest_runs_pkey"),
)

backtest_trades = Table(
    "backtest_trades",
    metadata,
    Column("run_id", BigInteger, nullable=False),  # backtest_runs.run_id, ON DELETE CASCADE
    _time("entry_time"),  # open instant of the candle whose open filled the entry
    _text("side"),  # 'long' | 'short'
    Column("entry_price", Double, nullable=False),
    _time("exit_time", nullable=True),  # NULL while open
    Column("exit_price", Double),  # NULL while open
    Column("quantity", Double, nullable=False),
    Column("pnl", Double, nullable=False),  # an open trade: marked at the last close
    Column("fees", Double, nullable=False),
    Column("is_open", Boolean, nullable=False),
    PrimaryKeyConstraint("run_id", "entry_time", name="backtest_trades_pkey"),
)

backtest_equity = Table(
    "backtest_equity",
    metadata,
    Column("run_id", BigInteger, nullable=False),  # backtest_runs.run_id, ON DELETE CASCADE
    _time("time"),  # candle close
    Column("close", Double, nullable=False),
    Column("cash", Double, nullable=False),
    Column("position", Double, nullable=False),  # signed quantity held after this candle
    Column("equity", Double, nullable=False),
    PrimaryKeyConstraint("run_id", "time", name="backtest_equity_pkey"),
)

bots = Table(
    "bots",
    metadata,
    Column("bot_id", BigInteger, Identity(always=True), nullable=False),
    _text("name"),  # unique
    _text("exchange"),
    _text("symbol"),
    _text("timeframe"),
    Column("config", JSONB, nullable=False),  # configs.bots.BotConfig
    _text("state"),  # 'created' | 'running' | 'paused' | 'stopped'
    _time("created_at"),
    _time("updated_at"),
    PrimaryKeyConstraint("bot_id", name="bots_pkey"),
    UniqueConstraint("name", name="bots_name_key"),
)

user_indicators = Table(
    "user_indicators",
    metadata,
    Column("indicator_id", BigInteger, Identity(always=True), nullable=False),
    _text("exchange"),
    _text("symbol"),
    _text("timeframe"),
    _text("label"),
    Column("entry", JSONB, nullable=False),  # configs.indicators.IndicatorEntry
    _time("created_at"),
    PrimaryKeyConstraint("indicator_id", name="user_indicators_pkey"),
    UniqueConstraint(
        "exchange", "symbol", "timeframe", "label", name="user_indicators_exchange_symbol_timeframe_label_key"
    ),
)

control_log = Table(
    "control_log",
    metadata,
    Column("change_id", BigInteger, Identity(always=True), nullable=False),
    _time("at"),
    _text("kind"),  # 'bot' | 'indicator'
    _text("action"),
    _text("exchange"),
    _text("symbol"),
    _text("timeframe"),
    _text("target"),  # the bot's name or the indicator's label
    Column("payload", JSONB, nullable=False),
    PrimaryKeyConstraint("change_id", name="control_log_pkey"),
)

bot_fills = Table(
    "bot_fills",
    metadata,
    Column("bot_id", BigInteger, nullable=False),  # bots.bot_id, ON DELETE CASCADE
    _time("time"),  # open instant of the candle whose open filled it
    Column("seq", SmallInteger, nullable=False),
    _time("signal_time"),
    _text("side"),  # 'buy' | 'sell'
    Column("price", Double, nullable=False),
    Column("quantity", Double, nullable=False),
    Column("fee", Double, nullable=False),
    PrimaryKeyConstraint("bot_id", "time", "seq", name="bot_fills_pkey"),
)

bot_equity = Table(
    "bot_equity",
    metadata,
    Column("bot_id", BigInteger, nullable=False),  # bots.bot_id, ON DELETE CASCADE
    _time("time"),  # candle close
    Column("close", Double, nullable=False),
    Column("cash", Double, nullable=False),
    Column("position", Double, nullable=False),
    Column("equity", Double, nullable=False),
    PrimaryKeyConstraint("bot_id", "time", name="bot_equity_pkey"),
)

bot_state = Table(
    "bot_state",
    metadata,
    Column("bot_id", BigInteger, nullable=False),  # bots.bot_id, ON DELETE CASCADE
    _time("last_close"),
    Column("runner", LargeBinary, nullable=False),  # written and read by the flow only
    _time("updated_at"),
    PrimaryKeyConstraint("bot_id", name="bot_state_pkey"),
)

candles_5m, candles_15m, candles_1h, candles_4h, candles_1d = (
    Table(f"candles_{tf}", metadata, *_candle_columns(), info={"view": True}) for tf in TIMEFRAMES[1:]
)

candles = Table("candles", metadata, _text("timeframe"), *_candle_columns(), info={"view": True})
"""Every timeframe in one view; filter on ``timeframe``."""

CANDLES: dict[str, Table] = {
    "1m": candles_1m,
    "5m": candles_5m,
    "15m": candles_15m,
    "1h": candles_1h,
    "4h": candles_4h,
    "1d": candles_1d,
}
"""The public relation of each timeframe."""
