"""Server-Sent Events: spec-exact encoding, and event streams for WSGI apps.

The package: :mod:`._encoding` (the format, :class:`SSEWriter`), :mod:`._parsing` (the
line splitting and field rules, shared with ``from_sse``), :mod:`._registry` (the
contract between a body and a registry, and the producer :class:`Feed`),
:mod:`._replay` (:class:`SSEReplay`, in memory) and :mod:`._body` (:class:`SSEBody`,
:func:`sse_stream`).

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

from ._body import SSEBody, sse_stream, stream_chunks_to_sse
from ._encoding import DONE_DATA, SSE_HEADERS, SSEWriter, format_sse_comment, format_sse_event
from ._redis_replay import RedisReplay
from ._registry import Registry
from ._replay import EventLog, SSEReplay

__all__ = [
    "DONE_DATA",
    "SSE_HEADERS",
    "EventLog",
    "RedisReplay",
    "Registry",
    "SSEBody",
    "SSEReplay",
    "SSEWriter",
    "format_sse_comment",
    "format_sse_event",
    "sse_stream",
    "stream_chunks_to_sse",
]
