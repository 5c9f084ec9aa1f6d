"""Examples of an incident: inputs that show the failure, the bad output seen, what good is.

The playbook: "gather a set of examples that demonstrate the problem and test them
against previous model versions", then "validate the fix against the examples".
An example is one request to the model (a prompt, or a JSON request body), the bad
output someone saw, and the checks a good answer must satisfy (the same shape as a
policy's `reproduction.checks` entries). They are kept as JSON Lines, never in the
spec of an object that GitOps may own.

Pure: no kopf, no kubernetes (the reading and storing live beside it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 50  # sent to two endpoints each, per reproduction: a bound on calls
MAX_INPUT = 16 * 1024  # characters of one input (a prompt or a JSON body as text)
MAX_OUTPUT = 4 * 1024  # characters of the bad output kept
# Bytes of JSON Lines in an examples ConfigMap: far below the apiserver's 1 MiB per object.
MAX_STORED_BYTES = 768 * 1024

# Alert annotations that carry examples (Alertmanager style: snake_case, as runbook_url).
# `example_input` / `example_output`: one prompt and the bad answer seen, as text;
# `examples`: a JSON list of `{"input", "output"?, "expect"?}` objects.
ALERT_INPUT = "example_input"
ALERT_OUTPUT = "example_output"
ALERT_EXAMPLES = "examples"
CUT_MARK = "…"  # the intake ends an annotation value it shortened with it (intake.mapping)


@dataclass(frozen=True)
class Example:
    input: str | dict[str, Any]  # a prompt, or a JSON request body
    output: str | None = None  # the bad output seen
    expect: tuple[dict[str, Any], ...] = ()  # checks a good answer must satisfy
    source: str = ""  # "report", "alert:<fingerprint>", "configMap:<name>"
    category: str = ""  # e.g. "harmful-advice"; tags the exported evaluation cases
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        """Stable across sources and restarts: the same input is the same example."""
        text = self.input if isinstance(self.input, str) else json.dumps(self.input, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "input": self.input}
        if self.output is not None:
            out["output"] = self.output
        if self.expect:
            out["expect"] = list(self.expect)
        if self.source:
            out["source"] = self.source
        if self.category:
            out["category"] = self.category
        return out


class ExampleError(ValueError):
    """One example that cannot be used, with what is wrong (shown, never raised further)."""


def from_json(raw: Any, source: str = "") -> Example:
    """An example from one decoded JSON object (`{"input": ..., "output": ..., "expect": [...]}`)."""
    if not isinstance(raw, dict):
        raise ExampleError("an example is a JSON object with an `input`")
    value = raw.get("input")
    if isinstance(value, str):
        if not value.strip():
            raise ExampleError("`input` is empty")
        if len(value) > MAX_INPUT:
            raise ExampleError(f"`input` is longer than {MAX_INPUT} characters")
    elif isinstance(value, dict):
        if len(json.dumps(value)) > MAX_INPUT:
            raise ExampleError(f"`input` is larger than {MAX_INPUT} characters of JSON")
    else:
        raise ExampleError("`input` must be a prompt (a string) or a JSON request body (an object)")
    output = raw.get("output")
    if output is not None and not isinstance(output, str):
        output = json.dumps(output)
    expect = raw.get("expect") or []
    if not isinstance(expect, list) or not all(isinstance(e, dict) for e in expect):
        raise ExampleError("`expect` must be a list of checks (objects)")
    category = raw.get("category") or ""
    return Example(
        input=value,
        output=output[:MAX_OUTPUT] if output is not None else None,
        expect=tuple(expect),
        source=str(raw.get("source") or source),
        category=str(category),
    )


def to_jsonl(examples: list[Example]) -> str:
    return "".join(json.dumps(e.to_json(), sort_keys=True) + "\n" for e in examples)


def from_jsonl(text: str, source: str = "") -> tuple[list[Example], list[str]]:
    """The examples of a JSON Lines text, and one problem line per line that is not one."""
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            examples.append(from_json(json.loads(line), source))
        except (ValueError, ExampleError) as err:
            problems.append(f"{source or 'examples'} line {number}: {err}")
    return examples, problems


def merged(*groups: list[Example], limit: int | None = MAX_EXAMPLES) -> list[Example]:
    """One list, first source wins for the same input, at most LIMIT (None: all)."""
    seen: set[str] = set()
    out: list[Example] = []
    for group in groups:
        for example in group:
            if example.id not in seen:
                seen.add(example.id)
                out.append(example)
    return out if limit is None else out[:limit]


def fit(examples: list[Example], max_bytes: int = MAX_STORED_BYTES) -> list[Example]:
    """The first EXAMPLES whose JSON Lines take at most MAX_BYTES (and MAX_EXAMPLES)."""
    out: list[Example] = []
    used = 0
    for example in examples[:MAX_EXAMPLES]:
        size = len(to_jsonl([example]).encode())
        if used + size > max_bytes:
            break
        out.append(example)
        used += size
    return out


def from_flags(flags: list[tuple[str, str]], source: str = "report") -> list[Example]:
    """`--example-input` / `--example-output` in command-line order, as ("input" | "output",
    TEXT): each output is the bad answer to the input just before it. Raises ExampleError."""
    raws: list[dict[str, Any]] = []
    outputs = 0
    for flag, text in flags:
        if flag == "input":
            raws.append({"input": text})
            continue
        outputs += 1
        if not raws or "output" in raws[-1]:
            raise ExampleError(
                f"--example-output #{outputs} has no --example-input of its own before it: "
                "give each output right after its input"
            )
        raws[-1]["output"] = text
    examples = []
    for i, raw in enumerate(raws, 1):
        try:
            examples.append(from_json(raw, source))
        except ExampleError as err:
            raise ExampleError(f"--example-input #{i}: {err}") from None
    return examples


def from_alerts(alerts: list[dict[str, Any]]) -> tuple[list[Example], list[str]]:
    """The examples in `spec.alerts[]` annotations, and one problem line per bad one."""
    examples: list[Example] = []
    problems: list[str] = []
    for alert in alerts:
        found, wrong = from_alert(alert)
        examples += found
        problems += wrong
    return examples, problems


def from_alert(alert: dict[str, Any]) -> tuple[list[Example], list[str]]:
    annotations = alert.get("annotations") or {}
    name = alert.get("alertname") or (alert.get("labels") or {}).get("alertname") or "alert"
    source = f"alert:{alert.get('fingerprint') or name}"
    where = f"alert {name} ({alert.get('fingerprint', '?')}) annotation"
    examples: list[Example] = []
    problems: list[str] = []
    text = annotations.get(ALERT_INPUT)
    if isinstance(text, str) and text.strip():
        output = annotations.get(ALERT_OUTPUT)
        examples.append(from_json({"input": text, "output": output}, source))
        for key, value in ((ALERT_INPUT, text), (ALERT_OUTPUT, output)):
            if isinstance(value, str) and value.endswith(CUT_MARK):
                problems.append(f"{where} {key}: may have been cut by the intake (1024 characters)")
    elif annotations.get(ALERT_OUTPUT):
        problems.append(f"{where} {ALERT_OUTPUT}: has no {ALERT_INPUT} beside it; left out")
    listed = annotations.get(ALERT_EXAMPLES)
    if isinstance(listed, str) and listed.strip():
        try:
            raw = json.loads(listed)
        except ValueError:
            cut = " (it may have been cut at 1024 characters)" if listed.endswith(CUT_MARK) else ""
            problems.append(f"{where} {ALERT_EXAMPLES}: not JSON{cut}; left out")
            raw = []
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            problems.append(f"{where} {ALERT_EXAMPLES}: must be a JSON list of examples")
            raw = []
        for i, item in enumerate(raw, 1):
            try:
                examples.append(from_json(item, source))
            except ExampleError as err:
                problems.append(f"{where} {ALERT_EXAMPLES} item {i}: {err}")
    return examples, problems
