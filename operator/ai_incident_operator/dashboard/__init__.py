"""`aiincident dashboard`: a local web UI for the people on call, with their own rights.

Open incidents by severity, phase, age, target and acknowledgement, live (a watch sent
to the browser as server-sent events); each incident's timeline, conditions,
mitigations with the fields they changed (before, from the ledger, and now), evidence,
hypotheses, reproduction and review draft; the policies and their Ready state; and the
actions approve, acknowledge, resolve and mark the review complete, each the same write
as the CLI's. `render` makes the HTML (pure), `live` keeps the incidents, `server`
serves them.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

DEFAULT_LISTEN = "127.0.0.1:3100"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from ..reports import _command, _parser

    dashboard = _parser(
        subparsers, "dashboard", "a local web UI of the incidents, acting with your kubeconfig"
    )
    dashboard.add_argument(
        "--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
        help="where to serve it (default: %(default)s; a loopback address unless you know why)",
    )  # fmt: skip
    where = dashboard.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="this namespace (default: the kubeconfig's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    dashboard.add_argument(
        "--allow-host", action="append", default=[], metavar="HOST[:PORT]",
        help="another name browsers reach it by (repeatable); needed to listen beyond loopback",
    )  # fmt: skip
    dashboard.set_defaults(func=_command(_dashboard))


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen {listen!r}: give HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "127.0.0.1", int(port)


def allowed_hosts(host: str, port: int, extra: list[str]) -> frozenset[str]:
    """The Host headers to answer: the loopback names for a loopback address, plus EXTRA.

    Anything else is refused, so that a web page cannot reach the dashboard (and the
    kubeconfig it acts with) through a DNS name that points at 127.0.0.1.
    """
    names = {f"{host}:{port}"}
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        names |= {f"{n}:{port}" for n in LOOPBACK_NAMES}
    names |= {e if ":" in e.lstrip("[") and not e.endswith("]") else f"{e}:{port}" for e in extra}
    return frozenset(names)


def _dashboard(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .. import kube
    from ..reports import Failure
    from .server import Dashboard, Settings, scope_text

    try:
        host, port = split_listen(args.listen)
    except ValueError as err:
        raise Failure(str(err)) from None
    hosts = allowed_hosts(host, port, args.allow_host)
    if host in ("0.0.0.0", "::") and not args.allow_host:
        raise Failure(
            f"--listen {args.listen} serves every address: name the hosts browsers use with "
            "--allow-host (the dashboard acts with your kubeconfig)"
        )
    namespaces = () if args.all_namespaces else (args.namespace,)
    settings = Settings(namespaces, hosts, kube.current_user(), write_token=None, local=True)
    app = Dashboard(settings).app()
    shown = scope_text(namespaces)
    print(f"aiincident dashboard: http://{args.listen}/ ({shown}, as {settings.user}); "
          "Ctrl-C stops it", file=sys.stderr, flush=True)  # fmt: skip
    try:
        # Open event streams never end by themselves: do not wait for them at shutdown.
        web.run_app(app, host=host, port=port, print=None, handle_signals=True, shutdown_timeout=1)
    except OSError as err:
        raise Failure(f"cannot listen on {args.listen}: {err}") from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    return 0


def check_operator_args(args: argparse.Namespace) -> None:
    """ValueError when `run`'s --dashboard-* arguments are wrong (nothing when it is off)."""
    if args.dashboard_listen:
        split_listen(args.dashboard_listen)
        _token(args.dashboard_token_file)
    elif args.dashboard_token_file:
        raise ValueError("--dashboard-token-file needs --dashboard-listen")


def _token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as err:
        raise ValueError(f"--dashboard-token-file: {err}") from None
    if not token:
        raise ValueError(f"--dashboard-token-file {path} is empty")
    return token


async def serve_from_operator(args: argparse.Namespace) -> web.AppRunner:
    """The dashboard on the operator's loop (`aiincident run --dashboard-listen`), as the
    chart serves it: the operator's credentials and namespaces; read-only without a token,
    and with one, each write carries it and the name of the person who made it."""
    from aiohttp import web

    from .server import Dashboard, Settings

    host, port = split_listen(args.dashboard_listen)
    token = _token(args.dashboard_token_file)
    settings = Settings(tuple(args.namespace or ()), None, "the operator", token, local=False)
    runner = web.AppRunner(Dashboard(settings).app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
