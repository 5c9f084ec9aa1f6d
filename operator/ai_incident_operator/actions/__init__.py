"""Mitigation actions, one module per `type` of the policy's `responses[].actions[]`.

Each module defines one `Action` subclass, registered by its type name on import;
the engine looks actions up here and never needs to know what they do.
"""

from __future__ import annotations

import importlib

from .base import REGISTRY, SENDING, Action, ActionContext, ActionError, Outcome

__all__ = ["SENDING", "Action", "ActionContext", "ActionError", "Outcome", "get", "registry"]
MODULES = ("scale", "traffic", "guardrail", "config", "monitoring", "notify")
MODULES += ("statuspage", "ticket")


def registry() -> dict[str, Action]:
    """Every action by its type name."""
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return REGISTRY


def get(type_: str) -> Action:
    return registry()[type_]
