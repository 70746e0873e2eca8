"""Durations and numbers in configuration: parsing and checking (private).

A duration is a number of seconds, or a string in Go's ``time.ParseDuration`` form:
an optional sign, then one or more numbers each followed by a unit (``ns``, ``us``,
``µs``, ``μs``, ``ms``, ``s``, ``m``, ``h``), as in ``"1m30s"``, ``"1.5h"``,
``"300us"`` or ``"1h2m3.5s"``. Beyond Go: a number may have an exponent (``"1e3ms"``),
a lone number without a unit is seconds (``"0.5"``), and spaces between the parts are
allowed (``"250 ms"``, ``"1m 30s"``).
"""
from __future__ import annotations

import math
import re
from typing import Any, Optional

from ._errors import ConfigError

__all__ = ["parse_duration", "parse_seconds", "check_number", "seconds_from_text", "DURATION_FORMS"]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_UNIT = r"ns|us|µs|μs|ms|s|m|h"
_PART = re.compile(rf"\s*({_NUMBER})\s*({_UNIT})")
_BARE = re.compile(rf"\s*({_NUMBER})\s*$")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

#: How the error messages describe a duration.
DURATION_FORMS = "seconds as a number, or a string like '250ms', '1.5s', '1m30s', '1.5h', '300us'"


class _Malformed(ValueError):
    """The text is not a duration at all (as opposed to a negative or infinite one)."""


def _parse(text: str) -> float:
    """Seconds from a duration string, possibly negative or infinite."""
    body = text.strip()
    sign = 1.0
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if not body:
        raise _Malformed(text)
    bare = _BARE.match(body)
    if bare is not None:
        return sign * float(bare.group(1))
    total = 0.0
    pos = 0
    while pos < len(body):
        part = _PART.match(body, pos)
        if part is None:
            raise _Malformed(text)
        total += float(part.group(1)) * _SECONDS[part.group(2)]
        pos = part.end()
    return sign * total


def seconds_from_text(text: str) -> float:
    """Seconds (>= 0, finite) from a duration string such as ``"1m30s"``.

    Raises:
        ValueError: with a message that does not name a field: ``"must be >= 0 (got
            '-1s')"``, ``"must be a duration: ..."``.
    """
    try:
        seconds = _parse(text)
    except _Malformed:
        raise ValueError(f"must be a duration: {DURATION_FORMS} (got {text!r})") from None
    if seconds < 0:
        raise ValueError(f"must be >= 0 (got {text!r})")
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration (got {text!r})")
    return seconds


def parse_duration(value: Any, field: str, allow_none: bool = False) -> Optional[float]:
    """Seconds from a number or a duration string (see the module's docstring).

    Raises:
        ConfigError: anything else, or a negative or non-finite value; the message
            starts with the field's name.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        try:
            return seconds_from_text(value)
        except ValueError as exc:
            raise ConfigError(f"{field!r} {exc}") from None
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
        ConfigError: naming the field, what is allowed and the value given. A string
            is called a string (``rate_limit: "50"`` in YAML is not the number 50).
    """
    if value is None and allow_none:
        return None
    kind = what or ("an int" if integer else "a number")
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < minimum:
        minimum_text = int(minimum) if float(minimum).is_integer() else minimum
        extra = " or None" if allow_none else ""
        expected = f"{field!r} must be {kind} >= {minimum_text}{extra}"
        if isinstance(value, str):
            hint = "; write the number without quotes" if _looks_numeric(value) else ""
            raise ConfigError(f"{expected}, not a string (got {value!r}){hint}")
        raise ConfigError(f"{expected} (got {value!r})")
    return value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
