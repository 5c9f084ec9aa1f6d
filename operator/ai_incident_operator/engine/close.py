"""Close: the review document, and Closed once people completed the review.

The review is rendered from the status being written (so it says what this pass
did) into ConfigMap `<incident>-review`; an overdue review is said once, and the
incident asks to be looked at again when the review falls due.
"""

from __future__ import annotations

from .. import review
from ..errors import APIError
from ..times import parse_time
from .context import IncidentContext, log


def write_review(ctx: IncidentContext) -> None:
    """The review document as of now, in ConfigMap <incident>-review (status.reviewRef)."""
    if ctx.world.write_review is not None:
        ctx.world.write_review(ctx)
        return
    from ..investigation import example_store
    from ..investigation.store import NotOurs  # the real cluster's writer

    try:
        examples, _ = example_store.read(ctx.api, ctx.body, ctx.policy_spec)  # ConfigMap reads
        checks = (ctx.policy_spec.get("reproduction") or {}).get("checks") or []
        document = review.render({**ctx.body, "status": ctx.status}, ctx.now, examples, checks)
        ctx.status["reviewRef"] = review.write_review(ctx.body, document)
    except (APIError, NotOurs) as err:
        log.warning("review of %s not written: %s", ctx.holder, err)


def close_if_reviewed(ctx: IncidentContext) -> None:
    """Closed once people completed the review; an overdue review is said once."""
    if (ctx.spec.get("review") or {}).get("completed"):
        ctx.condition("Reviewed", True, "ReviewCompleted", "spec.review.completed is true")
        if ctx.enter("Closed", "post-incident review completed"):
            write_review(ctx)  # with the people's summary and action items
        return
    due = parse_time(ctx.status.get("reviewDueBy"))
    reviewed = next(
        (c for c in ctx.status.get("conditions") or [] if c.get("type") == "Reviewed"), {}
    )
    if due and ctx.now > due and reviewed.get("reason") != "ReviewOverdue":
        words = (
            f"the post-incident review was due by {ctx.status['reviewDueBy']}; "
            "set spec.review.completed when done"
        )
        ctx.condition("Reviewed", False, "ReviewOverdue", words)
        ctx.say("ReviewOverdue", words, warning=True)
    elif due and ctx.now <= due:
        ctx.requeue_after((due - ctx.now).total_seconds() + 1)
