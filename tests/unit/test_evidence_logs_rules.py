"""The pure rules of logs and traces in the evidence (issue 14 item 5): a log's tail is
bounded per Pod and in all and keeps the newest lines; a traces link substitutes
URL-encoded values and refuses a template it cannot fill."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator.errors import Forbidden, Invalid
from ai_incident_operator.investigation import logs

NOW = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
START = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                    max_size=300)  # fmt: skip


@given(st.lists(line_text, max_size=200), st.integers(1, 80), st.integers(5, 10_000))
def test_tail_keeps_the_newest_lines_within_both_bounds(lines, most, size):
    raw = "".join(f"{line}\n" for line in lines)
    text, omitted = logs.tail(raw, most, size)
    kept = len(lines) - omitted
    assert 0 <= kept <= most
    assert len(text.encode()) <= size
    clean = [logs._CONTROL.sub("", line) for line in lines]
    newest = "\n".join(clean[len(clean) - kept :])
    # Whole lines, the newest, in order; or one line too long for the bound, its end.
    assert text == newest or (kept == 1 and text.startswith("...") and newest.endswith(text[3:]))


def test_a_line_longer_than_the_bound_keeps_its_end():
    text, omitted = logs.tail("old\n" + "x" * 100 + "END\n", 50, 20)
    assert text.startswith("...") and text.endswith("END") and len(text.encode()) <= 20
    assert omitted == 1


def test_terminal_colours_and_control_characters_are_removed():
    text, _ = logs.tail("\x1b[31mERROR\x1b[0m boom\x07\r\n\tnext\n", 10, 1000)
    assert text == "ERROR boom\n\tnext"


@dataclass
class FakeTarget:
    ref: str
    namespace: str = "ns"
    found: list[dict] = field(default_factory=list)

    def pods(self) -> list[dict]:
        return self.found


def pod(name: str, containers: list[str], created: str = "2026-12-01T17:00:00Z",
        node: str = "node-1") -> dict:  # fmt: skip
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node, "containers": [{"name": c} for c in containers]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": c, "restartCount": 2} for c in containers]}}  # fmt: skip


def chatty(lines: int) -> logs.Callable[[str, str, str, int, int], str]:
    """A log of LINES numbered lines per container, cut as the apiserver cuts it."""
    asked: list[tuple] = []

    def read(ns: str, name: str, container: str, tail: int, limit: int) -> str:
        asked.append((ns, name, container, tail, limit))
        body = "".join(f"{name}/{container} line {i}: " + "y" * 200 + "\n" for i in range(lines))
        window = "".join(body.splitlines(keepends=True)[-tail:])
        return window.encode()[:limit].decode(errors="ignore")

    read.asked = asked  # type: ignore[attr-defined]
    return read


def test_each_pod_holds_at_most_its_share_and_the_newest_lines():
    read = chatty(500)
    target = FakeTarget("InferenceService/llama", found=[
        pod("llama-a", ["kserve-container", "guardrail"]), pod("llama-b", ["kserve-container"]),
    ])  # fmt: skip
    section = logs.logs_section([target], NOW, read=read)
    assert section.startswith("# Model logs\n")
    assert "## InferenceService/llama" in section
    assert "### Pod llama-a (Running, Ready, 4 restarts), container kserve-container" in section
    # Two containers share the Pod's 50 lines and 8 KiB: 25 lines each, 4 KiB each.
    assert [(a[2], a[3], a[4]) for a in read.asked] == [
        ("kserve-container", 25, 4096 * logs.OVERREAD), ("guardrail", 25, 4096 * logs.OVERREAD),
        ("kserve-container", 50, 8192 * logs.OVERREAD),
    ]  # fmt: skip
    for name, container in (("llama-a", "kserve-container"), ("llama-b", "kserve-container")):
        block = section.split(f"### Pod {name} ")[1].split("```text\n")[1].split("\n```")[0]
        assert block.endswith(f"{name}/{container} line 499: " + "y" * 200)  # the newest
        assert len(block.encode()) <= logs.PER_POD_BYTES
    assert "older lines left out" in section


def test_the_section_is_bounded_in_all_and_says_what_it_left_out():
    many = [pod(f"p{i}", ["a", "b"], created=f"2026-12-01T17:{i:02d}:00Z") for i in range(9)]
    targets = [FakeTarget(f"Deployment/m{j}", found=many) for j in range(3)]
    section = logs.logs_section(targets, NOW, read=chatty(500))
    shown = sum(len(b.split("\n```")[0].encode()) for b in section.split("```text\n")[1:])
    assert shown <= logs.TOTAL_BYTES
    assert "not read: the logs section holds 64 KiB in all" in section
    assert "only the newest 6 Pods are read" in section
    assert "### Pod p8 " in section and "### Pod p0 " not in section  # newest first


def test_no_pod_and_an_unreadable_log_are_notes():
    asked: list[str] = []

    def refuse(ns: str, name: str, container: str, tail: int, limit: int) -> str:
        asked.append(name)
        if name == "starting":
            raise Invalid(400, f'container "llm" in pod "{name}" is waiting to start: '
                               "ContainerCreating", "BadRequest")  # fmt: skip
        raise Forbidden(403, "pods/log is forbidden", "Forbidden")

    targets = [
        FakeTarget("LeaderWorkerSet/vllm"),
        FakeTarget("Deployment/chat", found=[pod("pending", ["llm"], node=""),
                                             pod("starting", ["llm"]), pod("other", ["llm"])]),
    ]  # fmt: skip
    section = logs.logs_section(targets, NOW, read=refuse)
    assert "No Pod of LeaderWorkerSet/vllm exists" in section
    # Not on a node: nothing to ask the apiserver (it would send an empty log).
    assert f"### Pod pending (Running, Ready, 2 restarts), container llm\n\nNo log: {logs.UNSCHEDULED}" in section  # fmt: skip
    assert sorted(asked) == ["other", "starting"]
    assert ('No log: the apiserver could not read it (container "llm" in pod "starting" is '
            "waiting to start: ContainerCreating)") in section  # fmt: skip
    assert "No log: the operator may not read pods/log" in section


def test_a_log_with_fences_stays_one_code_block():
    section = logs.format_logs(
        [("Deployment/x", [logs.ContainerLog("p", "c", text="```\nnot markdown\n```")])], NOW
    )
    assert "````text\n```\nnot markdown\n```\n````" in section


# --- Traces ------------------------------------------------------------------------------


def test_traces_link_substitutes_url_encoded_values():
    template = ("https://grafana.example/explore?ns={namespace}&svc={workload}&k={kind}"
                "&from={startMs}&to={endMs}&s={start}&e={end}&us={startUs}")  # fmt: skip
    ((ref, link),) = logs.traces_links(template, [("InferenceService", "llama 3/x")], "team a",
                                       START, NOW)  # fmt: skip
    assert ref == "InferenceService/llama 3/x"
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    assert query == {
        "ns": "team a", "svc": "llama 3/x", "k": "InferenceService",
        "from": str(int(START.timestamp() * 1000)), "to": str(int(NOW.timestamp() * 1000)),
        "s": "2026-12-01T17:00:00Z", "e": "2026-12-01T18:00:00Z",
        "us": str(int(START.timestamp() * 1_000_000)),
    }  # fmt: skip
    assert "team%20a" in link and "llama%203%2Fx" in link and "17%3A00%3A00Z" in link


@given(st.text(max_size=60), st.text(max_size=60))
def test_no_value_can_change_the_links_shape(namespace, workload):
    ((_, link),) = logs.traces_links("https://t.example/s?n={namespace}&w={workload}",
                                     [("Deployment", workload)], namespace, START, NOW)  # fmt: skip
    parts = urllib.parse.urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == (
        "https",
        "t.example",
        "/s",
        "",
    )
    assert dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)) == {
        "n": namespace, "w": workload,
    } or not (namespace and workload)  # fmt: skip


@pytest.mark.parametrize(
    ("template", "said"),
    [("ftp://t/{workload}", "is not an http:// or https:// URL"),
     ("https://t/{service}", "has {service}: the placeholders are {namespace}"),
     ("https://t/{start:%Y}", "has {start}"),
     ("https://t/?q={x", "is not a template"),
     ("javascript:alert(1)", "is not an http")],
)  # fmt: skip
def test_a_template_it_cannot_fill_is_a_note(template, said):
    with pytest.raises(ValueError, match=None) as err:
        logs.traces_links(template, [("Deployment", "m")], "ns", START, NOW)
    assert said in str(err.value)
    section = logs.traces_section({"tracesURL": template}, [("Deployment", "m")], "ns", START, NOW)
    assert f"evidence.tracesURL {said}" in section and "no link" in section


def test_literal_braces_and_no_template():
    ((_, link),) = logs.traces_links("https://t/{{x}}/{workload}", [("Deployment", "m")], "ns",
                                     START, NOW)  # fmt: skip
    assert link == "https://t/{x}/m"
    assert logs.traces_section({}, [("Deployment", "m")], "ns", START, NOW) == ""


def test_reads_time_and_targets_are_bounded_too():
    quiet = lambda *_: "ok\n"  # noqa: E731
    many = [pod(f"p{i}", ["a", "b", "c", "d"]) for i in range(6)]
    section = logs.logs_section([FakeTarget(f"Deployment/m{j}", found=many) for j in range(12)],
                                NOW, read=quiet)  # fmt: skip
    assert section.count("```text\nok\n```") == logs.MAX_READS
    assert f"not read: at most {logs.MAX_READS} logs are read per collection" in section
    assert "## 2 more targets" in section and "Deployment/m10, Deployment/m11" in section
    ticks = iter(range(0, 1000, 20))  # every look at the clock, 20 s later
    late = logs.logs_section([FakeTarget("Deployment/m", found=many[:1])], NOW, read=quiet,
                             clock=lambda: next(ticks))  # fmt: skip
    assert (
        late.count("```text\nok\n```") == 1 and "not read: the logs section took its 30 s" in late
    )
