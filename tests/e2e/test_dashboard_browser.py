"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

`aiincident dashboard` runs as a user would run it, with a kubeconfig; the operator
handles the incidents. One test sees an incident appear within seconds of its creation
(no reload: the watch's server-sent events), approves it and sees the phase change,
and saves a screenshot; one runs the dashboard as a user who may only read incidents
and sees the apiserver's refusal on the page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref
from ai_incident_operator.localcluster import free_port

from kit import create_incident, deployment, get_incident, policy_body, sa_kubeconfig, wait_for

pytestmark = pytest.mark.e2e
LABELS = {"app.kubernetes.io/part-of": "dashboard"}
CHROMIUM = os.environ.get("AIINCIDENT_CHROMIUM", "/usr/bin/chromium")
# Without the networking flags Chromium tries Google's hosts, which this machine refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
OUTPUT = Path(os.environ.get("AIINCIDENT_TEST_OUTPUT", "test-output"))


class DashboardProcess:
    def __init__(self, namespace: str, kubeconfig: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ai_incident_operator.cli", "dashboard", "-n", namespace,
             "--listen", f"127.0.0.1:{self.port}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        wait_for(self._serving, 30, "the dashboard serving")

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the dashboard exited: {self.proc.stdout.read()}")
        try:
            with urllib.request.urlopen(self.url + "/", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make deps` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def setup_model(ns: str) -> None:
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=3))
    kube.create("MitigationPolicy", ns, policy_body("chat", {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "requireApproval": True, "actions": [{"type": "ScaleToZero"}]}],
    }))  # fmt: skip
    wait_for(lambda: (kube.get(Ref("MitigationPolicy", ns, "chat")) or {}).get("status"), 30)


def test_an_incident_appears_live_is_approved_and_its_phase_changes(namespace, operator, browser):
    ns = namespace
    setup_model(ns)
    dashboard = DashboardProcess(ns)
    try:
        page = browser.new_page()
        page.goto(dashboard.url + "/")
        page.get_by_text("No open incidents.").wait_for(timeout=10_000)
        create_incident(ns, "unsafe-dosage", {
            "category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"},
            "title": "Advises unsafe medication doses",
        })  # fmt: skip
        # The list is not reloaded: the row arrives through the event stream.
        page.get_by_role("link", name="unsafe-dosage").wait_for(timeout=10_000)
        page.get_by_text("approval", exact=True).wait_for(timeout=10_000)
        page.get_by_role("link", name="unsafe-dosage").click()
        page.get_by_text("AwaitingApproval").first.wait_for(timeout=10_000)
        page.get_by_role("button", name="Approve the response").click()
        page.get_by_role("status").get_by_text("Approved by").wait_for(timeout=10_000)
        wait_for(lambda: get_incident(ns, "unsafe-dosage")["spec"].get("approved"), 10)
        assert get_incident(ns, "unsafe-dosage")["spec"]["approvedBy"] == kube.current_user()
        # The phase changes on the page by itself, as the operator scales the model down.
        page.locator("#live .phase", has_text="Mitigated").wait_for(timeout=20_000)
        assert kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"] == 0
        page.get_by_role("rowheader", name="/spec/replicas").wait_for(
            timeout=10_000
        )  # before/after
        OUTPUT.mkdir(parents=True, exist_ok=True)
        shot = OUTPUT / "dashboard-incident.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("AIINCIDENT_README_SCREENSHOT"):
            shutil.copy(shot, os.environ["AIINCIDENT_README_SCREENSHOT"])
    finally:
        dashboard.stop()


def _reader_kubeconfig(ns: str, tmp_path: Path) -> Path:
    """A kubeconfig of ServiceAccount NS/reader, who may only read AIIncidents in NS."""
    core, rbac = kubernetes.client.CoreV1Api(), kubernetes.client.RbacAuthorizationV1Api()
    core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(ns, {"metadata": {"name": "incident-reader"}, "rules": [
        {"apiGroups": ["aiincident.io"], "resources": ["aiincidents"],
         "verbs": ["get", "list", "watch"]}]})  # fmt: skip
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "incident-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "incident-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
    })  # fmt: skip
    return sa_kubeconfig(None, ns, "reader", tmp_path / "reader-kubeconfig")  # a real token


def test_a_user_without_rights_sees_the_refusal(namespace, operator, browser, tmp_path):
    ns = namespace
    setup_model(ns)
    create_incident(ns, "leak", {"category": "HarmfulOutput", "severity": 2,
                                 "target": {"name": "chat-llm"}})  # fmt: skip
    dashboard = DashboardProcess(ns, _reader_kubeconfig(ns, tmp_path))
    try:
        page = browser.new_page()
        page.goto(f"{dashboard.url}/incidents/{ns}/leak")
        page.get_by_role("button", name="Acknowledge: I have it").click()
        refusal = page.get_by_role("alert").filter(has_text="The apiserver refused to acknowledge")
        refusal.wait_for(timeout=10_000)
        assert "403 Forbidden" in refusal.inner_text() and "cannot patch" in refusal.inner_text()
        assert not get_incident(ns, "leak")["spec"].get("acknowledged")
    finally:
        dashboard.stop()


def test_it_reads_without_javascript_and_refuses_other_hosts_and_stale_forms(namespace, operator):
    ns = namespace
    setup_model(ns)
    create_incident(ns, "drift", {"category": "AccuracyDegradation", "severity": 3,
                                  "target": {"name": "chat-llm"}})  # fmt: skip
    dashboard = DashboardProcess(ns)
    try:
        with urllib.request.urlopen(f"{dashboard.url}/incidents/{ns}/drift", timeout=10) as answer:
            html = answer.read().decode()
            assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        assert "<h1>drift" in html and "Timeline" in html and 'name="csrf"' in html
        policies = urllib.request.urlopen(f"{dashboard.url}/policies", timeout=10).read().decode()
        assert "<td>chat</td>" in policies and '<span class="cond True">True</span>' in policies
        # A DNS name that points at 127.0.0.1 is not this dashboard's host (DNS rebinding).
        rebound = urllib.request.Request(f"{dashboard.url}/", headers={"Host": "evil.example:80"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=10)
        assert refused.value.code == 421
        # A form posted from another page lacks the page's token.
        forged = urllib.request.Request(
            f"{dashboard.url}/incidents/{ns}/drift/acknowledge", data=b"csrf=guess", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=10)
        assert refused.value.code == 403
        assert not get_incident(ns, "drift")["spec"].get("acknowledged")
    finally:
        dashboard.stop()
