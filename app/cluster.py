"""This process's share of a Bytewax cluster's recovery store; its place in the cluster is read by
:mod:`flows.placement` (re-exported here for the entry points).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from flows.placement import SINGLE, ClusterPlace, cluster_place

__all__ = ["SINGLE", "ClusterPlace", "cluster_place", "own_partitions", "prepare_recovery_share"]


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
