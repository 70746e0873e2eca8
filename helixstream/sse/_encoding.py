"""Encoding the ``text/event-stream`` format (the WHATWG rules), and writing events to
a binary writable. See :mod:`helixstream.sse` for the rules the encoder follows."""
from __future__ import annotations

import json
import logging
import secrets
import threading
from typing import (
    Any,
    Callable,
    Dict,
    Optional,
    Protocol,
    Tuple,
    Union,
)

from .._formats import EventFormat
from .._inputs import check_binary_writer
from ._parsing import split_lines

__all__ = ["SSE_HEADERS", "DONE_DATA", "SSEWriter", "format_sse_comment", "format_sse_event"]

logger = logging.getLogger("helixstream.sse")

#: The response headers of an event stream, as ``(name, value)`` pairs valid under
#: PEP 3333 (no hop-by-hop header). ``start_response("200 OK", list(SSE_HEADERS))``.
SSE_HEADERS: Tuple[Tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
)

#: The data of the final event of a stream.
DONE_DATA = "[DONE]"


def check_event_name(event: Optional[str]) -> None:
    if event is None:
        return
    if not isinstance(event, str):
        raise TypeError(f"event must be a str or None, not {type(event).__name__}")
    if "\r" in event or "\n" in event:
        raise ValueError(f"event name must not contain CR or LF (got {event!r})")


def _check_id(id: Union[str, int, None]) -> Optional[str]:
    if id is None:
        return None
    if isinstance(id, bool) or not isinstance(id, (str, int)):
        raise TypeError(f"id must be a str, an int or None, not {type(id).__name__}")
    text = str(id)
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError(f"id must not contain CR, LF or NUL (got {text!r})")
    return text


def check_retry(retry: Optional[int]) -> None:
    if retry is None:
        return
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise ValueError(f"retry must be an int >= 0 (milliseconds), got {retry!r}")


def format_sse_event(
    event: Optional[str],
    data: str,
    id: Union[str, int, None] = None,
    retry: Optional[int] = None,
) -> str:
    """Encode one event: ``event``, ``data``, ``id`` and ``retry`` lines, then an empty line.

    ``format_sse_event("message", "data", "id-123", 1000) ==
    "event: message\\ndata: data\\nid: id-123\\nretry: 1000\\n\\n"``

    Args:
        event: the event type; None or ``""`` writes no ``event:`` line (the browser
            then dispatches a ``message`` event).
        data: the text; split on ``\\r\\n``, ``\\r`` and ``\\n`` into ``data:`` lines.
        id: the event id (sets the browser's ``lastEventId``); None writes no line.
        retry: the browser's reconnection delay in milliseconds; None writes no line.

    Returns:
        The event as text (encode it as UTF-8).

    Raises:
        ValueError: CR or LF in ``event`` or ``id``, NUL in ``id``, or a ``retry``
            that is not an int >= 0.
        TypeError: ``data`` is not a str, or ``event``/``id`` of a wrong type.
    """
    check_event_name(event)
    if not isinstance(data, str):
        raise TypeError(f"data must be a str, not {type(data).__name__}")
    id_text = _check_id(id)
    check_retry(retry)
    parts = []
    if event:
        parts.append(f"event: {event}\n")
    if "\n" in data or "\r" in data:
        parts.append("data: " + "\ndata: ".join(split_lines(data)) + "\n")
    else:
        parts.append(f"data: {data}\n")
    if id_text is not None:
        parts.append(f"id: {id_text}\n")
    if retry is not None:
        parts.append(f"retry: {int(retry)}\n")
    parts.append("\n")
    return "".join(parts)


def encode_event(event: Optional[str], data: str, id_text: str) -> bytes:
    """``format_sse_event(event, data, id_text)`` as UTF-8, for an event name and an id
    already known to be valid (checked once per stream, not once per event)."""
    if "\n" in data or "\r" in data:
        return format_sse_event(event, data, id_text).encode("utf-8")
    if event:
        return f"event: {event}\ndata: {data}\nid: {id_text}\n\n".encode("utf-8")
    return f"data: {data}\nid: {id_text}\n\n".encode("utf-8")


def format_sse_comment(text: str) -> str:
    """Encode a comment: every line of ``text`` prefixed with ``:``; no empty line after.

    Raises:
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"comment must be a str, not {type(text).__name__}")
    return "".join(f": {line}\n" if line else ":\n" for line in split_lines(text))


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _progress_data(received: int, total: Optional[int]) -> str:
    return dumps({"received": received, "total": total or None})


def error_payload(
    exc: Optional[BaseException],
    error_id: str,
    expose: bool,
    log: bool = True,
    stream_id: Optional[int] = None,
) -> Dict[str, Any]:
    if log and exc is not None:
        logger.error(
            "event stream failed (error id %s, stream %s)",
            error_id,
            stream_id,
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"stream_id": stream_id},
        )
    payload: Dict[str, Any] = {
        "code": "stream_failed",
        "message": "The stream failed.",
        "error_id": error_id,
    }
    if expose and exc is not None:
        payload["type"] = type(exc).__name__
        payload["detail"] = str(exc)
    return payload


def _error_data(exc: Optional[BaseException], error_id: str, expose: bool, log: bool = True) -> str:
    return dumps(error_payload(exc, error_id, expose, log))


def new_error_id() -> str:
    return secrets.token_hex(6)


def notice_bytes(fmt: EventFormat, code: str, message: str) -> bytes:
    """A notice without an id (a resume that cannot be served, a shutdown), as the
    stream's format writes a failure."""
    return "".join(
        format_sse_event(event, data) for event, data in fmt.failure({"code": code, "message": message})
    ).encode("utf-8")


#: What each reader gets when :meth:`SSEReplay.close` stops its stream: no id, so the
#: browser's ``Last-Event-ID`` stays the last event it received.
SHUTDOWN_MESSAGE = "The server is shutting down; reconnect to resume."


class Writable(Protocol):
    def write(self, data: Any) -> Any: ...


def _write_all(out: Writable, data: bytes) -> None:
    """Write all of ``data`` (a raw stream may take only part of it)."""
    written = out.write(data)
    if isinstance(written, int) and not isinstance(written, bool) and 0 <= written < len(data):
        view = memoryview(data)[written:]
        while view:
            n = out.write(view)
            if not n:
                raise OSError("the output accepted no more data")
            view = view[n:]


class SSEWriter:
    """Writes events to a binary writable (an HTTP response, a socket file, a WSGI write).

    Every method encodes one event as UTF-8, writes it whole, then calls ``out.flush()``
    if ``out`` has one. Writes are serialised by a lock, so progress callbacks running
    in other threads can share a writer.

    Args:
        out: an object with ``write(bytes)`` and optionally ``flush()``.
        expose_errors: default for :meth:`write_error`'s ``expose``.

    Raises:
        TypeError: ``out`` has no ``write`` method, or is a text stream
            (``io.StringIO``, ``sys.stdout``: pass ``sys.stdout.buffer``).
    """

    def __init__(self, out: Writable, *, expose_errors: bool = False) -> None:
        check_binary_writer(out)
        self._out = out
        flush = getattr(out, "flush", None)
        self._flush: Optional[Callable[[], Any]] = flush if callable(flush) else None
        self._lock = threading.Lock()
        self.expose_errors = expose_errors

    def write_raw(self, data: bytes) -> None:
        """Write already-encoded event stream bytes (from :func:`sse_stream`, say)."""
        with self._lock:
            _write_all(self._out, data)
            if self._flush is not None:
                self._flush()

    def _send(self, text: str) -> None:
        self.write_raw(text.encode("utf-8"))

    def write_event(
        self,
        event: Optional[str],
        data: str,
        id: Union[str, int, None] = None,
        retry: Optional[int] = None,
    ) -> None:
        """Write one event (see :func:`format_sse_event`)."""
        self._send(format_sse_event(event, data, id, retry))

    def write_data(self, data: str, id: Union[str, int, None] = None) -> None:
        """Write a ``message`` event (no ``event:`` line)."""
        self._send(format_sse_event(None, data, id))

    def write_json(
        self, obj: Any, event: Optional[str] = None, id: Union[str, int, None] = None
    ) -> None:
        """Write ``obj`` as compact JSON.

        Raises:
            ValueError: ``obj`` holds NaN or an infinity.
            TypeError: ``obj`` is not JSON serialisable.
        """
        self._send(format_sse_event(event, dumps(obj), id))

    def write_progress(
        self, received: int, total: Optional[int] = None, id: Union[str, int, None] = None
    ) -> None:
        """Write a ``progress`` event: ``{"received":50,"total":100}`` (total null if unknown)."""
        self._send(format_sse_event("progress", _progress_data(received, total), id))

    def write_done(self, id: Union[str, int, None] = None) -> None:
        """Write the final ``done`` event (data ``[DONE]``)."""
        self._send(format_sse_event("done", DONE_DATA, id))

    def write_error(
        self,
        exc: Optional[BaseException],
        *,
        expose: Optional[bool] = None,
        error_id: Optional[str] = None,
        id: Union[str, int, None] = None,
    ) -> str:
        """Write an ``error`` event; log ``exc`` with the error id; return the error id.

        The data is ``{"code":"stream_failed","message":"The stream failed.",
        "error_id":"..."}``; with ``expose`` (default: the writer's ``expose_errors``)
        it also holds ``type`` and ``detail`` (the exception's text). Only expose errors
        to clients you trust.
        """
        if error_id is None:
            error_id = new_error_id()
        show = self.expose_errors if expose is None else expose
        self._send(format_sse_event("error", _error_data(exc, error_id, show), id))
        return error_id

    def write_comment(self, text: str) -> None:
        """Write a comment (ignored by clients; keeps idle connections alive)."""
        self._send(format_sse_comment(text))
