"""Fuzzed bodies against the real intake (issue 11, finding 8: 10,000 with AIINCIDENT_FUZZ_BODIES).

A seeded generator (reproducible: the seed is in the test) mixes Alertmanager payloads
(mapped, unmapped, protected, outside the reach, resolved, many alerts), payloads with
broken fields, broken JSON, random bytes, deep nesting, oversized bodies, odd content
types and tokens. Four clients post them on keep-alive connections to an `aiincident
run` against the real apiserver. No answer may be a 5xx, and the operator's resident
memory (VmRSS from /proc) must end within 20 % of where it started: after a warm-up
of the same traffic, so that lazily imported code and the thread pool are counted in
the start.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from ai_incident_operator import kube

from alertkit import am_alert, am_payload
from kit import OPERATOR_ENV, OperatorProcess, wait_for

pytestmark = pytest.mark.integration
SEED = 20261101
# 10,000 (the figure) takes about 25 minutes here, too long for `make test`:
# the suite sends 500; AIINCIDENT_FUZZ_BODIES=10000 sends the full run.
BODIES = int(os.environ.get("AIINCIDENT_FUZZ_BODIES", "500"))
WARMUP = max(BODIES // 10, 100)
CLIENTS = 4
DEPLOYMENTS = [f"model-{i}" for i in range(12)]
CATEGORIES = ["HarmfulOutput", "DataLeak", "cost_anomaly", "Other", "nonsense", ""]


class Fuzz:
    """Bodies (bytes, content type, token choice) from one seeded generator."""

    def __init__(self, rng: random.Random, target: str, home: str) -> None:
        self.rng, self.target, self.home = rng, target, home

    def text(self, most: int = 40) -> str:
        alphabet = "abcz09-_./:=é😀\\\"' \x00\u202e"
        return "".join(self.rng.choices(alphabet, k=self.rng.randint(0, most)))

    def labels(self) -> dict[str, str]:
        rng = self.rng
        labels: dict[str, str] = {"alertname": rng.choice(["Harm", "Drift", "Cost", self.text(8)])}
        namespace = rng.choice([self.target] * 6 + [self.home, "kube-system", "ghost-ns", "", self.text(10)])  # fmt: skip
        if namespace:
            labels["namespace"] = namespace
        roll = rng.random()
        if roll < 0.7:
            labels["deployment"] = rng.choice(DEPLOYMENTS)
        elif roll < 0.75:
            labels["deployment"] = f"rand-{rng.randrange(10**6)}"  # a new incident each time
        elif roll < 0.85:
            labels["model"] = rng.choice(["chat", "Bad Model", self.text(12)])
        if rng.random() < 0.8:
            labels["ai_incident_category"] = rng.choice(CATEGORIES)
        for _ in range(rng.randint(0, 4)):
            labels[self.text(10) or "x"] = self.text(30)
        return labels

    def alert(self) -> dict:
        rng = self.rng
        status = rng.choice(["firing", "firing", "resolved"])
        alert = am_alert(status, **self.labels())
        alert["labels"] = {**alert["labels"], **self.labels()} if rng.random() < 0.1 else alert["labels"]  # fmt: skip
        if rng.random() < 0.02:
            alert["annotations"] = {"description": "x" * rng.randint(1000, 20000)}
        return alert

    def broken(self, alert: dict) -> dict:
        """ALERT, one of its fields of the wrong kind now and then."""
        if self.rng.random() < 0.15:
            key = self.rng.choice(list(alert))
            return {**alert, key: self.rng.choice([None, 7, [], {}, self.text(), True, {"a": 1}])}
        return alert

    def body(self) -> tuple[bytes, str, str]:
        """(body, content type, token: 'good' | 'bad' | 'none')."""
        rng = self.rng
        token = rng.choices(["good", "bad", "none"], [94, 3, 3])[0]
        kind = rng.random()
        if kind < 0.50:
            count = rng.choice([1, 1, 1, 2, 3, 5, 10]) if rng.random() > 0.002 else 1001
            payload = am_payload(*(self.alert() for _ in range(count)))
            payload["alerts"] = [self.broken(a) for a in payload["alerts"]]
            if rng.random() < 0.1:
                payload[rng.choice(list(payload))] = rng.choice([None, 3, "x", [], {}])
            data = json.dumps(payload).encode()
        elif kind < 0.65:
            data = json.dumps(am_payload(self.alert())).encode()
            data = data[: rng.randrange(len(data))]  # truncated
        elif kind < 0.78:
            data = rng.randbytes(rng.randint(0, 2000))
        elif kind < 0.86:
            depth = rng.randint(10, 20_000)
            data = b"[" * depth + b"]" * depth
        elif kind < 0.95:
            data = json.dumps(rng.choice([[], {}, None, 1, "alerts", {"alerts": {}}])).encode()
        elif kind < 0.995:
            data = json.dumps({"alerts": [self.text(200) for _ in range(100)]}).encode()
        else:
            data = b'{"alerts": [' + b'"' + b"x" * (1 << 20) + b'"]}'  # beyond 1 MiB
        content_type = rng.choices(
            ["application/json", "text/plain", "application/json; charset=latin-1", ""],
            [95, 2, 2, 1],
        )[0]
        return data, content_type, token


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Client:
    """One keep-alive connection, opened again when the server closes it."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, content_type: str, token: str) -> int:
        headers = {"Content-Type": content_type} if content_type else {}
        if token != "none":
            headers["Authorization"] = f"Bearer {self.token if token == 'good' else 'wrong'}"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request("POST", "/api/v1/alerts", body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status
            except (ConnectionError, http.client.HTTPException):
                # Closed by the server after an answer that ends the connection (413).
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture
def fuzz_namespaces(cluster) -> Iterator[tuple[str, str]]:
    core, custom = kubernetes.client.CoreV1Api(), kubernetes.client.CustomObjectsApi()
    names = [f"solo-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        core.create_namespace({"metadata": {"name": name}})
    yield names[0], names[1]
    for name in names:
        for item in kube.list_objects("AIIncident", name):
            custom.patch_namespaced_custom_object(
                "aiincident.io", "v1alpha1", name, "aiincidents", item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )  # fmt: skip
        core.delete_namespace(name)


# A volume test: 10,000 real requests (each valid one a few apiserver round trips) take
# longer than the suite's per-test default on a busy 2-core machine; not a wait for a race.
@pytest.mark.timeout(max(300, BODIES // 3))  # a volume of requests, not a wait on a race
def test_fuzzed_bodies_give_no_5xx_and_memory_comes_back(fuzz_namespaces):
    target, home = fuzz_namespaces
    proc = OperatorProcess(
        "intake-fuzz", "--namespace", target, "--namespace", home,
        # The production resync (15 s), not the suite's 2 s: hundreds of open incidents
        # re-reconciled every 2 s load the apiserver with what this test does not measure.
        env={**OPERATOR_ENV, "AIINCIDENT_NAMESPACE": home, "AIINCIDENT_RESYNC_SECONDS": "15"},
    ).start()  # fmt: skip
    try:
        wait_for(proc.webhook_ready, 30, f"webhook ready (log: {proc.log_path})")
        # One generator per client, each seeded: bodies made as they are sent, not held.
        fuzzers = [Fuzz(random.Random(SEED + i), target, home) for i in range(CLIENTS)]
        clients = [Client(proc.webhook_port, proc.webhook_token) for _ in range(CLIENTS)]
        codes: Counter[int] = Counter()
        lock = threading.Lock()

        def send(i: int, count: int) -> None:
            for _ in range(count):
                status = clients[i].post(*fuzzers[i].body())
                with lock:
                    codes[status] += 1
                    if sum(codes.values()) % 1000 == 0:  # progress, for the long run
                        print(f"{sum(codes.values())} bodies: {dict(codes)}", flush=True)

        def run(total: int) -> None:
            threads = [threading.Thread(target=send, args=(i, total // CLIENTS)) for i in range(CLIENTS)]  # fmt: skip
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        run(WARMUP)
        time.sleep(5)  # the engine takes up what the warm-up opened
        start = rss_kib(proc.proc.pid)
        codes.clear()
        run(BODIES)
        assert sum(codes.values()) == BODIES
        assert not [c for c in codes if c >= 500], (codes, proc.log_tail())
        # What the intake held for the requests is let go once they are answered.
        end = wait_for(
            lambda: (rss := rss_kib(proc.proc.pid)) <= start * 1.2 and rss, 60,
            f"RSS back within 20% of {start} KiB",
        )  # fmt: skip
        print(f"RSS {start} -> {end} KiB; answers {sorted(codes.items())}")
        unmapped = [i for i in kube.list_objects("AIIncident", home)]
        assert len(unmapped) <= 101  # max_unmapped, and the record of the others
    finally:
        proc.stop()
