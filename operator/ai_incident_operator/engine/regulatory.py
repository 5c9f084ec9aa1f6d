"""The regulatory clock: with regulatory exposure, the report deadline, legal told once, a warning.

`spec.regulatoryExposure: true` starts the clock at detection (the policy's
`regulatory.reportWithin`, 15 days by default); `regulatory.channels` are notified
once; an Event warns when the deadline is near (two days, or a fifth of the time).

The deadline is the governing policy's. kopf's watches of incidents and of policies are
not ordered with each other, so a pass can see a new incident before the index has its
policy's Ready status: then the clock waits (the policy's Ready event plans the incident
again) instead of starting on the default. A deadline set without a policy (none was
there yet) follows the policy once one governs the incident; it never falls back to the
default when the policy goes. The wait is bounded (POLICY_WAIT).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .. import actions, review
from .. import policy as mitigation_policy
from ..conditions import now_iso
from ..times import parse_time
from .context import Body, IncidentContext, log
from .decide import Step
from .steps import apply

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


def deadline(stored: str | None, detected: datetime, policy: Body | None) -> str:
    """The report deadline to keep (pure): the governing policy's, else the one set."""
    due = now_iso(review.regulatory_due_by(detected, (policy or {}).get("spec")))
    return due if policy is not None or not stored else stored


def regulatory_clock(ctx: IncidentContext, dry_run: bool) -> None:
    if not ctx.spec.get("regulatoryExposure"):
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
    kept = deadline(stored, detected, ctx.policy)
    if not stored:
        ctx.say("RegulatoryClockStarted", f"regulatory exposure: the report is due by {kept}",
                warning=True)  # fmt: skip
    elif kept != stored and ctx.policy is not None:
        ctx.say("RegulatoryDeadlineChanged", f"the regulatory report is due by {kept} (was "
                f"{stored}), as {mitigation_policy.describe(ctx.policy)} says", warning=True)  # fmt: skip
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
