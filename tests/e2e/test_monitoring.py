"""monitoring/: the alert rules, Prometheus' configuration and Grafana's provisioning, as docker-compose.yml
mounts them. Every metric they read is one the flow exports (or Bytewax's own); with promtool installed
(Debian's ``prometheus`` package), the configuration and rules are checked by Prometheus' own parser, the
dashboard's queries too, and the alerts are unit-tested on made-up series (monitoring/alerts_test.yml)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import bytewax._bytewax
import pytest
import yaml
from prometheus_client import REGISTRY

import connectors.metrics  # noqa: F401 - registers the flow's metrics
from tests.conftest import REPO_ROOT
from tests.e2e.compose_file import environment_of, load
from tests.e2e.test_compose_file import SECRETS

MONITORING = REPO_ROOT / "monitoring"
GRAFANA = MONITORING / "grafana"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
METRIC = re.compile(r"\b((?:tcp|bytewax|process)_[a-z0-9_]+|up)\b(?!\s*\()")
REQUIRED_ALERTS = {"TcpFlowDown", "TcpCollectorDisconnected", "TcpGapNotFilled", "TcpCandleLagHigh"}


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in read_yaml(MONITORING / "alerts.yml")["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    document = json.loads((GRAFANA / "dashboards" / "tcp.json").read_text())
    assert isinstance(document, dict)
    return document


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def exported() -> set[str]:
    """Every sample name the flow's registry can serve (its families, whether or not observed yet)."""
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


@functools.cache
def bytewax_binary() -> bytes:
    return Path(bytewax._bytewax.__file__).read_bytes()


def bytewax_knows(name: str) -> bool:
    """Bytewax's metric names are compiled into its extension: ``bytewax_<name><suffix>``."""
    base = re.sub(r"_(total|bucket|sum|count)$", "", name.removeprefix("bytewax_"))
    return base.encode() in bytewax_binary()


def test_the_alerts_say_what_fired_and_how_bad() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    assert REQUIRED_ALERTS | {"TcpSpoolGrowing", "TcpCollectorSilent", "TcpGapUnfilled"} <= set(names)
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"Tcp[A-Z][A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]


def test_every_metric_the_monitoring_reads_is_one_that_is_served() -> None:
    flow = exported()
    read = [(rule["alert"], rule["expr"]) for rule in rules()] + [
        ("dashboard", q) for q in dashboard_queries()
    ]
    seen = set()
    for where, expr in read:
        for name in METRIC.findall(expr):
            seen.add(name)
            if name.startswith("bytewax_"):
                assert bytewax_knows(name), (where, name)
            elif name != "up":
                assert name in flow, (where, name)
    # the check is not vacuous: the flow's own metrics, Bytewax's and the process's are all read
    assert {"tcp_trades_total", "tcp_spool_bytes", "up", "process_resident_memory_bytes"} <= seen
    assert any(name.startswith("bytewax_") for name in seen)
    assert not bytewax_knows("bytewax_no_such_step_duration_seconds_sum")


def test_compose_mounts_the_files_where_they_are_read() -> None:
    services = load(SECRETS)["services"]
    flow, prometheus, grafana = services["flow"], services["prometheus"], services["grafana"]
    config = read_yaml(MONITORING / "prometheus.yml")

    mounts = {
        host: inside for host, inside, *_ in (v.split(":") for v in prometheus["volumes"] if v[0] == ".")
    }
    config_path = Path(mounts["./monitoring/prometheus.yml"])
    assert config_path == Path(prometheus["command"][0].split("=", 1)[1])
    for rule_file in config["rule_files"]:  # relative to the configuration file
        assert mounts[f"./monitoring/{rule_file}"] == str(config_path.parent / rule_file)

    # Prometheus scrapes the flow where its settings make it listen, on the compose network only.
    env = environment_of(flow)
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets["tcp-flow"] == [f"flow:{env['METRICS__PORT']}"]
    assert env["METRICS__HOST"] == "0.0.0.0" and "ports" not in flow
    assert env["BYTEWAX_DATAFLOW_API_ENABLED"] == "true" and "BYTEWAX_DATAFLOW_API_PORT" not in env
    assert env["BYTEWAX_DATAFLOW_API_CACHE_PATH"] in flow["tmpfs"]  # writable on a read-only file system
    assert targets["bytewax"] == ["flow:3030"]  # Bytewax's default port

    # Grafana: the provider's path is where the dashboards are mounted; the data source is Prometheus.
    mounted = {host: inside for host, inside, *_ in (v.split(":") for v in grafana["volumes"] if v[0] == ".")}
    assert mounted["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = read_yaml(GRAFANA / "provisioning" / "dashboards" / "tcp.yml")["providers"]
    assert mounted["./monitoring/grafana/dashboards"] == provider["options"]["path"]
    (source,) = read_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    assert {"9090"} == {port.rsplit(":", 1)[1] for port in prometheus["ports"]}
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"]), panel["title"]

    # Reachable from this host only; Grafana without a password to keep: anonymous viewers, no login.
    for service in (prometheus, grafana):
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    settings = environment_of(grafana)
    assert (
        settings["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and settings["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    )
    assert settings["GF_AUTH_DISABLE_LOGIN_FORM"] == "true" and settings["GF_AUTH_BASIC_ENABLED"] == "false"
    assert settings["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(provider["options"]["path"])


needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None and not os.environ.get("TCP_REQUIRE_PROMTOOL"),
    reason="promtool is not installed (apt-get install prometheus)",
)
"""Skipped without promtool, except in CI (``.ci/run`` installs it and sets TCP_REQUIRE_PROMTOOL)."""


def promtool(*args: str) -> str:
    ran = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


@needs_promtool
def test_prometheus_reads_the_configuration_and_the_rules() -> None:
    out = promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert f"SUCCESS: {len(rules())} rules found" in out


@needs_promtool
def test_the_alerts_fire_when_they_should_and_not_before() -> None:
    out = promtool("test", "rules", str(MONITORING / "alerts_test.yml"))
    assert "SUCCESS" in out
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts_test.yml").read_text()))
    assert tested == {rule["alert"] for rule in rules()}


@needs_promtool
def test_the_dashboard_queries_are_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    records = [{"record": f"tcp:dashboard_query_{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    assert f"SUCCESS: {len(queries)} rules found" in promtool("check", "rules", str(path))
    broken = tmp_path / "broken.yml"
    broken.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x", "expr": "rate(x[5m]"}]}]})
    )
    assert subprocess.run(["promtool", "check", "rules", str(broken)], capture_output=True).returncode != 0
