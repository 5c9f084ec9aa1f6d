"""N open incidents over N Deployments: all mitigated, the operator at rest, its memory,
and new severity-1 incidents while the N are open.

Called by `python -m benchmarks scale`. One fresh control plane, one namespace, one
MitigationPolicy answering severity 1 with ScaleToZero, the operator limited to that
namespace. Sizes from the environment: AIINCIDENT_BENCH_SCALE_N incidents (default
1000), each naming its own Deployment at 1 replica; AIINCIDENT_BENCH_SCALE_EXTRA more
Deployments at 0 replicas that no incident names (default 0; 4000 for the aim of 1,000
incidents over 5,000 Deployments); AIINCIDENT_BENCH_SCALE_IDLE seconds per idle window
(default 60). Every Deployment, the 30 of part 4 included, is created from 8 client
threads before the operator starts, and the controller-manager has caught up with them.

1. All mitigated: once the policy is Ready, N severity-1 incidents are created from 8
   client threads. Measured from the first create until every incident has phase
   Mitigated and its Deployment spec.replicas 0, as seen by listing both (not one get per
   object) every POLL seconds; the incidents are listed as a Table of their printer
   columns, so that the polls weigh little beside the operator on a small machine.
   Then, for SETTLE_S_PER_INCIDENT * N seconds at most: until every incident has settled
   (its first evidence gathered) and the controller-manager has caught up with the
   scale-downs; when each was so.
2. Idle (once settled, or when settling timed out; the figures say how many were): two windows of IDLE seconds,
   the operator running, then stopped (SIGSTOP; SIGCONT after). A window's apiserver
   requests are the growth of the sum of apiserver_request_total in its /metrics; the
   operator's rate is the running window's minus the stopped one's (the cluster's own,
   this process's two reads of /metrics included). Its CPU share is its utime+stime
   (/proc/PID/stat) over the running window, in percent of one core.
3. Memory: the operator's RSS after the idle windows, and its peak (VmHWM).
4. New incidents while the N are open: 30 severity-1 incidents, one at a time (each once
   the previous one has settled, or after SETTLE_NEW_S if its evidence waits behind the
   N's), each on its own Deployment. Latency from the start of
   the create to the watch event that shows that Deployment at 0 replicas.

The machine's load average is recorded at the start and the end: other work on it
slows every figure down.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from ai_incident_operator import kube
from ai_incident_operator.kube import KINDS, Ref

from . import common
from .common import (
    ZeroWatcher,
    control_plane,
    cpu_seconds,
    operator_process,
    percentiles,
    rss_mib,
    save,
)

NS = "bench-scale"
LABELS = {"bench": "scale"}
ROLE = "bench-role"  # target: an incident names it; idle: none does; new: part 4
THREADS, NEW, POLL, QUIET, SETTLE_NEW_S = 8, 30, 0.5, 5.0, 10.0
# Settling (every incident's first evidence, the controller-manager's scale-downs) is
# waited for before the idle windows, so that they measure the operator at rest.
SETTLE_S_PER_INCIDENT, SETTLE_S_MIN = 0.6, 180.0
AIMS = {
    "all_mitigated_s": 60,
    "idle_requests_per_s": 5,
    "idle_cpu_percent": 5,
    "rss_mib": 150,
    "new_sev1_p99_ms": 100,
}
REQUEST_LINE = re.compile(r"^apiserver_request_total\{(.*)\} (\S+)$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="([^"]*)"')
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(f"AIINCIDENT_BENCH_SCALE_{name}", default))


# --- Objects --------------------------------------------------------------------------------


def _deployment(name: str, role: str, replicas: int) -> dict:
    return common.deployment(name, {**LABELS, ROLE: role}, replicas)


# --- Waiting and looking --------------------------------------------------------------------


def _parallel(fn: Callable[[int], object], items: Iterable[int]) -> None:
    """FN(item) for every item from THREADS client threads; the first error is raised."""
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(fn, items):
            pass


def _poll(done: Callable[[], bool], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _wait(what: str, done: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    if not _poll(done, timeout, interval):
        raise TimeoutError(f"{what} within {timeout}s; see bench-results/operator.log")


def _caught_up(role: str, replicas: int) -> bool:
    """The controller-manager is done with ROLE's Deployments: at REPLICAS, spec seen."""
    for d in kube.list_objects("Deployment", NS, f"{ROLE}={role}"):
        status = d.get("status") or {}
        if status.get("observedGeneration") != d["metadata"]["generation"]:
            return False
        if status.get("replicas", 0) != replicas:
            return False
    return True


def _policy_ready() -> bool:
    status = (kube.get(Ref("MitigationPolicy", NS, "bench")) or {}).get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return bool(ready) and ready[0].get("status") == "True"


def _settled(name: str) -> bool:
    status = (kube.get(Ref("AIIncident", NS, name)) or {}).get("status") or {}
    return bool(status.get("evidenceCollectedAt"))


def _settled_count() -> int:
    items = kube.list_objects("AIIncident", NS)
    return sum(bool((i.get("status") or {}).get("evidenceCollectedAt")) for i in items)


def _mitigated_count() -> int:
    """Incidents in phase Mitigated, from the Table of their printer columns (no bodies)."""
    table = json.loads(_get(KINDS["AIIncident"].path(NS), TABLE, [("includeObject", "None")]))
    phase = [c["name"] for c in table["columnDefinitions"]].index("Phase")
    return sum(row["cells"][phase] == "Mitigated" for row in table["rows"])


def _targets_at_zero() -> int:
    return sum(
        d["spec"].get("replicas") == 0
        for d in kube.list_objects("Deployment", NS, f"{ROLE}=target")
    )


def _get(path: str, accept: str, query: list[tuple[str, str]] | None = None) -> bytes:
    """The body of a GET of PATH answered as ACCEPT (kube's calls take and give JSON dicts)."""
    client = kube.api_client()
    request = client.param_serialize(
        method="GET",
        resource_path=path,
        query_params=query or [],
        header_params={"Accept": accept},
        auth_settings=["BearerToken"],
    )
    return client.call_api(*request, _request_timeout=kube.TIMEOUT).read()


def _apiserver_requests() -> Counter[str]:
    """apiserver_request_total so far, by 'VERB resource[/subresource]' (from /metrics)."""
    text = _get("/metrics", "text/plain").decode()
    counts: Counter[str] = Counter()
    for labels, value in REQUEST_LINE.findall(text):
        tags = dict(LABEL.findall(labels))
        resource = "/".join(p for p in (tags.get("resource"), tags.get("subresource")) if p)
        counts[f"{tags.get('verb', '?')} {resource or '(other)'}"] += float(value)
    return counts


# --- The parts ------------------------------------------------------------------------------


def _setup(n: int, extra: int) -> float:
    """Namespace, Deployments and policy; seconds until the controller-manager caught up."""
    start = time.perf_counter()
    kube.create("Namespace", "", {"metadata": {"name": NS}})
    for prefix, role, count, replicas in (("t", "target", n, 1), ("x", "idle", extra, 0),
                                          ("n", "new", NEW, 1)):  # fmt: skip
        _parallel(
            lambda i, p=prefix, r=role, k=replicas: kube.create(
                "Deployment", NS, _deployment(f"{p}{i}", r, k)
            ),
            range(count),
        )
    kube.create("MitigationPolicy", NS, common.scale_to_zero_policy(LABELS))
    timeout = 120 + (n + extra) * 0.5
    for role, replicas in (("target", 1), ("idle", 0), ("new", 1)):
        _wait(f"the {role} Deployments were not rolled out", lambda r=role, k=replicas:
              _caught_up(r, k), timeout, interval=2)  # fmt: skip
    return round(time.perf_counter() - start, 2)


def _all_mitigated(n: int) -> dict:
    timeout = max(300.0, n * 0.3)  # the aim is 60 s: a miss is measured, not cut off
    start = time.perf_counter()
    _parallel(lambda i: kube.create("AIIncident", NS, common.incident(f"i{i}", f"t{i}")), range(n))
    created = time.perf_counter()
    polls = 0

    def done() -> bool:
        nonlocal polls
        polls += 1
        return _mitigated_count() == n and _targets_at_zero() == n

    finished = _poll(done, timeout, POLL)
    end = time.perf_counter()
    figures = {
        "incidents": n,
        "client_threads": THREADS,
        "all_created_s": round(created - start, 2),
        "first_create_to_all_mitigated_s": round(end - start, 2) if finished else None,
        "poll_interval_s": POLL,
        "polls": polls,
        "incidents_mitigated": _mitigated_count(),
        "targets_at_zero_replicas": _targets_at_zero(),
    }
    return figures | _aftermath(n, start)


def _aftermath(n: int, start: float) -> dict:
    """Seconds from START until every incident had settled and until the controller-manager
    had caught up with the scale-downs (None: not in time)."""
    checks = {
        "all_settled": lambda: _settled_count() == n,
        "scale_downs_done": lambda: _caught_up("target", 0),
    }
    done: dict[str, float | None] = dict.fromkeys(checks)
    deadline = time.monotonic() + max(SETTLE_S_MIN, n * SETTLE_S_PER_INCIDENT)
    while True:
        for key, check in checks.items():
            if done[key] is None and check():
                done[key] = round(time.perf_counter() - start, 2)
        if None not in done.values() or time.monotonic() > deadline:
            break
        time.sleep(5)
    return {f"first_create_to_{key}_s": seconds for key, seconds in done.items()}


def _window(pid: int, seconds: float) -> tuple[Counter[str], float, float]:
    """The apiserver's requests, PID's CPU seconds and the wall seconds of a SECONDS wait."""
    requests, cpu, start = _apiserver_requests(), cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - start
    return _apiserver_requests() - requests, cpu_seconds(pid) - cpu, wall


def _idle(pid: int, seconds: float) -> dict:
    running, cpu, running_s = _window(pid, seconds)
    os.kill(pid, signal.SIGSTOP)
    try:
        paused, _, paused_s = _window(pid, seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    running_rate = sum(running.values()) / running_s
    paused_rate = sum(paused.values()) / paused_s
    by_kind = {k: running[k] - paused[k] for k in running.keys() | paused.keys()}
    top = sorted((kv for kv in by_kind.items() if kv[1]), key=lambda kv: -abs(kv[1]))[:12]
    return {
        "window_s": seconds,
        "apiserver_requests_per_s_operator_running": round(running_rate, 2),
        "apiserver_requests_per_s_operator_paused": round(paused_rate, 2),
        "operator_requests_per_s": round(running_rate - paused_rate, 2),
        # Per verb and resource: requests in the running window minus the paused one.
        "operator_requests_by_verb_resource": {k: round(v) for k, v in top},
        "operator_cpu_s": round(cpu, 2),
        "operator_cpu_percent_of_one_core": round(100 * cpu / running_s, 2),
    }


def _new_incidents() -> dict:
    watcher = ZeroWatcher(NS, label_selector=f"{ROLE}=new")
    time.sleep(1)  # the watch is established
    latencies, settled = [], 0
    for i in range(NEW):
        start = time.perf_counter()
        kube.create("AIIncident", NS, common.incident(f"new{i}", f"n{i}"))
        latencies.append((watcher.wait(f"n{i}") - start) * 1000)
        # One at a time: the previous one's evidence gathering must not share the CPU.
        settled += _poll(lambda i=i: _settled(f"new{i}"), SETTLE_NEW_S, 0.02)
    watcher.stop()
    return {
        "incidents": NEW,
        "create_to_target_mitigated": percentiles(latencies),
        f"settled_within_{SETTLE_NEW_S:g}s": settled,
    }


def _met(figures: dict) -> dict[str, bool]:
    mitigated_s = figures["all_mitigated"]["first_create_to_all_mitigated_s"]
    idle = figures["idle"]
    return {
        "all_mitigated_s": mitigated_s is not None and mitigated_s <= AIMS["all_mitigated_s"],
        "idle_requests_per_s": idle["operator_requests_per_s"] <= AIMS["idle_requests_per_s"],
        "idle_cpu_percent": idle["operator_cpu_percent_of_one_core"] <= AIMS["idle_cpu_percent"],
        "rss_mib": figures["operator_rss_mib"]["after_idle"] <= AIMS["rss_mib"],
        "new_sev1_p99_ms": figures["new_sev1"]["create_to_target_mitigated"]["p99_ms"]
        <= AIMS["new_sev1_p99_ms"],
    }


def run() -> dict:
    n, extra, idle_s = _setting("N", 1000), _setting("EXTRA", 0), _setting("IDLE", 60)
    load_start = os.getloadavg()
    with control_plane():
        setup_s = _setup(n, extra)
        with operator_process("--namespace", NS) as op:
            _wait("the policy was never Ready", _policy_ready, 30, 0.1)
            mitigated = _all_mitigated(n)
            time.sleep(QUIET)
            settled_before = _settled_count()
            idle = _idle(op.proc.pid, idle_s)
            idle["incidents_settled_before"] = settled_before
            idle["incidents_settled_after"] = _settled_count()
            rss = {"after_idle": rss_mib(op.proc.pid), "peak_vmhwm": rss_mib(op.proc.pid, "VmHWM")}
            time.sleep(QUIET)  # what fell due while it was stopped
            new = _new_incidents()
            rss["after_new_incidents"] = rss_mib(op.proc.pid)
    figures = {
        "incidents": n,
        "deployments": {"targets": n, "extra_idle": extra, "for_new_incidents": NEW},
        "machine_cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "setup_s": setup_s,
        "all_mitigated": mitigated,
        "idle": idle,
        "operator_rss_mib": rss,
        "new_sev1": new,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "aims": AIMS,
    }
    figures["aims_met"] = _met(figures)
    save("scale", figures)
    return figures
