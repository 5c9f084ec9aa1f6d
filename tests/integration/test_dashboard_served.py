"""The dashboard as the chart serves it: from the operator, with the operator's credentials.

Read-only without a token: the page has no forms and a posted write is refused. With
`--dashboard-token-file`, a write needs the token and the person's name, which is what
the incident records. Both read with the operator's rights; no browser is needed here
(the browser tests are tests/e2e/test_dashboard_browser.py).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ai_incident_operator.localcluster import free_port

from kit import OPERATOR_ENV, OperatorProcess, create_incident, get_incident, wait_for

pytestmark = pytest.mark.integration


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def _post(url: str, form: dict[str, str]) -> str:
    """The page the write redirects to (post/redirect/get), as a browser follows it."""
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as answer:
        return answer.read().decode()


def _served(ns: str, tmp_path: Path, token: str | None) -> tuple[OperatorProcess, str]:
    port = free_port()
    args = ["--namespace", ns, "--dashboard-listen", f"127.0.0.1:{port}"]
    if token is not None:
        (tmp_path / "dashboard-token").write_text(token + "\n")
        args += ["--dashboard-token-file", str(tmp_path / "dashboard-token")]
    proc = OperatorProcess("dashboard", *args, env=OPERATOR_ENV).start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _get(url + "/"), 30, "the operator's dashboard")
    return proc, url


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_without_a_token_it_is_read_only(solo_namespace, tmp_path):
    ns = solo_namespace
    create_incident(
        ns, "drift", {"category": "AccuracyDegradation", "severity": 3, "target": {"name": "x"}}
    )
    proc, url = _served(ns, tmp_path, token=None)
    try:
        page = wait_for(
            lambda: (p := _get(f"{url}/incidents/{ns}/drift")) and "Timeline" in p and p
        )
        assert "<form" not in page and "read-only" in page
        refused = _post(f"{url}/incidents/{ns}/drift/acknowledge", {"csrf": "", "by": "mallory"})
        assert "this dashboard is read-only" in refused
        assert not get_incident(ns, "drift")["spec"].get("acknowledged")
    finally:
        proc.stop()


def test_with_a_token_a_write_needs_it_and_records_the_name(solo_namespace, tmp_path):
    ns = solo_namespace
    create_incident(
        ns, "drift", {"category": "AccuracyDegradation", "severity": 3, "target": {"name": "x"}}
    )
    proc, url = _served(ns, tmp_path, token="s3cret-token")
    try:
        page = wait_for(lambda: (p := _get(f"{url}/incidents/{ns}/drift")) and "<form" in p and p)
        assert 'name="token" type="password"' in page and 'name="by"' in page
        form = {"csrf": _csrf(page), "by": "alice", "token": "wrong"}
        assert "token is wrong" in _post(f"{url}/incidents/{ns}/drift/acknowledge", form)
        assert not get_incident(ns, "drift")["spec"].get("acknowledged")
        done = _post(f"{url}/incidents/{ns}/drift/acknowledge", {**form, "token": "s3cret-token"})
        assert "Acknowledged by alice (dashboard)." in done
        assert get_incident(ns, "drift")["spec"]["acknowledged"]["by"] == "alice (dashboard)"
        # Only the namespaces the operator watches are shown.
        with pytest.raises(urllib.error.HTTPError) as other:
            _get(f"{url}/incidents/kube-system/anything")
        assert other.value.code == 404
    finally:
        proc.stop()
