"""Calls to outside services run after the pass's status write, outside the incident's lock.

A page, a status page or a tracker can take seconds to answer, or not answer at all
(Notify tries each channel 4 times with a 5 s timeout). None of that may hold the
mitigation pass, the status write that records the changes to the objects, or the
incident's lock. So a pass never calls out: where it would, it asks `IncidentContext.
outside(what, run, record)`, and writes what the call claims first (a Notify entry's
`sending`, an approval page's channels). Once that write has succeeded, `reconcile`
marks the calls in flight, releases the lock, runs each one, and merges the results
into a fresh read of the status with each call's RECORD, under the lock again
(`engine.amend`), which writes them.

A call already in flight in this process is not asked for again until its result is
written (`busy`): a concurrent pass skips it instead of sending the same page twice,
and a pass does not take its claim for one a stopped process left behind.

`run` must not raise: what it returns is its outcome (a failed page is a result). A
result that cannot be written (the apiserver went away) is lost; what was claimed is
still in the status, and the next pass sees it (Notify's `sending`: engine.steps).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ai_incident_operator.engine")
CallKey = tuple[str, str]  # (incident uid, what is called: unique within the incident)
_in_flight: set[CallKey] = set()
_missed: set[CallKey] = set()  # in flight when a pass asked for them again
_in_flight_lock = threading.Lock()


@dataclass
class Call:
    key: CallKey
    run: Callable[[], Any]  # the call itself, with no lock held; never raises
    record: Callable[[Any, Any], None]  # (a fresh IncidentContext, what RUN returned)


def busy(key: CallKey) -> bool:
    """Whether KEY is being called (or its result written) by this process right now; if so,
    the pass that asks is owed another once it is done (`run`): what that pass wanted may
    differ from what is being sent (a status page's next step)."""
    with _in_flight_lock:
        if key in _in_flight:
            _missed.add(key)
            return True
        return False


def claim(calls: list[Call]) -> list[Call]:
    """Mark CALLS in flight; called under the incident's lock, once the status write that
    claims them succeeded. Returns the ones this call marked (a key already in flight,
    asked for twice in one pass, is left to its first caller)."""
    claimed = []
    with _in_flight_lock:
        for call in calls:
            if call.key not in _in_flight:
                _in_flight.add(call.key)
                claimed.append(call)
    return claimed


def run(calls: list[Call], amend: Callable[[Callable[[Any], None]], Any]) -> Any:
    """Run CALLS (claimed) one after another, then record their results with AMEND (engine.
    amend for their incident), which returns the Result the records asked for (a retry,
    a recheck) or None."""
    if not calls:
        return None
    try:
        results = []
        for call in calls:
            try:
                results.append((call, call.run()))
            except Exception:  # a bug in a call must not lose the others' results
                log.exception("outside call %s failed", call.key[1])

        def record(ctx: Any) -> None:
            for call, result in results:
                call.record(ctx, result)
            with _in_flight_lock:
                owed = [call.key for call in calls if call.key in _missed]
                _missed.difference_update(owed)
            if owed:
                ctx.requeue_after(0.0)  # the passes that found them busy, again

        try:
            return amend(record)
        except Exception as err:  # the outcome is lost, the claim is not: the next pass sees it
            log.warning("outcome of %s not recorded: %s", ", ".join(c.key[1] for c in calls), err)
            return None
    finally:
        with _in_flight_lock:
            for call in calls:
                _in_flight.discard(call.key)
                _missed.discard(call.key)
