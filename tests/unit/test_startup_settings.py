"""Every Kubernetes call has a timeout; kopf's run can be started again (issue 12 item 14).

No handler thread may block on a dead connection: the operator's own calls (kube) have a
(connect, read) timeout and few retries, kopf's calls and watches have theirs, and kopf
no longer kills the process some minutes after a run that failed (it is run again).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kopf
import kubernetes

from ai_incident_operator import handlers, kube

PACKAGE = Path(kube.__file__).parent


def configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings)
    return settings


def test_kopfs_watches_have_server_client_and_connect_timeouts() -> None:
    watching = configured().watching
    assert watching.server_timeout and watching.client_timeout and watching.connect_timeout
    assert watching.client_timeout > watching.server_timeout  # the server ends it first


def test_kopfs_other_calls_connect_and_finish_within_the_operators_own_timeouts() -> None:
    networking = configured().networking
    assert networking.connect_timeout == kube.TIMEOUT[0]
    assert networking.request_timeout == kube.TIMEOUT[1]


def test_kopf_does_not_kill_a_process_whose_run_failed() -> None:
    # kopf's default schedules a SIGKILL 10 minutes after any run that a signal did not
    # end: the run started again after a failure would be killed then.
    assert configured().process.ultimate_exiting_timeout is None


def test_the_client_retries_a_sent_request_at_most_once() -> None:
    # The process's client configuration is put back after: in a pytest-xdist worker the
    # next test file may talk to that worker's control plane through it.
    saved = kubernetes.client.Configuration.get_default_copy()
    kubernetes.client.Configuration.set_default(kubernetes.client.Configuration())
    kube.api_client.cache_clear()
    try:
        config = kube.api_client().configuration
        assert config.retries is kube.RETRIES
        assert kube.RETRIES.read <= 1 and kube.RETRIES.connect <= 2
        assert config.keep_alive  # a watch on a silently dead connection fails
    finally:
        kubernetes.client.Configuration.set_default(saved)
        kube.api_client.cache_clear()


# Run in a fresh interpreter: CPython 3.11.7's parser can fail in a process where earlier
# tests ran ("SystemError: AST constructor recursion depth mismatch", gh-106905).
SCAN = """
import ast, json, sys
from pathlib import Path
package = Path(sys.argv[1])
calls = []
for path in sorted(package.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        # call_api is the client's one way out; the generated API classes' methods
        # (`SomethingApi(client).get_code(...)`) take _request_timeout the same way.
        made = node.func.value
        of_an_api = (
            isinstance(made, ast.Call)
            and isinstance(made.func, ast.Attribute)
            and made.func.attr.endswith("Api")
        )
        if node.func.attr == "call_api" or of_an_api:
            timed = any(k.arg == "_request_timeout" for k in node.keywords)
            calls.append([f"{path.relative_to(package)}:{node.lineno}", timed])
print(json.dumps(calls))
"""


def test_every_client_call_in_the_operator_has_a_request_timeout() -> None:
    found = subprocess.run(
        [sys.executable, "-c", SCAN, str(PACKAGE)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    calls = json.loads(found.stdout)
    assert len(calls) >= 3, calls  # kube's REST path and watch, the webhook's probe
    assert [where for where, timed in calls if not timed] == []
