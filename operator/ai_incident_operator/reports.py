"""Sub-commands for people working incidents: report, list, describe, approve, resolve.

`add_commands` (listed in `cli.COMMAND_MODULES`) adds them to `aiincident`. `report`
files the playbook's user reports, internal discoveries and external reports as
AIIncidents; `list` and `describe` print what `kubectl get` and `describe` do not
(the mitigations, the conditions with their reasons, the timeline); `approve`,
`resolve` and `ack` set `spec.approved`, `spec.resolution` and `spec.acknowledged`.
All go through `kube`; every failure is one line on stderr and exit status 1, as
kubectl does.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kubernetes

from . import API_VERSION, evals, incident_writes, kube, review, workloads
from .conditions import INCIDENT_CONDITION_TYPES
from .errors import APIError, Conflict, NotFound
from .intake.mapping import CATEGORIES, SOURCE_LABEL
from .investigation import example_store
from .investigation.examples import ExampleError
from .investigation.store import NotOurs
from .kube import Ref
from .policy import selector_string
from .resources import SA_NAMESPACE_FILE

SOURCES = ("UserReport", "Internal", "External")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class Failure(Exception):
    """A command cannot do what was asked; the message says why."""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    report = _parser(
        subparsers,
        "report",
        "file an incident (a user report, internal discovery or external report)",
    )
    report.add_argument("-n", "--namespace", required=True, help="the target's namespace")
    report.add_argument(
        "--target", required=True, metavar="[KIND/]NAME",
        help="the model's workload: NAME (a Deployment) or KIND/NAME, KIND one of Deployment, "
        "StatefulSet, Rollout, LeaderWorkerSet, InferenceService, LLMInferenceService or a "
        "kubectl short name (deploy, sts, ro, lws, isvc, llmisvc)",
    )  # fmt: skip
    report.add_argument("--category", required=True, choices=CATEGORIES)
    report.add_argument(
        "--severity",
        type=int,
        choices=(1, 2, 3),
        help="1 (worst) to 3; default: triage decides from the policy",
    )
    report.add_argument(
        "--source",
        choices=SOURCES,
        default="UserReport",
        help="who found it (default: %(default)s)",
    )
    report.add_argument(
        "--reporter", required=True, metavar="TEXT", help="who reported it, e.g. 'ticket SUP-1234'"
    )
    report.add_argument("--description", required=True, metavar="TEXT", help="what happened")
    report.add_argument(
        "--title", metavar="TEXT", help="one line (default: the description's first line)"
    )
    report.add_argument(
        "--name", help="the incident's name (default: <target>-<category>-<random>)"
    )
    evals.add_report_arguments(report)  # --example-input/--example-output/--examples
    report.set_defaults(func=_command(_report))

    listing = _parser(subparsers, "list", "list incidents with their phase and mitigations")
    where = listing.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="this namespace (default: the kubeconfig's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    listing.set_defaults(func=_command(_list))

    describe = _parser(subparsers, "describe", "an incident's timeline, conditions and mitigations")
    describe.add_argument("name")
    describe.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
    describe.set_defaults(func=_command(_describe))

    approve = _parser(
        subparsers, "approve", "approve the response of an incident awaiting approval"
    )
    approve.add_argument("name")
    approve.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
    approve.add_argument(
        "--by", metavar="WHO", help="who approves (default: the kubeconfig's user)"
    )
    approve.set_defaults(func=_command(_approve))

    ack = _parser(subparsers, "ack", "acknowledge an incident: you have it; its pages stop")
    ack.add_argument("name")
    ack.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
    ack.add_argument(
        "--by", metavar="WHO", help="who acknowledges (default: the kubeconfig's user)"
    )
    ack.set_defaults(func=_command(_ack))

    resolve = _parser(
        subparsers, "resolve", "resolve an incident: the operator undoes its mitigations"
    )
    resolve.add_argument("name")
    resolve.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
    resolve.add_argument("--root-cause", metavar="TEXT", help="what caused it")
    resolve.add_argument("--fix", metavar="TEXT", help="what fixed it")
    resolve.add_argument(
        "--skip-verification",
        action="store_true",
        help="give traffic back without waiting for readiness or the verification checks "
        "(recorded in the timeline, with who)",
    )
    resolve.add_argument("--by", metavar="WHO", help="who asks (default: the kubeconfig's user)")
    resolve.set_defaults(func=_command(_resolve))

    review_cmd = _parser(subparsers, "review", "print an incident's post-incident review document")
    review_cmd.add_argument("name")
    review_cmd.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
    review_cmd.add_argument(
        "--file-action-items",
        action="store_true",
        help="file each open action item as an issue with the policy's Ticket tracker "
        "(once each; the URLs go to status.tickets)",
    )
    review_cmd.add_argument(
        "--complete",
        action="store_true",
        help="mark the review complete (spec.review.completed): the operator closes the incident",
    )
    review_cmd.set_defaults(func=_command(_review))


def _parser(
    subparsers: argparse._SubParsersAction, name: str, help_: str
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_, description=help_)

    def error(message: str) -> None:  # usage errors exit 1, as kubectl's do
        parser.print_usage(sys.stderr)
        parser.exit(1, f"{parser.prog}: error: {message}\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def _command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """RUN with the cluster configuration loaded and every failure as one line and exit 1."""

    @functools.wraps(run)
    def command(args: argparse.Namespace) -> int:
        try:
            kube.load_config()
            if hasattr(args, "namespace") and not args.namespace:
                args.namespace = default_namespace()
            return run(args)
        except (Failure, kube.ConfigError) as err:
            print(f"aiincident: {err}", file=sys.stderr)
        except APIError as err:
            if err.status:
                print(
                    f"aiincident: the apiserver answered {err.status}: {err.message}",
                    file=sys.stderr,
                )
            else:  # no answer at all
                print(f"aiincident: cannot reach the apiserver: {err.message}", file=sys.stderr)
        except OSError as err:
            print(f"aiincident: cannot reach the apiserver: {err}", file=sys.stderr)
        return 1

    return command


def default_namespace() -> str:
    """As kubectl: the current context's namespace, in a pod its own, else default."""
    try:
        _, current = kubernetes.config.list_kube_config_contexts()
        namespace = ((current or {}).get("context") or {}).get("namespace")
        if namespace:
            return namespace
    except (kubernetes.config.ConfigException, OSError, TypeError, KeyError):
        pass
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def _get(namespace: str, name: str) -> dict[str, Any]:
    incident = kube.get(Ref("AIIncident", namespace, name))
    if incident is None:
        raise Failure(f"AIIncident {namespace}/{name} not found (aiincident list -n {namespace})")
    return incident


# --- report -------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    try:
        kind, target = workloads.parse_target(args.target)
    except workloads.UnknownKind as err:
        raise Failure(f"--target {args.target!r}: {err}") from None
    if not _NAME.fullmatch(target) or len(target) > 253:
        raise Failure(f"--target {args.target!r} is not a {kind} name")
    if args.name and (not _NAME.fullmatch(args.name) or len(args.name) > 253):
        raise Failure(
            f"--name {args.name!r} is not an object name (lower case letters, digits, '-', '.')"
        )
    description = args.description.strip()
    if not description:
        raise Failure("--description is empty: say what happened")
    if not args.reporter.strip():
        raise Failure("--reporter is empty: say who reported it, e.g. 'ticket SUP-1234'")
    title = (args.title or "").strip() or description.splitlines()[0][:200]
    try:  # checked before anything is created
        examples = evals.reported(args)
    except ExampleError as err:
        raise Failure(str(err)) from None
    metadata: dict[str, Any] = {
        "namespace": args.namespace,
        "labels": {SOURCE_LABEL: args.source.lower()},
    }
    if examples:  # stored beside it, never in its spec
        metadata["annotations"] = {example_store.ANNOTATION: "reported"}
    if args.name:
        metadata["name"] = args.name
    else:  # the apiserver adds 5 random characters
        metadata["generateName"] = f"{target[:40].rstrip('.-')}-{args.category.lower()}-"
    spec: dict[str, Any] = {
        "title": title[:512],
        "category": args.category,
        "description": description,
        "source": {"type": args.source, "reporter": args.reporter.strip()},
        "target": {"kind": kind, "name": target},
    }
    if args.severity:
        spec["severity"] = args.severity
    body = {"apiVersion": API_VERSION, "kind": "AIIncident", "metadata": metadata, "spec": spec}
    try:
        created = kube.create("AIIncident", args.namespace, body)
    except NotFound:
        raise Failure(f"namespace {args.namespace} not found") from None
    except Conflict:
        raise Failure(f"AIIncident {args.namespace}/{args.name} already exists") from None
    print(created["metadata"]["name"])
    if examples:
        try:
            ref = example_store.write_reported(created, examples)
        except (APIError, NotOurs) as err:
            raise Failure(f"the incident is filed, its examples not stored: {err}") from None
        print(f"aiincident: {len(examples)} example(s) in ConfigMap {ref['name']}", file=sys.stderr)
    try:
        if kube.get(Ref(kind, args.namespace, target)) is None:
            print(
                f"aiincident: warning: {kind} {args.namespace}/{target} not found: the "
                f"incident is filed, and is triaged once the {kind} exists",
                file=sys.stderr,
            )
    except APIError:
        pass  # not allowed to read them, or its CRD is not installed: the operator will say
    return 0


# --- list ---------------------------------------------------------------------------------


def age(since: str | None, now: datetime | None = None) -> str:
    """kubectl's human duration: 45s, 3m20s, 130m, 5h10m, 30h, 3d4h, 120d, 2y30d."""
    if not since:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    return f"{years}y{days % 365}d" if days % 365 and years < 8 else f"{years}y"


def target_text(spec: dict[str, Any]) -> str:
    target = spec.get("target") or {}
    if target.get("name"):
        return str(target["name"])
    if target.get("selector"):
        return selector_string(target["selector"]) or "<all>"
    return "<none>"


def applied(status: dict[str, Any]) -> str:
    actions = [
        m.get("action", "?") for m in status.get("mitigations") or [] if m.get("state") == "Applied"
    ]
    return ",".join(dict.fromkeys(actions)) or "none"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else args.namespace
    items = sorted(
        kube.list_objects("AIIncident", namespace),
        key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"]),
    )
    if not items:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No incidents found in {where}.", file=sys.stderr)
        return 0
    header = ["NAME", "SEVERITY", "PHASE", "CATEGORY", "TARGET", "AGE", "MITIGATIONS"]
    rows = []
    for item in items:
        spec, status = item.get("spec") or {}, item.get("status") or {}
        rows.append(
            [
                item["metadata"]["name"],
                str(status.get("severity") or "-"),
                status.get("phase") or "Pending",
                spec.get("category", "?"),
                target_text(spec),
                age(item["metadata"].get("creationTimestamp")),
                applied(status),
            ]
        )
    if namespace is None:
        header.insert(0, "NAMESPACE")
        for row, item in zip(rows, items, strict=True):
            row.insert(0, item["metadata"]["namespace"])
    print(table(header, rows))
    return 0


# --- describe -----------------------------------------------------------------------------


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in str(text).splitlines())


def describe(incident: dict[str, Any]) -> str:
    """What a person working the incident reads (pure)."""
    meta = incident["metadata"]
    spec, status = incident.get("spec") or {}, incident.get("status") or {}
    out: list[str] = []

    def field(name: str, value: Any) -> None:
        out.append(f"{name + ':':<14}{value}")

    field("Name", meta["name"])
    field("Namespace", meta.get("namespace", ""))
    if spec.get("title"):
        field("Title", spec["title"])
    field("Category", spec.get("category", "?"))
    field("Phase", status.get("phase") or "Pending (the operator has not seen it yet)")
    if status.get("severity"):
        field("Severity", f"{status['severity']}: {status.get('severityReason', '')}".rstrip(": "))
    elif spec.get("severity"):
        field("Severity", f"{spec['severity']} (set in spec; not triaged yet)")
    else:
        field("Severity", "not triaged yet")
    ref = status.get("policyRef")
    if ref:
        field(
            "Policy",
            f"{ref.get('kind')} {'/'.join(p for p in (ref.get('namespace'), ref.get('name')) if p)}",
        )
    elif any(
        c.get("type") == "Triaged" and c.get("status") == "True"
        for c in status.get("conditions") or []
    ):
        field("Policy", "none: triage and notification only, nothing is changed")
    source = spec.get("source") or {}
    field(
        "Source",
        f"{source.get('type', 'Manual')}"
        + (f": {source['reporter']}" if source.get("reporter") else ""),
    )
    resolved = ", ".join(
        f"{t.get('namespace')}/{t.get('name')}" for t in status.get("targets") or []
    )
    field(
        "Target",
        f"{(spec.get('target') or {}).get('kind', 'Deployment')} {target_text(spec)}"
        + (f" ({resolved})" if resolved else ""),
    )
    if "approved" in spec or status.get("phase") == "AwaitingApproval":
        by = f" (by {spec['approvedBy']})" if spec.get("approvedBy") else ""
        field("Approved", f"yes{by}" if spec.get("approved") else "no (aiincident approve)")
    if spec.get("acknowledged"):
        ack = spec["acknowledged"]
        at = f" at {ack['at']}" if ack.get("at") else ""
        field("Acknowledged", f"by {ack.get('by') or '?'}{at}")
    field(
        "Created",
        f"{meta.get('creationTimestamp', '?')} ({age(meta.get('creationTimestamp'))} ago)",
    )
    for key, name in (
        ("detectedAt", "Detected"),
        ("triagedAt", "Triaged"),
        ("mitigatedAt", "Mitigated"),
        ("resolvedAt", "Resolved"),
        ("closedAt", "Closed"),
        ("reviewDueBy", "Review due"),
        ("regulatoryReportDueBy", "Report due"),
    ):
        if status.get(key):
            field(name, status[key])
    if spec.get("description"):
        out += ["Description:", _indent(spec["description"])]

    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    if conditions:
        ordered = [conditions[t] for t in INCIDENT_CONDITION_TYPES if t in conditions]
        ordered += [c for t, c in conditions.items() if t not in INCIDENT_CONDITION_TYPES]
        rows = [
            [
                c.get("type", ""),
                c.get("status", ""),
                c.get("reason", ""),
                c.get("lastTransitionTime", ""),
                c.get("message", ""),
            ]
            for c in ordered
        ]
        out += [
            "Conditions:",
            _indent(table(["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], rows)),
        ]

    mitigations = status.get("mitigations") or []
    out.append("Mitigations:" + ("" if mitigations else " none"))
    for m in mitigations:
        out.append(f"  {m.get('action', '?')} on {m.get('target', '?')}: {m.get('state', '?')}")
        for key, name in (("appliedAt", "applied"), ("revertedAt", "reverted")):
            if m.get(key):
                out.append(f"    {name}: {m[key]}")
        if m.get("objects"):
            out.append(f"    objects: {', '.join(m['objects'])}")
        if m.get("message"):
            out.append(f"    message: {m['message']}")

    alerts = spec.get("alerts") or []
    if alerts:
        firing = sum(1 for a in alerts if a.get("status") != "resolved")
        rows = [
            [
                a.get("alertname", ""),
                a.get("status", ""),
                a.get("startsAt", ""),
                a.get("endsAt", "") if a.get("status") == "resolved" else "",
                a.get("fingerprint", ""),
            ]
            for a in alerts
        ]
        out += [
            f"Alerts: {firing} firing, {len(alerts) - firing} resolved",
            _indent(table(["ALERTNAME", "STATUS", "STARTED", "ENDED", "FINGERPRINT"], rows)),
        ]
    for h in status.get("hypotheses") or []:
        out.append(f"Hypothesis:   {h.get('cause')} (confidence {h.get('confidence')})")
        out += [f"  - {e}" for e in h.get("evidence") or []]
    for key, name in (("evidenceRef", "Evidence"), ("reviewRef", "Review doc")):
        if status.get(key):
            field(name, f"{status[key].get('kind')} {status[key].get('name')}")
    resolution = spec.get("resolution") or {}
    if resolution:
        out.append(
            "Resolution:" + (" requested" if resolution.get("requested") else " not requested")
        )
        for key, name in (("rootCause", "root cause"), ("fix", "fix")):
            if resolution.get(key):
                out.append(f"  {name}: {resolution[key]}")
    review = spec.get("review") or {}
    if review:
        out.append("Review:" + (" completed" if review.get("completed") else " open"))
        if review.get("summary"):
            out.append(_indent(review["summary"]))
        for item in review.get("actionItems") or []:
            done = "x" if item.get("done") else " "
            out.append(
                f"  [{done}] {item.get('description')}"
                + (f" ({item['owner']})" if item.get("owner") else "")
            )

    timeline = status.get("timeline") or []
    out.append("Timeline:" + ("" if timeline else " none yet"))
    if timeline:
        out.append(
            _indent(
                table(
                    ["TIME", "TYPE", "MESSAGE"],
                    [
                        [t.get("time", ""), t.get("type", ""), t.get("message", "")]
                        for t in timeline
                    ],
                )
            )
        )
    return "\n".join(out)


def _describe(args: argparse.Namespace) -> int:
    print(describe(_get(args.namespace, args.name)))
    return 0


# --- approve, resolve ---------------------------------------------------------------------


def _approve(args: argparse.Namespace) -> int:
    incident = _get(args.namespace, args.name)
    who = args.by or kube.current_user()
    # Who approved is kept in spec; the operator puts it in the timeline and condition.
    kube.patch(Ref("AIIncident", args.namespace, args.name), incident_writes.approve(who))
    phase = (incident.get("status") or {}).get("phase")
    note = (
        ""
        if phase == "AwaitingApproval"
        else f" (it was not awaiting approval: phase {phase or 'Pending'})"
    )
    print(f"aiincident {args.namespace}/{args.name} approved by {who}{note}")
    return 0


def _ack(args: argparse.Namespace) -> int:
    incident = _get(args.namespace, args.name)
    who = args.by or kube.current_user()
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Kept in spec; the operator sets Acknowledged and tells PagerDuty / Opsgenie.
    kube.patch(Ref("AIIncident", args.namespace, args.name), incident_writes.acknowledge(who, at))
    earlier = (incident.get("spec") or {}).get("acknowledged") or {}
    note = f" (it was acknowledged by {earlier.get('by') or 'someone'} before)" if earlier else ""
    print(f"aiincident {args.namespace}/{args.name} acknowledged by {who}{note}")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    _get(args.namespace, args.name)
    who = args.by or kube.current_user()
    write = incident_writes.resolve(who, args.root_cause, args.fix, args.skip_verification)
    kube.patch(Ref("AIIncident", args.namespace, args.name), write)
    print(
        f"aiincident {args.namespace}/{args.name}: resolution requested; the operator undoes its mitigations"
    )
    return 0


# --- review -------------------------------------------------------------------------------


def _review_ref(args: argparse.Namespace, incident: dict[str, Any]) -> dict[str, Any]:
    """The incident's reviewRef; a Failure that says why there is none yet."""
    ref = (incident.get("status") or {}).get("reviewRef")
    if not ref:
        phase = (incident.get("status") or {}).get("phase") or "Pending"
        raise Failure(
            f"AIIncident {args.namespace}/{args.name} has no review yet (phase {phase}): "
            "the operator writes it when the incident is resolved"
        )
    return ref


def _review(args: argparse.Namespace) -> int:
    incident = _get(args.namespace, args.name)
    if getattr(args, "complete", False):
        _review_ref(args, incident)
        kube.patch(Ref("AIIncident", args.namespace, args.name), incident_writes.complete_review())
        print(f"aiincident {args.namespace}/{args.name}: review complete; the operator closes it")
        return 0
    if getattr(args, "file_action_items", False):
        from .actions import ticket

        try:
            for line in ticket.file_for_review(kube.cluster(), incident):
                print(line, file=sys.stderr)  # stdout stays the review document
        except ticket.PageError as err:
            raise Failure(str(err)) from None
    ref = _review_ref(args, incident)
    document = kube.get(Ref("ConfigMap", args.namespace, ref["name"]))
    if document is None or review.KEY not in (document.get("data") or {}):
        raise Failure(f"ConfigMap {args.namespace}/{ref['name']} with the review is missing")
    print(document["data"][review.KEY], end="")
    return 0
