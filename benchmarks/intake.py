"""Alertmanager intake: one alert POST -> target mitigated, and an alert storm.

Called by `python -m benchmarks intake` (and `make bench`). One fresh control plane,
one operator process watching two namespaces, each under a MitigationPolicy whose
triage makes `severity=critical` alerts severity 1 and answers severity 1 with
ScaleToZero:

1. Latency (namespace bench-intake): N alerts, each for its own Deployment, posted
   one at a time as Alertmanager's version 4 payload, each once the previous
   incident has settled (its evidence gathered). Measured from the start of the POST
   to the watch event that shows the Deployment at 0 replicas.
2. Storm (namespace bench-storm, fresh Deployments): 200 groups of 10 alerts (one
   group per Deployment, alerts differing by alertname), every group posted 3 times,
   in a shuffled order, by 8 concurrent senders with a keep-alive connection each.
   Reported: non-2xx answers, incidents, the time from the first POST until every
   incident is Mitigated, how many incident writes that took, and the operator's memory.

The payloads are built here (not from tests/): a few fields are all the webhook reads.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes

from ai_incident_operator import kube
from ai_incident_operator.kube import KINDS, Ref

from .common import (
    Operator,
    ZeroWatcher,
    control_plane,
    cpu_seconds,
    operator_process,
    percentiles,
    rss_mib,
    save,
)

NS = "bench-intake"
STORM_NS = "bench-storm"
LABELS = {"bench": "intake"}
CATEGORY = "HarmfulOutput"
STARTS = "2026-01-01T10:00:00.123456789Z"
GROUPS, ALERTS_PER_GROUP, DELIVERIES, SENDERS, SEED = 200, 10, 3, 8, 4
WARMUP = 5  # the first alerts of part 1 warm the operator's caches up; not in the figures


# --- Objects and payloads -------------------------------------------------------------------


def _deployment(name: str) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "llm", "image": "llm:1"}]}}},
    }  # fmt: skip


def _policy() -> dict:
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
        "metadata": {"name": "bench"},
        "spec": {"targetSelector": {"matchLabels": LABELS},
                 "triage": {"defaultSeverity": 3,
                            "rules": [{"when": {"alertLabels": {"severity": "critical"}},
                                       "severity": 1}]},
                 "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}]},
    }  # fmt: skip


def _alert(namespace: str, deployment: str, alertname: str) -> dict:
    """One firing alert as Alertmanager posts it; any stable hex string does as fingerprint."""
    labels = {
        "alertname": alertname,
        "namespace": namespace,
        "deployment": deployment,
        "ai_incident_category": CATEGORY,
        "severity": "critical",
    }
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"{alertname} on {deployment}"},
        "startsAt": STARTS,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=ai_harmful_output_rate",
        "fingerprint": hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16],
    }


def _payload(alerts: list[dict]) -> bytes:
    """A version 4 webhook body holding ALERTS (one Alertmanager group)."""
    common = {
        k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)
    }
    grouped_by = ("namespace", "deployment", "ai_incident_category")
    return json.dumps(
        {
            "version": "4",
            "groupKey": "{}:" + json.dumps({k: common.get(k) for k in grouped_by}, sort_keys=True),
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "ai-incident-operator",
            "groupLabels": {k: common[k] for k in grouped_by if k in common},
            "commonLabels": common,
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts,
        }
    ).encode()


# --- Talking to the webhook and watching the apiserver --------------------------------------


class Sender:
    """One keep-alive connection to the operator's webhook, as one Alertmanager holds."""

    def __init__(self, op: Operator) -> None:
        url = urlsplit(op.webhook_url)
        self.path = url.path
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        self.headers = {
            "Authorization": f"Bearer {op.token}",
            "Content-Type": "application/json",
        }

    def post(self, body: bytes) -> tuple[int, dict | str]:
        self.conn.request("POST", self.path, body, self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.conn.request("GET", "/readyz")
                resp = self.conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return
            except OSError:
                self.conn.close()
            time.sleep(0.1)
        raise RuntimeError("webhook not ready; see bench-results/operator.log")

    def close(self) -> None:
        self.conn.close()


class IncidentWatcher:
    """Watches the AIIncidents of a namespace from now on: counts every write (an ADDED or
    MODIFIED event is one new resourceVersion) and when each is first seen Mitigated."""

    def __init__(self, namespace: str) -> None:
        kind = KINDS["AIIncident"]
        self.api = kubernetes.client.CustomObjectsApi()
        self.args = (kind.group, kind.version, namespace, kind.plural)
        # Watch from the listing's resourceVersion: no write between now and the first
        # event goes unseen.
        listed = self.api.list_namespaced_custom_object(*self.args)
        self.start_version = listed["metadata"]["resourceVersion"]
        self.writes: Counter[str] = Counter()  # event type -> count
        self.mitigated: dict[str, float] = {}
        self.cond = threading.Condition()
        self.watch = kubernetes.watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # No timeout_seconds: the client resumes from the last resourceVersion by itself.
        stream = self.watch.stream(
            self.api.list_namespaced_custom_object, *self.args, resource_version=self.start_version
        )
        try:
            for event in stream:
                obj = event["object"]
                with self.cond:
                    self.writes[event["type"]] += 1
                    if (obj.get("status") or {}).get("phase") == "Mitigated":
                        self.mitigated.setdefault(obj["metadata"]["name"], time.perf_counter())
                    self.cond.notify_all()
        except Exception:
            if not self.stopped:  # else: the control plane went away under the stopped watch
                raise

    stopped = False

    def wait_mitigated(self, count: int, timeout: float) -> float | None:
        """When the COUNTth incident was first seen Mitigated (perf_counter); None on timeout."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.mitigated) >= count, timeout):
                return None
            return max(self.mitigated.values())

    def stop(self) -> None:
        self.stopped = True
        self.watch.stop()  # the daemon thread ends at its next event


def _wait(what: str, done, timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout}s; see bench-results/operator.log")
        time.sleep(interval)


def _settled(namespace: str, name: str) -> bool:
    status = (kube.get(Ref("AIIncident", namespace, name)) or {}).get("status") or {}
    return bool(status.get("evidenceCollectedAt"))


def _control_plane_pids(kubeconfig: Path) -> dict[str, int]:
    """The local control plane's processes by name (none for USE_EXISTING_CLUSTER=1)."""
    pids = {}
    for pid_file in kubeconfig.parent.glob("*.pid"):
        pid = int(pid_file.read_text())
        if Path(f"/proc/{pid}").exists():
            pids[pid_file.stem] = pid
    return pids


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), sum(ticks) / os.sysconf("SC_CLK_TCK")


def _policy_checked(namespace: str) -> bool:
    policy = kube.get(Ref("MitigationPolicy", namespace, "bench")) or {}
    return bool((policy.get("status") or {}).get("conditions"))


def _clear(namespace: str) -> float:
    """Delete NAMESPACE's incidents and wait until they are gone (the operator undoes their
    mitigations): their resync timers would otherwise run through the storm. Seconds taken."""
    start = time.perf_counter()
    for incident in kube.list_objects("AIIncident", namespace):
        kube.delete(Ref("AIIncident", namespace, incident["metadata"]["name"]))
    _wait(
        f"the incidents of {namespace} were not deleted",
        lambda: not kube.list_objects("AIIncident", namespace),
        60,
        interval=0.2,
    )
    return round(time.perf_counter() - start, 2)


# --- The two parts --------------------------------------------------------------------------


def _latency(op: Operator, n: int) -> dict:
    watcher = ZeroWatcher(NS)
    time.sleep(1)  # the watch is established
    sender = Sender(op)
    sender.ready()
    to_zero, replies = [], []
    for i in range(n):
        body = _payload([_alert(NS, f"m{i}", "ModelHarmfulOutput")])
        start = time.perf_counter()
        status, reply = sender.post(body)
        replied = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"alert {i}: HTTP {status}: {reply}")
        to_zero.append((watcher.wait(f"m{i}") - start) * 1000)
        replies.append((replied - start) * 1000)
        # One at a time: the previous incident's evidence gathering (after its mitigation)
        # must not share the CPU with this one's. The storm measures throughput.
        name = reply["incidents"][0]["name"]
        _wait(f"incident {name} did not settle", lambda name=name: _settled(NS, name), 30)
    watcher.stop()
    sender.close()
    return {
        "alerts": n,
        "warmup_alerts_left_out": WARMUP,
        "post_to_target_mitigated": percentiles(to_zero[WARMUP:]),
        "post_answered": percentiles(replies[WARMUP:]),
    }


def _storm(op: Operator, kubeconfig: Path) -> dict:
    bodies = [
        _payload(
            [_alert(STORM_NS, f"s{g}", f"HarmfulOutput{a:02d}") for a in range(ALERTS_PER_GROUP)]
        )
        for g in range(GROUPS)
    ]
    order = [g for g in range(GROUPS) for _ in range(DELIVERIES)]
    random.Random(SEED).shuffle(order)
    lock = threading.Lock()
    statuses: Counter[int] = Counter()
    results: Counter[str] = Counter()  # the webhook's answer per group: created|updated|unchanged
    errors: list[str] = []
    post_ms: list[float] = []
    watcher = IncidentWatcher(STORM_NS)
    rss_before = rss_mib(op.proc.pid)
    senders = [Sender(op) for _ in range(SENDERS)]
    for s in senders:
        s.ready()
    go = threading.Barrier(SENDERS + 1)

    def send(sender: Sender) -> None:
        go.wait()
        while True:
            with lock:
                if not order:
                    return
                g = order.pop()
            start = time.perf_counter()
            try:
                status, reply = sender.post(bodies[g])
            except (OSError, http.client.HTTPException) as err:
                with lock:
                    errors.append(f"group {g}: {err!r}")
                sender.conn.close()  # the next request opens a new connection
                continue
            took = (time.perf_counter() - start) * 1000
            with lock:
                statuses[status] += 1
                post_ms.append(took)
                if status == 200:
                    results.update(d["result"] for d in reply["incidents"])
                elif len(errors) < 10:
                    errors.append(f"group {g}: HTTP {status}: {str(reply)[:300]}")

    threads = [threading.Thread(target=send, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    # Who used the CPU during the storm: the operator, the control plane, this process.
    pids = {"operator": op.proc.pid, **_control_plane_pids(kubeconfig), "benchmark": os.getpid()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before, total_before = _machine_busy()
    first_post = time.perf_counter()
    go.wait()
    for t in threads:
        t.join()
    all_answered = time.perf_counter()
    for s in senders:
        s.close()

    # Aim 20 s, but wait longer so that a miss is measured rather than cut off.
    all_mitigated = watcher.wait_mitigated(GROUPS, timeout=60)
    rss_mitigated = rss_mib(op.proc.pid)
    storm_s = time.perf_counter() - first_post
    cpu_storm = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
    busy_after, total_after = _machine_busy()
    mitigated_seen = len(watcher.mitigated)

    # Settled (evidence gathered for all): the operator's memory once the storm's work is done.
    def all_settled() -> bool:
        items = kube.list_objects("AIIncident", STORM_NS)
        return all((i.get("status") or {}).get("evidenceCollectedAt") for i in items)

    settle_start = time.perf_counter()
    try:
        _wait("the storm's incidents did not all settle", all_settled, 60, interval=0.5)
        settled_s = round(time.perf_counter() - first_post, 2)
    except TimeoutError:
        settled_s = None
    settle_wait = time.perf_counter() - settle_start
    rss_settled = rss_mib(op.proc.pid)
    rss_peak = rss_mib(op.proc.pid, "VmHWM")
    watcher.stop()

    incidents = kube.list_objects("AIIncident", STORM_NS)
    alerts_held = Counter(len((i.get("spec") or {}).get("alerts") or []) for i in incidents)
    phases = Counter((i.get("status") or {}).get("phase", "none") for i in incidents)
    non_2xx = sum(n for code, n in statuses.items() if not 200 <= code < 300) + len(errors)
    return {
        "groups": GROUPS,
        "alerts_per_group": ALERTS_PER_GROUP,
        "posts": GROUPS * DELIVERIES,
        "alert_deliveries": GROUPS * DELIVERIES * ALERTS_PER_GROUP,
        "senders": SENDERS,
        "http_status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "non_2xx": non_2xx,
        "errors_sample": errors[:10],
        "webhook_results_per_group_delivery": dict(results),
        "post_answered": percentiles(post_ms) if post_ms else None,
        "all_posts_answered_s": round(all_answered - first_post, 2),
        "incidents": len(incidents),
        "incidents_by_alerts_held": {str(k): v for k, v in sorted(alerts_held.items())},
        "incidents_by_final_phase": dict(phases),
        "incidents_seen_mitigated": mitigated_seen,
        "first_post_to_all_mitigated_s": (
            round(all_mitigated - first_post, 2) if all_mitigated is not None else None
        ),
        "first_post_to_all_settled_s": settled_s,
        "settle_wait_s": round(settle_wait, 2),
        # Spec writes: metadata.generation starts at 1 on create and grows by one per spec
        # change (status and metadata writes leave it alone), so 200 means one write per
        # group and none for redeliveries.
        "incident_spec_writes_generation_sum": sum(
            i["metadata"].get("generation", 0) for i in incidents
        ),
        # Every write of any kind (spec, status, metadata: intake and operator): the
        # resourceVersion changes a watch saw from before the first POST until all settled.
        "incident_writes_all_resource_version_changes": sum(watcher.writes.values()),
        "incident_watch_events": dict(watcher.writes),
        # From the first POST until all were Mitigated (or the wait gave up): how much of
        # a core the operator used, and how busy the whole machine (all its CPUs) was.
        # "others": the machine's busy CPU time not used by the processes above; when it is
        # large, something else on the machine slowed this run down.
        "cpu_s_until_all_mitigated": {
            **cpu_storm,
            "others": round(busy_after - busy_before - sum(cpu_storm.values()), 2),
        },
        "operator_cores_busy_until_all_mitigated": round(cpu_storm["operator"] / storm_s, 2),
        "machine_cpus": os.cpu_count(),
        "machine_busy_fraction_until_all_mitigated": round(
            (busy_after - busy_before) / max(total_after - total_before, 1e-9), 2
        ),
        "operator_rss_mib": {
            "before_storm": rss_before,
            "all_mitigated": rss_mitigated,
            "all_settled": rss_settled,
            "peak_vmhwm": rss_peak,
        },
    }


def run(n: int = 110) -> dict:
    with control_plane() as kubeconfig:
        for ns, prefix, count in ((NS, "m", n), (STORM_NS, "s", GROUPS)):
            kube.create("Namespace", "", {"metadata": {"name": ns}})
            for i in range(count):
                kube.create("Deployment", ns, _deployment(f"{prefix}{i}"))
            kube.create("MitigationPolicy", ns, _policy())
        with operator_process("--namespace", NS, "--namespace", STORM_NS) as op:
            for ns in (NS, STORM_NS):
                _wait(f"policy in {ns} was never checked", lambda ns=ns: _policy_checked(ns), 30)
            latency = _latency(op, n)
            latency["cleanup_s"] = _clear(NS)
            storm = _storm(op, kubeconfig)

    figures = {
        "latency": latency,
        "storm": storm,
        "aims": {
            "latency_post_to_target_mitigated_p50_ms_max": 50,
            "storm_non_2xx": 0,
            "storm_incidents": GROUPS,
            "storm_first_post_to_all_mitigated_s_max": 20,
            "storm_incident_spec_writes_generation_sum": GROUPS,
        },
    }
    save("intake", figures)
    return figures
