"""Where an incident's examples come from, and where reported ones are kept.

Three sources, one reader (`read`), for the operator and the CLI alike (both pass an
`access.Access`: the operator its own, the CLI `kube.cluster()` on the user's kubeconfig):

- reported with `aiincident report --example-input/--example-output/--examples`:
  ConfigMap `<incident>-examples` (key `examples.jsonl`), owned by the incident;
- alert annotations in `spec.alerts[]` (`example_input`, `example_output`, `examples`);
- the policy's `reproduction.examplesFrom: {configMap: NAME}` in the incident's namespace.

Never in the incident's spec: GitOps may own it, and the intake bounds it. A missing or
broken source is a problem line, never an exception: the caller shows the lines.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .. import GROUP
from ..access import Access
from ..errors import APIError
from ..resources import Ref
from . import examples as ex
from .store import owned_name, write_owned_configmap

SUFFIX = "examples"
KEY = "examples.jsonl"
# On an incident filed with examples: the ConfigMap that holds them (it is written just
# after the incident, so a reader that comes first can say "not yet" instead of nothing).
ANNOTATION = f"{GROUP}/examples"


def configmap_name(incident: dict[str, Any]) -> str:
    return owned_name(incident, SUFFIX)


def write_reported(incident: dict[str, Any], examples: list[ex.Example]) -> dict[str, str]:
    """Store EXAMPLES (bounded) in ConfigMap `<incident>-examples`; returns its ref."""
    return write_owned_configmap(incident, SUFFIX, {KEY: ex.to_jsonl(ex.fit(examples))})


def read(
    api: Access, incident: dict[str, Any], policy_spec: dict[str, Any] | None
) -> tuple[list[ex.Example], list[str]]:
    """The incident's examples from all sources, merged and bounded, and the problem lines.

    First the reported ones (what a person saw), then the alerts', then the policy's set;
    the same input twice is kept once. Examples without a category get the incident's.
    """
    reported, problems = _reported(api, incident)
    alerted, wrong = ex.from_alerts((incident.get("spec") or {}).get("alerts") or [])
    problems += wrong
    listed, wrong = _from_policy(api, incident, policy_spec)
    problems += wrong
    total = len(reported) + len(alerted) + len(listed)
    examples = ex.fit(ex.merged(reported, alerted, listed))
    if total > len(examples):
        # Merged duplicates are not a problem; only what the bounds left out is.
        distinct = len(ex.merged(reported, alerted, listed, limit=None))
        if distinct > len(examples):
            problems.append(
                f"{distinct - len(examples)} example(s) left out: at most {ex.MAX_EXAMPLES} "
                f"and {ex.MAX_STORED_BYTES // 1024} KiB of them are used"
            )
    category = str((incident.get("spec") or {}).get("category") or "")
    examples = [e if e.category else replace(e, category=category) for e in examples]
    return examples, problems


def _reported(api: Access, incident: dict[str, Any]) -> tuple[list[ex.Example], list[str]]:
    meta = incident.get("metadata") or {}
    name = configmap_name(incident)
    expected = bool((meta.get("annotations") or {}).get(ANNOTATION))
    body, problem = _configmap(api, meta.get("namespace", ""), name)
    if body is None:
        if expected:
            return [], [problem or f"ConfigMap {name} with the reported examples not found (yet)"]
        return [], [problem] if problem else []
    owners = body.get("metadata", {}).get("ownerReferences") or []
    if not any(o.get("kind") == "AIIncident" and o.get("uid") == meta.get("uid") for o in owners):
        return [], [f"ConfigMap {name} is not owned by this incident: its examples are not used"]
    return _jsonl(body, name, "report")


def _from_policy(
    api: Access, incident: dict[str, Any], policy_spec: dict[str, Any] | None
) -> tuple[list[ex.Example], list[str]]:
    source = ((policy_spec or {}).get("reproduction") or {}).get("examplesFrom") or {}
    name = source.get("configMap") if isinstance(source, dict) else None
    if not name:
        return [], []
    if not isinstance(name, str):
        return [], ["reproduction.examplesFrom.configMap must be a ConfigMap name"]
    namespace = (incident.get("metadata") or {}).get("namespace", "")
    body, problem = _configmap(api, namespace, name)
    if body is None:
        return [], [
            problem
            or f"ConfigMap {namespace}/{name} (reproduction.examplesFrom) not found: no examples from it"
        ]
    return _jsonl(body, name, f"configMap:{name}")


def _configmap(api: Access, namespace: str, name: str) -> tuple[dict[str, Any] | None, str]:
    try:
        return api.get(Ref("ConfigMap", namespace, name)), ""
    except APIError as err:  # Forbidden, unreachable: said, not raised
        return None, f"ConfigMap {namespace}/{name} could not be read: {err.message}"


def _jsonl(body: dict[str, Any], name: str, source: str) -> tuple[list[ex.Example], list[str]]:
    text = (body.get("data") or {}).get(KEY)
    if text is None:
        return [], [f"ConfigMap {name} has no key {KEY}: no examples from it"]
    examples, problems = ex.from_jsonl(text, source)
    return examples, [
        p.replace(f"{source} line", f"ConfigMap {name} {KEY} line", 1) for p in problems
    ]
