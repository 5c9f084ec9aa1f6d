"""`aiincident validate` and `aiincident simulate`: check policies and incidents before a cluster does.

`validate FILE...` is offline, for GitOps CI: every AIIncident, MitigationPolicy and
ClusterMitigationPolicy document is checked against its CRD's openAPIV3Schema (the
subset of OpenAPI the CRDs use, see `schema_problems`) and against the rules the
operator itself applies (`policy.validate`, and the engine's rules for incidents).
Problems come out as `file:doc N: path: problem`, exit code 1. Unknown fields count
as problems: the apiserver would drop them without a word.

`simulate --policy FILE --incident FILE` asks the live cluster what the operator
would do for that incident under that policy, and changes nothing: it resolves the
targets, triages, applies the operator's safety gates, then runs each action's
`apply` with dry_run=True (the engine's own path) and prints the planned changes.

The CRD schemas come from the package (`ai_incident_operator/crds`, a link to the
repository's `crds/`), else from `$AIINCIDENT_CRDS_DIR` or `--crds DIR`. Registered in
`cli.COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import importlib.resources
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from . import GROUP, bounds, kube, workloads
from . import policy as policies
from .access import Access, ReadOnly
from .bounds import TenantBounds
from .errors import APIError
from .resources import Ref
from .times import parse_time

Body = dict[str, Any]
KINDS = ("AIIncident", "MitigationPolicy", "ClusterMitigationPolicy")
CRDS_ENV = "AIINCIDENT_CRDS_DIR"
BOUNDS_HELP = (
    "the operator's tenant bounds for namespaced MitigationPolicies (YAML; default: "
    f"${bounds.ENV}, else the safe defaults)"
)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- The CRD schemas ----------------------------------------------------------------------


def crd_dirs(explicit: str | Path | None = None) -> list[Path]:
    """Where CRDs are looked for, first match wins: --crds, $AIINCIDENT_CRDS_DIR, the package."""
    found: list[Path] = []
    for candidate in (explicit, os.environ.get(CRDS_ENV)):
        if candidate:
            found.append(Path(candidate))
    packaged = importlib.resources.files(__package__) / "crds"
    found.append(Path(str(packaged)))
    # A source checkout where the package link is missing (e.g. a copy without symlinks).
    found.append(Path(__file__).resolve().parents[2] / "crds")
    return found


def load_schemas(directory: str | Path | None = None) -> dict[tuple[str, str], Body]:
    """(apiVersion, kind) -> openAPIV3Schema, from the first folder that holds our CRDs."""
    for folder in crd_dirs(directory):
        if not folder.is_dir():
            continue
        schemas: dict[tuple[str, str], Body] = {}
        for path in sorted(folder.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec.get("versions") or []:
                    if version.get("served", True):
                        key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                        schemas[key] = version["schema"]["openAPIV3Schema"]
        if any(kind in KINDS for _, kind in schemas):
            return schemas
        if directory and folder == Path(directory):
            break
    raise FileNotFoundError(
        f"no aiincident.io CRDs found in {', '.join(str(d) for d in crd_dirs(directory))}: "
        f"pass --crds DIR (the repository's crds/) or set {CRDS_ENV}"
    )


# --- A validator for the OpenAPI subset the CRDs use --------------------------------------


def _join(path: str, key: str) -> str:
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_TYPE_WORDS = {
    "string": "a string",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "array": "a list",
    "object": "an object (a map of fields)",
}


def schema_problems(value: Any, schema: Body, path: str = "") -> list[tuple[str, str]]:
    """(path, problem) for VALUE against SCHEMA (pure).

    Covers what the CRDs use: type, required, enum, minimum/maximum, min/maxLength,
    pattern, min/maxItems, properties, additionalProperties, items,
    x-kubernetes-int-or-string and x-kubernetes-preserve-unknown-fields. Nulls pass:
    the apiserver drops null fields of non-nullable schemas before validating.
    """
    if value is None:
        return []
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return [(path, f"must be a whole number or a string, not {_describe(value)}")]
        return []
    type_ = schema.get("type")
    if type_ and not _TYPE_CHECKS[type_](value):
        return [(path, f"must be {_TYPE_WORDS[type_]}, not {_describe(value)}")]
    problems: list[tuple[str, str]] = []
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(str(c) for c in schema["enum"])
        problems.append((path, f"unsupported value {json.dumps(value)}: use one of {choices}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append((path, f"{value} is less than the minimum {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            problems.append((path, f"{value} is more than the maximum {schema['maximum']}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append((path, f"longer than {schema['maxLength']} characters"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append((path, f"shorter than {schema['minLength']} characters"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append((path, f"{json.dumps(value)} does not match {schema['pattern']}"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append((path, f"needs at least {schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append((path, f"takes at most {schema['maxItems']} items"))
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                problems += schema_problems(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        problems += _object_problems(value, schema, path)
    return problems


def _object_problems(value: Body, schema: Body, path: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    properties = schema.get("properties") or {}
    for key in schema.get("required") or []:
        if value.get(key) is None:
            problems.append((_join(path, key), "required, but missing"))
    extra = schema.get("additionalProperties")
    opaque = not properties and extra is None
    for key, item in value.items():
        where = _join(path, str(key))
        if key in properties:
            problems += schema_problems(item, properties[key], where)
        elif isinstance(extra, dict):
            problems += schema_problems(item, extra, where)
        elif schema.get("x-kubernetes-preserve-unknown-fields") or opaque or extra is True:
            continue
        else:
            near = difflib.get_close_matches(str(key), list(properties), n=1)
            hint = f"; did you mean {near[0]}?" if near else f"; known: {', '.join(properties)}"
            problems.append((where, f"unknown field: the apiserver would drop it{hint}"))
    return problems


# --- Documents ----------------------------------------------------------------------------


@dataclass
class Report:
    """What validating some documents found."""

    errors: list[str] = field(default_factory=list)  # "file:doc N: path: problem"
    checked: int = 0  # documents of our kinds
    invalid: int = 0
    skipped: int = 0  # documents of other kinds (a kustomization, a Deployment, ...)


def document_problems(
    doc: Body, schemas: dict[tuple[str, str], Body], limits: TenantBounds | None = None
) -> list[str]:
    """Problems of one AIIncident or (Cluster)MitigationPolicy, as "path: problem" (no file).

    With LIMITS, a MitigationPolicy is also held to those tenant bounds, as the operator
    holds it (what the policy says alone; its objects are the cluster's to tell).
    """
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    served = sorted(v for v, k in schemas if k == kind)
    if (api_version, kind) not in schemas:
        if not served:
            kinds = ", ".join(KINDS)
            return [f"kind: {kind!r} is not a kind of {GROUP} (known: {kinds})"]
        return [f"apiVersion: {api_version} does not serve {kind}: use {', '.join(served)}"]
    problems = [
        f"{p or '(document)'}: {why}"
        for p, why in schema_problems(doc, schemas[(api_version, kind)])
    ]
    problems += _metadata_problems(doc)
    failed_paths = {p.partition(":")[0] for p in problems}
    try:
        semantic = _semantic_problems(doc)
    except (AttributeError, TypeError, KeyError, ValueError):
        # The semantic rules assume the schema holds; with schema errors they may not apply.
        semantic = [] if problems else ["(document): could not be checked further"]
    for problem in semantic:
        # "unknown action type" repeats what the schema's enum already said about `.type`.
        head = problem.split(" ", 1)[0].rstrip(":")
        if "unknown action type" in problem and f"{head}.type" in failed_paths:
            continue
        problems.append(problem)
    if limits is not None and doc.get("kind") == "MitigationPolicy" and not semantic:
        namespace = (doc.get("metadata") or {}).get("namespace")
        problems += [
            f"spec.{p} (outside the tenant bounds)"
            for p in bounds.problems(doc.get("spec") or {}, namespace, limits)
        ]
    return problems


def _metadata_problems(doc: Body) -> list[str]:
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        return ["metadata.name: required, but missing"]
    name = str(meta["name"])
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [
            f"metadata.name: {name!r} is not a valid name (lower-case letters, digits, '-' and "
            "'.', starting and ending with a letter or digit)"
        ]
    if doc.get("kind") == "ClusterMitigationPolicy" and meta.get("namespace"):
        return ["metadata.namespace: a ClusterMitigationPolicy is cluster-scoped: drop it"]
    return []


def _semantic_problems(doc: Body) -> list[str]:
    spec = doc.get("spec") or {}
    if doc.get("kind") in ("MitigationPolicy", "ClusterMitigationPolicy"):
        from .investigation.checks import spec_problems

        found = [*policies.validate(spec), *spec_problems(spec.get("reproduction"))]
        return [f"spec.{p}" for p in found]
    problems = []
    target = spec.get("target") or {}
    if not target.get("name") and not target.get("selector"):
        problems.append("spec.target: name the workload: give spec.target.name or .selector")
    namespace = (doc.get("metadata") or {}).get("namespace")
    if target.get("namespace") and namespace and target["namespace"] != namespace:
        problems.append(
            f"spec.target.namespace: {target['namespace']} is not the incident's namespace "
            f"{namespace}; the operator refuses it: open the incident in the target's namespace"
        )
    return problems


def _documents(source: str) -> Iterator[tuple[str, int, Any]]:
    """(label, N, document) for each YAML document of a file, folder (recursively) or '-'."""
    if source == "-":
        yield from _parse("<stdin>", sys.stdin.read())
        return
    path = Path(source)
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")):
            yield from _parse(str(child), child.read_text())
        return
    yield from _parse(source, path.read_text())


def _parse(label: str, text: str) -> Iterator[tuple[str, int, Any]]:
    n = 0
    try:
        for n, doc in enumerate(yaml.safe_load_all(text), start=1):
            yield label, n, doc
    except yaml.YAMLError as err:
        yield label, n + 1, err


def validate_sources(
    sources: list[str], schemas: dict[tuple[str, str], Body], limits: TenantBounds | None = None
) -> Report:
    report = Report()
    for source in sources:
        try:
            docs = list(_documents(source))
        except OSError as err:
            report.errors.append(f"{source}: cannot read: {err.strerror or err}")
            report.invalid += 1
            continue
        for label, n, doc in docs:
            where = f"{label}:doc {n}"
            if isinstance(doc, yaml.YAMLError):
                report.errors.append(f"{where}: not YAML: {str(doc).splitlines()[0]}")
                report.invalid += 1
                continue
            for item_where, item in _items(where, doc):
                if not _ours(item):
                    report.skipped += 1 if item is not None else 0
                    continue
                report.checked += 1
                problems = document_problems(item, schemas, limits)
                if problems:
                    report.invalid += 1
                    report.errors += [f"{item_where}: {p}" for p in problems]
    return report


def _items(where: str, doc: Any) -> Iterator[tuple[str, Any]]:
    """A `kind: List` (as `kubectl get -o yaml` writes) is checked item by item."""
    if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        for i, item in enumerate(doc["items"]):
            yield f"{where}: items[{i}]", item
    else:
        yield where, doc


def _ours(doc: Any) -> bool:
    return isinstance(doc, dict) and str(doc.get("apiVersion", "")).split("/")[0] == GROUP


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        schemas = load_schemas(args.crds)
        limits = bounds.load(args.tenant_bounds)
    except (FileNotFoundError, bounds.BoundsError) as err:
        print(f"aiincident validate: {err}", file=sys.stderr)
        return 2
    report = validate_sources(args.files, schemas, limits)
    for line in report.errors:
        print(line)
    summary = f"{report.checked} document(s) checked, {report.invalid} invalid"
    if report.skipped:
        summary += f", {report.skipped} of other kinds skipped"
    if any("(outside the tenant bounds)" in line for line in report.errors):
        summary += f"; outside the tenant bounds: {bounds.ADMIN_HINT}"
    if not args.quiet or report.errors:
        print(summary, file=sys.stderr)
    return 1 if report.invalid else 0


# --- simulate -----------------------------------------------------------------------------


def _single(path: str, kinds: tuple[str, ...]) -> Body:
    docs = [d for _, _, d in _documents(path) if isinstance(d, dict) and d.get("kind") in kinds]
    if len(docs) != 1:
        raise ValueError(f"{path}: expected one {' or '.join(kinds)}, found {len(docs)}")
    return docs[0]


def _context_namespace() -> str | None:
    import kubernetes

    try:
        _, active = kubernetes.config.list_kube_config_contexts()
        return (active or {}).get("context", {}).get("namespace")
    except (kubernetes.config.ConfigException, OSError, TypeError):
        return None


def _last_released(api: Access, namespace: str) -> Callable[[str, str, str], datetime | None]:
    """When each target's mitigation by another incident was last undone (for cooldowns)."""
    try:
        incidents = api.list("AIIncident", namespace)
    except APIError:  # no right to list: cooldowns are then not simulated
        incidents = []
    found: dict[str, list[tuple[str, str]]] = {}
    for incident in incidents:
        for entry in (incident.get("status") or {}).get("mitigations") or []:
            kind = entry.get("target", "").partition("/")[0]
            if entry.get("revertedAt") and kind in workloads.ADAPTERS:  # as handlers.releases
                target = entry["target"].partition("/")[2]
                found.setdefault(target, []).append(
                    (incident["metadata"]["name"], entry["revertedAt"])
                )

    def last(ns: str, target: str, incident: str) -> datetime | None:
        times = [when for name, when in found.get(target, []) if name != incident]
        return parse_time(max(times)) if times else None

    return last


def _namespace_labels(api: Access, namespace: str) -> dict[str, str]:
    """For ClusterMitigationPolicy namespaceSelectors; {} when the namespace cannot be read."""
    try:
        found = api.get(Ref("Namespace", "", namespace)) or {}
    except APIError:  # no right to read namespaces: a selector on labels then matches less
        return {}
    return (found.get("metadata") or {}).get("labels") or {}


def _as_ready(policy_obj: Body) -> Body:
    """POLICY_OBJ as the operator would hold it once checked: Ready for its generation."""
    ready = copy.deepcopy(policy_obj)
    generation = ready.setdefault("metadata", {}).setdefault("generation", 1)
    ready["status"] = {
        "observedGeneration": generation,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": ""}],
    }
    return ready


def protected_namespaces() -> frozenset[str]:
    extra = os.environ.get("AIINCIDENT_PROTECTED_NAMESPACES", "").split(",")
    return policies.BUILTIN_PROTECTED_NAMESPACES | frozenset(n for n in extra if n)


def simulate(
    policy_body: Body,
    incident_body: Body,
    namespace: str | None = None,
    api: Access | None = None,
    now: datetime | None = None,
    limits: TenantBounds | None = None,
) -> Body:
    """What the operator would do; reads the cluster, writes nothing. A JSON-able dict.

    The engine's own decision (`engine.decide`) and step runner (`engine.steps.run`,
    dry run) over a read-only access: a change to a gate changes both or neither.
    LIMITS: the tenant bounds the operator holds namespaced policies to (None: none).
    """
    from . import engine
    from .engine.steps import run
    from .policy_status import cluster_problems, tenant_problems

    api = ReadOnly(api or kube.cluster())
    incident = json.loads(json.dumps(incident_body))
    policy_obj = json.loads(json.dumps(policy_body))
    meta = incident.setdefault("metadata", {})
    ns = meta.get("namespace") or namespace or _context_namespace() or "default"
    meta["namespace"] = ns
    meta.setdefault("name", "simulated")
    meta.setdefault("uid", "00000000-0000-0000-0000-000000000000")
    if policy_obj.get("kind") == "MitigationPolicy":
        policy_obj["metadata"].setdefault("namespace", ns)
    spec = incident.get("spec") or {}
    result: Body = {
        "incident": f"{ns}/{meta['name']}",
        "policy": policies.describe(policy_obj),
        "notes": [],
        "steps": [],
    }
    notes: list[str] = result["notes"]

    wanted_ns = (spec.get("target") or {}).get("namespace", ns)
    if wanted_ns != ns:
        result["outcome"] = "CrossNamespaceTarget"
        notes.append(f"target namespace {wanted_ns} is not the incident's namespace {ns}")
        return result
    targets = engine.resolve_targets(api, ns, spec.get("target") or {})
    from .engine.targets import target_kind

    kind = target_kind(spec.get("target") or {})  # an object read by name may lack its kind
    result["targets"] = [f"{t.get('kind') or kind}/{t['metadata']['name']}" for t in targets]
    if not targets:
        result["outcome"] = "TargetNotFound"
        notes.append(engine.missing_target_message(ns, spec, api=api))
        return result
    try:
        not_ready = policies.validate(policy_obj.get("spec") or {}) or cluster_problems(
            policy_obj, api
        )
        if limits is not None and not not_ready:
            outside = tenant_problems(policy_obj, api, limits)
            not_ready += [f"{p} (outside the tenant bounds)" for p in outside]
    except APIError as err:  # e.g. Forbidden: the check is advice, the plan still helps
        not_ready = []
        notes.append(f"could not check the policy against the cluster: {err.message}")
    if not_ready:
        notes.append(
            "the operator would mark the policy Ready=False and not use it: "
            + "; ".join(not_ready)
            + ". The plan below is what it would do once that is fixed"
        )
    labels = _namespace_labels(api, ns)
    world = engine.World(
        policies=[_as_ready(policy_obj)],
        namespace_labels=lambda _: labels,
        last_released=_last_released(api, ns),
        protected_namespaces=protected_namespaces(),
        tenant_bounds=limits,
    )
    decision = engine.decide(incident, {}, targets, world, now or datetime.now(UTC))
    if decision.policy is None:
        notes.append(
            f"{result['policy']} does not cover {', '.join(result['targets'])} in namespace "
            f"{ns} (its targetSelector, namespaceSelector or namespace): triage only"
        )
    result["severity"] = decision.severity
    result["severityReason"] = f"{decision.severity_reason}: {decision.severity_message}"
    if decision.resolve:
        result["outcome"] = "Resolving"
        notes.append(f"the incident would be resolved ({decision.resolve[1]}): mitigations undone")
        return result
    if decision.gate:
        result["outcome"] = decision.gate[0]
        notes.append(decision.gate[1])
        return result
    if decision.approval == "ApprovalRequired":
        notes.append(
            f"severity {decision.severity} responses need approval: the operator would wait "
            "for spec.approved: true, then do the following"
        )
    if decision.dry_run:
        notes.append("the policy has safety.dryRun: the operator itself would change nothing")
    ctx = engine.IncidentContext(api, incident, {}, world, now or datetime.now(UTC))
    ctx.policy, ctx.targets = decision.policy, targets
    failed = False
    for step in decision.steps:
        outcome = run(ctx, step, dry_run=True)
        failed |= outcome.state == "Failed"
        result["steps"].append(
            {
                "action": step.action.type,
                "target": step.entry_target,
                "state": outcome.state,
                "message": outcome.message,
                "objects": outcome.objects,
            }
        )
    result["outcome"] = "WouldFail" if failed else "WouldMitigate"
    return result


def format_simulation(result: Body) -> str:
    lines = [f"Incident {result['incident']} under {result['policy']}:"]
    if "targets" in result:
        lines.append(f"  targets:  {', '.join(result['targets']) or 'none'}")
    if "severity" in result:
        lines.append(f"  severity: {result['severity']} ({result['severityReason']})")
    for note in result["notes"]:
        lines.append(f"  note:     {note}")
    if result["steps"]:
        lines.append("  plan (simulated with dry run; nothing was changed):")
        for step in result["steps"]:
            lines.append(
                f"    {step['action']} on {step['target']}: {step['state']}: {step['message']}"
            )
    lines.append(f"  outcome:  {result.get('outcome', 'unknown')}")
    return "\n".join(lines)


def _cmd_simulate(args: argparse.Namespace) -> int:
    try:
        schemas = load_schemas(args.crds)
        report = validate_sources([args.policy, args.incident], schemas)
        if report.errors:
            for line in report.errors:
                print(line)
            print("aiincident simulate: fix the problems above first", file=sys.stderr)
            return 1
        policy_body = _single(args.policy, ("MitigationPolicy", "ClusterMitigationPolicy"))
        incident_body = _single(args.incident, ("AIIncident",))
        limits = bounds.load(args.tenant_bounds)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"aiincident simulate: {err}", file=sys.stderr)
        return 2
    kube.load_config()
    result = simulate(policy_body, incident_body, args.namespace, limits=limits)
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(format_simulation(result))
    return 1 if result.get("outcome") == "WouldFail" else 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    validate = subparsers.add_parser(
        "validate",
        help="check policies and incidents offline (CRD schemas and the operator's rules)",
        description="Check AIIncident, MitigationPolicy and ClusterMitigationPolicy documents "
        "against the CRD schemas and the operator's own rules, without a cluster. Other kinds "
        "are skipped. Exit code 1 when a document is invalid.",
    )
    validate.add_argument(
        "files", nargs="+", metavar="FILE", help="YAML file, folder (recursive) or - for stdin"
    )
    validate.add_argument("--crds", metavar="DIR", help="folder with the CRDs (default: packaged)")
    validate.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    validate.add_argument("--tenant-bounds", metavar="FILE", help=BOUNDS_HELP)
    validate.set_defaults(func=_cmd_validate)

    simulate_cmd = subparsers.add_parser(
        "simulate",
        help="what the operator would do for an incident under a policy (changes nothing)",
        description="Resolve the incident's targets in the live cluster, triage it under the "
        "policy, and dry-run the policy's response. Nothing is written. Exit code 1 when the "
        "inputs are invalid or an action would fail.",
    )
    simulate_cmd.add_argument("--policy", required=True, metavar="FILE")
    simulate_cmd.add_argument("--incident", required=True, metavar="FILE")
    simulate_cmd.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help="the incident's namespace when its file has none (default: the kubeconfig's)",
    )
    simulate_cmd.add_argument("-o", "--output", choices=["text", "json"], default="text")
    simulate_cmd.add_argument("--crds", metavar="DIR", help="folder with the CRDs")
    simulate_cmd.add_argument("--tenant-bounds", metavar="FILE", help=BOUNDS_HELP)
    simulate_cmd.set_defaults(func=_cmd_simulate)
