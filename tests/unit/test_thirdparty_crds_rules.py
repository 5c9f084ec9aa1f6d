"""Where the third-party CRDs come from (env > ../shared > download cache > none), the
checked download, and the Kubernetes 1.20 edits (hack/thirdparty_crds.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit import REPO


def _load_hack_module(name: str) -> ModuleType:
    """hack/ is scripts, not a package: load one by path (dataclasses need sys.modules)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "hack" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


crds = _load_hack_module("thirdparty_crds")


def _folder(path: Path, *files: str) -> Path:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text("kind: CustomResourceDefinition\n")
    return path


# --- Source selection -------------------------------------------------------------------


def test_env_wins_over_shared_and_cache(tmp_path: Path) -> None:
    env = _folder(tmp_path / "env", "a.yaml")
    shared = _folder(tmp_path / "shared", "a.yaml")
    cache = _folder(tmp_path / "cache", "a.yaml", ".complete")
    assert crds.choose(str(env), shared, cache) == crds.Choice(env, "env")


def test_shared_when_env_unset_or_without_files(tmp_path: Path) -> None:
    empty = _folder(tmp_path / "empty", "README.md")
    shared = _folder(tmp_path / "shared", "a.yaml")
    cache = _folder(tmp_path / "cache", "a.yaml", ".complete")
    assert crds.choose(None, shared, cache) == crds.Choice(shared, "shared")
    assert crds.choose(str(empty), shared, cache) == crds.Choice(shared, "shared")
    assert crds.choose(str(tmp_path / "absent"), shared, cache).source == "shared"


def test_cache_only_when_complete(tmp_path: Path) -> None:
    shared = tmp_path / "no-shared"
    half = _folder(tmp_path / "half", "a.yaml")  # a download that stopped half-way
    assert crds.choose(None, shared, half) == crds.Choice(None, "none")
    (half / ".complete").write_text("x\n")
    assert crds.choose(None, shared, half) == crds.Choice(half, "cache")


def test_none_says_what_to_do_in_one_line(tmp_path: Path) -> None:
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    assert crds.choose("", shared, cache).folder is None
    message = crds.missing_message(str(tmp_path / "mine"), shared, cache)
    assert "\n" not in message
    for part in (f"AIINCIDENT_THIRDPARTY_CRDS={tmp_path / 'mine'}", str(shared), str(cache)):
        assert part in message
    assert "make deps" in message and "set AIINCIDENT_THIRDPARTY_CRDS" in message
    assert "AIINCIDENT_THIRDPARTY_CRDS unset" in crds.missing_message(None, shared, cache)


def test_cache_folder_changes_with_the_pins(tmp_path: Path) -> None:
    pin = crds.PINS[0]
    moved = crds.Pin(pin.file, pin.url + "?v2", pin.upstream_sha256, pin.edit, pin.sha256)
    assert crds.cache_dir(tmp_path).name.startswith("thirdparty-crds-")
    assert crds.cache_dir(tmp_path) != crds.cache_dir(tmp_path, (moved, *crds.PINS[1:]))


def test_every_pin_is_a_commit_url_with_sha256s() -> None:
    assert len({p.file for p in crds.PINS}) == len(crds.PINS) == 12
    for pin in crds.PINS:
        commit = pin.url.removeprefix(crds.RAW + "/").split("/")[2]
        assert len(commit) == 40 and int(commit, 16) >= 0, pin.url
        for digest in (pin.upstream_sha256, pin.sha256):
            assert len(digest) == 64 and int(digest, 16) >= 0
        assert (pin.edit is crds.as_published) == (pin.sha256 == pin.upstream_sha256)


# --- The checked download (a real HTTP server on localhost) -----------------------------


@pytest.fixture
def served() -> Iterator[dict[str, bytes]]:
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    files["base"] = f"http://127.0.0.1:{server.server_address[1]}".encode()
    yield files
    server.shutdown()
    server.server_close()


UPSTREAM = b"""spec:
  versions:
  - schema:
      properties:
        name:
          default: ""
          type: string
"""
EDITED = UPSTREAM.replace(b'          default: ""\n', b"")


def _pin(served: dict[str, bytes], name: str, upstream: bytes, result: bytes) -> crds.Pin:
    served[f"/{name}"] = UPSTREAM
    return crds.Pin(
        f"{name}.yaml",
        f"{served['base'].decode()}/{name}",
        hashlib.sha256(upstream).hexdigest(),
        crds.drop_empty_default_lines,
        hashlib.sha256(result).hexdigest(),
    )


def test_download_checks_and_edits(served: dict[str, bytes], tmp_path: Path) -> None:
    pins = (_pin(served, "a", UPSTREAM, EDITED),)
    dest = crds.cache_dir(tmp_path, pins)
    assert crds.fetch(dest, pins, timeout=10) == dest
    assert (dest / "a.yaml").read_bytes() == EDITED
    assert crds.choose(None, tmp_path / "no-shared", dest) == crds.Choice(dest, "cache")


def test_upstream_checksum_mismatch_is_refused(served: dict[str, bytes], tmp_path: Path) -> None:
    good = _pin(served, "good", UPSTREAM, EDITED)
    bad = _pin(served, "bad", UPSTREAM + b"# changed upstream\n", EDITED)
    dest = tmp_path / "cache" / "thirdparty-crds-x"
    with pytest.raises(crds.ChecksumMismatch, match=r"bad\.yaml: .* has sha256"):
        crds.fetch(dest, (good, bad), timeout=10)
    # All or nothing: not even the good file is kept, and no half folder is left.
    assert not dest.exists() and list((tmp_path / "cache").iterdir()) == []


def test_edited_result_mismatch_is_refused(served: dict[str, bytes], tmp_path: Path) -> None:
    pins = (_pin(served, "a", UPSTREAM, UPSTREAM),)  # pinned result: not what the edit makes
    with pytest.raises(crds.ChecksumMismatch, match="edited result"):
        crds.fetch(tmp_path / "dest", pins, timeout=10)
    assert not (tmp_path / "dest").exists()


def test_fetch_is_a_no_op_when_shared_has_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ../shared with CRDs in it: nothing is downloaded and nothing is written.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "x.yaml").write_text("kind: CustomResourceDefinition\n")
    monkeypatch.setattr(crds, "SHARED", shared)
    monkeypatch.delenv(crds.ENV, raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    assert crds.main(["--cache-root", str(cache), "fetch"]) == 0
    assert list(cache.iterdir()) == [] and capsys.readouterr().err == ""


# --- The 1.20 edits ---------------------------------------------------------------------

PULL_SECRETS = """\
            imagePullSecrets:
              items:
                properties:
                  name:
                    default: ""
                    type: string
                type: object
                x-kubernetes-map-type: atomic
              type: array
              x-kubernetes-list-map-keys:
              - name
              x-kubernetes-list-type: map
            other:
              required:
              - x
"""


def test_list_map_pull_secrets_get_a_required_name() -> None:
    out = crds.for_kubernetes_1_20(PULL_SECRETS)
    assert 'default: ""' not in out
    assert (
        "                required:\n                - name\n                type: object\n" in out
    )
    assert crds.for_kubernetes_1_20(out) == out  # already required: not added twice


def test_indented_sequence_style_is_kept() -> None:
    indented = PULL_SECRETS.replace("              - name\n", "                - name\n")
    indented = indented.replace("              - x\n", "                - x\n")
    assert "                required:\n                  - name\n" in crds.for_kubernetes_1_20(
        indented
    )


def test_plain_list_pull_secrets_are_left_alone() -> None:
    plain = PULL_SECRETS.replace("              x-kubernetes-list-type: map\n", "")
    assert crds.for_kubernetes_1_20(plain) == crds.drop_empty_default_lines(plain)


@given(st.lists(st.sampled_from(['default: ""', '  default: ""', "default: x", "a: 1", ""])))
def test_only_exact_empty_default_lines_go(lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    kept = crds.drop_empty_default_lines(text).splitlines()
    assert kept == [line for line in lines if line.strip() != 'default: ""']


def test_gateway_api_edit_strips_only_empty_defaults() -> None:
    text = 'a:\n  default: ""\n  b:\n    default: x\n    c: []\n'
    assert crds.gateway_api_for_1_20(text) == "a:\n  b:\n    default: x\n    c: []\n"


def test_istio_edit_keeps_only_the_named_kinds() -> None:
    docs = "\n---\n".join(
        f"spec:\n  names:\n    kind: {k}\n" for k in ("Gateway", "VirtualService")
    )
    assert crds.only_kinds("VirtualService")(docs) == "spec:\n  names:\n    kind: VirtualService\n"
