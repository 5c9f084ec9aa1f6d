"""What the model-serving controllers would write, for the tests: KServe, LWS, Argo Rollouts.

The local control plane runs the upstream CRDs but none of their controllers, so no
InferenceService, LeaderWorkerSet or Rollout ever reports itself ready, and the
operator (which gives traffic back only to a ready model) would wait forever.
`Controllers(namespace)` watches those kinds in one namespace and plays each
controller's part that the operator reads, through the status subresource, as the
controller does:

- KServe (InferenceService, LLMInferenceService): `observedGeneration`, the `Ready`
  condition (False/Stopped while `serving.kserve.io/stop: "true"`), and for an
  InferenceService in Serverless mode a new predictor revision per predictor change
  (`status.components.predictor.latestReadyRevision`, `previousRolledoutRevision`) and
  its canary rollout: below `canaryTrafficPercent: 100` the latest revision takes that
  share of `traffic` and `latestRolledoutRevision` the rest.
- LeaderWorkerSet: a ControllerRevision per template change (named, labelled and
  shaped as LWS makes them, the older ones truncated once rolled out) and
  `replicas`/`readyReplicas`/`updatedReplicas`, `Available`.
- Argo Rollout: a ReplicaSet per pod template (`<name>-<hash>`, the
  `rollouts-pod-template-hash` label, the `rollout.argoproj.io/revision` annotation;
  the kube-controller-manager makes its Pods), the older ones scaled to 0, and
  `phase: Healthy` with the replica counts.

StatefulSets need nothing here: the kube-controller-manager runs their controller
and `kubelet.Kubelet` marks their Pods Ready. `hold(kind)` stops answering for a
kind (the model is loading) until `release(kind)`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kubernetes

from ai_incident_operator import kube
from ai_incident_operator.errors import APIError
from ai_incident_operator.kube import Ref
from ai_incident_operator.resources import KINDS

Body = dict[str, Any]
STOP = "serving.kserve.io/stop"
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
LWS_REVISION = "leaderworkerset.sigs.k8s.io/template-revision-hash"
ROLLOUT_HASH = "rollouts-pod-template-hash"
ROLLOUT_REVISION = "rollout.argoproj.io/revision"
SERVED = ("InferenceService", "LLMInferenceService", "LeaderWorkerSet", "Rollout")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash(value: Any, size: int = 10) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:size]


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> Body:
    cond = {"type": type_, "status": "True" if ok else "False", "lastTransitionTime": _now()}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _same(current: Body, wanted: Body) -> bool:
    """Whether CURRENT already says what WANTED says (transition times aside)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "lastTransitionTime"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return all(strip(current.get(k)) == strip(v) for k, v in wanted.items())


def _owner(obj: Body) -> Body:
    return {
        "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
    }  # fmt: skip


@dataclass
class _Revisions:
    """An InferenceService's predictor revisions, as Knative and KServe keep them."""

    digest: str = ""  # of the predictor template the latest revision was made from
    number: int = 0
    names: list[str] = field(default_factory=list)
    rolled: str = ""  # the last revision rolled out with all of the traffic
    previous: str = ""  # the one rolled out before it


class Controllers:
    """Plays the status part of KServe, LWS and Argo Rollouts in NAMESPACE until stopped."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._stop = threading.Event()
        self._held: set[str] = set()
        self._watches: list[kubernetes.watch.Watch] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._isvc: dict[str, _Revisions] = {}  # by InferenceService uid

    def __enter__(self) -> Controllers:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> Controllers:
        for kind in SERVED:
            thread = threading.Thread(target=self._run, args=(kind,), name=f"ctl-{kind}",
                                      daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for w in list(self._watches):
            w.stop()

    def hold(self, kind: str) -> None:
        """KIND's controller stops reporting (its model loads), until `release`."""
        self._held.add(kind)

    def release(self, kind: str) -> None:
        self._held.discard(kind)
        for obj in kube.list_objects(kind, self.namespace):
            self.reconcile({"kind": kind, **obj})

    # --- the loop --------------------------------------------------------------------------

    def _run(self, kind: str) -> None:
        k = KINDS[kind]
        api = kubernetes.client.CustomObjectsApi()
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            self._watches.append(watch)
            try:
                for event in watch.stream(api.list_namespaced_custom_object, k.group, k.version,
                                          self.namespace, k.plural, timeout_seconds=30):  # fmt: skip
                    if self._stop.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED") and kind not in self._held:
                        self.reconcile(event["object"])
            except Exception:  # the apiserver restarted or went away: watch again
                self._stop.wait(0.5)
            finally:
                with contextlib.suppress(ValueError):
                    self._watches.remove(watch)

    def reconcile(self, obj: Body) -> None:
        """One reconcile of OBJ, as its controller would do it; errors are retried on the
        next event (a conflict with the operator's own write, an object deleted meanwhile)."""
        if obj["metadata"].get("deletionTimestamp"):
            return
        with self._lock, contextlib.suppress(APIError, kubernetes.client.ApiException):
            wanted = getattr(self, f"_{obj['kind'].lower()}")(obj)
            status = obj.get("status") or {}
            if wanted is not None and not _same(status, wanted):
                ref = Ref(obj["kind"], self.namespace, obj["metadata"]["name"])
                kube.patch_status(ref, wanted)

    # --- KServe ----------------------------------------------------------------------------

    def _kserve_conditions(self, obj: Body) -> list[Body]:
        if ((obj["metadata"].get("annotations") or {}).get(STOP)) == "true":
            words = "The InferenceService is stopped"
            return [_condition("PredictorReady", False, "Stopped", words),
                    _condition("Ready", False, "Stopped", words),
                    _condition("Stopped", True)]  # fmt: skip
        return [_condition("PredictorReady", True), _condition("IngressReady", True),
                _condition("Ready", True), _condition("Stopped", False)]  # fmt: skip

    def _inferenceservice(self, obj: Body) -> Body:
        meta, name = obj["metadata"], obj["metadata"]["name"]
        # Serverless mode: Knative makes a revision for each new predictor template (its
        # canaryTrafficPercent is traffic, not template). With a canary percent below 100,
        # the latest revision takes that share and the last one rolled out the rest, until
        # the canary is promoted (the percent removed or 100).
        predictor = copy.deepcopy((obj.get("spec") or {}).get("predictor") or {})
        canary = predictor.pop("canaryTrafficPercent", None)
        digest = _hash(predictor)
        state = self._isvc.setdefault(meta["uid"], _Revisions())
        if digest != state.digest:
            state.digest, state.number = digest, state.number + 1
            state.names.append(f"{name}-predictor-{state.number:05d}")
        latest = state.names[-1]
        split = isinstance(canary, int) and canary < 100 and state.rolled not in ("", latest)
        if split:
            traffic = [
                {"revisionName": latest, "percent": canary, "latestRevision": True, "tag": "latest"},
                {"revisionName": state.rolled, "percent": 100 - canary, "latestRevision": False,
                 "tag": "prev"},
            ]  # fmt: skip
        else:
            if state.rolled != latest:
                state.previous, state.rolled = state.rolled, latest
            traffic = [{"revisionName": latest, "percent": 100, "latestRevision": True}]
        component: Body = {
            "latestCreatedRevision": latest, "latestReadyRevision": latest,
            "latestRolledoutRevision": state.rolled, "traffic": traffic,
            "url": f"http://{name}-predictor.{self.namespace}.example.com",
        }  # fmt: skip
        if state.previous:
            component["previousRolledoutRevision"] = state.previous
        return {
            "observedGeneration": meta["generation"],
            "conditions": self._kserve_conditions(obj),
            "components": {"predictor": component},
            "url": f"http://{name}.{self.namespace}.example.com",
        }

    def _llminferenceservice(self, obj: Body) -> Body:
        return {
            "observedGeneration": obj["metadata"]["generation"],
            "conditions": self._kserve_conditions(obj),
        }

    # --- LeaderWorkerSet -------------------------------------------------------------------

    def _leaderworkerset(self, obj: Body) -> Body:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        template = copy.deepcopy(spec.get("leaderWorkerTemplate") or {})
        network = copy.deepcopy(spec.get("networkConfig") or {"subdomainPolicy": "Shared"})
        template.pop("maxGroupRestarts", None)
        template["$patch"], network["$patch"] = "replace", "replace"
        data = {"spec": {"leaderWorkerTemplate": template, "networkConfig": network}}
        key = _hash(data)
        mine = f"{LWS_NAME}={meta['name']}"
        revisions = kube.list_objects("ControllerRevision", self.namespace, mine)
        if not any((r["metadata"].get("labels") or {}).get(LWS_REVISION) == key for r in revisions):
            number = max([r.get("revision", 0) for r in revisions], default=0) + 1
            kube.create("ControllerRevision", self.namespace, {
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": f"{meta['name']}-{key}-{number}",
                             "labels": {LWS_NAME: meta["name"], LWS_REVISION: key},
                             "ownerReferences": [_owner(obj)]},
                "data": data, "revision": number,
            })  # fmt: skip
        # Rolled out at once: LWS then truncates every revision but the current one.
        for old in revisions:
            if (old["metadata"].get("labels") or {}).get(LWS_REVISION) != key:
                kube.delete(Ref("ControllerRevision", self.namespace, old["metadata"]["name"]))
        replicas = spec.get("replicas", 1)
        return {
            "observedGeneration": meta["generation"],
            "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas,
            "hpaPodSelector": f"{LWS_NAME}={meta['name']},leaderworkerset.sigs.k8s.io/worker-index=0",
            "conditions": [_condition("Available", True, "AllGroupsReady",
                                      "All replicas are ready"),
                           _condition("Progressing", False, "Ready", "Replicas are progressing")],
        }  # fmt: skip

    # --- Argo Rollout ----------------------------------------------------------------------

    def _rollout(self, obj: Body) -> Body:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        template = spec.get("template") or {}
        pod_hash = _hash(template)
        replicas = spec.get("replicas", 1)
        owned = [
            rs for rs in kube.list_objects("ReplicaSet", self.namespace)
            if any(o.get("uid") == meta["uid"] for o in rs["metadata"].get("ownerReferences") or [])
        ]  # fmt: skip
        top = max((int((rs["metadata"].get("annotations") or {}).get(ROLLOUT_REVISION, 0))
                   for rs in owned), default=0)  # fmt: skip
        current = next((rs for rs in owned
                        if (rs["metadata"].get("labels") or {}).get(ROLLOUT_HASH) == pod_hash),
                       None)  # fmt: skip
        if current is None:
            body = copy.deepcopy(template)
            labels = {**((body.get("metadata") or {}).get("labels") or {}), ROLLOUT_HASH: pod_hash}
            body.setdefault("metadata", {})["labels"] = labels
            selector = copy.deepcopy(spec.get("selector") or {"matchLabels": {}})
            selector.setdefault("matchLabels", {})[ROLLOUT_HASH] = pod_hash
            kube.create("ReplicaSet", self.namespace, {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{meta['name']}-{pod_hash}", "labels": labels,
                             "annotations": {ROLLOUT_REVISION: str(top + 1)},
                             "ownerReferences": [_owner(obj)]},
                "spec": {"replicas": replicas, "selector": selector, "template": body},
            })  # fmt: skip
        else:
            revision = (current["metadata"].get("annotations") or {}).get(ROLLOUT_REVISION)
            ref = Ref("ReplicaSet", self.namespace, current["metadata"]["name"])
            patch: Body = {}
            if current["spec"].get("replicas") != replicas:
                patch["spec"] = {"replicas": replicas}
            if revision != str(top) and any(rs is not current for rs in owned):
                # A way back to an older template: Argo gives that ReplicaSet the next revision.
                patch["metadata"] = {"annotations": {ROLLOUT_REVISION: str(top + 1)}}
            if patch:
                kube.patch(ref, patch)
        for rs in owned:
            if rs is not current and (rs["spec"].get("replicas") or 0) > 0:
                kube.patch(Ref("ReplicaSet", self.namespace, rs["metadata"]["name"]),
                           {"spec": {"replicas": 0}})  # fmt: skip
        return {
            "observedGeneration": str(meta["generation"]),
            "phase": "Healthy", "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas, "HPAReplicas": replicas,
            "currentPodHash": pod_hash, "stableRS": pod_hash,
            "selector": ",".join(f"{k}={v}" for k, v in
                                 ((spec.get("selector") or {}).get("matchLabels") or {}).items()),
        }  # fmt: skip
