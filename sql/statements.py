"""The named read queries as SQLAlchemy Core selects over ``sql.schema``, compiled once for psycopg.

Every value is a named bound parameter (``bindparam``); constants of the SQL text (``LIMIT 1``, the UTC
epoch) are literal. A :class:`Statement` keeps the Core select (run it with SQLAlchemy, or
``pandas.read_sql(statement.select, engine, params=...)``) and its PostgreSQL text with psycopg's
``%(name)s`` placeholders, rendered once, so a read costs what the hand-written SQL cost: one
``execute`` on the caller's psycopg connection, one round trip. Optional filters give separate
statements (``gaps(exchange=True, ...)``), each compiled on first use and kept.

Two reads walk an index as a skip scan (a recursive CTE, one index probe per distinct value) rather
than scanning every row: the symbols of an exchange and the latest value of each indicator output.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Double,
    Select,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import INTERVAL, aggregate_order_by
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine.interfaces import BindTyping

from sql.schema import (
    CANDLES,
    TIMEFRAMES,
    backtest_equity,
    backtest_runs,
    backtest_trades,
    collector_health,
    gaps,
    indicators,
    late_trades,
    rejects,
    signals,
)

CANDLE_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in CANDLES["1m"].columns if c.name not in ("inserted_at", "complete", "contract_value")
)
"""The columns a candle read returns: every candle relation's but the bookkeeping ``inserted_at``,
``complete`` and ``contract_value`` (what the rollups divide by)."""

_DIALECT = PGDialect_psycopg()
# No ``::VARCHAR`` casts on parameters: the text is what one would write by hand, and psycopg's own
# typing of the values applies (casts the SQL needs are explicit ``cast``s).
_DIALECT.bind_typing = BindTyping.NONE
_ONE: ColumnElement[Any] = literal_column("1")
_EPOCH: ColumnElement[Any] = literal_column("TIMESTAMPTZ '1970-01-01 00:00:00+00'")


class Statement:
    """A Core select and its PostgreSQL text for psycopg, compiled once."""

    def __init__(self, query: Select[Any]) -> None:
        compiled = query.compile(dialect=_DIALECT)
        constants = sorted(name for name, value in compiled.params.items() if value is not None)
        if constants:  # a constant bound as an anonymous parameter would be missing at execution
            raise ValueError(f"statement binds constants {constants}: use named parameters or literals")
        self.select = query
        self.text = str(compiled)
        self.parameters = frozenset(compiled.params)
        """The names of the bound parameters."""

    def __repr__(self) -> str:
        return f"Statement({self.text!r})"


def _param(name: str) -> Any:
    return bindparam(name)


def _period_close(period: ColumnElement[Any], time: ColumnElement[Any]) -> ColumnElement[Any]:
    """The close of the period holding ``time``: periods of ``period`` aligned to the UTC epoch."""
    return (func.date_bin(period, time, _EPOCH) + period).label("time")


def _newest(relation: Any, columns: list[Any], conditions: list[Any], name: str) -> Any:
    """The newest row (by ``time``) of ``relation`` meeting ``conditions``: a LATERAL subquery, one index
    probe from the end of the series."""
    return select(*columns).where(*conditions).order_by(relation.c.time.desc()).limit(_ONE).lateral(name)


def _skip_scan(relation: Any, keys: tuple[str, ...], conditions: list[Any], name: str) -> Any:
    """The distinct ``keys`` of the rows meeting ``conditions``, ascending: a recursive CTE that walks an
    index (the conditions' columns, then ``keys``) one probe per distinct value instead of every row."""
    columns = [relation.c[key] for key in keys]
    first = select(*columns).where(*conditions).order_by(*columns).limit(_ONE)
    found = first.cte(name, recursive=True)
    previous = found.alias("previous")
    before = [previous.c[key] for key in keys]
    after = tuple_(*columns) > tuple_(*before) if len(keys) > 1 else columns[0] > before[0]
    following = select(*columns).where(*conditions, after).order_by(*columns).limit(_ONE).lateral("following")
    step = select(*(following.c[key] for key in keys)).select_from(previous.join(following, true()))
    return found.union_all(step)


def _candles(timeframe: str) -> Any:
    relation = CANDLES[timeframe]
    return relation, [relation.c[name] for name in CANDLE_COLUMNS]


def _latest_candles(timeframe: str) -> Statement:
    relation, columns = _candles(timeframe)
    latest = (
        select(*columns)
        .where(relation.c.exchange == _param("exchange"), relation.c.symbol == _param("symbol"))
        .order_by(relation.c.time.desc())
        .limit(_param("limit"))
        .subquery("latest")
    )
    return Statement(select(latest).order_by(latest.c.time))


def _candles_between(timeframe: str) -> Statement:
    relation, columns = _candles(timeframe)
    return Statement(
        select(*columns)
        .where(
            relation.c.exchange == _param("exchange"),
            relation.c.symbol == _param("symbol"),
            relation.c.time > _param("start"),
            relation.c.time <= _param("end"),
        )
        .order_by(relation.c.time)
        .limit(_param("limit"))
    )


def _latest_closes(timeframe: str) -> Statement:
    relation = CANDLES[timeframe]
    wanted = (
        func.unnest(cast(_param("symbols"), ARRAY(Text))).table_valued("symbol").render_derived(name="wanted")
    )
    last = _newest(
        relation,
        [relation.c.time, relation.c.close, relation.c.trade_count],
        [relation.c.exchange == _param("exchange"), relation.c.symbol == wanted.c.symbol],
        "last",
    )
    return Statement(
        select(wanted.c.symbol, last.c.time, last.c.close, last.c.trade_count)
        .select_from(wanted.join(last, true()))
        .order_by(wanted.c.symbol)
    )


LATEST_CANDLES = {tf: _latest_candles(tf) for tf in TIMEFRAMES}
"""The newest ``limit`` candles of a series (``exchange``, ``symbol``), oldest first; by timeframe."""
CANDLES_BETWEEN = {tf: _candles_between(tf) for tf in TIMEFRAMES}
"""Candles of a series closing in ``(start, end]``, oldest first, at most ``limit``; by timeframe."""
LATEST_CLOSES = {tf: _latest_closes(tf) for tf in TIMEFRAMES}
"""For each of ``symbols`` with candles: its newest candle's ``time, close, trade_count``; by timeframe."""


@cache
def late_trade_counts(exchange: bool, symbol: bool) -> Statement:
    """Late trades with ``time`` in ``[start, end)`` per series and ``period`` (optionally of one exchange
    and/or symbol)."""
    t = late_trades
    time = _period_close(cast(_param("period"), INTERVAL), t.c.time)
    conditions = [t.c.time >= _param("start"), t.c.time < _param("end")]
    conditions += [t.c.exchange == _param("exchange")] if exchange else []
    conditions += [t.c.symbol == _param("symbol")] if symbol else []
    return Statement(
        select(
            t.c.exchange,
            t.c.symbol,
            time,
            func.count().label("late_trades"),
            func.max(t.c.lateness).label("max_lateness"),
        )
        .where(*conditions)
        .group_by(t.c.exchange, t.c.symbol, time)
        .order_by(time, t.c.exchange, t.c.symbol)
    )


def _reject_counts() -> Statement:
    r = rejects
    time = _period_close(cast(_param("period"), INTERVAL), r.c.received_at)
    return Statement(
        select(r.c.source, r.c.reason, time, func.count().label("rejects"))
        .where(r.c.received_at >= _param("start"), r.c.received_at < _param("end"))
        .group_by(r.c.source, r.c.reason, time)
        .order_by(time, r.c.source, r.c.reason)
    )


REJECT_COUNTS = _reject_counts()
"""Rejected messages received in ``[start, end)`` per source, reason and ``period``."""


@cache
def gap_rows(exchange: bool, symbol: bool, since: bool, unfilled_only: bool) -> Statement:
    """The ``gaps`` rows (optionally of one exchange, symbol, detected since, unfilled), newest first."""
    conditions = [gaps.c.exchange == _param("exchange")] if exchange else []
    conditions += [gaps.c.symbol == _param("symbol")] if symbol else []
    conditions += [gaps.c.detected_at >= _param("since")] if since else []
    conditions += [~gaps.c.filled] if unfilled_only else []
    return Statement(
        select(
            *(gaps.c[name] for name in ("exchange", "symbol", "from_trade_id", "to_trade_id")),
            *(
                gaps.c[name]
                for name in ("from_time", "to_time", "filled", "trades_backfilled", "detected_at")
            ),
        )
        .where(*conditions)
        .order_by(gaps.c.detected_at.desc(), gaps.c.exchange, gaps.c.symbol, gaps.c.from_trade_id)
        .limit(_param("limit"))
    )


def _series(relation: Any, timeframe: bool = True) -> list[ColumnElement[bool]]:
    """The conditions selecting one series (``exchange``, ``symbol``[, ``timeframe``])."""
    conditions = [relation.c.exchange == _param("exchange"), relation.c.symbol == _param("symbol")]
    return conditions + ([relation.c.timeframe == _param("timeframe")] if timeframe else [])


@cache
def latest_indicators(at: bool) -> Statement:
    """The newest value of each (indicator, output) of a series (stamped ``<= at``), by indicator and
    output: a skip scan over the primary key (exchange, symbol, timeframe, indicator, output, time)."""
    i = indicators
    outputs = _skip_scan(i, ("indicator", "output"), _series(i), "outputs")
    same_output = [i.c.indicator == outputs.c.indicator, i.c.output == outputs.c.output]
    at_or_before = [i.c.time <= _param("at")] if at else []
    newest = _newest(i, [i.c.time, i.c.value], [*_series(i), *same_output, *at_or_before], "newest")
    return Statement(
        select(outputs.c.indicator, outputs.c.output, newest.c.time, newest.c.value)
        .select_from(outputs.join(newest, true()))
        .order_by(outputs.c.indicator, outputs.c.output)
    )


INDICATOR_HISTORY = Statement(
    select(indicators.c.time, indicators.c.indicator, indicators.c.output, indicators.c.value)
    .where(
        *_series(indicators),
        indicators.c.indicator == any_(cast(_param("labels"), ARRAY(Text))),
        indicators.c.time >= _param("start"),
        indicators.c.time <= _param("end"),
    )
    .order_by(indicators.c.time, indicators.c.indicator, indicators.c.output)
)
"""Values of the indicators named in ``labels`` of a series stamped in ``[start, end]``, oldest first."""

_user_indicators = table(
    "user_indicators",
    *(column(name) for name in ("indicator_id", "exchange", "symbol", "timeframe", "label", "entry")),
)
"""The user indicators of each series (migration 0018; written only through the control store)."""
USER_INDICATORS = Statement(
    select(_user_indicators.c.label, _user_indicators.c.entry)
    .where(*_series(_user_indicators))
    .order_by(_user_indicators.c.indicator_id)
)
"""The user indicators of a series (``label``, ``entry``: the validated indicator entry), in the order
they were added."""


@cache
def recent_signals(timeframe: bool, since: bool) -> Statement:
    """Signals of a series (optionally of one timeframe, stamped after ``since``), newest first."""
    s = signals
    conditions = _series(s, timeframe) + ([s.c.time > _param("since")] if since else [])
    columns = ("exchange", "symbol", "timeframe", "time", "strategy", "action", "reason", "values")
    return Statement(
        select(*(s.c[name] for name in columns))
        .where(*conditions)
        .order_by(s.c.time.desc(), s.c.timeframe, s.c.strategy)
        .limit(_param("limit"))
    )


def _symbols() -> Statement:
    """The symbols of an exchange with 1m candles: a skip scan over the primary key (exchange, symbol,
    time), one index probe per symbol rather than a scan of every candle."""
    c = CANDLES["1m"]
    found = _skip_scan(c, ("symbol",), [c.c.exchange == _param("exchange")], "found")
    return Statement(select(found.c.symbol).order_by(found.c.symbol))


SYMBOLS = _symbols()
"""The symbols of ``exchange`` that have 1m candles, sorted."""
COLLECTOR_HEALTH_EXISTS = Statement(
    select(func.to_regclass(literal_column("'collector_health'")).is_not(None).label("present"))
)
"""Whether the table ``collector_health`` exists (it came with migration 0011)."""
COLLECTOR_HEALTH = Statement(select(collector_health).order_by(collector_health.c.collector))
"""The latest snapshot row of each collector, by name."""


def _backtest_runs() -> Statement:
    r = backtest_runs
    return Statement(select(r).order_by(r.c.run_id.desc()).limit(_param("limit")))


BACKTEST_RUNS = _backtest_runs()
"""The newest ``limit`` stored backtest runs (every column, metrics and config as jsonb), newest first."""
BACKTEST_RUN = Statement(select(backtest_runs).where(backtest_runs.c.run_id == _param("run_id")))
"""One stored backtest run by ``run_id`` (no row if there is none)."""
BACKTEST_TRADES = Statement(
    select(*(c for c in backtest_trades.c if c.name != "run_id"))
    .where(backtest_trades.c.run_id == _param("run_id"))
    .order_by(backtest_trades.c.entry_time)
)
"""The trades of run ``run_id``, by entry time."""
BACKTEST_EQUITY = Statement(
    select(*(c for c in backtest_equity.c if c.name != "run_id"))
    .where(backtest_equity.c.run_id == _param("run_id"))
    .order_by(backtest_equity.c.time)
)
"""The equity points of run ``run_id`` (one per candle close), oldest first."""


def _backtest_equity_by_period() -> Statement:
    e = backtest_equity
    points = (
        select(
            e.c.time,
            *(e.c[name] for name in ("close", "cash", "position", "equity")),
            (e.c.equity / func.max(e.c.equity).over(order_by=e.c.time) - literal_column("1")).label(
                "drawdown"
            ),
        )
        .where(e.c.run_id == _param("run_id"))
        .subquery("points")
    )
    covered = points.c.time - literal_column("INTERVAL '1 microsecond'")  # the interval a point closes
    period = func.date_bin(cast(_param("period"), INTERVAL), covered, _EPOCH)
    newest = points.c.time.desc()

    def last(name: str) -> Any:
        return func.array_agg(aggregate_order_by(points.c[name], newest), type_=ARRAY(Double))[_ONE].label(
            name
        )

    return Statement(
        select(
            func.max(points.c.time).label("time"),
            *(last(name) for name in ("close", "cash", "position", "equity")),
            func.min(points.c.drawdown).label("drawdown"),
        )
        .group_by(period)
        .order_by(func.max(points.c.time))
    )


BACKTEST_EQUITY_BY_PERIOD = _backtest_equity_by_period()
"""The equity of run ``run_id`` by ``period`` (epoch-aligned; a point in the period of the interval it
closes): the last point of each period, and the deepest drawdown (``equity`` over its running peak over
every point, minus one) within it. The page reads a long run this way rather than every point."""
