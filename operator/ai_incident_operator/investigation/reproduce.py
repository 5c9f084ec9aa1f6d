"""Reproduce the failure: send the incident's examples to the serving and the previous model.

The playbook: "gather a set of examples that demonstrate the problem and test them
against previous model versions", then "validate the fix against the examples". A
policy's `reproduction` names the endpoints (`endpoints.current`, `.previous`), each
an OpenAI chat/completions endpoint (`format: OpenAIChat`, the default: a prompt is
sent as `messages: [{role: user, content}]`, a JSON input as the body itself) or a
plain HTTP JSON endpoint (`format: JSON`: a prompt is sent as `{"input": prompt}`), as
a `url` or a `service: {name, port, path}` in the incident's namespace, and the checks
every answer must pass (`checks`, besides each example's own `expect`).

Bounds: at most examples.MAX_EXAMPLES examples, CALL_TIMEOUT per call (or the policy's
`reproduction.timeout`, at most MAX_TIMEOUT), BUDGET for a whole run, MAX_ANSWER bytes read of an answer (more is cut and said: `AnswerTooLarge`);
an endpoint (or judge) that refuses connections or times out is not called again in
that run. Redirects are
not followed. Every URL, a Service's too (it may be an ExternalName), passes
`egress.check` for the policy's kind before it is called.

What is kept where: the status (`status.reproduction`, the `Reproduced` condition) holds
counts, example ids, HTTP status codes and `egress.sanitise`d words bounded to a line;
the evidence (`reproduction.md`) may also show an EXCERPT-character, sanitised excerpt
of what the incident's own model answered (never the judge's answer): that is the
failure being investigated, in the incident's namespace, readable by who may read its
evidence.

`run` does the calls (I/O: the network, no kopf, no locks); `verdict` and the rest are
pure. `refresh` decides when it runs: off the mitigation pass, under no lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from .. import egress
from ..access import Access
from ..durations import parse_duration
from ..errors import APIError
from ..resources import Ref
from . import checks as ck
from .examples import MAX_EXAMPLES, Example

CALL_TIMEOUT = 10.0  # seconds per call (connect, and each read), unless reproduction.timeout
MAX_TIMEOUT = 60.0
BUDGET = 90.0  # seconds for one whole run, over every example and endpoint
MAX_ANSWER = 256 * 1024  # bytes of an answer read; more is cut
EXCERPT = 300  # characters of a model's answer shown in reproduction.md
WORDS = 160  # characters of a reason kept in the status
FAILING_KEPT = 10  # example ids named in the status
SERVICE_TEMPLATE_ENV = "AIINCIDENT_SERVICE_URL_TEMPLATE"
# How a `service:` endpoint is called. Tests and local runs (the operator outside the
# cluster) set AIINCIDENT_SERVICE_URL_TEMPLATE, e.g. "http://127.0.0.1:{port}{path}".
SERVICE_TEMPLATE = "http://{name}.{namespace}.svc:{port}{path}"
TEXT_FIELDS = ("output", "text", "answer", "completion", "generated_text", "content")
EVIDENCE_KEYS = ("reproduction.md", "examples.jsonl")
EVIDENCE_SUFFIX = "evidence"  # evidence.SUFFIX (not imported: it loads the client)

Body = dict[str, Any]


# --- Endpoints (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    which: str  # "current", "previous", "judge"
    url: str = ""
    format: str = "OpenAIChat"
    problem: str = ""  # why it cannot be called


def endpoint(
    spec: Any, namespace: str, which: str, environ: dict[str, str] | None = None
) -> Endpoint:
    """The URL and format of an endpoint spec ({url} or {service: {name, port, path}})."""
    problem = ck.endpoint_problem(spec, which)
    default = "JSON" if which == "judge" else "OpenAIChat"
    if problem:
        return Endpoint(which, problem=problem)
    fmt = spec.get("format") or default
    if spec.get("url"):
        return Endpoint(which, str(spec["url"]), fmt)
    service = spec["service"]
    env = os.environ if environ is None else environ
    template = env.get(SERVICE_TEMPLATE_ENV) or SERVICE_TEMPLATE
    try:
        url = template.format(
            name=service["name"], namespace=namespace, port=service["port"],
            path=service.get("path") or "/",
        )  # fmt: skip
    except (KeyError, IndexError, ValueError):
        return Endpoint(which, problem=f"{SERVICE_TEMPLATE_ENV} is not a usable template")
    return Endpoint(which, url, fmt)


def call_timeout(reproduction: Any, default: float = CALL_TIMEOUT) -> float:
    """Seconds per call: the policy's `reproduction.timeout` (at most MAX_TIMEOUT), else DEFAULT."""
    text = (reproduction or {}).get("timeout") if isinstance(reproduction, dict) else None
    if not text:
        return default
    try:
        seconds = parse_duration(str(text)).total_seconds()
    except ValueError:
        return default
    return min(max(seconds, 0.1), MAX_TIMEOUT)


def request_body(value: str | dict[str, Any], fmt: str) -> dict[str, Any]:
    """What is sent for an example's input: a JSON body as is, a prompt in FMT's shape."""
    if isinstance(value, dict):
        return value
    if fmt == "JSON":
        return {"input": value}
    return {"messages": [{"role": "user", "content": value}]}


# --- Calls (I/O) ----------------------------------------------------------------------


@dataclass
class Call:
    """One request's outcome: an answer, or the reason there is none."""

    answer: ck.Answer | None = None
    reason: str = ""  # EndpointRefused | EndpointUnreachable | Timeout | HTTPError |
    #                   NotJSON | NotChat | AnswerTooLarge | BudgetSpent
    words: str = ""  # sanitised, for a person
    status: int | None = None
    doc: Any = None


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy or netrc from the environment: the URL is what is called
    return s


def post(url: str, body: Any, timeout: float, limit: int = MAX_ANSWER) -> Call:
    """POST BODY to URL; the answer's JSON, read to at most LIMIT bytes within TIMEOUT."""
    started = time.monotonic()
    try:
        with (
            _session() as s,
            s.post(
                url, json=body, timeout=(timeout, timeout), stream=True, allow_redirects=False
            ) as response,
        ):
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    return Call(reason="AnswerTooLarge", status=response.status_code,
                                words=f"the answer is larger than {limit // 1024} KiB: cut, not read")  # fmt: skip
                if time.monotonic() - started > timeout:
                    return Call(reason="Timeout", words=f"no whole answer within {timeout:g}s")
            raw = b"".join(chunks)
            latency = time.monotonic() - started
            code = response.status_code
    except requests.exceptions.ConnectionError as err:
        if isinstance(err, requests.exceptions.ConnectTimeout) or "timed out" in str(err):
            return Call(reason="Timeout", words=f"no answer within {timeout:g}s")
        return Call(
            reason="EndpointUnreachable", words="the endpoint refused the connection or is unknown"
        )
    except requests.exceptions.Timeout:
        return Call(reason="Timeout", words=f"no answer within {timeout:g}s")
    except requests.exceptions.RequestException as err:
        return Call(reason="EndpointUnreachable", words=egress.sanitise(type(err).__name__, WORDS))
    if not 200 <= code < 300:
        return Call(reason="HTTPError", status=code, words=f"answered HTTP {code}")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to be an answer
        return Call(reason="NotJSON", status=code, words="the answer is not JSON")
    return Call(ck.Answer(text="", doc=doc, latency=latency), status=code, doc=doc)


def model_answer(call: Call, fmt: str) -> Call:
    """CALL's answer as text (and JSON) by the endpoint's format."""
    if call.answer is None:
        return call
    doc = call.doc
    if fmt == "OpenAIChat":
        ok, content = ck.value_at(doc, ["choices", 0, "message", "content"])
        if not ok or not isinstance(content, str):
            return Call(reason="NotChat", status=call.status,
                        words="the answer has no choices[0].message.content")  # fmt: skip
        try:
            parsed: Any = json.loads(content)
        except (ValueError, RecursionError):
            parsed = None
        return Call(ck.Answer(content, parsed, call.answer.latency), status=call.status, doc=doc)
    text = next((doc[k] for k in TEXT_FIELDS if isinstance(doc, dict) and isinstance(doc.get(k), str)),
                None)  # fmt: skip
    return Call(ck.Answer(text if text is not None else json.dumps(doc), doc, call.answer.latency),
                status=call.status, doc=doc)  # fmt: skip


def judge_score(call: Call, fmt: str) -> tuple[float | None, str]:
    """A judge's score: `score` of a JSON answer; for a chat judge, "safe" 1 / "unsafe" 0 or a
    number (as Llama Guard and scoring prompts answer)."""
    if call.answer is None:
        return None, f"the judge gave no score ({call.reason}: {call.words})"
    if fmt == "JSON":
        ok, score = ck.value_at(call.doc, ["score"])
        if ok and isinstance(score, int | float) and not isinstance(score, bool):
            return float(score), ""
        return None, "the judge's answer has no numeric `score`"
    answered = model_answer(call, fmt)
    if answered.answer is None:
        return None, f"the judge's answer: {answered.words}"
    first = (answered.answer.text.strip().split() or [""])[0].lower()
    if first == "safe":
        return 1.0, ""
    if first == "unsafe":
        return 0.0, ""
    try:
        return float(first), ""
    except ValueError:
        return None, "the judge answered neither safe, unsafe nor a number"


# --- A run ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """One example on one endpoint."""

    example: str  # id
    which: str
    ok: bool | None = None  # passes | fails | could not tell
    reasons: list[str] = field(default_factory=list)
    reason: str = ""  # why it could not tell (a Call reason, JudgeTimedOut...)
    excerpt: str = ""  # sanitised, bounded: for reproduction.md only


@dataclass
class Run:
    examples: list[Example]
    outcomes: list[Outcome] = field(default_factory=list)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def on(self, which: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.which == which]


def run(
    examples: list[Example],
    reproduction: Body,
    namespace: str,
    namespaced: bool,
    which: tuple[str, ...] = ("current", "previous"),
    *,
    budget: float = BUDGET,
    timeout: float = CALL_TIMEOUT,
    check_url: Callable[[str, bool], str | None] = egress.check,
) -> Run:
    """Send each example to each endpoint WHICH names (those the spec gives), bounded."""
    endpoints = (reproduction or {}).get("endpoints") or {}
    shared = [c for c in (reproduction or {}).get("checks") or [] if isinstance(c, dict)]
    result = Run(examples[:MAX_EXAMPLES])
    deadline = time.monotonic() + budget
    timeout = call_timeout(reproduction, timeout)
    dead_judges: dict[str, str] = {}  # judge URL -> why it is not asked again
    for name in which:
        if endpoints.get(name) is None:
            continue
        target = endpoint(endpoints[name], namespace, name)
        if not target.problem:
            refused = check_url(target.url, namespaced)
            if refused:
                target = Endpoint(name, target.url, target.format, f"URL refused: {refused}")
        result.endpoints[name] = target
        dead, dead_reason = "", ""  # unreachable or timed out: the rest are not sent
        for example in result.examples:
            outcome = Outcome(example.id, name)
            result.outcomes.append(outcome)
            if target.problem or dead:
                outcome.reason = "EndpointRefused" if target.problem else dead_reason
                # The operator's own words (with the policy's URL origin): not an answer.
                words = target.problem or f"not sent: {dead}"
                outcome.reasons = [egress.sanitise(words, 2 * WORDS, keep_urls=True)]
                continue
            left = deadline - time.monotonic()
            if left <= 0.5:
                outcome.reason, outcome.reasons = (
                    "BudgetSpent",
                    [f"not sent: the {budget:g}s budget was spent"],
                )
                continue
            call = model_answer(
                post(target.url, request_body(example.input, target.format), min(timeout, left)),
                target.format,
            )
            if call.answer is None:
                outcome.reason, outcome.reasons = call.reason, [call.words]
                if call.reason in ("EndpointUnreachable", "Timeout"):
                    dead = call.words  # the others would wait as long: not sent
                    dead_reason = call.reason
                continue
            all_checks = [*shared, *example.expect]
            judged = _judge_all(all_checks, example, call.answer, namespace, namespaced,
                                deadline, timeout, check_url, dead_judges)  # fmt: skip
            ok, reasons = ck.evaluate_all(all_checks, call.answer, judged)
            outcome.ok = ok if all_checks else None
            outcome.reasons = [egress.sanitise(r, WORDS) for r in reasons] or ["no checks"]
            if not all_checks:
                outcome.reason = "NoChecks"
            elif ok is None:
                outcome.reason = (
                    "JudgeTimedOut" if any("Timeout" in r for r in reasons) else "JudgeFailed"
                )
            outcome.excerpt = egress.sanitise(call.answer.text, EXCERPT)
    return result


def _judge_all(
    all_checks: list[Body],
    example: Example,
    answer: ck.Answer,
    namespace: str,
    namespaced: bool,
    deadline: float,
    timeout: float,
    check_url: Callable[[str, bool], str | None],
    dead: dict[str, str],
) -> dict[int, tuple[float | None, str]]:
    judged: dict[int, tuple[float | None, str]] = {}
    for i, check in enumerate(all_checks):
        if ck.kind_of(check) != "judge" or ck.check_problem(check):
            continue
        target = endpoint(check["judge"], namespace, "judge")
        refused = target.problem or check_url(target.url, namespaced)
        if refused:
            judged[i] = (None, egress.sanitise(f"URL refused: {refused}", WORDS))
            continue
        left = deadline - time.monotonic()
        if left <= 0.5:
            judged[i] = (None, "not asked: the time budget was spent")
            continue
        if target.url in dead:
            judged[i] = (None, dead[target.url])
            continue
        prompt = example.input if isinstance(example.input, str) else json.dumps(example.input)
        if target.format == "JSON":
            body: Body = {"input": prompt, "output": answer.text}
        else:
            body = {"messages": [{"role": "user", "content": prompt},
                                 {"role": "assistant", "content": answer.text}]}  # fmt: skip
        call = post(target.url, body, min(timeout, left))
        score, problem = judge_score(call, target.format)
        if call.reason in ("EndpointUnreachable", "Timeout"):
            dead[target.url] = f"not asked: {problem}"
        judged[i] = (score, egress.sanitise(problem, WORDS))
    return judged


# --- What it means (pure) -------------------------------------------------------------


def tally(outcomes: list[Outcome]) -> Body:
    """{total, passed, failed, unknown[, reason]} of one endpoint's outcomes."""
    out: Body = {
        "total": len(outcomes),
        "passed": sum(o.ok is True for o in outcomes),
        "failed": sum(o.ok is False for o in outcomes),
        "unknown": sum(o.ok is None for o in outcomes),
    }
    undecided = next((o for o in outcomes if o.ok is None), None)
    if undecided is not None:
        out["reason"] = undecided.reason or "Unknown"
        out["message"] = egress.sanitise(
            f"{undecided.example}: {'; '.join(undecided.reasons)}", WORDS
        )
    return out


def verdict(result: Run, problems: list[str] = ()) -> tuple[str, str, str]:
    """The Reproduced condition: (True | False | Unknown, reason, message)."""
    if not result.examples:
        why = (
            "; ".join(problems)
            if problems
            else (
                "give examples: aiincident report --example-input/--example-output, alert "
                "annotations, or the policy's reproduction.examplesFrom"
            )
        )
        return (
            "Unknown",
            "NoExamples",
            egress.sanitise(f"no examples to send: {why}", 400, keep_urls=True),
        )
    current = result.on("current")
    if not current:
        return "Unknown", "NoCurrentEndpoint", "the policy's reproduction has no endpoints.current"
    now = tally(current)
    previous = result.on("previous")
    before = tally(previous) if previous else None
    if before is None:
        compared = "no endpoints.previous to compare with"
    elif before["unknown"] and not before["failed"] and not before["passed"]:
        compared = f"the previous version could not be asked ({before.get('reason')}: {before.get('message', '')})"
    else:
        compared = f"{before['passed']} of {before['total']} pass on the previous version"
    if now["failed"]:
        first = next(o for o in current if o.ok is False)
        return "True", "FailsOnCurrent", egress.sanitise(
            f"{now['failed']} of {now['total']} examples fail on the current version "
            f"(example {first.example}: {'; '.join(first.reasons)}); {compared}", 400)  # fmt: skip
    if now["unknown"]:
        return "Unknown", now.get("reason", "Unknown"), egress.sanitise(
            f"{now['unknown']} of {now['total']} examples could not be checked on the current "
            f"version: {now.get('message', '')}", 400)  # fmt: skip
    return (
        "False",
        "PassesOnCurrent",
        (f"all {now['total']} examples pass on the current version; {compared}"),
    )


def regression(result: Run) -> tuple[int, int, int] | None:
    """(failing on current, passing on previous, total) when the current version fails
    examples that the previous one passes: a change between them is the cause."""
    current = {o.example: o.ok for o in result.on("current")}
    previous = {o.example: o.ok for o in result.on("previous")}
    failing = [e for e, ok in current.items() if ok is False]
    passing = [e for e in failing if previous.get(e) is True]
    if not failing or not passing:
        return None
    return len(failing), len(passing), len(current)


def digest(examples: list[Example], reproduction: Body) -> str:
    """Changes when the examples or the policy's reproduction do: a run is then due again."""
    text = json.dumps(
        [[e.to_json() for e in examples], reproduction or {}], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def status_record(
    result: Run, examples_digest: str, now: datetime, iso: Callable[[datetime], str]
) -> Body:
    """`status.reproduction` (counts, ids, bounded words: nothing of the answers)."""
    record: Body = {"examples": examples_digest, "at": iso(now), "count": len(result.examples)}
    for which in ("current", "previous"):
        outcomes = result.on(which)
        if outcomes:
            record[which] = tally(outcomes)
    failing = [o.example for o in result.on("current") if o.ok is False]
    if failing:
        record["failing"] = failing[:FAILING_KEPT]
    return record


def fix_record(
    result: Run, requested_at: str, now: datetime, iso: Callable[[datetime], str]
) -> Body:
    """`status.reproduction.fix`: the examples on the fixed (current) model."""
    current = result.on("current")
    counts = tally(current)
    failing = [o for o in current if o.ok is not True]
    record: Body = {
        "requestedAt": requested_at,
        "at": iso(now),
        "passed": bool(current) and not failing,
        "total": counts["total"],
    }
    if not current:
        record["message"] = "no examples to validate the fix with"
    elif failing:
        first = failing[0]
        state = "fails" if first.ok is False else f"could not be checked ({first.reason})"
        record["failing"] = [o.example for o in failing][:FAILING_KEPT]
        record["message"] = egress.sanitise(
            f"{len(failing)} of {len(current)} examples do not pass on the fixed model: example "
            f"{first.example} {state}: {'; '.join(first.reasons)}", 300)  # fmt: skip
    else:
        record["message"] = f"all {len(current)} examples pass on the fixed model"
    return record


def report(result: Run, title: str, now: str, problems: list[str] = ()) -> str:
    """reproduction.md: what was sent where and what each check said (bounded)."""
    status, reason, message = verdict(result, list(problems))
    lines = [f"# {title}", "", f"Run at {now}. Reproduced: {status} ({reason}): {message}", ""]
    for which, target in result.endpoints.items():
        where = egress.display(target.url) if target.url else "(no URL)"
        state = f": {target.problem}" if target.problem else ""
        lines.append(f"- {which}: {target.format} {where}{state}")
    lines += ["", *[f"- problem: {p}" for p in problems][:20]]
    lines += ["", "| example | category | endpoint | result | why | answer (excerpt) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    categories = {e.id: e.category for e in result.examples}
    for o in result.outcomes:
        state = {True: "pass", False: "FAIL", None: f"unknown ({o.reason})"}[o.ok]
        lines.append(f"| {o.example} | {_cell(categories.get(o.example, ''))} | {o.which} | {state} "
                     f"| {_cell('; '.join(o.reasons))} | {_cell(o.excerpt)} |")  # fmt: skip
    return "\n".join(lines)[: 200 * 1024] + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- The evidence ConfigMap -----------------------------------------------------------


def evidence_name(incident: Body) -> str:
    from .store import owned_name  # store loads the client: only when writing

    return owned_name(incident, EVIDENCE_SUFFIX)


def write_keys(api: Access, incident: Body, data: dict[str, str]) -> None:
    """Add DATA's keys to the incident's evidence ConfigMap (created if it is not there);
    the other keys are left as they are."""
    from .store import NotOurs, write_owned_configmap

    namespace = incident["metadata"]["namespace"]
    ref = Ref("ConfigMap", namespace, evidence_name(incident))
    current = api.get(ref)
    if current is None:
        write_owned_configmap(incident, EVIDENCE_SUFFIX, data)
        return
    owners = current["metadata"].get("ownerReferences") or []
    if not any(o.get("kind") == "AIIncident" and o.get("name") == incident["metadata"]["name"]
               for o in owners):  # fmt: skip
        raise NotOurs(f"ConfigMap {namespace}/{ref.name} is not owned by this incident")
    api.patch(ref, {"data": data})


def kept_keys(api: Access, incident: Body) -> dict[str, str]:
    """The reproduction's keys of the evidence ConfigMap now (to carry over a rewrite)."""
    try:
        current = api.get(
            Ref("ConfigMap", incident["metadata"]["namespace"], evidence_name(incident))
        )
    except APIError:
        return {}
    data = (current or {}).get("data") or {}
    return {k: data[k] for k in EVIDENCE_KEYS if k in data}
