"""The CRDs as API.md fixes them; checked offline (the integration suite installs them)."""

import json

import yaml

from kit import REPO

CRDS = {p.name: yaml.safe_load(p.read_text()) for p in (REPO / "crds").glob("*.yaml")}


def _schema(name: str) -> dict:
    return CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node, path=""):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_cluster_policy_is_policy_plus_namespace_selector():
    mp = _schema("aiincident.io_mitigationpolicies.yaml")["properties"]["spec"]["properties"]
    cmp_ = dict(
        _schema("aiincident.io_clustermitigationpolicies.yaml")["properties"]["spec"]["properties"]
    )
    assert cmp_.pop("namespaceSelector")["properties"] == mp["targetSelector"]["properties"]
    assert cmp_ == mp


def test_no_cel_no_empty_string_default_and_spec_is_structural():
    for name, crd in CRDS.items():
        text = json.dumps(crd)
        assert "x-kubernetes-validations" not in text, name
        for path, node in _walk(crd):
            if isinstance(node, dict) and node.get("default") == "":
                raise AssertionError(f"{name}{path}: empty-string default breaks Kubernetes 1.20")
        spec = _schema(name)["properties"]["spec"]
        assert "x-kubernetes-preserve-unknown-fields" not in spec, name


def test_contract_names():
    names = {c["spec"]["names"]["kind"]: c["spec"]["names"] for c in CRDS.values()}
    assert names["AIIncident"]["shortNames"] == ["aii"]
    assert names["MitigationPolicy"]["shortNames"] == ["mp"]
    assert names["ClusterMitigationPolicy"]["shortNames"] == ["cmp"]
    assert all(n["categories"] == ["ai-incidents"] for n in names.values())
    incident = CRDS["aiincident.io_aiincidents.yaml"]["spec"]["versions"][0]
    columns = [c["name"] for c in incident["additionalPrinterColumns"]]
    assert columns == ["Severity", "Phase", "Category", "Target", "Age"]
    action_types = _schema("aiincident.io_mitigationpolicies.yaml")["properties"]["spec"][
        "properties"
    ]["responses"]["items"]["properties"]["actions"]["items"]["properties"]["type"]["enum"]
    assert action_types == [
        "ScaleToZero",
        "TrafficShift",
        "GuardrailSidecar",
        "ConservativeConfig",
        "IncreaseMonitoring",
        "Notify",
        "StatusPage",
        "Ticket",
    ]
