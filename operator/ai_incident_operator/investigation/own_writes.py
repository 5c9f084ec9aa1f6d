"""The operator's own rollouts, known from the ledger, so that no hypothesis blames them (pure).

A mitigation that changes a pod template (GuardrailSidecar's container,
ConservativeConfig's env and rollout annotation) makes the Deployment controller
roll out a new ReplicaSet, and its undo rolls back to the ReplicaSet before: both
are the operator's writes, not a change people made. The operator writes the
`aiincident.io/ledger` annotation in the same update as the template, and the
controller copies a Deployment's annotations onto the ReplicaSet it makes, so each
ReplicaSet carries the ledger that was in force when it was made: the template
paths the operator held there, with their originals. Putting those back gives the
template as people made it; consecutive ReplicaSets that people made the same are
one rollout, the earliest of them (`people_made`).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from .. import ledger
from ..fieldpath import PathError, put
from ..times import parse_time

Body = dict[str, Any]
TEMPLATE = "/spec/template/"  # the ledger paths that change a pod template
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"  # added by the controller, different per ReplicaSet


def people_made(replicasets: list[Body], workload: Body | None = None) -> list[Body]:
    """REPLICASETS (newest revision first) as people rolled them out, newest first.

    Each run of consecutive ReplicaSets whose templates differ only where the operator
    held fields becomes one: the earliest made of them, with the template people made,
    the oldest revision of the run, and no rollback mark when the return to it was the
    operator's undo. WORKLOAD's own ledger counts for the ReplicaSet it serves now.
    """
    current = _template(workload) if workload else None
    groups: list[list[tuple[Body, Body]]] = []
    for rs in replicasets:
        sources = [rs, workload] if workload and _template(rs) == current else [rs]
        made = _as_people_made(rs, sources)
        if groups and groups[-1][0][1] == made:
            groups[-1].append((rs, made))
        else:
            groups.append([(rs, made)])
    return [_one(group) for group in groups]


def _template(obj: Body | None) -> Body:
    template = copy.deepcopy(((obj or {}).get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return _pruned(template)


def _as_people_made(rs: Body, sources: list[Body]) -> Body:
    """RS's template with the originals of every template path its ledgers hold put back."""
    shell = {"spec": {"template": _template(rs)}}
    for source in sources:
        for path, value in ledger.originals(source).items():
            if path.startswith(TEMPLATE):
                try:
                    put(shell, path, value)
                except PathError:
                    continue  # a path this template does not have: nothing of ours there
    return _pruned(shell["spec"]["template"])


def _pruned(value: Any) -> Any:
    """VALUE without empty maps and lists (a removed annotation leaves `annotations: {}`)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _one(group: list[tuple[Body, Body]]) -> Body:
    """The rollout people made, for a run of ReplicaSets they made the same."""
    first = min(group, key=lambda pair: _created(pair[0]) or datetime.max)
    rs = copy.deepcopy(first[0])
    if len(group) > 1:
        # People's rollout was the run's first revision; a way back to it was the operator's undo.
        annotations = rs["metadata"].setdefault("annotations", {})
        annotations[REVISION] = str(min(r for member, _ in group for r in _revisions(member)))
        annotations.pop(REVISION_HISTORY, None)
    rs.setdefault("spec", {})["template"] = first[1]
    return rs


def _revisions(rs: Body) -> list[int]:
    """Every revision RS has had: its own and those a rollback to it replaced."""
    annotations = rs["metadata"].get("annotations") or {}
    found = [annotations.get(REVISION, "0"), *annotations.get(REVISION_HISTORY, "").split(",")]
    return [int(r) for r in found if r.strip().isdigit()] or [0]


def _created(rs: Body) -> datetime | None:
    when = parse_time(rs["metadata"].get("creationTimestamp"))
    return when.replace(tzinfo=None) if when else None  # naive: comparable with datetime.max
