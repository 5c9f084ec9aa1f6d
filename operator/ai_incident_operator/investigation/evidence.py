"""Evidence for an incident: what was serving, what changed, what the metrics say.

The playbook's "Gather evidence" step, for AI systems: which model version is
serving and when it last changed, whether the data pipelines ran, what the
mounted prompt templates are, the monitoring data and recent Events. `collect`
reads it all (read-only) into ConfigMap sections of Markdown or YAML, plus the
`hypotheses.Facts` the ranking needs; `write_evidence` stores the sections in
ConfigMap `<incident>-evidence`, owned by the incident. The engine calls both
when the incident is triaged (before the first mitigation) and while it is open.

A part that cannot be collected (no permission, a kind not served, Prometheus
unreachable) becomes a line in its section; `collect` itself raises only what
`kube.get` would. Sizes are bounded: a ConfigMap holds at most 1 MiB.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import statistics
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from .. import egress, kube, ledger, workloads
from ..durations import duration_or
from ..errors import APIError, Forbidden, NotFound
from ..fieldpath import get, put
from ..policy import selector_string
from ..times import human, iso, parse_time
from . import cron, history, hypotheses, logs, own_writes, prometheus
from .hypotheses import ConfigChange, Facts, MetricFact, PipelineRun, Replicas, Rollout
from .store import write_owned_configmap

log = logging.getLogger(__name__)

SUFFIX = "evidence"
TOTAL_LIMIT = 900 * 1024  # bytes of data; a ConfigMap holds at most 1 MiB with metadata
SECTION_LIMIT = 256 * 1024
VALUE_PREVIEW = 2048  # bytes of each ConfigMap value shown
EVENTS_PER_TARGET = 40
EVENT_REPLICASETS = 2  # the newest ReplicaSets whose Events are read
EVENT_PODS = 10  # and at most this many of their pods
DEFAULT_LOOKBACK = timedelta(hours=1)
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
VERSION_LABEL = "app.kubernetes.io/version"
SLACK = timedelta(seconds=5)  # clock skew between the apiserver and the operator
SECTIONS = (
    ("summary.md", "what was collected, and the ranked hypotheses"),
    ("targets.yaml", "each target as it was before any mitigation"),
    ("model-version.md", "images, model version, revision, rollouts and ReplicaSet history"),
    ("pipelines.md", "data pipelines (CronJobs and Jobs) matched by evidence.pipelineSelector"),
    ("configmaps.md", "ConfigMaps the targets mount or read env from, and when each changed"),
    ("metrics.md", "the policy's evidence queries over the lookback"),
    ("events.md", "recent Events of the targets, their ReplicaSets and pods"),
    ("logs.md", "the last lines of the targets' Pods' logs (bounded per Pod and in all)"),
)


class _Target:
    """One target as read, with what belongs to it."""

    def __init__(self, obj: dict, namespace: str) -> None:
        self.obj = obj
        self.namespace = namespace
        self.name = obj["metadata"]["name"]
        self.kind = obj.get("kind") or "Deployment"
        self.ref = f"{self.kind}/{self.name}"
        self.snapshot, self.restored = before_mitigation(obj)
        self._replicasets: list[dict] | None = None
        self._pods: list[dict] | None = None

    @property
    def selector(self) -> str:
        """What its Pods are listed by: the spec's selector, or the labels its controller
        puts on them (a LeaderWorkerSet's, KServe's)."""
        if self.kind in ("Deployment", "StatefulSet", "Rollout"):
            return selector_string((self.obj.get("spec") or {}).get("selector") or {})
        labels = workloads.adapter(self.kind).pod_selector(self.obj)
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def replicasets(self) -> list[dict]:
        """Its ReplicaSets (a Deployment's, a Rollout's), newest revision first (by
        selector, then by ownerReference); other kinds have none."""
        if self._replicasets is None:
            if self.kind not in ("Deployment", "Rollout"):
                self._replicasets = []
                return self._replicasets
            uid = self.obj["metadata"].get("uid")
            found = [
                rs
                for rs in kube.list_objects("ReplicaSet", self.namespace, self.selector)
                if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
            ]
            self._replicasets = sorted(found, key=_revision, reverse=True)
        return self._replicasets

    def pods(self) -> list[dict]:
        if self._pods is None:
            found = kube.list_objects("Pod", self.namespace, self.selector) if self.selector else []
            if self.kind in ("Deployment", "Rollout", "StatefulSet"):
                # Owned by its ReplicaSets (or, for a StatefulSet, by itself): not another's.
                owners = {rs["metadata"]["uid"] for rs in self.replicasets()}
                owners.add(self.obj["metadata"].get("uid"))
                found = [
                    p for p in found
                    if any(o.get("uid") in owners for o in p["metadata"].get("ownerReferences") or [])
                ]  # fmt: skip
            self._pods = found
        return self._pods

    def templates(self) -> list[dict]:
        """Its pod templates as people made them, each as {metadata, spec} (a KServe
        predictor's model container among the containers)."""
        adapter = workloads.adapter(self.kind)
        found = []
        for pod in adapter.pod_specs(self.snapshot):
            spec = copy.deepcopy(workloads.as_pod(get(self.snapshot, pod.path)))
            if not spec:
                continue
            spec.pop("model", None)  # among the containers now
            meta = {k: get(self.snapshot, path) for k, path in
                    (("labels", pod.labels), ("annotations", pod.annotations)) if path}  # fmt: skip
            found.append({"metadata": {k: v for k, v in meta.items() if isinstance(v, dict)},
                          "spec": spec})  # fmt: skip
        return found


# --- Entry points -----------------------------------------------------------------------


def collect(
    incident: dict,
    targets: list[dict],
    policy_spec: dict,
    now: datetime,
    detected_at: datetime | None = None,
    namespaced: bool = True,
) -> tuple[dict[str, str], Facts]:
    """The evidence ConfigMap's data (bounded) and the facts for `hypotheses.rank`.

    DETECTED_AT defaults to status.detectedAt, else the incident's creation time.
    NAMESPACED: the policy is a namespaced MitigationPolicy, so its prometheusURL must
    pass `egress.check` (False only for a ClusterMitigationPolicy).
    """
    namespace = incident["metadata"]["namespace"]
    detected = detected_at or detection_time(incident, now)
    evidence_spec = (policy_spec or {}).get("evidence") or {}
    problems: list[str] = []
    try:
        lookback = duration_or(evidence_spec.get("lookback"), DEFAULT_LOOKBACK)
    except ValueError as err:
        lookback = DEFAULT_LOOKBACK
        problems.append(f"evidence.lookback: {err}; used {human(DEFAULT_LOOKBACK)}")
    facts = Facts(detected_at=detected)
    wrapped = [_Target(t, namespace) for t in targets]

    builders: list[tuple[str, Callable[[], str]]] = [
        ("targets.yaml", lambda: _targets_section(wrapped)),
        ("model-version.md", lambda: _model_section(wrapped, facts, detected)),
        (
            "pipelines.md",
            lambda: _pipelines_section(
                namespace, evidence_spec.get("pipelineSelector"), facts, detected
            ),
        ),
        ("configmaps.md", lambda: _configmaps_section(wrapped, facts)),
        (
            "metrics.md",
            lambda: _metrics_section(evidence_spec, facts, detected, lookback, now, namespaced),
        ),
        ("events.md", lambda: _events_section(wrapped, detected - lookback)),
        ("logs.md", lambda: logs.logs_section(wrapped, now)),
    ]
    data: dict[str, str] = {}
    for key, build in builders:
        try:
            data[key] = build()
        except APIError as err:
            message = f"{key}: could not be collected: {_api_problem(err)}"
            problems.append(message)
            data[key] = f"# {key}\n\n{message}\n"
    data["summary.md"] = _summary(
        incident, wrapped, detected, lookback, now, hypotheses.rank(facts, now), problems
    ) + logs.traces_section(evidence_spec, [(t.kind, t.name) for t in wrapped], namespace,
                            detected - lookback, now)  # fmt: skip
    ordered = {key: data[key] for key, _ in SECTIONS if key in data}
    return bound(ordered), facts


def write_evidence(incident: dict, data: dict[str, str]) -> dict:
    """Create or replace ConfigMap `<incident>-evidence` owned by the incident; its evidenceRef."""
    collected = data.get("summary.md", "")
    annotations = {"aiincident.io/collected-at": _collected_at(collected)} if collected else {}
    return write_owned_configmap(incident, SUFFIX, data, annotations)


def detection_time(incident: dict, now: datetime) -> datetime:
    status = incident.get("status") or {}
    return (
        parse_time(status.get("detectedAt"))
        or parse_time(incident["metadata"].get("creationTimestamp"))
        or now
    )


def before_mitigation(obj: dict) -> tuple[dict, list[str]]:
    """OBJ as it was before any mitigation (the ledger's originals put back), for a person.

    Returns the snapshot and the paths put back. Fields the apiserver keeps moving
    (status, managedFields, resourceVersion) are left out.
    """
    snap = copy.deepcopy(obj)
    originals = ledger.originals(obj)
    for path, value in originals.items():
        put(snap, path, value)
    meta = snap.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(ledger.ANNOTATION, None)
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)  # a second copy
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    for key in ("managedFields", "resourceVersion", "selfLink", "generation"):
        meta.pop(key, None)
    snap.pop("status", None)
    return snap, sorted(originals)


# --- Sections ---------------------------------------------------------------------------


def _targets_section(targets: list[_Target]) -> str:
    docs = []
    for t in targets:
        note = (
            f"mitigations changed {', '.join(t.restored)}; shown with the values from before"
            if t.restored
            else "no mitigation had changed it"
        )
        docs.append({"target": t.ref, "note": note, "object": t.snapshot})
    header = "# Each target before any mitigation: what was serving when it went wrong.\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def _model_section(targets: list[_Target], facts: Facts, detected: datetime) -> str:
    out = ["# Serving model version", ""]
    for t in targets:
        out += [f"## {t.ref}", ""]
        if t.kind != "Deployment":
            out += _serving_history(t, facts, detected)
            continue
        spec = t.snapshot.get("spec") or {}
        template = spec.get("template") or {}
        meta = t.obj["metadata"]
        out.append(f"- revision: {(meta.get('annotations') or {}).get(REVISION, 'unknown')}")
        images = _images(template)
        out.append(f"- images: {', '.join(images) or 'none'}")
        version = (meta.get("labels") or {}).get(VERSION_LABEL) or (
            (template.get("metadata") or {}).get("labels") or {}
        ).get(VERSION_LABEL)
        out.append(f"- {VERSION_LABEL}: {version or 'not set'}")
        markers = _model_markers(meta, template)
        out.append(f"- model version: {'; '.join(markers) or 'no model-version label or env'}")
        status = t.obj.get("status") or {}
        out.append(
            f"- replicas: {spec.get('replicas', 1)} wanted before mitigation, "
            f"{(t.obj.get('spec') or {}).get('replicas', 1)} now, "
            f"{status.get('availableReplicas', 0)} available, "
            f"{status.get('unavailableReplicas', 0)} unavailable"
        )
        try:
            replicasets = t.replicasets()
        except APIError as err:
            out += [f"- ReplicaSets: could not be listed: {_api_problem(err)}", ""]
            continue
        serving = [rs for rs in replicasets if _created(rs) and _created(rs) <= detected + SLACK]
        if serving:
            newest = serving[0]
            when = _created(newest)
            gap = f"{human(detected - when)} before detection" if when else "unknown"
            out.append(
                f"- last rolled out: {iso(when)} ({gap}; ReplicaSet {newest['metadata']['name']})"
            )
            # As people rolled it out: the operator's own rollouts are not a cause.
            facts.rollouts.append(_rollout(t.ref, own_writes.people_made(serving, t.obj)))
        later = [rs for rs in replicasets if rs not in serving]
        if later:
            out.append(
                f"- {len(later)} ReplicaSet(s) created after detection (mitigations or a fix): "
                + ", ".join(rs["metadata"]["name"] for rs in later)
            )
        _replicas_fact(t, facts)
        out += ["", "### ReplicaSet history (newest first)", ""]
        out.append("| revision | ReplicaSet | created | images | model version | replicas |")
        out.append("|---|---|---|---|---|---|")
        for rs in replicasets:
            rs_template = (rs.get("spec") or {}).get("template") or {}
            history = (rs["metadata"].get("annotations") or {}).get(REVISION_HISTORY)
            revision = str(_revision(rs)) + (f" (was {history})" if history else "")
            out.append(
                "| "
                + " | ".join(
                    _cell(x)
                    for x in (
                        revision,
                        rs["metadata"]["name"],
                        iso(_created(rs)),
                        ", ".join(_images(rs_template)),
                        _model_version(rs_template) or "-",
                        f"{(rs.get('status') or {}).get('replicas', 0)}/"
                        f"{(rs.get('spec') or {}).get('replicas', 0)}",
                    )
                )
                + " |"
            )
        out.append("")
    return "\n".join(out) + "\n"


def _serving_history(t: _Target, facts: Facts, detected: datetime) -> list[str]:
    """The model-version lines of a target that is not a Deployment (`history`)."""
    adapter = workloads.adapter(t.kind)
    meta = t.obj["metadata"]
    out = [f"- serving: {adapter.version(t.snapshot)}"]
    templates = t.templates()
    out.append(f"- {VERSION_LABEL}: "
               + ((meta.get("labels") or {}).get(VERSION_LABEL) or "not set"))  # fmt: skip
    markers = [m for tpl in templates for m in _model_markers(meta, tpl)]
    out.append(
        f"- model version: {'; '.join(dict.fromkeys(markers)) or 'no model-version label or env'}"
    )
    ok, words = adapter.ready(t.obj)
    out.append(f"- now: {'ready' if ok else 'not ready'} ({words})")
    _replicas_fact(t, facts)
    try:
        found = history.revisions(kube.cluster(), t.namespace, t.obj, t.snapshot,
                                  _model_version)  # fmt: skip
    except APIError as err:
        return [*out, f"- revisions: could not be listed: {_api_problem(err)}", ""]
    serving = [r for r in found if r.created is None or r.created <= detected + SLACK]
    dated = [r for r in serving if r.created is not None]
    if dated:
        newest = dated[0]
        gap = f"{human(detected - newest.created)} before detection" if newest.created else ""
        out.append(f"- last rolled out: {iso(newest.created)} ({gap}; {newest.name})")
        previous = (
            serving[serving.index(newest) + 1] if serving.index(newest) + 1 < len(serving) else None
        )
        facts.rollouts.append(
            Rollout(
                target=t.ref, revision=newest.number, time=newest.created,
                images=newest.images, previous_images=previous.images if previous else [],
                model_version=newest.model,
                previous_model_version=previous.model if previous else "",
                first=newest.number <= 1 and previous is None,
            )
        )  # fmt: skip
    later = [r for r in found if r not in serving]
    if later:
        out.append(f"- {len(later)} revision(s) made after detection (mitigations or a fix): "
                   + ", ".join(r.name for r in later))  # fmt: skip
    out += ["", "### Revision history (newest first)", ""]
    out.append("| revision | recorded as | created | images | model | ready/wanted |")
    out.append("|---|---|---|---|---|---|")
    for r in found:
        name = f"{r.name} ({r.what})" if r.what else r.name
        out.append("| " + " | ".join(_cell(x) for x in (
            r.number, name, iso(r.created) if r.created else "unknown",
            ", ".join(r.images) or "-", r.model or "-",
            r.replicas)) + " |")  # fmt: skip
    if not found:
        out.append("| - | none recorded | - | - | - | - |")
    out.append("")
    return out


def _rollout(target: str, serving: list[dict]) -> Rollout:
    newest, previous = serving[0], (serving[1] if len(serving) > 1 else None)
    template = (newest.get("spec") or {}).get("template") or {}
    prev_template = ((previous or {}).get("spec") or {}).get("template") or {}
    return Rollout(
        target=target,
        revision=_revision(newest),
        time=_created(newest) or datetime.now(UTC),
        images=_images(template),
        previous_images=_images(prev_template) if previous else [],
        model_version=_model_version(template),
        previous_model_version=_model_version(prev_template) if previous else "",
        first=_revision(newest) <= 1 and previous is None,
        rollback=bool((newest["metadata"].get("annotations") or {}).get(REVISION_HISTORY)),
    )


def _replicas_fact(t: _Target, facts: Facts) -> None:
    spec, status = t.obj.get("spec") or {}, t.obj.get("status") or {}
    if t.kind in ("InferenceService", "LLMInferenceService"):
        _kserve_fact(t, facts)
        return
    desired = int(spec.get("replicas", 1))
    # StatefulSets (before 1.22) and LeaderWorkerSets count ready replicas, not available ones.
    available = status.get("availableReplicas", status.get("readyReplicas", 0))
    # During a rollout the count includes surge pods; what matters is the share of the wanted.
    unavailable = min(
        desired,
        int(status.get("unavailableReplicas", max(0, desired - (available or 0)))),
    )
    since = next(
        (
            parse_time(c.get("lastTransitionTime"))
            for c in status.get("conditions") or []
            if c.get("type") == "Available" and c.get("status") == "False"
        ),
        None,
    )
    not_ready: list[str] = []
    if unavailable:
        try:
            not_ready = [_pod_problem(p) for p in t.pods() if not _pod_ready(p)]
        except APIError as err:
            not_ready = [f"pods could not be listed: {_api_problem(err)}"]
    facts.replicas.append(Replicas(t.ref, desired, unavailable, not_ready, since))


def _kserve_fact(t: _Target, facts: Facts) -> None:
    """A KServe model that is not Ready (and not stopped on purpose) is unavailable."""
    ready = workloads.base.condition(t.obj, "Ready") or {}
    stopped = ((t.obj["metadata"].get("annotations") or {}).get(workloads.kserve.STOP)) == "true"
    if stopped or ready.get("status") != "False":
        facts.replicas.append(Replicas(t.ref, 1, 0))
        return
    why = ready.get("message") or ready.get("reason") or "Ready=False"
    try:
        not_ready = [_pod_problem(p) for p in t.pods() if not _pod_ready(p)]
    except APIError as err:
        not_ready = [f"pods could not be listed: {_api_problem(err)}"]
    since = parse_time(ready.get("lastTransitionTime"))
    facts.replicas.append(Replicas(t.ref, 1, 1, [f"{t.ref}: {why}", *not_ready], since))


def _pipelines_section(
    namespace: str, selector: dict | None, facts: Facts, detected: datetime
) -> str:
    out = ["# Data pipelines", ""]
    if not selector:
        out.append(
            "The policy has no evidence.pipelineSelector: data pipelines were not checked. "
            "Label the CronJobs and Jobs that feed the model and select them there."
        )
        return "\n".join(out) + "\n"
    text = selector_string(selector)
    out += [f"CronJobs and Jobs in {namespace} matching `{text}`.", ""]
    cron_kind = next((k for k in ("CronJob", "CronJob/v1beta1") if kube.kind_installed(k)), None)
    cronjobs = kube.list_objects(cron_kind, namespace, text) if cron_kind else []
    jobs = kube.list_objects("Job", namespace)
    owned_by: dict[str, list[dict]] = {}
    for job in jobs:
        for owner in job["metadata"].get("ownerReferences") or []:
            owned_by.setdefault(owner.get("uid", ""), []).append(job)
    for cj in sorted(cronjobs, key=lambda o: o["metadata"]["name"]):
        run, lines = _cronjob(cj, owned_by.get(cj["metadata"]["uid"], []), detected)
        facts.pipelines.append(run)
        out += lines
    cron_uids = {cj["metadata"]["uid"] for cj in cronjobs}
    selected = {j["metadata"]["uid"] for j in kube.list_objects("Job", namespace, text)}
    standalone = [
        j
        for j in jobs
        if j["metadata"]["uid"] in selected
        and not any(o.get("uid") in cron_uids for o in j["metadata"].get("ownerReferences") or [])
    ]
    for job in sorted(standalone, key=lambda o: o["metadata"]["name"]):
        run, lines = _standalone_job(job)
        facts.pipelines.append(run)
        out += lines
    if not cronjobs and not standalone:
        out.append("Nothing matches the selector: check the labels of the pipelines.")
    if cron_kind is None:
        out.append("(this apiserver serves no CronJob API: only Jobs were checked)")
    return "\n".join(out) + "\n"


def _job_state(job: dict) -> tuple[str, datetime | None, str]:
    """("Failed" | "Complete" | "Running", when, detail) of one Job."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Failed":
            detail = ": ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
            pods = f" ({status['failed']} pod(s) failed)" if status.get("failed") else ""
            return "Failed", parse_time(cond.get("lastTransitionTime")), detail + pods
        if cond.get("type") == "Complete":
            when = parse_time(status.get("completionTime")) or parse_time(
                cond.get("lastTransitionTime")
            )
            return "Complete", when, ""
    detail = f"{status.get('active', 0)} active, {status.get('failed', 0)} failed pod(s)"
    return "Running", parse_time(status.get("startTime")) or _created(job), detail


def _cronjob(cj: dict, jobs: list[dict], detected: datetime) -> tuple[PipelineRun, list[str]]:
    name = f"CronJob/{cj['metadata']['name']}"
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    run = PipelineRun(name)
    states = sorted(
        ((_created(j), j, *_job_state(j)) for j in jobs), key=lambda s: s[0] or detected
    )
    finished = [s for s in states if s[2] != "Running"]
    successes = [s[3] for s in finished if s[2] == "Complete" and s[3]]
    run.last_success = max(
        [*successes, *filter(None, [parse_time(status.get("lastSuccessfulTime"))])], default=None
    )
    if finished and finished[-1][2] == "Failed":
        run.failed, run.failed_at, run.reason = True, finished[-1][3], finished[-1][4]
    run.earlier_failures = sum(1 for s in finished[:-1] if s[2] == "Failed")
    schedule = spec.get("schedule", "")
    lines = [
        f"## {name}",
        "",
        f"- schedule: `{schedule}`" + (" (suspended)" if spec.get("suspend") else ""),
        f"- last schedule: {iso(parse_time(status.get('lastScheduleTime')))}",
        f"- last success: {iso(run.last_success)}",
        f"- active runs: {len(status.get('active') or [])}",
    ]
    try:
        due = cron.previous(schedule, detected, 2)
    except cron.CronError as err:
        due = []
        lines.append(f"- schedule not understood ({err}): staleness not checked")
    created = _created(cj)
    if len(due) == 2 and created and due[1] >= created:
        missed, next_due = due[1], due[0]
        if run.last_success is None or run.last_success < missed:
            run.stale = True
            run.stale_reason = (
                f"no successful run since the one due at {iso(missed)} (the next was due at "
                f"{iso(next_due)}; last success {iso(run.last_success)})"
                + ("; the CronJob is suspended" if spec.get("suspend") else "")
            )
            lines.append(f"- STALE: {run.stale_reason}")
    if run.failed:
        lines.append(f"- LATEST RUN FAILED at {iso(run.failed_at)}: {run.reason}")
    lines += ["", "| Job | created | state | at | detail |", "|---|---|---|---|---|"]
    for created_at, job, state, when, detail in reversed(states[-10:]):
        lines.append(
            f"| {_cell(job['metadata']['name'])} | {iso(created_at)} | {state} | {iso(when)} "
            f"| {_cell(detail)} |"
        )
    lines.append("")
    return run, lines


def _standalone_job(job: dict) -> tuple[PipelineRun, list[str]]:
    name = f"Job/{job['metadata']['name']}"
    state, when, detail = _job_state(job)
    run = PipelineRun(name)
    if state == "Failed":
        run.failed, run.failed_at, run.reason = True, when, detail
    elif state == "Complete":
        run.last_success = when
    lines = [
        f"## {name}",
        "",
        f"- created: {iso(_created(job))}",
        f"- state: {state} at {iso(when)}" + (f": {detail}" if detail else ""),
        "",
    ]
    return run, lines


def _configmaps_section(targets: list[_Target], facts: Facts) -> str:
    out = [
        "# ConfigMaps the targets read (prompt templates and configuration)",
        "",
        "Last changed = the newest managedFields time. Before Kubernetes 1.25 (kubernetes#110058)",
        "it moves only when a writer takes new fields: an edit of a value by the same tool that",
        "wrote it before may not show.",
        "",
    ]
    for t in targets:
        uses: dict[str, tuple[str, bool]] = {}
        for template in t.templates():  # every pod template: a LeaderWorkerSet has two
            for name, (how, optional) in _configmap_uses(template).items():
                was = uses.get(name)
                uses[name] = (f"{was[0]}; {how}", was[1] and optional) if was else (how, optional)
        out += [f"## {t.ref}", ""]
        if not uses:
            out += ["Reads no ConfigMap.", ""]
            continue
        for name, (how, optional) in uses.items():
            cm = kube.get(kube.Ref("ConfigMap", t.namespace, name))
            if cm is None:
                facts.configmaps.append(
                    ConfigChange(t.ref, name, None, how=how, missing=not optional)
                )
                out += [
                    f"### {name}",
                    "",
                    f"- used as: {how}",
                    "- DOES NOT EXIST" + (" (optional)" if optional else ""),
                    "",
                ]
                continue
            changed, manager = _last_change(cm)
            created = _created(cm)
            keys = sorted({*(cm.get("data") or {}), *(cm.get("binaryData") or {})})
            facts.configmaps.append(ConfigChange(t.ref, name, changed, created, how, manager, keys))
            out += [
                f"### {name}",
                "",
                f"- used as: {how}",
                f"- created: {iso(created)}",
                f"- last changed: {iso(changed)}" + (f" by {manager}" if manager else ""),
                f"- keys: {', '.join(keys) or 'none'}",
                "",
            ]
            for key, value in sorted((cm.get("data") or {}).items()):
                digest = hashlib.sha256(value.encode()).hexdigest()[:12]
                out += [f"#### {key} ({len(value.encode())} bytes, sha256 {digest})", ""]
                out += ["```", _preview(value), "```", ""]
    return "\n".join(out) + "\n"


def _metrics_section(
    evidence_spec: dict,
    facts: Facts,
    detected: datetime,
    lookback: timedelta,
    now: datetime,
    namespaced: bool = True,
) -> str:
    out = ["# Metrics", ""]
    url = evidence_spec.get("prometheusURL")
    queries = evidence_spec.get("queries") or []
    if not queries:
        out.append("The policy has no evidence.queries: no metrics were collected.")
        return "\n".join(out) + "\n"
    if not url:
        out.append("The policy has no evidence.prometheusURL: the queries could not be run.")
        for q in queries:
            facts.metrics.append(_metric_fact(q, error="no evidence.prometheusURL"))
        return "\n".join(out) + "\n"
    refused = egress.check(url, namespaced)
    if refused:
        words = f"evidence.prometheusURL refused: {refused}"
        out.append(f"EVIDENCE INCOMPLETE: {words}; the queries were not run.")
        for q in queries:
            facts.metrics.append(_metric_fact(q, error=words))
        return "\n".join(out) + "\n"
    start, end = detected - lookback, max(now, detected + timedelta(seconds=1))
    out += [
        f"From {egress.display(url)}, {iso(start)} to {iso(end)} (lookback {human(lookback)} before "
        f"detection at {iso(detected)}).",
        "",
    ]
    unreachable = ""
    for q in queries:
        name, promql = q.get("name", "?"), q.get("query", "")
        kind = q.get("kind", "Other")
        threshold = f", threshold {q['threshold']:g}" if q.get("threshold") is not None else ""
        out += [f"## {name} ({kind}{threshold})", "", f"`{promql}`", ""]
        if unreachable:
            facts.metrics.append(_metric_fact(q, error=unreachable))
            out += [f"not run: {unreachable}", ""]
            continue
        try:
            series = prometheus.query_range(url, promql, start, end)
        except prometheus.PrometheusError as err:
            if err.unreachable:
                unreachable = str(err)  # the other queries would wait for the same
            facts.metrics.append(_metric_fact(q, error=str(err)))
            out += [f"EVIDENCE INCOMPLETE: {err}", ""]
            continue
        facts.metrics.append(_summarise(q, series, detected))
        if not series:
            out += ["no data: the query returned no series over the lookback", ""]
            continue
        for s in series[:20]:
            out.append(f"- {_describe_series(s, detected)}")
        if len(series) > 20:
            out.append(f"- ... and {len(series) - 20} more series")
        out.append("")
    return "\n".join(out) + "\n"


def _metric_fact(q: dict, error: str = "") -> MetricFact:
    return MetricFact(
        name=q.get("name", "?"),
        query=q.get("query", ""),
        kind=q.get("kind", "Other"),
        threshold=q.get("threshold"),
        error=error,
    )


def _summarise(q: dict, series: list[prometheus.Series], detected: datetime) -> MetricFact:
    fact = _metric_fact(q)
    around = (detected - hypotheses.AROUND_DETECTION).timestamp()
    best: prometheus.Series | None = None
    for s in series:
        for t, v in s.samples:
            if t >= around and v == v and (fact.peak is None or v > fact.peak):  # v == v: not NaN
                fact.peak, fact.peak_at, best = v, prometheus.sample_time(t), s
    chosen = best or (series[0] if series else None)
    if chosen and chosen.samples:
        before = [v for t, v in chosen.samples if t < detected.timestamp() and v == v]
        fact.before = statistics.fmean(before) if before else None
        fact.last = chosen.samples[-1][1]
    return fact


def _describe_series(s: prometheus.Series, detected: datetime) -> str:
    cut = detected.timestamp()
    values = [v for _, v in s.samples if v == v]
    before = [v for t, v in s.samples if t < cut and v == v]
    after = [v for t, v in s.samples if t >= cut and v == v]

    def part(label: str, vals: list[float]) -> str:
        if not vals:
            return f"{label}: no samples"
        return f"{label}: mean {statistics.fmean(vals):.4g} (min {min(vals):.4g}, max {max(vals):.4g}, {len(vals)} samples)"

    last_t, last_v = s.samples[-1] if s.samples else (0, float("nan"))
    overall = (
        f"min {min(values):.4g}, max {max(values):.4g}, last {last_v:.4g} at "
        f"{iso(prometheus.sample_time(last_t))}"
        if values
        else "only NaN samples"
    )
    return (
        f"`{s.describe()}`: {overall}; {part('before detection', before)}; {part('after', after)}"
    )


def _events_section(targets: list[_Target], since: datetime) -> str:
    out = ["# Recent Events", "", f"Since {iso(since)}, newest first.", ""]
    for t in targets:
        involved = {(t.kind, t.name)}
        try:
            involved |= {("ReplicaSet", rs["metadata"]["name"])
                         for rs in t.replicasets()[:EVENT_REPLICASETS]}  # fmt: skip
            involved |= {("Pod", p["metadata"]["name"]) for p in t.pods()[:EVENT_PODS]}
        except APIError as err:
            out.append(f"(ReplicaSets or pods could not be listed: {_api_problem(err)})")
        # One query per object (a field selector), never the namespace's whole Event list:
        # with a thousand incidents in one namespace that list is what grows.
        events = [
            e
            for kind, name in sorted(involved)
            for e in kube.list_objects(
                "Event", t.namespace,
                field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
            )
        ]  # fmt: skip
        mine = []
        for e in events:
            obj = e.get("involvedObject") or {}
            when = _event_time(e)
            if (obj.get("kind"), obj.get("name")) in involved and (when is None or when >= since):
                mine.append((when, e))
        mine.sort(key=lambda x: x[0] or since, reverse=True)
        out += [f"## {t.ref}", ""]
        if not mine:
            out += ["No recent Events.", ""]
            continue
        for when, e in mine[:EVENTS_PER_TARGET]:
            obj = e.get("involvedObject") or {}
            count = f" (x{e['count']})" if (e.get("count") or 1) > 1 else ""
            out.append(
                f"- {iso(when)} {e.get('type', 'Normal')} {e.get('reason', '')} "
                f"{obj.get('kind')}/{obj.get('name')}{count}: {(e.get('message') or '').strip()}"
            )
        if len(mine) > EVENTS_PER_TARGET:
            out.append(f"- ... and {len(mine) - EVENTS_PER_TARGET} older Events")
        out.append("")
    return "\n".join(out) + "\n"


def _summary(
    incident: dict,
    targets: list[_Target],
    detected: datetime,
    lookback: timedelta,
    now: datetime,
    ranked: list[dict],
    problems: list[str],
) -> str:
    meta, spec = incident["metadata"], incident.get("spec") or {}
    out = [
        f"# Evidence for incident {meta['namespace']}/{meta['name']}",
        "",
        f"- title: {spec.get('title') or '-'}",
        f"- category: {spec.get('category', 'Other')}",
        f"- detected: {iso(detected)}",
        f"- collected: {iso(now)}",
        f"- lookback: {human(lookback)}",
        f"- targets: {', '.join(t.ref for t in targets) or 'none'}",
        "",
        "## Hypotheses (most likely first)",
        "",
    ]
    if not ranked:
        out.append("The evidence points at no cause in the catalogue.")
    for h in ranked:
        out.append(f"- **{h['cause']}** (confidence {h['confidence']:.2f})")
        out += [f"  - {line}" for line in h["evidence"]]
    out += ["", "## Sections", ""]
    out += [f"- `{key}`: {what}" for key, what in SECTIONS if key != "summary.md"]
    if problems:
        out += ["", "## Not collected", ""] + [f"- {p}" for p in problems]
    return "\n".join(out) + "\n"


def _collected_at(summary: str) -> str:
    for line in summary.splitlines():
        if line.startswith("- collected: "):
            return line.removeprefix("- collected: ")
    return ""


# --- Size bounds ------------------------------------------------------------------------


def bound(
    data: dict[str, str], total: int = TOTAL_LIMIT, section: int = SECTION_LIMIT
) -> dict[str, str]:
    """DATA with each section at most SECTION bytes and all together at most TOTAL."""
    out = {key: truncate(key, text, section) for key, text in data.items()}
    while sum(len(v.encode()) for v in out.values()) > total:
        excess = sum(len(v.encode()) for v in out.values()) - total
        key = max(out, key=lambda k: len(out[k].encode()))
        size = len(out[key].encode())
        out[key] = truncate(key, out[key], max(512, size - excess - 256))
        if len(out[key].encode()) >= size:  # cannot shrink further
            break
    return out


def truncate(key: str, text: str, limit: int) -> str:
    """TEXT cut at a line end to fit LIMIT bytes, with a note saying how much is missing."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    note = f"\n... truncated: {{}} more bytes of {key} not shown (the evidence is size-bounded)\n"
    keep = max(0, limit - len(note.format(len(raw)).encode()))
    cut = raw[:keep].decode(errors="ignore")
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    return cut + note.format(len(raw) - len(cut.encode()))


# --- Small readers ----------------------------------------------------------------------


def _created(obj: dict) -> datetime | None:
    return parse_time(obj.get("metadata", {}).get("creationTimestamp"))


def _revision(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def _containers(template: dict) -> list[dict]:
    spec = template.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _images(template: dict) -> list[str]:
    return [c.get("image", "?") for c in (template.get("spec") or {}).get("containers") or []]


def _is_model_version(name: str) -> bool:
    lowered = name.lower()
    return "model" in lowered and "version" in lowered


def _model_markers(meta: dict, template: dict) -> list[str]:
    """Every place that names a model version: labels, annotations, env."""
    found = []
    tmeta = template.get("metadata") or {}
    for where, mapping in (
        ("label", meta.get("labels")),
        ("annotation", meta.get("annotations")),
        ("pod label", tmeta.get("labels")),
        ("pod annotation", tmeta.get("annotations")),
    ):
        for key, value in sorted((mapping or {}).items()):
            if _is_model_version(key):
                found.append(f"{where} {key}={value}")
    for c in _containers(template):
        for env in c.get("env") or []:
            if _is_model_version(env.get("name", "")):
                value = env.get("value")
                if value is None and env.get("valueFrom"):
                    value = f"(from {next(iter(env['valueFrom']))})"
                found.append(f"env {c.get('name')}/{env['name']}={value}")
    return found


def _model_version(template: dict) -> str:
    """One string naming the model version a pod template serves ('' when none says)."""
    tmeta = template.get("metadata") or {}
    for mapping in (tmeta.get("labels"), tmeta.get("annotations")):
        for key, value in sorted((mapping or {}).items()):
            if _is_model_version(key):
                return str(value)
    for c in _containers(template):
        for env in c.get("env") or []:
            if _is_model_version(env.get("name", "")) and env.get("value") is not None:
                return str(env["value"])
    return str((tmeta.get("labels") or {}).get(VERSION_LABEL, ""))


def _configmap_uses(template: dict) -> dict[str, tuple[str, bool]]:
    """ConfigMap name -> (how the pod uses it, whether it is optional)."""
    uses: dict[str, tuple[list[str], bool]] = {}

    def add(name: str | None, how: str, optional: bool | None) -> None:
        if not name:
            return
        hows, opt = uses.get(name, ([], True))
        hows.append(how)
        uses[name] = (hows, opt and bool(optional))

    spec = template.get("spec") or {}
    mounts: dict[str, list[str]] = {}
    for c in _containers(template):
        for m in c.get("volumeMounts") or []:
            mounts.setdefault(m.get("name", ""), []).append(f"{c.get('name')}:{m.get('mountPath')}")
    for vol in spec.get("volumes") or []:
        where = ", ".join(mounts.get(vol.get("name", ""), [])) or "not mounted"
        cm = vol.get("configMap")
        if cm:
            add(cm.get("name"), f"volume {vol.get('name')} at {where}", cm.get("optional"))
        for source in (vol.get("projected") or {}).get("sources") or []:
            cm = source.get("configMap")
            if cm:
                add(
                    cm.get("name"),
                    f"projected volume {vol.get('name')} at {where}",
                    cm.get("optional"),
                )
    for c in _containers(template):
        for ref in c.get("envFrom") or []:
            cm = ref.get("configMapRef")
            if cm:
                add(cm.get("name"), f"envFrom of container {c.get('name')}", cm.get("optional"))
        for env in c.get("env") or []:
            cm = (env.get("valueFrom") or {}).get("configMapKeyRef")
            if cm:
                add(
                    cm.get("name"),
                    f"env {env.get('name')} of container {c.get('name')} (key {cm.get('key')})",
                    cm.get("optional"),
                )
    return {name: ("; ".join(hows), opt) for name, (hows, opt) in uses.items()}


def _last_change(obj: dict) -> tuple[datetime | None, str]:
    """When OBJ was last written (managedFields), and by which manager; else its creation."""
    latest: tuple[datetime, str] | None = None
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        when = parse_time(entry.get("time"))
        if when and (latest is None or when >= latest[0]):
            latest = (when, entry.get("manager", ""))
    if latest:
        return latest
    return _created(obj), ""


def _pod_ready(pod: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _pod_problem(pod: dict) -> str:
    status = pod.get("status") or {}
    reasons = []
    for cond in status.get("conditions") or []:
        if cond.get("status") == "False" and (cond.get("reason") or cond.get("message")):
            reasons.append(f"{cond['type']}: {cond.get('reason') or cond.get('message')}")
    for cs in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        state = cs.get("state") or {}
        for key in ("waiting", "terminated"):
            if state.get(key) and state[key].get("reason"):
                reasons.append(f"container {cs.get('name')} {key}: {state[key]['reason']}")
        if cs.get("restartCount"):
            reasons.append(f"container {cs.get('name')} restarted {cs['restartCount']} times")
    if not status.get("conditions") and not (pod.get("spec") or {}).get("nodeName"):
        reasons.append("not scheduled to any node")
    detail = "; ".join(reasons) or "not ready"
    return f"{pod['metadata']['name']}: {status.get('phase', 'Unknown')} ({detail})"


def _event_time(event: dict) -> datetime | None:
    return (
        parse_time(event.get("lastTimestamp"))
        or parse_time(event.get("eventTime"))
        or parse_time(event.get("firstTimestamp"))
        or parse_time(event.get("metadata", {}).get("creationTimestamp"))
    )


def _preview(value: str) -> str:
    raw = value.encode()
    text = raw[:VALUE_PREVIEW].decode(errors="ignore").replace("```", "'''")
    if len(raw) > VALUE_PREVIEW:
        text += f"\n... ({len(raw) - VALUE_PREVIEW} more bytes)"
    return text


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _api_problem(err: APIError) -> str:
    if isinstance(err, Forbidden):
        return f"forbidden ({err.reason}): the operator's RBAC lacks read access"
    if isinstance(err, NotFound):
        return "the apiserver does not serve this kind"
    if not err.status:  # no answer at all: the message says what happened
        return err.message
    return f"HTTP {err.status} {err.reason}"
