"""`aiincident regulatory-report NAME`: the EU AI Act Art. 73 report of a serious incident.

`build` (pure) puts together, from the incident, its policy and the frozen evidence:
who provides which AI system, the serving model version, the Art. 3(49) category, the
suspected causal link (hypotheses, reproduction), the corrective actions with their
times, the frozen evidence with its digest checked, and the deadline. It is an
*initial* report while the incident is open or awaiting its review and a *complete*
one once the review is done (phase Closed). Where each field comes from:

- provider: the policy's `regulatory.provider`, else the incident's annotation
  `aiincident.io/provider`; else missing (the report says so);
- system: the policy's `regulatory.system`, else the annotation `aiincident.io/system`,
  else the target's `app.kubernetes.io/part-of` or `app.kubernetes.io/name` label, else
  the targets' names;
- serving model: each target as frozen before mitigation (`status.evidenceDigest`), else
  as read now (the ledgers' originals put back): images, `storageUri`s, the
  `app.kubernetes.io/version` label, the Deployment revision.

`markdown` renders the same dict. Reads only: the incident, the policy, the frozen
ConfigMap and (without frozen evidence) the targets.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from . import API_VERSION, GROUP
from .conditions import now_iso
from .engine import regulatory
from .times import parse_time

Body = dict[str, Any]
FORMATS = ("md", "json")
PROVIDER_ANNOTATION = f"{GROUP}/provider"
SYSTEM_ANNOTATION = f"{GROUP}/system"
VERSION_LABEL = "app.kubernetes.io/version"
REVISION = "deployment.kubernetes.io/revision"

# Art. 3(49): what makes an incident serious.
ART_3_49 = {
    "a": "the death of a person, or serious harm to a person's health",
    "b": "a serious and irreversible disruption of the management or operation of critical "
    "infrastructure",
    "c": "the infringement of obligations under Union law intended to protect fundamental rights",
    "d": "serious harm to property or the environment",
}
BY_HARM = {"Death": "a", "CriticalInfrastructure": "b", "Widespread": "c"}
BY_CATEGORY = {"HarmfulOutput": "a", "DataLeak": "c", "BiasViolation": "c"}


# --- pure -------------------------------------------------------------------------------


def serious_category(harm: str | None, category: str | None) -> Body:
    """The Art. 3(49) point for HARM, else for our CATEGORY; none when it must be assessed."""
    if harm in BY_HARM:
        point, basis = BY_HARM[harm], f"spec.regulatory.harm {harm}"
    elif category in BY_CATEGORY:
        point, basis = BY_CATEGORY[category], f"category {category}"
    else:
        return {"article": None, "text": None,
                "basis": f"category {category or 'Other'}: to be assessed by the provider"}  # fmt: skip
    return {"article": f"Art. 3(49)({point})", "text": ART_3_49[point], "basis": basis}


def check_frozen(status: Body, configmap: Body | None, problem: str = "") -> Body:
    """The frozen evidence and whether it still hashes to status.evidenceDigest (pure)."""
    ref = status.get("frozenEvidenceRef") or {}
    recorded = status.get("evidenceDigest")
    out: Body = {
        "configMap": ref.get("name"),
        "key": ref.get("key") or regulatory.FROZEN_KEY,
        "digest": recorded,
        "frozenAt": status.get("evidenceFrozenAt"),
        "computedDigest": None,
        "verified": None,
        "problem": problem or None,
        "content": None,
    }
    if not recorded:
        out["problem"] = problem or (
            "nothing was frozen: no action has altered the AI system yet, or the freeze failed "
            "(see the incident's EvidenceNotFrozen Event)"
        )
        return out
    text = ((configmap or {}).get("data") or {}).get(out["key"])
    if text is None:
        out["verified"] = False
        out["problem"] = (
            problem or f"ConfigMap {ref.get('name')} or its key {out['key']} is missing"
        )
        return out
    out["computedDigest"] = regulatory.digest(text)
    out["verified"] = out["computedDigest"] == recorded
    if not out["verified"]:
        out["problem"] = "the frozen ConfigMap does not hash to status.evidenceDigest"
    try:
        out["content"] = json.loads(text)
    except ValueError:
        out["problem"] = out["problem"] or "the frozen evidence is not JSON"
    return out


def _walk(node: Any, key: str) -> list[str]:
    if isinstance(node, dict):
        found = [str(node[key])] if isinstance(node.get(key), str) else []
        return found + [v for k, value in node.items() if k != key for v in _walk(value, key)]
    if isinstance(node, list):
        return [v for item in node for v in _walk(item, key)]
    return []


def _labels(obj: Body) -> dict[str, str]:
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return {**(template.get("labels") or {}), **((obj.get("metadata") or {}).get("labels") or {})}


def serving_model(objects: list[tuple[str, Body]], source: str) -> list[Body]:
    """What each target served: images, storage URIs, version label, revision (pure)."""
    out = []
    for ref, obj in objects:
        spec = obj.get("spec") or {}
        out.append({
            "target": ref,
            "images": sorted(set(_walk(spec, "image"))),
            "storageUris": sorted(set(_walk(spec, "storageUri"))),
            "version": _labels(obj).get(VERSION_LABEL),
            "revision": ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION),
            "source": source,
        })  # fmt: skip
    return out


def _identity(policy_spec: Body, incident: Body, objects: list[tuple[str, Body]]) -> Body:
    regulatory_spec = (policy_spec or {}).get("regulatory") or {}
    annotations = incident["metadata"].get("annotations") or {}
    provider: Body = {"name": None, "source": None}
    if regulatory_spec.get("provider"):
        provider = {"name": regulatory_spec["provider"], "source": "policy regulatory.provider"}
    elif annotations.get(PROVIDER_ANNOTATION):
        provider = {"name": annotations[PROVIDER_ANNOTATION],
                    "source": f"incident annotation {PROVIDER_ANNOTATION}"}  # fmt: skip
    system: Body = {"name": None, "source": None}
    labels = _labels(objects[0][1]) if objects else {}
    if regulatory_spec.get("system"):
        system = {"name": regulatory_spec["system"], "source": "policy regulatory.system"}
    elif annotations.get(SYSTEM_ANNOTATION):
        system = {"name": annotations[SYSTEM_ANNOTATION],
                  "source": f"incident annotation {SYSTEM_ANNOTATION}"}  # fmt: skip
    else:
        for label in ("app.kubernetes.io/part-of", "app.kubernetes.io/name"):
            if labels.get(label):
                system = {"name": labels[label], "source": f"target label {label}"}
                break
        else:
            if objects:
                system = {"name": ", ".join(ref for ref, _ in objects), "source": "target names"}
    return {"provider": provider, "system": system}


def _condition(status: Body, type_: str) -> Body | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return {k: c.get(k) for k in ("status", "reason", "message", "lastTransitionTime")}
    return None


def build(
    incident: Body,
    policy_spec: Body | None,
    frozen: Body,
    current: list[tuple[str, Body]],
    now: datetime,
) -> Body:
    """The report (pure). FROZEN is `check_frozen`'s; CURRENT the targets as read now."""
    spec, status, meta = (
        incident.get("spec") or {},
        incident.get("status") or {},
        incident["metadata"],
    )
    harm = regulatory.harm(spec)
    legal = regulatory.legal_period(spec)
    content = frozen.get("content") or {}
    objects = [(t["ref"], t["object"]) for t in content.get("targets") or [] if "object" in t]
    source = "frozen evidence (before any mitigation)"
    if not objects:
        objects = [(ref, regulatory.pre_mitigation(obj)) for ref, obj in current]
        source = "the target as read now, the ledgers' originals put back (not frozen)"
    due = status.get("regulatoryReportDueBy")
    due_at = parse_time(due)
    complete = status.get("phase") == "Closed"
    return {
        "apiVersion": API_VERSION,
        "kind": "RegulatoryReport",
        "regime": (spec.get("regulatory") or {}).get("regime") or "EUAIAct",
        "article": "Art. 73",
        "reportType": "complete" if complete else "initial",
        "reportTypeReason": (
            "the incident is closed: its post-incident review is completed"
            if complete
            else f"the incident is {status.get('phase') or 'Detected'}: a complete report "
            "follows once its review is completed"
        ),
        "generatedAt": now_iso(now),
        "incident": {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "title": spec.get("title"),
            "description": spec.get("description"),
            "category": spec.get("category"),
            "severity": status.get("severity"),
            "phase": status.get("phase"),
            "detectedAt": status.get("detectedAt"),
            "mitigatedAt": status.get("mitigatedAt"),
            "resolvedAt": status.get("resolvedAt"),
        },
        **_identity(policy_spec or {}, incident, objects),
        "harm": harm,
        "seriousIncidentCategory": serious_category(harm, spec.get("category")),
        "deadline": {
            "dueBy": due,
            "legalPeriodDays": legal.days if legal else None,
            "overdue": bool(due_at and due_at < now and not complete),
            "source": "status.regulatoryReportDueBy",
        },
        "servingModel": serving_model(objects, source),
        "causalLink": {
            "rootCause": (spec.get("resolution") or {}).get("rootCause"),
            "rootCauseIdentified": _condition(status, "RootCauseIdentified"),
            "hypotheses": status.get("hypotheses") or [],
            "reproduction": status.get("reproduction"),
            "reproduced": _condition(status, "Reproduced"),
        },
        "correctiveActions": [
            {
                k: m.get(k)
                for k in ("action", "target", "state", "appliedAt", "revertedAt", "message")
            }
            for m in status.get("mitigations") or []
        ],
        "evidence": {"frozen": frozen, "evidenceRef": status.get("evidenceRef")},
    }


def _line(value: Any) -> str:
    return "—" if value in (None, "", []) else str(value)


def markdown(report: Body) -> str:
    """REPORT for a person (and a regulator's form)."""
    inc, dl, cat = report["incident"], report["deadline"], report["seriousIncidentCategory"]
    frozen = report["evidence"]["frozen"]
    out = [
        f"# Serious incident report ({report['reportType']}), {report['regime']} "
        f"{report['article']}",
        "",
        f"- incident: {inc['namespace']}/{inc['name']} ({_line(inc['title'])})",
        f"- report type: {report['reportType']} — {report['reportTypeReason']}",
        f"- generated: {report['generatedAt']}",
        f"- due by: {_line(dl['dueBy'])} (at most {_line(dl['legalPeriodDays'])} days for harm "
        f"{_line(report['harm'])}){' — OVERDUE' if dl['overdue'] else ''}",
        "",
        "## Provider and AI system",
        "",
        f"- provider: {_line(report['provider']['name'])} "
        f"(from {_line(report['provider']['source'])})",
        f"- AI system: {_line(report['system']['name'])} (from {_line(report['system']['source'])})",
        "",
        "## Serving model",
        "",
    ]
    for model in report["servingModel"]:
        out.append(
            f"- {model['target']}: images {_line(', '.join(model['images']))}; version "
            f"{_line(model['version'])}; revision {_line(model['revision'])}; storage "
            f"{_line(', '.join(model['storageUris']))} ({model['source']})"
        )
    out += [
        "",
        "## The incident",
        "",
        f"- category: {_line(inc['category'])}; severity {_line(inc['severity'])}; phase "
        f"{_line(inc['phase'])}",
        f"- serious incident: {_line(cat['article'])} {_line(cat['text'])} ({cat['basis']})",
        f"- detected {_line(inc['detectedAt'])}, mitigated {_line(inc['mitigatedAt'])}, resolved "
        f"{_line(inc['resolvedAt'])}",
    ]
    if inc.get("description"):
        out += ["", inc["description"].strip()]
    link = report["causalLink"]
    out += ["", "## Suspected causal link", ""]
    if link["rootCause"]:
        out.append(f"- root cause stated: {link['rootCause']}")
    for h in link["hypotheses"]:
        out.append(f"- {h.get('cause')} (confidence {h.get('confidence')})")
    if not link["rootCause"] and not link["hypotheses"]:
        out.append("- no hypothesis yet")
    for version in ("current", "previous"):
        tally = (link["reproduction"] or {}).get(version) or {}
        if tally:
            out.append(f"- reproduction on the {version} model: {tally.get('failed', 0)} of "
                       f"{tally.get('total', 0)} examples failed")  # fmt: skip
    reproduced = link["reproduced"] or {}
    if reproduced:
        out.append(f"- reproduced: {reproduced.get('status')} ({reproduced.get('reason')}: "
                   f"{_line(reproduced.get('message'))})")  # fmt: skip
    out += ["", "## Corrective actions", ""]
    for a in report["correctiveActions"]:
        when = f"applied {_line(a['appliedAt'])}" + (
            f", undone {a['revertedAt']}" if a.get("revertedAt") else ""
        )
        out.append(f"- {a['action']} on {a['target']}: {a['state']}, {when}: {_line(a['message'])}")
    if not report["correctiveActions"]:
        out.append("- none")
    out += [
        "",
        "## Frozen evidence (Art. 73(6))",
        "",
        f"- ConfigMap {_line(frozen['configMap'])} key {frozen['key']}, frozen "
        f"{_line(frozen['frozenAt'])}",
        f"- digest {_line(frozen['digest'])}; recomputed {_line(frozen['computedDigest'])}; "
        f"verified: {_line(frozen['verified'])}",
    ]
    if frozen.get("problem"):
        out.append(f"- problem: {frozen['problem']}")
    for t in (frozen.get("content") or {}).get("targets") or []:
        out.append(f"- {t.get('ref')} as it was before any mitigation")
    if frozen.get("configMap"):
        key = frozen["key"].replace(".", "\\.")
        out.append(f"- the frozen JSON: `kubectl get configmap {frozen['configMap']} -n "
                   f"{inc['namespace']} -o jsonpath='{{.data.{key}}}'`")  # fmt: skip
    return "\n".join(out) + "\n"


# --- the command --------------------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from .reports import _command, _parser

    command = _parser(
        subparsers,
        "regulatory-report",
        "print an incident's EU AI Act Art. 73 report (initial, or complete once reviewed)",
    )
    command.add_argument("name")
    command.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
    command.add_argument(
        "-o", "--output", choices=FORMATS, default="md", help="default: %(default)s"
    )
    command.set_defaults(func=_command(_report))


def _report(args: argparse.Namespace) -> int:
    from . import kube
    from .errors import APIError
    from .evals import _policy_of
    from .reports import _get
    from .resources import Ref

    incident = _get(args.namespace, args.name)
    status = incident.get("status") or {}
    policy_spec, problems = _policy_of(incident)
    configmap, problem = None, ""
    ref = status.get("frozenEvidenceRef") or {}
    if ref.get("name"):
        try:
            configmap = kube.get(Ref("ConfigMap", args.namespace, ref["name"]))
        except APIError as err:
            problem = f"ConfigMap {ref['name']} could not be read: {err.message}"
    frozen = check_frozen(status, configmap, problem)
    current: list[tuple[str, Body]] = []
    if not frozen.get("content"):
        for t in status.get("targets") or []:
            try:
                obj = kube.get(Ref(t.get("kind", "Deployment"), args.namespace, t["name"]))
            except APIError as err:
                problems.append(f"{t.get('kind')}/{t['name']} could not be read: {err.message}")
                continue
            if obj is not None:
                current.append((f"{t.get('kind', 'Deployment')}/{t['name']}", obj))
    report = build(incident, policy_spec, frozen, current, datetime.now(UTC))
    for line in problems:
        print(f"aiincident: warning: {line}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(report, indent=2, sort_keys=False))
    else:
        print(markdown(report), end="")
    if frozen.get("verified") is False:
        print(
            f"aiincident: the frozen evidence does not check: {frozen['problem']}", file=sys.stderr
        )
        return 1
    return 0
