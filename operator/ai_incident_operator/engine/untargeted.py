"""An incident whose target cannot be found (a mistyped `--target`, an alert without a
namespace label) still pages, and can still be resolved, reviewed and closed.

Nothing is changed for it: there is no workload to act on. The namespace's winning
policy (as for a target, but ignoring `targetSelector`) triages it and its response's
`Notify` actions are sent, so that a severity-1 report on a missing target reaches
people; a resolution request resolves it (whatever its policy changed elsewhere
before the target went is undone first), which writes its review.
"""

from __future__ import annotations

from .. import actions
from .. import policy as mitigation_policy
from ..triage import triage
from .context import IncidentContext, policy_by_ref
from .decide import Step, resolution_reason
from .resolve import resolve
from .steps import apply
from .targets import missing_target_message


def without_target(ctx: IncidentContext) -> None:
    status, spec = ctx.status, ctx.spec
    ctx.condition(
        "Triaged",
        False,
        "TargetNotFound",
        missing_target_message(ctx.namespace, spec, ctx.body, ctx.api),
    )
    ctx.policy = policy_by_ref(ctx.world, status.get("policyRef")) or mitigation_policy.select_for(
        ctx.world.policies, ctx.namespace, ctx.world.namespace_labels(ctx.namespace)
    )
    why = resolution_reason(spec, ctx.policy_spec)
    if why:
        resolve(ctx, why, [], dry_run=False)
        return
    if ctx.policy is None:
        return
    severity, _, message = triage(spec, ctx.policy)
    status["severity"], status["severityReason"] = severity, message
    status["policyRef"] = mitigation_policy.ref(ctx.policy)
    response = mitigation_policy.response_for(ctx.policy_spec, severity) or {}
    notify = actions.get("Notify")
    steps = [
        Step(notify, spec_, {}, f"AIIncident/{ctx.name}")
        for spec_ in response.get("actions") or []
        if spec_.get("type") == "Notify"
    ]
    dry_run = bool((ctx.policy_spec.get("safety") or {}).get("dryRun"))
    if steps:
        apply(ctx, steps, dry_run)
