"""The `aiincident` command (also installed as `kubectl-aiincident`, a kubectl plugin).

`run` starts the operator; the other sub-commands are for people working an incident.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import __version__, kube, supervisor

if TYPE_CHECKING:
    from .intake.server import Intake

# Modules that add sub-commands: each has `add_commands(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = (
    "validation",
    "reports",
    "evals",
    "regulatory_report",
    "dashboard",
)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from . import dashboard, handlers, memory, metrics  # noqa: F401 - register the kopf handlers, metrics
    from .intake import server as webhook

    memory.limit_arenas()  # before any thread starts
    memory.start_trimming()

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = webhook.settings_from_args(args)
    except webhook.SettingsError as err:
        print(f"aiincident: {err}", file=sys.stderr)
        return 2
    from . import egress

    try:  # a typo in the URL allowlist must stop the start, never widen or narrow it silently
        egress.configure(args.allowed_url or [])
        egress.parse_entries(os.environ.get(egress.ENV, "").split(","))
    except ValueError as err:
        print(f"aiincident: --allowed-url / ${egress.ENV}: {err}", file=sys.stderr)
        return 2
    from . import bounds

    try:  # a broken bounds file stops the start: never fall back to wider (or other) bounds
        bounds.configure(bounds.load(args.tenant_bounds))
    except bounds.BoundsError as err:
        print(f"aiincident: {err}", file=sys.stderr)
        return 2
    try:  # a dashboard that cannot start as asked stops the start
        dashboard.check_operator_args(args)
    except ValueError as err:
        print(f"aiincident: {err}", file=sys.stderr)
        return 2
    kube.load_config()
    liveness = f"http://{_bindable(args.liveness_listen)}/healthz" if args.liveness_listen else None

    async def operate() -> int:
        # The intake's Kubernetes calls run in the loop's default pool (asyncio.to_thread):
        # sized so that an alert storm is not held to a handful of deliveries at once.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=16))
        server = await webhook.start(settings) if settings else None
        board = await dashboard.serve_from_operator(args) if args.dashboard_listen else None
        stopping = asyncio.Event()  # a signal asked the operator to stop (not a kopf failure)

        # The webhook serves on kopf's loop and outlives a failed kopf run; on shutdown it
        # stops first (kopf's cleanup hook), so that kopf does not wait on its connections.
        async def stop_webhook(**_: object) -> None:
            if server and stopping.is_set():
                await server.stop()

        kopf.on.cleanup(id="stop-webhook")(stop_webhook)
        handlers.WATCH_NAMESPACES[:] = args.namespace or []

        async def kopf_once() -> None:
            await _kopf_run(args, liveness, stopping, server.intake if server else None)

        try:
            return await supervisor.supervise(kopf_once, stopping)
        finally:
            if server:
                await server.stop()
            if board:
                await board.cleanup()

    try:
        return _run_loop(operate())
    except webhook.SettingsError as err:
        print(f"aiincident: {err}", file=sys.stderr)
        return 2


EXIT_GRACE = 5.0  # seconds for the tasks still running at exit to end once cancelled


def _run_loop(main: Coroutine[None, None, int]) -> int:
    """`asyncio.run(MAIN)`, except that tasks left behind by a stuck kopf run (supervisor)
    cannot hold up the exit: asyncio.run would wait for them for ever."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=EXIT_GRACE))
        loop.run_until_complete(asyncio.wait([loop.create_task(loop.shutdown_asyncgens())],
                                             timeout=EXIT_GRACE))  # fmt: skip
        asyncio.set_event_loop(None)
        loop.close()


async def _kopf_run(
    args: argparse.Namespace, liveness: str | None, stopping: asyncio.Event, intake: Intake | None
) -> None:
    """One run of kopf (`supervisor` starts another if it fails), with its own insights."""
    import kopf

    from . import coverage

    clusterwide, namespaces = not args.namespace, args.namespace or []
    existing = asyncio.all_tasks()
    insights = coverage.Insights()
    watched = coverage.Coverage(
        insights, clusterwide=clusterwide, namespaces=namespaces, older=existing
    )
    if intake is not None:  # /readyz: false until kopf watches every resource handled
        intake.also_ready = watched.not_ready_because
    settings = kopf.OperatorSettings()  # `handlers.configure` fills it at kopf's start-up
    stop_flag = asyncio.Event()
    tasks = await kopf.spawn_tasks(
        clusterwide=clusterwide,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        standalone=not args.peering,
        peering_name=args.peering,
        priority=peering_priority(args.peering_priority),
        settings=settings,
        insights=insights,
        stop_flag=stop_flag,
    )

    # Started after spawn_tasks, so that it has kopf's credentials (a context variable).
    looking = asyncio.create_task(watched.run(settings), name="aiincident coverage")

    # Instead of kopf's own signal handlers: a signal stops for good; a failure does not.
    def on_signal(sig: signal.Signals) -> None:
        logging.getLogger(__name__).info("%s: stopping", sig.name)
        stopping.set()
        stop_flag.set()
        looking.cancel()  # the watches going away is no news

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    runner = asyncio.create_task(kopf.run_tasks(tasks, ignored=supervisor.NotKopfs(existing)))
    try:
        await supervisor.finish(runner, tasks, stopping, older=existing)
    finally:
        looking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await looking
        if intake is not None:
            intake.also_ready = lambda: "kopf is starting again after a failure; see the log"


def _bindable(listen: str) -> str:
    """HOST:PORT with port 0 made a free port: kopf would read port 0 as its default, 80."""
    host, _, port = listen.rpartition(":")
    if port != "0":
        return listen
    with socket.socket() as sock:
        sock.bind((host or "0.0.0.0", 0))
        chosen = sock.getsockname()[1]
    logging.getLogger(__name__).info("liveness probe on %s:%d", host, chosen)
    return f"{host}:{chosen}"


def peering_priority(given: int | None) -> int:
    """Replicas with equal priority all pause (kopf), so each pod gets its own by default."""
    if given is not None:
        return given
    pod = os.environ.get("POD_ID") or socket.gethostname()
    return int(hashlib.sha256(pod.encode()).hexdigest()[:6], 16)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiincident", description="Incident response for AI systems on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "--namespace",
        action="append",
        metavar="NS",
        help="watch this namespace (repeatable; default: all)",
    )
    run.add_argument(
        "--liveness-listen",
        metavar="HOST:PORT",
        default="0.0.0.0:8081",
        help="serve kopf's liveness probe at http://HOST:PORT/healthz ('' to turn off)",
    )
    run.add_argument(
        "--webhook-listen",
        metavar="HOST:PORT",
        default="0.0.0.0:8080",
        help="serve Alertmanager's webhook (POST /api/v1/alerts), /healthz, /readyz and /metrics "
        "here (default: %(default)s; '' to turn off)",
    )
    run.add_argument(
        "--webhook-token-file",
        metavar="PATH",
        help="the webhook's bearer token, read from this file (else $AIINCIDENT_WEBHOOK_TOKEN)",
    )
    run.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="accept alerts without a bearer token (needed when no token is configured)",
    )
    from .intake import server as webhook  # the webhook's bounds (--webhook-namespaces, ...)

    webhook.add_arguments(run)
    run.add_argument(
        "--peering",
        metavar="NAME",
        help="coordinate replicas through kopf peering NAME: one works, the others stand by",
    )
    run.add_argument(
        "--peering-priority",
        metavar="N",
        type=int,
        help="this replica's peering priority (default: derived from POD_ID, unique per pod)",
    )
    run.add_argument(
        "--allowed-url",
        action="append",
        metavar="PREFIX",
        help="a URL prefix namespaced policies may call (scheme://host[:port|:*][/path]; "
        "host may be *.domain; repeatable; also $AIINCIDENT_ALLOWED_URLS, comma-separated)",
    )
    run.add_argument(
        "--tenant-bounds",
        metavar="FILE",
        help="what namespaced MitigationPolicies may ask (YAML; default: $AIINCIDENT_TENANT_BOUNDS, "
        "else the safe defaults: no sidecars, no images, inference env keys, labelled fallbacks)",
    )
    run.add_argument(
        "--dashboard-listen",
        metavar="HOST:PORT",
        default="",
        help="also serve the dashboard here, with the operator's credentials: read-only "
        "unless --dashboard-token-file is given (default: off)",
    )
    run.add_argument(
        "--dashboard-token-file",
        metavar="PATH",
        help="the token a dashboard form must carry to write (approve, ack, resolve, review)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)
    for module in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{module}").add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except kube.ConfigError as err:
        print(f"aiincident: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
