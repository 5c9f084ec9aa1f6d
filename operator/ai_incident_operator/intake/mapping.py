"""Alertmanager webhook payloads to incident groups (pure: no I/O; `intake.store` writes).

`parse` checks a decoded JSON body against Alertmanager's webhook shape (version 4;
other versions when their shape fits). A bad alert is left out and reported
(`Payload.invalid`), the others are taken; `PayloadError` (naming every bad field)
only when the payload itself is wrong or none of its alerts is good. `group` maps
each alert to one open incident per (namespace, target, category) as API.md says:
the labels `namespace` plus `deployment`, `workload` or `model` (the Deployments
labelled `aiincident.io/model=<model>`), the category from `ai_incident_category`,
else Other. Alerts from the rules of an IncreaseMonitoring action carry
`aiincident_incident` and go back to that incident while it is open, if the intake
opened it. An alert that cannot be mapped, or that names a workload in a protected
namespace (the operator's own, kube-system and the like), goes to the operator's
namespace with the reason, as an incident with no target: it can change nothing.

Incident names are deterministic (a readable prefix plus a 64-bit hash of the key),
so resends, repeats and two operator replicas fold into one incident; `nth_name`
gives the next name once an incident of the key is resolved, or when a name is
taken by an incident that does not hold the key (`mismatch`: made by someone else,
or a hash collision). `merge_alerts` folds alerts into `spec.alerts` keyed by
fingerprint and changes nothing on a redelivery. Called by `intake.server` and
`intake.store`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import API_VERSION
from ..policy import BUILTIN_PROTECTED_NAMESPACES

# The CRD's enum for spec.category, in its order.
CATEGORIES = (
    "HarmfulOutput",
    "AccuracyDegradation",
    "DataLeak",
    "BiasViolation",
    "OutOfScopeUse",
    "ModelFailure",
    "CostAnomaly",
    "Other",
)
CATEGORY_LABEL = "ai_incident_category"
# Alert labels naming the workload, first found wins; `workload` is a Deployment and
# `model` selects Deployments by the aiincident.io/model label.
KIND_LABELS = {
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "rollout": "Rollout",
    "leaderworkerset": "LeaderWorkerSet",
    "inferenceservice": "InferenceService",
    "llminferenceservice": "LLMInferenceService",
}
TARGET_LABELS = (*KIND_LABELS, "workload", "model")
_TARGET_WORDS = ", ".join(TARGET_LABELS)
INCIDENT_LABEL = "aiincident_incident"  # put on alerts by IncreaseMonitoring's rules
MODEL_LABEL = "aiincident.io/model"
SOURCE_LABEL = "aiincident.io/source"
KEY_ANNOTATION = "aiincident.io/intake-key"
UNMAPPED_ANNOTATION = "aiincident.io/unmapped"
# On an incident filed under another name than its key's first free one: which names were
# taken by incidents that do not hold the key, and why.
DISPLACED_ANNOTATION = "aiincident.io/intake-displaced"
# On the one record unmapped alerts fold into once max_unmapped unmapped incidents are open:
# how many alerts it took in (those it did not hold yet), as a decimal number.
MORE_ANNOTATION = "aiincident.io/unmapped-more"
OVERFLOW_TARGET = "unmapped/+more/"  # the overflow record's key target (no label makes '+')
MAX_BODY = 1 << 20  # bytes; larger bodies get 413
# An incident's spec must stay far below the 256 KiB that all of an object's annotations
# may take: kopf keeps a copy of the spec in one, as ASCII-escaped JSON. So: at most
# MAX_ALERTS alerts and ALERTS_BUDGET bytes of them in that form (the longest-resolved make
# room, then old annotations), long annotation values cut, oversized labels refused.
MAX_ALERTS = 100
ALERTS_BUDGET = 64 * 1024
ANNOTATION_LIMIT = 1024  # characters of one annotation value
URL_LIMIT = 4096  # characters of generatorURL
LABELS_LIMIT = 4 * 1024  # bytes of one alert's labels, as JSON
MAX_PROBLEMS = 20  # per answer
TITLE_LIMIT = 512  # the CRD's maxLength for spec.title
HASH_LENGTH = 16  # hex digits: 64 bits, no collision by trying
# 28 + '-' + 16 + '-NNNN' (MAX_CHAIN) leaves room for '-monitoring' in a 63-char name.
SLUG_LENGTH = 28

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


# --- Parsing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a payload: where (a JSON path) and what."""

    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


@dataclass(frozen=True)
class InvalidAlert:
    """An alert of a payload that is left out: its index and what is wrong with it."""

    index: int
    problems: tuple[Problem, ...]

    @property
    def field(self) -> str:
        """The alert's field found wrong first (`labels`, `status`, ...; `alert` for the
        whole): a bounded set, for the metric."""
        where = self.problems[0].field if self.problems else ""
        rest = where.partition("]")[2].lstrip(".")
        return rest.split(".", 1)[0] or "alert"


class PayloadError(ValueError):
    """The body is JSON but not an Alertmanager webhook payload, or none of its alerts is
    good (HTTP 422)."""

    def __init__(self, problems: list[Problem], invalid: list[InvalidAlert] | None = None) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems
        self.invalid = invalid or []


@dataclass
class Alert:
    """One alert of a payload, checked."""

    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    starts_at: str | None = None
    ends_at: str | None = None
    generator_url: str | None = None
    # Its place in the payload's alerts, for the answer's `field`; not part of the alert.
    index: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.labels)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def item(self) -> dict[str, Any]:
        """The `spec.alerts[]` entry (API.md's fields; absent ones left out)."""
        item: dict[str, Any] = {"fingerprint": self.fingerprint}
        if self.alertname:
            item["alertname"] = self.alertname
        item["status"] = self.status
        if self.starts_at:
            item["startsAt"] = self.starts_at
        if self.ends_at:
            item["endsAt"] = self.ends_at
        # Empty values are left out: to Prometheus an empty label is an absent one, and
        # the apiserver (1.20 built with a newer Go) refuses empty strings in custom resources.
        item["labels"] = {k: v for k, v in self.labels.items() if v}
        item["annotations"] = {
            k: _cut(v, ANNOTATION_LIMIT) for k, v in self.annotations.items() if v
        }
        if self.generator_url:
            item["generatorURL"] = _cut(self.generator_url, URL_LIMIT)
        return item


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Payload:
    """A checked webhook payload: its alerts and what says who sent them."""

    alerts: list[Alert]
    version: str = ""
    receiver: str = ""
    external_url: str = ""
    group_key: str = ""
    truncated_alerts: int = 0
    invalid: list[InvalidAlert] = field(default_factory=list)  # left out, with the reasons

    def problems(self) -> list[Problem]:
        """What is wrong with the alerts left out, at most MAX_PROBLEMS of it."""
        return [p for bad in self.invalid for p in bad.problems][:MAX_PROBLEMS]


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (FNV-1a 64 over sorted names and values)."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8", "surrogatepass") + b"\xff":
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _unicode_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\ud800 escape
        return False
    return True


class _Checker:
    """Collects problems while reading a payload; stops collecting after MAX_PROBLEMS."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(where, problem))

    def string(
        self, obj: dict, key: str, where: str, *, required: bool = False, empty_ok: bool = True
    ) -> str | None:
        value = obj.get(key)
        if value is None:
            if required:
                self.add(f"{where}.{key}", "is required")
            return None
        if not isinstance(value, str):
            self.add(f"{where}.{key}", f"must be a string, got {_kind(value)}")
            return None
        if not _unicode_ok(value):
            self.add(f"{where}.{key}", "is not valid Unicode (a lone surrogate escape)")
            return None
        if not value and not empty_ok:
            self.add(f"{where}.{key}", "must not be empty")
            return None
        return value

    def string_map(self, obj: dict, key: str, where: str, *, required: bool) -> dict[str, str]:
        value = obj.get(key)
        if value is None:
            if required:
                self.add(f"{where}.{key}", "is required: an object of string values")
            return {}
        if not isinstance(value, dict):
            self.add(f"{where}.{key}", f"must be an object of string values, got {_kind(value)}")
            return {}
        result: dict[str, str] = {}
        for name, item in value.items():
            if not _unicode_ok(name):
                self.add(f"{where}.{key}", "has a name that is not valid Unicode")
            elif not isinstance(item, str):
                self.add(f"{where}.{key}.{name}", f"must be a string, got {_kind(item)}")
            elif not _unicode_ok(item):
                self.add(f"{where}.{key}.{name}", "is not valid Unicode (a lone surrogate escape)")
            else:
                result[name] = item
        return result

    def timestamp(self, obj: dict, key: str, where: str) -> str | None:
        value = self.string(obj, key, where)
        if value is not None and instant(value) is None:
            self.add(
                f"{where}.{key}",
                f"must be an RFC 3339 time such as 2024-05-01T10:00:00Z, got {value[:64]!r}",
            )
            return None
        return value


def parse(data: Any) -> Payload:
    """A checked Payload from decoded JSON, its bad alerts left out and listed in `invalid`;
    PayloadError naming each bad field when the payload itself is wrong or no alert is good
    (one bad alert must not cost the others: Alertmanager does not send a 4xx again)."""
    check = _Checker()
    if not isinstance(data, dict):
        raise PayloadError(
            [
                Problem(
                    "body",
                    f"must be a JSON object (Alertmanager's webhook payload), got {_kind(data)}",
                )
            ]
        )
    version = data.get("version")
    if version is not None and not isinstance(version, str):
        check.add("version", f'must be a string such as "4", got {_kind(version)}')
    receiver = check.string(data, "receiver", "body") or ""
    external_url = check.string(data, "externalURL", "body") or ""
    group_key = check.string(data, "groupKey", "body") or ""
    truncated = data.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        check.add("truncatedAlerts", f"must be a whole number >= 0, got {_kind(truncated)}")
        truncated = 0
    raw_alerts = data.get("alerts")
    alerts: list[Alert] = []
    invalid: list[InvalidAlert] = []
    if raw_alerts is None:
        check.add("alerts", "is required: the list of alerts")
    elif not isinstance(raw_alerts, list):
        check.add("alerts", f"must be a list of alerts, got {_kind(raw_alerts)}")
    else:
        for i, raw in enumerate(raw_alerts):
            own = _Checker()  # each alert's problems apart: a bad one is left out alone
            alert = _alert(own, raw, f"alerts[{i}]")
            if alert is not None:
                alert.index = i
                alerts.append(alert)
            else:
                invalid.append(InvalidAlert(i, tuple(own.problems)))
    if check.problems or (invalid and not alerts):
        every = [*check.problems, *(p for bad in invalid for p in bad.problems)]
        raise PayloadError(every[:MAX_PROBLEMS], invalid)
    return Payload(
        alerts=alerts,
        version=version or "",
        receiver=receiver,
        external_url=external_url,
        group_key=group_key,
        truncated_alerts=truncated,
        invalid=invalid,
    )


def _alert(check: _Checker, raw: Any, where: str) -> Alert | None:
    if not isinstance(raw, dict):
        check.add(where, f"must be an object (an alert), got {_kind(raw)}")
        return None
    before = len(check.problems)
    status = check.string(raw, "status", where, required=True)
    if status is not None and status not in ("firing", "resolved"):
        check.add(f"{where}.status", f'must be "firing" or "resolved", got {status[:64]!r}')
    labels = check.string_map(raw, "labels", where, required=True)
    if (size := len(json.dumps(labels))) > LABELS_LIMIT:
        check.add(f"{where}.labels", f"must take at most {LABELS_LIMIT} bytes as JSON, got {size}")
    annotations = check.string_map(raw, "annotations", where, required=False)
    print_ = check.string(raw, "fingerprint", where, empty_ok=False)
    if print_ is not None and len(print_) > 256:
        check.add(f"{where}.fingerprint", "must be at most 256 characters")
    starts_at = check.timestamp(raw, "startsAt", where)
    ends_at = check.timestamp(raw, "endsAt", where)
    generator_url = check.string(raw, "generatorURL", where)
    if len(check.problems) > before or status is None:
        return None
    return Alert(
        status=status,
        labels=labels,
        annotations=annotations,
        fingerprint=print_ or "",
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
    )


def instant(text: str | None) -> tuple[int, int] | None:
    """An RFC 3339 time as (UTC seconds since year 1, nanoseconds), for ordering; None if invalid."""
    if not text:
        return None
    match = _RFC3339.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        date = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    zone = match.group(8)
    offset = 0
    if zone not in ("Z", "z"):
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        offset = (hours * 3600 + minutes * 60) * (1 if zone[0] == "+" else -1)
    seconds = date.toordinal() * 86400 + hour * 3600 + minute * 60 + second - offset
    return seconds, int((match.group(7) or "0").ljust(9, "0"))


# --- Mapping alerts to incidents -----------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """The incident an alert belongs to: one open incident per key.

    `namespace` is where the incident lives; `target` what it is about:
    `deployment/<name>`, `model/<model>`, or `unmapped/<namespace label>/<target
    label>=<value>` for alerts filed in the operator's namespace.
    """

    namespace: str
    target: str
    category: str

    @property
    def digest(self) -> str:
        text = f"{self.namespace}\x00{self.target}\x00{self.category}"
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]

    @property
    def name(self) -> str:
        """The incident's deterministic name: readable prefix, then a hash of the key."""
        kind, _, rest = self.target.partition("/")
        if kind == "unmapped":
            ns, _, label = rest.partition("/")
            rest = "unmapped-" + (label.partition("=")[2] or ns)
        return f"{slug(f'{rest}-{self.category.lower()}')}-{self.digest}"

    @property
    def annotation(self) -> str:
        """The key as the intake writes it on its incidents (KEY_ANNOTATION)."""
        return f"{self.namespace}/{self.target}/{self.category}"

    def spec_target(self) -> dict[str, Any]:
        """The `spec.target` of an incident of this key ({} when unmapped: no target)."""
        kind, _, value = self.target.partition("/")
        if kind in KIND_LABELS:
            return {"kind": KIND_LABELS[kind], "name": value}
        if kind == "model":
            return {"kind": "Deployment", "selector": {"matchLabels": {MODEL_LABEL: value}}}
        return {}


def parse_key(text: str) -> Key | None:
    """The Key a KEY_ANNOTATION value names, or None if it names none."""
    namespace, _, rest = text.partition("/")
    target, _, category = rest.rpartition("/")
    if not _NAMESPACE.fullmatch(namespace) or category not in CATEGORIES:
        return None
    if target.partition("/")[0] not in ("deployment", "model", "unmapped"):
        return None
    return Key(namespace, target, category)


def mismatch(incident: dict[str, Any], key: Key) -> str | None:
    """Why INCIDENT is not the intake's incident of KEY (None when it is): alerts fold only
    into incidents whose KEY_ANNOTATION is the key in full and whose category and target are
    the key's. The name alone proves nothing: anyone may create an incident under the name
    the intake would use, and two keys may share a name's readable prefix and hash."""
    meta = incident.get("metadata") or {}
    name = meta.get("name", "?")
    held = (meta.get("annotations") or {}).get(KEY_ANNOTATION)
    if held is None:
        return f"AIIncident {name} was not opened by the intake (no {KEY_ANNOTATION} annotation)"
    if held != key.annotation:
        return (
            f"AIIncident {name} holds another alert group ({KEY_ANNOTATION} {held[:200]!r}, "
            f"not {key.annotation[:200]!r})"
        )
    spec = incident.get("spec") or {}
    if spec.get("category") != key.category:
        return (
            f"AIIncident {name} has category {str(spec.get('category'))[:40]!r}, not {key.category}"
        )
    target = spec.get("target") or {}
    if (
        not isinstance(target, dict)
        or ({"kind": "Deployment", **target} if target else {}) != key.spec_target()
    ):
        return f"AIIncident {name} has another target ({json.dumps(target, sort_keys=True)[:200]})"
    return None


def opened_by_intake(incident: dict[str, Any]) -> str | None:
    """Why alerts that name INCIDENT (the label aiincident_incident) may not go into it
    (None when they may): only incidents the intake opened take them, never one created
    by hand or by other means; an alert must not resolve or change those."""
    meta = incident.get("metadata") or {}
    held = (meta.get("annotations") or {}).get(KEY_ANNOTATION)
    key = parse_key(held) if held is not None else None
    if key is None or key.namespace != meta.get("namespace"):
        return (
            f"AIIncident {meta.get('namespace')}/{meta.get('name')}, named by the label "
            f"{INCIDENT_LABEL}, was not opened by the intake: alerts never change it"
        )
    why = mismatch(incident, key)
    if why:
        return f"{why}: alerts never change it"
    return None


def slug(text: str, limit: int = SLUG_LENGTH) -> str:
    """TEXT as the start of an object name: lower case, [a-z0-9-], at most LIMIT characters."""
    text = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return text[:limit].rstrip("-") or "alert"


def nth_name(name: str, n: int) -> str:
    """The name of the Nth incident of a key: NAME, then NAME-2, NAME-3, ..."""
    return name if n == 1 else f"{name}-{n}"


def category_of(value: str | None) -> str:
    """The category a label value names (case and separators forgiven), else Other."""
    if not value:
        return "Other"
    if value in CATEGORIES:
        return value
    wanted = re.sub(r"[-_ ]", "", value).lower()
    return next((c for c in CATEGORIES if c.lower() == wanted), "Other")


@dataclass
class Group:
    """Alerts of one payload that belong to the same incident."""

    key: Key
    target: dict[str, Any]  # spec.target of a new incident ({} when unmapped)
    alerts: list[Alert] = field(default_factory=list)
    unmapped: str | None = None  # why the alerts could not be mapped, in words
    protected: bool = False  # unmapped because their namespace is protected
    # The incident the alerts name, (namespace, name): IncreaseMonitoring's rules label
    # their alerts so; they go there while it is open, else by `key`.
    incident: tuple[str, str] | None = None
    overflow: bool = False  # the record of unmapped alerts beyond max_unmapped

    @property
    def name(self) -> str:
        return self.key.name

    def items(self) -> list[dict[str, Any]]:
        """The alerts as `spec.alerts[]` entries, folded by fingerprint."""
        return merge_alerts([], [a.item() for a in self.alerts])


def _label_problem(label: str, value: str) -> str | None:
    if label == "namespace":
        ok, what = _NAMESPACE.fullmatch(value), "a namespace name"
    elif label == "model":
        ok, what = _LABEL_VALUE.fullmatch(value) and len(value) <= 63, "a label value"
    else:
        ok, what = len(value) <= 253 and _DNS_SUBDOMAIN.fullmatch(value), "a Deployment name"
    return None if ok else f"label {label}={value[:80]!r} is not {what}"


def is_namespace(text: str) -> bool:
    """Whether TEXT is a namespace name (RFC 1123 label)."""
    return bool(_NAMESPACE.fullmatch(text))


def protected_reason(
    namespace: str, operator_namespace: str, protected: Collection[str]
) -> str | None:
    """Why alerts may not open incidents against workloads of NAMESPACE, or None."""
    if namespace == operator_namespace:
        return (
            f"namespace {namespace} is the operator's own namespace: alerts never open "
            "incidents against its workloads (the operator must not act on itself)"
        )
    if namespace in BUILTIN_PROTECTED_NAMESPACES or namespace in protected:
        return (
            f"namespace {namespace} is protected (kube-system, kube-public, kube-node-lease, "
            "AIINCIDENT_PROTECTED_NAMESPACES): alerts never open incidents against its workloads"
        )
    return None


def locate(
    alert: Alert, operator_namespace: str, protected: Collection[str] = ()
) -> tuple[Key, dict[str, Any], str | None]:
    """(key, spec.target, why unmapped or None) for ALERT, from its labels alone. Alerts for
    workloads of a protected namespace (see `protected_reason`) are unmapped too."""
    labels = alert.labels
    category = category_of(labels.get(CATEGORY_LABEL))
    namespace = labels.get("namespace", "")
    target_label = next((t for t in TARGET_LABELS if labels.get(t)), None)
    target_value = labels[target_label] if target_label else ""
    reasons = []
    if not namespace and not target_label:
        reasons.append(f"it has no label namespace and none of {_TARGET_WORDS}")
    elif not namespace:
        reasons.append(f"it has {target_label}={target_value[:80]!r} but no label namespace")
    elif not target_label:
        reasons.append(
            f"it has namespace={namespace[:80]!r} but none of the labels {_TARGET_WORDS}"
        )
    for label, value in (("namespace", namespace), (target_label, target_value)):
        if label and value and (problem := _label_problem(label, value)):
            reasons.append(problem)
    if not reasons and (why := protected_reason(namespace, operator_namespace, protected)):
        reasons.append(why)
    if reasons:
        where = f"{namespace}/{target_label}={target_value}" if target_label else f"{namespace}/"
        return Key(operator_namespace, f"unmapped/{where}", category), {}, "; ".join(reasons)
    kind = target_label if target_label in (*KIND_LABELS, "model") else "deployment"
    key = Key(namespace, f"{kind}/{target_value}", category)
    return key, key.spec_target(), None


def refile(group: Group, operator_namespace: str, reason: str) -> Group:
    """GROUP filed in the operator's namespace instead: its own namespace does not exist."""
    kind, _, value = group.key.target.partition("/")
    key = Key(
        operator_namespace, f"unmapped/{group.key.namespace}/{kind}={value}", group.key.category
    )
    return Group(key, {}, list(group.alerts), reason)


def overflow(group: Group, operator_namespace: str, limit: int) -> Group:
    """GROUP's alerts (unmapped) for the one record that takes unmapped alerts once LIMIT
    unmapped incidents are open: it counts them (MORE_ANNOTATION) instead of one each."""
    key = Key(operator_namespace, OVERFLOW_TARGET, "Other")
    why = (
        f"{limit} unmapped incidents are open in namespace {operator_namespace} (the "
        f"webhook's max unmapped incidents); further unmapped alerts are counted here"
    )
    first = f"{group.unmapped}; " if group.unmapped else ""
    return Group(key, {}, list(group.alerts), f"{first}{why}", overflow=True)


def group(
    payload: Payload, operator_namespace: str, protected: Collection[str] = ()
) -> list[Group]:
    """The payload's alerts grouped by the incident they belong to, in order of first sight.
    PROTECTED: namespaces besides the built-in ones and the operator's own where alerts never
    open incidents against workloads (AIINCIDENT_PROTECTED_NAMESPACES)."""
    groups: dict[tuple[tuple[str, str] | None, Key], Group] = {}
    for alert in payload.alerts:
        key, target, reason = locate(alert, operator_namespace, protected)
        named = alert.labels.get(INCIDENT_LABEL, "")
        namespace = alert.labels.get("namespace", "")
        refused = protected_reason(namespace, operator_namespace, protected)
        incident = None
        if (
            _NAMESPACE.fullmatch(namespace)
            and len(named) <= 253
            and _DNS_SUBDOMAIN.fullmatch(named)
            and refused is None  # nor by naming an incident there
        ):
            incident = (namespace, named)
        slot = (incident, key)
        if slot not in groups:
            groups[slot] = Group(
                key,
                target,
                unmapped=reason,
                protected=reason is not None and reason == refused,
                incident=incident,
            )
        groups[slot].alerts.append(alert)
    return list(groups.values())


# --- Incident bodies and spec.alerts --------------------------------------------------------


def _title(group: Group) -> str:
    names = list(dict.fromkeys(a.alertname or "alert" for a in group.alerts))
    first = group.alerts[0]
    summary = first.annotations.get("summary") or first.annotations.get("title") or ""
    title = names[0] + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")
    if summary:
        title += f": {summary}"
    if group.overflow:
        return "More unmapped alerts than the intake keeps as incidents (see spec.alerts)"
    if group.unmapped:
        title = f"Unmapped alert {title}"
    return title[:TITLE_LIMIT]


def _description(group: Group) -> str:
    first = group.alerts[0]
    text = first.annotations.get("description") or first.annotations.get("summary") or ""
    text = _cut(text, ANNOTATION_LIMIT)  # the spec stays small: see ALERTS_BUDGET
    notes = []
    if group.overflow:
        notes.append(
            f"Too many unmapped alerts: {group.unmapped.rpartition('; ')[2]}. The annotation "
            f"{MORE_ANNOTATION} counts the alerts taken in; spec.alerts keeps the latest. Fix "
            "the alerting rules' labels, then resolve the unmapped incidents."
        )
    elif group.protected:
        notes.append(
            f"Alertmanager alert {first.alertname or first.fingerprint} was not filed against "
            f"its workload: {group.unmapped}. This incident has no target, so no mitigation "
            "changes anything."
        )
    elif group.unmapped:
        notes.append(
            f"Alertmanager alert {first.alertname or first.fingerprint} could not be mapped to a "
            f"workload: {group.unmapped}. An alert names its workload with the label namespace "
            "plus one of deployment, workload or model; fix the alerting rule's labels."
        )
    raw = first.labels.get(CATEGORY_LABEL)
    if raw and category_of(raw) == "Other" and raw != "Other":
        notes.append(f"Label {CATEGORY_LABEL}={raw[:80]!r} is not a category; filed as Other.")
    return "\n\n".join([*notes, text] if text else notes)


def new_incident(
    group: Group, name: str, payload: Payload, items: list[dict], displaced: str | None = None
) -> dict[str, Any]:
    """The AIIncident to create for GROUP under NAME, holding ITEMS. DISPLACED: why the
    names before NAME were not used (taken by incidents that do not hold the key)."""
    reporter = f"receiver {payload.receiver}" if payload.receiver else "webhook"
    if payload.external_url:
        reporter += f" of {payload.external_url}"
    spec: dict[str, Any] = {
        "title": _title(group),
        "category": group.key.category,
        "source": {"type": "Alertmanager", "reporter": reporter[:1024]},
        "alerts": items,
    }
    if group.target:
        spec["target"] = dict(group.target)
    description = _description(group)
    annotations = {KEY_ANNOTATION: group.key.annotation}
    if group.unmapped:
        annotations[UNMAPPED_ANNOTATION] = _cut(group.unmapped, ANNOTATION_LIMIT)
    if group.overflow:
        annotations[MORE_ANNOTATION] = str(len(items))
    if displaced:
        annotations[DISPLACED_ANNOTATION] = _cut(displaced, ANNOTATION_LIMIT)
        note = (
            f"Filed as {name}, not {group.name}: {_cut(displaced, ANNOTATION_LIMIT)}. "
            "Alerts fold only into incidents the intake opened for their group."
        )
        description = f"{note}\n\n{description}" if description else note
    if description:
        spec["description"] = description
    return {
        "apiVersion": API_VERSION,
        "kind": "AIIncident",
        "metadata": {
            "name": name,
            "namespace": group.key.namespace,
            "labels": {SOURCE_LABEL: "alertmanager"},
            "annotations": annotations,
        },
        "spec": spec,
    }


def _later(a: str | None, b: str | None) -> int:
    """1 if time A is after B, -1 if before, 0 if equal or either is unknown."""
    x, y = instant(a), instant(b)
    if x is None or y is None or x == y:
        return 0
    return 1 if x > y else -1


def merge_one(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The entry to keep for one fingerprint. A newer start replaces; an older one is stale;
    for the same start, resolved wins over firing, and a resend keeps the first endsAt (which
    Alertmanager moves on every resend of a firing alert)."""
    if old is None:
        return new
    order = _later(new.get("startsAt"), old.get("startsAt"))
    if order > 0:
        return new
    if order < 0 or (old.get("status") == "resolved" and new.get("status") == "firing"):
        return old
    result = dict(new)
    if old.get("status") == new.get("status") and "endsAt" in old:
        result["endsAt"] = old["endsAt"]
    if "startsAt" in old and "startsAt" not in new:
        result["startsAt"] = old["startsAt"]
    return result


def merge_alerts(current: list[dict[str, Any]], incoming: list[dict[str, Any]]) -> list[dict]:
    """CURRENT with INCOMING folded in by fingerprint; equal to CURRENT on a redelivery."""
    by_print: dict[str, dict[str, Any]] = {}
    for entry in current:
        by_print.setdefault(entry.get("fingerprint", ""), entry)
    for entry in incoming:
        key = entry["fingerprint"]
        by_print[key] = merge_one(by_print.get(key), entry)
    merged = list(by_print.values())
    return _bounded(merged)


def _size(alert: dict[str, Any]) -> int:
    return len(json.dumps(alert))  # as kopf's copy takes it: "😀" is 12 bytes


def _bounded(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most MAX_ALERTS alerts and ALERTS_BUDGET bytes: the longest-resolved alerts make
    room first; then older firing alerts lose their annotations. Firing alerts stay, up to
    twice the budget (an incident that large would break kopf's copy of its spec)."""
    sizes = [_size(a) for a in alerts]
    total = sum(sizes)
    if len(alerts) <= MAX_ALERTS and total <= ALERTS_BUDGET:
        return alerts
    resolved = sorted(
        (i for i, a in enumerate(alerts) if a.get("status") == "resolved"),
        key=lambda i: instant(alerts[i].get("endsAt")) or (0, 0),
    )
    drop: set[int] = set()
    for i in resolved:
        if len(alerts) - len(drop) <= MAX_ALERTS and total <= ALERTS_BUDGET:
            break
        drop.add(i)
        total -= sizes[i]
    kept = [dict(a) for i, a in enumerate(alerts) if i not in drop]
    for alert in sorted(kept, key=lambda a: instant(a.get("startsAt")) or (0, 0)):
        if total <= ALERTS_BUDGET:
            break
        if alert.get("annotations"):
            before = _size(alert)
            alert["annotations"] = {}
            total -= before - _size(alert)
    oldest_first = sorted(range(len(kept)), key=lambda i: instant(kept[i].get("startsAt")) or (0, 0))  # fmt: skip
    gone: set[int] = set()
    for i in oldest_first:
        if total <= 2 * ALERTS_BUDGET:
            break
        gone.add(i)
        total -= _size(kept[i])
    return [a for i, a in enumerate(kept) if i not in gone]


def absorb(current: list[dict], incoming: list[dict]) -> tuple[list[dict], list[dict]]:
    """For a resolved incident: (its alerts with updates to alert instances it already holds,
    the other incoming alerts). An instance is a fingerprint and a start time."""
    held = {(a.get("fingerprint"), a.get("startsAt")) for a in current}
    mine = [a for a in incoming if (a["fingerprint"], a.get("startsAt")) in held]
    rest = [a for a in incoming if (a["fingerprint"], a.get("startsAt")) not in held]
    return (merge_alerts(current, mine) if mine else current), rest
