"""redis-py, imported only when something that needs it is made (extra ``redis``)."""
from __future__ import annotations

import importlib
from typing import Any, Tuple, Type


def redis_module(needed_by: str) -> Any:
    """The ``redis`` package, or an ImportError that names the extra to install."""
    try:
        return importlib.import_module("redis")
    except ImportError:
        raise ImportError(
            f"{needed_by} needs redis-py: pip install 'helixstream[redis]' (or redis)"
        ) from None


def redis_errors(answers: bool = False) -> Tuple[Type[BaseException], ...]:
    """What a call raises when Redis cannot be reached; with ``answers``, also when it
    answers with an error."""
    exceptions = importlib.import_module("redis.exceptions")
    unreachable = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
    return unreachable + (exceptions.ResponseError,) if answers else unreachable
