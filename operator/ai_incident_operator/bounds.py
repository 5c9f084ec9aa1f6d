"""Tenant bounds: what a namespaced MitigationPolicy may ask the operator to change (pure).

The operator may update workloads, Services and ConfigMaps; someone who may only
create MitigationPolicies in a namespace must not borrow that power (a confused
deputy): a root sidecar with any image and command, another image for the model,
someone else's ConfigMap, a Service pointed at other pods. So every *namespaced*
policy is held to these bounds; a ClusterMitigationPolicy is cluster-scoped, only
cluster admins can write it, and it is trusted as it is.

- GuardrailSidecar: the image comes from `sidecarImages` (none by default: sidecars
  are refused until an admin lists registries); no privilege of any kind; no
  `command`/`args` or exec hooks unless `allowSidecarCommand`; no Secrets unless
  `allowSidecarSecrets`; never the name of one of the workload's own containers;
  `servicePort` only on a Service that selects the target, to a port of the sidecar.
- ConservativeConfig: env keys match `envKeys` (inference knobs by default) and are
  never ones that carry images, credentials, paths or addresses (`denied_env_key`);
  `image` only from `configImages` (none by default); `configMap` only one the target
  reads, and keys it reads as environment are held to the env rules.
- TrafficShift: the router routes to the incident's target (only to it, and only
  within the namespace: its Services, InferencePools and AIServiceBackends, traced to
  the target's pods; an InferenceService or Rollout router is the target itself); the
  fallback is a Service, InferencePool or AIServiceBackend labelled
  `aiincident.io/fallback: "true"` (set by whoever may write those there), or a
  Service listed in `fallbackServices`.

`problems` checks what the policy says alone (for the policy check and `aiincident
validate`); `object_problems` checks it against the objects (the target, the router,
the Services), read through READ, for the policy check and again by the engine right
before it applies a step. Bounds are loaded once from `aiincident run --tenant-bounds
FILE` (or $AIINCIDENT_TENANT_BOUNDS) and kept here (`configure`, `current`).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import GROUP, workloads
from .actions.config import env_names_of_key, uses_configmap
from .actions.guardrail import is_workload_container, sidecar_ports
from .actions.traffic import backends, fallback_ref, service_of_host, unmitigated
from .fieldpath import get
from .resources import Ref

Body = dict[str, Any]
ENV = "AIINCIDENT_TENANT_BOUNDS"
FALLBACK_LABEL = f"{GROUP}/fallback"
REASON = "OutsideTenantBounds"
ADMIN_HINT = (
    "a cluster admin can widen the operator's tenant bounds (aiincident run --tenant-bounds, "
    "chart value security.tenantBounds) or give this response in a ClusterMitigationPolicy"
)

# Inference knobs: what "a conservative configuration" means for a model server.
DEFAULT_ENV_KEYS: tuple[str, ...] = (
    "TEMPERATURE", "*_TEMPERATURE", "TOP_P", "*_TOP_P", "TOP_K", "*_TOP_K",
    "MAX_TOKENS", "*_MAX_TOKENS", "MAX_NEW_TOKENS", "*_MAX_NEW_TOKENS",
    "MAX_OUTPUT_TOKENS", "*_MAX_OUTPUT_TOKENS", "MAX_INPUT_TOKENS", "MAX_CONTEXT_LENGTH",
    "REPETITION_PENALTY", "PRESENCE_PENALTY", "FREQUENCY_PENALTY", "SEED",
    "SAFETY_LEVEL", "*_SAFETY_LEVEL", "MODERATION", "*_MODERATION",
)  # fmt: skip
# Never set by a tenant, whatever envKeys says: a variable with one of these words
# (parts between "_", "-" and ".") or fragments carries an image, a credential, a
# path or an address; the prefixes and names change how the runtime loads code.
_DENIED_WORDS = frozenset({
    "IMAGE", "TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "PWD", "CREDENTIAL",
    "CREDENTIALS", "AUTH", "CERT", "CA", "BUNDLE", "URL", "URI", "HOST", "ENDPOINT", "PROXY",
    "PATH", "DIR", "FILE", "HOME", "ADDR", "ADDRESS", "PORT", "REGISTRY", "SOCKET",
})  # fmt: skip
_DENIED_FRAGMENTS = ("SECRET", "PASSW", "CREDENTIAL", "APIKEY", "PRIVATE")
_DENIED_PREFIXES = (
    "LD_", "DYLD_", "PYTHON", "NODE_", "JAVA_", "_JAVA", "JDK_", "PERL", "RUBY", "GCONV",
    "BASH_", "SSL_", "KUBERNETES_", "AWS_", "GOOGLE_", "AZURE_",
)  # fmt: skip
_DENIED_NAMES = frozenset({"ENV", "SHELL", "SHELLOPTS", "PS4", "USER", "IFS"})
_WORD = re.compile(r"[_.\-]+")


class BoundsError(ValueError):
    """The tenant-bounds file is not what it should be; the message says what to fix."""


@dataclass(frozen=True)
class TenantBounds:
    """What namespaced MitigationPolicies may ask; the defaults are the safe ones."""

    sidecar_images: tuple[str, ...] = ()
    allow_sidecar_command: bool = False
    allow_sidecar_secrets: bool = False
    config_images: tuple[str, ...] = ()
    env_keys: tuple[str, ...] = DEFAULT_ENV_KEYS
    fallback_services: frozenset[str] = field(default_factory=frozenset)  # "namespace/name"


# YAML key -> (attribute, kind): "list" (of strings), "bool".
_KEYS = {
    "sidecarImages": ("sidecar_images", "list"),
    "allowSidecarCommand": ("allow_sidecar_command", "bool"),
    "allowSidecarSecrets": ("allow_sidecar_secrets", "bool"),
    "configImages": ("config_images", "list"),
    "envKeys": ("env_keys", "list"),
    "fallbackServices": ("fallback_services", "list"),
}


def from_dict(data: Any, where: str = "tenant bounds") -> TenantBounds:
    """TenantBounds from the file's mapping; BoundsError naming each wrong key."""
    if data is None:
        return TenantBounds()
    if not isinstance(data, dict):
        raise BoundsError(f"{where}: expected a mapping of {', '.join(_KEYS)}")
    errors: list[str] = []
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KEYS:
            errors.append(f"unknown key {key!r} (known: {', '.join(_KEYS)})")
            continue
        attr, kind = _KEYS[key]
        if kind == "bool":
            if not isinstance(value, bool):
                errors.append(f"{key}: expected true or false, not {value!r}")
            values[attr] = value
        elif not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            errors.append(f"{key}: expected a list of non-empty strings")
        else:
            values[attr] = tuple(value)
    for entry in values.get("fallback_services", ()):
        namespace, slash, name = entry.partition("/")
        if not slash or not namespace or not name or "/" in name:
            errors.append(f"fallbackServices: {entry!r} is not NAMESPACE/NAME")
    if errors:
        raise BoundsError(f"{where}: " + "; ".join(errors))
    if "fallback_services" in values:
        values["fallback_services"] = frozenset(values["fallback_services"])
    return TenantBounds(**values)


def load(path: str | Path | None = None) -> TenantBounds:
    """The bounds in PATH (else $AIINCIDENT_TENANT_BOUNDS); the defaults without either."""
    path = path or os.environ.get(ENV)
    if not path:
        return TenantBounds()
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise BoundsError(f"tenant bounds {path}: cannot read: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BoundsError(f"tenant bounds {path}: not YAML: {err}") from None
    return from_dict(data, f"tenant bounds {path}")


_active: list[TenantBounds] = [TenantBounds()]


def configure(bounds: TenantBounds) -> None:
    """The bounds this process enforces (`aiincident run` sets them once at start)."""
    _active[0] = bounds


def current() -> TenantBounds:
    return _active[0]


def applies(policy: Body | None) -> bool:
    """Whether POLICY is held to the bounds: every policy but a ClusterMitigationPolicy."""
    return policy is not None and policy.get("kind") != "ClusterMitigationPolicy"


# --- The rules on what a policy says -------------------------------------------------------


def image_allowed(image: Any, prefixes: tuple[str, ...]) -> bool:
    """Whether IMAGE is one of PREFIXES or starts with one at a boundary.

    "registry.example/guardrail" allows "registry.example/guardrail:1.4" and
    ".../guardrail@sha256:..." but not "registry.example/guardrail-evil" nor, for the
    prefix "registry.example", "registry.example.attacker.io/x". A prefix that ends in
    "/", ":" or "@" is itself the boundary.
    """
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        return False
    for prefix in prefixes:
        if image == prefix:
            return True
        if image.startswith(prefix) and (prefix[-1] in "/:@" or image[len(prefix)] in "/:@"):
            return True
    return False


def denied_env_key(key: str) -> bool:
    """Whether KEY names a variable a tenant may never set (see the module's rules)."""
    upper = key.upper()
    words = set(_WORD.split(upper))
    return (
        upper in _DENIED_NAMES
        or bool(words & _DENIED_WORDS)
        or any(f in upper for f in _DENIED_FRAGMENTS)
        or upper.lstrip("_").startswith(tuple(p.lstrip("_") for p in _DENIED_PREFIXES))
    )


def env_key_problem(key: str, bounds: TenantBounds, what: str = "env") -> str | None:
    if denied_env_key(key):
        return (
            f"{what} {key} may carry an image, a credential, a path or an address, or change "
            "how code is loaded: a namespaced policy never sets it"
        )
    if not any(fnmatch.fnmatchcase(key, pattern) for pattern in bounds.env_keys):
        return (
            f"{what} {key} is not among the tenant bounds' envKeys ({', '.join(bounds.env_keys)})"
        )
    return None


def _listing(items: tuple[str, ...]) -> str:
    return ", ".join(items) if items else "none"


def _security_problems(context: Any) -> list[str]:
    if not isinstance(context, dict):
        return []
    found = []
    if context.get("privileged") is True:
        found.append("privileged")
    if context.get("allowPrivilegeEscalation") is True:
        found.append("allowPrivilegeEscalation: true")
    if context.get("runAsUser") == 0:
        found.append("runAsUser: 0 (root)")
    if context.get("runAsNonRoot") is False:
        found.append("runAsNonRoot: false")
    if (context.get("capabilities") or {}).get("add"):
        found.append("added capabilities")
    if context.get("procMount") not in (None, "Default"):
        found.append(f"procMount {context['procMount']}")
    if context.get("seLinuxOptions"):
        found.append("seLinuxOptions")
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        found.append("windowsOptions.hostProcess")
    for profile in ("seccompProfile", "appArmorProfile"):
        if (context.get(profile) or {}).get("type") == "Unconfined":
            found.append(f"{profile} Unconfined")
    return found


def _has_exec(container: Body) -> bool:
    hooks = [container.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
    lifecycle = container.get("lifecycle") or {}
    hooks += [lifecycle.get(h) for h in ("postStart", "preStop")]
    return any(isinstance(h, dict) and h.get("exec") for h in hooks)


def sidecar_problems(container: Any, bounds: TenantBounds) -> list[str]:
    """What is outside the bounds in a GuardrailSidecar's container (pure)."""
    if not isinstance(container, dict):
        return []
    name = container.get("name") or "?"
    found: list[str] = []
    image = container.get("image")
    if not image_allowed(image, bounds.sidecar_images):
        found.append(
            f"sidecar {name}: image {image!r} is not from a registry the tenant bounds allow "
            f"(sidecarImages: {_listing(bounds.sidecar_images)})"
        )
    privileges = _security_problems(container.get("securityContext"))
    if privileges:
        found.append(
            f"sidecar {name}: asks for {', '.join(privileges)}; a sidecar gets no privilege"
        )
    ports = [p for p in container.get("ports") or [] if isinstance(p, dict)]
    if any(p.get("hostPort") or p.get("hostIP") for p in ports):
        found.append(f"sidecar {name}: hostPort/hostIP open the node's network")
    if not bounds.allow_sidecar_command:
        if container.get("command") or container.get("args"):
            found.append(
                f"sidecar {name}: overrides the image's command/args "
                "(the tenant bounds do not allowSidecarCommand)"
            )
        if _has_exec(container):
            found.append(
                f"sidecar {name}: runs commands through an exec probe or hook "
                "(the tenant bounds do not allowSidecarCommand)"
            )
    if not bounds.allow_sidecar_secrets:
        env = [e for e in container.get("env") or [] if isinstance(e, dict)]
        sources = [s for s in container.get("envFrom") or [] if isinstance(s, dict)]
        if any((e.get("valueFrom") or {}).get("secretKeyRef") for e in env) or any(
            s.get("secretRef") for s in sources
        ):
            found.append(
                f"sidecar {name}: reads Secrets (the tenant bounds do not allowSidecarSecrets)"
            )
    if container.get("volumeDevices"):
        found.append(f"sidecar {name}: volumeDevices give it the node's block devices")
    for mount in container.get("volumeMounts") or []:
        if isinstance(mount, dict) and mount.get("mountPropagation") not in (None, "None"):
            found.append(f"sidecar {name}: mountPropagation {mount['mountPropagation']}")
    return found


def action_problems(spec: Body, bounds: TenantBounds) -> list[str]:
    """What is outside the bounds in one action as the policy writes it (pure)."""
    kind = spec.get("type")
    found: list[str] = []
    if kind == "GuardrailSidecar":
        container = spec.get("container")
        found += sidecar_problems(container, bounds)
        port = spec.get("servicePort")
        if isinstance(port, dict) and isinstance(container, dict) and "targetPort" in port:
            target_port = port["targetPort"]
            if isinstance(target_port, str) and target_port.isdigit():
                target_port = int(target_port)
            if target_port not in sidecar_ports(container):
                found.append(
                    f"servicePort.targetPort {port['targetPort']} is not a port of sidecar "
                    f"{container.get('name')}: only the sidecar's own ports may take the traffic"
                )
    elif kind == "ConservativeConfig":
        for key in spec.get("env") or {}:
            problem = env_key_problem(str(key), bounds)
            if problem:
                found.append(problem)
        image = spec.get("image")
        if image and not image_allowed(image, bounds.config_images):
            found.append(
                f"image {image!r}: a namespaced policy may not give the model another image "
                f"unless the tenant bounds allow it (configImages: {_listing(bounds.config_images)})"
            )
    return found


def problems(policy_spec: Body, namespace: str | None, bounds: TenantBounds) -> list[str]:
    """Everything outside BOUNDS that a namespaced policy's spec asks for alone (pure)."""
    found: list[str] = []
    for i, response in enumerate(policy_spec.get("responses") or []):
        for j, spec in enumerate((response or {}).get("actions") or []):
            if isinstance(spec, dict):
                where = f"responses[{i}].actions[{j}] ({spec.get('type')})"
                found += [f"{where}: {p}" for p in action_problems(spec, bounds)]
    return found


# --- The rules against the objects ---------------------------------------------------------

Read = Callable[[Ref], "Body | None"]


def _pod_labels(target: Body) -> dict[str, str]:
    return (((target.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}


def selects(service: Body, target: Body) -> bool:
    """Whether SERVICE (as it was before any mitigation) sends traffic to TARGET's serving
    pods (a Deployment's, a LeaderWorkerSet's leaders, a KServe predictor's)."""
    selector = (unmitigated(service).get("spec") or {}).get("selector") or {}
    labels = workloads.adapter(_kind(target)).serving_labels(target)
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _pod_spec(target: Body, pod: workloads.PodSpec) -> Body:
    return workloads.as_pod(get(target, pod.path))  # a KServe model is a container too


def _name(obj: Body) -> str:
    return obj["metadata"]["name"]


def _sidecar_objects(
    spec: Body, namespace: str, target: Body, targets: list[Body], read: Read,
    bounds: TenantBounds,
) -> list[str]:  # fmt: skip
    container = spec.get("container")
    if not isinstance(container, dict) or not container.get("name"):
        return []
    name, found = container["name"], []
    if is_workload_container(target, name):
        found.append(
            f"sidecar {name}: {_kind(target)} {_name(target)} has a container of that name "
            "(adding it would replace the workload's own container)"
        )
    # The sidecar joins the serving pod: its mounts are that pod's volumes.
    pod = _pod_spec(target, workloads.adapter(_kind(target)).serving_pod(target))
    volumes = {v.get("name"): v for v in pod.get("volumes") or [] if isinstance(v, dict)}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get((mount or {}).get("name")) or {}
        secret = volume.get("secret") or any(
            s.get("secret") for s in (volume.get("projected") or {}).get("sources") or []
        )
        if volume.get("hostPath"):
            found.append(
                f"sidecar {name}: mounts hostPath volume {mount['name']} (the node's files)"
            )
        elif secret and not bounds.allow_sidecar_secrets:
            found.append(
                f"sidecar {name}: mounts Secret volume {mount['name']} "
                "(the tenant bounds do not allowSidecarSecrets)"
            )
    port = spec.get("servicePort")
    if isinstance(port, dict) and port.get("service"):
        service = read(Ref("Service", namespace, port["service"]))
        # Any of the targets: one Service may serve several (the step for each is the same).
        if service is not None and not any(selects(service, t) for t in targets):
            found.append(
                f"servicePort: Service {port['service']} selects none of the targets' pods "
                f"({_kind(target)} {_name(target)}, ...): only their own Service may use the sidecar"
            )
    return found


def _config_objects(spec: Body, target: Body, bounds: TenantBounds) -> list[str]:
    cm = spec.get("configMap")
    if not isinstance(cm, dict) or not cm.get("name"):
        return []
    adapter = workloads.adapter(_kind(target))
    # Every pod template counts: a LeaderWorkerSet's workers may read it, not its leader.
    pods = [_pod_spec(target, p) for p in adapter.pod_specs(target)]
    readers = [pod for pod in pods if uses_configmap(pod, cm["name"])]
    if not readers:
        return [
            f"configMap {cm['name']} is not read by {_kind(target)} {_name(target)}: a "
            "namespaced policy changes only the ConfigMaps its target uses"
        ]
    found = []
    for key in cm.get("data") or {}:
        names = {env for pod in readers for env in env_names_of_key(pod, cm["name"], str(key))}
        for env in sorted(names):
            problem = env_key_problem(env, bounds, what=f"configMap key {key} (read as env)")
            if problem:
                found.append(problem)
    return found


def _traffic_objects(
    spec: Body, namespace: str, target: Body, targets: list[Body], read: Read,
    bounds: TenantBounds,
) -> list[str]:  # fmt: skip
    router_spec = spec.get("router") or {}
    kind, name = router_spec.get("kind"), router_spec.get("name")
    fallback = fallback_ref(spec, namespace)
    found: list[str] = []
    router = read(Ref(kind, namespace, name)) if kind and name else None
    if router is not None and kind in ("InferenceService", "Rollout"):
        # It routes between its own revisions: it must be (or run) one of the targets.
        if not any(_is_workload_of(router, kind, t) for t in targets):
            found.append(
                f"router {kind} {name} is not the incident's target ({_kind(target)} "
                f"{_name(target)}, ...): a namespaced policy shifts only its target's traffic"
            )
    elif router is not None:
        refs, foreign = backends(kind, unmitigated(router), namespace)
        refs = [r for r in refs if r != fallback]
        if foreign:
            found.append(
                f"router {kind} {name} also routes to {', '.join(foreign)}, outside namespace "
                f"{namespace}'s Services: a namespaced policy shifts only its target's traffic"
            )
        reached = [_reaches(r, router, targets, read) for r in sorted(refs, key=str)]
        others = [what for what, serves in reached if serves is False]
        if others:
            found.append(
                f"router {kind} {name} sends traffic to {', '.join(others)}, which "
                "selects none of the incident's targets: a namespaced policy shifts only its "
                "target's traffic"
            )
        elif not any(serves for _, serves in reached):
            found.append(
                f"router {kind} {name} does not route to {_kind(target)} {_name(target)} (nor "
                "to another of the targets): name the object that sends traffic to the target"
            )
    if fallback is not None:
        obj = read(fallback)
        listed = fallback.kind == "Service" and (
            f"{namespace}/{fallback.name}" in bounds.fallback_services
        )
        marked = ((obj or {}).get("metadata", {}).get("labels") or {}).get(FALLBACK_LABEL)
        if obj is not None and not listed and marked != "true":
            also = (
                f" (or an admin lists {namespace}/{fallback.name} in the tenant bounds' "
                "fallbackServices)"
                if fallback.kind == "Service"
                else ""
            )
            found.append(
                f"fallback {fallback.kind} {fallback.name} is not marked as a fallback: "
                f"whoever may change {fallback.kind}s in {namespace} labels it "
                f'{FALLBACK_LABEL}="true"{also}'
            )
    return found


def _kind(obj: Body) -> str:
    return obj.get("kind") or "Deployment"


def _is_workload_of(router: Body, kind: str, target: Body) -> bool:
    """Whether ROUTER (an InferenceService, a Rollout) is TARGET, or a Rollout runs TARGET's
    template (`spec.workloadRef` to the target Deployment)."""
    if _kind(target) == kind and _name(target) == _name(router):
        return True
    ref = (router.get("spec") or {}).get("workloadRef") or {}
    runs = (ref.get("kind"), ref.get("name")) == (_kind(target), _name(target))
    return kind == "Rollout" and runs


def _serving_labels(target: Body) -> list[dict[str, str]]:
    """The labels of each kind of Pod TARGET runs, those its controller adds included (a
    pool or a Service selects them by these): a LeaderWorkerSet's leaders and workers."""
    try:
        adapter = workloads.adapter(_kind(target))
    except workloads.UnknownKind:
        return [_pod_labels(target)]
    return [adapter.pod_labels(target, pod) for pod in adapter.pod_specs(target)]


def _selects_any(selector: dict[str, str], targets: list[Body]) -> bool:
    return bool(selector) and any(
        all(labels.get(k) == v for k, v in selector.items())
        for t in targets
        for labels in _serving_labels(t)
    )


def _service_serves(service: Body | None, targets: list[Body]) -> bool:
    """Whether SERVICE (as it was before any mitigation) selects one of TARGETS' pods."""
    selector = ((unmitigated(service).get("spec") or {}) if service else {}).get("selector")
    return _selects_any(selector or {}, targets)


def _reaches(ref: Ref, router: Body, targets: list[Body], read: Read) -> tuple[str, bool | None]:
    """(REF in words, whether it sends traffic to one of TARGETS' pods); None: REF does not
    exist (it carries no traffic)."""
    what = f"{ref.kind} {ref.name}"
    own = ref.kind == _kind(router) == "Service" and ref.name == _name(router)
    obj = router if own else read(ref)
    if obj is None:
        return what, None
    spec = unmitigated(obj).get("spec") or {}
    if ref.kind == "Service":
        return what, _service_serves(obj, targets)
    if ref.kind == "InferencePool":
        return what, _selects_any((spec.get("selector") or {}).get("matchLabels") or {}, targets)
    # An AIServiceBackend: through its backendRef, an Envoy Gateway Backend (or a Service).
    backend = spec.get("backendRef") or {}
    where = backend.get("namespace") or ref.namespace
    if where != ref.namespace or not backend.get("name"):
        return f"{what} (backendRef in namespace {where})", False
    if backend.get("kind", "Service") == "Service" and not backend.get("group"):
        service = read(Ref("Service", ref.namespace, backend["name"]))
        return f"{what} (Service {backend['name']})", _service_serves(service, targets)
    words = f"{what} (Backend {backend['name']}: not traced to a Service of the namespace)"
    if (backend.get("kind"), backend.get("group")) != ("Backend", "gateway.envoyproxy.io"):
        return words, False
    found = read(Ref("Backend", ref.namespace, backend["name"]))
    endpoints = ((found or {}).get("spec") or {}).get("endpoints") or []
    hosts = [((e or {}).get("fqdn") or {}).get("hostname") or "" for e in endpoints]
    # A bare name would resolve in the gateway's namespace: only name.namespace(.svc...) counts.
    names = [service_of_host(h, ref.namespace) if h.count(".") else None for h in hosts]
    if not names or None in names:
        return words, False
    serves = all(_service_serves(read(Ref("Service", ref.namespace, n)), targets) for n in names)
    return f"{what} (Backend {backend['name']}: Service {', '.join(names)})", serves


def object_problems(
    spec: Body,
    namespace: str,
    target: Body,
    read: Read,
    bounds: TenantBounds,
    targets: list[Body] | None = None,
) -> list[str]:
    """What is outside BOUNDS in action SPEC against TARGET and the objects READ returns.

    TARGETS are all of the incident's targets (a router or a Service may serve any of
    them: each must serve one of them, not necessarily TARGET itself). An
    object that does not exist is not a bounds problem: the action says it is missing.
    """
    kind = spec.get("type")
    if not target.get("metadata", {}).get("name"):
        return []
    if kind == "GuardrailSidecar":
        return _sidecar_objects(spec, namespace, target, targets or [target], read, bounds)
    if kind == "ConservativeConfig":
        return _config_objects(spec, target, bounds)
    if kind == "TrafficShift":
        return _traffic_objects(spec, namespace, target, targets or [target], read, bounds)
    return []


def step_problems(
    spec: Body, namespace: str, target: Body, read: Read, bounds: TenantBounds,
    targets: list[Body] | None = None,
) -> list[str]:  # fmt: skip
    """Everything outside BOUNDS for one step: the spec alone, then against the objects."""
    found = action_problems(spec, bounds)
    return found + object_problems(spec, namespace, target, read, bounds, targets)
