"""Logs and traces in the evidence: the playbook's "collect traces, logs, model inputs
and outputs".

`logs_section` reads the last lines of each target's Pods' logs through `pods/log`
(`tailLines`, `limitBytes`: the apiserver sends no more than that), bounded per Pod
(PER_POD_LINES, PER_POD_BYTES, shared by its containers) and in all (TOTAL_BYTES,
MAX_PODS per target, MAX_TARGETS, MAX_READS, a DEADLINE), into the section `logs.md`. A log that cannot be read
(a Pod not yet scheduled or still Pending, a container waiting to start, no right to
read `pods/log`) is a note in its place, as is a target with no Pod at all (offline).

`traces_section` turns the policy's `evidence.tracesURL` template into one link per
target for the evidence summary. It is a link for people: never fetched.

The bounding and formatting (`tail`, `format_logs`, `traces_links`) are pure.
"""

from __future__ import annotations

import re
import string
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .. import kube
from ..errors import APIError, Forbidden, NotFound
from ..times import iso

PER_POD_LINES = 50
PER_POD_BYTES = 8 * 1024
TOTAL_BYTES = 64 * 1024
MAX_PODS = 6  # per target: the newest
MAX_TARGETS = 10
MAX_READS = 40  # calls to pods/log per collection
MAX_CONTAINERS = 4  # per Pod: its first (the model's container comes first by convention)
# The apiserver may send up to this much more than a container's share; `tail` keeps
# the newest lines of it (limitBytes cuts the end of the window, not its start).
OVERREAD = 4
READ_TIMEOUT = (5.0, 10.0)  # (connect, read) seconds per log
DEADLINE = 30.0  # seconds for the whole section: the kubelets behind may be slow
# Terminal colour codes and other control characters (a tab and a newline stay).
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")
UNSCHEDULED = "it is not scheduled to a node yet: no container has run, so there is no log"
PLACEHOLDERS = ("namespace", "workload", "kind", "start", "end", "startMs", "endMs",
                "startUs", "endUs")  # fmt: skip


class Target(Protocol):
    """What the section needs of an evidence target (`evidence._Target`)."""

    ref: str
    namespace: str

    def pods(self) -> list[dict]: ...


@dataclass(frozen=True)
class ContainerLog:
    """The tail of one container's log, or why there is none (NOTE)."""

    pod: str
    container: str
    state: str = ""  # the Pod's phase and readiness, in words
    text: str = ""
    omitted: int = 0  # older lines left out to stay in bounds
    note: str = ""


# --- Pure: bounds and formatting -------------------------------------------------------


def tail(raw: str, lines: int, max_bytes: int) -> tuple[str, int]:
    """The newest at most LINES lines of RAW within MAX_BYTES (UTF-8), control characters
    removed, and how many lines were left out. A last line longer than MAX_BYTES keeps
    its end."""
    clean = _CONTROL.sub("", raw.replace("\r\n", "\n"))
    all_lines = clean.split("\n")
    if all_lines and all_lines[-1] == "":
        all_lines.pop()  # the final newline
    kept = all_lines[-lines:] if lines > 0 else []
    size = sum(len(line.encode()) + 1 for line in kept)
    while len(kept) > 1 and size > max_bytes:
        size -= len(kept.pop(0).encode()) + 1
    if kept and size > max_bytes:
        end = kept[0].encode()[-max(0, max_bytes - 4) :].decode(errors="ignore")
        kept = [f"...{end}"] if max_bytes > 4 else []
    return "\n".join(kept), len(all_lines) - len(kept)


def share(containers: int) -> tuple[int, int]:
    """(lines, bytes) each of a Pod's CONTAINERS may take of the Pod's bound."""
    n = max(1, containers)
    return max(5, PER_POD_LINES // n), PER_POD_BYTES // n


def format_logs(
    by_target: Sequence[tuple[str, Sequence[ContainerLog] | str]],
    now: datetime,
    total: int = TOTAL_BYTES,
) -> str:
    """The `logs.md` section: per target its containers' tails (or the note why there is
    none); log text beyond TOTAL bytes in all is left out, with a note."""
    out = [
        "# Model logs",
        "",
        f"The last lines of the targets' Pods' logs, read at {iso(now)}: at most "
        f"{PER_POD_LINES} lines and {PER_POD_BYTES // 1024} KiB per Pod (shared by its "
        f"containers), {MAX_PODS} Pods per target and {total // 1024} KiB in all.",
        "",
    ]
    used = 0
    for ref, logs in by_target:
        out += [f"## {ref}", ""]
        if isinstance(logs, str):  # why this target has no logs at all
            out += [logs, ""]
            continue
        for log in logs:
            where = f"Pod {log.pod}" + (f" ({log.state})" if log.state else "")
            head = f"### {where}, container {log.container}"
            if log.note:
                out += [head, "", f"No log: {log.note}", ""]
                continue
            size = len(log.text.encode())
            if used + size > total:
                out += [head, "", f"Not shown: the logs section is bounded to {total // 1024} KiB.", ""]  # fmt: skip
                continue
            used += size
            older = f" ({log.omitted} older lines left out)" if log.omitted else ""
            if not log.text:
                out += [head, "", f"The log is empty{older}.", ""]
                continue
            fence = "`" * max(3, _longest_run(log.text, "`") + 1)
            out += [f"{head}{older}", "", f"{fence}text", log.text, fence, ""]
    return "\n".join(out) + "\n"


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(f"{re.escape(char)}+", text)
    return max((len(r) for r in runs), default=0)


def traces_links(
    template: str,
    targets: Sequence[tuple[str, str]],
    namespace: str,
    start: datetime,
    end: datetime,
) -> list[tuple[str, str]]:
    """(target, link) for each (kind, name) of TARGETS: TEMPLATE with its placeholders
    (PLACEHOLDERS) replaced by URL-encoded values. Raises ValueError, in words, for a
    template that is not an http(s) URL or names another placeholder."""
    if not re.match(r"https?://", template):
        raise ValueError("is not an http:// or https:// URL")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:  # a lone brace
        raise ValueError(f"is not a template ({err}): write a literal brace as {{{{ or }}}}") from None  # fmt: skip
    for _, field, spec, conversion in parsed:
        if field is not None and (field not in PLACEHOLDERS or spec or conversion):
            named = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            raise ValueError(f"has {{{field}}}: the placeholders are {named}")
    times = {
        "start": iso(start), "end": iso(end),
        "startMs": str(int(start.timestamp() * 1000)), "endMs": str(int(end.timestamp() * 1000)),
        "startUs": str(int(start.timestamp() * 1_000_000)),
        "endUs": str(int(end.timestamp() * 1_000_000)),
    }  # fmt: skip
    links = []
    for kind, name in targets:
        values = {"namespace": namespace, "workload": name, "kind": kind, **times}
        quoted = {k: urllib.parse.quote(v, safe="") for k, v in values.items()}
        links.append((f"{kind}/{name}", template.format(**quoted)))
    return links


def traces_section(
    evidence_spec: dict[str, Any],
    targets: Sequence[tuple[str, str]],
    namespace: str,
    start: datetime,
    end: datetime,
) -> str:
    """The evidence summary's "Traces" part ("" without `evidence.tracesURL`)."""
    template = evidence_spec.get("tracesURL")
    if not template:
        return ""
    out = ["", "## Traces", ""]
    try:
        links = traces_links(str(template), targets, namespace, start, end)
    except ValueError as err:
        return "\n".join([*out, f"evidence.tracesURL {err}: no link."]) + "\n"
    window = f"from {iso(start)} to {iso(end)}"
    if not links:
        return "\n".join([*out, "No target: no link."]) + "\n"
    out += [f"- {ref} ({window}): <{link}>" for ref, link in links]
    return "\n".join(out) + "\n"


# --- Reading -----------------------------------------------------------------------------


@dataclass
class _Budget:
    """What one section may still read: bytes of log text, reads, time."""

    left: int
    reads: int
    deadline: float
    clock: Callable[[], float]

    def refusal(self) -> str:
        """Why no more may be read ("" while it may)."""
        if self.clock() > self.deadline:
            return f"not read: the logs section took its {DEADLINE:.0f} s"
        if self.left <= 0:
            return f"not read: the logs section holds {TOTAL_BYTES // 1024} KiB in all"
        if self.reads <= 0:
            return f"not read: at most {MAX_READS} logs are read per collection"
        return ""


def logs_section(
    targets: Sequence[Target],
    now: datetime,
    read: Callable[[str, str, str, int, int], str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """The `logs.md` section for TARGETS, read through READ (default: `read_log`)."""
    budget = _Budget(TOTAL_BYTES, MAX_READS, clock() + DEADLINE, clock)
    found: list[tuple[str, Sequence[ContainerLog] | str]] = []
    for t in targets[:MAX_TARGETS]:
        try:
            pods = sorted(t.pods(), key=_created, reverse=True)
        except APIError as err:
            found.append((t.ref, f"Its Pods could not be listed: {err.message}."))
            continue
        pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
        if not pods:
            found.append((t.ref, f"No Pod of {t.ref} exists (it is offline, or its Pods "
                                 "are not made yet): no logs to show."))  # fmt: skip
            continue
        logs: list[ContainerLog] = []
        for pod in pods[:MAX_PODS]:
            logs += _pod_logs(t.namespace, pod, read or read_log, budget)
        if len(pods) > MAX_PODS:
            logs.append(ContainerLog(f"... {len(pods) - MAX_PODS} more", "-",
                                     note=f"only the newest {MAX_PODS} Pods are read"))  # fmt: skip
        found.append((t.ref, logs))
    if len(targets) > MAX_TARGETS:
        left = ", ".join(t.ref for t in targets[MAX_TARGETS:][:20])
        found.append((f"{len(targets) - MAX_TARGETS} more targets",
                      f"Not read (logs of the first {MAX_TARGETS} targets only): {left}."))  # fmt: skip
    return format_logs(found, now)


def _pod_logs(
    namespace: str, pod: dict, read: Callable[[str, str, str, int, int], str], budget: _Budget
) -> list[ContainerLog]:
    name = pod["metadata"]["name"]
    state = _state(pod)
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    containers = [c for c in containers if isinstance(c, str)][:MAX_CONTAINERS]
    lines, size = share(len(containers))
    out = []
    for container in containers:
        if not (pod.get("spec") or {}).get("nodeName"):
            # The apiserver would answer with an empty log: say why there is none.
            out.append(ContainerLog(name, container, state, note=UNSCHEDULED))
            continue
        if refused := budget.refusal():
            out.append(ContainerLog(name, container, state, note=refused))
            continue
        budget.reads -= 1
        try:
            raw = read(namespace, name, container, lines, size * OVERREAD)
        except APIError as err:
            out.append(ContainerLog(name, container, state, note=_log_problem(err, pod)))
            continue
        text, omitted = tail(raw, lines, size)
        budget.left -= len(text.encode())
        out.append(ContainerLog(name, container, state, text, omitted))
    return out


def read_log(namespace: str, pod: str, container: str, lines: int, limit: int) -> str:
    """The last LINES lines of CONTAINER's log in POD, at most LIMIT bytes (`kube.pod_log`)."""
    return kube.pod_log(namespace, pod, container, lines, limit, READ_TIMEOUT)


def _log_problem(err: APIError, pod: dict) -> str:
    if isinstance(err, Forbidden):
        return "the operator may not read pods/log (the chart grants `get` on pods/log)"
    words = err.message.strip() or f"HTTP {err.status} {err.reason}"
    if isinstance(err, NotFound) and f'"{pod["metadata"]["name"]}"' in words and "pod" in words:
        return "the Pod is gone"
    # Its node or kubelet does not answer, its container waits to start: in their words.
    return f"the apiserver could not read it ({words})"


def _state(pod: dict) -> str:
    status = pod.get("status") or {}
    phase = status.get("phase") or "Unknown"
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or [])  # fmt: skip
    restarts = sum(c.get("restartCount") or 0 for c in status.get("containerStatuses") or [])
    words = [phase, "Ready" if ready else "not Ready"]
    if restarts:
        words.append(f"{restarts} restarts")
    return ", ".join(words)


def _created(pod: dict) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")
