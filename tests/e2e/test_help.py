"""The launcher explains itself: `python3 tcp.py --help` names every command with its main options, and
each command answers `--help` with its usage, without doing anything else."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def launcher(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "tcp.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_help_names_every_command_and_the_offline_mode() -> None:
    result = launcher("--help")
    assert result.returncode == 0, result.stderr
    for command in ("up", "test", "migrate", "sim", "lint", "backtest", "bots", "export"):
        assert f"python3 tcp.py {command}" in result.stdout
    assert "--offline" in result.stdout and "flows.replay" in result.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("up", "usage: python3 tcp.py up"),
        ("migrate", "usage: python -m sql.migrate"),
        ("sim", "--poison"),
        ("lint", "usage: python3 tcp.py lint"),
        ("bench", "usage: python3 tcp.py bench"),
        ("backtest", "usage: python3 tcp.py backtest"),
        ("bots", "usage: python3 tcp.py bots"),
        ("export", "usage: python3 tcp.py export"),
    ],
)
def test_each_command_answers_help_and_does_nothing_else(command: str, expected: str) -> None:
    result = launcher(command, "--help")
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_an_unknown_command_fails_naming_it() -> None:
    result = launcher("upp")
    assert result.returncode != 0
    assert "unknown command 'upp'" in result.stderr
