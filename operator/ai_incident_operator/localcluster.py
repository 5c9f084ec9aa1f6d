"""A real local control plane: etcd, kube-apiserver and kube-controller-manager on 127.0.0.1.

What controller-runtime calls envtest, for a machine without Docker. `make cluster`,
`make demo` and the pytest fixtures (tests/conftest.py) all start it through this
module, so there is one way of doing it. Binaries come from `KUBEBUILDER_ASSETS`
(a folder with etcd, kube-apiserver, kube-controller-manager) or from the cache that
`hack/build-kube.sh` fills.

    python -m ai_incident_operator.localcluster up DIR     # idempotent; prints the kubeconfig
    python -m ai_incident_operator.localcluster down DIR   # stops it and removes DIR
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
DEFAULT_CACHE = Path.home() / ".cache" / "ai-incident-operator" / "k8s-1.20" / "bin"
# Identities the harness can act as, besides the admin: the chart's ServiceAccount, so
# that a test can run the operator under the chart's RBAC (see the chart tests).
SERVICE_ACCOUNTS = (("aiincident-system", "ai-incident-operator"),)


class ClusterError(RuntimeError):
    """The control plane cannot be started; the message says what to do."""


@dataclass
class LocalCluster:
    """A running control plane and how to reach it."""

    root: Path
    server: str
    kubeconfig: Path

    def token_for(self, namespace: str, name: str) -> str:
        """The static bearer token of a ServiceAccount listed in SERVICE_ACCOUNTS."""
        return json.loads((self.root / "state.json").read_text())["sa_tokens"][
            f"{namespace}/{name}"
        ]

    def kubeconfig_for(self, namespace: str, name: str) -> Path:
        """A kubeconfig that authenticates as that ServiceAccount."""
        path = self.root / f"kubeconfig-{namespace}-{name}"
        _write_kubeconfig(path, self.server, self.root / "ca.crt", self.token_for(namespace, name))
        return path


def find_binaries() -> Path:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    folder = Path(assets) if assets else DEFAULT_CACHE
    missing = [b for b in BINARIES if not (folder / b).exists()]
    if missing:
        hint = (
            "KUBEBUILDER_ASSETS must name a folder with etcd, kube-apiserver and "
            "kube-controller-manager"
            if assets
            else "run 'make cluster-binaries' (builds them from Debian's kubernetes source, "
            "about 5 minutes) or set KUBEBUILDER_ASSETS"
        )
        raise ClusterError(
            f"missing control-plane binaries {', '.join(missing)} in {folder}: {hint}"
        )
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(command: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True)
    except FileNotFoundError as err:
        raise ClusterError("openssl is needed for the control plane's certificates") from err


def _make_certificates(root: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1, and the service-account signing key."""
    (root / "san.cnf").write_text(
        "[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
    )
    for command in (
        "genrsa -out ca.key 2048",
        "req -x509 -new -key ca.key -days 3650 -subj /CN=aiincident-local-ca -out ca.crt",
        "genrsa -out server.key 2048",
        "req -new -key server.key -subj /CN=kube-apiserver -out server.csr",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650"
        " -extfile san.cnf -extensions ext -out server.crt",
        "genrsa -out sa.key 2048",
        "rsa -in sa.key -pubout -out sa.pub",
    ):
        _openssl(command, cwd=root)


def _write_kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    import base64

    ca_data = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": server, "certificate-authority-data": ca_data},
                    }
                ],
                "users": [{"name": "local", "user": {"token": token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
                "current-context": "local",
            },
            indent=2,
        )
    )
    path.chmod(0o600)


# Test harnesses set this: their control plane ends with the process that started it,
# even when that process is killed (a timeout's SIGKILL runs no clean-up), instead of
# running on and loading the machine. `make cluster` leaves it off: its cluster outlives it.
TIE_TO_PARENT = False
_PR_SET_PDEATHSIG = 1


def _death_signal() -> Callable[[], None] | None:
    """A function for the child, before exec, that asks for SIGTERM when the parent dies
    (Linux prctl). Looked up here in the parent: the child calls nothing that takes a lock."""
    if not TIE_TO_PARENT or not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(root: Path, name: str, binary: Path, flags: dict[str, object]) -> int:
    argv = [str(binary), *(f"--{flag}={value}" for flag, value in flags.items())]
    log = open(root / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_death_signal(),
    )
    (root / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _ready(server: str, ca: Path, token: str, path: str = "/readyz") -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(server + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _wait(what: str, check, pids: dict[str, int], root: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for name, pid in pids.items():
            if not _alive(pid):
                tail = (root / f"{name}.log").read_text(errors="replace")[-2000:]
                raise ClusterError(f"{name} exited while waiting for {what}; its log ends:\n{tail}")
        time.sleep(0.2)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {root}")


def current(root: Path) -> LocalCluster | None:
    """The control plane recorded in ROOT, if it is up and answering."""
    state_file = root / "state.json"
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    if not all(_alive(pid) for pid in state["pids"].values()):
        return None
    if not _ready(state["server"], root / "ca.crt", state["admin_token"]):
        return None
    return LocalCluster(root=root, server=state["server"], kubeconfig=root / "kubeconfig")


def _apiserver_flags(root: Path, etcd: str, api_port: int) -> dict[str, object]:
    return {
        "etcd-servers": etcd,
        "bind-address": "127.0.0.1",
        "advertise-address": "127.0.0.1",
        "secure-port": api_port,
        "insecure-port": 0,
        "tls-cert-file": root / "server.crt",
        "tls-private-key-file": root / "server.key",
        "client-ca-file": root / "ca.crt",
        "token-auth-file": root / "tokens.csv",
        "service-account-key-file": root / "sa.pub",
        "service-account-signing-key-file": root / "sa.key",
        "service-account-issuer": "https://kubernetes.default.svc",
        "authorization-mode": "RBAC",
        "service-cluster-ip-range": "10.96.0.0/16",
        "allow-privileged": "true",
        "cert-dir": root / "certs",
    }


def up(root: Path, timeout: float = 60.0) -> LocalCluster:
    """Start a control plane whose files live in ROOT, or return the one already there."""
    root = root.resolve()
    running = current(root)
    if running:
        return running
    if root.exists():
        down(root)
    bins = find_binaries()
    root.mkdir(parents=True)
    _make_certificates(root)

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    admin_token = secrets.token_hex(16)
    sa_tokens = {f"{ns}/{name}": secrets.token_hex(16) for ns, name in SERVICE_ACCOUNTS}
    lines = [f"{admin_token},admin,admin,system:masters"]
    for (ns, name), token in zip(SERVICE_ACCOUNTS, sa_tokens.values(), strict=True):
        user = f"system:serviceaccount:{ns}:{name}"
        lines.append(f'{token},{user},{user},"system:serviceaccounts,system:serviceaccounts:{ns}"')
    (root / "tokens.csv").write_text("\n".join(lines) + "\n")
    _write_kubeconfig(root / "kubeconfig", server, root / "ca.crt", admin_token)

    pids: dict[str, int] = {}
    etcd = f"http://127.0.0.1:{etcd_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    pids["etcd"] = _spawn(
        root,
        "etcd",
        bins / "etcd",
        {
            "data-dir": root / "etcd",
            "listen-client-urls": etcd,
            "advertise-client-urls": etcd,
            "listen-peer-urls": peer,
            "initial-advertise-peer-urls": peer,
            "initial-cluster": f"default={peer}",
            "unsafe-no-fsync": "true",
        },
    )
    pids["kube-apiserver"] = _spawn(
        root, "kube-apiserver", bins / "kube-apiserver", _apiserver_flags(root, etcd, api_port)
    )
    ca = root / "ca.crt"
    try:
        _wait(
            "kube-apiserver /readyz", lambda: _ready(server, ca, admin_token), pids, root, timeout
        )
    except ClusterError:
        for pid in pids.values():
            _stop(pid)
        raise
    pids["kube-controller-manager"] = _spawn(
        root,
        "kube-controller-manager",
        bins / "kube-controller-manager",
        {
            "kubeconfig": root / "kubeconfig",
            "leader-elect": "false",
            "port": 0,
            "secure-port": 0,
            "controllers": "*,-nodeipam,-nodelifecycle",
            "service-account-private-key-file": root / "sa.key",
            "root-ca-file": ca,
            "cluster-signing-cert-file": ca,
            "cluster-signing-key-file": root / "ca.key",
            # Tests wait for what the HPA controller reports; its default period is 15s.
            "horizontal-pod-autoscaler-sync-period": "1s",
        },
    )
    state = {
        "server": server,
        "admin_token": admin_token,
        "sa_tokens": sa_tokens,
        "pids": pids,
        "etcd": etcd,
    }
    (root / "state.json").write_text(json.dumps(state, indent=2))
    return LocalCluster(root=root, server=server, kubeconfig=root / "kubeconfig")


def down(root: Path) -> None:
    """Stop the control plane recorded in ROOT and remove ROOT."""
    root = root.resolve()
    for name in reversed(BINARIES):
        pid_file = root / f"{name}.pid"
        if not pid_file.exists():
            continue
        _stop(int(pid_file.read_text()))
    shutil.rmtree(root, ignore_errors=True)


def stop_apiserver(root: Path) -> None:
    """Stop only the kube-apiserver of the control plane in ROOT (etcd keeps the data)."""
    root = root.resolve()
    _stop(int((root / "kube-apiserver.pid").read_text()))


def start_apiserver(
    root: Path, timeout: float = 60.0, extra_flags: dict[str, object] | None = None
) -> LocalCluster:
    """Start the kube-apiserver of ROOT again, on the same port and data, with EXTRA_FLAGS.

    Returns once it is ready: what a rolling restart of a real control plane looks like to
    its clients (connections drop, then the same address answers again).
    """
    root = root.resolve()
    state_file = root / "state.json"
    state = json.loads(state_file.read_text())
    api_port = int(state["server"].rpartition(":")[2])
    flags = {**_apiserver_flags(root, state["etcd"], api_port), **(extra_flags or {})}
    pid = _spawn(root, "kube-apiserver", find_binaries() / "kube-apiserver", flags)
    state["pids"]["kube-apiserver"] = pid
    state_file.write_text(json.dumps(state, indent=2))
    ca, token = root / "ca.crt", state["admin_token"]
    _wait(
        "kube-apiserver /readyz",
        lambda: _ready(state["server"], ca, token),
        {"kube-apiserver": pid},
        root,
        timeout,
    )
    return LocalCluster(root=root, server=state["server"], kubeconfig=root / "kubeconfig")


def restart_apiserver(root: Path, down_for: float = 0.0, timeout: float = 60.0) -> LocalCluster:
    """Stop the kube-apiserver, wait DOWN_FOR seconds, start it again (see start_apiserver)."""
    stop_apiserver(root)
    time.sleep(down_for)
    return start_apiserver(root, timeout)


def _stop(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        if not _alive(pid):
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument(
        "dir", type=Path, help="folder for the control plane's data, logs and kubeconfig"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            started = time.monotonic()
            cluster = up(args.dir)
            print(
                f"control plane ready at {cluster.server} ({time.monotonic() - started:.1f}s)",
                file=sys.stderr,
            )
            print(cluster.kubeconfig)
        else:
            down(args.dir)
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
