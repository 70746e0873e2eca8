"""The interface between an event stream's body and the registry that keeps streams
for resuming (in memory: :class:`~helixstream.SSEReplay`; in Redis:
:class:`~helixstream.RedisReplay`), and the producer they share.

- :class:`Feed` turns a :class:`ChunkStream` into encoded events and hands each batch
  to its :class:`Sink` (a log) before anyone sends it.
- A :class:`Reader` is one connection's view of a stream: ``read(keepalive)`` returns
  the bytes of the next events, :data:`KEEPALIVE` after ``keepalive`` seconds of
  silence, or None at the end; ``close()`` says the connection ended. The body
  (:class:`~helixstream.SSEBody`) knows nothing else of a stream.
- A :class:`Registry` opens new streams (``open``) and resumes them (``resume``), and
  may ``cancel`` one or ``close`` all.

Nothing here reaches into another class's private parts: these names are the whole
contract.
"""
from __future__ import annotations

import abc
import math
import os
import threading
import time
from typing import Any, Callable, List, Optional, Protocol, Tuple

from .._aggregate import folder_of
from .._engine import ChunkStream, give_texts, set_lookahead
from .._engine import stop as _stop
from .._errors import ConfigError
from .._formats import EventFormat, Events
from .._tokens import estimate_tokens
from ._encoding import check_event_name, encode_event, error_payload, new_error_id

#: an SSE feed joins its stream's texts every _FOLD events (see AggregateStage.fold)
_FOLD = 64

#: A keep-alive comment: what a reader returns after ``keepalive`` seconds of silence.
KEEPALIVE = b": keep-alive\n"

#: Resume error codes (the ``code`` of the ``error`` event a resume gets).
UNKNOWN = "unknown_event_id"
EXPIRED = "events_expired"

#: A ``Last-Event-ID``'s number longer than this is not one we issued (and ``int()``
#: refuses 4,301 digits): the id is unknown.
MAX_SEQ_DIGITS = 18

#: ``cancel(..., owner=...)`` not given: no owner check.
ANY_OWNER: Any = object()


class ResumeError(Exception):
    """A resume that cannot be served: the client gets an ``error`` event ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Finished(Exception):
    """A resume of a stream that has ended and whose every event the client has
    (answered with 204 No Content)."""


def unknown_id(message: str = "Cannot resume: this event id is unknown, or its stream has expired.") -> ResumeError:
    return ResumeError(UNKNOWN, message)


def parse_event_id(last_event_id: str) -> Tuple[str, int]:
    """``"<key>.<n>"`` as ``(key, n)``, reading at most :data:`MAX_SEQ_DIGITS` ASCII
    digits (a client's header is never handed to ``int()`` unbounded).

    Raises:
        ResumeError: ``unknown_event_id`` for anything else.
    """
    key, _, number = last_event_id.rpartition(".")
    if (
        not key
        or not 0 < len(number) <= MAX_SEQ_DIGITS
        or not number.isascii()
        or not number.isdigit()
    ):
        raise unknown_id()
    return key, int(number)


# --- argument checks shared by the registries ---------------------------------------------
def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name!r} must be an int >= 1 (got {value!r})")
    return value


def check_seconds(name: str, value: Any, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name!r} must be a finite number of seconds (got {value!r})")
    if value < 0 or (value == 0 and not allow_zero):
        limit = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name!r} must be {limit} (got {value!r})")
    return float(value)


def check_clock(clock: Any) -> None:
    if not callable(clock):
        raise ConfigError(f"'clock' must be a callable returning seconds (got {clock!r})")


def check_owner(owner: Any) -> None:
    if owner is not None and (isinstance(owner, bool) or not isinstance(owner, (str, int))):
        raise TypeError(
            f"owner must be a str or an int (a session or user id) or None, "
            f"not {type(owner).__name__}"
        )


def same_owner(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


def check_lookahead(value: Any) -> Optional[int]:
    if value is None:
        return None
    return check_positive_int("detached_lookahead", value)


# --- the contract ---------------------------------------------------------------------------
class Sink(Protocol):
    """Where a :class:`Feed` records its encoded events, before they are sent.

    A sink that also has ``append(number, bytes)`` (as :class:`EventLog` has) is given
    a chunk's one event with it, without a list around it."""

    def extend(self, events: List[Tuple[int, bytes]]) -> None:
        """Record events ``(number, bytes)``, numbered on from the last one."""

    def end(self) -> None:
        """The stream sent its last event."""


class Reader(Protocol):
    """One connection's view of a stream: all an :class:`~helixstream.SSEBody` uses."""

    @property
    def key(self) -> Optional[str]:
        """The stream's key in its registry (None without one)."""

    @property
    def fmt(self) -> EventFormat:
        """How the stream's events are written (for notices without an id)."""

    @property
    def stream(self) -> Optional[ChunkStream]:
        """The stream's :class:`ChunkStream`, where this process has it."""

    @property
    def outcome(self) -> Optional[str]:
        """``"done"``, ``"error"``, ``"cancelled"``, or None while it runs."""

    def read(self, keepalive: Optional[float]) -> Optional[bytes]:
        """The bytes of the next events; :data:`KEEPALIVE` when nothing came within
        ``keepalive`` seconds (None: wait as long as it takes); None at the end."""

    def close(self) -> None:
        """The connection ended (the client left, or the response is over): idempotent,
        from any thread."""


class Registry(abc.ABC):
    """Keeps event streams so that a reconnecting client can resume them; what
    :func:`~helixstream.sse_stream` takes as ``replay``. Subclasses call
    ``super().__init__()``."""

    def __init__(self) -> None:
        self._watch_lock = threading.Lock()
        self._unwatch_close: Optional[Callable[[], None]] = None
        self._closer: Optional[Tuple[int, int]] = None  # (pid, thread) of the first close()
        self._close_done = threading.Event()  # ... which has finished

    @abc.abstractmethod
    def open(self, feed: "Feed", owner: Any, make_fmt: Callable[[str], EventFormat]) -> Reader:
        """A new stream: choose its key, ``feed.bind(key, make_fmt(key), sink)``, and
        return the reader of the connection that started it.

        Raises:
            RuntimeError: the registry is closed.
        """

    @abc.abstractmethod
    def resume(self, last_event_id: str, owner: Any, make_fmt: Callable[[str], EventFormat]) -> Reader:
        """The reader of a reconnection after event ``last_event_id``.

        Raises:
            ResumeError: the id is unknown, of another owner, or its events are gone.
            Finished: the stream ended and the client has every event.
        """

    @abc.abstractmethod
    def cancel(self, stream_id: str, *, owner: Any = ANY_OWNER) -> bool:
        """Stop a running stream and close its source; True if one was stopped."""

    def close(self) -> None:
        """Shut the registry down (a server's shutdown hook, or :meth:`close_on` a
        signal): every running stream ends, its readers get an ``error`` event
        ``shutdown`` without an id (a browser resumes elsewhere with the id of the last
        event it got), and every source is closed.

        Safe to call more than once, from any thread. A call made while another is
        under way returns once that one has finished (see :meth:`_begin_close`)."""
        if not self._begin_close():
            return
        try:
            self._shut_down()
        finally:
            self._close_done.set()

    @abc.abstractmethod
    def _shut_down(self) -> None:
        """What :meth:`close` does, once."""

    def close_on(self, event: threading.Event) -> None:
        """Close this registry when ``event`` is set: by any thread, any way, or by a
        signal handler (a server's SIGTERM). Setting it only wakes helixstream's
        janitor thread, which starts :meth:`close` in a thread of its own, so a signal
        handler never runs the shutdown itself. If ``event`` is set already, the close
        starts at once. A second call replaces the first event.

        Raises:
            TypeError: ``event`` is not a ``threading.Event``.
        """
        _stop.check_stop(event, "event")
        with self._watch_lock:
            if self._unwatch_close is None:
                _stop.hold()  # the janitor lives while the registry listens
            else:
                self._unwatch_close()
            self._unwatch_close = _stop.watch(event, self._start_closing)

    def _start_closing(self) -> None:
        """In the janitor: the close runs in a thread of its own (it closes sources)."""
        threading.Thread(target=self.close, name="helixstream-sse-shutdown", daemon=True).start()

    def _begin_close(self) -> bool:
        """:meth:`close` starts with this: True for the first call, which shuts the
        registry down. Any other call waits until that one has finished (every source closed),
        then gets False: gunicorn's ``worker_exit`` must not let the process exit while
        the close started by a signal is still closing sources.

        Calls that do not wait: from the closing thread itself (a callback of the
        shutdown), and from helixstream's own threads (a source read in a stream's pump
        thread may call ``close()``; the first close may be waiting for that very
        thread). A stream's reader calling it from inside its source waits until the
        first close has given up waiting for that reader (``_STOP_WAIT``). In a child
        process after a fork, a close of the parent's counts for nothing."""
        self._closing()
        me = (os.getpid(), threading.get_ident())
        with self._watch_lock:
            closer = self._closer
            if closer is None or closer[0] != me[0]:
                self._closer = me
                self._close_done = threading.Event()
                return True
        if closer != me and not threading.current_thread().name.startswith("helixstream-"):
            self._close_done.wait()
        return False

    def _closing(self) -> None:
        """Stop listening for :meth:`close_on`'s event (``close`` calls it)."""
        with self._watch_lock:
            unwatch, self._unwatch_close = self._unwatch_close, None
        if unwatch is not None:
            unwatch()
            _stop.let_go()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the producer: a ChunkStream turned into events ------------------------------------------
class Feed:
    """Turns the chunks of a :class:`ChunkStream` into encoded events.

    One reader at a time calls :meth:`pull` (the body, or with a registry whoever holds
    the stream's pull lock); :meth:`cancel` may be called from any thread.
    """

    __slots__ = (
        "fmt", "_begun", "stream", "progress", "estimated_tokens", "expose_errors", "sink",
        "prefix", "seq", "tokens", "ended", "outcome", "shutdown", "_cancelled",
        "_recorded", "_count", "_names", "_plain", "_append", "_id_len", "_fold",
    )

    def __init__(
        self,
        stream: ChunkStream,
        *,
        progress: bool,
        estimated_tokens: int,
        expose_errors: bool,
        fmt: EventFormat,
    ) -> None:
        #: how the events are written (``format=`` of :func:`sse_stream`)
        self.fmt = fmt
        self._begun = False
        #: None once the stream has ended, with a sink: a finished stream's log is kept
        #: for ``ttl``, its stream and source are not
        self.stream: Optional[ChunkStream] = stream
        self.progress = progress
        self.estimated_tokens = estimated_tokens
        self.expose_errors = expose_errors
        self.sink: Optional[Sink] = None
        self.prefix = ""
        self.seq = 0
        self.tokens = 0
        self.ended = False
        self.outcome: Optional[str] = None  # "done", "error" or "cancelled"
        self.shutdown = False  # stopped by a registry's close(): readers get "shutdown"
        self._cancelled = False
        self._recorded: List[Tuple[int, bytes]] = []
        # count tokens chunk by chunk only when progress events need the running count
        # or the stream's aggregate cannot give the total at the end
        self._count = progress or not _has_token_total(stream)
        self._names: List[str] = []  # event names already checked (a few: a list)
        self._plain = _plain_text(fmt, progress)
        self._append: Optional[Callable[..., None]] = None
        self._id_len = 0  # see bind()
        give_texts(stream)  # a text chunk comes as its str: no StreamChunk per event
        # the stream's aggregate, if it keeps only the text (one sse_stream made), has
        # its texts joined every _FOLD events: a byte a character, not a str a chunk
        self._fold = folder_of(stream)

    def bind(self, key: str, fmt: EventFormat, sink: Optional[Sink]) -> None:
        """Number the events ``"<key>.<n>"``, write them with ``fmt``, record them in
        ``sink``. Before the first :meth:`pull`."""
        self.prefix = key + "."
        self.fmt = fmt
        self.sink = sink
        # a sink that takes one event at a time (EventLog.append) is given them so
        self._append = getattr(sink, "append", None)
        # a log that keeps events without their id line (EventLog(id_prefix=) with this
        # prefix) is told its length, b"id: <key>.<n>\n\n", instead of looking for it
        self._id_len = (
            6 + len(self.prefix.encode("utf-8"))
            if getattr(sink, "id_prefix", None) == self.prefix
            else 0
        )
        self._plain = _plain_text(fmt, self.progress)

    def set_lookahead(self, chunks: Optional[int]) -> None:
        """Let the source run at most ``chunks`` chunks ahead of the reader (None: as
        far as the stream's own queue allows)."""
        stream = self.stream
        if stream is not None:
            set_lookahead(stream, chunks)

    # --- producing --------------------------------------------------------------------------
    def _emit_all(self, out: List[bytes], events: Events) -> None:
        if not self._begun:
            self._begun = True
            for event, data in self.fmt.begin():
                self._emit(out, event, data)
        for event, data in events:
            self._emit(out, event, data)

    def _emit(self, out: List[bytes], event: Optional[str], data: str) -> None:
        seq = self.seq + 1
        if event is not None and event not in self._names:
            check_event_name(event)  # once per name: a format's names are fixed
            self._names.append(event)
        encoded = encode_event(event, data, self.prefix + str(seq))
        self.seq = seq  # only once encoded: ids have no gaps
        if not seq % _FOLD and self._fold is not None:
            self._fold()
        if self.sink is not None:
            self._recorded.append((seq, encoded))
        out.append(encoded)

    def _record(self) -> None:
        """Hand the events made since the last call to the sink, in one batch."""
        if self._recorded:
            recorded, self._recorded = self._recorded, []
            assert self.sink is not None
            self.sink.extend(recorded)

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

    def _end(self, outcome: str) -> None:
        self._record()
        self.ended = True
        self.outcome = outcome
        if self.sink is not None:
            self.sink.end()
            # release the stream, its source and its aggregate (the log stays)
            self.stream = None
            self._fold = None

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
                    # a StreamChunk, or a text chunk's str (give_texts)
                    chunk: Any = next(stream)
                else:
                    chunk = stream._next_by(deadline)  # noqa: SLF001 - the engine's own
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
            if chunk.__class__ is str:  # text only (give_texts)
                text: str = chunk
                if self._count and text:
                    self.tokens += estimate_tokens(text)
            else:
                text = chunk.content
                if self._count:
                    if chunk.tokens is not None:
                        self.tokens += chunk.tokens
                    elif text:
                        self.tokens += estimate_tokens(text)
            if not text:
                continue  # a chunk with no text (usage, metadata): no event
            out = []
            try:
                if self._plain:  # helixstream's own format, no progress events
                    event, data = self.fmt.event, text
                    events = None
                else:
                    events = self.fmt.text(text)
                    if self.progress:
                        events += self.fmt.progress(self.tokens, self.estimated_tokens)
                    if len(events) == 1 and self._begun:
                        event, data = events[0]
                        events = None
                if events is None:
                    # the usual event, in line: one per chunk, straight to the sink
                    if event is not None and event not in self._names:
                        check_event_name(event)
                        self._names.append(event)
                    seq = self.seq + 1
                    if "\n" in data or "\r" in data or event is not None:
                        encoded = encode_event(event, data, self.prefix + str(seq))
                        id_len = 0
                    else:  # encode_event's usual case, in line
                        number = str(seq)
                        encoded = f"data: {data}\nid: {self.prefix}{number}\n\n".encode()
                        id_len = self._id_len and self._id_len + len(number)
                    self.seq = seq  # only once encoded: ids have no gaps
                    if not seq % _FOLD and self._fold is not None:
                        self._fold()
                    out.append(encoded)
                    if self._append is not None:
                        if id_len:  # "data: <text>\n" and the id line, as the log expects
                            self._append(seq, encoded, id_len, True)
                        else:
                            self._append(seq, encoded)
                    elif self.sink is not None:
                        self.sink.extend([(seq, encoded)])
                    return out
                self._emit_all(out, events)
            except ValueError as exc:  # text that cannot be encoded (a lone surrogate)
                stream.close()
                return self._fail(exc, out)
            self._record()
            return out

    def _fail(self, exc: BaseException, out: Optional[List[bytes]] = None) -> List[bytes]:
        out = out if out is not None else []
        stream = self.stream
        payload = error_payload(
            exc, new_error_id(), self.expose_errors, stream_id=None if stream is None else stream.id
        )
        self._emit_all(out, self.fmt.failure(payload))
        self._end("error")
        return out

    @property
    def cancel_requested(self) -> bool:
        """:meth:`cancel` was called."""
        return self._cancelled

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


def _has_token_total(stream: ChunkStream) -> bool:
    try:
        int(stream.get_result().total_tokens)
    except (TypeError, AttributeError, ValueError):
        return False
    return True


class LiveReader:
    """The reader of a stream kept by no registry: the feed, pulled directly."""

    key: Optional[str] = None

    def __init__(self, feed: Feed) -> None:
        self._feed = feed

    @property
    def fmt(self) -> EventFormat:
        return self._feed.fmt

    @property
    def stream(self) -> Optional[ChunkStream]:
        return self._feed.stream

    @property
    def outcome(self) -> Optional[str]:
        return self._feed.outcome

    def read(self, keepalive: Optional[float]) -> Optional[bytes]:
        events = self._feed.pull(keepalive)
        if events is None:
            return KEEPALIVE
        return b"".join(events) if events else None

    def close(self) -> None:
        if not self._feed.ended:
            self._feed.cancel()


def _plain_text(fmt: EventFormat, progress: bool) -> bool:
    """Whether a chunk's one event is ``(fmt.event, text)`` and nothing comes before the
    first: helixstream's own format as it is (not a subclass's), without progress."""
    kind = type(fmt)
    return (
        not progress
        and kind.text is EventFormat.text
        and kind.begin is EventFormat.begin
    )
