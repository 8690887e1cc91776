"""The Bots page: paper-trading bots, their summary, one bot's equity, position and fills, and (with
control on) the create form and the start, pause, stop and delete actions.

- ``BotReader``: the page's reads, on the dashboard's read-only pool through the named statements of
  ``sql.bot_statements`` (the bots with their last equity point and fill count; one bot's equity and
  fills) and the candle views.
- ``BotsPage``: the banner (paper trading only), the summary table, a bot selector, the selected bot's
  position and figures (``dashboards.bot_figures``: the backtest's figure code), and, when the page is
  given a control store, the actions and the create form (``dashboards.bot_form``). Without one the page
  is read-only and says how to turn control on. Writes go through ``connectors.control_store`` only;
  every read stays on the read-only pool. ``refresh`` re-reads (the app calls it every few seconds
  while the tab is shown); the selected bot is redrawn only when it has a new equity point, fill or state.

Names for tests: rows ``data-testid="bot-row"`` (``data-bot``, ``data-state``), ``tcp-bot-select``,
``tcp-bot-start``/``-pause``/``-stop``/``-delete``, ``tcp-bot-confirm-delete``, ``tcp-bot-cancel-delete``,
``tcp-bot-action-message``, ``tcp-bots-readonly``, ``tcp-bots-banner``, the position
``data-testid="bot-position"`` and the Bokeh source ``tcp-bot-fills``; the form's in ``bot_form``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd
import panel as pn
import psycopg
from psycopg.rows import dict_row

from configs.bots import BotConfig
from connectors.control_store import BotRecord, ControlError, ControlStore
from dashboards.backtest_report import STYLE, heading
from dashboards.bot_figures import bot_layout, bot_rows, empty_fills, position_html, start_cash
from dashboards.bot_form import BotForm, Outcome
from dashboards.data import DataUnavailable, ReadOnlyDatabase, candle_frame
from market.timeframes import TIMEFRAMES
from sql import bot_statements, queries

__all__ = ["BANNER", "BotReader", "BotsPage", "READ_ONLY"]

BANNER = "Paper trading only: no order ever leaves this machine."
READ_ONLY = (
    "Read-only: bots are shown, not changed. To create, start, pause, stop and delete bots from this "
    "page, start the dashboard with control enabled: `python3 tcp.py up --control`."
)
NO_CONTROL_URL = (
    "Control is on (`DASHBOARD__CONTROL`) but no control connection was given (`DASHBOARD_CONTROL_URL`): "
    "the page is read-only. `python3 tcp.py up --control` sets both."
)
CANDLES_SHOWN = 1000
"""The newest candles of a bot's series drawn with its equity."""
BotAction = Callable[[str], BotRecord]
T = TypeVar("T")
log = logging.getLogger(__name__)


def _written(write: Callable[[Any], T], argument: Any) -> T:
    """``write(argument)`` through the control store; a database failure becomes a ``ControlError``
    with a message for the page (the details go to the log)."""
    try:
        return write(argument)
    except psycopg.Error as error:
        log.warning("control write failed: %s: %s", type(error).__name__, error)
        raise ControlError(
            f"the database did not confirm the change ({type(error).__name__}); the table shows what is kept"
        ) from None


class BotReader:
    """The Bots page's reads on the read-only pool; failures raise ``DataUnavailable``."""

    def __init__(self, db: ReadOnlyDatabase) -> None:
        self.db = db

    def _rows(self, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
        def read(conn: Any) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cursor:
                cursor.execute(statement.text, params)
                return list(cursor.fetchall())

        return self.db.run(read)

    def summary(self) -> list[dict[str, Any]]:
        """Every bot, by name, with its last equity point (``time``, ``close``, ``cash``, ``position``,
        ``equity``; None before its first candle) and its number of fills."""
        return self._rows(bot_statements.BOT_SUMMARY, {})

    def equity(self, bot_id: int) -> pd.DataFrame:
        """The bot's newest equity points (at most ``CANDLES_SHOWN``), oldest first."""
        rows = self._rows(bot_statements.BOT_EQUITY, {"bot_id": bot_id, "limit": CANDLES_SHOWN})
        frame = pd.DataFrame(rows, columns=["time", "close", "cash", "position", "equity"])
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame.astype({c: float for c in ("close", "cash", "position", "equity")})

    def fills(self, bot_id: int, since: datetime | None) -> pd.DataFrame:
        """The bot's fills at or after ``since`` (all when None), oldest first."""
        rows = self._rows(bot_statements.BOT_FILLS, {"bot_id": bot_id, "since": since})
        if not rows:
            return empty_fills()
        frame = pd.DataFrame(rows)
        for column in ("time", "signal_time"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def candles(self, bot: Mapping[str, Any], start: datetime, end: datetime) -> pd.DataFrame:
        """The bot's series' candles closing in ``(start, end]``."""
        rows = self.db.run(
            lambda c: queries.candles_between(
                c, bot["exchange"], bot["symbol"], bot["timeframe"], start, end, CANDLES_SHOWN + 2
            )
        )
        return candle_frame(rows)


class BotsPage(pn.viewable.Viewer):
    """All bots and the selected one; the actions and the create form when given a control store."""

    def __init__(
        self,
        reader: BotReader,
        control: ControlStore | None,
        instruments: Sequence[str],
        read_only_note: str = READ_ONLY,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.reader, self.control = reader, control
        self.banner = pn.pane.Alert(BANNER, alert_type="warning", css_classes=["tcp-bots-banner"])
        self.note = pn.pane.Markdown(
            read_only_note, visible=control is None, css_classes=["tcp-bots-readonly"]
        )
        self.table = pn.pane.HTML("", stylesheets=[STYLE], sizing_mode="stretch_width")
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["tcp-bots-alert"])
        self.select = pn.widgets.Select(label="Bot", width=260, css_classes=["tcp-bot-select"])
        self.select.param.watch(lambda _: self._show_selected(force=True), "value")
        self.message = pn.pane.Alert("", visible=False, css_classes=["tcp-bot-action-message"])
        self.position = pn.pane.HTML("", sizing_mode="stretch_width")
        self.plot = pn.pane.Bokeh(sizing_mode="stretch_width", css_classes=["tcp-bot-chart"])
        self.actions = pn.Row(visible=control is not None)
        self.confirm = pn.Row(visible=False)
        self.form: BotForm | None = None
        self.buttons: dict[str, pn.widgets.Button] = {}
        """With control: ``start``, ``pause``, ``stop``, ``delete``, and the confirmation's ``confirm`` and
        ``cancel``."""
        self.doomed: str | None = None
        """The bot the delete confirmation asks about (the one selected when Delete was clicked)."""
        if control is not None:
            self._control_widgets(control, instruments)
        self.bots: dict[str, dict[str, Any]] = {}
        """The last summary read, by name."""
        self.drawn: tuple[Any, ...] | None = None
        """What the selected bot's figures show: its name, last equity time, fills and state."""
        self.loaded = False

    def _control_widgets(self, control: ControlStore, instruments: Sequence[str]) -> None:
        verbs: dict[str, BotAction] = {
            "start": control.start_bot,
            "pause": control.pause_bot,
            "stop": control.stop_bot,
        }
        buttons = self.buttons
        buttons.update({verb: self._action_button(verb, act) for verb, act in verbs.items()})
        buttons["delete"] = pn.widgets.Button(
            label="Delete", color="danger", width=80, css_classes=["tcp-bot-delete"]
        )
        buttons["delete"].on_click(lambda _: self._ask_delete())
        self.actions[:] = list(buttons.values())
        buttons["confirm"] = pn.widgets.Button(
            label="Delete it", color="danger", width=100, css_classes=["tcp-bot-confirm-delete"]
        )
        buttons["cancel"] = pn.widgets.Button(label="Cancel", width=80, css_classes=["tcp-bot-cancel-delete"])
        buttons["confirm"].on_click(lambda _: self._delete())
        buttons["cancel"].on_click(lambda _: setattr(self.confirm, "visible", False))
        self.question = pn.pane.HTML("")
        self.confirm[:] = [self.question, buttons["confirm"], buttons["cancel"]]
        self.form = BotForm(instruments, self._create)

    def _action_button(self, verb: str, act: BotAction) -> pn.widgets.Button:
        button = pn.widgets.Button(label=verb.capitalize(), width=80, css_classes=[f"tcp-bot-{verb}"])
        button.on_click(lambda _: self._act(verb, act))
        return button

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.banner,
            self.note,
            heading("Bots"),
            self.table,
            self.alert,
            pn.Row(self.select, pn.Column(self.actions, margin=(20, 0, 0, 0))),
            self.confirm,
            self.message,
            self.position,
            self.plot,
            *([] if self.form is None else [self.form]),
            sizing_mode="stretch_width",
            css_classes=["tcp-bots-page"],
        )

    def activate(self) -> None:
        """The page is shown: read the bots the first time (later: ``refresh`` every few seconds)."""
        if not self.loaded:
            self.loaded = True
            self.refresh()

    def refresh(self) -> None:
        """Re-read the bots; redraw the selected one if it has changed."""
        try:
            bots = self.reader.summary()
        except DataUnavailable as error:
            self._fail(str(error))
            return
        self.alert.visible = False
        self.bots = {str(b["name"]): b for b in bots}
        self.select.options = list(self.bots)
        if bots and self.select.value not in self.bots:
            self.select.value = str(bots[0]["name"])  # shows it
        else:
            self._show_selected()
        self.table.object = (
            bot_rows(bots, self.select.value)
            if bots
            else "<p>No bots yet: create one below (control on) or with `python3 tcp.py bots add`.</p>"
        )

    def _show_selected(self, force: bool = False) -> None:
        bot = self.bots.get(self.select.value or "")
        if bot is None:
            self.position.object, self.plot.object, self.drawn = "", None, None
            return
        version = (bot["name"], bot.get("time"), bot.get("fills"), bot["state"])
        if version == self.drawn and not force:
            return
        try:
            self._draw(bot)
        except DataUnavailable as error:
            self._fail(str(error))
            return
        self.drawn = version

    def _draw(self, bot: Mapping[str, Any]) -> None:
        equity = self.reader.equity(int(bot["bot_id"]))
        if not len(equity):
            self.position.object = position_html(bot["symbol"], equity, empty_fills())
            self.plot.object = None
            return
        length = TIMEFRAMES[str(bot["timeframe"])].length
        first, last = equity["time"].iloc[0].to_pydatetime(), equity["time"].iloc[-1].to_pydatetime()
        fills = self.reader.fills(int(bot["bot_id"]), first - length)
        candles = self.reader.candles(bot, first - length, last)
        self.position.object = position_html(bot["symbol"], equity, fills)
        title = f"{bot['name']}: {bot['exchange']} {bot['symbol']} {bot['timeframe']} ({bot['state']})"
        self.plot.object = bot_layout(candles, equity, fills, start_cash(bot["config"] or {}), title)

    # -- control ---------------------------------------------------------------------------------
    def _create(self, config: BotConfig) -> str:
        assert self.control is not None
        record = _written(self.control.add_bot, config)
        self.refresh()
        self.select.value = record.name
        return f"Bot {record.name} created ({record.state}); start it to trade."

    def _act(self, verb: str, act: BotAction) -> None:
        name = self.select.value
        if not name:
            self._say("No bot chosen.", "danger")
            return
        try:
            record = _written(act, name)
        except ControlError as error:
            self._say(str(error), "danger")
            return
        self._say(f"Bot {name} is {record.state}.", "success")
        self.refresh()

    def _ask_delete(self) -> None:
        self.doomed = self.select.value
        if self.doomed:
            self.question.object = (
                f"Delete bot <b>{html.escape(self.doomed)}</b> with its fills and equity? "
                "This cannot be undone."
            )
            self.confirm.visible = True

    def _delete(self) -> None:
        assert self.control is not None
        name, self.confirm.visible = self.doomed, False
        if not name:
            return
        try:
            _written(self.control.remove_bot, name)
        except ControlError as error:
            self._say(str(error), "danger")
            return
        self._say(f"Bot {name} deleted.", "success")
        self.refresh()

    def _say(self, text: str, kind: Outcome) -> None:
        self.message.object, self.message.alert_type, self.message.visible = text, kind, True

    def _fail(self, message: str) -> None:
        self.alert.object = message
        self.alert.visible = True
