"""The in-memory registry of event streams: :class:`SSEReplay` and its :class:`EventLog`.

One process keeps every stream it started; a reconnection must reach the same process
(for several workers or hosts, :class:`~helixstream.RedisReplay`). The grace periods
of detached streams are run by one scheduler thread per registry, which exists only
while a grace period is pending.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import logging
import secrets
import threading
import time
from array import array
from typing import Any, Callable, Iterable, List, Optional, Set, Tuple

from .._engine import ChunkStream
from .._formats import EventFormat
from ._encoding import SHUTDOWN_MESSAGE, notice_bytes
from ._registry import (
    ANY_OWNER,
    EXPIRED,
    KEEPALIVE,
    UNKNOWN,
    Feed,
    Finished,
    Registry,
    ResumeError,
    check_clock,
    check_lookahead,
    check_positive_int,
    check_seconds,
    parse_event_id,
    same_owner,
    unknown_id,
)

__all__ = ["EventLog", "SSEReplay"]

_log = logging.getLogger("helixstream.sse")

#: What an event in a log costs beyond its bytes as kept: its length in the log's
#: array of lengths (2 bytes; 4 once an event was longer than 32 KiB), and room for
#: the buffer's growth and the array's slack (the bytes a dropped event leaves until
#: the buffer is next reallocated). What an event kept whole in a log with ids (see
#: ``EventLog``'s ``id_prefix``) costs besides: its number in a set. What a registry's
#: finished stream costs beyond its events (the log, the producer, locks, the key):
#: about 1,400 bytes measured with tracemalloc on CPython 3.11, rounded up.
_EVENT_OVERHEAD = 4
_WHOLE_OVERHEAD = 64
_ENTRY_OVERHEAD = 2048
#: A running stream's growth is counted against ``max_bytes`` in steps of this many
#: bytes (about 30 events), so the registry's lock is not taken for every event.
_COUNT_STEP = 4096
#: The array of lengths is compacted (its dropped head removed) once the head is at
#: least this long and half of the array.
_COMPACT_AT = 64


#: How long stopping a stream waits for the reader that is pulling it (it ends the
#: stream itself when it sees the cancel); the same as RedisReplay's.
_STOP_WAIT = 1.0


def _stored(entries: Iterable[int]) -> int:
    """The bytes that entries of an EventLog's array of lengths take in its buffer."""
    return sum(entry >> 1 for entry in entries)


class EventLog:
    """The events of one stream, bounded, for replay after a reconnect.

    Events are numbered from 1 with no gaps; the log keeps the last ``max_events``.
    They are kept in one buffer, one after the other, with an array of their lengths
    (a few bytes per event beyond its own bytes, instead of an object per event). An
    event of one ``data:`` line (most of a stream's) is kept without its ``data: ``
    and its line end, which :meth:`after` writes back.
    :attr:`size_bytes` is what the kept events cost: their bytes as kept plus a few
    bytes per event.

    Args:
        max_events: how many events are kept (>= 1).
        clock: time source for :attr:`ended_at` (seconds).
        id_prefix: the events' ids are ``<id_prefix><number>`` (as
            :func:`sse_stream` writes them with a registry): an event whose bytes end
            with its own id line (``id: <id_prefix><number>`` and the empty line) is
            kept without that line, which :meth:`after` writes back. Other events are
            kept whole. None (the default): every event is kept whole.
    """

    __slots__ = (
        "max_events", "_clock", "_buf", "_lens", "_head", "_id_line", "_whole", "_lock",
        "_size", "_on_change", "_untold", "_puller_reads", "_read_upto", "last_seq",
        "ended_at", "_id_prefix", "__weakref__",
    )

    def __init__(
        self,
        max_events: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        *,
        id_prefix: Optional[str] = None,
    ):
        check_positive_int("max_events", max_events)
        check_clock(clock)
        if id_prefix is not None:
            if not isinstance(id_prefix, str):
                raise TypeError(f"id_prefix must be a str or None, not {type(id_prefix).__name__}")
            if "\r" in id_prefix or "\n" in id_prefix or "\0" in id_prefix:
                raise ValueError(f"id_prefix must not contain CR, LF or NUL (got {id_prefix!r})")
        self._id_prefix = id_prefix
        super().__init__()
        self.max_events = max_events
        self._clock = clock
        # the kept events' bytes (each without its id line where it had the expected
        # one, and without "data: " and the line's end where it is one data line),
        # oldest first; from ``_lens[_head]`` on, each one's length times two, plus one
        # where the data line was taken off (the entries before ``_head`` are dropped
        # events', removed in bulk: ``_COMPACT_AT``)
        self._buf = bytearray()
        self._lens = array("H")  # 2 bytes an entry; wider from the first longer event
        self._head = 0
        # b"id: <id_prefix>" (None: events are kept whole), and the numbers of the
        # events kept whole although the log has ids (None while there is none)
        self._id_line: Optional[bytes] = (
            None if id_prefix is None else b"id: " + id_prefix.encode("utf-8")
        )
        self._whole: Optional[Set[int]] = None
        self._lock = threading.Lock()
        self._size = 0
        # told how many bytes the log grew by (0: it ended), outside the lock (SSEReplay),
        # in steps of about _COUNT_STEP bytes: the growth not told yet is ``_untold``
        self._on_change: Optional[Callable[[int], None]] = None
        self._untold = 0
        # set by SSEReplay's reader while it pulls the stream: the events recorded then
        # are read at once (it sends what it pulled); events recorded by others (the
        # ``cancelled`` event of a cancel) are not, until a reader sends them
        self._puller_reads = False
        # the events up to this number were read by the stream's reader: only those
        # may be dropped to save memory (the others are on their way to the client)
        self._read_upto = 0
        self.last_seq = 0
        #: When the stream ended (by ``clock``), or None while it runs.
        self.ended_at: Optional[float] = None


    def extend(self, events: List[Tuple[int, bytes]]) -> None:
        """Record events ``(number, bytes)``, numbered on from the last one."""
        with self._lock:
            last = self.last_seq
            for seq, _ in events:  # all checked first: a bad batch records nothing
                if seq != last + 1:
                    raise ValueError(f"event {seq} does not follow event {last}")
                last = seq
        # (one producer: nobody else appends in between)
        for seq, data in events:
            self.append(seq, data)

    @property
    def id_prefix(self) -> Optional[str]:
        """The prefix of the events' ids (None: events are kept whole)."""
        return self._id_prefix

    def append(self, seq: int, data: bytes, id_len: int = 0, data_line: bool = False) -> None:
        """Record event ``seq`` (the next number): :meth:`extend` with one event (the
        usual call, done in one frame). ``id_len``: the caller wrote the event's id line
        as this log expects it (``id: <id_prefix><seq>`` and the blank line), last,
        in these many bytes (0: it is looked for). ``data_line``: what comes before that
        id line is ``data: ``, then the text, then a line end (what ``sse_stream`` writes
        for a chunk of one line): the log takes it so without looking."""
        with self._lock:
            if seq != self.last_seq + 1:
                raise ValueError(f"event {seq} does not follow event {self.last_seq}")
            grown = _EVENT_OVERHEAD
            id_line = self._id_line
            end = len(data)  # where what is kept ends
            if id_len and id_line is not None:
                end -= id_len  # the caller wrote the id line, last, in id_len bytes
            elif id_line is not None:
                tail = b"%b%d\n\n" % (id_line, seq)
                if data.endswith(tail):
                    end -= len(tail)
                else:
                    if self._whole is None:
                        self._whole = set()
                    self._whole.add(seq)
                    grown += _WHOLE_OVERHEAD
            if data_line or (end > 6 and data[end - 1] == 10 and data[:6] == b"data: "):
                # "data: ", then anything, then a line end (the usual event: one data
                # line): kept without them, which after() writes back
                self._buf += data[6 : end - 1]
                size = end - 7
                entry = 2 * size + 1
            else:
                self._buf += data[:end] if end < len(data) else data
                size = end
                entry = 2 * size
            lens = self._lens
            try:
                lens.append(entry)
            except OverflowError:  # an event of 32 KiB: wider entries from now on
                self._lens = lens = array("I" if entry <= 0xFFFFFFFF else "Q", lens)
                lens.append(entry)
            self.last_seq = seq
            grown += size
            if len(lens) - self._head > self.max_events:
                grown -= self._drop(len(lens) - self._head - self.max_events)
            self._size += grown
            if self._puller_reads:
                self._read_upto = seq
            grown += self._untold
            if grown < _COUNT_STEP:
                self._untold = grown
                return
            self._untold = 0
            on_change = self._on_change
        if on_change is not None:
            on_change(grown)

    def _drop(self, count: int) -> int:
        """Drop the oldest ``count`` kept events (with the lock held); return the
        bytes freed (as :attr:`size_bytes` counts them)."""
        head = self._head
        lens = self._lens
        stored = _stored(lens[head:head + count])
        freed = stored + count * _EVENT_OVERHEAD
        whole = self._whole
        if whole is not None:
            first = self.last_seq - (len(lens) - head) + 1
            for seq in range(first, first + count):
                if seq in whole:
                    whole.discard(seq)
                    freed += _WHOLE_OVERHEAD
            if not whole:
                self._whole = None
        del self._buf[:stored]  # advances the buffer's start (no copy)
        head += count
        if head >= _COMPACT_AT and 2 * head >= len(lens):
            del lens[:head]
            head = 0
        self._head = head
        return freed

    @property
    def size_bytes(self) -> int:
        """The memory the kept events take, approximately (bytes)."""
        return self._size

    def _trim(self, excess: int) -> int:
        """Drop the oldest events already read until ``excess`` bytes are freed (or no
        such event is left); return the bytes freed."""
        freed = 0
        with self._lock:
            lens = self._lens
            first = self.last_seq - (len(lens) - self._head) + 1
            while freed < excess and first <= min(self._read_upto, self.last_seq):
                freed += self._drop(1)
                first += 1
            self._size -= freed
        return freed

    def _read_from(self, seq: int) -> None:
        """A new reader resumes after ``seq``: the events after it must stay.

        Raises:
            ResumeError: as :meth:`check`.
        """
        with self._lock:
            self._start_of(seq)
            self._read_upto = seq

    def _mark_read(self, seq: int) -> None:
        """The stream's reader took the events up to ``seq`` (they may be dropped)."""
        with self._lock:
            if seq > self._read_upto:
                self._read_upto = seq

    def end(self) -> None:
        """The stream sent its last event."""
        with self._lock:
            if self.ended_at is not None:
                return
            self.ended_at = self._clock()
            untold, self._untold = self._untold, 0
            on_change = self._on_change
        if on_change is not None:
            if untold:
                on_change(untold)
            on_change(0)

    @property
    def ended(self) -> bool:
        """True once the stream sent its last event."""
        return self.ended_at is not None

    def _start_of(self, seq: int) -> int:
        # called with the lock held: how many kept events come before the one after ``seq``
        if seq < 0 or seq > self.last_seq:
            raise ResumeError(UNKNOWN, "Cannot resume: this event id was never sent.")
        first = self.last_seq - (len(self._lens) - self._head) + 1
        if seq + 1 < first:
            raise ResumeError(
                EXPIRED, "Cannot resume: the events after this id are no longer kept."
            )
        return seq + 1 - first

    def check(self, seq: int) -> None:
        """Raise ``ResumeError`` unless the events after ``seq`` can be replayed."""
        with self._lock:
            self._start_of(seq)

    def _take_after(self, seq: int) -> Tuple[int, bytes, List[int]]:
        """With the lock held: ``(number of the first event after seq, their bytes
        as kept, their lengths as kept)``; the reader may drop them from now on."""
        start = self._head + self._start_of(seq)
        lens = self._lens
        kept = lens[start:].tolist()
        buf = self._buf
        stored = _stored(kept)
        view = memoryview(buf)  # one copy of the kept bytes, not two
        try:
            data = view[len(buf) - stored:].tobytes()
        finally:
            view.release()
        # the reader takes them all: they may be dropped from now on (a superseded
        # reader's last call may move this on for its successor: that one then gets
        # ``events_expired`` if memory runs short at that very moment)
        self._read_upto = self.last_seq
        return seq + 1, data, kept

    def _rebuilt(self, first: int, data: bytes, lens: List[int], whole: Optional[Set[int]]
                 ) -> List[Tuple[int, bytes]]:
        """The events of :meth:`_take_after` as they were recorded."""
        id_line = self._id_line
        out = []
        pos = 0
        for seq, entry in enumerate(lens, first):
            size = entry >> 1
            piece = data[pos:pos + size]
            pos += size
            if entry & 1:
                piece = b"data: %b\n" % piece
            if id_line is not None and (whole is None or seq not in whole):
                piece += b"%b%d\n\n" % (id_line, seq)
            out.append((seq, piece))
        return out

    def after(self, seq: int) -> List[Tuple[int, bytes]]:
        """The ``(number, bytes)`` of the events after ``seq``, oldest first.

        Raises:
            ResumeError: ``seq`` was never sent, or events after it were dropped.
        """
        with self._lock:
            if seq == self.last_seq:
                return []
            first, data, lens = self._take_after(seq)
            whole = None if self._whole is None else set(self._whole)
        return self._rebuilt(first, data, lens, whole)

    def _read_after(self, seq: int) -> Tuple[int, bytes]:
        """``(number of the last event, the bytes of the events after seq)``: what
        :meth:`after` returns, joined (for a reader). ``(seq, b"")`` when there is none.

        Raises:
            ResumeError: as :meth:`after`.
        """
        with self._lock:
            if seq == self.last_seq:
                return seq, b""
            first, data, lens = self._take_after(seq)
            if self._id_line is None and not any(entry & 1 for entry in lens):
                return first + len(lens) - 1, data
            whole = None if self._whole is None else set(self._whole)
        return first + len(lens) - 1, b"".join(
            piece for _, piece in self._rebuilt(first, data, lens, whole)
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._lens) - self._head


class _Timers:
    """Runs callbacks at deadlines in one thread, which exists only while a callback is
    pending (so an idle registry holds no thread). Re-entrant locking: a body dropped
    without ``close()`` detaches from a garbage-collection finalizer, which may run in a
    thread that is inside this object."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition(threading.RLock())
        self._heap: List[List[Any]] = []  # [deadline, n, callback, arg, live]
        self._order = itertools.count()
        self._live = 0
        self._thread: Optional[threading.Thread] = None

    def schedule(self, delay: float, callback: Callable[[Any], None], arg: Any) -> List[Any]:
        """Call ``callback(arg)`` in ``delay`` seconds; returns a handle for :meth:`cancel`."""
        with self._cond:
            item = [time.monotonic() + delay, next(self._order), callback, arg, True]
            heapq.heappush(self._heap, item)
            self._live += 1
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread = thread
                thread.start()
            elif self._heap[0] is item:
                self._cond.notify()
            return item

    def cancel(self, item: List[Any]) -> None:
        with self._cond:
            if item[4]:
                item[4] = False
                self._live -= 1
                if self._live == 0:
                    self._cond.notify()  # nothing left: the thread ends now

    def cancel_all(self) -> None:
        with self._cond:
            for item in self._heap:
                item[4] = False
            self._live = 0
            self._cond.notify()

    @property
    def thread(self) -> Optional[threading.Thread]:
        return self._thread

    def _run(self) -> None:
        cond = self._cond
        heap = self._heap
        with cond:
            while True:
                if self._live == 0:
                    heap.clear()
                    self._thread = None
                    return
                while not heap[0][4]:
                    heapq.heappop(heap)
                wait = heap[0][0] - time.monotonic()
                if wait > 0:
                    cond.wait(wait)
                    continue
                item = heapq.heappop(heap)
                item[4] = False
                self._live -= 1
                cond.release()
                try:
                    item[2](item[3])
                except Exception:  # noqa: BLE001 - the thread serves every other timer
                    _log.exception("helixstream: a grace period's callback failed", extra={"stream_id": None})
                finally:
                    cond.acquire()


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
        "uncounted",
        "trimmed",
        "registry",
        "__weakref__",
    )

    def __init__(self, key: str, log: EventLog, feed: Feed, owner: Any) -> None:
        self.key = key
        self.log = log
        self.feed = feed
        self.owner = owner  # the session or user the stream belongs to (None: nobody)
        self.reader: Optional["_LogReader"] = None  # the connection reading the stream
        self.pull_lock = threading.RLock()  # held while a reader pulls the ChunkStream
        self.timer: Optional[List[Any]] = None  # the grace period of a detached stream
        self.stopping = False  # cancel() or close() took it
        self.counted = 0  # the bytes the registry counts for it (-1: no longer counted)
        self.uncounted = 0  # growth not yet counted (told in steps of _COUNT_STEP)
        # bytes of that growth a trim freed before it was counted (registry's lock)
        self.trimmed = 0
        self.registry: Optional["SSEReplay"] = None  # told of the log's growth: grew()

    def grew(self, grown: int) -> None:
        """The log's ``_on_change`` (a bound method: smaller than a closure)."""
        registry = self.registry
        if registry is not None:
            registry._grew(self, grown)


class _LogReader:
    """A connection reading a registry's stream: the log's events after its cursor;
    when it has them all, it pulls the stream itself (one reader at a time)."""

    __slots__ = ("_registry", "_entry", "_cursor", "_over", "__weakref__")

    def __init__(self, registry: "SSEReplay", entry: _Entry, cursor: int) -> None:
        self._registry = registry
        self._entry = entry
        self._cursor = cursor
        self._over = False  # the last bytes went out (a notice after which nothing follows)

    @property
    def key(self) -> Optional[str]:
        return self._entry.key

    @property
    def fmt(self) -> EventFormat:
        return self._entry.feed.fmt

    @property
    def stream(self) -> Optional[ChunkStream]:
        return self._entry.feed.stream

    @property
    def outcome(self) -> Optional[str]:
        return self._entry.feed.outcome

    def read(self, keepalive: Optional[float]) -> Optional[bytes]:
        entry = self._entry
        feed = entry.feed
        log = entry.log
        while True:
            if self._over or entry.reader is not self:
                return None  # ended, or another connection took the stream over
            if log.last_seq != self._cursor:  # events this reader has not sent
                try:
                    last, data = log._read_after(self._cursor)
                except ResumeError as exc:  # overtaken by a full log
                    self._over = True  # this error event is the last
                    return notice_bytes(feed.fmt, exc.code, exc.message)
                if last != self._cursor:
                    self._cursor = last
                    return data
            if log.ended_at is not None:  # (the attribute: no property call per event)
                self._over = True
                if feed.shutdown:  # SSEReplay.close(): no id, the client resumes elsewhere
                    return notice_bytes(feed.fmt, "shutdown", SHUTDOWN_MESSAGE)
                return None
            if keepalive is None:
                entry.pull_lock.acquire()
            elif not entry.pull_lock.acquire(True, keepalive):  # positional: no keyword parsing
                return KEEPALIVE
            try:
                if log.last_seq > self._cursor:
                    continue  # another reader pulled while we waited
                log._puller_reads = True  # what this pull records is sent from here
                try:
                    got = feed.pull(keepalive)
                finally:
                    log._puller_reads = False
                if got:
                    # exactly the events after the cursor: sent from here, since a
                    # small log may already have dropped some of them
                    self._cursor = log.last_seq  # (marked read by the log: _puller_reads)
                    return got[0] if len(got) == 1 else b"".join(got)
            finally:
                entry.pull_lock.release()
            if got is None:
                return KEEPALIVE

    def close(self) -> None:
        self._registry._detach(self._entry, self)


class SSEReplay(Registry):
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
            Default 64 MiB. A running stream's growth is counted in steps of 4 KiB.
        detached_lookahead: while no client reads a stream (during ``grace``), its
            source may run at most this many chunks ahead of what was sent, beyond
            what was already queued when the client left (default 16): a departed
            client costs at most that much generation. None keeps the source running
            as far as the stream's queue allows (for answers that must finish).
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
        detached_lookahead: Optional[int] = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = check_seconds("ttl", ttl)
        self.grace = check_seconds("grace", grace)
        check_positive_int("max_events", max_events)
        check_positive_int("max_streams", max_streams)
        check_positive_int("max_bytes", max_bytes)
        self.detached_lookahead = check_lookahead(detached_lookahead)
        check_clock(clock)
        super().__init__()
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
        self._timers = _Timers(f"helixstream-sse-grace-{id(self):x}")

    # --- public -----------------------------------------------------------------------
    def sweep(self) -> None:
        """Forget the logs whose ``ttl`` has passed (also done on every registry call)."""
        with self._lock:
            self._sweep_locked()

    def cancel(self, stream_id: str, *, owner: Any = ANY_OWNER) -> bool:
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
            if owner is not ANY_OWNER and not same_owner(entry.owner, owner):
                return False
            entry.stopping = True
        self._stop(entry)
        return entry.feed.outcome == "cancelled"  # not if it ended by itself meanwhile

    def _shut_down(self) -> None:
        """Every running stream is stopped (its source closed), all logs are forgotten."""
        with self._lock:
            self._closed = True
            entries = [e for e in self._entries.values() if not (e.stopping or e.feed.ended)]
            for entry in self._entries.values():
                entry.stopping = True
                entry.counted = -1
            self._entries.clear()
            self._used = 0
        self._timers.cancel_all()
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

    # --- the Registry contract (used by sse_stream) --------------------------------------
    def open(self, feed: Feed, owner: Any, make_fmt: Callable[[str], EventFormat]) -> _LogReader:
        with self._lock:
            if self._closed:
                raise RuntimeError("this SSEReplay registry is closed")
            self._sweep_locked()
            key = secrets.token_urlsafe(9)
            while key in self._entries:  # pragma: no cover - 72 random bits
                key = secrets.token_urlsafe(9)
            log = EventLog(self.max_events, self._clock, id_prefix=key + ".")
            entry = _Entry(key, log, feed, owner)
            reader = _LogReader(self, entry, 0)
            entry.reader = reader
            entry.counted = _ENTRY_OVERHEAD
            self._used += _ENTRY_OVERHEAD
            entry.registry = self
            log._on_change = entry.grew
            feed.bind(key, make_fmt(key), log)
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
        return reader

    def resume(
        self, last_event_id: str, owner: Any, make_fmt: Callable[[str], EventFormat]
    ) -> _LogReader:
        key, seq = parse_event_id(last_event_id)
        with self._lock:
            self._sweep_locked()
            entry = self._entries.get(key)
            if entry is None or not same_owner(entry.owner, owner):
                raise unknown_id()
            if entry.log.ended and seq == entry.log.last_seq:
                raise Finished()
            entry.log._read_from(seq)
            if entry.timer is not None:
                self._timers.cancel(entry.timer)
                entry.timer = None
                entry.feed.set_lookahead(None)
            reader = _LogReader(self, entry, seq)
            entry.reader = reader
            self._entries.move_to_end(key)
        return reader

    # --- internals -----------------------------------------------------------------------
    def _detach(self, entry: _Entry, reader: _LogReader) -> None:
        with self._lock:
            if entry.reader is not reader:
                return  # another connection took the stream over
            entry.reader = None
            if entry.log.ended or entry.stopping:
                return
            linger = self.grace > 0 and not self._closed and entry.key in self._entries
            if linger:
                if self.detached_lookahead is not None:
                    entry.feed.set_lookahead(self.detached_lookahead)
                entry.timer = self._timers.schedule(self.grace, self._abandon, entry)
            else:
                entry.stopping = True
        if not linger:
            self._stop(entry)

    def _abandon(self, entry: _Entry) -> None:
        """The grace period of a detached stream ran out (in the timers' thread)."""
        with self._lock:
            if entry.reader is not None or entry.timer is None or entry.stopping:
                return  # resumed or stopped in the meantime
            entry.timer = None
            entry.stopping = True
        self._stop(entry)

    def _stop(self, entry: _Entry, shutdown: bool = False) -> None:
        timer = entry.timer
        if timer is not None:
            self._timers.cancel(timer)
            entry.timer = None
        entry.feed.cancel(shutdown=shutdown)
        # the reader pulling the stream (if any) sees the cancel and ends it itself;
        # wait for it a bounded time: it may be the thread that is waiting for us (a
        # close() called from inside the source while this one runs)
        if entry.pull_lock.acquire(True, _STOP_WAIT):
            try:
                entry.feed.end_cancelled()
            finally:
                entry.pull_lock.release()

    # --- memory ------------------------------------------------------------------------
    def _grew(self, entry: _Entry, grown: int) -> None:
        """A log grew by ``grown`` bytes, or ended (0): called by the log, outside its
        lock, by the one thread that pulls the stream. The registry's lock is taken
        once per ``_COUNT_STEP`` bytes of growth (and at the end), not per event."""
        pending = entry.uncounted + grown
        if grown and pending < _COUNT_STEP:
            entry.uncounted = pending
            return
        entry.uncounted = 0
        with self._lock:
            if entry.counted < 0:
                return  # forgotten already
            pending -= entry.trimmed  # freed by a trim before they were counted
            entry.trimmed = 0
            entry.counted += pending
            self._used += pending
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
            # the log may have freed growth not counted yet: that part is settled
            # when it is counted (the count never goes below the entry's overhead)
            counted = min(freed, entry.counted - _ENTRY_OVERHEAD)
            entry.trimmed += freed - counted
            entry.counted -= counted
            self._used -= counted
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
