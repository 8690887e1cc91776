"""The Backtests page: the stored runs with their metrics, one run opened, or two side by side.

- ``BacktestReader``: the page's reads, through the read-only pool and the named statements of
  ``sql.statements`` (``BACKTEST_RUNS``, ``BACKTEST_RUN``, ``BACKTEST_TRADES``, ``BACKTEST_EQUITY``) and the
  candle views. A run becomes the same ``BacktestView`` the standalone report draws
  (``dashboards.backtest_report.run_panel``), so the page and the report share one figure code.
- ``BacktestsPage``: the runs table, a run selector and a "compare with" selector; the chosen runs are
  drawn side by side.

The candles of a run are read from the candle view of the finest timeframe, not finer than the run's,
that gives at most ``MAX_POINTS`` candles over the run's range (a year of 1m is drawn from the 4h view:
the database's own rollups, TIME.md rule 6). A run whose series has no stored candles (a backtest
over a tape) is drawn from the closes its equity points carry.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import panel as pn
import param
from psycopg.rows import dict_row

from dashboards.backtest_figures import MAX_POINTS, metric_text, utc_minutes
from dashboards.backtest_report import STYLE, BacktestView, heading, run_panel
from dashboards.data import DataUnavailable, ReadOnlyDatabase
from market.timeframes import TIMEFRAMES
from sql import queries, statements
from sql.statements import Statement

__all__ = ["BacktestReader", "BacktestsPage", "display_timeframe", "run_rows", "view_of"]

RUN_LIMIT = 200
"""The newest runs listed."""
LISTED_METRICS = ("total_return", "max_drawdown", "sharpe", "trades", "win_rate", "final_equity")
NONE = 0
"""The "compare with" choice meaning no second run."""


# -- pure shaping ----------------------------------------------------------------------------------
def display_timeframe(timeframe: str, start: datetime, end: datetime, max_points: int = MAX_POINTS) -> str:
    """The finest timeframe, not finer than the run's, with at most ``max_points`` candles in
    ``[start, end)``; the coarsest (1d) when none has so few."""
    names = list(TIMEFRAMES)
    for name in names[names.index(timeframe) :]:
        if (end - start) / TIMEFRAMES[name].length <= max_points:
            return name
    return names[-1]


def run_label(run: Mapping[str, Any]) -> str:
    """``#12 ema_crossover okx BTC-USDT 1m (2026-01-01 00:00 UTC to ...)``: the selectors' text."""
    return (
        f"#{run['run_id']} {run['strategy']} {run['exchange']} {run['symbol']} {run['timeframe']} "
        f"({utc_minutes(run['data_start'])} to {utc_minutes(run['data_end'])})"
    )


def run_rows(runs: Sequence[Mapping[str, Any]]) -> str:
    """The runs table as HTML: strategy, series, range, candles and the key metrics, one row per run."""
    head = ["run", "created (UTC)", "strategy", "series", "range (UTC)", "candles", *LISTED_METRICS]
    rows = []
    for run in runs:
        metrics = run["metrics"] or {}
        cells = [
            f"#{run['run_id']}",
            utc_minutes(run["created_at"]),
            str(run["strategy"]),
            f"{run['exchange']} {run['symbol']} {run['timeframe']}",
            f"{utc_minutes(run['data_start'])} to {utc_minutes(run['data_end'])}",
            f"{run['candles']:,}",
            *(metric_text(key, metrics.get(key)) for key in LISTED_METRICS),
        ]
        row = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        rows.append(f'<tr data-testid="backtest-run" data-run-id="{int(run["run_id"])}">{row}</tr>')
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table class="tcp-bt-metrics tcp-bt-runs"><tr>{header}</tr>{"".join(rows)}</table>'


def trade_dicts(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``backtest_trades`` rows as the JSON trade dicts the figures take (``is_open`` becomes ``open``)."""
    keys = ("entry_time", "entry_price", "exit_time", "exit_price", "quantity", "pnl", "fees", "side")
    return [{**{k: row[k] for k in keys}, "open": bool(row["is_open"])} for row in rows]


def closes_as_candles(equity: pd.DataFrame) -> pd.DataFrame:
    """Bars from the equity points' closes when no candle is stored: each from the previous close to its
    close (the first from its own close), volume 0."""
    closes = equity["close"].astype(float)
    opens = closes.shift(1).fillna(closes)
    return pd.DataFrame(
        {
            "time": equity["time"],
            "open": opens,
            "high": pd.concat([opens, closes], axis=1).max(axis=1),
            "low": pd.concat([opens, closes], axis=1).min(axis=1),
            "close": closes,
            "volume": 0.0,
        }
    )


def view_of(
    run: Mapping[str, Any], candles: pd.DataFrame, equity: pd.DataFrame, trades: list[dict[str, Any]]
) -> BacktestView:
    """The run as the figures draw it; candles from the equity closes when none were read."""
    title = f"#{run['run_id']} {run['strategy']} on {run['exchange']} {run['symbol']} {run['timeframe']}"
    shown = candles if len(candles) else closes_as_candles(equity)
    return BacktestView(title, shown, equity, trades, dict(run["metrics"] or {}), dict(run["config"] or {}))


# -- reads -----------------------------------------------------------------------------------------
def _rows(conn: Any, statement: Statement, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(statement.text, params)
        return cursor.fetchall()


class BacktestReader:
    """The Backtests page's reads on the read-only pool; failures raise ``DataUnavailable``."""

    def __init__(self, db: ReadOnlyDatabase) -> None:
        self.db = db

    def runs(self, limit: int = RUN_LIMIT) -> list[dict[str, Any]]:
        """The newest stored runs, newest first."""
        return self.db.run(lambda c: _rows(c, statements.BACKTEST_RUNS, {"limit": limit}))

    def view(self, run_id: int) -> BacktestView | None:
        """Run ``run_id`` with its equity, trades and candles; None when there is no such run."""
        found = self.db.run(lambda c: _rows(c, statements.BACKTEST_RUN, {"run_id": run_id}))
        if not found:
            return None
        run = found[0]
        trades = self.db.run(lambda c: _rows(c, statements.BACKTEST_TRADES, {"run_id": run_id}))
        timeframe = display_timeframe(run["timeframe"], run["data_start"], run["data_end"])
        equity = self.db.run(
            lambda c: self._equity(c, run_id, None if timeframe == run["timeframe"] else timeframe)
        )
        return view_of(run, self._candles(run, timeframe), equity, trade_dicts(trades))

    @staticmethod
    def _equity(conn: Any, run_id: int, timeframe: str | None) -> pd.DataFrame:
        """Every equity point, or with ``timeframe`` the last of each of its periods and their deepest
        drawdown (``BACKTEST_EQUITY_BY_PERIOD``: a year of 1m arrives as 2,190 rows, not 525,600)."""
        columns = ["time", "close", "cash", "position", "equity"]
        with conn.cursor(binary=True) as cursor:
            if timeframe is None:
                cursor.execute(statements.BACKTEST_EQUITY.text, {"run_id": run_id})
            else:
                period = TIMEFRAMES[timeframe].length
                cursor.execute(
                    statements.BACKTEST_EQUITY_BY_PERIOD.text, {"run_id": run_id, "period": period}
                )
                columns.append("drawdown")
            frame = pd.DataFrame(cursor.fetchall(), columns=columns)
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame.astype({c: float for c in columns[1:]})

    def _candles(self, run: Mapping[str, Any], timeframe: str) -> pd.DataFrame:
        rows = self.db.run(
            lambda c: queries.candles_between(
                c,
                run["exchange"],
                run["symbol"],
                timeframe,
                run["data_start"],
                run["data_end"],
                MAX_POINTS + 2,
            )
        )
        frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame.astype({c: float for c in ("open", "high", "low", "close", "volume")})


# -- the page --------------------------------------------------------------------------------------
class BacktestsPage(pn.viewable.Viewer):
    """The stored runs with their metrics; the chosen run (and a second to compare) drawn side by side."""

    run = param.Integer(default=NONE, doc="The run shown (its run_id; 0: none)")
    compare = param.Integer(default=NONE, doc="A second run shown beside it (0: none)")

    def __init__(self, reader: BacktestReader, **params: Any) -> None:
        super().__init__(**params)
        self.reader = reader
        self.table = pn.pane.HTML("", stylesheets=[STYLE], sizing_mode="stretch_width")
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["tcp-bt-alert"])
        self.run_select = pn.widgets.Select(label="Run", width=520, css_classes=["tcp-backtest-run"])
        self.compare_select = pn.widgets.Select(
            label="Compare with", width=520, css_classes=["tcp-backtest-compare"]
        )
        self.refresh_button = pn.widgets.Button(label="Refresh", margin=(26, 10, 10, 10), width=90)
        self.shown = pn.Row(sizing_mode="stretch_width", css_classes=["tcp-backtest-shown"])
        self.refresh_button.on_click(lambda _: self.refresh())
        self.run_select.link(self, value="run")
        self.compare_select.link(self, value="compare")
        self.param.watch(lambda _: self._show_runs(), ["run", "compare"])
        self.panels: dict[int, pn.viewable.Viewable] = {}
        """The runs drawn so far, by run_id (a stored run never changes)."""
        self.loaded = False
        """Whether the runs were read: on the first ``activate``, not when a session starts."""

    def activate(self) -> None:
        """The page is shown: read the runs the first time (later: the Refresh button)."""
        if not self.loaded:
            self.loaded = True
            self.refresh()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            heading("Stored runs"),
            self.table,
            pn.Row(self.run_select, self.compare_select, self.refresh_button),
            self.alert,
            self.shown,
            sizing_mode="stretch_width",
        )

    def refresh(self) -> None:
        """Re-read the list of runs; the newest is shown if none was chosen."""
        try:
            runs = self.reader.runs()
        except DataUnavailable as error:
            self._fail(str(error))
            return
        self.alert.visible = False
        self.table.object = (
            run_rows(runs) if runs else "<p>No backtest runs stored yet: run `python3 tcp.py backtest`.</p>"
        )
        options = {run_label(r): int(r["run_id"]) for r in runs}
        self.run_select.options = options
        self.compare_select.options = {"none": NONE, **options}
        if runs and self.run not in options.values():
            self.run_select.value = int(runs[0]["run_id"])
        else:
            self._show_runs()

    def _show_runs(self) -> None:
        chosen = [r for r in dict.fromkeys([self.run, self.compare]) if r != NONE]
        try:
            for run_id in chosen:
                if run_id not in self.panels:
                    view = self.reader.view(run_id)
                    self.panels[run_id] = (
                        pn.pane.HTML(f"Run #{run_id} is gone.") if view is None else run_panel(view)
                    )
        except DataUnavailable as error:
            self._fail(str(error))
            return
        self.alert.visible = False
        self.shown[:] = [self.panels[r] for r in chosen]

    def _fail(self, message: str) -> None:
        self.alert.object = message
        self.alert.visible = True
