"""The Helm chart from the tests: the real helm binary, rendered documents, RBAC rules as sets."""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from kit import REPO

CHART = REPO / "charts" / "ai-incident-operator"
# Where `make tools` caches helm and kubectl; checkov gets a venv of its own there.
TOOLS = Path.home() / ".cache" / "ai-incident-operator" / "tools"
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


# --- Kubernetes schemas (kubernetes-validate) and checkov ----------------------------------


def kube_versions(oldest: str) -> list[str]:
    """Every Kubernetes minor version from OLDEST that kubernetes-validate has schemas for."""
    import kubernetes_validate.utils

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    shipped = {".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}
    return sorted((v for v in shipped if key(v) >= key(oldest)), key=key)


def validate_kube(doc: dict, version: str) -> None:
    """kubernetes_validate.validate, strict (no unknown fields), its schema files read once.

    Raises kubernetes_validate.ValidationError, or SchemaNotFoundError for a kind without a
    schema (a CRD's, or a built-in API that version no longer serves).
    """
    import kubernetes_validate
    import kubernetes_validate.utils as utils

    # validate() reads and parses the 1.8 MB definitions file on every call: cache the reads
    # (pure: a file's parsed contents), or a few hundred documents per version take minutes.
    if not hasattr(utils.schema_contents, "cache_info"):
        utils.schema_contents = functools.cache(utils.schema_contents)
    kubernetes_validate.validate(doc, version, strict=True)


def checkov_requirement() -> str:
    """checkov's pinned requirement: pyproject.toml's `checkov` extra."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]  # fmt: skip
    (requirement,) = extras["checkov"]
    return requirement


def checkov() -> Path:
    """The pinned checkov, in a venv of its own (its pins conflict with the project's [dev]).

    $AIINCIDENT_CHECKOV names another checkov executable; else the venv under TOOLS is made
    once (pip, a few minutes) and reused.
    """
    if given := os.environ.get("AIINCIDENT_CHECKOV"):
        if not os.access(given, os.X_OK):
            pytest.fail(f"AIINCIDENT_CHECKOV={given}: no such executable", pytrace=False)
        return Path(given)
    requirement = checkov_requirement()
    pinned = re.fullmatch(r"checkov==([\w.]+)", requirement)
    assert pinned, f"pyproject.toml: pin checkov exactly (checkov==X.Y.Z), not {requirement!r}"
    home = TOOLS / f"checkov-{pinned[1]}"
    binary, complete = home / "bin" / "checkov", home / ".complete"
    if complete.is_file():
        return binary
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / f"checkov-{pinned[1]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing it
        if complete.is_file():
            return binary
        shutil.rmtree(home, ignore_errors=True)  # a half-made one
        pip = [str(home / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        for step in ([sys.executable, "-m", "venv", str(home)], [*pip, requirement]):
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                shutil.rmtree(home, ignore_errors=True)
                tail = " / ".join(line[:200] for line in done.stderr.strip().splitlines()[-2:])
                pytest.fail(f"could not install {requirement} into {home} ({tail}): install it "
                            f"there by hand, or set AIINCIDENT_CHECKOV to a checkov {pinned[1]}",
                            pytrace=False)  # fmt: skip
        complete.write_text(requirement + "\n")
    return binary
