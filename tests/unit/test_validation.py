"""`aiincident validate`: the CRD-schema subset, the operator's own rules, and what a user reads."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ai_incident_operator import cli, validation
from ai_incident_operator.access import ReadOnly
from ai_incident_operator.errors import ReadOnlyRefused
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster
from kit import REPO

SCHEMAS = validation.load_schemas()
POLICY = """\
apiVersion: aiincident.io/v1alpha1
kind: MitigationPolicy
metadata: {name: chat, namespace: prod}
spec:
  priority: 100
  targetSelector: {matchLabels: {app.kubernetes.io/part-of: chat}}
  responses:
  - severity: 1
    actions:
    - type: TrafficShift
      router: {kind: VirtualService, name: chat}
      fallback: {service: chat-fallback}
    - type: ScaleToZero
"""
INCIDENT = """\
apiVersion: aiincident.io/v1alpha1
kind: AIIncident
metadata: {name: harm, namespace: prod}
spec:
  category: HarmfulOutput
  target: {name: chat-llm}
"""


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The `aiincident` command in this process (as a subprocess would see it, but faster)."""
    out, err = io.StringIO(), io.StringIO()
    real_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        sys.stdin = real_stdin
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def problems(text: str) -> list[str]:
    return validation.document_problems(yaml.safe_load(text), SCHEMAS)


def test_valid_documents_pass(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(POLICY + "---\n" + INCIDENT)
    result = run("validate", str(path))
    assert result.returncode == 0, result.stdout
    assert "2 document(s) checked, 0 invalid" in result.stderr


def test_unknown_action_type_and_missing_fallback_are_caught_readably(tmp_path):
    bad = POLICY.replace("type: ScaleToZero", "type: Rollback").replace(
        "      fallback: {service: chat-fallback}\n", ""
    )
    path = tmp_path / "policies.yaml"
    path.write_text(INCIDENT + "---\n" + bad)
    result = run("validate", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f'{path}:doc 2: spec.responses[0].actions[1].type: unsupported value "Rollback": use one '
        "of ScaleToZero, TrafficShift, GuardrailSidecar, ConservativeConfig, IncreaseMonitoring, "
        "Notify, StatusPage, Ticket",
        f"{path}:doc 2: spec.responses[0].actions[0] (TrafficShift): TrafficShift needs "
        "fallback.service: the Service that takes the traffic",
    ]


def test_schema_subset():
    schema = {
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {"type": "integer", "minimum": 1, "maximum": 3},
            "b": {"type": "string", "enum": ["x", "y"], "maxLength": 1},
            "c": {"type": "array", "items": {"type": "boolean"}},
            "d": {"type": "object", "additionalProperties": {"type": "string"}},
            "e": {"x-kubernetes-int-or-string": True},
            "f": {"x-kubernetes-preserve-unknown-fields": True},
            "g": {"type": "number"},
        },
    }
    assert validation.schema_problems({"a": 2, "b": "x", "c": [True], "d": {"k": "v"}, "e": "http",
                                        "f": {"any": [1]}, "g": 0.5}, schema) == []  # fmt: skip
    assert validation.schema_problems({"a": True, "e": 1.5, "g": "1"}, schema) == [
        ("a", "must be a whole number, not boolean true"),
        ("e", "must be a whole number or a string, not number 1.5"),
        ("g", 'must be a number, not string "1"'),
    ]
    assert validation.schema_problems(
        {"a": 0, "b": "z", "c": [1], "d": {"odd key": 2}, "h": 1}, schema
    ) == [
        ("a", "0 is less than the minimum 1"),
        ("b", 'unsupported value "z": use one of x, y'),
        ("c[0]", "must be true or false, not number 1"),
        ('d["odd key"]', "must be a string, not number 2"),
        ("h", "unknown field: the apiserver would drop it; known: a, b, c, d, e, f, g"),
    ]
    assert validation.schema_problems({}, schema) == [("a", "required, but missing")]
    assert validation.schema_problems({"a": None}, schema) == [("a", "required, but missing")]


def test_typos_and_semantic_rules():
    typo = POLICY.replace("priority: 100", "priority: 100\n  saftey: {dryRun: true}")
    assert problems(typo) == [
        "spec.saftey: unknown field: the apiserver would drop it; did you mean safety?"
    ]
    cooldown = POLICY + "  safety: {cooldown: ten minutes}\n"
    assert problems(cooldown) == [
        "spec.safety.cooldown: 'ten minutes' is not a duration (write e.g. 90s, 10m, 1h30m, 7d)"
    ]
    split = POLICY.replace("kind: VirtualService", "kind: Service").replace(
        "fallback: {service: chat-fallback}", "fallback: {service: chat-fallback}\n      weight: 50"
    )
    assert any("cannot send 50%" in p for p in problems(split))
    incident = INCIDENT.replace(
        "target: {name: chat-llm}", "target: {name: chat-llm, namespace: dev}"
    )
    assert problems(incident) == [
        "spec.target.namespace: dev is not the incident's namespace prod; the operator refuses "
        "it: open the incident in the target's namespace"
    ]
    assert problems(INCIDENT.replace("target: {name: chat-llm}", "target: {}")) == [
        "spec.target: name the workload: give spec.target.name or .selector"
    ]
    assert problems(INCIDENT.replace("name: harm", "name: Harm_1")) == [
        "metadata.name: 'Harm_1' is not a valid name (lower-case letters, digits, '-' and '.', "
        "starting and ending with a letter or digit)"
    ]
    assert problems(INCIDENT.replace("v1alpha1", "v1")) == [
        "apiVersion: aiincident.io/v1 does not serve AIIncident: use aiincident.io/v1alpha1"
    ]
    cluster = POLICY.replace("kind: MitigationPolicy", "kind: ClusterMitigationPolicy")
    assert problems(cluster) == [
        "metadata.namespace: a ClusterMitigationPolicy is cluster-scoped: drop it"
    ]


def test_folders_stdin_lists_other_kinds_and_broken_yaml(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yml").write_text(POLICY)
    (tmp_path / "kustomization.yaml").write_text("resources: [sub/a.yml]\n")
    (tmp_path / "deploy.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
    )
    assert run("validate", str(tmp_path)).returncode == 0
    listed = {"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(INCIDENT.replace("HarmfulOutput", "Bad"))]}  # fmt: skip
    result = run("validate", "-", stdin=yaml.safe_dump(listed))
    assert result.returncode == 1
    assert result.stdout.startswith(
        '<stdin>:doc 1: items[0]: spec.category: unsupported value "Bad"'
    )
    (tmp_path / "broken.yaml").write_text("a: [\n")
    result = run("validate", str(tmp_path / "broken.yaml"), str(tmp_path / "missing.yaml"))
    assert result.returncode == 1
    assert f"{tmp_path / 'broken.yaml'}:doc 1: not YAML:" in result.stdout
    assert f"{tmp_path / 'missing.yaml'}: cannot read:" in result.stdout


def test_every_example_is_valid():
    # The gitops example's GuardrailSidecar needs its registry in the tenant bounds.
    bounds = str(REPO / "examples" / "gitops" / "tenant-bounds.yaml")
    result = run("validate", "--tenant-bounds", bounds, str(REPO / "examples"))
    assert result.returncode == 0, result.stdout
    assert "0 invalid" in result.stderr


def test_schemas_come_with_the_package_and_from_an_explicit_folder(tmp_path, monkeypatch):
    packaged = Path(str(validation.crd_dirs()[0]))
    assert (packaged / "aiincident.io_mitigationpolicies.yaml").is_file()
    assert set(SCHEMAS) >= {
        ("aiincident.io/v1alpha1", "AIIncident"),
        ("aiincident.io/v1alpha1", "MitigationPolicy"),
        ("aiincident.io/v1alpha1", "ClusterMitigationPolicy"),
    }
    with pytest.raises(FileNotFoundError, match="--crds DIR"):
        validation.load_schemas(tmp_path)
    monkeypatch.setenv(validation.CRDS_ENV, str(REPO / "crds"))
    assert validation.load_schemas() == SCHEMAS


def test_read_only_refuses_writes():
    """simulate's access: reads and server-side dry runs pass, writes never leave the process."""
    fake = FakeCluster()
    fake.add({"kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"}, "spec": {}})
    api = ReadOnly(fake)
    ref = Ref("Deployment", "ns", "d")
    assert api.read_only and api.get(ref)["metadata"]["name"] == "d"
    assert [d["metadata"]["name"] for d in api.list("Deployment", "ns")] == ["d"]
    assert api.dry_run_replace(ref, {"metadata": {"name": "d"}}) == {"metadata": {"name": "d"}}
    with pytest.raises(ReadOnlyRefused, match="read-only: patch of Deployment/d not sent"):
        api.patch(ref, {})
    with pytest.raises(ReadOnlyRefused):
        api.update(ref, lambda obj: obj.setdefault("spec", {}).update(replicas=0) or True)
    for write in (
        lambda: api.create("Deployment", "ns", {"metadata": {"name": "e"}}),
        lambda: api.replace(ref, fake.obj("Deployment", "ns", "d")),
        lambda: api.delete(ref),
        lambda: api.patch_status(ref, {}),
    ):
        with pytest.raises(ReadOnlyRefused):
            write()
    api.event({"kind": "Deployment", "metadata": {"name": "d"}}, "Mitigated", "x")
    assert api.events == [("Mitigated", "x")] and fake.events == []
    assert fake.writes == [] and fake.obj("Deployment", "ns", "d")["spec"] == {}
