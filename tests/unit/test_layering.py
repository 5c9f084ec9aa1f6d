"""The layers: the decision-making modules load neither kopf nor the Kubernetes client.

Triage, policies, ledgers, routers, the engine and the access seam are pure: each
is imported in a fresh interpreter, which must end up without `kubernetes` and
`kopf` in `sys.modules` (the actions after their registry loaded every one of
them). And only `kube` may know the client library's exception: everything else
sees the typed `errors`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "ai_incident_operator"
PURE = [
    "triage", "policy", "ledger", "fieldpath", "conditions", "lifecycle",
    "traffic", "traffic.service", "traffic.istio", "traffic.gateway", "traffic.router",
    "traffic.aigateway", "traffic.rollout", "traffic.kserve",
    "engine", "engine.decide", "engine.outside", "keylocks", "access", "errors", "resources",
    "retry", "workloads", "workloads.base", "workloads.replicated",
    "workloads.leaderworkerset", "workloads.kserve", "readiness",
]  # fmt: skip
CHECK = """
import sys
{imports}
loaded = sorted(m for m in ("kubernetes", "kopf") if m in sys.modules)
assert not loaded, f"{{loaded}} loaded"
"""


def _imports_cleanly(imports: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(PACKAGE.parent), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", CHECK.format(imports=imports)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("module", PURE)
def test_pure_module_loads_neither_kopf_nor_kubernetes(module):
    result = _imports_cleanly(f"import ai_incident_operator.{module}")
    assert result.returncode == 0, result.stderr


def test_every_action_loads_neither_kopf_nor_kubernetes():
    result = _imports_cleanly(
        "from ai_incident_operator import actions\n"
        "assert len(actions.registry()) == len(actions.MODULES)"
    )
    assert result.returncode == 0, result.stderr


def test_the_routers_do_not_load_the_actions():
    # actions/traffic uses the routers; the other way round would be a cycle.
    result = _imports_cleanly(
        "import ai_incident_operator.traffic\n"
        "assert not [m for m in sys.modules if m.startswith('ai_incident_operator.actions')]"
    )
    assert result.returncode == 0, result.stderr


def test_the_check_sees_a_module_that_does_load_the_client():
    result = _imports_cleanly("import ai_incident_operator.kube")
    assert result.returncode != 0 and "'kubernetes'] loaded" in result.stderr


def test_only_kube_names_the_client_librarys_exception():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "kube.py" in modules and len(modules) > 20
    naming = [
        str(path.relative_to(PACKAGE))
        for path in modules
        if path.name != "kube.py" or path.parent != PACKAGE
        if "ApiException" in path.read_text()
    ]
    assert naming == []
