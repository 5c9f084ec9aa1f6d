"""Failure points for crash tests: `AIINCIDENT_FAILPOINTS=after-apply` kills the process there.

Restart safety is a promise (every step can be cut short at any line and re-run);
the integration suite keeps it by killing the real process at these points.
"""

from __future__ import annotations

import os


def failpoint(name: str) -> None:
    if name in os.environ.get("AIINCIDENT_FAILPOINTS", "").split(","):
        os._exit(137)  # as abrupt as SIGKILL: no cleanup, no status write
