"""Durations and numbers in configuration: parsing and checking (private)."""
from __future__ import annotations

import math
import re
from typing import Any, Optional

from ._errors import ConfigError

__all__ = ["parse_duration", "parse_seconds", "check_number"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h)?\s*$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, field: str, allow_none: bool = False) -> Optional[float]:
    """Seconds from a number or a string such as ``"250ms"``, ``"1.5s"``, ``"2m"``.

    Raises:
        ConfigError: anything else, or a negative or non-finite value.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ConfigError(
                f"{field!r} must be a duration: seconds as a number, or a string like "
                f"'250ms', '1.5s', '2m' (got {value!r})"
            )
        return float(m.group(1)) * _UNITS[m.group(2)]
    seconds = check_number(value, field, allow_none=allow_none, what="a number of seconds")
    return None if seconds is None else float(seconds)


def parse_seconds(value: Any, field: str) -> float:
    """Like :func:`parse_duration`, for a duration that may not be None."""
    seconds = parse_duration(value, field)
    assert seconds is not None
    return seconds


def check_number(
    value: Any,
    field: str,
    *,
    minimum: float = 0,
    integer: bool = False,
    allow_none: bool = False,
    what: Optional[str] = None,
) -> Any:
    """Return ``value`` if it is a finite number (an int when ``integer``) >= ``minimum``.

    Raises:
        ConfigError: naming the field, what is allowed and the value given.
    """
    if value is None and allow_none:
        return None
    kind = what or ("an int" if integer else "a number")
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < minimum:
        minimum_text = int(minimum) if float(minimum).is_integer() else minimum
        extra = " or None" if allow_none else ""
        raise ConfigError(f"{field!r} must be {kind} >= {minimum_text}{extra} (got {value!r})")
    return value
