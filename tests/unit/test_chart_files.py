"""The chart and the package take the CRDs and alert rules from one place; the docs keep up (offline)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from kit import REPO

CHART = REPO / "charts" / "ai-incident-operator"
KOPF_PEERINGS = "kopf.dev_peerings.yaml"


def test_chart_crds_are_links_to_the_repository_crds():
    ours = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    linked = sorted(p.name for p in (CHART / "crds").iterdir() if p.is_symlink())
    assert linked == ours, "link every crds/*.yaml into charts/ai-incident-operator/crds/"
    for name in ours:
        assert (CHART / "crds" / name).resolve() == (REPO / "crds" / name).resolve()
    others = sorted(p.name for p in (CHART / "crds").iterdir() if not p.is_symlink())
    assert others == [KOPF_PEERINGS]
    kinds = {d["spec"]["names"]["kind"] for d in yaml.safe_load_all((CHART / "crds" / KOPF_PEERINGS).read_text())}  # fmt: skip
    assert kinds == {"ClusterKopfPeering", "KopfPeering"}


def test_package_and_chart_link_their_data():
    package = REPO / "operator" / "ai_incident_operator" / "crds"
    assert package.is_symlink() and package.resolve() == (REPO / "crds").resolve()
    rules = CHART / "files" / "ai-incident-rules.yaml"
    assert rules.is_symlink()
    assert rules.resolve() == (REPO / "deploy" / "prometheus" / "ai-incident-rules.yaml").resolve()
    assert rules.is_file(), "deploy/prometheus/ai-incident-rules.yaml is missing"


def _leaves(values: dict, prefix: str = "") -> set[str]:
    """Dotted keys, stopping at maps users fill themselves (labels, resources, ...)."""
    found = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in {"resources", "podSecurityContext", "securityContext", "labels"}:  # fmt: skip
            found |= _leaves(value, f"{path}.")
        else:
            found.add(path)
    return found


def test_readme_values_table_lists_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    table = readme.split("## Values", 1)[1]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == _leaves(values)


def test_values_schema_knows_every_value():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict, props: dict, prefix: str = "") -> None:
        for key, value in node.items():
            assert key in props, f"values.schema.json lacks {prefix}{key}"
            sub = props[key].get("properties")
            if isinstance(value, dict) and sub:
                walk(value, sub, f"{prefix}{key}.")

    walk(values, schema["properties"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH (make tools)")
def test_gitops_example_builds_and_validates():
    built = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "examples" / "gitops")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built) if d)
    assert kinds == ["ClusterMitigationPolicy", "MitigationPolicy", "MitigationPolicy"]
    bounds = str(REPO / "examples" / "gitops" / "tenant-bounds.yaml")  # the sidecar's registry
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "ai_incident_operator.cli",
            "validate",
            "-",
            "--tenant-bounds",
            bounds,
        ],
        input=built,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout
    assert "3 document(s) checked, 0 invalid" in checked.stderr


def test_checkov_skips_are_the_readmes():
    """The Deployment's checkov skip annotations are the README's justified checks, with a
    reason each (test_chart_lint.py runs checkov itself), and the README names the pin."""
    import re
    import tomllib

    skips = dict(re.findall(r"checkov\.io/skip\d+: (CKV2?_K8S_\d+)=(.+)", (CHART / "templates" / "deployment.yaml").read_text()))  # fmt: skip
    assert skips and all(reason.strip() and "=" not in reason for reason in skips.values())
    readme = (CHART / "README.md").read_text()
    section = readme.split("\n## Kubernetes versions and checkov", 1)[1].split("\n## ", 1)[0]
    table = dict(re.findall(r"^\| `(CKV2?_K8S_\d+)` \| [^|]+ \| (skipped|fixed)\b", section, re.M))
    assert {c for c, how in table.items() if how == "skipped"} == set(skips)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]  # fmt: skip
    (checkov,) = extras["checkov"]
    assert f"checkov** ({checkov.split('==')[1]}," in section, "the README names another checkov"
