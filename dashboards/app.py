"""The dashboard app: ``panel serve dashboards/app.py --address 127.0.0.1 --port 5006``.

Settings are loaded once per server process (``DATABASE_URL``, ``REDIS_URL``, instruments, indicator
config); the database pool and the live hub are shared by every session. ``REDIS_URL`` is optional:
without it (or while Redis is unreachable) the dashboard runs on the database alone and says "live
updates off". Each session gets its own chart, health, backtests and bots views (the runs are read when
the Backtests tab is first shown) and three periodic callbacks (live updates every 0.5 s, health every
5 s and the bots every 2 s while their tab is shown), stopped when the session ends. The instrument
list is read when a page loads: the configured instruments, then the others the database holds. Any
failure shows a message, never a traceback.

Control (creating and changing bots and user indicators) is off unless ``DASHBOARD__CONTROL=true``; then
the writes go through one ``ControlStore`` per server process on ``DASHBOARD_CONTROL_URL`` (the narrow
role ``tcp_control``; ``python3 tcp.py up --control`` sets both). Every read stays on the read-only pool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import panel as pn
from bokeh.application.application import SessionContext
from panel.viewable import ServableMixin

from configs.indicators import IndicatorsConfig, load_indicator_config
from configs.settings import ConfigError, Settings, load_settings
from connectors.control_store import ControlStore
from dashboards.backtests import BacktestReader, BacktestsPage
from dashboards.bots import NO_CONTROL_URL, READ_ONLY, BotReader, BotsPage
from dashboards.chart_store import ChartStore
from dashboards.data import DashboardData, DataUnavailable, series_name
from dashboards.health import HealthView
from dashboards.shaping import instrument_list
from dashboards.views import CandleChart

log = logging.getLogger("tcp.dashboard")

LIVE_PERIOD_MS = 500
HEALTH_PERIOD_MS = 5000
BOTS_PERIOD_MS = 2000
CONTROL_URL = "DASHBOARD_CONTROL_URL"
"""Where the control store connects (``up --control`` sets it); read only with control on."""
TITLE = "TCP Dashboard"
Page = pn.viewable.Viewable | ServableMixin
"""A session's page: the template, or a message when the dashboard cannot start."""
Stop = Callable[[], None]
"""What to call when the session ends: stop a periodic callback, unregister the chart's live queue."""


def shared_settings() -> Settings:
    return pn.state.as_cached("tcp-dashboard-settings", load_settings)


def shared_indicators(settings: Settings) -> IndicatorsConfig:
    return pn.state.as_cached(
        "tcp-dashboard-indicators", load_indicator_config, path=settings.indicators_config
    )


def shared_data(settings: Settings) -> DashboardData:
    if settings.database_url is None:
        raise ConfigError(
            "no database: DATABASE_URL is not set (`python3 tcp.py up` sets it; REDIS_URL is optional)."
        )
    return pn.state.as_cached(
        "tcp-dashboard-data",
        DashboardData.connect,  # type: ignore[arg-type]  # Panel calls fn(**kwargs); its hint says fn()
        database_url=settings.database_url.get_secret_value(),
        redis_url=None if settings.redis_url is None else settings.redis_url.get_secret_value(),
        pool_max_size=settings.database.pool_max_size,
    )


def shared_control(settings: Settings) -> tuple[ControlStore | None, str]:
    """The control store of this server process, or None and why the page is read-only."""
    if not settings.dashboard.control:
        return None, READ_ONLY
    url = os.environ.get(CONTROL_URL)
    if not url:
        return None, NO_CONTROL_URL
    return pn.state.as_cached("tcp-dashboard-control", ControlStore, url=url), ""  # type: ignore[arg-type]


def instruments(settings: Settings, data: DashboardData) -> list[str]:
    """The configured instruments first, then the others with stored candles (none if unreachable)."""
    try:
        stored = data.db.symbols()
    except DataUnavailable:
        stored = []
    return instrument_list([series_name(*followed) for followed in settings.selection], stored)


def message_page(text: str) -> pn.viewable.Viewable:
    return pn.Column(
        pn.pane.Markdown(f"# {TITLE}"),
        pn.pane.Alert(text, alert_type="danger", css_classes=["tcp-app-error"]),
    )


def build_app() -> tuple[Page, list[Stop]]:
    """The page of one session and what to call when it ends."""
    try:
        settings = shared_settings()
        config = shared_indicators(settings)
        data = shared_data(settings)
    except ConfigError as error:
        return message_page(f"The dashboard cannot start: {error}"), []
    control, read_only = shared_control(settings)
    listed = instruments(settings, data)
    store = ChartStore(data, listed, config)
    health = HealthView(data)
    backtests = BacktestsPage(BacktestReader(data.db))
    bots = BotsPage(BotReader(data.db), control, listed, read_only)
    tabs = pn.Tabs(
        ("Chart", CandleChart(store, control=control)),
        ("Health", health),
        ("Backtests", backtests),
        ("Bots", bots),
        dynamic=False,
        sizing_mode="stretch_width",
        css_classes=["tcp-tabs"],
    )

    def refresh_shown_health() -> None:
        if tabs.active == 1:
            health.refresh()

    def refresh_shown_bots() -> None:
        if tabs.active == 3:
            bots.refresh()

    live = pn.state.add_periodic_callback(_guarded(store.poll_live), period=LIVE_PERIOD_MS)
    checks = pn.state.add_periodic_callback(_guarded(refresh_shown_health), period=HEALTH_PERIOD_MS)
    following = pn.state.add_periodic_callback(_guarded(refresh_shown_bots), period=BOTS_PERIOD_MS)
    tabs.param.watch(lambda _: refresh_shown_health(), "active")
    tabs.param.watch(lambda _: backtests.activate() if tabs.active == 2 else None, "active")
    tabs.param.watch(lambda _: bots.activate() if tabs.active == 3 else None, "active")
    template = pn.template.BootstrapTemplate(title=TITLE, main=[tabs], header_background="#263238")
    return template, [live.stop, checks.stop, following.stop, store.close]


def _guarded(callback: Callable[[], object]) -> Callable[[], None]:
    """A periodic callback that logs an unexpected error instead of ending the session's updates."""

    def run() -> None:
        try:
            callback()
        except Exception:
            log.exception("dashboard update failed")

    return run


def _stop(handles: list[Stop]) -> Callable[[SessionContext], None]:
    def on_destroyed(_: SessionContext) -> None:
        for stop in handles:
            stop()

    return on_destroyed


def session_page() -> Page:
    """Build one session's page and arrange for its callbacks to stop when the session ends."""
    try:
        page, handles = build_app()
    except Exception:
        log.exception("the dashboard page could not be built")
        page, handles = (
            message_page("The dashboard hit an unexpected error; the server log has the details."),
            [],
        )
    if handles:
        pn.state.on_session_destroyed(_stop(handles))
    return page


if __name__.startswith("bokeh_app"):
    session_page().servable(title=TITLE)
elif __name__ == "__main__":
    _settings = load_settings()
    pn.serve(
        session_page, address=_settings.dashboard.host, port=_settings.dashboard.port, show=False, title=TITLE
    )
