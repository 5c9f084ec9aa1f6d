"""ConfigMaps owned by an incident: the evidence and the review documents.

`write_owned_configmap` creates the ConfigMap or replaces its data, with an
ownerReference to the AIIncident so that deleting the incident deletes them
(garbage collection). Called by `evidence.write_evidence` and `review.write_review`.
"""

from __future__ import annotations

from .. import GROUP, kube, retry
from ..kube import Ref

INCIDENT_LABEL = f"{GROUP}/incident"
PART_LABEL = f"{GROUP}/part"
NAME_LIMIT = 253


class NotOurs(RuntimeError):
    """A ConfigMap of that name exists and belongs to someone else; it is left alone."""


def owned_name(incident: dict, suffix: str) -> str:
    """`<incident>-<suffix>`, shortened to a valid object name if the incident's is long."""
    base = incident["metadata"]["name"][: NAME_LIMIT - len(suffix) - 1].rstrip("-.")
    return f"{base}-{suffix}"


def _label_value(text: str) -> str:
    return text[:63].rstrip("-._")


def write_owned_configmap(
    incident: dict, suffix: str, data: dict[str, str], annotations: dict[str, str] | None = None
) -> dict:
    """Create or replace ConfigMap `<incident>-<suffix>` holding DATA; returns its ref."""
    namespace = incident["metadata"]["namespace"]
    name = owned_name(incident, suffix)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                INCIDENT_LABEL: _label_value(incident["metadata"]["name"]),
                PART_LABEL: suffix,
            },
            "annotations": dict(annotations or {}),
            "ownerReferences": [kube.owner_reference(incident)],
        },
        "data": data,
    }
    ref = Ref("ConfigMap", namespace, name)

    def attempt() -> None:
        # A Conflict when created or changed meanwhile (another reconcile): read again, replace.
        current = kube.get(ref)
        if current is None:
            body["metadata"].pop("resourceVersion", None)
            kube.create("ConfigMap", namespace, body)
            return
        _check_ours(current, incident)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        kube.replace(ref, body)

    retry.on_conflict(attempt, what=f"write of ConfigMap {namespace}/{name}")
    return {"kind": "ConfigMap", "name": name}


def _check_ours(current: dict, incident: dict) -> None:
    # An earlier incident of the same name (deleted, re-created) may still own it: take over.
    owners = current["metadata"].get("ownerReferences") or []
    if any(
        o.get("kind") == "AIIncident" and o.get("name") == incident["metadata"]["name"]
        for o in owners
    ):
        return
    raise NotOurs(
        f"ConfigMap {current['metadata']['namespace']}/{current['metadata']['name']} exists and "
        "is not owned by this incident; it was left alone: rename or delete it"
    )
