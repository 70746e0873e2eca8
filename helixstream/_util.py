"""Small helpers shared by the runner, the rate limiter and SSE (private)."""
from __future__ import annotations

from typing import Any

__all__ = ["close_quietly"]


def close_quietly(obj: Any) -> None:
    """Call ``obj.close()`` if it has one; an error from it is ignored, since the caller
    is already tearing down (stopping, failing, or discarding an unused source)."""
    close = getattr(obj, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - see the docstring
            pass
