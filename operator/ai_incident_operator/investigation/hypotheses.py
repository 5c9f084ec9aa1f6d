"""Likely root causes, ranked, from the facts the evidence holds (pure).

The playbook's catalogue of AI incident causes, each scored from `Facts` that
`evidence.collect` extracts from the cluster and Prometheus:

- DataPipelineFailure: a pipeline run (Job, CronJob) failed, or a CronJob has not
  succeeded for a whole schedule period (stale data).
- DeploymentChange: the target rolled out shortly before detection (closer = more
  likely), the image or the model version changed.
- PromptTemplateChange: a ConfigMap the target mounts or reads changed shortly before.
- InputDrift: a drift query (`kind: Drift`, or "drift" in its name) above its threshold.
- UpstreamDependency: an upstream-errors query (`kind: UpstreamErrors`) above its threshold.
- InfrastructureDegradation: replicas unavailable, pods not ready.

A reproduction (`reproduce`) that fails on the current version and passes on the
previous one makes the change between them the cause, with high confidence:
PromptTemplateChange when a template changed and the image did not, else
DeploymentChange.

The operator's own writes are never a cause: its rollouts (a sidecar, safer config,
their undo) are folded into the rollout people made before the facts are taken
(`own_writes`), and a ConfigMap it wrote last is not a changed template.

`rank` gives `status.hypotheses[]`; `root_cause_identified` gives the
RootCauseIdentified condition, where a cause a person states wins over any ranking.
The engine calls both after `evidence.collect`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..times import human, iso

# Changes older than this before detection are not offered as a cause.
RECENT = timedelta(hours=24)
# How fast a change's likelihood fades with its distance from detection.
HALF_LIFE = timedelta(hours=2)
# Window around detection in which a metric counts as "at the time of the incident".
AROUND_DETECTION = timedelta(minutes=30)
ROOT_CAUSE_THRESHOLD = 0.6
# The operator's field manager (kube.FIELD_MANAGER; kube cannot be imported here).
OWN_MANAGER = "ai-incident-operator"
EVIDENCE_LINES = 8  # per hypothesis; the evidence ConfigMap has the rest


@dataclass
class Rollout:
    """The target's newest ReplicaSet (what is serving) and the one before it."""

    target: str  # "Deployment/chat-llm"
    revision: int
    time: datetime  # when the newest ReplicaSet was created
    images: list[str] = field(default_factory=list)
    previous_images: list[str] = field(default_factory=list)
    model_version: str = ""
    previous_model_version: str = ""
    first: bool = False  # revision 1: the Deployment was created, not changed
    rollback: bool = False  # an older template came back


@dataclass
class PipelineRun:
    """The state of one data pipeline: a CronJob (with its Jobs) or a standalone Job."""

    name: str  # "CronJob/features-nightly" or "Job/backfill"
    failed: bool = False  # its latest run failed
    failed_at: datetime | None = None
    reason: str = ""  # e.g. "BackoffLimitExceeded: Job has reached the specified backoff limit"
    stale: bool = False  # no success for a whole schedule period
    stale_reason: str = ""
    last_success: datetime | None = None
    earlier_failures: int = 0  # failed runs followed by a success


@dataclass
class ConfigChange:
    """A ConfigMap a target mounts or reads env from, and when it last changed."""

    target: str
    name: str
    changed_at: datetime | None
    created_at: datetime | None = None
    how: str = ""  # "volume prompts at /etc/prompts", "envFrom", "env SYSTEM_PROMPT"
    manager: str = ""  # who wrote it last (managedFields)
    keys: list[str] = field(default_factory=list)
    missing: bool = False


@dataclass
class MetricFact:
    """One evidence query, summarised over the window around detection."""

    name: str
    query: str
    kind: str = "Other"  # Quality | Drift | UpstreamErrors | Errors | Latency | Cost | Other
    threshold: float | None = None
    peak: float | None = None  # highest value around detection (and since)
    peak_at: datetime | None = None
    before: float | None = None  # mean before detection
    last: float | None = None
    error: str = ""


@dataclass
class Replicas:
    """Availability of one target."""

    target: str
    desired: int
    unavailable: int
    not_ready: list[str] = field(default_factory=list)  # "chat-llm-abc: Pending (Unschedulable)"
    since: datetime | None = None  # Available=False since


@dataclass
class Reproduction:
    """The incident's examples sent to the current and the previous model version."""

    failing: int  # examples that fail on the current version
    passing_before: int  # of those, how many pass on the previous version
    total: int
    # Whether the evidence shows a changed template / image; None: from the other facts.
    template_changed: bool | None = None
    image_changed: bool | None = None


@dataclass
class Facts:
    detected_at: datetime
    rollouts: list[Rollout] = field(default_factory=list)
    pipelines: list[PipelineRun] = field(default_factory=list)
    configmaps: list[ConfigChange] = field(default_factory=list)
    metrics: list[MetricFact] = field(default_factory=list)
    replicas: list[Replicas] = field(default_factory=list)
    reproduction: Reproduction | None = None


def rank(facts: Facts, now: datetime | None = None) -> list[dict[str, Any]]:
    """`status.hypotheses[]`: {cause, confidence 0..1, evidence [lines]}, most likely first."""
    found: list[tuple[float, str, list[str]]] = []
    for cause, scorer in CATALOGUE.items():
        confidence, lines = scorer(facts)
        if confidence > 0:
            found.append((confidence, cause, lines))
    found.sort(key=lambda h: (-h[0], ORDER.index(h[1])))
    return [
        {
            "cause": cause,
            "confidence": round(min(conf, 0.95), 2),
            "evidence": lines[:EVIDENCE_LINES],
        }
        for conf, cause, lines in found
    ]


def with_reproduction(
    hypotheses: list[dict[str, Any]], reproduction: Reproduction, detected_at: datetime
) -> list[dict[str, Any]]:
    """HYPOTHESES (status.hypotheses[]) with what a reproduction says: the cause it points at
    raised to REPRODUCED (if lower), its line first, the evidence's lines kept after."""
    cause = _regression_cause(Facts(detected_at=detected_at, reproduction=reproduction))
    if not cause:
        return hypotheses
    line = _reproduced_line(Facts(detected_at=detected_at, reproduction=reproduction))
    out = [dict(h) for h in hypotheses]
    found = next((h for h in out if h.get("cause") == cause), None)
    if found is None:
        found = {"cause": cause, "confidence": 0.0, "evidence": []}
        out.append(found)
    kept = [e for e in found.get("evidence") or [] if not e.startswith("reproduced: ")]
    found["evidence"] = [line, *kept][:EVIDENCE_LINES]
    found["confidence"] = max(found.get("confidence") or 0.0, REPRODUCED)
    return sorted(out, key=lambda h: (-h["confidence"], ORDER.index(h["cause"])
                                      if h["cause"] in ORDER else len(ORDER)))  # fmt: skip


def changed_in(hypotheses: list[dict[str, Any]]) -> tuple[bool, bool]:
    """(a template changed, the image or model version changed), as the ranked evidence says."""
    template = image = False
    for h in hypotheses:
        lines = [e for e in h.get("evidence") or [] if not e.startswith("reproduced: ")]
        if h.get("cause") == "PromptTemplateChange":
            template = template or any(" changed" in e and "ConfigMap" in e for e in lines)
        if h.get("cause") == "DeploymentChange":
            image = image or any("image changed" in e or "model version changed" in e
                                 for e in lines)  # fmt: skip
    return template, image


def root_cause_identified(
    hypotheses: list[dict[str, Any]],
    spec: dict[str, Any],
    threshold: float = ROOT_CAUSE_THRESHOLD,
) -> tuple[bool, str, str]:
    """The RootCauseIdentified condition: (status, reason, message) from the incident SPEC."""
    stated = ((spec or {}).get("resolution") or {}).get("rootCause")
    if stated:
        return True, "StatedInSpec", f"spec.resolution.rootCause: {stated}"
    if not hypotheses:
        return (
            False,
            "NoHypothesis",
            (
                "the evidence points at no cause in the catalogue; investigate and set "
                "spec.resolution.rootCause when it is known"
            ),
        )
    best = hypotheses[0]
    because = f": {best['evidence'][0]}" if best.get("evidence") else ""
    if best["confidence"] >= threshold:
        return (
            True,
            "HypothesisAboveThreshold",
            (f"{best['cause']} (confidence {best['confidence']:.2f}){because}"),
        )
    return (
        False,
        "LowConfidence",
        (
            f"most likely {best['cause']} at confidence {best['confidence']:.2f}, below "
            f"{threshold:.2f}; confirm and set spec.resolution.rootCause"
        ),
    )


# --- The catalogue ----------------------------------------------------------------------


def _closeness(detected: datetime, when: datetime | None) -> float | None:
    """1.0 for a change at detection, fading with HALF_LIFE; None if after or too old."""
    if when is None or when > detected + timedelta(seconds=5):  # clocks differ a little
        return None
    gap = max(timedelta(0), detected - when)
    if gap > RECENT:
        return None
    return math.pow(0.5, gap / HALF_LIFE)


def _ago(detected: datetime, when: datetime) -> str:
    return f"{human(detected - when)} before detection"


REPRODUCED = 0.9  # fails on the current version, passes on the previous: a regression


def _regression_cause(facts: Facts) -> str:
    """Which change a reproduced regression points at ('' if none was reproduced)."""
    r = facts.reproduction
    if r is None or r.failing <= 0 or r.passing_before <= 0:
        return ""
    template = r.template_changed
    if template is None:
        template = any(not c.missing and c.changed_at is not None and c.manager != OWN_MANAGER
                       and _closeness(facts.detected_at, c.changed_at) is not None
                       for c in facts.configmaps)  # fmt: skip
    image = r.image_changed
    if image is None:
        image = any(
            (x.previous_images and x.images != x.previous_images)
            or (x.previous_model_version and x.model_version != x.previous_model_version)
            for x in facts.rollouts
        )
    return "PromptTemplateChange" if template and not image else "DeploymentChange"


def _reproduced_line(facts: Facts) -> str:
    r = facts.reproduction
    assert r is not None
    return (
        f"reproduced: {r.failing} of {r.total} examples fail on the current version and "
        f"{r.passing_before} of them pass on the previous version"
    )


def _deployment_change(facts: Facts) -> tuple[float, list[str]]:
    best, lines = 0.0, []
    if _regression_cause(facts) == "DeploymentChange":
        best, lines = REPRODUCED, [_reproduced_line(facts)]
    for r in facts.rollouts:
        close = _closeness(facts.detected_at, r.time)
        if close is None:
            continue
        score = 0.3 + 0.55 * close
        if r.first:
            score *= 0.6  # a new Deployment: a change, but nothing was replaced
            what = f"{r.target} was first rolled out {_ago(facts.detected_at, r.time)}"
        elif r.rollback:
            what = (
                f"{r.target} rolled back to revision {r.revision} {_ago(facts.detected_at, r.time)}"
            )
        else:
            what = f"{r.target} rolled out revision {r.revision} {_ago(facts.detected_at, r.time)}"
        lines.append(f"{what} ({iso(r.time)})")
        if r.previous_images and r.images != r.previous_images:
            score += 0.05
            lines.append(
                f"{r.target} image changed {', '.join(r.previous_images)} -> {', '.join(r.images)}"
            )
        if r.previous_model_version and r.model_version != r.previous_model_version:
            score += 0.05
            lines.append(
                f"{r.target} model version changed {r.previous_model_version} -> "
                f"{r.model_version or '(none)'}: check that the intended model is loaded"
            )
        elif r.model_version:
            lines.append(f"{r.target} serves model version {r.model_version}")
        best = max(best, score)
    return best, lines


def _prompt_template_change(facts: Facts) -> tuple[float, list[str]]:
    best, lines = 0.0, []
    if _regression_cause(facts) == "PromptTemplateChange":
        best, lines = REPRODUCED, [_reproduced_line(facts)]
    for c in facts.configmaps:
        if c.missing:
            best = max(best, 0.5)
            lines.append(f"ConfigMap {c.name} ({c.how}) used by {c.target} does not exist")
            continue
        close = _closeness(facts.detected_at, c.changed_at)
        if close is None or c.changed_at is None or c.manager == OWN_MANAGER:
            continue  # too old, or the operator's own ConservativeConfig (or its undo)
        score = 0.3 + 0.55 * close
        created_only = c.created_at is not None and c.changed_at - c.created_at < timedelta(
            seconds=2
        )
        if created_only:
            score *= 0.6  # created, never edited: less likely than an edit
        text = " ".join([c.name, *c.keys]).lower()
        if "prompt" in text or "template" in text:
            score += 0.05
        verb = "was created" if created_only else "changed"
        by = f" by {c.manager}" if c.manager else ""
        lines.append(
            f"ConfigMap {c.name} ({c.how} of {c.target}) {verb}{by} "
            f"{_ago(facts.detected_at, c.changed_at)} ({iso(c.changed_at)})"
        )
        best = max(best, score)
    return best, lines


def _data_pipeline_failure(facts: Facts) -> tuple[float, list[str]]:
    best, lines = 0.0, []
    for p in facts.pipelines:
        if p.failed:
            recent = _closeness(facts.detected_at, p.failed_at) if p.failed_at else None
            score = 0.55 + 0.3 * (recent or 0.0)
            when = f" at {iso(p.failed_at)}" if p.failed_at else ""
            lines.append(f"{p.name}: latest run failed{when}: {p.reason or 'no reason given'}")
            if p.last_success:
                lines.append(f"{p.name}: last success {iso(p.last_success)}")
            best = max(best, score)
        if p.stale:
            best = max(best, 0.6)
            lines.append(f"{p.name}: stale: {p.stale_reason}")
        if not p.failed and not p.stale and p.earlier_failures:
            best = max(best, 0.2)
            lines.append(
                f"{p.name}: {p.earlier_failures} earlier run(s) failed, the latest succeeded"
            )
    return best, lines


def _above(m: MetricFact, default_threshold: float | None) -> float | None:
    """How far M's peak is over its threshold, as a fraction of the threshold (None: not over)."""
    threshold = m.threshold if m.threshold is not None else default_threshold
    if m.error or m.peak is None or threshold is None or math.isnan(m.peak):
        return None
    if m.peak <= threshold:
        return None
    return (m.peak - threshold) / abs(threshold) if threshold else 1.0


def _metric_cause(
    facts: Facts,
    matches: Callable[[MetricFact], bool],
    default_threshold: float | None,
    base: float,
    label: str,
) -> tuple[float, list[str]]:
    best, lines = 0.0, []
    for m in facts.metrics:
        if not matches(m):
            continue
        over = _above(m, default_threshold)
        threshold = m.threshold if m.threshold is not None else default_threshold
        if over is None:
            continue
        score = base + 0.2 * min(1.0, over)
        if m.before is not None and threshold is not None and m.before <= threshold:
            score += 0.05  # it rose around the incident: a change, not the usual level
        lines.append(
            f"{label} {m.name} ({m.query}) reached {m.peak:.4g} at {iso(m.peak_at)}, "
            f"above its threshold {threshold:g}"
            + (f"; {m.before:.4g} on average before detection" if m.before is not None else "")
        )
        best = max(best, score)
    return best, lines


def _input_drift(facts: Facts) -> tuple[float, list[str]]:
    return _metric_cause(
        facts,
        lambda m: m.kind == "Drift" or "drift" in m.name.lower(),
        None,  # a drift score means nothing without the policy's threshold
        0.55,
        "drift query",
    )


def _upstream_dependency(facts: Facts) -> tuple[float, list[str]]:
    return _metric_cause(
        facts,
        lambda m: m.kind == "UpstreamErrors" or "upstream" in m.name.lower(),
        0.0,  # without a threshold, any upstream error counts
        0.5,
        "upstream errors query",
    )


def _infrastructure_degradation(facts: Facts) -> tuple[float, list[str]]:
    best, lines = 0.0, []
    for r in facts.replicas:
        if r.desired <= 0 or r.unavailable <= 0:
            continue
        share = min(1.0, r.unavailable / r.desired)
        score = 0.4 + 0.45 * share
        since = f" since {iso(r.since)}" if r.since else ""
        lines.append(f"{r.target}: {r.unavailable} of {r.desired} replicas unavailable{since}")
        lines.extend(f"{r.target}: pod {p}" for p in r.not_ready[:3])
        best = max(best, score)
    return best, lines


CATALOGUE = {
    "DataPipelineFailure": _data_pipeline_failure,
    "DeploymentChange": _deployment_change,
    "PromptTemplateChange": _prompt_template_change,
    "InputDrift": _input_drift,
    "UpstreamDependency": _upstream_dependency,
    "InfrastructureDegradation": _infrastructure_degradation,
}
ORDER = list(CATALOGUE)  # ties: the playbook's order
