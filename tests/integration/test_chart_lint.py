"""`helm lint` rejects every values file that `helm template` rejects, and the output is valid Kubernetes.

helm lint renders the templates leniently: a template's `fail` is only logged, a
`required` only warned about, and the lint passes. So each `fail`/`required` of the
templates is mirrored in values.schema.json, which both commands apply. This module
proves, for a set of bad values files, that both reject each one; that each template
check is mirrored (the template alone, with schema validation skipped, rejects its
case too); and that every rendered object of the ci/ values files and of the RBAC modes
passes the Kubernetes OpenAPI schemas (kubernetes-validate, strict: no unknown fields).
"""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from chartkit import CHART, helm, render, write_values

pytestmark = pytest.mark.integration
RELEASE = "lint-check"
NAMESPACE = "aiincident-system"
# The oldest Kubernetes that kubernetes-validate has schemas for (the chart needs >= 1.20).
KUBE_VERSION = "1.25"

# name: (values, the template's own message when a template check rejects it, else None).
BAD: dict[str, tuple[dict, str | None]] = {
    "namespaced without watchNamespaces": (
        {"rbac": {"namespaced": True}},
        "rbac.namespaced: true needs watchNamespaces",
    ),
    "namespaced with clusterWideWrites": (
        {"watchNamespaces": ["team-a"], "rbac": {"namespaced": True, "clusterWideWrites": True}},
        "rbac.clusterWideWrites: true grants the writes in every namespace",
    ),
    "clusterWideWrites with writeNamespaces": (
        {"rbac": {"clusterWideWrites": True, "writeNamespaces": ["team-a"]}},
        "rbac.clusterWideWrites: true grants the writes in every namespace",
    ),
    "writeNamespaces with watchNamespaces": (
        {"watchNamespaces": ["team-a"], "rbac": {"writeNamespaces": ["team-a"]}},
        "rbac.writeNamespaces is for cluster-wide watching",
    ),
    "existing ServiceAccount without a name": (
        {"serviceAccount": {"create": False}},
        "serviceAccount.name is required when serviceAccount.create is false",
    ),
    "writes in kube-system": ({"rbac": {"writeNamespaces": ["kube-system"]}}, None),
    "writes in kube-node-lease": (
        {"rbac": {"writeNamespaces": ["team-a", "kube-node-lease"]}},
        None,
    ),
    "a Secret name that is no name": ({"rbac": {"secretNames": ["Oncall_URL"]}}, None),
    "an empty Secret name": ({"rbac": {"secretNames": [""]}}, None),
    "clusterWideWrites not a boolean": ({"rbac": {"clusterWideWrites": "yes"}}, None),
    "a misspelt rbac key": ({"rbac": {"namspaced": True}}, None),
    "an unknown top-level key": ({"replicas": 2}, None),
    "no replicas below zero": ({"replicaCount": -1}, None),
    "replicas not a number": ({"replicaCount": "2"}, None),
    "listen port 0": ({"webhook": {"port": 0}}, None),
    "listen port above 65535": ({"liveness": {"port": 70000}}, None),
    "listen port as a string": ({"webhook": {"port": "8080"}}, None),
    "service port 0": ({"service": {"port": 0}}, None),
    "a bad namespace to watch": ({"watchNamespaces": ["Team_A"]}, None),
    "a bad ServiceAccount name": ({"serviceAccount": {"name": "Operator SA"}}, None),
    "a misspelt securityContext field": ({"securityContext": {"runAsNonroot": True}}, None),
    "a misspelt podSecurityContext field": ({"podSecurityContext": {"fsgroup": 1}}, None),
    "a misspelt resources key": ({"resources": {"limit": {"memory": "1Gi"}}}, None),
    "a misspelt env field": ({"extraEnv": [{"name": "A", "valuefrom": {}}]}, None),
    "a misspelt toleration field": ({"tolerations": [{"keys": "a"}]}, None),
    "a bad image digest": ({"image": {"digest": "sha256:xyz"}}, None),
    "an unknown pull policy": ({"image": {"pullPolicy": "Sometimes"}}, None),
    "a bad dashboard namespace": ({"grafanaDashboard": {"namespace": "Monitoring!"}}, None),
}

# Template checks about the chart's own files, not about values: no values file reaches them.
NOT_ABOUT_VALUES = ("is missing from the chart",)


@pytest.mark.parametrize("name", sorted(BAD))
def test_lint_and_template_both_reject(name, tmp_path):
    values, message = BAD[name]
    path = write_values(tmp_path / "bad.yaml", values)
    linted = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(path),
                  check=False)  # fmt: skip
    assert linted.returncode != 0, f"helm lint accepts {name}:\n{linted.stdout}"
    rendered = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(path),
                    check=False)  # fmt: skip
    assert rendered.returncode != 0, f"helm template accepts {name}"
    assert "schema" in rendered.stderr.lower(), rendered.stderr
    if message:
        # The schema mirrors a template check: the template alone rejects it as well.
        alone = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(path),
                     "--skip-schema-validation", check=False)  # fmt: skip
        assert alone.returncode != 0 and message in alone.stderr, alone.stderr


def test_every_template_check_is_mirrored_in_the_schema():
    checks = set()
    for template in (CHART / "templates").glob("*"):
        checks |= set(re.findall(r'\b(?:fail|required) "([^"]+)"', template.read_text()))
    assert checks, "no fail/required found: the pattern is out of date"
    mirrored = {message for _, message in BAD.values() if message}
    for check in checks:
        if any(reason in check for reason in NOT_ABOUT_VALUES):
            continue
        assert any(check.startswith(m) for m in mirrored), (
            f"template check {check!r} has no bad values case here (and maybe no schema rule)"
        )


def test_the_good_values_pass_both():
    for values in sorted((CHART / "ci").glob("*.yaml")):
        helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(values))
        render(RELEASE, NAMESPACE, "-f", str(values))


# The RBAC modes, on top of each ci/ file's values.
RBAC_MODES = (
    [],
    ["--set", "rbac.writeNamespaces={team-a,aiincident-system}", "--set", "rbac.secretNames={oncall}"],
    ["--set", "watchNamespaces={team-a,kube-system,aiincident-system}", "--set", "replicaCount=2"],
    ["--set", "rbac.clusterWideWrites=true"],
)  # fmt: skip


def test_rendered_objects_are_valid_kubernetes():
    checked: set[str] = set()
    for values in sorted((CHART / "ci").glob("*.yaml")):
        for mode in RBAC_MODES:
            if "namespaced" in values.name and "writeNamespaces" in " ".join(mode):
                continue  # writeNamespaces is for cluster-wide watching: rejected above
            if "namespaced" in values.name and "clusterWideWrites" in " ".join(mode):
                continue
            for doc in render(RELEASE, NAMESPACE, "-f", str(values), *mode):
                try:
                    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    continue  # a CRD's kind (ServiceMonitor, KopfPeering, ...)
                except kubernetes_validate.ValidationError as err:
                    raise AssertionError(
                        f"{values.name} {mode}: {doc['kind']} {doc['metadata']['name']}: {err}"
                    ) from None
                checked.add(doc["kind"])
    assert {"Deployment", "Service", "ServiceAccount", "Secret", "ClusterRole", "Role",
            "RoleBinding", "ClusterRoleBinding", "NetworkPolicy", "ConfigMap"} <= checked  # fmt: skip
