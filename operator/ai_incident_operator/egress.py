"""Where the operator may send requests for a policy, and what of an answer it may keep.

A policy's webhooks (`notifications.channels[].webhook`) and Prometheus URLs
(`evidence.prometheusURL`, `resolution.verification.prometheusURL`) make the
operator send requests from inside the cluster, with its network position. The
rules (`check_url`):

- a ClusterMitigationPolicy (only cluster admins write one) and a URL read from a
  Secret in the operator's namespace (only who may write Secrets there put it
  there) are trusted: any http(s) URL;
- an inline URL of a namespaced MitigationPolicy must match an entry of the
  operator-level allowlist (`aiincident run --allowed-url`, `AIINCIDENT_ALLOWED_URLS`,
  chart value `security.allowedURLs`), compared as parsed scheme, host, port and path
  prefix, never as text. Spellings that parsers read differently (userinfo,
  backslashes, `0x7f.1`, `2130706433`, percent-encoded dots or slashes) are refused;
- loopback, link-local (cloud metadata), unspecified addresses and the apiserver are
  refused for a namespaced policy unless an entry names that exact host.

A Secret named by a namespaced policy must carry `aiincident.io/allowed-namespaces`
naming the policy's namespace (`secret_allows`); the answer to a tenant never says
whether a Secret exists (`secret_unavailable`). Answers from outside are never
copied beyond a status code and `sanitise`d, bounded words.

Pure apart from `check` (the environment, DNS): no kopf, no kubernetes.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import sys
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ENV = "AIINCIDENT_ALLOWED_URLS"
ANNOTATION = "aiincident.io/allowed-namespaces"
CLUSTER_KIND = "ClusterMitigationPolicy"
SCHEMES = {"http": 80, "https": 443}
# Names that always mean the apiserver from inside a cluster.
APISERVER_NAMES = frozenset(
    {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
     "kubernetes.default.svc.cluster.local"}
)  # fmt: skip
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data"})
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
_NUMERIC = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)  # . / \ NUL, percent-encoded

_configured: list[str] = []  # from `aiincident run --allowed-url`


# --- The allowlist ------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One allowlist entry: `scheme://host[:port|:*][/path-prefix]`.

    HOST is exact, `*.domain` (any name below domain) or `*` (any host); PORT None
    means any (`:*`); without a port, the scheme's default.
    """

    text: str
    scheme: str
    host: str
    port: int | None
    path: str

    def matches(self, url: Url) -> bool:
        if url.scheme != self.scheme or (self.port is not None and url.port != self.port):
            return False
        if not self._host_matches(url.host):
            return False
        prefix = self.path
        if prefix.endswith("/"):
            return url.path.startswith(prefix) or url.path == prefix.rstrip("/")
        return url.path == prefix or url.path.startswith(prefix + "/")

    def _host_matches(self, host: str) -> bool:
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and not _is_ip(host)
        return host == self.host

    @property
    def exact(self) -> bool:
        return not self.host.startswith("*")


def parse_entry(text: str) -> Entry:
    """TEXT as an allowlist Entry; ValueError says what is wrong with it."""
    raw = text.strip()
    if not raw:
        raise ValueError("an empty allowlist entry")
    scheme, sep, rest = raw.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"allowlist entry {raw!r} must start with http:// or https://")
    netloc, slash, path = rest.partition("/")
    if any(c in raw for c in "@?#\\") or not _printable(raw):
        raise ValueError(f"allowlist entry {raw!r}: no userinfo, query, fragment or backslash")
    host, port = netloc, None
    any_port = False
    if netloc.endswith(":*"):
        host, any_port = netloc[:-2], True
    elif re.search(r":\d+$", netloc):
        host, _, digits = netloc.rpartition(":")
        port = int(digits)
        if not 0 < port < 65536:
            raise ValueError(f"allowlist entry {raw!r}: port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "*" or host.startswith("*."):
        wildcard = host
        if host != "*":
            problem = _host_problem(host[2:])
            if problem:
                raise ValueError(f"allowlist entry {raw!r}: {problem}")
            wildcard = "*." + _normal_host(host[2:])
        host = wildcard
    else:
        problem = _host_problem(host)
        if problem:
            raise ValueError(f"allowlist entry {raw!r}: {problem}")
        host = _normal_host(host)
    path = "/" + path if slash else "/"
    if _path_problem(path):
        raise ValueError(f"allowlist entry {raw!r}: {_path_problem(path)}")
    return Entry(raw, scheme, host, None if any_port else (port or SCHEMES[scheme]), path)


def parse_entries(texts: Iterable[str]) -> list[Entry]:
    return [parse_entry(t) for t in texts if t.strip()]


def configure(prefixes: Iterable[str]) -> None:
    """Set the allowlist entries given on the command line (validated; ValueError if not)."""
    entries = list(prefixes)
    parse_entries(entries)
    _configured[:] = entries


def allowlist(environ: dict[str, str] | None = None) -> list[Entry]:
    """The command line's entries and AIINCIDENT_ALLOWED_URLS's (comma-separated)."""
    env = os.environ if environ is None else environ
    texts = [*_configured, *env.get(ENV, "").split(",")]
    out = []
    for text in texts:
        if not text.strip():
            continue
        try:
            out.append(parse_entry(text))
        except ValueError as err:  # the CLI refuses these at start; never widen on a typo
            log.warning("ignored: %s", err)
    return out


# --- URLs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Url:
    """A URL as the checks compare it: lower-case host (IPs canonical), explicit port."""

    scheme: str
    host: str
    port: int
    path: str
    userinfo: bool


def parse_url(url: str) -> Url | str:
    """URL parsed for the checks, or the problem with it (words for a person)."""
    if not isinstance(url, str) or not url:
        return "the URL is empty"
    if not _printable(url) or "\\" in url:
        return "the URL may contain only printable ASCII, without spaces or backslashes"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as err:
        return f"the URL cannot be parsed ({err})"
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        return "the URL is not an http(s) URL"
    netloc = parts.netloc
    userinfo = "@" in netloc
    hostport = netloc.rpartition("@")[2]
    host = hostport
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif ":" in host:
        host = host.rpartition(":")[0]
    problem = _host_problem(host)
    if problem:
        return problem
    return Url(scheme, _normal_host(host), port or SCHEMES[scheme], parts.path or "/", userinfo)


def check_url(
    url: str,
    namespaced: bool,
    allowed: Iterable[Entry],
    apiserver: Iterable[str] = (),
) -> str | None:
    """The problem with calling URL for a policy, or None (pure).

    NAMESPACED: the URL is inline in a namespaced MitigationPolicy (else it is trusted:
    a cluster policy's, or read from a Secret). ALLOWED: the allowlist. APISERVER: the
    hosts the apiserver answers at, besides the well-known names.
    """
    parsed = parse_url(url)
    if isinstance(parsed, str):
        return parsed
    if not namespaced:
        return None
    if parsed.userinfo or "@" in url:
        return "'@' (userinfo, user@host) is not allowed in the URL of a namespaced policy"
    problem = _path_problem(parsed.path)
    if problem:
        return problem
    entry = next((e for e in allowed if e.matches(parsed)), None)
    if entry is None:
        return (
            f"{origin(url)} is not in the operator's URL allowlist (aiincident run "
            "--allowed-url, chart value security.allowedURLs): ask an admin to allow it, or "
            "use a Secret (webhook.urlSecretRef)"
        )
    special = special_host(parsed.host, apiserver)
    if special and not (entry.exact and entry.host == parsed.host):
        return (
            f"{origin(url)} points at {special}; only an allowlist entry naming that host allows it"
        )
    return None


def special_host(host: str, apiserver: Iterable[str] = ()) -> str:
    """What HOST is if a tenant must not reach it ('' if nothing special)."""
    if host in APISERVER_NAMES or host in {_normal_host(h) for h in apiserver if h}:
        return "the apiserver"
    if host == "localhost" or host.endswith(".localhost"):
        return "a loopback address"
    if host in METADATA_NAMES:
        return "the cloud metadata service"
    if not _is_ip(host):
        return ""
    return special_address(host)


def special_address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata)"
    if ip.is_unspecified:
        return "the unspecified address"
    return ""


def display(url: str) -> str:
    """URL as messages may show it: no userinfo, query or fragment; bounded."""
    if not isinstance(url, str):
        return "<url>"
    if "@" not in url and "?" not in url and "#" not in url and _printable(url):
        return url[:200]
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return sanitise(
            urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")), 200, keep_urls=True
        )
    except ValueError:
        return "<url>"


def origin(url: str) -> str:
    """scheme://host[:port] of URL: a webhook's path is often its secret."""
    parsed = parse_url(url)
    if isinstance(parsed, str):
        return "the URL"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = "" if parsed.port == SCHEMES[parsed.scheme] else f":{parsed.port}"
    return f"{parsed.scheme}://{host}{port}"


def _printable(text: str) -> bool:
    return all(33 <= ord(c) < 127 for c in text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _normal_host(host: str) -> str:
    host = host.lower().rstrip(".") if host != "." else host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _host_problem(host: str) -> str:
    """Why HOST is not an unambiguous host name or IP address ('' if it is)."""
    if not host:
        return "the URL has no host"
    if "%" in host:
        return "the host may not contain '%' (no IPv6 zone or encoded host)"
    lowered = host.lower()
    if ":" in lowered:  # IPv6
        try:
            ipaddress.IPv6Address(lowered)
            return ""
        except ValueError:
            return f"host {host!r} is not an IPv6 address"
    name = lowered[:-1] if lowered.endswith(".") else lowered
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return f"host {host!r} is not a DNS name (IDNA names are written as xn--)"
    if _NUMERIC.match(labels[-1]):
        # WHATWG parsers read 0x7f.1, 2130706433 and 127.1 as 127.0.0.1: only the plain
        # dotted form is unambiguous.
        try:
            ip = ipaddress.IPv4Address(name)
        except ValueError:
            return f"host {host!r}: write an IPv4 address as four decimal numbers"
        if str(ip) != name:
            return f"host {host!r}: write an IPv4 address as four decimal numbers"
    return ""


def _path_problem(path: str) -> str:
    if _ENCODED.search(path):
        return "the URL's path may not percent-encode '.', '/' or '\\'"
    if any(seg in (".", "..") for seg in path.split("/")):
        return "the URL's path may not contain '.' or '..' segments"
    return ""


# --- At use: the environment and DNS ------------------------------------------------------


def apiserver_hosts() -> set[str]:
    """Where the apiserver answers: the in-cluster env, and the loaded client's host."""
    hosts = {os.environ.get("KUBERNETES_SERVICE_HOST", "")}
    client = sys.modules.get("kubernetes.client")  # only if already loaded: stay pure
    if client is not None:
        try:
            config_host = client.Configuration.get_default_copy().host
            hosts.add(urllib.parse.urlsplit(config_host).hostname or "")
        except Exception:  # no configuration loaded: nothing to add
            pass
    return {h for h in hosts if h}


Resolver = Callable[[str], list[str]]


def _resolve(host: str) -> list[str]:
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None)]
    except (OSError, UnicodeError):
        return []  # the request itself will fail and say so


def check(url: str, namespaced: bool, resolve: Resolver | None = None) -> str | None:
    """`check_url` with the operator's allowlist and apiserver; for a wildcard entry, the
    addresses the name resolves to are checked too (a name may point at 127.0.0.1)."""
    allowed = allowlist()
    apiserver = apiserver_hosts()
    problem = check_url(url, namespaced, allowed, apiserver)
    if problem or not namespaced:
        return problem
    parsed = parse_url(url)
    assert isinstance(parsed, Url)
    entry = next(e for e in allowed if e.matches(parsed))
    if entry.exact or _is_ip(parsed.host):
        return None  # an admin named this host: its DNS is theirs
    for address in (resolve or _resolve)(parsed.host):
        special = special_address(address) or (
            "the apiserver" if _normal_host(address) in {_normal_host(h) for h in apiserver} else ""
        )
        if special:
            return f"{origin(url)} resolves to {special}; only an allowlist entry naming that host allows it"
    return None


# --- Policies and Secrets -----------------------------------------------------------------


def is_namespaced(policy: dict[str, Any] | None) -> bool:
    """Whether POLICY (a body) is a tenant's: anything but a ClusterMitigationPolicy."""
    return (policy or {}).get("kind") != CLUSTER_KIND


def scope_of_ref(ref: dict[str, Any] | None, namespace: str) -> str | None:
    """The namespace whose rules apply to the policy REF (status.policyRef) names; None for
    a cluster policy. No ref counts as a namespaced policy in NAMESPACE (the stricter)."""
    ref = ref or {}
    if ref.get("kind") == CLUSTER_KIND:
        return None
    return ref.get("namespace") or namespace


def inline_urls(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, URL) for every inline URL of a policy spec (tolerant of any shape)."""
    out: list[tuple[str, str]] = []
    spec = spec if isinstance(spec, dict) else {}
    notifications = spec.get("notifications") if isinstance(spec.get("notifications"), dict) else {}
    for i, channel in enumerate(notifications.get("channels") or []):
        webhook = channel.get("webhook") if isinstance(channel, dict) else None
        if isinstance(webhook, dict) and webhook.get("url"):
            name = channel.get("name") or i
            out.append((f"notifications.channels[{name}].webhook.url", webhook["url"]))
    evidence = spec.get("evidence") if isinstance(spec.get("evidence"), dict) else {}
    if evidence.get("prometheusURL"):
        out.append(("evidence.prometheusURL", evidence["prometheusURL"]))
    resolution = spec.get("resolution") if isinstance(spec.get("resolution"), dict) else {}
    verification = resolution.get("verification")
    if isinstance(verification, dict) and verification.get("prometheusURL"):
        out.append(("resolution.verification.prometheusURL", verification["prometheusURL"]))
    return out


def policy_problems(body: dict[str, Any], allowed: Iterable[Entry] | None = None) -> list[str]:
    """The inline URLs of a namespaced policy BODY that its namespace may not call."""
    if not (body.get("metadata") or {}).get("namespace") or not is_namespaced(body):
        return []
    entries = list(allowlist() if allowed is None else allowed)
    apiserver = apiserver_hosts()
    problems = []
    for field, url in inline_urls(body.get("spec") or {}):
        problem = check_url(str(url), True, entries, apiserver)
        if problem:
            problems.append(f"{field}: {problem}")
    return problems


def secret_allows(secret: dict[str, Any] | None, namespace: str) -> bool:
    """Whether SECRET's `aiincident.io/allowed-namespaces` (comma-separated, or `*`) names
    NAMESPACE."""
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    names = {n.strip() for n in str(annotations.get(ANNOTATION, "")).split(",")}
    return "*" in names or namespace in names


def secret_unavailable(name: str, key: str, namespace: str) -> str:
    """The one answer for a missing, unlisted or keyless Secret: it says nothing of which."""
    return (
        f"Secret {name} (key {key}) is not available to namespace {namespace}: an admin must "
        f"create it in the operator's namespace with annotation {ANNOTATION} naming {namespace}"
    )


# --- Answers from outside -----------------------------------------------------------------

_URL = re.compile(r"\S*://\S*")
_HOST_KW = re.compile(r"""host=(['"]?)[^,'")\s]*\1""")
_URL_KW = re.compile(r"url: \S+")
_IPV6 = re.compile(r"\[[0-9a-fA-F:.]+\]")
_IPV4 = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b")
_DNS = re.compile(r"\b(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*(:\d+)?\b")
_HOSTPORT = re.compile(r"\b[\w.-]+:\d{2,5}\b")


def sanitise(text: Any, limit: int = 200, keep_urls: bool = False) -> str:
    """TEXT as words fit for a status or an Event: printable ASCII on one line, URLs and
    hosts replaced by `<url>` / `<host>`, at most LIMIT characters."""
    words = str(text)
    if not keep_urls:
        words = _URL.sub("<url>", words)
        words = _HOST_KW.sub("host=<host>", words)
        words = _URL_KW.sub("url: <url>", words)
        words = _IPV6.sub("<host>", words)
        words = _IPV4.sub("<host>", words)
        words = _DNS.sub("<host>", words)
        words = _HOSTPORT.sub("<host>", words)
    words = "".join(c if 32 <= ord(c) < 127 else " " for c in words)
    words = " ".join(words.split())
    if len(words) > limit:
        words = words[: max(0, limit - 3)].rstrip() + "..."
    return words
