"""Bytewax's own metrics endpoint, as docs/metrics.md describes it: with ``BYTEWAX_DATAFLOW_API_ENABLED``
set, ``python -m bytewax.run`` serves ``/metrics`` (its per-step counters and histograms, plus
prometheus_client's default registry, where the project's ``tcp_`` metrics live) and ``/dataflow`` (the
graph as JSON, also written to ``dataflow.json`` in ``BYTEWAX_DATAFLOW_API_CACHE_PATH``, by default the
working directory) on ``BYTEWAX_DATAFLOW_API_PORT`` (default 3030). Checked on a small flow whose item counts
are known (tests/flows/api_flow.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.support.live_samples import until
from tests.support.scrape import Scrape, scrape

TRADES = 37


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_bytewax_serves_its_step_metrics_and_ours_while_the_flow_runs(tmp_path: Path) -> None:
    port = free_port()
    release = tmp_path / "release"
    env = {
        **os.environ,
        "BYTEWAX_DATAFLOW_API_ENABLED": "true",
        "BYTEWAX_DATAFLOW_API_PORT": str(port),
        "BYTEWAX_DATAFLOW_API_CACHE_PATH": str(tmp_path),  # where it writes dataflow.json (default: cwd)
        "API_FLOW_TRADES": str(TRADES),
        "API_FLOW_RELEASE": str(release),
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "tests.flows.api_flow:flow"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    seen: list[Scrape] = []

    def counted() -> bool:
        assert run.poll() is None, run.communicate()[0]
        try:
            seen.append(scrape(f"{base}/metrics"))
        except (urllib.error.URLError, ConnectionError):
            return False  # not listening yet
        return seen[-1].value("tcp_trades_total", exchange="okx", symbol="API-TEST") == TRADES

    try:
        until(counted, 60, "the flow's trades on Bytewax's /metrics")
        metrics = seen[-1]
        with urllib.request.urlopen(f"{base}/dataflow", timeout=10) as response:
            graph = json.loads(response.read())
    finally:
        release.touch()
        output, _ = run.communicate(timeout=60)
    assert run.returncode == 0, output

    step = {"worker_index": "0", "otel_scope_name": "bytewax"}
    assert metrics.value("bytewax_item_out_count_total", step_id="api.trades", **step) == TRADES
    assert metrics.value("bytewax_item_inp_count_total", step_id="api.count.flat_map_batch", **step) == TRADES
    assert metrics.series("bytewax_inp_part_next_batch_duration_seconds_count")
    assert metrics.series("process_resident_memory_bytes")  # prometheus_client's default registry
    assert graph["flow_id"] == "api"
    assert json.loads((tmp_path / "dataflow.json").read_text()) == graph
    assert [s["step_name"] for s in graph["substeps"]] == ["trades", "count", "out"]
