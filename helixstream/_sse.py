"""Server-Sent Events: spec-exact encoding, and event streams for WSGI apps.

Encoding (the WHATWG ``text/event-stream`` format)
--------------------------------------------------
An event is a block of ``field: value`` lines ended by an empty line. What a browser's
``EventSource`` dispatches is decided by the spec's parsing rules, so the encoder is
written against them:

- The data is split on ``\\r\\n``, ``\\r`` and ``\\n`` (the spec's only line breaks; not
  ``str.splitlines()``, which also breaks on U+2028, U+0085, form feed...) and each
  piece becomes one ``data: `` line. The space after the colon is always written, so
  a value that starts with a space keeps it (the parser drops exactly one space).
  Empty data is one ``data: `` line, which still dispatches an event; data ending in a
  line break ends in an empty ``data: `` line, so the break survives. Every line
  break reaches the browser as ``\\n``.
- A field value cannot hold a line break, so an event name or id containing CR or LF
  is refused with ``ValueError``, as is an id containing NUL (the parser would ignore
  it) and a ``retry`` that is not a non-negative int. Nothing is silently stripped:
  a line break in an id or event name is an injection attempt, and hiding it helps the
  attacker.
- Comments (keep-alives) are prefixed with ``:`` on every line and end without an empty
  line: an empty line after only a comment dispatches nothing in a browser, but some
  client libraries turn it into an empty event.
- Lines end with LF; JSON is compact and refuses NaN and infinities.
- ``write_error`` sends a generic message and an error id (and logs the exception with
  that id on the ``helixstream.sse`` logger); the exception's text goes out only when
  the caller opts in, so internal details do not leak to browsers.

Streaming to WSGI: :func:`sse_stream`
-------------------------------------
``sse_stream(chunks)`` returns an :class:`SSEBody`: the iterable of ``bytes`` a WSGI app
returns (with :data:`SSE_HEADERS`). Every content chunk becomes one event with an
increasing id; with ``progress=True`` a ``progress`` event follows each one; the stream
ends with a ``done`` event (data ``[DONE]``), or an ``error`` event if it failed. While the
source is silent for ``keepalive`` seconds, a ``: keep-alive`` comment goes out: a WSGI
server only learns that the client left when a write fails, so keep-alives are also what
detects a hang-up during a long pause of the model. The waits are
``ChunkStream.next_within(keepalive)``: no polling, no sleeping.

How a stream ends::

    source ends    ─▶ body sends "done"            ─▶ StopIteration ─▶ server: close()
    source raises  ─▶ body sends "error" (+ log)   ─▶ StopIteration ─▶ server: close()
    stop is set    ─▶ body sends "error" (cancelled) ─▶ StopIteration ─▶ server: close()
    replay.cancel  ─▶ body sends "error" (cancelled) ─▶ StopIteration ─▶ server: close()
    replay.close() ─▶ body sends "error" (shutdown, no id) ─▶ StopIteration ─▶ close()
    client leaves  ─▶ a write fails in the server  ─▶ server: close()
                        └▶ ChunkStream.close() ─▶ worker threads end, source.close()

``close()`` is what PEP 3333 servers call when the response ends for any reason, the
client's departure included; it closes the :class:`ChunkStream`, which ends its worker
threads and closes the source, so the upstream LLM request stops.

Resume with ``Last-Event-ID``: :class:`SSEReplay`
-------------------------------------------------
A browser that loses its connection reconnects by itself, sending the id of the last
event it received in the ``Last-Event-ID`` header. To honour it, pass the same
:class:`SSEReplay` registry to every ``sse_stream`` call of an endpoint:

- Each stream gets a random key; its event ids are ``"<key>.<n>"``, so an id names
  both the stream and the position in it. Its events (bytes exactly as sent; not the
  keep-alives) go into an :class:`EventLog` bounded to ``max_events``; at most
  ``max_streams`` logs are kept, the oldest forgotten first, and all of them take at
  most ``max_bytes`` (the oldest finished streams forgotten first, then the oldest
  events of running ones that their reader has already taken; never an event still on
  its way to the client). A stream that ends lets go of its
  :class:`ChunkStream` and source; only its log stays.
- ``owner`` (a session or user id): a resume must come with the stream's owner, else
  it is ``unknown_event_id``, exactly as an id that does not exist. The number of an id
  is read only up to 18 ASCII digits (``int()`` refuses 4,301).
- A resume of an ended stream after its last event has nothing to send: the body's
  ``status`` is 204 and it yields nothing (an ``EventSource`` stops retrying on 204).
- ``SSEReplay.cancel(key)`` stops a running stream (and its source) at once; its reader
  sends ``cancelled``. ``SSEReplay.close()`` stops them all for a shutdown; each
  reader sends a ``shutdown`` error event without an id and the log records nothing,
  so the browser resumes from the last event it received.
- When the client leaves a stream that has not ended, the stream stays open for
  ``grace`` seconds (0: it is closed at once), held back by its bounded queues, waiting
  for the client to return; after that it is closed like any abandoned stream (its
  source is closed) and its log ends with a ``cancelled`` error event.
- A log is kept ``ttl`` seconds after its stream ended, then forgotten. Expiry is
  checked on every registry call and by :meth:`SSEReplay.sweep`; time comes from the
  injected ``clock``.
- ``sse_stream(..., last_event_id=id, replay=registry)`` replays the events after
  ``id`` and then continues the live stream (a reconnect that arrives before the server
  noticed the old connection has gone takes the stream over; the old body ends).
  An id the registry does not know (never issued, or its log forgotten) gets an
  ``error`` event with code ``unknown_event_id``; an id whose following events were
  dropped from a full log gets ``events_expired``. Neither restarts the stream: the
  client decides what to do.
- Without a registry, a request carrying a ``Last-Event-ID`` gets ``unknown_event_id``:
  silently starting a new generation would show the answer twice.

The ``chunks`` of a resumed request are not used: pass a callable (``lambda:
client.chat.completions.create(...)``) so that no upstream request is started for it;
a ready-made iterable is closed.

Proxies and compression
-----------------------
:data:`SSE_HEADERS` holds ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``
(nginx: do not buffer) and never a hop-by-hop header such as ``Connection``, which
PEP 3333 forbids to applications (waitress refuses the response). Response compression
(gzip middleware, a proxy's gzip) must be off for event streams: a compressor holds
events back until it has a block's worth of data, so the browser sees nothing.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import re
import secrets
import socket
import threading
import time
import weakref
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Tuple,
    Union,
)

from ._aggregate import ChunkAggregator
from ._chunk import StreamChunk
from ._engine import ChunkStream
from ._errors import ConfigError
from ._formats import EventFormat, Events, make_format
from ._inputs import check_binary_writer, check_source
from ._tokens import estimate_tokens
from ._util import close_quietly

__all__ = [
    "SSE_HEADERS",
    "EventLog",
    "SSEBody",
    "SSEReplay",
    "SSEWriter",
    "format_sse_comment",
    "format_sse_event",
    "sse_stream",
    "stream_chunks_to_sse",
]

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

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: What an event in a log costs beyond its bytes (the tuple, the bytes object, the
#: deque slot), and what a registry's finished stream costs beyond its events (the
#: log, the producer, locks, the key): about 90 and 2,000 bytes measured with
#: tracemalloc on CPython 3.11, rounded up.
_EVENT_OVERHEAD = 96
_ENTRY_OVERHEAD = 2048
#: A ``Last-Event-ID``'s number longer than this is not one we issued (and int() of
#: 4,301 digits raises): it is an unknown id.
_MAX_SEQ_DIGITS = 18
_KEEPALIVE = b": keep-alive\n"
_OPENING = b": connected\n"
#: The response header that carries a registry stream's key (``SSEBody.stream_id``).
_STREAM_ID_HEADER = "X-Stream-Id"


# --- encoding ------------------------------------------------------------------------
def _check_event_name(event: Optional[str]) -> None:
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


def _check_retry(retry: Optional[int]) -> None:
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
    _check_event_name(event)
    if not isinstance(data, str):
        raise TypeError(f"data must be a str, not {type(data).__name__}")
    id_text = _check_id(id)
    _check_retry(retry)
    parts = []
    if event:
        parts.append(f"event: {event}\n")
    if "\n" in data or "\r" in data:
        parts.append("data: " + "\ndata: ".join(_LINE_BREAK.split(data)) + "\n")
    else:
        parts.append(f"data: {data}\n")
    if id_text is not None:
        parts.append(f"id: {id_text}\n")
    if retry is not None:
        parts.append(f"retry: {int(retry)}\n")
    parts.append("\n")
    return "".join(parts)


def format_sse_comment(text: str) -> str:
    """Encode a comment: every line of ``text`` prefixed with ``:``; no empty line after.

    Raises:
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"comment must be a str, not {type(text).__name__}")
    return "".join(f": {line}\n" if line else ":\n" for line in _LINE_BREAK.split(text))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _progress_data(received: int, total: Optional[int]) -> str:
    return _dumps({"received": received, "total": total or None})


def _error_payload(
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
    return _dumps(_error_payload(exc, error_id, expose, log))


def _new_error_id() -> str:
    return secrets.token_hex(6)


def _notice(code: str, message: str) -> str:
    return _dumps({"code": code, "message": message})


def _notice_bytes(fmt: EventFormat, code: str, message: str) -> bytes:
    """A notice without an id (a resume that cannot be served, a shutdown), as the
    stream's format writes a failure."""
    return "".join(
        format_sse_event(event, data) for event, data in fmt.failure({"code": code, "message": message})
    ).encode("utf-8")


#: What each reader gets when :meth:`SSEReplay.close` stops its stream: no id, so the
#: browser's ``Last-Event-ID`` stays the last event it received.
_SHUTDOWN_MESSAGE = "The server is shutting down; reconnect to resume."


class _Writable(Protocol):
    def write(self, data: Any) -> Any: ...


def _write_all(out: _Writable, data: bytes) -> None:
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

    def __init__(self, out: _Writable, *, expose_errors: bool = False) -> None:
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
        self._send(format_sse_event(event, _dumps(obj), id))

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
            error_id = _new_error_id()
        show = self.expose_errors if expose is None else expose
        self._send(format_sse_event("error", _error_data(exc, error_id, show), id))
        return error_id

    def write_comment(self, text: str) -> None:
        """Write a comment (ignored by clients; keeps idle connections alive)."""
        self._send(format_sse_comment(text))


# --- the event log and the replay registry ---------------------------------------------
class _ResumeError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_UNKNOWN = "unknown_event_id"
_EXPIRED = "events_expired"


class EventLog:
    """The events of one stream, bounded, for replay after a reconnect.

    Events are numbered from 1 with no gaps; the log keeps the last ``max_events``.
    :attr:`size_bytes` is what the kept events cost: their bytes plus a fixed overhead
    per event (the objects that hold them).

    Args:
        max_events: how many events are kept (>= 1).
        clock: time source for :attr:`ended_at` (seconds).
    """

    def __init__(self, max_events: int = 10_000, clock: Callable[[], float] = time.monotonic):
        _check_positive_int("max_events", max_events)
        _check_clock(clock)
        self.max_events = max_events
        self._clock = clock
        self._events: Deque[Tuple[int, bytes]] = collections.deque()
        self._lock = threading.Lock()
        self._size = 0
        # told how many bytes the log grew by (0: it ended), outside the lock (SSEReplay)
        self._on_change: Optional[Callable[[int], None]] = None
        # the events up to this number were read by the stream's reader: only those
        # may be dropped to save memory (the others are on their way to the client)
        self._read_upto = 0
        self.last_seq = 0
        #: When the stream ended (by ``clock``), or None while it runs.
        self.ended_at: Optional[float] = None

    def append(self, seq: int, data: bytes) -> None:
        """Record event ``seq`` (the next number)."""
        with self._lock:
            if seq != self.last_seq + 1:
                raise ValueError(f"event {seq} does not follow event {self.last_seq}")
            self._events.append((seq, data))
            self.last_seq = seq
            grown = len(data) + _EVENT_OVERHEAD
            if len(self._events) > self.max_events:
                grown -= len(self._events.popleft()[1]) + _EVENT_OVERHEAD
            self._size += grown
            on_change = self._on_change
        if on_change is not None and grown:
            on_change(grown)

    @property
    def size_bytes(self) -> int:
        """The memory the kept events take, approximately (bytes)."""
        return self._size

    def _trim(self, excess: int) -> int:
        """Drop the oldest events already read until ``excess`` bytes are freed (or no
        such event is left); return the bytes freed."""
        freed = 0
        with self._lock:
            events = self._events
            while events and freed < excess and events[0][0] <= self._read_upto:
                freed += len(events.popleft()[1]) + _EVENT_OVERHEAD
            self._size -= freed
        return freed

    def _read_from(self, seq: int) -> None:
        """A new reader resumes after ``seq``: the events after it must stay.

        Raises:
            _ResumeError: as :meth:`check`.
        """
        with self._lock:
            self._start_of(seq)
            self._read_upto = seq

    def end(self) -> None:
        """The stream sent its last event."""
        with self._lock:
            if self.ended_at is not None:
                return
            self.ended_at = self._clock()
            on_change = self._on_change
        if on_change is not None:
            on_change(0)

    @property
    def ended(self) -> bool:
        """True once the stream sent its last event."""
        return self.ended_at is not None

    def _start_of(self, seq: int) -> int:
        # called with the lock held: the index in the deque of the event after ``seq``
        if seq < 0 or seq > self.last_seq:
            raise _ResumeError(_UNKNOWN, "Cannot resume: this event id was never sent.")
        first = self._events[0][0] if self._events else self.last_seq + 1
        if seq + 1 < first:
            raise _ResumeError(
                _EXPIRED, "Cannot resume: the events after this id are no longer kept."
            )
        return seq + 1 - first

    def check(self, seq: int) -> None:
        """Raise ``_ResumeError`` unless the events after ``seq`` can be replayed."""
        with self._lock:
            self._start_of(seq)

    def after(self, seq: int) -> List[Tuple[int, bytes]]:
        """The ``(number, bytes)`` of the events after ``seq``, oldest first.

        Raises:
            _ResumeError: ``seq`` was never sent, or events after it were dropped.
        """
        with self._lock:
            if seq == self.last_seq:
                return []
            start = self._start_of(seq)
            # the reader takes them all: they may be dropped from now on (a superseded
            # reader's last call may move this on for its successor: that one then gets
            # ``events_expired`` if memory runs short at that very moment)
            self._read_upto = self.last_seq
            return list(itertools.islice(self._events, start, None))

    def __len__(self) -> int:
        return len(self._events)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name!r} must be an int >= 1 (got {value!r})")


def _check_seconds(name: str, value: Any, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name!r} must be a finite number of seconds (got {value!r})")
    if value < 0 or (value == 0 and not allow_zero):
        limit = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name!r} must be {limit} (got {value!r})")
    return float(value)


def _check_clock(clock: Any) -> None:
    if not callable(clock):
        raise ConfigError(f"'clock' must be a callable returning seconds (got {clock!r})")


def _check_owner(owner: Any) -> None:
    if owner is not None and (isinstance(owner, bool) or not isinstance(owner, (str, int))):
        raise TypeError(
            f"owner must be a str or an int (a session or user id) or None, "
            f"not {type(owner).__name__}"
        )


def _same_owner(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


class _Entry:
    """One stream in a registry: its log, its producer and who reads it."""

    __slots__ = (
        "key",
        "log",
        "feed",
        "owner",
        "reader",
        "pull_lock",
        "timer",
        "stopping",
        "counted",
        "__weakref__",
    )

    def __init__(self, key: str, log: EventLog, feed: "_Feed", owner: Any) -> None:
        self.key = key
        self.log = log
        self.feed = feed
        self.owner = owner  # the session or user the stream belongs to (None: nobody)
        self.reader: Optional[object] = None  # the token of the body reading the stream
        self.pull_lock = threading.RLock()  # held while a body reads the ChunkStream
        self.timer: Optional[threading.Timer] = None  # the grace period of a detached stream
        self.stopping = False  # cancel() or close() took it
        self.counted = 0  # the bytes the registry counts for it (-1: no longer counted)


class _Finished(Exception):
    """A resume of a stream that has ended and whose every event the client has."""


#: ``SSEReplay.cancel(..., owner=...)`` not given: no owner check.
_ANY_OWNER: Any = object()


class SSEReplay:
    """A registry of recent event streams, so reconnecting clients can resume them.

    Share one instance between all requests of an endpoint (it is thread-safe) and pass
    it to :func:`sse_stream` as ``replay``, with the request's ``Last-Event-ID``.

    Args:
        ttl: seconds a stream's log is kept after the stream ended.
        grace: seconds a stream whose client left stays open, waiting for the client to
            resume it; 0 closes it at once (its source too).
        max_events: events kept per stream; older ones are dropped (a client resuming
            from before them gets an ``events_expired`` error event).
        max_streams: logs kept at most; the oldest are forgotten first.
        max_bytes: memory the logs may take in all (their events, plus a fixed overhead
            per event and per stream); beyond it the oldest finished streams are
            forgotten first, then the oldest events of running streams that their client
            already received are dropped (never one still on its way to it).
            Default 64 MiB.
        clock: time source for ``ttl`` (default ``time.monotonic``); tests inject one.

    Raises:
        ConfigError: a bad argument (a ``ValueError``).
    """

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        grace: float = 10.0,
        max_events: int = 10_000,
        max_streams: int = 1_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = _check_seconds("ttl", ttl)
        self.grace = _check_seconds("grace", grace)
        _check_positive_int("max_events", max_events)
        _check_positive_int("max_streams", max_streams)
        _check_positive_int("max_bytes", max_bytes)
        _check_clock(clock)
        self.max_events = max_events
        self.max_streams = max_streams
        self.max_bytes = max_bytes
        self._clock = clock
        # re-entrant: a body dropped without close() detaches from a GC finalizer,
        # which may run in a thread that holds the lock
        self._lock = threading.RLock()
        self._entries: "collections.OrderedDict[str, _Entry]" = collections.OrderedDict()
        self._used = 0
        self._closed = False

    # --- public -----------------------------------------------------------------------
    def sweep(self) -> None:
        """Forget the logs whose ``ttl`` has passed (also done on every registry call)."""
        with self._lock:
            self._sweep_locked()

    def cancel(self, stream_id: str, *, owner: Any = _ANY_OWNER) -> bool:
        """Stop the running stream ``stream_id`` now: close it and its source.

        The client reading it gets a ``cancelled`` error event and its response ends;
        the log keeps that event for a resume.

        Args:
            stream_id: the stream's key (:attr:`SSEBody.stream_id`, the ``X-Stream-Id``
                header, or an event id's part before its last ``.``).
            owner: when given, the stream must belong to this owner (the ``owner``
                given to :func:`sse_stream`; None for a stream started without one).

        Returns:
            True if a running stream was stopped; False if the id is unknown, belongs
            to another owner, or its stream had already ended or been stopped.

        Raises:
            TypeError: ``stream_id`` is not a str.
        """
        if not isinstance(stream_id, str):
            raise TypeError(f"stream_id must be a str, not {type(stream_id).__name__}")
        with self._lock:
            self._sweep_locked()
            entry = self._entries.get(stream_id)
            if entry is None or entry.stopping or entry.feed.ended:
                return False
            if owner is not _ANY_OWNER and not _same_owner(entry.owner, owner):
                return False
            entry.stopping = True
        self._stop(entry)
        return entry.feed.outcome == "cancelled"  # not if it ended by itself meanwhile

    def close(self) -> None:
        """Shut the registry down: every running stream gets an ``error`` event
        ``shutdown`` (without an id, so a browser reconnects with the id of the last
        event it got) and ends; every source is closed; all logs are forgotten.

        For a server's shutdown hook. Safe to call more than once, from any thread.
        """
        with self._lock:
            self._closed = True
            entries = [e for e in self._entries.values() if not (e.stopping or e.feed.ended)]
            for entry in self._entries.values():
                entry.stopping = True
                entry.counted = -1
            self._entries.clear()
            self._used = 0
        for entry in entries:
            self._stop(entry, shutdown=True)

    @property
    def size_bytes(self) -> int:
        """The memory the registry's logs take, approximately (at most ``max_bytes``
        plus what running streams need beyond their events)."""
        with self._lock:
            return self._used

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __enter__(self) -> "SSEReplay":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- used by sse_stream ------------------------------------------------------------
    def _register(self, feed: "_Feed", reader: object, owner: Any) -> _Entry:
        with self._lock:
            if self._closed:
                raise RuntimeError("this SSEReplay registry is closed")
            self._sweep_locked()
            key = secrets.token_urlsafe(9)
            while key in self._entries:  # pragma: no cover - 72 random bits
                key = secrets.token_urlsafe(9)
            log = EventLog(self.max_events, self._clock)
            entry = _Entry(key, log, feed, owner)
            entry.reader = reader
            entry.counted = _ENTRY_OVERHEAD
            self._used += _ENTRY_OVERHEAD
            log._on_change = lambda grown: self._grew(entry, grown)
            feed.attach_log(log, key + ".")
            self._entries[key] = entry
            evicted = []
            while len(self._entries) > self.max_streams:
                _, old = self._entries.popitem(last=False)
                self._uncount(old)
                if old.reader is None and not old.stopping:
                    old.stopping = True
                    evicted.append(old)
            self._shrink_locked()
        for old in evicted:
            self._stop(old)
        return entry

    def _attach(self, last_event_id: str, reader: object, owner: Any) -> Tuple[_Entry, int]:
        key, _, number = last_event_id.rpartition(".")
        with self._lock:
            self._sweep_locked()
            entry = self._entries.get(key) if key else None
            if (
                entry is None
                or not _same_owner(entry.owner, owner)
                or not 0 < len(number) <= _MAX_SEQ_DIGITS
                or not number.isdigit()
                or not number.isascii()
            ):
                raise _ResumeError(
                    _UNKNOWN,
                    "Cannot resume: this event id is unknown, or its stream has expired.",
                )
            seq = int(number)
            if entry.log.ended and seq == entry.log.last_seq:
                raise _Finished()
            entry.log._read_from(seq)
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
            entry.reader = reader
            self._entries.move_to_end(key)
        return entry, seq

    def _detach(self, entry: _Entry, reader: object) -> None:
        with self._lock:
            if entry.reader is not reader:
                return  # another connection took the stream over
            entry.reader = None
            if entry.log.ended or entry.stopping:
                return
            linger = self.grace > 0 and not self._closed and entry.key in self._entries
            if linger:
                timer = threading.Timer(self.grace, self._abandon, (entry,))
                timer.name = f"helixstream-sse-grace-{entry.key}"
                timer.daemon = True
                entry.timer = timer
                timer.start()
            else:
                entry.stopping = True
        if not linger:
            self._stop(entry)

    def _abandon(self, entry: _Entry) -> None:
        """The grace period of a detached stream ran out."""
        with self._lock:
            if entry.reader is not None or entry.timer is None or entry.stopping:
                return  # resumed or stopped in the meantime
            entry.timer = None
            entry.stopping = True
        self._stop(entry)

    def _stop(self, entry: _Entry, shutdown: bool = False) -> None:
        timer = entry.timer
        if timer is not None:
            timer.cancel()
            entry.timer = None
        entry.feed.cancel(shutdown=shutdown)
        with entry.pull_lock:
            entry.feed.end_cancelled()

    # --- memory ------------------------------------------------------------------------
    def _grew(self, entry: _Entry, grown: int) -> None:
        """A log grew by ``grown`` bytes, or ended (0): called by the log, outside its
        lock."""
        with self._lock:
            if entry.counted < 0:
                return  # forgotten already
            entry.counted += grown
            self._used += grown
            self._shrink_locked()

    def _uncount(self, entry: _Entry) -> None:
        if entry.counted >= 0:
            self._used -= entry.counted
            entry.counted = -1

    def _shrink_locked(self) -> None:
        """Bring the logs within ``max_bytes``: forget the oldest finished streams, then
        drop the oldest events of running ones that were read (a running stream is never
        forgotten, an unread event never dropped: the bound may be exceeded by those)."""
        if self._used <= self.max_bytes:
            return
        for key in [k for k, e in self._entries.items() if e.log.ended]:
            self._uncount(self._entries.pop(key))
            if self._used <= self.max_bytes:
                return
        for entry in self._entries.values():
            freed = entry.log._trim(self._used - self.max_bytes)
            entry.counted -= freed
            self._used -= freed
            if self._used <= self.max_bytes:
                return

    def _sweep_locked(self) -> None:
        if not self._entries:
            return
        now = self._clock()
        expired = [
            key
            for key, entry in self._entries.items()
            if entry.log.ended_at is not None and now - entry.log.ended_at >= self.ttl
        ]
        for key in expired:
            self._uncount(self._entries.pop(key))


# --- the producer: a ChunkStream turned into events --------------------------------------
class _Feed:
    """Turns the chunks of a :class:`ChunkStream` into encoded events.

    One reader at a time calls :meth:`pull` (the body, or with a registry whoever holds
    the entry's ``pull_lock``); :meth:`cancel` may be called from any thread.
    """

    def __init__(
        self,
        stream: ChunkStream,
        *,
        event: Optional[str],
        progress: bool,
        estimated_tokens: int,
        expose_errors: bool,
        fmt: Optional[EventFormat] = None,
    ) -> None:
        #: how the events are written (``format=`` of :func:`sse_stream`)
        self.fmt = fmt if fmt is not None else EventFormat(event)
        self._begun = False
        #: None once the stream has ended, in a registry: a finished stream's log is
        #: kept for ``ttl``, its stream and source are not
        self.stream: Optional[ChunkStream] = stream
        self.event = event
        self.progress = progress
        self.estimated_tokens = estimated_tokens
        self.expose_errors = expose_errors
        self.log: Optional[EventLog] = None
        self.prefix = ""
        self.seq = 0
        self.tokens = 0
        self.ended = False
        self.outcome: Optional[str] = None  # "done", "error" or "cancelled"
        self.shutdown = False  # stopped by SSEReplay.close(): readers get "shutdown"
        self._cancelled = False

    def attach_log(self, log: EventLog, prefix: str) -> None:
        self.log = log
        self.prefix = prefix

    def _emit_all(self, out: List[bytes], events: Events) -> None:
        if not self._begun:
            self._begun = True
            for event, data in self.fmt.begin():
                self._emit(out, event, data)
        for event, data in events:
            self._emit(out, event, data)

    def _tokens(self) -> int:
        """The stream's output tokens: its aggregate's count (the service's own when it
        sent one), else the count of what went out."""
        stream = self.stream
        if stream is not None:
            try:
                return int(stream.get_result().total_tokens)
            except (TypeError, AttributeError):
                pass
        return self.tokens

    def _emit(self, out: List[bytes], event: Optional[str], data: str) -> None:
        seq = self.seq + 1
        encoded = format_sse_event(event, data, self.prefix + str(seq)).encode("utf-8")
        self.seq = seq  # only once encoded: ids have no gaps
        if self.log is not None:
            self.log.append(seq, encoded)
        out.append(encoded)

    def _end(self, outcome: str) -> None:
        self.ended = True
        self.outcome = outcome
        if self.log is not None:
            self.log.end()
            self.stream = None  # release the stream and its source (the log stays)

    def pull(self, timeout: Optional[float]) -> Optional[List[bytes]]:
        """The events of the next content chunk, or of the end of the stream.

        Returns None when no chunk came within ``timeout`` seconds (None: wait as long
        as it takes), and ``[]`` once the stream has ended.
        """
        stream = self.stream
        if self.ended or stream is None:
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                if deadline is None:
                    chunk: Optional[StreamChunk] = next(stream)
                else:
                    chunk = stream.next_within(max(0.0, deadline - time.monotonic()))
                    if chunk is None:
                        return None
            except StopIteration:
                if self._cancelled or stream.cancelled:
                    return self.end_cancelled()
                out: List[bytes] = []
                self._emit_all(out, self.fmt.end(self._tokens()))
                self._end("done")
                return out
            except Exception as exc:  # noqa: BLE001 - the stream failed: tell the client
                return self._fail(exc)
            assert chunk is not None
            text = chunk.content
            if chunk.tokens is not None:
                self.tokens += chunk.tokens
            elif text:
                self.tokens += estimate_tokens(text)
            if not text:
                continue  # a chunk with no text (usage, metadata): no event
            out = []
            try:
                events = self.fmt.text(text)
                if self.progress:
                    events += self.fmt.progress(self.tokens, self.estimated_tokens)
                self._emit_all(out, events)
            except ValueError as exc:  # text that cannot be encoded (a lone surrogate)
                stream.close()
                return self._fail(exc, out)
            return out

    def _fail(self, exc: BaseException, out: Optional[List[bytes]] = None) -> List[bytes]:
        out = out if out is not None else []
        stream = self.stream
        payload = _error_payload(
            exc, _new_error_id(), self.expose_errors, stream_id=None if stream is None else stream.id
        )
        self._emit_all(out, self.fmt.failure(payload))
        self._end("error")
        return out

    def cancel(self, shutdown: bool = False) -> None:
        """Close the stream (any thread); the next :meth:`pull` reports the cancellation
        (with ``shutdown``, the readers report a shutdown instead)."""
        if shutdown and not self.ended:
            self.shutdown = True
        self._cancelled = True
        stream = self.stream
        if stream is not None:
            stream.close()

    def end_cancelled(self) -> List[bytes]:
        """End with a ``cancelled`` error event (when not ended yet); after a shutdown,
        with no event: each reader sends its own ``shutdown`` notice, without an id."""
        if self.ended:
            return []
        out: List[bytes] = []
        if not self.shutdown:
            notice = {"code": "cancelled", "message": "The stream was stopped before its end."}
            self._emit_all(out, self.fmt.failure(notice))
        self._end("cancelled")
        return out


# --- the WSGI body -----------------------------------------------------------------------
class SSEBody:
    """The response body of an event stream: an iterator of ``bytes`` with ``close()``.

    Return it from a WSGI app with its :attr:`status_line` and :attr:`headers`
    (``start_response(body.status_line, body.headers)``); the server iterates it and
    calls :meth:`close` when the response ends, however it ends. Made by
    :func:`sse_stream`.
    """

    def __init__(
        self,
        feed: Optional[_Feed],
        keepalive: Optional[float],
        opening: bytes,
        pending: Iterable[bytes] = (),
        status: int = 200,
        fmt: Optional[EventFormat] = None,
    ) -> None:
        self._fmt = fmt if fmt is not None else (feed.fmt if feed is not None else EventFormat())
        self._feed = feed
        self._stream = None if feed is None else feed.stream
        self._keepalive = keepalive
        self._status = status
        self._pending: Deque[bytes] = collections.deque(
            [opening, *pending] if status == 200 else ()
        )
        self._entry: Optional[_Entry] = None
        self._token = object()
        self._cursor = 0
        self._closed = False
        self._finalizer: Optional[Any] = None
        self._peer: Optional[socket.socket] = None  # the client's socket, when known

    def _attach(self, registry: SSEReplay, entry: _Entry, cursor: int) -> None:
        self._feed = entry.feed
        self._stream = entry.feed.stream
        self._entry = entry
        self._cursor = cursor
        self._finalizer = weakref.finalize(self, registry._detach, entry, self._token)

    # --- public ------------------------------------------------------------------------
    @property
    def stream(self) -> Optional[ChunkStream]:
        """The :class:`ChunkStream` behind this body (None for an error-only body, and
        for a resume of a stream that had ended)."""
        return self._stream

    @property
    def stream_id(self) -> Optional[str]:
        """The key of this stream in its :class:`SSEReplay` registry, if any: what
        :meth:`SSEReplay.cancel` takes (also sent as the ``X-Stream-Id`` header)."""
        return None if self._entry is None else self._entry.key

    @property
    def status(self) -> int:
        """The HTTP status of the response: 200, or 204 (No Content) for a resume of
        a stream that has ended and whose every event the client has (an
        ``EventSource`` stops reconnecting on 204). A 204 body yields nothing."""
        return self._status

    @property
    def status_line(self) -> str:
        """:attr:`status` as a WSGI status line: ``"200 OK"`` or ``"204 No Content"``."""
        return "200 OK" if self._status == 200 else "204 No Content"

    @property
    def headers(self) -> List[Tuple[str, str]]:
        """The response headers: :data:`SSE_HEADERS` and ``X-Stream-Id`` (with a
        registry); for a 204, only ``Cache-Control`` (a 204 has no content type)."""
        if self._status != 200:
            return [("Cache-Control", "no-cache")]
        headers = [*SSE_HEADERS, *self._fmt.headers]
        if self._entry is not None:
            headers.append((_STREAM_ID_HEADER, self._entry.key))
        return headers

    @property
    def outcome(self) -> Optional[str]:
        """How the stream ended: ``"done"``, ``"error"``, ``"cancelled"``, or None."""
        return None if self._feed is None else self._feed.outcome

    @property
    def closed(self) -> bool:
        """True once the body was closed or sent its last bytes."""
        return self._closed

    def __iter__(self) -> "SSEBody":
        return self

    def __next__(self) -> bytes:
        if self._pending:
            return self._pending.popleft()
        if self._closed or self._feed is None:
            self._closed = True
            raise StopIteration
        data = self._next_live() if self._entry is None else self._next_logged()
        if data is None:
            self._closed = True
            raise StopIteration
        if data is _KEEPALIVE and self._peer is not None and _peer_gone(self._peer):
            # the client closed its connection while the stream was silent: after a
            # normal close the first write would still succeed, so ask the socket
            self.close()
            raise StopIteration
        return data

    def close(self) -> None:
        """End the response: close the stream and its source (or, with a registry whose
        ``grace`` is not 0, leave the stream open that long for the client to resume).

        Safe to call more than once, from any thread.
        """
        self._closed = True
        self._pending.clear()
        if self._finalizer is not None:
            self._finalizer()  # detaches from the registry, once
        elif self._feed is not None and not self._feed.ended:
            self._feed.cancel()

    def __enter__(self) -> "SSEBody":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------
    def _next_live(self) -> Optional[bytes]:
        feed = self._feed
        assert feed is not None
        events = feed.pull(self._keepalive)
        if events is None:
            return _KEEPALIVE
        return b"".join(events) if events else None

    def _next_logged(self) -> Optional[bytes]:
        entry = self._entry
        feed = self._feed
        assert entry is not None and feed is not None
        keepalive = self._keepalive
        while True:
            if entry.reader is not self._token:
                return None  # another connection took the stream over
            try:
                events = entry.log.after(self._cursor)
            except _ResumeError as exc:  # overtaken by a full log
                self._closed = True  # this error event is the last
                return _notice_bytes(self._fmt, exc.code, exc.message)
            if events:
                self._cursor = events[-1][0]
                return b"".join(data for _, data in events)
            if entry.log.ended:
                if feed.shutdown:  # SSEReplay.close(): no id, the client resumes elsewhere
                    self._closed = True
                    return _notice_bytes(self._fmt, "shutdown", _SHUTDOWN_MESSAGE)
                return None
            if keepalive is None:
                entry.pull_lock.acquire()
            elif not entry.pull_lock.acquire(timeout=keepalive):
                return _KEEPALIVE
            try:
                if entry.log.last_seq > self._cursor:
                    continue  # another body pulled while we waited
                got = feed.pull(keepalive)
            finally:
                entry.pull_lock.release()
            if got is None:
                return _KEEPALIVE


def _client_socket(environ: Optional[Mapping[str, Any]]) -> Optional[socket.socket]:
    """The client's socket, where the WSGI server exposes it (gunicorn, Werkzeug)."""
    if not environ:
        return None
    for key in ("gunicorn.socket", "werkzeug.socket"):
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            return sock
    return None


def _peer_gone(sock: socket.socket) -> bool:
    """Has the client closed its side? A peek that reads nothing means it sent its
    FIN; no data yet (would block) or data waiting means it is still there."""
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except (ValueError, AttributeError):  # TLS sockets refuse flags; no MSG_DONTWAIT
        return False
    except OSError:  # reset, or the server closed it
        return True
    return data == b""


def _is_factory(chunks: Any) -> bool:
    return callable(chunks) and not hasattr(chunks, "__iter__") and not hasattr(chunks, "__next__")


def sse_stream(
    chunks: Union[Iterable[Any], Callable[[], Iterable[Any]]],
    *,
    keepalive: Optional[float] = 15.0,
    progress: bool = False,
    estimated_tokens: int = 0,
    last_event_id: Optional[str] = None,
    replay: Optional[SSEReplay] = None,
    event: Optional[str] = None,
    retry: Optional[int] = None,
    expose_errors: bool = False,
    stop: Optional[threading.Event] = None,
    owner: Union[str, int, None] = None,
    format: str = "text",
    model: str = "helixstream",
    environ: Optional[Mapping[str, Any]] = None,
) -> SSEBody:
    """An event stream of ``chunks``, as the body of a WSGI response.

    Args:
        chunks: a :class:`ChunkStream` (the output of any helixstream stream), any
            iterable of ``str``, UTF-8 ``bytes`` or :class:`StreamChunk` (run through
            the stream engine, so it can be closed and waited on), or a callable
            returning one (called only when a new stream starts, not on a resume).
        keepalive: seconds of source silence after which a ``: keep-alive`` comment is
            sent; None sends none.
        progress: send a ``progress`` event (``{"received":N,"total":M}``, tokens)
            after each content event.
        estimated_tokens: the expected length of the answer, the ``total`` of progress
            events (0: unknown, sent as null).
        last_event_id: the request's ``Last-Event-ID`` header: resume (see ``replay``).
        replay: the :class:`SSEReplay` registry that keeps this endpoint's streams for
            resuming; None keeps nothing (a ``last_event_id`` then gets an error event).
        event: the event type of content events (None: ``message``).
        retry: the browser's reconnection delay (milliseconds), sent first.
        expose_errors: put the exception's type and text in the ``error`` event
            (default: a generic message and an error id, the exception being logged).
        stop: a ``threading.Event`` that stops the stream when set.
        format: the protocol the events speak: ``"text"`` (helixstream's own events,
            the default), ``"openai"`` (OpenAI's ``chat.completion.chunk`` stream, as
            the ``openai`` SDKs read it) or ``"ai-sdk"`` (the Vercel AI SDK's UI message
            stream, v1, as ``useChat`` reads it; its header is in :attr:`SSEBody.headers`).
            Resuming works with every format.
        model: the ``model`` of ``"openai"`` chunks.
        environ: the request's WSGI environ. Where the server puts the client's
            socket in it (gunicorn's ``gunicorn.socket``, Werkzeug's
            ``werkzeug.socket``), a client that hung up while the stream was silent is
            noticed at the first keep-alive tick (otherwise the server learns it only
            when a write fails: after a normal close, at the second keep-alive). The
            Flask and Django helpers pass it.
        owner: who the stream belongs to (a session or user id), with a registry: a
            resume must come with the same owner, else it gets ``unknown_event_id`` as
            if the id did not exist (an event id alone is a bearer token).

    Returns:
        An :class:`SSEBody`: iterate it for bytes; ``close()`` stops the stream. Its
        :attr:`~SSEBody.status` is 204 for a resume of a stream that has ended and
        whose every event the client has.

    Raises:
        ValueError: an invalid option (``event``, ``retry``, ``keepalive``, ...).
        TypeError: an ``owner`` that is not a str, an int or None; a ``replay`` that
            is not an :class:`SSEReplay`.
    """
    _check_event_name(event)
    _check_owner(owner)
    if not isinstance(model, str) or not model:
        raise ConfigError(f"'model' must be a non-empty string (got {model!r})")

    def new_format(stream_id: str) -> EventFormat:
        return make_format(format, event=event or None, stream_id=stream_id, model=model)

    new_format("")  # checks the name before anything starts
    _check_retry(retry)
    if keepalive is not None:
        keepalive = _check_seconds("keepalive", keepalive, allow_zero=False)
    if (
        isinstance(estimated_tokens, bool)
        or not isinstance(estimated_tokens, int)
        or estimated_tokens < 0
    ):
        raise ConfigError(f"'estimated_tokens' must be an int >= 0 (got {estimated_tokens!r})")
    if replay is not None and not isinstance(replay, SSEReplay):
        raise TypeError(f"replay must be an SSEReplay, not {type(replay).__name__}")
    opening = _OPENING if retry is None else f"retry: {retry}\n".encode("ascii") + _OPENING

    if last_event_id:
        if not _is_factory(chunks):
            close_quietly(chunks)
        resumed = _resume(str(last_event_id), replay, keepalive, opening, owner, new_format(""))
        resumed._peer = _client_socket(environ)
        return resumed

    source: Any = chunks() if _is_factory(chunks) else chunks  # type: ignore[operator]
    if isinstance(source, ChunkStream) and stop is None:
        stream = source
    else:
        check_source(source, "the chunks")
        stream = ChunkAggregator().aggregate_chunks(source, stop=stop)[0]
    feed = _Feed(
        stream,
        event=event or None,
        progress=progress,
        estimated_tokens=estimated_tokens,
        expose_errors=expose_errors,
        fmt=new_format(secrets.token_hex(8)),
    )
    body = SSEBody(feed, keepalive, opening)
    body._peer = _client_socket(environ)
    if replay is not None:
        try:
            entry = replay._register(feed, body._token, owner)
        except BaseException:
            stream.close()
            raise
        feed.fmt = body._fmt = new_format(entry.key)  # its ids name the stream
        body._attach(replay, entry, 0)
    return body


def _resume(
    last_event_id: str,
    replay: Optional[SSEReplay],
    keepalive: Optional[float],
    opening: bytes,
    owner: Any,
    fmt: EventFormat,
) -> SSEBody:
    try:
        if replay is None:
            raise _ResumeError(
                _UNKNOWN, "Cannot resume: this server keeps no events for this stream."
            )
        body = SSEBody(None, keepalive, opening)
        entry, seq = replay._attach(last_event_id, body._token, owner)
    except _ResumeError as exc:
        error = _notice_bytes(fmt, exc.code, exc.message)
        return SSEBody(None, keepalive, opening, [error], fmt=fmt)
    except _Finished:
        return SSEBody(None, keepalive, opening, status=204, fmt=fmt)
    body._attach(replay, entry, seq)
    body._fmt = entry.feed.fmt
    return body


def stream_chunks_to_sse(
    out: _Writable,
    chunks: Union[Iterable[Any], Callable[[], Iterable[Any]]],
    stop: Optional[threading.Event] = None,
    **options: Any,
) -> bool:
    """Write the event stream of ``chunks`` to ``out`` (push style, for non-WSGI servers).

    Each piece of :func:`sse_stream` is written whole and flushed. Writing ends at the
    end of the stream, when ``stop`` is set, or when ``out`` fails with a
    ``ConnectionError`` (the client left); the stream and its source are closed in
    every case.

    Args:
        out: a binary writable (``write``, optional ``flush``).
        chunks: as for :func:`sse_stream`.
        stop: a ``threading.Event`` that stops the stream.
        **options: more :func:`sse_stream` options (``keepalive``, ``progress``...).

    Returns:
        True when the stream's last event (``done`` or ``error``) was written, False
        when it was stopped or the client left.
    """
    writer = SSEWriter(out)
    body = sse_stream(chunks, stop=stop, **options)
    try:
        for data in body:
            writer.write_raw(data)
    except ConnectionError:
        return False
    finally:
        body.close()
    return body.outcome in ("done", "error")
