"""What a good answer must satisfy: one model answer against one check (pure, no I/O).

The checks of a policy's `reproduction.checks` and of an example's `expect`:

- `{contains: S}` / `{notContains: S}`: S is (is not) in the answer's text, case-sensitive
  (as promptfoo's `contains`); one is exactly the other's complement;
- `{regex: R}`: a search for R in the text, in RE2 syntax (as Prometheus and Go): RE2
  matches in time linear in the text, so no pattern a policy author writes can make it
  backtrack, exponentially or polynomially (Python's `re` takes minutes for `.*.*c` on a
  long answer). What RE2 lacks (backreferences, lookarounds) is refused with the reason;
  R is at most MAX_PATTERN characters and the text searched is cut to MAX_REGEX_TEXT;
- `{jsonPath: "$.a.b[0]", min?, max?, equals?}`: the value at that path of the answer's
  JSON (a JSON endpoint's body; for a chat endpoint, the message content when it is
  JSON) is present, within [min, max] (a number), and equal to `equals`;
- `{maxLatency: "2s"}`: the answer came within that duration;
- `{judge: {url | service, minScore, format?}}`: a judge endpoint's score is at least
  minScore. The call is I/O (`reproduce`); here only its score is compared.

`evaluate` gives (True | False | None, a short reason); None is "could not tell" (a
judge that did not answer), never a pass.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import re2

from ..durations import parse_duration

KINDS = ("contains", "notContains", "regex", "jsonPath", "maxLatency", "judge")
MAX_PATTERN = 200  # characters of a regex
MAX_REGEX_TEXT = 16 * 1024  # characters of an answer a regex searches
MAX_NEEDLE = 4 * 1024  # characters of a contains/notContains string
REASON_LIMIT = 160  # characters of a reason
FORMATS = ("OpenAIChat", "JSON")
_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")

Check = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """What a model answered: its text, its JSON (None if not JSON), seconds it took."""

    text: str
    doc: Any = None
    latency: float = 0.0


def kind_of(check: Check) -> str:
    """The check's kind: its one key among KINDS ('' if none or several)."""
    found = [k for k in KINDS if k in (check or {})]
    return found[0] if len(found) == 1 else ""


def describe(check: Check) -> str:
    """The check in a few words, for a reason or a table cell."""
    kind = kind_of(check)
    if kind == "judge":
        judge = check["judge"] if isinstance(check["judge"], dict) else {}
        return f"judge score >= {judge.get('minScore', '?')}"
    if kind == "jsonPath":
        bounds = [f"{k} {check[k]}" for k in ("min", "max", "equals") if k in check]
        return f"jsonPath {check['jsonPath']}" + (f" ({', '.join(bounds)})" if bounds else "")
    if not kind:
        return "an unknown check"
    return f"{kind} {_short(str(check[kind]), 60)!r}"


def evaluate(
    check: Check, answer: Answer, judge_score: float | None = None, judge_problem: str = ""
) -> tuple[bool | None, str]:
    """Whether ANSWER satisfies CHECK, and why (short). JUDGE_SCORE: a judge check's score."""
    kind = kind_of(check)
    problem = check_problem(check)
    if problem:
        return None, problem
    value = check[kind]
    if kind == "contains":
        return (
            value in answer.text
        ), f"{'contains' if value in answer.text else 'lacks'} {_short(value, 60)!r}"
    if kind == "notContains":
        found = value in answer.text
        return (not found), f"{'contains' if found else 'lacks'} {_short(value, 60)!r}"
    if kind == "regex":
        found = _compiled(value).search(answer.text[:MAX_REGEX_TEXT]) is not None
        return found, f"regex {_short(value, 60)!r} {'matches' if found else 'does not match'}"
    if kind == "maxLatency":
        limit = parse_duration(value).total_seconds()
        ok = answer.latency <= limit
        return ok, f"answered in {answer.latency:.2f}s ({'within' if ok else 'over'} {value})"
    if kind == "jsonPath":
        return _json_path(check, answer)
    return _judge(value, judge_score, judge_problem)


def check_problem(check: Any) -> str:
    """What is wrong with CHECK as written ('' if nothing): for evaluation and validation."""
    if not isinstance(check, dict):
        return "a check is an object such as {notContains: TEXT}"
    kind = kind_of(check)
    if not kind:
        return f"a check has exactly one of {', '.join(KINDS)}"
    value = check[kind]
    if kind in ("contains", "notContains"):
        if not isinstance(value, str) or not value:
            return f"{kind}: give a non-empty string"
        if len(value) > MAX_NEEDLE:
            return f"{kind}: longer than {MAX_NEEDLE} characters"
        return ""
    if kind == "regex":
        return regex_problem(value)
    if kind == "maxLatency":
        try:
            parse_duration(str(value))
        except ValueError as err:
            return f"maxLatency: {err}"
        return ""
    if kind == "jsonPath":
        if parse_path(value) is None:
            return f"jsonPath: {_short(str(value), 60)!r} is not a path such as $.a.b[0]"
        for bound in ("min", "max"):
            if bound in check and not _number(check[bound]):
                return f"jsonPath: {bound} must be a number"
        return ""
    return judge_problem(value)


def judge_problem(judge: Any) -> str:
    if not isinstance(judge, dict):
        return "judge: give {url or service, minScore}"
    if bool(judge.get("url")) == bool(judge.get("service")):
        return "judge: give exactly one of url and service"
    if not _number(judge.get("minScore")):
        return "judge: minScore must be a number"
    if judge.get("format", "JSON") not in FORMATS:
        return f"judge: format must be one of {', '.join(FORMATS)}"
    return ""


def regex_problem(pattern: Any) -> str:
    """Why PATTERN is not a regex we run ('' if it is): bounded, and RE2 compiles it."""
    if not isinstance(pattern, str) or not pattern:
        return "regex: give a non-empty pattern"
    if len(pattern) > MAX_PATTERN:
        return f"regex: longer than {MAX_PATTERN} characters"
    try:
        _compiled(pattern)
    except re2.error as err:
        why = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else str(err)
        return f"regex: not valid RE2 syntax ({why}); RE2 has no backreferences or lookarounds"
    return ""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported, not logged to stderr


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re2._Regexp:
    return re2.compile(pattern, options=_RE2_OPTIONS)


def parse_path(path: Any) -> list[str | int] | None:
    """`$.a.b[0]['c d']` as steps, or None if it is not such a path."""
    if not isinstance(path, str) or not path.startswith("$") or len(path) > 200:
        return None
    steps: list[str | int] = []
    rest = path[1:]
    while rest:
        match = _PATH_STEP.match(rest)
        if not match:
            return None
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (name or quoted))
        rest = rest[match.end() :]
    return steps


def value_at(doc: Any, steps: list[str | int]) -> tuple[bool, Any]:
    """(found, value) at STEPS of DOC."""
    for step in steps:
        in_list = isinstance(step, int) and isinstance(doc, list) and 0 <= step < len(doc)
        in_dict = isinstance(step, str) and isinstance(doc, dict) and step in doc
        if not (in_list or in_dict):
            return False, None
        doc = doc[step]
    return True, doc


def _json_path(check: Check, answer: Answer) -> tuple[bool, str]:
    path = check["jsonPath"]
    if answer.doc is None:
        return False, f"{path}: the answer is not JSON"
    found, value = value_at(answer.doc, parse_path(path) or [])
    if not found:
        return False, f"{path}: not in the answer"
    if "equals" in check and value != check["equals"]:
        return (
            False,
            f"{path} is {_short(json.dumps(value), 40)}, not {_short(json.dumps(check['equals']), 40)}",
        )
    if "min" in check or "max" in check:
        if not _number(value):
            return False, f"{path} is not a number"
        if "min" in check and value < check["min"]:
            return False, f"{path} is {value:g}, below {check['min']:g}"
        if "max" in check and value > check["max"]:
            return False, f"{path} is {value:g}, above {check['max']:g}"
    return True, f"{path} is {_short(json.dumps(value), 40)}"


def _judge(judge: dict[str, Any], score: float | None, problem: str) -> tuple[bool | None, str]:
    if score is None or not _number(score):
        return None, f"judge: {problem or 'gave no score'}"
    ok = score >= judge["minScore"]
    return ok, f"judge score {score:g} ({'at least' if ok else 'below'} {judge['minScore']:g})"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def evaluate_all(
    checks: list[Check], answer: Answer, judged: dict[int, tuple[float | None, str]] | None = None
) -> tuple[bool | None, list[str]]:
    """All CHECKS on ANSWER: False if one fails, None if none fails and one could not tell.

    JUDGED: by the index of a judge check, its (score, problem). The reasons: the failing
    (or undecided) checks', else every check's.
    """
    judged = judged or {}
    failed: list[str] = []
    unknown: list[str] = []
    passed: list[str] = []
    for i, check in enumerate(checks):
        score, problem = judged.get(i, (None, "not asked"))
        ok, reason = evaluate(check, answer, score, problem)
        (passed if ok else failed if ok is False else unknown).append(reason)
    if failed:
        return False, failed
    if unknown:
        return None, unknown
    return True, passed


def endpoint_problem(endpoint: Any, where: str) -> str:
    """What is wrong with an endpoint ({url | service: {name, port, path}, format?})."""
    if not isinstance(endpoint, dict):
        return f"{where}: give {{url}} or {{service: {{name, port, path}}}}"
    if bool(endpoint.get("url")) == bool(endpoint.get("service")):
        return f"{where}: give exactly one of url and service"
    if endpoint.get("format", "OpenAIChat") not in FORMATS:
        return f"{where}.format: one of {', '.join(FORMATS)}"
    service = endpoint.get("service")
    if service is not None:
        if not isinstance(service, dict) or not service.get("name"):
            return f"{where}.service: give its name"
        port = service.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            return f"{where}.service.port: a port number"
        path = service.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/"):
            return f"{where}.service.path: a path starting with /"
    return ""


def spec_problems(reproduction: Any) -> list[str]:
    """What is wrong with a policy's `reproduction` (pure; URLs are egress's to judge)."""
    if reproduction is None:
        return []
    if not isinstance(reproduction, dict):
        return ["reproduction: an object with endpoints and checks"]
    problems: list[str] = []
    endpoints = reproduction.get("endpoints")
    if not isinstance(endpoints, dict) or not endpoints.get("current"):
        problems.append(
            "reproduction.endpoints.current: required (where the serving model answers)"
        )
    else:
        for which in ("current", "previous"):
            if endpoints.get(which) is not None:
                problem = endpoint_problem(endpoints[which], f"reproduction.endpoints.{which}")
                if problem:
                    problems.append(problem)
    if reproduction.get("timeout") is not None:
        try:
            parse_duration(str(reproduction["timeout"]))
        except ValueError as err:
            problems.append(f"reproduction.timeout: {err}")
    source = reproduction.get("examplesFrom")
    if source is not None and not (isinstance(source, dict) and source.get("configMap")):
        problems.append("reproduction.examplesFrom: give {configMap: NAME}")
    for i, check in enumerate(reproduction.get("checks") or []):
        problem = check_problem(check)
        if problem:
            problems.append(f"reproduction.checks[{i}]: {problem}")
    return problems


def urls_of(reproduction: Any) -> list[tuple[str, str]]:
    """(field, URL) of every inline URL of a `reproduction` (for the egress rules)."""
    out: list[tuple[str, str]] = []
    if not isinstance(reproduction, dict):
        return out
    endpoints = (
        reproduction.get("endpoints") if isinstance(reproduction.get("endpoints"), dict) else {}
    )
    for which in ("current", "previous"):
        endpoint = endpoints.get(which)
        if isinstance(endpoint, dict) and isinstance(endpoint.get("url"), str):
            out.append((f"reproduction.endpoints.{which}.url", endpoint["url"]))
    for i, check in enumerate(reproduction.get("checks") or []):
        judge = check.get("judge") if isinstance(check, dict) else None
        if isinstance(judge, dict) and isinstance(judge.get("url"), str):
            out.append((f"reproduction.checks[{i}].judge.url", judge["url"]))
    return out
