"""The flow modules' entry points: importing a flow module starts nothing and loads nothing of ``app``;
its ``flow`` is wired by ``app.entrypoints`` only when ``bytewax.run`` asks for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("module", ["flows.okx", "flows.session", "flows.replay"])
def test_importing_a_flow_module_loads_nothing_of_app(module: str) -> None:
    code = (
        f"import sys, threading, {module}\n"
        "app = sorted(m for m in sys.modules if m == 'app' or m.startswith('app.'))\n"
        "print(app, threading.active_count())"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["[]", "1"]


def test_an_unknown_attribute_of_a_flow_module_is_an_attribute_error() -> None:
    import flows.okx
    import flows.session

    for module in (flows.okx, flows.session):
        with pytest.raises(AttributeError):
            _ = module.not_a_flow
