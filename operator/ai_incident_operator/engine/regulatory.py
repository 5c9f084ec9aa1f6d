"""The regulatory clock: with regulatory exposure, the report deadline, legal told once, a warning.

`spec.regulatory: {regime: EUAIAct, harm}` or `spec.regulatoryExposure: true` (harm
Other) starts the clock at detection. The period is the law's for the harm (EU AI Act
Art. 73: 2 days for CriticalInfrastructure or Widespread, 10 for Death, 15 otherwise),
or the policy's `regulatory.reportWithin` when that is shorter: a policy may ask for
an earlier report, never a later one than the law allows. `regulatory.channels` are
notified once; an Event warns when the deadline is near (two days, or a fifth of the time).

The deadline is the governing policy's. kopf's watches of incidents and of policies are
not ordered with each other, so a pass can see a new incident before the index has its
policy's Ready status: then the clock waits (the policy's Ready event plans the incident
again) instead of starting on the default. A deadline set without a policy (none was
there yet) follows the policy once one governs the incident; it never falls back to the
default when the policy goes. The wait is bounded (POLICY_WAIT).

The evidence freeze (Art. 73(6): nothing that alters the AI system before what was
running is recorded): `freeze_evidence` runs right before the first action that
changes the model's objects (a `FieldAction`: replicas, image, env, configuration,
routing; not Notify or IncreaseMonitoring). The targets as they were before any
mitigation (`pre_mitigation`: the ledgers' originals put back, as the evidence's
targets.yaml shows them) are written as canonical JSON into the immutable ConfigMap
`<incident>-frozen`, owned by the incident; `status.evidenceDigest` is its sha256 and
goes out in the same status write as the action's entry. It is never replaced: a pass
that finds the ConfigMap (made by a pass that crashed before its status write) adopts
it. If it cannot be written, the mitigation still goes ahead (stopping harm comes
first) and an `EvidenceNotFrozen` Event says why.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from .. import GROUP, actions, ledger, review
from .. import policy as mitigation_policy
from ..actions.base import FieldAction
from ..conditions import now_iso
from ..errors import APIError, Conflict
from ..fieldpath import put
from ..resources import Ref, owner_reference
from ..times import parse_time
from .context import Body, IncidentContext, in_force, log
from .decide import Step
from .steps import apply

# EU AI Act Art. 73(2)-(5): the longest time from awareness to the report, by harm.
LEGAL_PERIODS: dict[str, timedelta] = {
    "Death": timedelta(days=10),
    "CriticalInfrastructure": timedelta(days=2),
    "Widespread": timedelta(days=2),
    "Other": timedelta(days=15),
}
OTHER = LEGAL_PERIODS["Other"]

# How long the clock waits for a pending policy's check: a policy that is never checked
# (its status cannot be written) must not stop the clock; the default then applies, and
# the policy's deadline once it governs the incident.
POLICY_WAIT = timedelta(seconds=30)


def policy_pending(ctx: IncidentContext) -> Body | None:
    """A policy that covers the targets but is not yet checked at its generation, if any."""
    labels = ctx.world.namespace_labels(ctx.namespace)
    for body in ctx.world.policies:
        status = body.get("status") or {}
        if status.get("observedGeneration") == body.get("metadata", {}).get("generation"):
            continue  # checked: Ready or not, it is what it is
        if mitigation_policy.covers(body, ctx.namespace, labels, ctx.targets):
            return body
    return None


def harm(spec: Body) -> str | None:
    """The harm the clock runs for (pure): spec.regulatory's, Other for regulatoryExposure
    alone (or an unknown harm: the CRD's enum keeps those out), None without exposure."""
    regulatory = spec.get("regulatory")
    if isinstance(regulatory, dict) and regulatory:
        named = regulatory.get("harm")
        return named if named in LEGAL_PERIODS else "Other"
    return "Other" if spec.get("regulatoryExposure") else None


def legal_period(spec: Body) -> timedelta | None:
    """The law's longest time to report for SPEC's harm (pure); None without exposure."""
    found = harm(spec)
    return LEGAL_PERIODS[found] if found else None


def deadline(
    stored: str | None, detected: datetime, policy: Body | None, legal: timedelta = OTHER
) -> str:
    """The report deadline to keep (pure): the governing policy's, else the one set, and
    never later than the law's (LEGAL after detection)."""
    law = detected + legal
    if policy is not None or not stored:
        due = review.regulatory_due_by(detected, (policy or {}).get("spec"))
        return now_iso(min(due, law))
    kept = parse_time(stored)
    return stored if kept is None or kept <= law else now_iso(law)


def regulatory_clock(ctx: IncidentContext, dry_run: bool) -> None:
    legal = legal_period(ctx.spec)
    if legal is None:
        return
    regulatory = ctx.policy_spec.get("regulatory") or {}
    detected = parse_time(ctx.status.get("detectedAt")) or ctx.now
    stored = ctx.status.get("regulatoryReportDueBy")
    waited = ctx.now - detected
    if (
        not stored
        and ctx.policy is None
        and waited < POLICY_WAIT
        and (pending := policy_pending(ctx))
    ):
        ctx.requeue_after(5)  # its Ready event plans this incident sooner; this is the floor
        log.info("%s: the regulatory deadline waits for policy %s to be checked",
                 ctx.holder, pending["metadata"]["name"])  # fmt: skip
        return
    kept = deadline(stored, detected, ctx.policy, legal)
    basis = f"harm {harm(ctx.spec)}: at most {legal.days} days by EU AI Act Art. 73"
    if not stored:
        ctx.say("RegulatoryClockStarted", f"regulatory exposure ({basis}): the report is due "
                f"by {kept}", warning=True)  # fmt: skip
    elif kept != stored:
        why = (f"as {mitigation_policy.describe(ctx.policy)} says" if ctx.policy is not None
               else f"the law's period ({basis})")  # fmt: skip
        ctx.say("RegulatoryDeadlineChanged", f"the regulatory report is due by {kept} (was "
                f"{stored}), {why}", warning=True)  # fmt: skip
    ctx.status["regulatoryReportDueBy"] = kept
    due = parse_time(kept) or ctx.now
    if regulatory.get("channels"):
        spec = {"type": "Notify", "channels": regulatory["channels"], "purpose": "regulatory"}
        target = ctx.targets[0] if ctx.targets else {}
        apply(ctx, [Step(actions.get("Notify"), spec, target, f"AIIncident/{ctx.name}")], dry_run)
    types = {t["type"] for t in ctx.status.get("timeline") or []}
    near = min(timedelta(days=2), (due - detected) / 5)
    if "RegulatoryDeadlineNear" in types or ctx.status.get("phase") == "Closed":
        return
    if due - ctx.now <= near:
        words = f"the regulatory report is due by {now_iso(due)} (in {due - ctx.now})"
        ctx.say("RegulatoryDeadlineNear", words, warning=True)
    else:
        ctx.requeue_after((due - near - ctx.now).total_seconds() + 1)


# --- The evidence freeze ----------------------------------------------------------------

FROZEN_SUFFIX = "frozen"
FROZEN_KEY = "evidence.json"
DIGEST_KEY = "sha256"
_DROPPED_META = ("managedFields", "resourceVersion", "selfLink", "generation")


def alters_system(action: actions.Action) -> bool:
    """Whether ACTION changes the model's own objects (pure): every FieldAction does."""
    return isinstance(action, FieldAction)


def pre_mitigation(obj: Body) -> Body:
    """OBJ as it was before any mitigation (pure): the ledger's originals put back, the
    operator's marks and the fields the apiserver keeps moving left out. The same view
    as the evidence's targets.yaml (investigation.evidence.before_mitigation)."""
    snap = copy.deepcopy(obj)
    for path, value in ledger.originals(obj).items():
        put(snap, path, value)
    meta = snap.setdefault("metadata", {})
    for key, drop in (("annotations", (ledger.ANNOTATION,
                                       "kubectl.kubernetes.io/last-applied-configuration")),
                      ("labels", (ledger.HELD_LABEL,))):  # fmt: skip
        kept = {k: v for k, v in (meta.get(key) or {}).items() if k not in drop}
        if kept:
            meta[key] = kept
        else:
            meta.pop(key, None)
    for key in _DROPPED_META:
        meta.pop(key, None)
    snap.pop("status", None)
    return snap


def frozen_content(incident: Body, targets: list[Body]) -> Body:
    """What is frozen (pure): the incident's identity and each target before mitigation."""
    meta = incident.get("metadata") or {}
    return {
        "incident": {k: meta.get(k) for k in ("namespace", "name", "uid")},
        "targets": sorted(
            (
                {
                    "ref": f"{t.get('kind', 'Deployment')}/{t['metadata']['name']}",
                    "object": pre_mitigation(t),
                }
                for t in targets
            ),
            key=lambda t: t["ref"],
        ),
    }


def canonical(content: Any) -> str:
    """CONTENT as canonical JSON (pure): sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip


def digest(text: str) -> str:
    """`sha256:<hex>` of TEXT's UTF-8 bytes (pure)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def frozen_name(incident: Body) -> str:
    base = incident["metadata"]["name"][: 253 - len(FROZEN_SUFFIX) - 1].rstrip("-.")
    return f"{base}-{FROZEN_SUFFIX}"


def frozen_configmap(incident: Body, text: str) -> Body:
    """The ConfigMap that keeps TEXT (pure): immutable, owned by the incident."""
    meta = incident["metadata"]
    body: Body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": frozen_name(incident),
            "namespace": meta["namespace"],
            "labels": {
                f"{GROUP}/incident": meta["name"][:63].rstrip("-._"),
                f"{GROUP}/part": FROZEN_SUFFIX,
            },
        },
        "immutable": True,
        "data": {FROZEN_KEY: text, DIGEST_KEY: digest(text)},
    }
    if meta.get("uid"):
        body["metadata"]["ownerReferences"] = [owner_reference(incident)]
    return body


def _alters(entry: Body) -> bool:
    found = actions.registry().get(entry.get("action") or entry.get("key", "").partition(":")[0])
    return found is not None and alters_system(found)


def needs_freeze(ctx: IncidentContext, action: actions.Action, dry_run: bool) -> bool:
    """Before the first change to the AI system, unless recorded already (pure)."""
    if dry_run or ctx.api.read_only or ctx.status.get("evidenceDigest"):
        return False
    if not alters_system(action) or not ctx.targets:
        return False
    return not any(in_force(e) and _alters(e) for e in ctx.entries.values())


def _store(ctx: IncidentContext, text: str) -> str:
    """Create the frozen ConfigMap; the digest it holds (an existing one of ours is kept)."""
    body = frozen_configmap(ctx.body, text)
    ref = Ref("ConfigMap", ctx.namespace, body["metadata"]["name"])
    try:
        ctx.api.create("ConfigMap", ctx.namespace, body)
        return body["data"][DIGEST_KEY]
    except Conflict:
        current = ctx.api.get(ref)
        if current is None:
            raise
    owners = current["metadata"].get("ownerReferences") or []
    uid = ctx.body["metadata"].get("uid")
    data = current.get("data") or {}
    if not any(o.get("uid") == uid for o in owners) or FROZEN_KEY not in data:
        raise APIError(409, f"ConfigMap {ref.name} exists and is not this incident's frozen "
                       "evidence; it was left alone", "AlreadyExists")  # fmt: skip
    return digest(data[FROZEN_KEY])  # made by a pass whose status write did not happen


def freeze_evidence(ctx: IncidentContext, action: actions.Action, dry_run: bool) -> None:
    """Record the targets as they were, before ACTION alters them; never raises."""
    if not needs_freeze(ctx, action, dry_run):
        return
    name = frozen_name(ctx.body)
    try:
        text = canonical(frozen_content(ctx.body, ctx.targets))
        found = _store(ctx, text)
    except (APIError, ValueError) as err:
        ctx.say("EvidenceNotFrozen", f"the pre-mitigation evidence could not be frozen in "
                f"ConfigMap {name} before {action.type}: {err}; the mitigation goes ahead",
                warning=True, timeline=False)  # fmt: skip
        return
    ctx.status["evidenceDigest"] = found
    ctx.status["frozenEvidenceRef"] = {"kind": "ConfigMap", "name": name, "key": FROZEN_KEY}
    ctx.status["evidenceFrozenAt"] = now_iso(ctx.now)
    refs = ", ".join(f"{t.get('kind', 'Deployment')}/{t['metadata']['name']}" for t in ctx.targets)
    ctx.say("EvidenceFrozen", f"{refs} as before mitigation frozen in ConfigMap {name} "
            f"({found}) before {action.type}", timeline=False)  # fmt: skip
