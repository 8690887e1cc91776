"""docker-compose.yml as Compose reads it: YAML (anchors and merge keys), then ``${...}`` interpolation
from an environment, so tests can validate it and run its services' commands as written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(KeyError):
    """A required variable (``${NAME:?message}``) is not set; carries Compose's message."""


def load_raw(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file as YAML, before interpolation."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """``value`` with every ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` and ``$$`` resolved the
    way Compose does it."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        given = env.get(name)
        unset = given is None or (given == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return given or ""

    return _VARIABLE.sub(resolve, value)


def required_variables(path: Path = COMPOSE_FILE) -> set[str]:
    """The variables the file cannot be used without (``${NAME:?...}``)."""
    return {m["name"] for m in _VARIABLE.finditer(path.read_text()) if m["op"] in (":?", "?")}


def load(env: Mapping[str, str], path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file as Compose sees it with ``env``."""
    return dict(interpolate(load_raw(path), env))


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (mapping or ``NAME=value`` list) as a mapping of strings."""
    given = service.get("environment") or {}
    if isinstance(given, list):
        given = dict(item.split("=", 1) for item in given)
    return {str(key): "" if value is None else str(value) for key, value in given.items()}


def image_sources(path: Path = DOCKERFILE) -> list[str]:
    """What the Dockerfile copies into the image from the build context (its ``COPY`` sources)."""
    sources = []
    for line in path.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            sources += [word for word in words[1:-1] if not word.startswith("--")]
    return sources
