"""Where this process stands in a Bytewax cluster, and which worker Bytewax gives a key.

A flow runs as a cluster when ``python -m bytewax.run MODULE -i PROCESS_ID -a "host:port;host:port;..."``
starts it once per address (docs/scaling.md), each with ``-w`` worker threads (default 1). ``bytewax.run``
also takes these from the environment: ``BYTEWAX_PROCESS_ID`` and ``BYTEWAX_ADDRESSES``, or on Kubernetes
the pod's ordinal (``BYTEWAX_POD_NAME`` minus ``BYTEWAX_STATEFULSET_NAME-``) and the address list in
``BYTEWAX_HOSTFILE_PATH``. :func:`cluster_place` reads them by the same rules, so a flow knows before the
cluster connects whether it is one process of several and which one.

:func:`key_owner` is Bytewax's own routing of a keyed stream (``stateful_batch`` and the operators built on
it): the key's UTF-8 bytes and a 0xFF terminator through SipHash-1-3 with zero keys (Rust's
``DefaultHasher`` over a ``String``), modulo the cluster's worker count; worker ``w`` runs in process
``w // workers`` (``tests/flows/test_placement.py`` checks it against a real cluster of workers). A
replay uses it to read each tape on the worker that builds its instrument's candles, so no trade
crosses between processes. Output never depends on it: Bytewax routes by key whatever reads the tape.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_MASK = (1 << 64) - 1


def _rotl(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _MASK


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes) -> int:
    """SipHash-1-3 of ``data`` with the keys 0, 0 (Rust's ``std::collections::hash_map::DefaultHasher``)."""
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
    whole = len(data) - len(data) % 8
    for start in range(0, whole, 8):
        m = int.from_bytes(data[start : start + 8], "little")
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3 ^ m)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3 ^ last)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def key_owner(key: str, workers: int) -> int:
    """The worker (index in the whole cluster) to which Bytewax routes ``key`` among ``workers``."""
    return siphash13(key.encode() + b"\xff") % workers


@dataclass(frozen=True)
class ClusterPlace:
    """This process's index among ``addresses`` (none: a single process), its recovery directory and its
    worker threads (``-w``)."""

    process: int = 0
    addresses: tuple[str, ...] = ()
    recovery_directory: Path | None = None
    workers: int = 1

    @property
    def processes(self) -> int:
        return max(1, len(self.addresses))

    @property
    def clustered(self) -> bool:
        return self.processes > 1

    @property
    def leader(self) -> bool:
        """Process 0: the one that prints, refreshes and waits for the others."""
        return self.process == 0

    def builds(self, key: str) -> bool:
        """Whether Bytewax routes ``key`` to one of this process's workers (always, for one process)."""
        return key_owner(key, self.processes * self.workers) // self.workers == self.process


SINGLE = ClusterPlace()


def cluster_port(place: ClusterPlace) -> int | None:
    """The TCP port on which this process listens for the others (its ``host:port`` address)."""
    if not place.clustered:
        return None
    _, _, port = place.addresses[place.process].rpartition(":")
    return int(port) if port.isdigit() else None


def _run_by_bytewax(argv: Sequence[str]) -> bool:
    script = Path(argv[0]) if argv else Path()
    return script.name == "run.py" and script.parent.name == "bytewax"


def _hostfile(environ: Mapping[str, str]) -> str | None:
    path = environ.get("BYTEWAX_HOSTFILE_PATH")
    if not path:
        return None
    lines = Path(path).read_text().splitlines()
    return ";".join(line.strip() for line in lines if line.strip())


def cluster_place(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ClusterPlace:
    """The place ``python -m bytewax.run`` gives this process (its ``-i``/``-a``/``-r``/``-w`` flags, else
    its environment variables); :data:`SINGLE` when not run by ``bytewax.run`` or not in a cluster."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if not _run_by_bytewax(argv):
        return SINGLE
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-i", "--process-id", type=int, default=None)
    parser.add_argument("-a", "--addresses", default=None)
    parser.add_argument("-r", "--recovery-directory", type=Path, default=None)
    parser.add_argument("-w", "--workers-per-process", type=int, default=None)
    flags, _ = parser.parse_known_args(list(argv[1:]))
    process = flags.process_id
    if process is None and environ.get("BYTEWAX_PROCESS_ID"):
        process = int(environ["BYTEWAX_PROCESS_ID"])
    pod, statefulset = environ.get("BYTEWAX_POD_NAME"), environ.get("BYTEWAX_STATEFULSET_NAME")
    if process is None and pod and statefulset:
        process = int(pod.replace(statefulset + "-", ""))
    addresses = flags.addresses or environ.get("BYTEWAX_ADDRESSES") or _hostfile(environ) or ""
    recovery = flags.recovery_directory or (
        Path(environ["BYTEWAX_RECOVERY_DIRECTORY"]) if environ.get("BYTEWAX_RECOVERY_DIRECTORY") else None
    )
    workers = max(1, flags.workers_per_process or int(environ.get("BYTEWAX_WORKERS_PER_PROCESS") or 1))
    listed = tuple(address for address in addresses.split(";") if address)
    if process is None or len(listed) < 2:
        return ClusterPlace(recovery_directory=recovery, workers=workers)
    return ClusterPlace(process, listed, recovery, workers)
