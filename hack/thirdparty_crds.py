"""Where the tests get the third-party CRDs, and a checked download of them.

The suites check every patch against the real Istio, Gateway API, KEDA, Prometheus
Operator and model-serving schemas. Those files are data from their projects and are not
kept in this repository. They come from, in this order:

1. the folder in ``AIINCIDENT_THIRDPARTY_CRDS``;
2. ``../shared/thirdparty-crds`` beside the repository;
3. a cache that ``make deps`` fills (``python hack/thirdparty_crds.py fetch``) from the
   upstream files pinned below, when neither 1 nor 2 has any.

Each download is pinned to a commit and checked against the sha256 of the upstream file
before anything is written. The same edits as in shared/thirdparty-crds/README.md are
then made (Kubernetes 1.20 rejects ``default: ""``), and the result is checked too, so the
cache holds exactly what ../shared holds.

Usage: thirdparty_crds.py fetch [--cache-root DIR] | where
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
ENV = "AIINCIDENT_THIRDPARTY_CRDS"
SHARED = REPO.parent / "shared" / "thirdparty-crds"
CACHE_ROOT = Path(
    os.environ.get("AIINCIDENT_CACHE", Path.home() / ".cache" / "ai-incident-operator")
)
RAW = "https://raw.githubusercontent.com"


# --- The edits (pure: text in, text out) ------------------------------------------------

_EMPTY_DEFAULT = re.compile(r"^\s*default: \"\"$")


def _loader() -> type:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def as_published(text: str) -> str:
    return text


def drop_empty_default_lines(text: str) -> str:
    """Delete each line that is exactly ``default: ""`` (1.20: "must be of type string")."""
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not _EMPTY_DEFAULT.match(line.rstrip("\n"))
    )


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def require_pull_secret_names(text: str) -> str:
    """Add ``required: [name]`` to ``imagePullSecrets`` items of a list-map keyed by name.

    Without its default, 1.20 says a list-map key "must have a default or be a required
    property". Written in the file's own sequence style, before the items' ``type: object``.
    """
    lines = text.splitlines(keepends=True)
    style = re.search(r"\n( *)required:\n( *)- ", text)
    dash = 0 if style is None else len(style.group(2)) - len(style.group(1))
    inserts: dict[int, str] = {}
    for i, line in enumerate(lines):
        if line.strip() != "imagePullSecrets:":
            continue
        base = _indent(line)
        end = i + 1
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
            end += 1
        block = range(i + 1, end)
        listmap = any(
            lines[k].strip() == "x-kubernetes-list-type: map" and _indent(lines[k]) == base + 2
            for k in block
        )
        items = [k for k in block if lines[k].strip() == "items:" and _indent(lines[k]) == base + 2]
        if not listmap or not items:
            continue
        level = base + 4
        item_lines = []
        for k in range(items[0] + 1, end):
            if lines[k].strip() and _indent(lines[k]) < level:
                break
            item_lines.append(k)
        at_level = [k for k in item_lines if _indent(lines[k]) == level]
        if any(lines[k].strip() == "required:" for k in at_level):
            continue
        obj = [k for k in at_level if lines[k].strip() == "type: object"]
        if obj:
            inserts[obj[0]] = f"{' ' * level}required:\n{' ' * (level + dash)}- name\n"
    return "".join(inserts.get(k, "") + line for k, line in enumerate(lines))


def for_kubernetes_1_20(text: str) -> str:
    """The model-serving CRDs' edit: lines out, and the required names that this needs."""
    return require_pull_secret_names(drop_empty_default_lines(text))


def _strip_empty_defaults(node: object) -> object:
    if isinstance(node, dict):
        return {
            k: _strip_empty_defaults(v) for k, v in node.items() if not (k == "default" and v == "")
        }
    if isinstance(node, list):
        return [_strip_empty_defaults(v) for v in node]
    return node


def gateway_api_for_1_20(text: str) -> str:
    """The Gateway API file's edit: the empty defaults out, written back by PyYAML."""
    docs = [_strip_empty_defaults(d) for d in yaml.load_all(text, Loader=_loader()) if d]
    return yaml.safe_dump_all(docs, sort_keys=False)


def only_kinds(*kinds: str) -> Callable[[str], str]:
    """Istio ships every CRD in one file: keep the documents of these kinds."""

    def keep(text: str) -> str:
        docs = [
            d
            for d in yaml.load_all(text, Loader=_loader())
            if d and d.get("spec", {}).get("names", {}).get("kind") in kinds
        ]
        return yaml.safe_dump_all(docs, sort_keys=False)

    return keep


# --- The pins ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """One file: where upstream publishes it, and what it and our edit of it hash to."""

    file: str
    url: str
    upstream_sha256: str
    edit: Callable[[str], str]
    sha256: str  # of the file the tests apply (= upstream_sha256 when not edited)


def _raw(repo: str, commit: str, path: str) -> str:
    return f"{RAW}/{repo}/{commit}/{path}"


_KSERVE = "1fb781055dd1567164358233e1125142ca6ef1fe"  # v0.20.0
_GIE_16 = "992e5c292afb248801ce8d9234eb5b9d28eea231"  # v1.6.0
_GIE_14 = "6e787dd396f0228c31cf6fc5187a13c6b4991a0b"  # v1.4.0

PINS: tuple[Pin, ...] = (
    Pin(
        "gateway-api-httproutes.yaml",
        _raw(
            "kubernetes-sigs/gateway-api",
            "4564255ac2c35d582249b3cdf261bdf51c8bca32",
            "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
        ),
        "5b746e5dd696239cdf7d1a6dc6293d103fb78056598aa3f2e14f7512dc8c362b",
        gateway_api_for_1_20,
        "037d1faabfa2a3e320549c50b016ae6274a677b89694b4f58c02b39f0a00b894",
    ),
    Pin(
        "istio-virtualservices-destinationrules.yaml",
        _raw(
            "istio/api",
            "b8f8791d9653b2edc77a071d48887e582cfe84bf",
            "kubernetes/customresourcedefinitions.gen.yaml",
        ),
        "c98c49e3435f7ca04938cc710f929bbfe952472b177c3a7384b31e383c6b6c7a",
        only_kinds("VirtualService", "DestinationRule"),
        "b6e72b2efe02ffbf93b1a0eff1374ec282a75a1a79f424488e2c1131ebfba50c",
    ),
    Pin(
        "keda-scaledobjects.yaml",
        _raw(
            "kedacore/keda",
            "8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a",
            "config/crd/bases/keda.sh_scaledobjects.yaml",
        ),
        "207afc4ca44fd9e3f4bbfb1c8fae08f3a365e098a52714fe8eb672bbd239cbcd",
        as_published,
        "207afc4ca44fd9e3f4bbfb1c8fae08f3a365e098a52714fe8eb672bbd239cbcd",
    ),
    Pin(
        "prometheus-operator-prometheusrules.yaml",
        _raw(
            "prometheus-operator/prometheus-operator",
            "01fad0d64bee2ea20ff20200b86fc0f4ae2744d3",
            "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        ),
        "4f6c6a26db5ac249a195d155ba159c05683b7d29f9623207f6ee4bbec5b83d3e",
        as_published,
        "4f6c6a26db5ac249a195d155ba159c05683b7d29f9623207f6ee4bbec5b83d3e",
    ),
    Pin(
        "kserve-inferenceservices.yaml",
        _raw("kserve/kserve", _KSERVE, "config/crd/full/serving.kserve.io_inferenceservices.yaml"),
        "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff",
        for_kubernetes_1_20,
        "3fcc6af33df2a8621666612f0ea2e42a76df21de145f02a925832e2e8952e904",
    ),
    Pin(
        "kserve-llminferenceservices.yaml",
        _raw(
            "kserve/kserve",
            _KSERVE,
            "config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml",
        ),
        "4377745d253c5c6407ccd46aecdfadcea160ba77a0976dd2d112f0ca9a1ac53f",
        for_kubernetes_1_20,
        "e6f6c10a7e2f317774ec6edbd6a71d4a25ea570301611949d5b480ed1a059e17",
    ),
    Pin(
        "lws-leaderworkersets.yaml",
        _raw(
            "kubernetes-sigs/lws",
            "2161f38ff333f9e24d3c44adef7cd5d9787cac00",  # v0.10.0
            "config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml",
        ),
        "c5dcad8ed943e495490241f00b9a1b45d51203b6d484020db3636d5bf553568e",
        for_kubernetes_1_20,
        "149272ab2177171de5ca903e6d824787c3944a831eced3e930ddc65659f9fb2e",
    ),
    Pin(
        "argo-rollouts-rollouts.yaml",
        _raw(
            "argoproj/argo-rollouts",
            "b6bd3bcf8f60d717a98763d26acc983db7f97cb0",  # v1.9.1
            "manifests/crds/rollout-crd.yaml",
        ),
        "d79c0dab9bb386b1c9329fb69cf0d843fff2152b3f7916839755c1aabc7387f5",
        for_kubernetes_1_20,
        "e029bedf3423f3c316a308a8f9d7e1ff539ed491c565fa6c71818f058d2e699d",
    ),
    Pin(
        "gateway-api-inference-extension-inferencepools.yaml",
        _raw(
            "kubernetes-sigs/gateway-api-inference-extension",
            _GIE_16,
            "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml",
        ),
        "55e0dbf39c50c4bbdd60106493a4573df4bb44479f9ce46762f1af718883e5cd",
        for_kubernetes_1_20,
        "2c652675dcc2499ea011723fd33512c47fa27312f186d3bbc85579acdc33047f",
    ),
    Pin(
        "gateway-api-inference-extension-inferencepools-v1alpha2.yaml",
        _raw(
            "kubernetes-sigs/gateway-api-inference-extension",
            _GIE_14,
            "config/crd/bases/inference.networking.x-k8s.io_inferencepools.yaml",
        ),
        "449c5135bf65fdef2f5b925cc1632c0ac23f75e0e1f77aa6e21caadc4703f1e3",
        for_kubernetes_1_20,
        "b4750e1191bf444ab9814c00cbc5c9f36ccfc4900251436c890f22c67134030e",
    ),
    Pin(
        "envoy-ai-gateway-aigatewayroutes.yaml",
        _raw(
            "envoyproxy/ai-gateway",
            "c217da8a539570ba3f6014a60c2687c29a945f1f",  # v1.1.0
            "manifests/charts/ai-gateway-crds-helm/templates/aigateway.envoyproxy.io_aigatewayroutes.yaml",
        ),
        "c6ca0a06b214d93f1c7eefe8f9735fa551f23948088e0bf3c317b792ad68f162",
        as_published,
        "c6ca0a06b214d93f1c7eefe8f9735fa551f23948088e0bf3c317b792ad68f162",
    ),
    Pin(
        "kuberay-rayservices.yaml",
        _raw(
            "ray-project/kuberay",
            "59d663aeec13760646da3db9c1cf8cfe883e30b7",  # v1.7.0
            "ray-operator/config/crd/bases/ray.io_rayservices.yaml",
        ),
        "0a8fc325e6e22b9231c1f282b309555e2ecf94227ca20a03df3d1d9a403907ab",
        for_kubernetes_1_20,
        "4c011ba958f020398a4a8c85a795f94dd69b8baa420641a0b997310cb7fff82b",
    ),
)


def pin_id(pins: Sequence[Pin] = PINS) -> str:
    """Names the cache folder: a new pin set gets a new folder, never a mixed one."""
    digest = hashlib.sha256()
    for pin in pins:
        digest.update(f"{pin.file} {pin.url} {pin.upstream_sha256} {pin.sha256}\n".encode())
    return digest.hexdigest()[:12]


def cache_dir(root: Path = CACHE_ROOT, pins: Sequence[Pin] = PINS) -> Path:
    return root / f"thirdparty-crds-{pin_id(pins)}"


# --- Which source (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    folder: Path | None  # None: no source has the files
    source: str  # "env", "shared", "cache" or "none"


def has_crds(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.yaml"))


def choose(env: str | None, shared: Path = SHARED, cache: Path | None = None) -> Choice:
    """AIINCIDENT_THIRDPARTY_CRDS, then ../shared, then the download cache, then none.

    A folder counts only with *.yaml in it; the cache only once complete (a download
    that stopped half-way must not pass for the full set).
    """
    cache = cache_dir() if cache is None else cache
    if env and has_crds(Path(env)):
        return Choice(Path(env), "env")
    if has_crds(shared):
        return Choice(shared, "shared")
    if (cache / ".complete").is_file() and has_crds(cache):
        return Choice(cache, "cache")
    return Choice(None, "none")


def missing_message(env: str | None, shared: Path = SHARED, cache: Path | None = None) -> str:
    """One line: where we looked and the three ways out."""
    cache = cache_dir() if cache is None else cache
    tried = f"{ENV}={env}" if env else f"{ENV} unset"
    return (
        f"no third-party CRDs ({tried}; none in {shared}; none in {cache}): set {ENV} to a "
        f"folder of them, keep shared/ beside the repository, or run `make deps` where "
        f"raw.githubusercontent.com is reachable to download the pinned upstream files"
    )


# --- The download -----------------------------------------------------------------------


class ChecksumMismatch(Exception):
    """A downloaded or edited file is not the pinned one: nothing of it is kept."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def build(pin: Pin, upstream: bytes) -> bytes:
    """Check the upstream bytes, make the edit, check the result."""
    got = sha256(upstream)
    if got != pin.upstream_sha256:
        raise ChecksumMismatch(
            f"{pin.file}: {pin.url} has sha256 {got}, pinned {pin.upstream_sha256}"
        )
    result = pin.edit(upstream.decode()).encode()
    got = sha256(result)
    if got != pin.sha256:
        raise ChecksumMismatch(f"{pin.file}: edited result has sha256 {got}, pinned {pin.sha256}")
    return result


def fetch(dest: Path, pins: Sequence[Pin] = PINS, timeout: float = 60.0) -> Path:
    """Download, check and edit every pinned file into dest; all of them or nothing."""
    if (dest / ".complete").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for pin in pins:
            (tmp / pin.file).write_bytes(build(pin, _get(pin.url, timeout)))
        (tmp / ".complete").write_text(pin_id(pins) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    root = CACHE_ROOT
    if "--cache-root" in args:
        at = args.index("--cache-root")
        root = Path(args[at + 1])
        del args[at : at + 2]
    env = os.environ.get(ENV)
    cache = cache_dir(root)
    choice = choose(env, SHARED, cache)
    if args == ["where"]:
        print(choice.folder or missing_message(env, SHARED, cache))
        return 0 if choice.folder else 1
    if args != ["fetch"]:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    if choice.folder is not None:
        return 0  # env, ../shared or an earlier download has them: nothing to fetch
    print(f">> fetching the pinned third-party CRDs into {cache}", file=sys.stderr)
    try:
        fetch(cache)
    except ChecksumMismatch as err:
        print(f"error: refused a third-party CRD: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # URLError included: offline is not fatal for `make deps`
        print(f"warning: third-party CRDs not downloaded ({err})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
