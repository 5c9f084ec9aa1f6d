"""Helpers the test suites share: waiting, kubectl, and running the operator as a process."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import kubernetes

from ai_incident_operator import GROUP, VERSION
from ai_incident_operator.bounds import FALLBACK_LABEL
from ai_incident_operator.errors import APIError
from ai_incident_operator.localcluster import free_port

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / ".local" / "test-logs"
_LOG_NUMBERS = itertools.count(1)
PROTECTED_NAMESPACE = "aiincident-protected-test"
# Short resync so that tests of repair and re-planning finish in seconds.
OPERATOR_ENV = {
    "AIINCIDENT_RESYNC_SECONDS": "2",
    "AIINCIDENT_PROTECTED_NAMESPACES": PROTECTED_NAMESPACE,
}
# The tests' Prometheus, webhook receivers and exporters listen on free ports of
# 127.0.0.1, named inline by namespaced policies: the operator's URL allowlist (egress)
# must let those through, in this process and in every operator started. A test that
# proves a URL is refused sets its own, narrower AIINCIDENT_ALLOWED_URLS.
LOOPBACK_ALLOWED_URLS = "http://127.0.0.1:*"
os.environ.setdefault("AIINCIDENT_ALLOWED_URLS", LOOPBACK_ALLOWED_URLS)
# The fixtures' guardrail image is from registry.local/guardrail: the operators' tenant
# bounds list it, as an admin lists theirs (tests/tenant-bounds.yaml); a test of the
# default bounds passes its own --tenant-bounds.
TEST_TENANT_BOUNDS = str(REPO / "tests" / "tenant-bounds.yaml")
os.environ.setdefault("AIINCIDENT_TENANT_BOUNDS", TEST_TENANT_BOUNDS)


def wait_for(
    check: Callable[[], T],
    timeout: float = 30.0,
    what: str = "condition",
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll CHECK until it returns something truthy; fail with its last result and, when
    given, what EXPLAIN says then (the state a reader of CI's output needs)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        # Checks read through `kube` (typed errors) or drive the client directly.
        except (APIError, kubernetes.client.ApiException) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(0.1)
    said = f"\n{explain()}" if explain else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}{said}")


def kubectl(
    *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, check=check, input=input
    )


def get_incident(namespace: str, name: str) -> dict:
    return kubernetes.client.CustomObjectsApi().get_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiincidents", name
    )


def create_incident(namespace: str, name: str, spec: dict) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIIncident",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return kubernetes.client.CustomObjectsApi().create_namespaced_custom_object(
        GROUP, VERSION, namespace, "aiincidents", body
    )


class OperatorProcess:
    """`aiincident run` as a user runs it, in its own process, so tests can kill it.

    The webhook listens on a free port of 127.0.0.1 (`webhook_url`) with a random bearer
    token (`webhook_token`, passed as AIINCIDENT_WEBHOOK_TOKEN) unless ARGS bring their own
    --webhook-listen, --webhook-token-file or --insecure-no-auth; `webhook_token=None`
    starts it with no token at all.
    """

    def __init__(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        webhook_token: str | None = "",
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("AIINCIDENT_ALLOWED_URLS", LOOPBACK_ALLOWED_URLS)
        self.env.setdefault("AIINCIDENT_TENANT_BOUNDS", TEST_TENANT_BOUNDS)
        self.port = free_port()
        self.webhook_port = free_port()
        if "--webhook-listen" in self.args:
            listen = self.args[self.args.index("--webhook-listen") + 1]
            self.webhook_port = int(listen.rpartition(":")[2] or 0)
        else:
            self.args += ["--webhook-listen", f"127.0.0.1:{self.webhook_port}"]
        self.webhook_url = f"http://127.0.0.1:{self.webhook_port}"
        self.webhook_token: str | None = None
        if webhook_token is None or {"--webhook-token-file", "--insecure-no-auth"} & set(args):
            self.env.pop("AIINCIDENT_WEBHOOK_TOKEN", None)
        else:
            self.webhook_token = webhook_token or secrets.token_hex(16)
            self.env["AIINCIDENT_WEBHOOK_TOKEN"] = self.webhook_token
        self.proc: subprocess.Popen | None = None
        LOGS.mkdir(parents=True, exist_ok=True)
        # One file per process object and pytest process: neither concurrent runs nor a later
        # test of the same name write over it; a restart appends below a header.
        self.log_path = LOGS / f"operator-{name}-{os.getpid()}-{next(_LOG_NUMBERS)}.log"
        self.starts = 0

    def start(self) -> OperatorProcess:
        log = open(self.log_path, "ab" if self.starts else "wb")  # noqa: SIM115 - the child owns it
        self.starts += 1
        log.write(f"=== start {self.starts} at {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        argv = [
            sys.executable,
            "-m",
            "ai_incident_operator.cli",
            "run",
            "--liveness-listen",
            f"127.0.0.1:{self.port}",
            *self.args,
        ]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        wait_for(self._live, 30, f"operator {self.name} liveness (log: {self.log_path})")
        return self

    def webhook_ready(self) -> bool:
        """Whether the webhook's /readyz says the apiserver answered."""
        try:
            with urllib.request.urlopen(f"{self.webhook_url}/readyz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _live(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def sa_kubeconfig(local_cluster: Any, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig at PATH as ServiceAccount NAMESPACE/ACCOUNT, its context in NAMESPACE.

    The local control plane has a static token for it; another cluster is asked for one
    (`kubectl create token`, the ServiceAccount must exist there).
    """
    if local_cluster is not None:
        config = json.loads(local_cluster.kubeconfig_for(namespace, account).read_text())
    else:
        import yaml

        token = kubectl("create", "token", account, "-n", namespace, "--duration", "1h")
        admin = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
        current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
        cluster = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": "sa", "user": {"token": token.stdout.strip()}}],
            "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
            "current-context": "sa",
        }
    config["contexts"][0]["context"]["namespace"] = namespace
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


# --- A model workload as the playbook's examples have it ----------------------------------


def deployment(
    name: str, labels: dict[str, str], replicas: int = 3, image: str = "registry.local/llm:v42"
) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "llm", "image": image, "ports": [{"containerPort": 8000}]}
                    ]
                },
            },
        },
    }


def service(
    name: str, app: str, port: int = 80, target_port: int | str = 8000, fallback: bool | None = None
) -> dict:
    """A Service for APP's pods; FALLBACK (default: a name ending in -fallback) labels it as a
    safe fallback, as a namespace's owner does so that its policies may send traffic there."""
    fallback = name.endswith("-fallback") if fallback is None else fallback
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, **({"labels": {FALLBACK_LABEL: "true"}} if fallback else {})},
        "spec": {
            "selector": {"app": app},
            "ports": [{"name": "http", "port": port, "targetPort": target_port}],
        },
    }


def virtual_service(name: str, host: str) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": [host],
            "http": [{"name": "primary", "route": [{"destination": {"host": host}}]}],
        },
    }


def policy_body(name: str, spec: dict, kind: str = "MitigationPolicy") -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def spec_snapshot(obj: dict) -> dict:
    """What a person would diff: the object minus the fields the apiserver keeps moving."""
    import copy

    snap = copy.deepcopy(obj)
    meta = snap["metadata"]
    for key in (
        "resourceVersion",
        "managedFields",
        "generation",
        "uid",
        "creationTimestamp",
        "selfLink",
    ):
        meta.pop(key, None)
    snap.pop("status", None)
    # Written by the Deployment controller on every template change, not by the operator.
    annotations = meta.get("annotations") or {}
    annotations.pop("deployment.kubernetes.io/revision", None)
    if not annotations:
        meta.pop("annotations", None)
    return snap


# --- A webhook receiver for notifications ------------------------------------------------


class Hook:
    """A webhook receiver on 127.0.0.1: answers each path with a scripted list of codes."""

    def __init__(self) -> None:
        self.bodies: dict[str, list] = {}
        self.script: dict[str, list[int]] = {}
        self.on_post: Callable[[str], None] | None = None  # called with the path, first
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hook.on_post:
                    hook.on_post(self.path)
                hook.bodies.setdefault(self.path, []).append(body)
                codes = hook.script.get(self.path, [200])
                code = codes.pop(0) if len(codes) > 1 else codes[0]
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"no_service" if code == 404 else b"ok" if code < 300 else b"boom")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
