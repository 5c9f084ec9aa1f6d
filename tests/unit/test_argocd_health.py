"""The Argo CD health checks (docs/argocd-health*.lua), run by a real Lua 5.4 as Argo CD runs them.

Argo CD gives the script the live object as the global `obj` and reads back the table it
returns. Needs the Debian package lua5.4 (hack/install-system-deps.sh installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from kit import REPO

LUA = shutil.which("lua5.4") or shutil.which("lua")
INCIDENT_LUA = REPO / "docs" / "argocd-health.lua"
POLICY_LUA = REPO / "docs" / "argocd-health-policy.lua"
needs_lua = pytest.mark.skipif(LUA is None, reason="no Lua interpreter (apt-get install lua5.4)")


def lua_value(value: Any) -> str:
    """VALUE as a Lua literal (what Argo CD's JSON-to-Lua conversion gives the script)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # then a valid Lua string too
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_value(v)}" for k, v in value.items()) + "}"


def health(script: str, obj: dict) -> tuple[str, str]:
    program = (
        f"obj = {lua_value(obj)}\n"
        f"local hs = (function()\n{script}\nend)()\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    out = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, check=True)
    status, _, message = out.stdout.partition("\n")
    return status, message


def incident(status: dict | None = None, **spec: Any) -> dict:
    body = {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "AIIncident",
        "metadata": {"name": "harm", "namespace": "prod"},
        "spec": {"category": "HarmfulOutput", "title": "unsafe medical advice", **spec},
    }
    if status is not None:
        body["status"] = status
    return body


@needs_lua
def test_incident_health():
    script = INCIDENT_LUA.read_text()
    mitigated = {"type": "Mitigated", "status": "True", "message": "ScaleToZero on Deployment/chat-llm"}  # fmt: skip
    assert health(script, incident()) == (
        "Progressing",
        "Waiting for the operator to triage the incident",
    )
    assert health(
        script, incident({"phase": "Mitigated", "severity": 1, "conditions": [mitigated]})
    ) == (
        "Degraded",
        "Open severity 1 HarmfulOutput: unsafe medical advice (Mitigated); "
        "ScaleToZero on Deployment/chat-llm",
    )
    for phase in ("Triaged", "AwaitingApproval", "Mitigating", "Resolving"):
        assert health(script, incident({"phase": phase, "severity": 1}))[0] == "Degraded", phase
    # Severity set in the spec counts before triage has written its own.
    assert health(script, incident({"phase": "Detected"}, severity=1))[0] == "Degraded"
    for phase in ("Resolved", "Closed"):
        assert health(script, incident({"phase": phase, "severity": 1})) == (
            "Healthy",
            f"{phase}: severity 1 HarmfulOutput: unsafe medical advice",
        )
    assert health(script, incident({"phase": "Mitigated", "severity": 2})) == (
        "Progressing",
        "Mitigated: severity 2 HarmfulOutput: unsafe medical advice",
    )
    assert health(script, incident({"phase": "Failed", "severity": 3}))[0] == "Degraded"


@needs_lua
def test_policy_health():
    script = POLICY_LUA.read_text()
    policy = {"kind": "MitigationPolicy", "metadata": {"name": "chat", "generation": 2}}
    assert health(script, policy)[0] == "Progressing"
    ready = {"type": "Ready", "status": "True", "reason": "Valid", "message": "policy is valid and in use"}  # fmt: skip
    assert (
        health(script, {**policy, "status": {"observedGeneration": 1, "conditions": [ready]}})[0]
        == "Progressing"
    )  # checked, but not this generation yet
    assert health(
        script, {**policy, "status": {"observedGeneration": 2, "conditions": [ready]}}
    ) == (
        "Healthy",
        "policy is valid and in use",
    )
    invalid = dict(ready, status="False", reason="Invalid", message="TrafficShift needs fallback.service")  # fmt: skip
    assert health(
        script, {**policy, "status": {"observedGeneration": 2, "conditions": [invalid]}}
    ) == ("Degraded", "Invalid: TrafficShift needs fallback.service")


def test_argocd_cm_snippet_carries_the_scripts_unchanged():
    snippet = yaml.safe_load(
        (REPO / "examples" / "gitops" / "argocd" / "argocd-cm.yaml").read_text()
    )
    data = snippet["data"]
    assert (
        data["resource.customizations.health.aiincident.io_AIIncident"] == INCIDENT_LUA.read_text()
    )
    for kind in ("MitigationPolicy", "ClusterMitigationPolicy"):
        assert (
            data[f"resource.customizations.health.aiincident.io_{kind}"] == POLICY_LUA.read_text()
        )
