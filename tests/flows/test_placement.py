"""Which worker Bytewax gives a key (``flows.placement.key_owner``), against Bytewax's own routing: a
dataflow of several workers records, for each key, the worker whose keyed step received it."""

from __future__ import annotations

import threading

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from flows.placement import ClusterPlace, key_owner, siphash13

KEYS = [f"K{i}-USDT" for i in range(60)] + ["BTC-USDT", "ETH-USDT", "XRP-ETH", "MATIC-USDT-SWAP", "é-€", ""]


class _Where(DynamicSink[str]):
    """Records the worker on which each key arrives."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[str]:
        sink = self

        class _Partition(StatelessSinkPartition[str]):
            def write_batch(self, items: list[str]) -> None:
                with sink.lock:
                    sink.seen.update(dict.fromkeys(items, worker_index))

        return _Partition()


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_key_owner_is_the_worker_bytewax_routes_the_key_to(workers: int) -> None:
    where = _Where()
    flow = Dataflow("where")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(KEYS)), lambda key: key)
    routed = op.stateful_map("state", keyed, lambda state, key: (state, key))
    op.output("out", op.key_rm("unkey", routed), where)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert where.seen == {key: key_owner(key, workers) for key in KEYS}


def test_siphash13_reference_vector() -> None:
    # SipHash-1-3 with zero keys of the empty input (Rust's DefaultHasher::new().finish()).
    assert siphash13(b"") == 0xD1FBA762150C532C


@pytest.mark.parametrize(("processes", "workers"), [(2, 1), (3, 1), (2, 2), (3, 4)])
def test_every_key_is_built_by_exactly_one_process(processes: int, workers: int) -> None:
    addresses = tuple(f"h{i}:2101" for i in range(processes))
    places = [ClusterPlace(i, addresses, workers=workers) for i in range(processes)]
    for key in KEYS:
        builders = [place.process for place in places if place.builds(key)]
        assert builders == [key_owner(key, processes * workers) // workers]
    assert all(ClusterPlace().builds(key) for key in KEYS)
