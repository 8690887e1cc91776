"""Where a backtest's data comes from: the stored candles or trades of one series in the database the
run command uses, or tapes; with how far through it the run is (for the progress bar)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from bytewax.inputs import Source

from configs.errors import UserError
from configs.settings import Settings
from flows.candles import CandleConfig

if TYPE_CHECKING:
    from app.backtest import BacktestOptions


@dataclass
class BacktestInput:
    """A backtest's source, the candle step's configuration when it carries trades, and its progress."""

    source: Source
    candle_config: CandleConfig | None
    share: Callable[[], float]
    """How far through the input the run is, 0 to 1."""
    database_url: Callable[[], str]
    described: dict[str, Any] = field(default_factory=dict)
    """What the stored run's ``config`` records of the data: source, range asked, tapes."""


def _settings() -> Settings:
    from configs.errors import exit_on_user_error
    from configs.settings import load_settings

    with exit_on_user_error():
        return load_settings()


def open_input(opts: BacktestOptions) -> BacktestInput:
    """The data the options name; raises ``UserError`` when there is none."""
    settings = _settings()

    @cache
    def database_url() -> str:
        from app.resources import database_url as resolve

        return resolve(settings)

    described: dict[str, Any] = {
        "source": opts.source,
        "start": opts.start.isoformat() if opts.start else None,
        "end": opts.end.isoformat() if opts.end else None,
    }
    if opts.source == "tapes":
        return _tapes(opts, settings, database_url, described)
    if opts.source == "trades":
        return _trades(opts, settings, database_url(), described)
    return _candles(opts, database_url(), described)


def _candles(opts: BacktestOptions, url: str, described: dict[str, Any]) -> BacktestInput:
    from connectors.backtest_store import candle_batches, candle_range
    from connectors.memory import BatchSource

    assert opts.symbol is not None
    found = candle_range(url, opts.exchange, opts.symbol, opts.timeframe, opts.start, opts.end)
    if found.rows == 0:
        raise UserError(
            f"no stored {opts.timeframe} candle of {opts.exchange} {opts.symbol}{_range(opts)}.",
            "Replay a tape or run the live flow first, or check --exchange, --symbol, --start and --end.",
        )
    source = BatchSource(
        candle_batches(url, opts.exchange, opts.symbol, opts.timeframe, opts.start, opts.end)
    )
    return BacktestInput(source, None, lambda: source.items_read / found.rows, lambda: url, described)


def _trades(opts: BacktestOptions, settings: Settings, url: str, described: dict[str, Any]) -> BacktestInput:
    from connectors.backtest_store import trade_batches, trade_range
    from connectors.memory import BatchSource

    assert opts.symbol is not None
    found = trade_range(url, opts.exchange, opts.symbol, opts.start, opts.end)
    if found.rows == 0 or found.last is None:
        raise UserError(
            f"no stored trade of {opts.exchange} {opts.symbol}{_range(opts)}.",
            "Replay a tape or run the live flow first, or check --exchange, --symbol, --start and --end.",
        )
    end = (
        opts.end or found.last
    )  # the declared end (TIME.md rule 9): windows closing after it are not emitted
    config = _candle_config(settings, opts.exchange, {opts.symbol: end})
    source = BatchSource(trade_batches(url, opts.exchange, opts.symbol, opts.start, opts.end))
    return BacktestInput(source, config, lambda: source.items_read / found.rows, lambda: url, described)


def _tapes(
    opts: BacktestOptions, settings: Settings, url: Callable[[], str], described: dict[str, Any]
) -> BacktestInput:
    from app.resources import check_tapes
    from connectors.replay import TapeSource

    scanned = check_tapes(opts.tapes, "--tapes")
    source = TapeSource(opts.tapes, until=opts.end, scanned=scanned)
    held = set().union(*(tape.instruments for tape in scanned))
    if opts.symbol is not None and opts.symbol not in held:
        raise UserError(
            f"--symbol {opts.symbol}: the tapes hold no trade of it (they hold {', '.join(sorted(held))}).",
            "Name one of those, or leave --symbol out to test every instrument of the tapes.",
        )
    config = _candle_config(settings, "okx", source.ends)
    described["tapes"] = [str(path) for path in opts.tapes]

    def share() -> float:
        return source.rows_read / source.total_rows if source.total_rows else 0.0

    return BacktestInput(source, config, share, url, described)


def _candle_config(settings: Settings, exchange: str, ends: dict[str, datetime]) -> CandleConfig:
    """The replay's candle step: event time, the configured grace and flat candles."""
    return CandleConfig(
        exchange=exchange,
        grace=settings.candle_grace,
        emit_flat=settings.emit_flat_candles,
        clock="event",
        ends=ends,
        contract_values=settings.contract_values,
    )


def _range(opts: BacktestOptions) -> str:
    start = f" from {opts.start.isoformat()}" if opts.start else ""
    end = f" to {opts.end.isoformat()}" if opts.end else ""
    return start + end
