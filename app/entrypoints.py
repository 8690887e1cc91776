"""The flows as ``python -m bytewax.run`` runs them: each ``flow`` of a flow module is built here, on first
access, from the settings and the resources of a real run (app/resources.py).

The flow modules keep their graph factories (``flows.okx.live_flow``, ``flows.session.session_flow``)
and hand the wiring of a run to this module from their ``__getattr__``, so importing a flow module starts
nothing and ``flows/`` never decides which database, Redis or stop signal a run uses.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

import psycopg
from bytewax.dataflow import Dataflow

from app.cluster import ClusterPlace, cluster_place, prepare_recovery_share
from app.resources import check_tapes, database_url, production_sinks, settings_or_exit
from configs.errors import USER_ERROR_EXIT, UserError, database_problem, exit_on_user_error, report
from configs.settings import Settings
from connectors.cluster_board import ClusterBoard, channel_for
from connectors.database import DatabaseSink
from flows.replay import ReplayDatabaseSink, replay_flow, tape_source
from flows.replay_progress import ReplayProgress

log = logging.getLogger("tcp.flows")
session_log = logging.getLogger("tcp.flows.session")


def graceful_stop() -> threading.Event:
    """An event set by the first SIGINT/SIGTERM, for live sources to end their input so the flow
    closes its sinks and exits cleanly; a second signal stops at once."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("%s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def place_in_cluster(settings: Settings) -> ClusterPlace:
    """This process's place in its cluster; in one with a recovery directory, its share of the recovery
    partitions is created there first (``app.cluster.prepare_recovery_share``)."""
    place = cluster_place()
    created = prepare_recovery_share(place, settings.recovery.partitions)
    if created:
        log.info("process %d: created its recovery partitions %s", place.process, [p.name for p in created])
    return place


def live_dataflow() -> Dataflow:
    """``flows.okx``'s ``flow``: every configured exchange's websocket for its instruments into the resolved
    database and Redis, continuing from where the stored data end, with the bots and user indicators
    of the control tables (docs/control.md); the first SIGINT/SIGTERM ends the inputs; restarts by
    ``up`` are reported in the collectors' health."""
    # The live and session flows' modules are imported where used: a replay loads none of them.
    from connectors.bot_store import BotSink, BotStates
    from connectors.control_store import ControlStore
    from connectors.metrics import serve_metrics
    from connectors.resume import StoredHistory, load_followed_ends
    from flows.bots import BotResume
    from flows.control import ControlSource
    from flows.health import Restarts
    from flows.okx import live_flow, live_source

    settings, indicators = settings_or_exit()
    place = place_in_cluster(settings)
    serve_metrics(settings.metrics.port, settings.metrics.host, place.process)
    url = database_url(settings)
    sinks = production_sinks(settings, url)
    timeout = max(1, round(settings.database.connect_timeout_seconds))
    sinks.bots = [BotSink(url, timeout)]
    stored = load_followed_ends(url, settings.followed())
    stop = graceful_stop()
    source = live_source(settings, stored, stop)
    restarts = Restarts.from_environ(os.environ)
    history = StoredHistory(url)
    control = ControlSource(ControlStore(url, timeout), stop)
    bots = BotResume(BotStates(url, connect_timeout=timeout).runner, history.range)
    return live_flow(settings, sinks, source, indicators, stored, history, restarts, control, bots)


def session_dataflow() -> Dataflow:
    """``flows.session``'s ``flow``: the recorded session named by ``SESSION_FILES`` into the resolved
    database. The session is checked before any database is started."""
    from connectors.okx.session import SessionSource
    from connectors.okx.session_format import SessionError
    from connectors.resume import StoredHistory, load_stored_ends
    from flows.session import recorded_contract_values, session_flow, session_paths

    settings, indicators = settings_or_exit()
    try:
        source = SessionSource(session_paths(settings.session_files))
    except SessionError as error:
        report(
            UserError(
                f"SESSION_FILES: {error}",
                "Name a recorded session: its directory under "
                "DATA_DIR/sessions (RECORDING__ENABLED=true records one) or its files.",
            ),
            error,
        )
        raise SystemExit(USER_ERROR_EXIT) from None
    place_in_cluster(settings)
    url = database_url(settings)
    stored = load_stored_ends(url, source.header.exchange, source.instruments)
    if stored.last_trades != source.positions:
        session_log.warning(
            "the database does not end where the recorded session began (stored %s, recorded %s): "
            "the rows will differ from the live run's",
            stored.last_trades,
            source.positions,
        )
    # The database stores the contract values the candles are built with: the recorded ones.
    values = recorded_contract_values(dict(source.header.flow), settings)
    sinks = production_sinks(settings.model_copy(update={"contract_values": values}), url)
    return session_flow(settings, sinks, source, indicators, stored, StoredHistory(url))


def replay_dataflow() -> Dataflow:
    """``flows.replay``'s ``flow``: the tapes named by ``REPLAY_TAPES`` into the resolved database, with a
    progress line and a summary. The tapes are checked before any database is started."""
    settings, indicators = settings_or_exit()
    with exit_on_user_error():
        scanned = check_tapes(settings.replay_tapes, "REPLAY_TAPES")
        source = tape_source(settings, scanned=scanned)
    place = place_in_cluster(settings)
    url = database_url(settings)
    sinks = production_sinks(settings, url)
    assert isinstance(sinks.database, DatabaseSink)
    board = replay_board(settings, place, url)
    progress = ReplayProgress(source, cluster=board).start()
    sinks.database = ReplayDatabaseSink(sinks.database, source, progress, cluster=board)
    return replay_flow(settings, sinks, indicators, source)


def replay_board(settings: Settings, place: ClusterPlace, url: str) -> ClusterBoard | None:
    """In a cluster, the board on which the processes report to process 0 (which starts listening now,
    before the cluster connects); its channel is derived alike by every process from the cluster's
    addresses and the tapes."""
    if not place.clustered:
        return None
    tapes = sorted(path.name for path in settings.replay_tapes)
    channel = channel_for(place.addresses, tapes, str(settings.replay_end))
    board = ClusterBoard(
        url, channel, place.process, place.processes, settings.database.connect_timeout_seconds
    )
    if place.leader:
        with exit_on_user_error():
            try:
                board.listen()
            except psycopg.Error as error:
                raise database_problem(error, url, "DATABASE_URL", embedded=False) from error
    return board
