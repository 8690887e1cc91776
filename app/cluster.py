"""Where this process stands in a Bytewax cluster, and the per-process share of its recovery store.

A flow runs as a cluster when ``python -m bytewax.run MODULE -i PROCESS_ID -a "host:port;host:port;..."``
starts it once per address (docs/scaling.md). ``bytewax.run`` also takes these from the environment:
``BYTEWAX_PROCESS_ID`` and ``BYTEWAX_ADDRESSES``, or on Kubernetes the pod's ordinal (``BYTEWAX_POD_NAME``
minus ``BYTEWAX_STATEFULSET_NAME-``) and the address list in ``BYTEWAX_HOSTFILE_PATH``. :func:`cluster_place`
reads them by the same rules, so the entry points know before the cluster connects whether they are one
process of several and which one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClusterPlace:
    """This process's index among ``addresses`` (none: a single process), and its recovery directory."""

    process: int = 0
    addresses: tuple[str, ...] = ()
    recovery_directory: Path | None = None

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


SINGLE = ClusterPlace()


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
    """The place ``python -m bytewax.run`` gives this process (its ``-i``/``-a``/``-r`` flags, else its
    environment variables); :data:`SINGLE` when not run by ``bytewax.run`` or not in a cluster."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if not _run_by_bytewax(argv):
        return SINGLE
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-i", "--process-id", type=int, default=None)
    parser.add_argument("-a", "--addresses", default=None)
    parser.add_argument("-r", "--recovery-directory", type=Path, default=None)
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
    listed = tuple(address for address in addresses.split(";") if address)
    if process is None or len(listed) < 2:
        return ClusterPlace(recovery_directory=recovery)
    return ClusterPlace(process, listed, recovery)


def own_partitions(place: ClusterPlace, partitions: int) -> list[int]:
    """The recovery partitions this process keeps: every ``processes``-th from its own index."""
    return list(range(place.process, partitions, place.processes))


def prepare_recovery_share(place: ClusterPlace, partitions: int) -> list[Path]:
    """In a cluster with a recovery directory, create this process's share of the ``partitions`` recovery
    partitions there if none of them exists yet; returns the files created.

    Bytewax needs every partition exactly once across the cluster, and any one process may hold any
    subset. So each process keeps its own disjoint share: on separate hosts each directory holds only
    its process's partitions (a full set initialised on every host would be several diverging copies
    of each partition), and on one host the processes may share a directory without racing."""
    directory = place.recovery_directory
    if directory is None or not place.clustered:
        return []
    mine = [directory / f"part-{index}.sqlite3" for index in own_partitions(place, partitions)]
    if any(path.exists() for path in mine):
        return []
    from bytewax.recovery import init_db_dir

    directory.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".init-", dir=directory))
    try:
        init_db_dir(scratch, partitions)
        for path in mine:
            os.replace(scratch / path.name, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return mine
