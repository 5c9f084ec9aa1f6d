"""GuardrailSidecar: put a filtering sidecar in front of the model (the engine calls it).

Adds the policy's container to the workload's serving pod template (a Deployment's,
a LeaderWorkerSet's leader, a KServe predictor; see `workloads`) and, optionally,
points a Service port at the sidecar, so requests pass the guardrail before they
reach the model. The ledger records the container as absent, so undo removes
exactly that container; undo runs in reverse order, so the Service port goes
back to the model before the sidecar disappears.

`plan` is pure (dicts in, Changes out); `GuardrailSidecar.changes` only fetches
the Service and asks the apiserver how it stores the container (see `as_stored`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .. import ledger, retry, workloads
from ..access import Access
from ..errors import APIError, Invalid
from ..fieldpath import get, put
from ..resources import Ref
from .base import ActionContext, ActionError, Change, FieldAction

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def container_path(name: str, workload: dict[str, Any] | None = None) -> str:
    """Where sidecar NAME goes in WORKLOAD (a Deployment when not given)."""
    adapter = workloads.adapter((workload or {}).get("kind"))
    return f"{adapter.serving_pod(workload or {}).containers}[name={name}]"


def _port_number(port: Any) -> int | None:
    """PORT as a number when it is one (8080 or "8080"), else None (a port name)."""
    if isinstance(port, bool):
        return None
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    return None


def _target_port(value: Any) -> int | str:
    # "8001" would be stored as a (invalid) port *name*; the policy author meant the number.
    number = _port_number(value)
    return number if number is not None else value


def service_port_path(service: dict[str, Any], port: Any) -> str:
    """The path of PORT's targetPort in SERVICE; PORT is a port name or number.

    Items are chosen by name, which stays right when ports are reordered. Field
    paths compare keys as strings, so a port number is resolved to its port's
    name; only a single-port Service may leave its port unnamed, and then it is
    item 0.
    """
    name = service["metadata"]["name"]
    ports = service.get("spec", {}).get("ports") or []
    number = _port_number(port)
    for index, item in enumerate(ports):
        if (number is not None and item.get("port") == number) or (
            number is None and item.get("name") == port
        ):
            if item.get("name"):
                return f"/spec/ports[name={item['name']}]/targetPort"
            return f"/spec/ports[{index}]/targetPort"
    known = ", ".join(
        f"{p['name']} ({p.get('port')})" if p.get("name") else str(p.get("port")) for p in ports
    )
    raise ActionError(f"Service {name} has no port {port}; ports: {known or 'none'}")


def plan(
    namespace: str,
    deployment: dict[str, Any],
    spec: dict[str, Any],
    service: dict[str, Any] | None = None,
    container: dict[str, Any] | None = None,
    held: set[str] | frozenset[str] = frozenset(),
) -> list[Change]:
    """The Changes for SPEC on DEPLOYMENT (and SERVICE when spec.servicePort is given).

    CONTAINER is the sidecar as the apiserver stores it (defaults filled in);
    without it, the policy's container is used as written.
    """
    sidecar = container if container is not None else spec["container"]
    name = spec["container"]["name"]
    dep_name = deployment["metadata"]["name"]
    kind = deployment.get("kind") or "Deployment"
    path = container_path(name, deployment)
    if is_workload_container(deployment, name, held):
        raise ActionError(
            f"{kind} {dep_name} already has a container named {name}; "
            "give the guardrail a name of its own"
        )
    result = [
        Change(
            Ref(kind, namespace, dep_name),
            {path: sidecar},
            f"sidecar {name} ({spec['container'].get('image')}) added",
        )
    ]
    port_spec = spec.get("servicePort")
    if port_spec:
        if service is None:
            raise ActionError(f"Service {port_spec['service']} not found in {namespace}")
        port_path = service_port_path(service, port_spec["port"])
        # Once held, the field shows our value; the ledger still knows the one before.
        before = ledger.read(service)["originals"].get(port_path, get(service, port_path))
        target = _target_port(port_spec["targetPort"])
        result.append(
            Change(
                Ref("Service", namespace, service["metadata"]["name"]),
                {port_path: target},
                f"port {port_spec['port']} targetPort {before} -> {target}",
            )
        )
    return result


def _held_paths(obj: dict[str, Any]) -> set[str]:
    return set(ledger.read(obj)["originals"])


def is_workload_container(
    deployment: dict[str, Any], name: str, held: set[str] | frozenset[str] = frozenset()
) -> bool:
    """Whether DEPLOYMENT has a container NAME that no mitigation put there.

    Such a container belongs to the workload: "adding" a sidecar of that name would
    replace it (say, the model itself, with another image), an outage and not a guardrail.
    """
    if any(
        c.name == name for c in workloads.adapter(deployment.get("kind")).containers(deployment)
    ):
        path = container_path(name, deployment)
        return path not in _held_paths(deployment) | held
    return False


def sidecar_ports(container: dict[str, Any]) -> set[int | str]:
    """The container's port numbers and names: what a Service may send to it."""
    ports: set[int | str] = set()
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            ports |= {v for v in (port.get("containerPort"), port.get("name")) if v is not None}
    return ports


def as_stored(
    api: Access, namespace: str, deployment: dict[str, Any], container: dict[str, Any]
) -> dict[str, Any]:
    """CONTAINER as the apiserver would store it in DEPLOYMENT (a server-side dry run).

    The apiserver fills in defaults (imagePullPolicy, terminationMessagePath, port
    protocols, probe timings). Holding the container exactly as stored keeps a
    repeated apply a no-op, rather than "contested" on every pass; and an invalid
    container fails here with the apiserver's own words, before anything is written.
    """
    path = container_path(container["name"], deployment)
    ref = Ref(deployment.get("kind") or "Deployment", namespace, deployment["metadata"]["name"])

    tries: list[int] = []

    def attempt() -> dict[str, Any]:
        # Conditional, as a custom resource's update must be (its apiserver refuses one
        # without metadata.resourceVersion); a conflict reads the object again.
        current = copy.deepcopy((api.get(ref) if tries else None) or deployment)
        tries.append(1)
        put(current, path, container)
        return api.dry_run_replace(ref, current)

    try:
        result = retry.on_conflict(attempt, what=f"the dry run of sidecar {container['name']}")
    except Invalid as err:
        raise ActionError(
            f"the apiserver rejects sidecar {container['name']}: {err.message}"
        ) from None
    except APIError as err:
        raise ActionError(f"sidecar {container['name']} could not be checked: {err}") from None
    stored = get(result, path)
    return stored if isinstance(stored, dict) else container


class GuardrailSidecar(FieldAction):
    type = "GuardrailSidecar"

    def key(self, spec: dict[str, Any]) -> str:
        container = spec.get("container")
        name = container.get("name") if isinstance(container, dict) else None
        return f"{self.type}:{name}"

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        problems = []
        container = spec.get("container")
        if not isinstance(container, dict):
            problems.append(
                "GuardrailSidecar: container must be a core/v1 Container object with name and image"
            )
        else:
            name = container.get("name")
            if not isinstance(name, str) or not name:
                problems.append("GuardrailSidecar: container has no name")
            elif not _DNS_LABEL.match(name) or len(name) > 63:
                problems.append(
                    f"GuardrailSidecar: container name {name!r} is not a DNS label "
                    "(lower-case letters, digits and '-', at most 63)"
                )
            if not isinstance(container.get("image"), str) or not container.get("image"):
                problems.append(f"GuardrailSidecar: container {name or '?'} has no image")
        port = spec.get("servicePort")
        if port is not None:
            missing = (
                [k for k in ("service", "port", "targetPort") if k not in port]
                if isinstance(port, dict)
                else []
            )
            if not isinstance(port, dict) or missing:
                problems.append(
                    "GuardrailSidecar: servicePort needs service, port and targetPort"
                    + (f" (missing {', '.join(missing)})" if missing else "")
                )
        return problems

    def touches(self, ctx: ActionContext) -> list[Ref]:
        port = ctx.spec.get("servicePort") or {}
        service = [Ref("Service", ctx.namespace, port["service"])] if port.get("service") else []
        return super().touches(ctx) + service

    def changes(self, ctx: ActionContext) -> list[Change]:
        port_spec = ctx.spec.get("servicePort")
        service = (
            ctx.api.get(Ref("Service", ctx.namespace, port_spec["service"])) if port_spec else None
        )
        # Paths the status says this incident holds count as ours even if the ledger is gone.
        held = set(ctx.known_originals.get(str(ctx.target_ref)) or {})
        changes = plan(ctx.namespace, ctx.target, ctx.spec, service, held=held)
        if not ctx.dry_run:
            path = container_path(ctx.spec["container"]["name"], ctx.target)
            stored = as_stored(ctx.api, ctx.namespace, ctx.target, ctx.spec["container"])
            changes[0].values = {path: stored}
        return changes
