"""The response body of an event stream (:class:`SSEBody`) and :func:`sse_stream`, which
makes one; :func:`stream_chunks_to_sse` writes one to a file-like object."""
from __future__ import annotations

import importlib
import os
import secrets
import socket
import threading
import weakref
from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple, Union

from .._aggregate import aggregate
from .._engine import ChunkStream
from .._errors import ConfigError
from .._formats import EventFormat, make_format
from .._inputs import check_source
from .._util import close_quietly
from ._encoding import SSE_HEADERS, SSEWriter, Writable, check_event_name, check_retry, notice_bytes
from ._registry import (
    KEEPALIVE,
    UNKNOWN,
    Feed,
    Finished,
    LiveReader,
    Reader,
    Registry,
    ResumeError,
    check_owner,
    check_seconds,
)

__all__ = ["SSEBody", "sse_stream", "stream_chunks_to_sse"]

_OPENING = b": connected\n"
#: The response header that carries a registry stream's key (``SSEBody.stream_id``).
_STREAM_ID_HEADER = "X-Stream-Id"


class SSEBody:
    """The response body of an event stream: an iterator of ``bytes`` with ``close()``.

    Return it from a WSGI app with its :attr:`status_line` and :attr:`headers`
    (``start_response(body.status_line, body.headers)``); the server iterates it and
    calls :meth:`close` when the response ends, however it ends. Made by
    :func:`sse_stream`.
    """

    # one per connection: slots take less than an instance dict
    __slots__ = (
        "_reader", "_fmt", "_stream", "_keepalive", "_status", "_pending", "_closed",
        "_peer", "_own_peer", "_finalizer", "__weakref__",
    )

    def __init__(
        self,
        reader: Optional[Reader],
        keepalive: Optional[float],
        opening: bytes,
        pending: Iterable[bytes] = (),
        status: int = 200,
        fmt: Optional[EventFormat] = None,
        peer: Optional[socket.socket] = None,
        own_peer: bool = False,
    ) -> None:
        self._reader = reader
        self._fmt = fmt if fmt is not None else (reader.fmt if reader is not None else EventFormat())
        self._stream = None if reader is None else reader.stream
        self._keepalive = keepalive
        self._status = status
        # what goes out before the stream's events (a list: a deque is ~600 bytes)
        self._pending: List[bytes] = [opening, *pending] if status == 200 else []
        self._closed = False
        self._peer = peer  # the client's socket, when the server exposes it
        self._own_peer = own_peer  # a duplicate of it, ours to close
        # a registry's reader must be told when the body is dropped without close()
        self._finalizer: Optional[Any] = (
            None if reader is None or reader.key is None else weakref.finalize(self, reader.close)
        )

    # --- public ------------------------------------------------------------------------
    @property
    def stream(self) -> Optional[ChunkStream]:
        """The :class:`ChunkStream` behind this body (None for an error-only body, for a
        resume of a stream that had ended, and for one served from another process)."""
        return self._stream

    @property
    def stream_id(self) -> Optional[str]:
        """The key of this stream in its registry, if any: what
        :meth:`SSEReplay.cancel` takes (also sent as the ``X-Stream-Id`` header)."""
        return None if self._reader is None else self._reader.key

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
        key = self.stream_id
        if key is not None:
            headers.append((_STREAM_ID_HEADER, key))
        return headers

    @property
    def outcome(self) -> Optional[str]:
        """How the stream ended: ``"done"``, ``"error"``, ``"cancelled"``, or None."""
        return None if self._reader is None else self._reader.outcome

    @property
    def closed(self) -> bool:
        """True once the body was closed or sent its last bytes."""
        return self._closed

    def __iter__(self) -> "SSEBody":
        return self

    def __next__(self) -> bytes:
        if self._pending:
            return self._pending.pop(0)
        reader = self._reader
        if self._closed or reader is None:
            self._closed = True
            raise StopIteration
        data = reader.read(self._keepalive)
        if data is None:
            self._closed = True
            raise StopIteration
        if data is KEEPALIVE and self._peer is not None and _peer_gone(self._peer):
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
        if self._own_peer and self._peer is not None:
            self._peer.close()  # our duplicate: the server closes the connection itself
        if self._finalizer is not None:
            self._finalizer()  # detaches from the registry, once
        elif self._reader is not None:
            self._reader.close()

    def __enter__(self) -> "SSEBody":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _client_socket(environ: Optional[Mapping[str, Any]]) -> Tuple[Optional[socket.socket], bool]:
    """The client's socket, where the WSGI server exposes it, and whether it is our
    own duplicate (to be closed with the body): gunicorn's ``gunicorn.socket`` and
    Werkzeug's ``werkzeug.socket`` are the server's; under uWSGI (``uwsgi.version`` in
    the environ), a duplicate of ``uwsgi.connection_fd()``, the request's connection,
    taken in the request's thread."""
    if not environ:
        return None, False
    for key in ("gunicorn.socket", "werkzeug.socket"):
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            return sock, False
    if "uwsgi.version" in environ:
        try:
            uwsgi = importlib.import_module("uwsgi")  # only inside a uWSGI worker
            fd = uwsgi.connection_fd()
            if isinstance(fd, int) and fd >= 0:
                return socket.socket(fileno=os.dup(fd)), True
        except (ImportError, AttributeError, OSError, ValueError, TypeError):
            pass
    return None, False


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
    replay: Optional[Registry] = None,
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
        replay: the registry that keeps this endpoint's streams for resuming: an
            :class:`SSEReplay` (this process) or a :class:`RedisReplay` (every process
            sharing a Redis); None keeps nothing (a ``last_event_id`` then gets an error event).
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
            is not a registry (:class:`SSEReplay`, :class:`RedisReplay`).
    """
    check_event_name(event)
    check_owner(owner)
    if not isinstance(model, str) or not model:
        raise ConfigError(f"'model' must be a non-empty string (got {model!r})")

    def new_format(stream_id: str) -> EventFormat:
        return make_format(format, event=event or None, stream_id=stream_id, model=model)

    new_format("")  # checks the name before anything starts
    check_retry(retry)
    if keepalive is not None:
        keepalive = check_seconds("keepalive", keepalive, allow_zero=False)
    if (
        isinstance(estimated_tokens, bool)
        or not isinstance(estimated_tokens, int)
        or estimated_tokens < 0
    ):
        raise ConfigError(f"'estimated_tokens' must be an int >= 0 (got {estimated_tokens!r})")
    if replay is not None and not isinstance(replay, Registry):
        raise TypeError(
            f"replay must be an SSEReplay or a RedisReplay, not {type(replay).__name__}"
        )
    opening = _OPENING if retry is None else f"retry: {retry}\n".encode("ascii") + _OPENING

    if last_event_id:
        if not _is_factory(chunks):
            close_quietly(chunks)
        return _resume(str(last_event_id), replay, keepalive, opening, owner, new_format, environ)

    source: Any = chunks() if _is_factory(chunks) else chunks  # type: ignore[operator]
    if isinstance(source, ChunkStream) and stop is None:
        stream = source
    else:
        check_source(source, "the chunks")
        # only the text's totals are used (the final event's token count): the texts
        # are joined as they come, not kept one by one
        stream = aggregate(source, [], stop=stop, name="aggregate", keep_chunks=False)[0]
    feed = Feed(
        stream,
        progress=progress,
        estimated_tokens=estimated_tokens,
        expose_errors=expose_errors,
        fmt=new_format(secrets.token_hex(8)),
    )
    reader: Reader
    if replay is None:
        reader = LiveReader(feed)
    else:
        try:
            reader = replay.open(feed, owner, new_format)  # its ids name the stream
        except BaseException:
            stream.close()
            raise
    return _body(reader, keepalive, opening, environ)


def _body(
    reader: Reader, keepalive: Optional[float], opening: bytes, environ: Optional[Mapping[str, Any]]
) -> SSEBody:
    peer, own = _client_socket(environ)
    return SSEBody(reader, keepalive, opening, peer=peer, own_peer=own)


def _resume(
    last_event_id: str,
    replay: Optional[Registry],
    keepalive: Optional[float],
    opening: bytes,
    owner: Any,
    new_format: Callable[[str], EventFormat],
    environ: Optional[Mapping[str, Any]],
) -> SSEBody:
    fmt = new_format("")
    try:
        if replay is None:
            raise ResumeError(UNKNOWN, "Cannot resume: this server keeps no events for this stream.")
        reader = replay.resume(last_event_id, owner, new_format)
    except ResumeError as exc:
        error = notice_bytes(fmt, exc.code, exc.message)
        return SSEBody(None, keepalive, opening, [error], fmt=fmt)
    except Finished:
        return SSEBody(None, keepalive, opening, status=204, fmt=fmt)
    return _body(reader, keepalive, opening, environ)


def stream_chunks_to_sse(
    out: Writable,
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
