"""The HTTP service: app factory, routes (one file per resource), dependencies, errors, middleware.

``create_app`` is imported lazily so that ``neumeta serve`` can validate its settings (and fail
fast) before torch and the model code are loaded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from service.api.app import create_app

        return create_app
    raise AttributeError(f"module 'service.api' has no attribute {name!r}")
