"""Exceptions raised by helixstream.

The hierarchy::

    HelixStreamError
     ├── ConfigError (also a ValueError)      bad configuration value or file
     ├── StreamDecodeError (also a ValueError) invalid UTF-8 in a bytes source
     ├── StreamClosedError                     operation on a closed stream (or Channel)
     ├── UpstreamError                         the LLM service reported an error in its
     │                                         stream, or sent something that is not an event
     └── PipelineError (also a RuntimeError)   a source, stage or callback broke the rules
                                               of iteration (raised StopIteration or
                                               GeneratorExit), or a source's close() failed
                                               or did not return within close_timeout

Errors that come from *your* source, stage or callback are never wrapped: they reach
the reader of the stream as the very same exception object, except the few that
cannot travel as themselves (``StopIteration``, ``GeneratorExit``): those arrive as a
:class:`PipelineError` whose ``__cause__`` is the original.
"""
from __future__ import annotations

__all__ = [
    "HelixStreamError",
    "ConfigError",
    "StreamDecodeError",
    "StreamClosedError",
    "UpstreamError",
    "PipelineError",
]


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


class UpstreamError(HelixStreamError):
    """The LLM service reported an error, or its stream is not what it should be.

    Raised by the sources in ``helixstream.sources``: for an ``{"error": ...}`` payload
    or an ``error`` event in the stream, for event data that is not JSON or not of the
    expected shape, for a line or event over ``from_sse``'s limits, and for an HTTP
    response whose status is an error.

    Attributes:
        payload: what the service sent: the parsed JSON payload when it was JSON, else
            the text (None when there was nothing).
        status: the HTTP status code when the error is an HTTP error status, else None.
        offset: for an error in a Server-Sent Events stream read by ``from_sse``, the
            byte offset, counted from the first byte of the stream, where the event (or
            the line) in question starts; else None.
    """

    def __init__(
        self,
        message: str,
        payload: object = None,
        status: "int | None" = None,
        offset: "int | None" = None,
    ) -> None:
        super().__init__(message)
        self.payload = payload
        self.status = status
        self.offset = offset

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (str(self), self.payload, self.status, self.offset))


class PipelineError(HelixStreamError, RuntimeError):
    """A part of the stream broke the rules of iteration, or its source would not close.

    Raised for a source that raises ``GeneratorExit``, a stage or callback that raises
    ``StopIteration`` (either would otherwise end the stream as if it were complete or
    closed), and recorded as the stream's error when ``source.close()`` raises or does
    not return within ``close_timeout``. ``__cause__`` holds the original exception.
    """
