"""The replay cluster's reports to process 0 over a real PostgreSQL (LISTEN/NOTIFY)."""

from __future__ import annotations

import time

import pytest

from connectors.cluster_board import ClusterBoard, channel_for


def test_every_process_derives_the_same_channel_and_another_run_another() -> None:
    one = channel_for(("a:1", "b:1"), ["x.csv", "y.csv"], "None")
    assert one == channel_for(("a:1", "b:1"), ["x.csv", "y.csv"], "None")
    assert one != channel_for(("a:1", "b:1"), ["x.csv"], "None")
    assert one.startswith("tcp_replay_") and len(one) < 63


def test_process_0_hears_the_others_progress_and_tallies(pg_url: str) -> None:
    channel = channel_for("test", pg_url)
    leader = ClusterBoard(pg_url, channel, 0, 3).listen()
    one, two = ClusterBoard(pg_url, channel, 1, 3), ClusterBoard(pg_url, channel, 2, 3)
    try:
        one.report_progress(100)
        two.report_progress(50)
        one.report_progress(250)
        deadline = time.monotonic() + 10
        while leader.others_read() != 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leader.others_read() == 300
        assert one.report_done(400, {"rows": {"signals": 2}})
        tallies, missing = leader.wait_for_others(0.5)
        assert tallies == [{"rows": {"signals": 2}}] and missing == [2]
        assert two.report_done(60, {"rows": {"signals": 1}})
        tallies, missing = leader.wait_for_others(10)
        assert tallies == [{"rows": {"signals": 2}}, {"rows": {"signals": 1}}] and missing == []
        assert leader.others_read() == 460
    finally:
        for board in (leader, one, two):
            board.close()


def test_a_report_too_large_for_a_notification_is_refused(pg_url: str) -> None:
    board = ClusterBoard(pg_url, channel_for("big"), 1, 2)
    with pytest.raises(ValueError, match="over"):
        board.report_done(1, {"ranges": ["x" * 9000]})
    board.close()


def test_a_process_that_cannot_reach_the_database_says_so() -> None:
    board = ClusterBoard("postgresql://nobody@127.0.0.1:1/none", channel_for("x"), 1, 2, connect_timeout=1)
    board.report_progress(5)  # best effort: no error
    assert board.report_done(5, {}) is False


def test_a_process_meets_the_earlier_ones_once_their_ports_listen(pg_url: str) -> None:
    """Process 1 waits until process 0's cluster port listens, whether it asks before or after process 0
    announces; process 0 (nobody before it) does not wait."""
    import socket
    import threading

    from connectors.cluster_board import listening_on

    channel = channel_for("meet", pg_url)
    first, second = socket.socket(), socket.socket()
    first.bind(("127.0.0.1", 0))
    second.bind(("127.0.0.1", 0))
    port0, port1 = first.getsockname()[1], second.getsockname()[1]
    assert listening_on(port0) is False
    leader = ClusterBoard(pg_url, channel, 0, 3).listen()
    one, two = ClusterBoard(pg_url, channel, 1, 3), ClusterBoard(pg_url, channel, 2, 3)
    try:
        assert leader.meet(port0) is True  # nothing to wait for
        assert one.meet(port1, timeout=0.5) is False  # process 0's port does not listen yet
        met: list[bool] = []
        waiting = threading.Thread(target=lambda: met.append(two.meet(None, timeout=10)))
        waiting.start()
        first.listen()
        second.listen()
        waiting.join(timeout=15)
        assert met == [True] and listening_on(port0) is True
        late = ClusterBoard(pg_url, channel, 1, 3)  # asks after process 0 announced
        assert late.meet(port1, timeout=10) is True
        late.close()
    finally:
        for board in (leader, one, two):
            board.close()
        first.close()
        second.close()


def test_a_process_that_cannot_reach_the_database_does_not_wait_to_meet() -> None:
    board = ClusterBoard("postgresql://nobody@127.0.0.1:1/none", channel_for("y"), 1, 2, connect_timeout=1)
    assert board.meet(2101, timeout=30) is False
    board.close()
