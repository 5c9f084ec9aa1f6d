"""Mitigation actions, one module per `type` of the policy's `responses[].actions[]`.

Each module defines one `Action` subclass and registers it by its type name; the
engine looks actions up here and never needs to know what they do.
"""

from __future__ import annotations

from .base import REGISTRY, Action, ActionContext, ActionError, Outcome

__all__ = ["REGISTRY", "Action", "ActionContext", "ActionError", "Outcome", "get"]


def get(type_: str) -> Action:
    _load()
    return REGISTRY[type_]


def _load() -> None:
    # Importing a module registers its action.
    from . import scale  # noqa: F401
