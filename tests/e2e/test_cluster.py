"""The replay as a Bytewax cluster stores exactly what one process stores.

Three tapes with disjoint instruments (BTC-USDT, XRP-ETH, MATIC-USDT-SWAP: three source partitions) are
replayed with ``python -m bytewax.run flows.replay -i I -a "host:port;..."`` into one database, and by a
single process into another database of the same PostgreSQL. The oracle is independent of the cluster
code: the rows the single process stored. Every stored relation is compared row for row (every column
but the insertion times the database stamps itself), rollups included, and so are the summaries: only
process 0 prints one, and it counts what the whole cluster wrote, as the single process's does.

(a) 2 processes over loopback, sharing one DATA_DIR as processes of one machine do.
(b) 3 processes in separate network namespaces acting as separate hosts (each with its own DATA_DIR),
    joined by a bridge to a namespace where PostgreSQL and Redis listen on TCP (tests/support/cluster_net).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.support.cluster_net import LAN_ADDRESS, TcpPostgres, TcpRedis, hosts_network, netns_problem

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TAPES = REPO_ROOT / "tests" / "data" / "tapes"
REPLAY_TAPES = ",".join(
    str(TAPES / name)
    for name in (
        "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv",
        "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv",
        "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv",
    )
)
RELATIONS = (
    "trades",
    "candles_1m",
    "candles_5m",
    "candles_1h",
    "candles_1d",
    "late_trades",
    "rejects",
    "indicators",
    "signals",
    "gaps",
    "candle_conflicts",
)
STAMPED = {"ingested_at", "inserted_at", "detected_at"}
"""Insertion times the database stamps itself: never equal between two runs."""
SUMMARY_TABLES = ("trades", "candles_1m", "late_trades", "rejects", "indicators", "signals")
RUN_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stored(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every relation compared, in a defined order."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for relation in RELATIONS:
            names = [
                name
                for (name,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                    "ORDER BY ordinal_position",
                    (relation,),
                )
                if name not in STAMPED
            ]
            columns = ", ".join(f'"{name}"' for name in names)
            rows[relation] = conn.execute(f"SELECT {columns} FROM {relation} ORDER BY {columns}").fetchall()
    return rows


def summary(output: str) -> dict[str, str]:
    """The summary's line per table (rows written), as printed."""
    lines = [line.strip() for line in output.splitlines()]
    return {table: line for line in lines for table in SUMMARY_TABLES if line.split(" ")[0] == table}


def env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "BYTEWAX_"))}
    return {
        **base,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REPLAY_TAPES": REPLAY_TAPES,
        "DATA_DIR": str(data_dir),
    }


REPLAY = [sys.executable, "-m", "bytewax.run", "flows.replay"]


def replay_alone(database_url: str, redis_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        REPLAY,
        cwd=REPO_ROOT,
        env=env(database_url, redis_url, data_dir),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def replay_cluster(
    addresses: Sequence[str], envs: Sequence[dict[str, str]], prefixes: Sequence[Sequence[str]]
) -> list[tuple[int, str, str]]:
    """Start one process per address at once; their exit codes, stdout and stderr."""
    processes = [
        subprocess.Popen(
            [*prefix, *REPLAY, "-i", str(i), "-a", ";".join(addresses)],
            cwd=REPO_ROOT,
            env=envs[i],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for i, prefix in enumerate(prefixes)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=RUN_TIMEOUT)
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def assert_same_as_alone(
    cluster: list[tuple[int, str, str]], alone: subprocess.CompletedProcess[str], one: str, many: str
) -> None:
    for i, (code, out, err) in enumerate(cluster):
        assert code == 0, f"process {i}: {out}{err}"
    (_, leader_out, _), others = cluster[0], cluster[1:]
    assert leader_out.count("Replay done") == 1
    assert all("Replay done" not in out + err for _, out, err in others)
    assert all("process 0 prints the summary" in err for _, _, err in others)
    assert f"written by {len(cluster)} processes\n" in leader_out
    assert summary(leader_out) == summary(alone.stdout) and len(summary(alone.stdout)) == len(SUMMARY_TABLES)
    expected, got = stored(one), stored(many)
    for relation in ("trades", "candles_1m", "candles_5m", "indicators", "signals"):
        assert expected[relation], f"the single process stored no {relation}"
    assert {"BTC-USDT", "XRP-ETH", "MATIC-USDT-SWAP"} <= {row[1] for row in expected["trades"]}
    for relation in RELATIONS:
        assert got[relation] == expected[relation], relation


@contextmanager
def databases(server: TcpPostgres, *names: str) -> Iterator[None]:
    with psycopg.connect(server.socket_url(), autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    for name in names:
        migrate(server.socket_url(name))
    yield


def test_two_processes_over_loopback_store_what_one_stores(tmp_path: Path) -> None:
    postgres = TcpPostgres(tmp_path / "pg", ["127.0.0.1"], free_port())
    redis = TcpRedis(tmp_path / "redis", ["127.0.0.1"], free_port())
    try:
        postgres.start()
        redis.start()
        with databases(postgres, "alone", "cluster"):
            alone = replay_alone(postgres.url("alone"), redis.url(), tmp_path / "alone")
            shared = env(postgres.url("cluster"), redis.url(), tmp_path / "shared")
            addresses = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
            cluster = replay_cluster(addresses, [shared, shared], [[], []])
            assert_same_as_alone(cluster, alone, postgres.socket_url("alone"), postgres.socket_url("cluster"))
    finally:
        redis.stop()
        postgres.stop()


def test_three_hosts_in_network_namespaces_store_what_one_process_stores(tmp_path: Path) -> None:
    problem = netns_problem()
    if problem:
        pytest.skip(problem)
    with hosts_network(3) as network:
        postgres = TcpPostgres(tmp_path / "pg", [LAN_ADDRESS], 5432, netns=network.lan)
        redis = TcpRedis(tmp_path / "redis", [LAN_ADDRESS], 6379, netns=network.lan)
        try:
            postgres.start()
            redis.start()
            with databases(postgres, "alone", "cluster"):
                # the single process runs outside the namespaces, over the servers' Unix sockets
                alone = replay_alone(
                    postgres.socket_url("alone"), f"unix://{redis.socket}", tmp_path / "alone"
                )
                envs = [env(postgres.url("cluster"), redis.url(), tmp_path / f"host{i}") for i in range(3)]
                addresses = [f"{network.address(i)}:2101" for i in range(3)]
                cluster = replay_cluster(addresses, envs, [network.run_in(i) for i in range(3)])
                assert_same_as_alone(
                    cluster, alone, postgres.socket_url("alone"), postgres.socket_url("cluster")
                )
        finally:
            redis.stop()
            postgres.stop()
