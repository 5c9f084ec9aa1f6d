"""Triage: the effective severity of an incident and the reason a person reads (pure).

`spec.severity` when a person set it; else the first matching rule of the policy's
`triage.rules`; else its `defaultSeverity`. Without a policy, the playbook's
categories decide: active harm is 1, degraded quality 2, the rest 3.
"""

from __future__ import annotations

from typing import Any

from .policy import describe

# The playbook's reading of each category when no policy says otherwise.
BUILTIN_SEVERITY = {
    "HarmfulOutput": 1,
    "DataLeak": 1,
    "BiasViolation": 1,
    "ModelFailure": 2,
    "AccuracyDegradation": 2,
    "OutOfScopeUse": 2,
    "CostAnomaly": 3,
    "Other": 3,
}


def _firing_labels(spec: dict[str, Any]) -> list[dict[str, str]]:
    return [
        a.get("labels") or {} for a in spec.get("alerts") or [] if a.get("status") != "resolved"
    ]


def rule_matches(when: dict[str, Any], spec: dict[str, Any]) -> list[str] | None:
    """The conditions of WHEN that hold for SPEC, in words; None when any does not hold."""
    scope = spec.get("scope") or {}
    said: list[str] = []
    if "categories" in when:
        if spec.get("category") not in when["categories"]:
            return None
        said.append(f"category {spec.get('category')}")
    if "sources" in when:
        source = (spec.get("source") or {}).get("type", "Manual")
        if source not in when["sources"]:
            return None
        said.append(f"source {source}")
    if "alertLabels" in when:
        wanted = when["alertLabels"].items()
        if not any(wanted <= labels.items() for labels in _firing_labels(spec)):
            return None
        said.append("alert " + ",".join(f"{k}={v}" for k, v in when["alertLabels"].items()))
    if "affectedUsersAbove" in when:
        users = scope.get("affectedUsers")
        if users is None or users <= when["affectedUsersAbove"]:
            return None
        said.append(f"{users} affected users > {when['affectedUsersAbove']}")
    if "segments" in when:
        common = sorted(set(when["segments"]) & set(scope.get("segments") or []))
        if not common:
            return None
        said.append(f"segments {', '.join(common)}")
    if "worsening" in when:
        if bool(scope.get("worsening")) != when["worsening"]:
            return None
        said.append("worsening" if when["worsening"] else "not worsening")
    if "regulatoryExposure" in when:
        exposed = bool(spec.get("regulatoryExposure") or spec.get("regulatory"))  # either says so
        if exposed != when["regulatoryExposure"]:
            return None
        said.append(
            "regulatory exposure" if when["regulatoryExposure"] else "no regulatory exposure"
        )
    return said


def triage(spec: dict[str, Any], policy: dict[str, Any] | None) -> tuple[int, str, str]:
    """(severity, condition reason, message) for an incident SPEC under POLICY (a body or None)."""
    if spec.get("severity"):
        return spec["severity"], "SetInSpec", f"severity {spec['severity']} set in spec.severity"
    if policy is None:
        category = spec.get("category", "Other")
        severity = BUILTIN_SEVERITY.get(category, 3)
        return (
            severity,
            "BuiltIn",
            (
                f"category {category} is severity {severity} by the playbook's defaults (no policy covers the target)"
            ),
        )
    triage_spec = policy.get("spec", {}).get("triage") or {}
    for i, rule in enumerate(triage_spec.get("rules") or []):
        said = rule_matches(rule.get("when") or {}, spec)
        if said is not None:
            because = " and ".join(said) or "an empty rule"
            return (
                rule["severity"],
                "PolicyRule",
                (f"{because} is severity {rule['severity']} by rule {i + 1} of {describe(policy)}"),
            )
    severity = triage_spec.get("defaultSeverity", 3)
    return (
        severity,
        "PolicyDefault",
        f"no rule matched: defaultSeverity {severity} of {describe(policy)}",
    )
