"""A process's place in a Bytewax cluster (read as ``bytewax.run`` reads it), its share of the recovery
store, and the embedded servers a process of a cluster refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cluster import SINGLE, ClusterPlace, cluster_place, own_partitions, prepare_recovery_share
from configs.errors import UserError

RUN = "/venv/lib/python3.11/site-packages/bytewax/run.py"


def test_the_place_comes_from_the_flags_of_bytewax_run() -> None:
    argv = [RUN, "flows.replay", "-w", "2", "-i", "1", "-a", "h0:2101;h1:2101;h2:2101", "-r", "/rec"]
    place = cluster_place(argv, {})
    assert place == ClusterPlace(1, ("h0:2101", "h1:2101", "h2:2101"), Path("/rec"), workers=2)
    assert place.clustered and place.processes == 3 and not place.leader


def test_the_place_comes_from_the_environment_as_bytewax_run_reads_it(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("flow-0.flow:2101\n\nflow-1.flow:2101\n")
    environ = {
        "BYTEWAX_POD_NAME": "flow-1",
        "BYTEWAX_STATEFULSET_NAME": "flow",
        "BYTEWAX_HOSTFILE_PATH": str(hostfile),
        "BYTEWAX_RECOVERY_DIRECTORY": "/var/recovery",
    }
    assert cluster_place([RUN, "flows.okx"], environ) == ClusterPlace(
        1, ("flow-0.flow:2101", "flow-1.flow:2101"), Path("/var/recovery")
    )
    plain = {"BYTEWAX_PROCESS_ID": "0", "BYTEWAX_ADDRESSES": "a:1;b:1"}
    assert cluster_place([RUN, "flows.okx"], plain) == ClusterPlace(0, ("a:1", "b:1"))


@pytest.mark.parametrize(
    "argv",
    [
        [RUN, "flows.replay"],  # one process
        [RUN, "flows.replay", "-w", "4"],  # several workers, one process
        [RUN, "flows.replay", "-i", "0", "-a", "localhost:2101"],  # a cluster of one
        ["/usr/bin/pytest", "-i", "1", "-a", "x:1;y:1"],  # not run by bytewax.run
    ],
)
def test_a_single_process_is_no_cluster(argv: list[str]) -> None:
    assert not cluster_place(argv, {}).clustered
    assert cluster_place(argv, {}).process == 0


def test_each_process_creates_its_own_disjoint_share_of_the_recovery_partitions(tmp_path: Path) -> None:
    addresses = ("a:1", "b:1", "c:1")
    shared = tmp_path / "shared"
    created = [prepare_recovery_share(ClusterPlace(i, addresses, shared), 5) for i in range(3)]
    assert [[path.name for path in paths] for paths in created] == [
        ["part-0.sqlite3", "part-3.sqlite3"],
        ["part-1.sqlite3", "part-4.sqlite3"],
        ["part-2.sqlite3"],
    ]
    assert sorted(path.name for path in shared.iterdir()) == [f"part-{i}.sqlite3" for i in range(5)]
    assert prepare_recovery_share(ClusterPlace(1, addresses, shared), 5) == []  # already there
    # on separate hosts, each directory holds its own share only
    host = tmp_path / "host1"
    prepare_recovery_share(ClusterPlace(1, addresses, host), 5)
    assert sorted(path.name for path in host.iterdir()) == ["part-1.sqlite3", "part-4.sqlite3"]
    assert own_partitions(ClusterPlace(2, addresses), 2) == []
    assert (
        prepare_recovery_share(SINGLE, 5) == []
        and prepare_recovery_share(ClusterPlace(0, addresses), 5) == []
    )


def test_a_process_of_a_cluster_starts_no_embedded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.resources

    monkeypatch.setattr(app.resources, "cluster_place", lambda: ClusterPlace(1, ("a:1", "b:1")))
    with pytest.raises(UserError, match="DATABASE_URL is not set, and process 1 of a cluster of 2"):
        app.resources.refuse_in_cluster("PostgreSQL")
    with pytest.raises(UserError, match="REDIS_URL"):
        app.resources.refuse_in_cluster("Redis")
    monkeypatch.setattr(app.resources, "cluster_place", lambda: SINGLE)
    app.resources.refuse_in_cluster("PostgreSQL")  # one process may start its own
