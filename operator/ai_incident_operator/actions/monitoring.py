"""IncreaseMonitoring: watch the incident more closely with extra alerts (the engine calls it).

Creates a Prometheus Operator PrometheusRule named `<incident>-monitoring` next
to the incident, with the policy's alerting rules, each labelled with the
incident and namespace so that the alerts find their way back. The rule is owned
by the incident, so Kubernetes deletes it with the incident even if nobody undoes
the action; undo deletes it at once. Without the PrometheusRule CRD the action
is skipped. Not a FieldAction: it creates an object rather than changing one.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..errors import APIError, Conflict
from ..resources import KINDS, Ref, owner_reference
from .base import Action, ActionContext, Outcome

KIND = "PrometheusRule"
MANAGED_BY = "app.kubernetes.io/managed-by"
OPERATOR = "ai-incident-operator"
INCIDENT_LABEL = "aiincident.io/incident"
# The PrometheusRule CRD's pattern for `for`; checked up front so a typo fails validation.
_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)


def label_value(name: str) -> str:
    """NAME as a label value: those stop at 63 characters, object names do not."""
    if len(name) <= 63:
        return name
    return f"{name[:52]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def rule_name(incident: dict[str, Any]) -> str:
    return f"{incident['metadata']['name']}-monitoring"


def prometheus_rule(incident: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The PrometheusRule for INCIDENT with SPEC's rules (pure)."""
    meta = incident["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    rules = []
    for rule in spec.get("rules") or []:
        rule = {k: v for k, v in rule.items() if v is not None}
        # The incident's labels win: they are how an alert is matched to its incident.
        rule["labels"] = {
            **(rule.get("labels") or {}),
            "aiincident_incident": name,
            "namespace": namespace,
        }
        rules.append(rule)
    body: dict[str, Any] = {
        "apiVersion": KINDS[KIND].api_version,
        "kind": KIND,
        "metadata": {
            "name": rule_name(incident),
            "namespace": namespace,
            "labels": {MANAGED_BY: OPERATOR, INCIDENT_LABEL: label_value(name)},
        },
        "spec": {"groups": [{"name": f"aiincident-{name}", "rules": rules}]},
    }
    if meta.get("uid"):
        body["metadata"]["ownerReferences"] = [owner_reference(incident)]
    return body


def _adopt(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Make CURRENT carry DESIRED's labels, owner and spec; True if it changed."""
    before = json.dumps(current, sort_keys=True)
    meta = current.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **desired["metadata"]["labels"]}
    if "ownerReferences" in desired["metadata"]:
        meta["ownerReferences"] = desired["metadata"]["ownerReferences"]
    current["spec"] = desired["spec"]
    return json.dumps(current, sort_keys=True) != before


def _ours(obj: dict[str, Any], incident: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(MANAGED_BY) == OPERATOR and labels.get(INCIDENT_LABEL) == label_value(
        incident
    )


class IncreaseMonitoring(Action):
    type = "IncreaseMonitoring"
    per_incident = True  # one rule per incident, named after it

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        rules = spec.get("rules")
        if not isinstance(rules, list) or not rules:
            return ["IncreaseMonitoring: rules must list at least one alerting rule"]
        problems = []
        for i, rule in enumerate(rules):
            where = f"IncreaseMonitoring: rules[{i}]"
            if not isinstance(rule, dict):
                problems.append(f"{where} must be an object with alert and expr")
                continue
            if not rule.get("alert"):
                problems.append(f"{where} has no alert name")
            if not rule.get("expr"):
                problems.append(f"{where} ({rule.get('alert', '?')}) has no expr")
            duration = rule.get("for")
            if duration is not None and not (
                isinstance(duration, str) and _DURATION.match(duration)
            ):
                problems.append(
                    f"{where} ({rule.get('alert', '?')}): for {duration!r} is not a duration "
                    "such as 30s, 5m or 1h30m"
                )
        return problems

    def apply(self, ctx: ActionContext) -> Outcome:
        desired = prometheus_rule(ctx.incident, ctx.spec)
        name = desired["metadata"]["name"]
        ref = Ref(KIND, ctx.namespace, name)
        objects = [str(ref)]
        if not ctx.api.kind_installed(KIND):
            return Outcome(
                "Skipped",
                f"{KIND} CRD ({KINDS[KIND].api_version}) is not installed; "
                "install the Prometheus Operator to get the extra alerts",
            )
        alerts = ", ".join(r["alert"] for r in desired["spec"]["groups"][0]["rules"])
        if ctx.dry_run:
            return Outcome("DryRun", f"would create {KIND} {name} with alerts {alerts}", objects)
        try:
            verb = self._write(ctx, ref, desired)
        except APIError as err:  # retried by the engine, with backoff
            return Outcome("Failed", f"{KIND} {name}: {err}", [])
        if verb == "foreign":
            return Outcome(
                "Failed",
                f"{KIND} {name} exists and is not managed by {OPERATOR} for this incident; "
                "rename or delete it",
            )
        if not verb:
            return Outcome("Applied", f"{KIND} {name} in place with alerts {alerts}", objects)
        message = f"{KIND} {name} {verb} with alerts {alerts}"
        ctx.api.event(ctx.incident, "MonitoringIncreased", message)
        return Outcome("Applied", message, objects, changed=True)

    def _write(self, ctx: ActionContext, ref: Ref, desired: dict[str, Any]) -> str:
        """Create or bring the rule up to date: "created", "updated", "" (no write), "foreign"."""
        incident = ctx.incident["metadata"]["name"]
        if ctx.api.get(ref) is None:
            try:
                ctx.api.create(KIND, ctx.namespace, desired)
                return "created"
            except Conflict:  # created meanwhile, so update it below
                pass
        foreign: list[bool] = []

        def mutate(obj: dict[str, Any]) -> bool:
            # Never take over a rule someone else wrote under this name.
            if not _ours(obj, incident):
                foreign.append(True)
                return False
            return _adopt(obj, desired)

        obj, changed = ctx.api.update(ref, mutate)
        if obj is None:  # deleted meanwhile; a second race raises Conflict for a later retry
            ctx.api.create(KIND, ctx.namespace, desired)
            return "created"
        return "foreign" if foreign else "updated" if changed else ""

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        incident = ctx.incident["metadata"]["name"]
        names = [o.partition("/")[2] for o in objects if o.startswith(f"{KIND}/")]
        names = names or [rule_name(ctx.incident)]
        if ctx.dry_run:
            return Outcome("DryRun", f"would delete {KIND} {', '.join(names)}", objects)
        deleted, gone, foreign = [], [], []
        for name in names:
            ref = Ref(KIND, ctx.namespace, name)
            obj = ctx.api.get(ref)
            # get answers None when the CRD itself is gone, too: nothing to undo then.
            if obj is None:
                gone.append(name)
            elif not _ours(obj, incident):
                foreign.append(name)
            elif ctx.api.delete(ref):
                deleted.append(name)
            else:
                gone.append(name)
        if deleted:
            ctx.api.event(
                ctx.incident, "MonitoringReverted", f"{KIND} {', '.join(deleted)} deleted"
            )
        parts = [f"deleted {KIND} {', '.join(deleted)}"] if deleted else []
        parts += [f"{KIND} {', '.join(gone)} already gone"] if gone else []
        parts += (
            [f"{KIND} {', '.join(foreign)} left alone (not this incident's)"] if foreign else []
        )
        return Outcome("Reverted", "; ".join(parts), objects, bool(deleted))
