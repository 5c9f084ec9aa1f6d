"""The Helm chart from the tests: the real helm binary, rendered documents, RBAC rules as sets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kit import REPO

CHART = REPO / "charts" / "ai-incident-operator"
# Where RBAC never grants writes, whatever the values (the operator's code agrees).
BUILTIN_PROTECTED = ("kube-system", "kube-public", "kube-node-lease")
# Verbs that change or create something.
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("helm") is None:
        pytest.fail("helm is not on PATH: run 'make tools' (Helm v4 is cached under "
                    "~/.cache/ai-incident-operator/tools/bin)", pytrace=False)  # fmt: skip
    result = subprocess.run(["helm", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def sets(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def render(release: str, namespace: str, *args: str) -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def notes(release: str, namespace: str, *args: str) -> str:
    """The install notes (helm template leaves NOTES.txt out; a client-side dry run has them)."""
    out = helm(
        "install", release, str(CHART), "--namespace", namespace, "--dry-run=client", *args
    ).stdout
    return out.split("NOTES:", 1)[1]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule (resourceNames aside: see `secret_names`)."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def rights(docs: list[dict]) -> dict[str | None, set[tuple[str, str, str]]]:
    """What the chart's roles grant, by namespace (None: the ClusterRole, every namespace)."""
    found: dict[str | None, set[tuple[str, str, str]]] = {}
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        where = role["metadata"].get("namespace") if role["kind"] == "Role" else None
        found.setdefault(where, set()).update(granted(role["rules"]))
    return found


def writes(rules: set[tuple[str, str, str]]) -> set[tuple[str, str]]:
    """The (apiGroup, resource) pairs that RULES may change."""
    return {(g, r) for g, r, v in rules if v in WRITE_VERBS}


# The operator's own objects and Events: written wherever it watches (kopf's finalizers and
# progress, the intake, the engine's Events). Everything else written is someone's workload.
OWN_OBJECTS = frozenset(
    {
        ("aiincident.io", "aiincidents"),
        ("aiincident.io", "aiincidents/status"),
        ("aiincident.io", "aiincidents/finalizers"),
        ("aiincident.io", "mitigationpolicies"),
        ("aiincident.io", "mitigationpolicies/status"),
        ("aiincident.io", "clustermitigationpolicies"),
        ("aiincident.io", "clustermitigationpolicies/status"),
        ("", "events"),
        ("kopf.dev", "kopfpeerings"),
        ("kopf.dev", "clusterkopfpeerings"),
    }
)


def workload_writes(rules: set[tuple[str, str, str]]) -> set[tuple[str, str]]:
    return writes(rules) - OWN_OBJECTS


def secret_names(docs: list[dict]) -> dict[str | None, list[list[str] | None]]:
    """Per namespace, the resourceNames of every rule on Secrets (None: no names, all Secrets)."""
    found: dict[str | None, list[list[str] | None]] = {}
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        where = role["metadata"].get("namespace") if role["kind"] == "Role" else None
        for rule in role["rules"]:
            if "secrets" in rule["resources"]:
                found.setdefault(where, []).append(rule.get("resourceNames"))
    return found


def write_values(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path
