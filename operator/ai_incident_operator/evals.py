"""The incident's examples as an evaluation suite: promptfoo YAML or JSON Lines.

The playbook: "add the failure mode to your evaluation suite and red team scenarios".
`promptfoo_suite` and `jsonl` translate (pure) the examples and the checks a good
answer must satisfy (the policy's `reproduction.checks` for every example, plus each
example's own `expect`; their meaning is `investigation.checks`'): to promptfoo's

    contains -> contains (both case-sensitive)      notContains -> not-contains
    regex -> regex (JavaScript's RegExp there)     maxLatency -> latency (milliseconds)
    jsonPath with min/max/equals -> javascript     judge -> left out, said in a comment

A judge is a guard model behind a URL that answers a score; promptfoo has no assertion
that calls such an endpoint (its `webhook` wants another answer shape), so it is named
in the suite's header and in each test's metadata instead.

`aiincident export-evals NAME [-n NS] [-o promptfoo|jsonl] [--provider-url URL]` prints
the suite; `add_report_arguments` and `reported` give `aiincident report` its examples.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from .durations import parse_duration
from .investigation import checks as chk
from .investigation import examples as ex

FORMATS = ("promptfoo", "jsonl")
PLACEHOLDER_URL = "http://MODEL-ENDPOINT.invalid/v1/chat/completions"
PROMPT_VAR = "input"


# --- Checks -> promptfoo assertions (pure) -------------------------------------------------


def assertion(check: dict[str, Any]) -> dict[str, Any] | None:
    """The promptfoo assertion for CHECK; None when promptfoo has none (a judge, a bad check)."""
    if chk.check_problem(check):
        return None
    kind = chk.kind_of(check)
    value = check[kind]
    if kind == "contains":
        return {"type": "contains", "value": literal(value)}
    if kind == "notContains":
        return {"type": "not-contains", "value": literal(value)}
    if kind == "regex":
        return {"type": "regex", "value": literal(value)}
    if kind == "maxLatency":
        millis = int(parse_duration(str(value)).total_seconds() * 1000)
        return {"type": "latency", "threshold": millis}
    if kind == "jsonPath":
        return {"type": "javascript", "value": literal(_json_path_js(check))}
    return None


def literal(text: str) -> str:
    """TEXT such that promptfoo's Nunjucks rendering gives it back unchanged.

    promptfoo renders vars and assertion values as templates: `{{ x }}` in a prompt would
    be changed, a lone `{%` fails the test. Each `{` that opens a tag becomes `{{ "{" }}`:
    a string literal, which names no variable (promptfoo leaves values that name unknown
    variables unrendered, so `{% raw %}` would come through as written) and is no
    partial tag (which promptfoo wraps in raw itself).
    """
    return _TAG_OPEN.sub('{{ "{" }}', text)


_TAG_OPEN = re.compile(r"\{(?=[{%#])")


def _json_path_js(check: dict[str, Any]) -> str:
    """A promptfoo `javascript` assertion body for a jsonPath check: (pass, reason)."""
    steps = chk.parse_path(check["jsonPath"]) or []
    bounds = {k: check[k] for k in ("min", "max", "equals") if k in check}
    return "\n".join(
        [
            f"const path = {json.dumps(check['jsonPath'])};",
            f"const steps = {json.dumps(steps)};",
            f"const bounds = {json.dumps(bounds)};",
            "let doc;",
            "try { doc = JSON.parse(output); } catch (e) {",
            "  return { pass: false, score: 0, reason: `${path}: the answer is not JSON` };",
            "}",
            "for (const step of steps) {",
            "  if (doc === null || typeof doc !== 'object' || !(step in doc)) {",
            "    return { pass: false, score: 0, reason: `${path}: not in the answer` };",
            "  }",
            "  doc = doc[step];",
            "}",
            "if ('equals' in bounds && JSON.stringify(doc) !== JSON.stringify(bounds.equals)) {",
            "  return { pass: false, score: 0, reason: `${path} is ${JSON.stringify(doc)}` };",
            "}",
            "if ('min' in bounds || 'max' in bounds) {",
            "  if (typeof doc !== 'number') {",
            "    return { pass: false, score: 0, reason: `${path} is not a number` };",
            "  }",
            "  if ('min' in bounds && doc < bounds.min) {",
            "    return { pass: false, score: 0, reason: `${path} is ${doc}, below ${bounds.min}` };",
            "  }",
            "  if ('max' in bounds && doc > bounds.max) {",
            "    return { pass: false, score: 0, reason: `${path} is ${doc}, above ${bounds.max}` };",
            "  }",
            "}",
            "return { pass: true, score: 1, reason: `${path} is ${JSON.stringify(doc)}` };",
        ]
    )


def checks_for(example: ex.Example, policy_checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The policy's checks, then the example's own, each once."""
    out: list[dict[str, Any]] = []
    for check in [*policy_checks, *example.expect]:
        if check not in out:
            out.append(check)
    return out


def prompt_text(example: ex.Example) -> str:
    """What the suite sends: the prompt; of a chat request body, its last user message."""
    if isinstance(example.input, str):
        return example.input
    messages = example.input.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else json.dumps(content)
    return json.dumps(example.input, sort_keys=True)


# --- The suite (pure) ---------------------------------------------------------------------


def incident_name(incident: dict[str, Any]) -> str:
    meta = incident.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def promptfoo_suite(
    incident: dict[str, Any],
    examples: list[ex.Example],
    policy_checks: list[dict[str, Any]],
    provider_url: str | None,
) -> dict[str, Any]:
    """A promptfoo config: an `http` provider for the model, one test per example."""
    name = incident_name(incident)
    category = str((incident.get("spec") or {}).get("category") or "Other")
    tests = []
    for example in examples:
        checks = checks_for(example, policy_checks)
        asserts = [a for a in (assertion(c) for c in checks) if a is not None]
        metadata: dict[str, Any] = {
            "incident": name,
            "category": example.category or category,
            "exampleId": example.id,
        }
        if example.source:
            metadata["source"] = example.source
        if example.output is not None:
            metadata["badOutput"] = example.output
        if not isinstance(example.input, str):
            metadata["request"] = json.dumps(example.input, sort_keys=True)
        left_out = [chk.describe(c) for c in checks if assertion(c) is None]
        if left_out:
            metadata["notExported"] = left_out
        test: dict[str, Any] = {
            "description": f"{name} {example.category or category} {example.id}: "
            + _short(prompt_text(example), 60),
            "vars": {PROMPT_VAR: literal(prompt_text(example))},
            "metadata": metadata,
        }
        if asserts:
            test["assert"] = asserts
        tests.append(test)
    return {
        "description": f"Examples of AI incident {name} ({category})",
        "tags": {"incident": name, "category": category},
        "prompts": ["{{" + PROMPT_VAR + "}}"],
        "providers": [_provider(provider_url or PLACEHOLDER_URL, name)],
        # Versions of a model answer the same prompt differently: never from a cache.
        "evaluateOptions": {"cache": False},
        "tests": tests,
    }


def _provider(url: str, name: str) -> dict[str, Any]:
    return {
        "id": "http",
        "label": f"model of {name}",
        "config": {
            "url": url,
            "method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": {"messages": [{"role": "user", "content": "{{prompt}}"}]},
            "transformResponse": "json.choices[0].message.content",
        },
    }


def promptfoo_yaml(
    incident: dict[str, Any],
    examples: list[ex.Example],
    policy_checks: list[dict[str, Any]],
    provider_url: str | None,
) -> str:
    suite = promptfoo_suite(incident, examples, policy_checks, provider_url)
    header = [
        f"# promptfoo test suite: the examples of AI incident {incident_name(incident)}.",
        "# Run: promptfoo eval -c THIS_FILE   (the model must fail none of the tests)",
    ]
    if not provider_url:
        header.append(
            f"# TODO: set providers[0].config.url ({PLACEHOLDER_URL} is a placeholder) to the "
            "model's OpenAI-compatible chat/completions URL, or export with --provider-url."
        )
    judges = sorted(
        {chk.describe(c) for e in examples for c in checks_for(e, policy_checks)
         if chk.kind_of(c) == "judge"}
    )  # fmt: skip
    if judges:
        header.append(
            "# Not exported: "
            + "; ".join(judges)
            + " (a judge endpoint: promptfoo has no assertion that calls one)."
        )
    body = yaml.dump(suite, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(header) + "\n" + body


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (JavaScript, long prompts) as readable `|` blocks."""


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # PyYAML's emitter falls back to a quoted style where a block cannot hold the text.
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _string)


def jsonl(
    incident: dict[str, Any], examples: list[ex.Example], policy_checks: list[dict[str, Any]]
) -> str:
    """One JSON object a line: the example, the checks it must pass, the incident's tags."""
    name = incident_name(incident)
    category = str((incident.get("spec") or {}).get("category") or "Other")
    lines = []
    for example in examples:
        doc = example.to_json()
        doc["expect"] = checks_for(example, policy_checks)
        doc["incident"] = name
        doc["category"] = example.category or category
        lines.append(json.dumps(doc, sort_keys=True, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def export_command(name: str, namespace: str) -> str:
    return f"aiincident export-evals {name} -n {namespace} -o promptfoo > {name}-evals.yaml"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- `aiincident report` examples (parsing, before anything is created) ------------------


class _InOrder(argparse.Action):
    """Keeps `--example-input` and `--example-output` in one list, in command-line order."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        flags = getattr(namespace, "example_flags", None) or []
        namespace.example_flags = [*flags, (self.dest.removeprefix("example_"), values)]


def add_report_arguments(report: argparse.ArgumentParser) -> None:
    report.set_defaults(example_flags=[])
    report.add_argument(
        "--example-input",
        action=_InOrder,
        metavar="TEXT",
        help="a prompt that showed the failure (repeatable)",
    )
    report.add_argument(
        "--example-output",
        action=_InOrder,
        metavar="TEXT",
        help="the bad answer seen, right after its --example-input",
    )
    report.add_argument(
        "--examples",
        metavar="FILE",
        help='examples as JSON Lines: {"input": ..., "output": ..., "expect": [checks]} a line',
    )


def reported(args: argparse.Namespace) -> list[ex.Example]:
    """The examples ARGS give; raises ExampleError saying which one is wrong."""
    examples = ex.from_flags(getattr(args, "example_flags", None) or [])
    if getattr(args, "examples", None):
        path = Path(args.examples)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ex.ExampleError(f"--examples {path}: cannot read it: {err}") from None
        found, problems = ex.from_jsonl(text, "report")
        if problems:
            raise ex.ExampleError(
                f"--examples {path}: " + "; ".join(p.removeprefix("report ") for p in problems)
            )
        if not found:
            raise ex.ExampleError(f"--examples {path}: no examples in it")
        examples += found
    distinct = ex.merged(examples, limit=None)
    if len(distinct) > ex.MAX_EXAMPLES:
        raise ex.ExampleError(f"{len(distinct)} examples: at most {ex.MAX_EXAMPLES} are kept")
    if len(ex.fit(distinct)) < len(distinct):
        raise ex.ExampleError(
            f"the examples take more than {ex.MAX_STORED_BYTES // 1024} KiB: give fewer or shorter"
        )
    return distinct


# --- `aiincident export-evals` ------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from .reports import _command, _parser

    export = _parser(
        subparsers,
        "export-evals",
        "print an incident's examples as an evaluation suite (promptfoo YAML or JSON Lines)",
    )
    export.add_argument("name")
    export.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
    export.add_argument(
        "-o", "--output", choices=FORMATS, default="promptfoo", help="default: %(default)s"
    )
    export.add_argument(
        "--provider-url",
        metavar="URL",
        help="the model's OpenAI-compatible chat/completions URL for the promptfoo provider "
        "(default: the policy's reproduction.endpoints.current url, else a marked placeholder)",
    )
    export.set_defaults(func=_command(_export))


def _export(args: argparse.Namespace) -> int:
    from . import kube
    from .investigation import example_store
    from .reports import Failure, _get

    incident = _get(args.namespace, args.name)
    policy_spec, problems = _policy_of(incident)
    examples, wrong = example_store.read(kube.cluster(), incident, policy_spec)
    for line in [*problems, *wrong]:
        print(f"aiincident: warning: {line}", file=sys.stderr)
    if not examples:
        raise Failure(
            f"AIIncident {args.namespace}/{args.name} has no examples: give them with "
            "aiincident report --example-input/--examples, alert annotations example_input/"
            "examples, or the policy's reproduction.examplesFrom"
        )
    policy_checks = [
        c for c in ((policy_spec or {}).get("reproduction") or {}).get("checks") or []
        if isinstance(c, dict)
    ]  # fmt: skip
    if args.output == "jsonl":
        sys.stdout.write(jsonl(incident, examples, policy_checks))
        return 0
    url = args.provider_url or endpoint_url(policy_spec, args.namespace)
    sys.stdout.write(promptfoo_yaml(incident, examples, policy_checks, url))
    return 0


def endpoint_url(policy_spec: dict[str, Any] | None, namespace: str) -> str | None:
    """The URL of the policy's current endpoint (a Service's in-cluster URL), if it is chat."""
    current = (((policy_spec or {}).get("reproduction") or {}).get("endpoints") or {}).get(
        "current"
    ) or {}
    if not isinstance(current, dict) or current.get("format", "OpenAIChat") != "OpenAIChat":
        return None
    if isinstance(current.get("url"), str):
        return current["url"]
    service = current.get("service")
    if isinstance(service, dict) and service.get("name"):
        port = service.get("port", 80)
        return f"http://{service['name']}.{namespace}.svc:{port}{service.get('path', '/')}"
    return None


def _policy_of(incident: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The spec of the policy the incident's status names (None without one), and problems."""
    from . import kube
    from .errors import APIError
    from .resources import Ref

    ref = (incident.get("status") or {}).get("policyRef") or {}
    if not ref.get("name"):
        return None, []
    kind = ref.get("kind") or "MitigationPolicy"
    namespace = ref.get("namespace") if kind == "MitigationPolicy" else None
    try:
        body = kube.get(Ref(kind, namespace, ref["name"]))
    except APIError as err:
        return None, [
            f"{kind} {ref['name']} could not be read ({err.message}): its checks are left out"
        ]
    if body is None:
        return None, [f"{kind} {ref['name']} not found: its checks and examples are left out"]
    return body.get("spec") or {}, []
