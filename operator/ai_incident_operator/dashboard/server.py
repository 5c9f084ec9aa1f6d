"""The dashboard's web server (aiohttp): pages, live event streams and the four actions.

It acts with the credentials it was started with: `aiincident dashboard`, the user's
kubeconfig (nothing is granted that kubectl would not). Each action is the CLI's write
(`incident_writes`), recorded with the kubeconfig's user; a refused write shows the
apiserver's answer. Served from the operator (`aiincident run --dashboard-listen`), it
is read-only unless a token is configured, and then a form must carry it.

A browser page of another site could post to a dashboard on 127.0.0.1 (and borrow the
user's kubeconfig) or reach it through a DNS name it controls: every request must name
this server's own host (`Host`), and every write must carry the page's token (`csrf`)
and come from its own origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .. import incident_writes, kube, review
from ..errors import APIError
from ..fieldpath import PathError, get
from ..kube import Ref
from ..ledger import decode
from . import assets, render
from .live import Incidents

log = logging.getLogger(__name__)
KEEPALIVE = 15.0  # seconds between comments on an idle event stream
COALESCE = 0.2  # seconds: a burst of changes is sent as one update
RESULTS_KEPT = 200
ACTIONS = ("approve", "acknowledge", "resolve", "review-complete")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer, browsers post forms with `Origin: null`
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Settings:
    namespaces: tuple[str, ...]  # empty: every namespace
    hosts: frozenset[str] | None  # the Host headers it answers to (None: any, read-only)
    user: str  # who the kubeconfig says we are: recorded as who acted
    write_token: str | None  # None: read-only (the operator's, without a token)
    local: bool = True  # the user's own kubeconfig (no token needed to write)


class Dashboard:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.csrf = secrets.token_urlsafe(24)
        self.results: OrderedDict[str, tuple[bool, str]] = OrderedDict()
        self.incidents: Incidents | None = None

    # --- Guards ---------------------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        hosts = self.settings.hosts
        if hosts is not None and request.host not in hosts:
            return web.Response(status=421, text="this dashboard does not serve that host\n")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return web.Response(status=403, text="cross-origin write refused\n")
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def page(self, title: str, notice: tuple[bool, str] | None = None) -> render.Page:
        return render.Page(
            title=title,
            scope=scope_text(self.settings.namespaces),
            user=self.settings.user,
            csrf=self.csrf if self.can_write else "",
            ask_identity=not self.settings.local,
            notice=notice,
            watch_error=self.incidents.error if self.incidents else "",
        )

    @property
    def can_write(self) -> bool:
        return self.settings.local or self.settings.write_token is not None

    def _in_scope(self, namespace: str) -> bool:
        return not self.settings.namespaces or namespace in self.settings.namespaces

    # --- Pages ----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        assert self.incidents is not None
        await asyncio.to_thread(self.incidents.wait_synced, 10)
        html = render.incident_list(
            self.page("Incidents"), self.incidents.snapshot(), len(self.settings.namespaces) != 1
        )
        return web.Response(text=html, content_type="text/html")

    async def incident(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        notice = self.results.get(request.query.get("result", ""))
        if not self._in_scope(namespace):
            return self._not_found(f"{namespace} is not a namespace this dashboard shows")
        details = await asyncio.to_thread(read_details, namespace, name)
        if details is None:
            return self._not_found(f"AIIncident {namespace}/{name} does not exist (any more)")
        html = render.incident_page(self.page(name, notice), details)
        return web.Response(text=html, content_type="text/html")

    async def policies(self, request: web.Request) -> web.Response:
        found, problems = await asyncio.to_thread(read_policies, self.settings.namespaces)
        html = render.policy_page(self.page("Policies"), found, problems)
        return web.Response(text=html, content_type="text/html")

    def _not_found(self, what: str) -> web.Response:
        html = render.not_found(self.page("Not found"), what)
        return web.Response(status=404, text=html, content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "dashboard.css":
            return web.Response(text=assets.CSS, content_type="text/css")
        if name == "dashboard.js":
            return web.Response(text=assets.JS, content_type="text/javascript")
        raise web.HTTPNotFound()

    # --- Live -----------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `update` with the region's HTML whenever it changes."""
        assert self.incidents is not None
        view = request.query.get("view", "list")
        namespace, name = request.query.get("namespace", ""), request.query.get("name", "")
        if view == "incident" and not self._in_scope(namespace):
            raise web.HTTPNotFound()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **SECURITY_HEADERS}
        )
        await response.prepare(request)
        sent = None
        seen: str | None = None  # the incident's resourceVersion last rendered
        try:
            while True:
                if view == "incident":
                    # Any incident's change wakes every stream: this one renders (and reads
                    # the objects its mitigations changed) only when its own incident did.
                    incident = self.incidents.get(namespace, name)
                    version = (incident or {}).get("metadata", {}).get("resourceVersion")
                    html = None if version == seen else await self._incident_region(incident)
                    seen = version
                else:
                    html = render.incident_rows(
                        self.incidents.snapshot(), len(self.settings.namespaces) != 1
                    )
                if html is not None and html != sent:
                    await response.write(sse("update", html))
                    sent = html
                if not await self.incidents.changed(KEEPALIVE):
                    await response.write(b": keepalive\n\n")
                    continue
                await asyncio.sleep(COALESCE)
        except ConnectionResetError:  # the browser went away
            pass
        return response

    async def _incident_region(self, incident: dict[str, Any] | None) -> str | None:
        if incident is None:
            return None
        fields = await asyncio.to_thread(changed_fields, incident)
        return render.incident_live(render.IncidentDetails(incident, fields))

    # --- Actions --------------------------------------------------------------------------

    async def act(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        action = request.match_info["action"]
        form = await request.post()
        if action not in ACTIONS:
            raise web.HTTPNotFound()
        if not self.can_write:
            return self._done(namespace, name, False, "this dashboard is read-only: "
                              "the chart serves it so unless dashboard.tokenSecret is set")  # fmt: skip
        if not hmac.compare_digest(str(form.get("csrf", "")), self.csrf):
            return web.Response(
                status=403, text="the form is stale or from elsewhere: reload the page\n"
            )
        if not self.settings.local and not hmac.compare_digest(
            str(form.get("token", "")), self.settings.write_token or ""
        ):
            return self._done(namespace, name, False, "the dashboard's token is wrong")
        if not self._in_scope(namespace):
            raise web.HTTPNotFound()
        who = self.settings.user
        if not self.settings.local:  # the operator's credentials: the person names themself
            given = " ".join(str(form.get("by", "")).split())[:100]
            if not given:
                return self._done(namespace, name, False, "give your name: it is recorded")
            who = f"{given} (dashboard)"
        patch = self._write_for(action, form, who)
        try:
            await asyncio.to_thread(kube.patch, Ref("AIIncident", namespace, name), patch)
        except APIError as err:
            why = f" ({err.status} {err.reason})".rstrip() if err.status else ""
            return self._done(namespace, name, False,
                              f"The apiserver refused to {action.replace('-', ' ')}{why}: {err.message}")  # fmt: skip
        done = {
            "approve": f"Approved by {who}.",
            "acknowledge": f"Acknowledged by {who}.",
            "resolve": "Resolution requested: the operator undoes its mitigations.",
            "review-complete": "Review marked complete: the operator closes the incident.",
        }[action]
        return self._done(namespace, name, True, done)

    def _write_for(self, action: str, form: Any, who: str) -> dict[str, Any]:
        if action == "approve":
            return incident_writes.approve(who)
        if action == "acknowledge":
            at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return incident_writes.acknowledge(who, at)
        if action == "resolve":
            return incident_writes.resolve(
                who,
                str(form.get("rootCause", "")).strip(),
                str(form.get("fix", "")).strip(),
                form.get("skipVerification") == "true",
            )
        return incident_writes.complete_review()

    def _done(self, namespace: str, name: str, ok: bool, message: str) -> web.Response:
        key = secrets.token_urlsafe(8)
        self.results[key] = (ok, message)
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)
        # Post/redirect/get: a reload does not write twice.
        location = f"{render.incident_path(namespace, name)}?result={key}"
        return web.Response(status=303, headers={"Location": location})

    # --- The application ------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/", self.index)
        app.router.add_get("/policies", self.policies)
        app.router.add_get("/events", self.events)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/incidents/{namespace}/{name}", self.incident)
        app.router.add_post("/incidents/{namespace}/{name}/{action}", self.act)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.incidents = Incidents(self.settings.namespaces, asyncio.get_running_loop())
        self.incidents.start()

    async def _stop(self, app: web.Application) -> None:
        if self.incidents:
            self.incidents.stop()


def sse(event: str, data: str) -> bytes:
    """One server-sent event; each line of DATA its own `data:` line (the browser joins them)."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


# --- Reads (in a thread: the client blocks) ---------------------------------------------------


def changed_fields(incident: dict[str, Any]) -> dict[str, list[render.Field]]:
    """Per object a mitigation changed: each field's original (the ledger's) and its value now."""
    namespace = incident["metadata"]["namespace"]
    out: dict[str, list[render.Field]] = {}
    for entry in (incident.get("status") or {}).get("mitigations") or []:
        for obj, originals in (entry.get("originals") or {}).items():
            try:
                live = kube.get(Ref.parse(namespace, obj)) if "/" in obj else None
            except (APIError, KeyError):  # unreadable, or a kind this client does not know
                live = None
            for path, before in (originals or {}).items():
                now: Any = render.ABSENT
                if live is not None:
                    with contextlib.suppress(PathError):
                        now = get(live, path)
                out.setdefault(obj, []).append(render.Field(path, decode(before), now))
    return out


def read_details(namespace: str, name: str) -> render.IncidentDetails | None:
    incident = kube.get(Ref("AIIncident", namespace, name))
    if incident is None:
        return None
    details = render.IncidentDetails(incident, changed_fields(incident))
    status = incident.get("status") or {}
    for ref, what in ((status.get("evidenceRef"), "evidence"), (status.get("reviewRef"), "review")):
        if not ref or not ref.get("name"):
            continue
        try:
            document = kube.get(Ref("ConfigMap", namespace, ref["name"]))
        except APIError as err:
            details.problems.append(f"cannot read the {what} (ConfigMap {ref['name']}): {err}")
            continue
        data = (document or {}).get("data") or {}
        if what == "evidence":
            details.evidence = data
        else:
            details.review = data.get(review.KEY, "")
    return details


def scope_text(namespaces: tuple[str, ...]) -> str:
    if not namespaces:
        return "all namespaces"
    return ("namespace " if len(namespaces) == 1 else "namespaces ") + ", ".join(namespaces)


def read_policies(namespaces: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[str]]:
    found: list[dict[str, Any]] = []
    problems: list[str] = []
    where: list[tuple[str, str | None]] = [("MitigationPolicy", ns) for ns in namespaces or (None,)]
    for kind, namespace in [*where, ("ClusterMitigationPolicy", None)]:
        try:
            for item in kube.list_objects(kind, namespace):
                found.append({**item, "kind": kind})
        except APIError as err:
            problems.append(f"cannot list {kind}: {err}")
    return found, problems
