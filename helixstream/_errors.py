"""Exceptions raised by helixstream.

The hierarchy::

    HelixStreamError
     ├── ConfigError (also a ValueError)      bad configuration value or file
     ├── StreamDecodeError (also a ValueError) invalid UTF-8 in a bytes source
     └── StreamClosedError                     operation on a closed stream

Errors that come from *your* source, stage or callback are never wrapped: they reach
the reader of the stream as the very same exception object.
"""
from __future__ import annotations

__all__ = ["HelixStreamError", "ConfigError", "StreamDecodeError", "StreamClosedError"]


class HelixStreamError(Exception):
    """Base class of every error helixstream raises on its own account."""


class ConfigError(HelixStreamError, ValueError):
    """A configuration value, mapping or file is not valid.

    The message names the field, the value given and what is allowed.
    """


class StreamDecodeError(HelixStreamError, ValueError):
    """A bytes source is not valid UTF-8.

    Attributes:
        offset: the byte offset, counted from the first byte of the stream, of the first
            byte that could not be decoded.
        reason: the codec's own explanation.
    """

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"invalid UTF-8 at byte offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.offset, self.reason))


class StreamClosedError(HelixStreamError):
    """The stream was already closed."""
