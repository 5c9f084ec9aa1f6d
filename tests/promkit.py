"""Real Prometheus and Alertmanager for tests, started as processes on 127.0.0.1.

The e2e fixtures (tests/e2e/conftest.py) build the monitoring pipeline from these, and
other suites reuse them to run PromQL against real series: `start_prometheus_for` is a
Prometheus that only scrapes an exporter (no rules, no Alertmanager). Binaries come from
Debian's `prometheus` and `prometheus-alertmanager` packages (`make deps`), found on PATH.

Each process gets a free port, a temporary data folder and a generated config with
short intervals (scrape and evaluate every second, Alertmanager group_wait 1s,
group_interval 2s), so a degraded series becomes a notification in a few seconds.
Logs are kept in .local/test-logs/.
"""

from __future__ import annotations

import copy
import ctypes
import json
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from kit import LOGS, REPO, free_port, wait_for

RULES = REPO / "deploy" / "prometheus" / "ai-incident-rules.yaml"
ALERTMANAGER_EXAMPLE = REPO / "deploy" / "alertmanager" / "alertmanager.yaml"
OPERATOR_RECEIVER = "ai-incident-operator"


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by SIGKILL (Linux)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ToolMissing(RuntimeError):
    """A Prometheus binary is not installed."""


def require(binary: str) -> str:
    """The path of BINARY; ToolMissing, with the fix, when it is not installed."""
    path = shutil.which(binary)
    if path is None:
        raise ToolMissing(
            f"{binary} is not installed (Debian packages prometheus, prometheus-alertmanager): "
            "run `make deps` (or `sudo hack/install-system-deps.sh`)"
        )
    return path


# --- Configs ------------------------------------------------------------------------------


def rules_with_for(path: Path = RULES, for_: str | None = "2s") -> dict:
    """The rule file at PATH with every `for:` set to FOR_ (None keeps the file's)."""
    doc = yaml.safe_load(path.read_text())
    if for_ is not None:
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = for_
    return doc


def prometheus_config(
    targets: Iterable[str],
    *,
    rule_files: Iterable[Path] = (),
    alertmanagers: Iterable[str] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    job: str = "ai-models",
) -> dict:
    """prometheus.yml: scrape TARGETS (host:port) as JOB, evaluate RULE_FILES, alert to ALERTMANAGERS."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    return config


def operator_alertmanager_config(
    webhook_url: str,
    credentials_file: Path,
    *,
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
    example: Path = ALERTMANAGER_EXAMPLE,
) -> dict:
    """The repo's example Alertmanager config, pointed at WEBHOOK_URL, with short timings.

    Only the operator receiver's URL and token file and the route timings change, so the
    e2e test exercises the routing, grouping and inhibition that users deploy.
    """
    config = copy.deepcopy(yaml.safe_load(example.read_text()))
    receiver = next(r for r in config["receivers"] if r["name"] == OPERATOR_RECEIVER)
    for hook in receiver["webhook_configs"]:
        hook["url"] = webhook_url
        # Alertmanager reads a relative path from its own folder, and fails silently.
        hook["http_config"]["authorization"]["credentials_file"] = str(
            Path(credentials_file).resolve()
        )
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        route["group_wait"] = group_wait
        route["group_interval"] = group_interval
        route["repeat_interval"] = repeat_interval
    return config


# --- Processes ----------------------------------------------------------------------------


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class _Server:
    """A monitoring binary on 127.0.0.1 with its own data folder, log and config file."""

    binary = ""
    kind = ""

    def __init__(self, name: str, config: dict, workdir: Path | None = None) -> None:
        self.name = name
        self.config = config
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"aiincident-{name}-"))
        self._own_workdir = workdir is None
        self.config_path = self.workdir / f"{self.kind}.yml"
        self.data_dir = self.workdir / "data"
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def start(self, timeout: float = 30.0) -> _Server:
        require(self.binary)
        self.write_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A free port can be taken between free_port() and the bind: try a few.
        for attempt in range(3):
            self.port = free_port()
            log = open(self.log_path, "ab" if attempt else "wb")  # noqa: SIM115
            self.proc = subprocess.Popen(
                self._argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # only prctl runs in the child
            )
            log.close()
            try:
                wait_for(self._ready, timeout, f"{self.name} /-/ready (log: {self.log_path})")
                return self
            except _Exited:
                if attempt == 2 or "address already in use" not in self.log_tail():
                    raise AssertionError(
                        f"{self.name} exited {self.proc.returncode}:\n{self.log_tail()}"
                    ) from None
        raise AssertionError("unreachable")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise _Exited
        try:
            return _http_get(f"{self.url}/-/ready", timeout=1)[0] == 200
        except OSError:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def get_json(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = _http_get(f"{self.url}{path}{query}", timeout=5)
        if status != 200:
            raise AssertionError(f"{self.name} GET {path}: {status} {body[:500]!r}")
        return json.loads(body)


class _Exited(Exception):
    pass


class Prometheus(_Server):
    """A running Prometheus; `query` and `alerts` read its HTTP API."""

    binary = "prometheus"
    kind = "prometheus"

    def _argv(self) -> list[str]:
        return [
            require(self.binary),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",
            "--log.level=info",
        ]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query: the result list ({metric, value: [ts, "v"]} for vectors)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        return self.get_json("/api/v1/query", **params)["data"]["result"]

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict]:
        params = {"query": expr, "start": str(start), "end": str(end), "step": step}
        return self.get_json("/api/v1/query_range", **params)["data"]["result"]

    def alerts(self, state: str | None = None) -> list[dict]:
        """Alerts that are pending or firing (STATE narrows it)."""
        found = self.get_json("/api/v1/alerts")["data"]["alerts"]
        return [a for a in found if state is None or a["state"] == state]

    def rule_groups(self) -> list[dict]:
        return self.get_json("/api/v1/rules")["data"]["groups"]

    def targets_up(self) -> bool:
        active = self.get_json("/api/v1/targets")["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def wait_for_targets(self, timeout: float = 15.0) -> None:
        """Until every scrape target answered once (the first scrape happened).

        Prometheus hands discovered targets to the scrapers every 5 s, so this takes up to 6 s.
        """
        wait_for(self.targets_up, timeout, f"{self.name}: all scrape targets up")

    def wait_for_alertmanagers(self, timeout: float = 15.0) -> None:
        """Until the notifier knows its Alertmanagers: alerts that fire before are dropped
        until the next resend (a minute later)."""

        def known() -> bool:
            return bool(self.get_json("/api/v1/alertmanagers")["data"]["activeAlertmanagers"])

        wait_for(known, timeout, f"{self.name}: Alertmanagers discovered")

    def reload(self) -> None:
        """Write self.config again and ask Prometheus to load it (and its rule files)."""
        self.write_config()
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass


class Alertmanager(_Server):
    """A running Alertmanager, gossip off; `alerts` reads its v2 API."""

    binary = "prometheus-alertmanager"
    kind = "alertmanager"

    def _argv(self) -> list[str]:
        return [
            require(self.binary),
            f"--config.file={self.config_path}",
            f"--storage.path={self.data_dir}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",  # no gossip peers
            "--log.level=info",
        ]

    def alerts(self, **filters: str) -> list[dict]:
        """The alerts Alertmanager holds (v2 API; filters such as active='true')."""
        return self.get_json("/api/v2/alerts", **filters)


# --- Starting them ------------------------------------------------------------------------


def start_prometheus(
    targets: Iterable[str],
    *,
    rules: dict | Path | None = None,
    alertmanager: Alertmanager | str | None = None,
    name: str = "prometheus",
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    wait_for_targets: bool = True,
) -> Prometheus:
    """A Prometheus scraping TARGETS (host:port) every second.

    RULES is a rule file or a parsed one (see rules_with_for); ALERTMANAGER receives its
    alerts. Returns once Prometheus knows its Alertmanager and, with wait_for_targets,
    after the first successful scrape of each target (about 6 s).
    """
    prom = Prometheus(name, {})
    rule_files = []
    if isinstance(rules, dict):
        rule_files.append(prom.workdir / "rules.yml")
        rule_files[0].write_text(yaml.safe_dump(rules, sort_keys=False))
    elif rules is not None:
        rule_files.append(Path(rules))
    if isinstance(alertmanager, Alertmanager):
        alertmanager = alertmanager.address
    prom.config = prometheus_config(
        targets,
        rule_files=rule_files,
        alertmanagers=[alertmanager] if alertmanager else [],
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval,
    )
    try:
        prom.start()
        if wait_for_targets:
            prom.wait_for_targets()
        if alertmanager:
            prom.wait_for_alertmanagers()
    except BaseException:
        prom.stop()
        raise
    return prom


def start_prometheus_for(exporter_target: str, name: str = "prometheus-metrics") -> Prometheus:
    """A Prometheus that only scrapes EXPORTER_TARGET (host:port): for PromQL against real series."""
    return start_prometheus([exporter_target], name=name)


def start_alertmanager(config: dict, name: str = "alertmanager") -> Alertmanager:
    """An Alertmanager running CONFIG (e.g. operator_alertmanager_config(...))."""
    am = Alertmanager(name, config)
    try:
        am.start()
    except BaseException:
        am.stop()
        raise
    return am
