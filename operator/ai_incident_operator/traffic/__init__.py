"""Traffic routers: move a model's traffic to its fallback, one module per backend.

As Flagger's `pkg/router`: `router.Router` is the small interface (read weights,
set weights) and `get_router(kind)` is the factory the TrafficShift action
(`actions.traffic`) calls with the policy's `router.kind`:

    Service           service.py    selector moved to the fallback's (all or nothing)
    VirtualService    istio.py      Istio http route weights
    HTTPRoute         gateway.py    Gateway API backendRef weights (Services, InferencePools)
    InferenceService  kserve.py     KServe canary share back to the previous revision
    AIGatewayRoute    aigateway.py  Envoy AI Gateway AIServiceBackend weights
    Rollout           rollout.py    Argo Rollouts abort (status subresource; all or nothing)
"""

from __future__ import annotations

from .aigateway import AIGatewayRouteRouter
from .gateway import HTTPRouteRouter
from .istio import VirtualServiceRouter
from .kserve import InferenceServiceRouter
from .rollout import RolloutRouter
from .router import FALLBACK_KINDS, Router, RouterError
from .service import ServiceRouter

__all__ = ["FALLBACK_KINDS", "KINDS", "STATUS_PREFIX", "Router", "RouterError", "get_router"]

_ROUTERS: dict[str, type[Router]] = {
    r.kind: r
    for r in (
        ServiceRouter,
        VirtualServiceRouter,
        HTTPRouteRouter,
        InferenceServiceRouter,
        AIGatewayRouteRouter,
        RolloutRouter,
    )
}
KINDS = tuple(_ROUTERS)
# Values under this path go through the object's status subresource (a PUT ignores them).
STATUS_PREFIX = "/status/"


def get_router(kind: str) -> Router:
    """The router for KIND; RouterError naming the supported kinds when there is none."""
    try:
        return _ROUTERS[kind]()
    except KeyError:
        raise RouterError(
            f"router kind {kind!r} is not supported: use one of {', '.join(KINDS)}"
        ) from None
