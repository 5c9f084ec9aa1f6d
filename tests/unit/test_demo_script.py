"""`make demo` on a busy port says so at once and starts nothing."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_busy_webhook_port_stops_the_demo_with_the_way_out(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            ["bash", "hack/demo.sh", str(kubeconfig), str(tmp_path)],
            cwd=REPO,
            env={**os.environ, "DEMO_WEBHOOK_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr and "DEMO_WEBHOOK_PORT" in done.stderr
    assert not (tmp_path / "operator.pid").exists()
