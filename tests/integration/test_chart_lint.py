"""`helm lint` rejects every values file that `helm template` rejects, and the output is valid Kubernetes.

helm lint renders the templates leniently: a template's `fail` is only logged, a
`required` only warned about, and the lint passes. So each `fail`/`required` of the
templates is mirrored in values.schema.json, which both commands apply. This module
proves, for a set of bad values files, that both reject each one; that each template
check is mirrored (the template alone, with schema validation skipped, rejects its
case too). Then the chart against current Kubernetes: every rendered object (the ci/
values files in each RBAC mode, the README's values examples, the CRDs) and the
repository's examples pass the OpenAPI schemas of every Kubernetes version from 1.25 to
the newest kubernetes-validate ships (strict: no unknown fields); and checkov finds nothing
in the renderings that is neither fixed nor skipped with a reason the chart README gives.
Last, the values that reach the operator's flags (/metrics among them) do.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from chartkit import CHART, checkov, helm, kube_versions, render, validate_kube, write_values
from kit import REPO

pytestmark = pytest.mark.integration
RELEASE = "lint-check"
NAMESPACE = "aiincident-system"

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
    "a misspelt servingKinds switch": ({"rbac": {"servingKinds": {"kServe": False}}}, None),
    "a servingKinds switch not a boolean": ({"rbac": {"servingKinds": {"kserve": "no"}}}, None),
    "servingKinds not a map": ({"rbac": {"servingKinds": ["kserve"]}}, None),
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
    "metrics port above 65535": ({"metrics": {"port": 70000}}, None),
    "metrics port below 0": ({"metrics": {"port": -1}}, None),
    "metrics port as a string": ({"metrics": {"port": "9090"}}, None),
    "a misspelt metrics key": ({"metrics": {"requiretoken": True}}, None),
    "metrics peers not a list": ({"networkPolicy": {"metricsFrom": {"podSelector": {}}}}, None),
    # Prometheus would get 401 on every scrape.
    "a ServiceMonitor without the token /metrics needs": (
        {"metrics": {"requireToken": True}, "serviceMonitor": {"enabled": True}},
        None,
    ),
    "a ServiceMonitor without the token /metrics needs (old key)": (
        {"webhook": {"metricsRequireToken": True}, "serviceMonitor": {"enabled": True}},
        None,
    ),
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

# Kubernetes versions: each minor version from OLDEST_KUBE (the oldest kubernetes-validate
# 1.37.x has schemas for; the chart itself needs >= 1.20) to the newest it ships.
OLDEST_KUBE = "1.25"
NEWEST_KUBE = "1.37"
# API groups of CRDs (the chart's, the Prometheus Operator's, kopf's, Argo CD's, Flux's) and of
# kustomize's own files: kubernetes-validate has no schema for them. A kind of any other
# group without a schema is an error: a built-in API that version does not serve.
NO_SCHEMA_GROUPS = frozenset(
    {"aiincident.io", "monitoring.coreos.com", "kopf.dev", "argoproj.io",
     "kustomize.toolkit.fluxcd.io", "kustomize.config.k8s.io"}
)  # fmt: skip
# The repository's manifests besides the chart (documents without apiVersion/kind are skipped).
EXAMPLES = ("examples", "deploy")


def readme_values_examples() -> list[dict]:
    """The chart README's ```yaml blocks that are values files (all top-level keys are values)."""
    keys = set(yaml.safe_load((CHART / "values.yaml").read_text()))
    readme = (CHART / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", readme, re.M | re.S)]
    return [b for b in blocks if isinstance(b, dict) and set(b) <= keys]


class Renders:
    """Every rendering of the chart `make test` checks, each with a release of its own (so that
    checkov's graph checks do not link one rendering's NetworkPolicy to another's pods), in
    one directory, and checkov started over all of them at once (it takes ~15 s to start)."""

    def __init__(self, where: Path) -> None:
        self.dir = where / "rendered"
        self.dir.mkdir()
        cases: list[tuple[str, list[str]]] = []
        for values in sorted((CHART / "ci").glob("*.yaml")):
            for i, mode in enumerate(RBAC_MODES):
                flat = " ".join(mode)
                if "namespaced" in values.name and (
                    "writeNamespaces" in flat or "clusterWideWrites" in flat
                ):
                    continue  # writeNamespaces/clusterWideWrites with namespaced: rejected above
                cases.append((f"{values.stem}.mode{i}", ["-f", str(values), *mode]))
        examples = readme_values_examples()
        assert len(examples) >= 3, "the chart README's values examples went missing"
        for i, example in enumerate(examples):
            path = write_values(where / f"readme-example-{i}.yaml", example)
            cases.append((f"readme-example-{i}", ["-f", str(path)]))
        cases.append(("with-crds", ["--include-crds"]))
        self.release = {name: f"lint{i:02d}" for i, (name, _) in enumerate(cases)}

        def one(case: tuple[str, list[str]]) -> list[dict]:
            name, args = case
            out = helm("template", self.release[name], str(CHART), "--namespace", NAMESPACE, *args).stdout  # fmt: skip
            (self.dir / f"{name}.yaml").write_text(out)
            return [d for d in yaml.safe_load_all(out) if d]

        with ThreadPoolExecutor(4) as pool:
            self.docs = dict(zip((name for name, _ in cases), pool.map(one, cases), strict=True))
        self.scan: subprocess.Popen | None = None
        try:
            binary = checkov()  # the first time, installs it (a few minutes)
        except pytest.fail.Exception as err:
            self.unavailable = err  # the checkov test reports it; the others need no checkov
            return
        self.scan = subprocess.Popen(
            [str(binary), "--directory", str(self.dir), "--framework", "kubernetes",
             "--output", "json", "--skip-download"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def checkov_report(self) -> dict:
        if self.scan is None:
            raise self.unavailable
        out, err = self.scan.communicate(timeout=300)
        try:
            report = json.loads(out)
        except json.JSONDecodeError:
            raise AssertionError(f"checkov (exit {self.scan.returncode}) gave no report:\n{err[-3000:]}") from None  # fmt: skip
        # One framework: one report (a list when there are several).
        assert isinstance(report, dict) and report.get("check_type") == "kubernetes", out[:500]
        return report

    def stop(self) -> None:
        if self.scan is not None and self.scan.poll() is None:
            self.scan.kill()
            self.scan.communicate()


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    found = Renders(tmp_path_factory.mktemp("chart"))
    yield found
    found.stop()


def example_docs() -> dict[str, list[dict]]:
    found = {}
    for top in EXAMPLES:
        for path in sorted((REPO / top).rglob("*.y*ml")):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
            if docs := [d for d in docs if "apiVersion" in d and "kind" in d]:
                found[str(path.relative_to(REPO))] = docs
    return found


# The first use of `renders` may install checkov (chartkit.checkov): more than the default.
SETS_UP_RENDERS = pytest.mark.timeout(900)


@SETS_UP_RENDERS
def test_rendered_objects_are_valid_kubernetes(renders):
    versions = kube_versions(OLDEST_KUBE)
    assert versions[0] == OLDEST_KUBE and NEWEST_KUBE in versions, (
        f"kubernetes-validate has schemas for {versions}: install the pinned one (make venv)"
    )
    sources = {**renders.docs, **example_docs()}
    assert any(name.startswith("examples/") for name in sources)
    # The same object from several renderings (but for its release's name) is checked once.
    unique: dict[str, tuple[str, dict]] = {}
    for source, docs in sources.items():
        release = renders.release.get(source)
        for doc in docs:
            key = json.dumps(doc, sort_keys=True)
            unique.setdefault(key.replace(release, "RELEASE") if release else key, (source, doc))
    checked: set[str] = set()
    problems = []
    for version in versions:
        for source, doc in unique.values():
            what = f"{source}: {doc['kind']} {doc.get('metadata', {}).get('name')}"
            try:
                validate_kube(doc, version)
            except kubernetes_validate.SchemaNotFoundError:
                group = doc["apiVersion"].rpartition("/")[0]
                if group not in NO_SCHEMA_GROUPS:
                    problems.append(f"{what}: Kubernetes {version} has no {doc['apiVersion']} {doc['kind']}")  # fmt: skip
                continue
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                problems.append(f"{what}: Kubernetes {version}: {path}: {err.message}")
                continue
            checked.add(doc["kind"])
    assert not problems, "\n".join(problems[:40])
    assert {"Deployment", "Service", "ServiceAccount", "Secret", "ClusterRole", "Role",
            "RoleBinding", "ClusterRoleBinding", "NetworkPolicy", "ConfigMap",
            "CustomResourceDefinition"} <= checked  # fmt: skip


def checkov_justified() -> dict[str, str]:
    """The chart README's checkov table: check ID -> what the chart does (`skipped` or `fixed`)."""
    readme = (CHART / "README.md").read_text()
    section = readme.split("\n## Kubernetes versions and checkov", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(CKV2?_K8S_\d+)` \| [^|]+ \| (skipped|fixed)\b", section, re.M)
    assert rows, "the chart README's Checkov table is missing or has changed its form"
    return dict(rows)


@SETS_UP_RENDERS
def test_checkov_finds_nothing_unjustified(renders):
    """Each of checkov's findings on the rendered chart is fixed, or skipped by an annotation
    on the object (checkov.io/skipN: ID=reason) and justified in the chart README."""
    report = renders.checkov_report()
    summary, results = report["summary"], report["results"]
    assert summary["parsing_errors"] == 0, report["results"].get("parsing_errors")
    scanned = {Path(r["file_path"]).name for kind in ("passed_checks", "failed_checks", "skipped_checks") for r in results[kind]}  # fmt: skip
    assert scanned == {f"{name}.yaml" for name in renders.docs}, "checkov skipped renderings"
    failed = sorted(
        f"{r['check_id']} {r['check_name']}: {r['resource']} ({Path(r['file_path']).name})"
        for r in results["failed_checks"]
    )
    assert not failed, (
        "checkov's findings on the rendered chart: fix each, or skip it by an annotation with "
        'the reason and justify it in the chart README ("Kubernetes versions and checkov"):\n'
        + "\n".join(failed)
    )
    justified = checkov_justified()
    skipped = {
        r["check_id"]: r["check_result"].get("suppress_comment", "")
        for r in results["skipped_checks"]
    }
    for check, comment in skipped.items():
        assert justified.get(check) == "skipped", (
            f"{check} is skipped but not justified in the README"
        )
        assert comment and comment != "No comment provided", f"{check}: skipped without a reason"
    stale = {c for c, how in justified.items() if how == "skipped"} - set(skipped)
    assert not stale, f"the README justifies skips the chart no longer makes: {sorted(stale)}"
    passed = {r["check_id"] for r in results["passed_checks"]}
    unfixed = {c for c, how in justified.items() if how == "fixed"} - passed
    assert not unfixed, f"the README says fixed, but no rendering passes: {sorted(unfixed)}"


# --- The values that become the operator's flags ------------------------------------------


def operator_args(docs: list[dict]):
    """The operator container's args, parsed by `aiincident`'s own parser (so a flag the chart
    passes and the operator lacks fails here), and its container spec."""
    from ai_incident_operator.cli import build_parser

    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    try:
        parsed = build_parser().parse_args(container["args"])
    except SystemExit:
        raise AssertionError(f"aiincident rejects the chart's args {container['args']}") from None
    return parsed, container


@SETS_UP_RENDERS
def test_operator_accepts_the_args_of_every_rendering(renders):
    for name, docs in renders.docs.items():
        parsed, _ = operator_args(docs)
        assert parsed.command == "run", name


def by_kind(docs: list[dict], kind: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def test_metrics_share_the_intake_port_by_default():
    docs = render(RELEASE, NAMESPACE, "--set", "serviceMonitor.enabled=true")
    parsed, container = operator_args(docs)
    assert not parsed.metrics_listen and not parsed.metrics_require_token
    assert [p["name"] for p in container["ports"]] == ["http", "healthz"]
    assert [p["name"] for p in by_kind(docs, "Service")["spec"]["ports"]] == ["http"]
    (endpoint,) = by_kind(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "http" and "bearerTokenSecret" not in endpoint
    (ingress,) = by_kind(docs, "NetworkPolicy")["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The intake's own port is no port of its own.
    same = render(RELEASE, NAMESPACE, "--set", "metrics.port=8080")
    assert not operator_args(same)[0].metrics_listen


def test_metrics_on_a_port_of_its_own(tmp_path):
    from ai_incident_operator.intake.server import parse_listen

    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]  # fmt: skip
    alertmanager = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}}}]
    values = {
        "metrics": {"port": 9090, "requireToken": True},
        "serviceMonitor": {"enabled": True, "useWebhookToken": True},
        "networkPolicy": {"ingressFrom": alertmanager, "metricsFrom": prometheus},
    }
    path = write_values(tmp_path / "metrics.yaml", values)
    docs = render(RELEASE, NAMESPACE, "-f", str(path))
    parsed, container = operator_args(docs)
    assert parse_listen(parsed.metrics_listen, "--metrics-listen") == ("0.0.0.0", 9090)
    assert parsed.metrics_require_token is True
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    service_ports = by_kind(docs, "Service")["spec"]["ports"]
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in service_ports  # fmt: skip
    (endpoint,) = by_kind(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert endpoint["bearerTokenSecret"]["name"] == f"{RELEASE}-ai-incident-operator-webhook"
    intake, metrics = by_kind(docs, "NetworkPolicy")["spec"]["ingress"]
    assert intake == {"ports": [{"port": "http", "protocol": "TCP"}], "from": alertmanager}
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": prometheus}
    # Without peers of its own, /metrics takes the intake's.
    values["networkPolicy"]["metricsFrom"] = []
    docs = render(RELEASE, NAMESPACE, "-f", str(write_values(path, values)))
    assert by_kind(docs, "NetworkPolicy")["spec"]["ingress"][1]["from"] == alertmanager
    # The old key still asks for the token.
    old = render(RELEASE, NAMESPACE, "--set", "webhook.metricsRequireToken=true")
    assert operator_args(old)[0].metrics_require_token is True
