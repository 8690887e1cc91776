"""docker-compose.yml is valid under the Compose specification's JSON schema (tests/data/compose_spec.json,
SOURCES.md says where it comes from), takes its secrets from the environment only, and runs the pipeline
the way docs/deployment.md says: unprivileged, read-only code, DATA_DIR on a volume, migrations first."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from tests.conftest import REPO_ROOT, TEST_DATA
from tests.e2e.compose_file import (
    MissingVariable,
    environment_of,
    image_sources,
    interpolate,
    load,
    load_raw,
    required_variables,
)

SECRETS = {
    "POSTGRES_PASSWORD": "sentinel-owner",
    "DASHBOARD_DB_PASSWORD": "sentinel-reader",
    "REDIS_PASSWORD": "sentinel-redis",
}
APP_SERVICES = ("migrate", "flow", "dashboard")
_CREDENTIALS = re.compile(r"^[a-z]+://(?P<user>[^:@/]*):(?P<password>[^@/]*)@")


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((TEST_DATA / "compose_spec.json").read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(
        schema, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER
    )


def dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text()


@pytest.fixture
def compose() -> dict[str, Any]:
    return load(SECRETS)


def test_the_file_is_valid_under_the_compose_specification(compose: dict[str, Any]) -> None:
    check = validator()
    for document in (load_raw(), compose):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(document)]
        assert errors == []


def test_the_schema_rejects_what_compose_rejects(compose: dict[str, Any]) -> None:
    """The validation is not vacuous: a misspelt key and an unknown dependency condition are errors."""
    check = validator()
    flow = compose["services"]["flow"]
    for broken in (
        {**flow, "restart_policy": "always"},
        {**flow, "depends_on": {"migrate": {"condition": "x"}}},
    ):
        document = {**compose, "services": {**compose["services"], "flow": broken}}
        assert list(check.iter_errors(document))


def test_secrets_come_from_the_environment_only(compose: dict[str, Any]) -> None:
    assert required_variables() == set(SECRETS)
    for name in SECRETS:
        with pytest.raises(MissingVariable, match=name):
            load({k: v for k, v in SECRETS.items() if k != name})
    found = 0
    for service in compose["services"].values():
        for key, value in environment_of(service).items():
            if "PASSWORD" in key:
                assert value in SECRETS.values(), key
                found += 1
            if credentials := _CREDENTIALS.match(value):
                assert credentials["password"] in SECRETS.values(), key
                found += 1
    assert found >= 8
    interpolated = json.dumps(compose)
    assert "sentinel" in interpolated
    assert "sentinel" not in json.dumps(load_raw())


def test_the_app_services_run_unprivileged_on_read_only_code_with_data_on_a_volume(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    user = re.search(r"^USER (\S+)$", dockerfile(), re.M)
    data_dir = re.search(r"DATA_DIR=(\S+)", dockerfile())
    assert user is not None and data_dir is not None
    assert user[1].split(":")[0] not in ("0", "root")
    for name in APP_SERVICES:
        service = services[name]
        assert service["user"] == user[1], name
        assert service["read_only"] is True, name
    assert f"data:{data_dir[1]}" in services["flow"]["volumes"]
    assert "data" in compose["volumes"]
    for name in ("flow", "dashboard"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["healthcheck"]["test"][0] == "CMD"
        assert services[name]["restart"] == "unless-stopped"


def test_the_dashboard_reads_with_the_role_the_migrations_create(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = environment_of(services["migrate"])
    assert services["migrate"]["command"] == ["python", "-m", "sql.migrate"]
    assert migrate["DASHBOARD_DB_PASSWORD"] == SECRETS["DASHBOARD_DB_PASSWORD"]
    assert "DASHBOARD__DATABASE_URL" not in migrate  # set, it would make the migrations skip the role
    reader = _CREDENTIALS.match(environment_of(services["dashboard"])["DATABASE_URL"])
    assert reader is not None
    assert (reader["user"], reader["password"]) == ("tcp_dashboard", SECRETS["DASHBOARD_DB_PASSWORD"])


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$SET ${SET} $SET ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", env) == (
        "$SET x x d d  d"
    )
    with pytest.raises(MissingVariable, match="EMPTY: say so"):
        interpolate("${EMPTY:?say so}", env)
    assert interpolate("${EMPTY?fine}", env) == ""


def test_the_image_holds_every_package_and_runs_from_its_code() -> None:
    """Every package of pyproject.toml is copied into the image, and the dependencies are installed from
    pyproject.toml alone (the code runs from /app, never from a copy in site-packages)."""
    packages = re.findall(r'"(\w+)\*"', (REPO_ROOT / "pyproject.toml").read_text())
    assert packages and set(packages) <= set(image_sources())
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in dockerfile()
    assert "pip install --no-cache-dir ." not in dockerfile()
