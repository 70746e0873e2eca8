"""Resumable event streams shared by every process and host: :class:`RedisReplay`.

A drop-in for :class:`~helixstream.SSEReplay` that keeps streams in Redis (the keys:
:mod:`._redis_store`), so that a client's reconnect may land on any worker::

    process A (owner)                     Redis                       process B
    ─────────────────                     ─────                       ─────────
    first request ─▶ feed ─pull─▶ client
                     │  └─queue─▶ writer ─XADD─▶ s:<key>:ev ─XRANGE/XREAD─▶ resume ─▶ client
                     ▲                    p:<A>   (heartbeat)  ◀─EXISTS─┘
                     └ driver (while detached and followed)
    listener ◀──────────── PUBLISH "cancel <key>" ─────────────── cancel(key)

- The process that starts a stream owns it: it alone pulls the source (its own
  connection's reader does, and while that connection is gone the registry's one
  driver thread does, for as long as a client reads the stream somewhere). The events
  go to Redis through the registry's writer (the driver thread, one connection: a
  stream's writes stay in order), which sends what every stream queued in one write
  every few milliseconds; a stream's end is written at once. Every
  resume, in any process (the owner's too), is a *follower*: it replays the events
  after the client's id from Redis and follows the live ones with ``XREAD BLOCK``
  until the end marker.
- Each process refreshes a heartbeat; a follower checks its stream's owner every half
  heartbeat and, when the owner died (``kill -9``), sends ``producer_lost``: within two
  heartbeats of the death.
- A follower refreshes its stream's lease; an owner whose own connection left and that
  sees no lease for ``grace`` seconds cancels the stream (and closes its source).
  Until a client is back, the source runs at most ``detached_lookahead`` chunks ahead.
- ``cancel(key)`` in any process publishes on one channel; each process has one
  listener thread that stops the streams it owns.

Threads: two per registry and process (the driver, writer and scheduler, and the
pub/sub listener), started with its first stream and ended by :meth:`RedisReplay.close`;
none per stream.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Type

from ._redis_store import (
    Entry,
    RedisStore,
    key_epoch,
    make_client,
    new_key,
    owner_digest,
    redis_errors,
)
from ._redis_store import parse_event_id as _parse
from .._engine import ChunkStream
from .._errors import ConfigError
from .._formats import EventFormat
from ._encoding import SHUTDOWN_MESSAGE, notice_bytes
from ._registry import (
    ANY_OWNER,
    EXPIRED,
    UNKNOWN,
    KEEPALIVE,
    Feed,
    Finished,
    Reader,
    Registry,
    ResumeError,
    check_clock,
    check_lookahead,
    check_owner,
    check_positive_int,
    check_seconds,
    same_owner,
    unknown_id,
)

__all__ = ["RedisReplay", "PRODUCER_LOST", "UNAVAILABLE"]

_log = logging.getLogger("helixstream.sse")


class _Unconfirmed(Exception):
    """Redis did not confirm the listener's SUBSCRIBE in time (it subscribes again)."""

#: The error code of a follower whose stream's producer died.
PRODUCER_LOST = "producer_lost"
#: The error code of a resume or a follower when Redis cannot be reached.
UNAVAILABLE = "unavailable"

_LOST_MESSAGE = "The process generating this stream stopped before its end."
_GONE_MESSAGE = "Cannot resume: the events of this stream were lost by the stream store."
_UNAVAILABLE_MESSAGE = "The stream store cannot be reached."
def _is_response_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "ResponseError" or any(
        c.__name__ == "ResponseError" for c in type(exc).__mro__
    )


#: Entries read per round trip by a follower.
_BATCH = 256
#: Pulls the driver makes of one stream before it turns to the next.
_DRIVE_BURST = 32
#: How long the writer lets writes gather before it sends them (seconds), and how many
#: may wait at most (beyond it, a stream stops writing: Redis is not keeping up).
_WRITE_EVERY = 0.005
_MAX_QUEUED = 100_000
#: How long the driver waits on one stream's next chunk (it also paces the driver's
#: loop over the streams it pulls).
_DRIVE_WAIT = 0.001


class _Owned:
    """A stream this process generates."""

    __slots__ = (
        "key", "feed", "owner", "lock", "attached", "detached_at", "seen_at", "driven",
        "broken", "lost_written", "touched_at", "followers", "last", "pending", "sink",
        "heads",
    )

    def __init__(self, key: str, feed: Feed, owner: Any, now: float) -> None:
        self.key = key
        self.feed = feed
        self.owner = owner
        self.lock = threading.Lock()  # held by whoever pulls the feed
        self.attached = True  # the connection that started it still reads it
        self.detached_at = now
        self.seen_at = now  # when a client was last known to read it somewhere
        self.driven = False  # the driver pulls it (detached, and followed)
        self.broken = False  # a write to Redis failed: Redis no longer gets its events
        self.lost_written = False
        self.touched_at = now
        self.followers = 0  # followers in this process
        self.last = 0  # the number of its last event
        self.pending: List[bytes] = []  # events made by a stop, for the own connection
        self.sink: Optional["_Sink"] = None
        self.heads: List[bytes] = []  # its XADD commands' common part (RedisStore.encode)


class _Sink:
    """Records a feed's events in Redis. Whoever pulls the feed holds its lock and
    calls :meth:`flush` before it hands the events on: the events are queued for the
    registry's writer (one thread, one connection, so a stream's writes stay in order),
    which sends what every stream queued in one write every 5 ms (``_WRITE_EVERY``). The
    puller does not wait for Redis: not even at the stream's end, whose last events go to
    the owner's client at once; the owner's response ends once the end is written (see
    :meth:`_OwnerReader.read`), so a resume right after it finds the stream ended."""

    __slots__ = ("_registry", "_owned", "_buffer")

    def __init__(self, registry: "RedisReplay", owned: _Owned) -> None:
        self._registry = registry
        self._owned = owned
        self._buffer: List[Tuple[int, bytes]] = []

    def extend(self, events: List[Tuple[int, bytes]]) -> None:
        if events:
            self._buffer.extend(events)

    def end(self) -> None:
        self.flush(end="shutdown" if self._owned.feed.shutdown else (self._owned.feed.outcome or "done"))

    def flush(self, end: Optional[str] = None) -> None:
        owned = self._owned
        events, self._buffer = self._buffer, []
        if not owned.broken and (events or end is not None):
            self._registry._enqueue(owned, events, end)
        if events:
            owned.last = events[-1][0]


class _OwnerReader:
    """The connection that started a stream: it pulls the feed itself."""

    def __init__(self, registry: "RedisReplay", owned: _Owned) -> None:
        self._registry = registry
        self._owned = owned
        self._closed = False
        self._notified = False
        self._end_written = False

    @property
    def key(self) -> Optional[str]:
        return self._owned.key

    @property
    def fmt(self) -> EventFormat:
        return self._owned.feed.fmt

    @property
    def stream(self) -> Optional[ChunkStream]:
        return self._owned.feed.stream

    @property
    def outcome(self) -> Optional[str]:
        return self._owned.feed.outcome

    def read(self, keepalive: Optional[float]) -> Optional[bytes]:
        if self._closed:
            return None
        owned = self._owned
        feed = owned.feed
        if keepalive is None:
            owned.lock.acquire()
        elif not owned.lock.acquire(True, keepalive):  # positional: no keyword parsing
            return KEEPALIVE
        try:
            if owned.pending:
                events: Optional[List[bytes]] = owned.pending
                owned.pending = []
            else:
                # one chunk per read, as SSEReplay: the writes to Redis are batched by
                # the writer. (Extra pulls of 0.5 ms to batch chunks that came at once
                # cost a wake-up per event whenever the process was behind, and so
                # deepened a backlog: 1,000 streams over 2 processes, p99 1.3 s.)
                events = feed.pull(keepalive)
            _flush(owned)
        finally:
            owned.lock.release()
        if events is None:
            return KEEPALIVE
        if events:
            return b"".join(events)
        if feed.shutdown and not self._notified:  # no id: the client resumes elsewhere
            self._notified = True
            return notice_bytes(feed.fmt, "shutdown", SHUTDOWN_MESSAGE)
        if not self._end_written:
            # the client has every event; its response ends once the stream's end is in
            # Redis, so that a resume right after it finds the stream ended (a stalled
            # Redis holds up the end of the response, never an event)
            self._end_written = True
            self._registry._flush_writes()
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._registry._detach(self._owned)


class _Follower:
    """A resumed connection, in any process: reads the stream from Redis."""

    def __init__(
        self, registry: "RedisReplay", key: str, seq: int, fmt: EventFormat, proc: str
    ) -> None:
        self._registry = registry
        self._key = key
        self._seq = seq
        self._fmt = fmt
        self._proc = proc
        self._out: List[bytes] = []
        self._ended = False  # no more reads: what is in _out is the last
        self._outcome: Optional[str] = None
        self._closed = False
        self.shutdown = False  # the registry closed: send "shutdown" and end
        self._last = time.monotonic()
        self._check_at = self._last  # the owner may be dead already: look at once

    @property
    def key(self) -> Optional[str]:
        return self._key

    @property
    def fmt(self) -> EventFormat:
        return self._fmt

    @property
    def stream(self) -> Optional[ChunkStream]:
        return None

    @property
    def outcome(self) -> Optional[str]:
        return self._outcome

    def _notice(self, code: str, message: str) -> None:
        self._out.append(notice_bytes(self._fmt, code, message))
        self._ended = True

    def _take(self, entries: List[Entry]) -> None:
        for seq, data, end in entries:
            if self._ended:
                return
            if end is not None:
                if end in ("done", "error", "cancelled"):
                    self._outcome = end
                    self._ended = True
                elif end == "shutdown":
                    self._outcome = "cancelled"
                    self._notice(PRODUCER_LOST, _LOST_MESSAGE)
                else:  # "lost": Redis stopped getting its events
                    self._notice(EXPIRED, _GONE_MESSAGE)
                return
            if seq != self._seq + 1:  # a gap: events were lost
                self._notice(EXPIRED, _GONE_MESSAGE)
                return
            self._out.append(data)
            self._seq = seq

    def _flush(self) -> Optional[bytes]:
        if self._out:
            out, self._out = self._out, []
            self._last = time.monotonic()
            return b"".join(out)
        return None

    def read(self, keepalive: Optional[float]) -> Optional[bytes]:
        registry = self._registry
        store = registry._store
        errors = redis_errors()
        while True:
            data = self._flush()
            if data is not None:
                return data
            if self._closed or self._ended:
                return None
            if self.shutdown:
                self._notice("shutdown", SHUTDOWN_MESSAGE)
                continue
            now = time.monotonic()
            wake = self._check_at
            if keepalive is not None:
                wake = min(wake, self._last + keepalive)
            try:
                if now < wake:
                    self._take(store.read(self._key, self._seq, _BATCH, int((wake - now) * 1000) + 1))
                    if self._out or self._ended:
                        continue
                    now = time.monotonic()
                if now >= self._check_at:
                    self._check_at = now + registry._check_every
                    epoch, alive, newest = store.alive(self._proc, self._key)
                    if epoch != key_epoch(self._key):
                        self._notice(EXPIRED, _GONE_MESSAGE)
                        continue
                    if newest is not None and newest[2] is not None and newest[0] <= self._seq:
                        # the stream ended before the client's id: it was never sent
                        self._notice(UNKNOWN, "Cannot resume: this event id was never sent.")
                        continue
                    if not alive:  # the owner died: read what it wrote before that
                        self._take(store.after(self._key, self._seq, 1_000_000))
                        if not self._ended:
                            self._notice(PRODUCER_LOST, _LOST_MESSAGE)
                        continue
            except errors:
                if self.shutdown or self._closed:
                    continue
                self._notice(UNAVAILABLE, _UNAVAILABLE_MESSAGE)
                continue
            if keepalive is not None and time.monotonic() >= self._last + keepalive:
                self._last = time.monotonic()
                return KEEPALIVE

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._registry._unfollow(self)


class RedisReplay(Registry):
    """A registry of event streams kept in Redis, so that a client may resume a stream
    on any worker process or host: a drop-in for :class:`SSEReplay`.

    Share one instance per process between all requests of an endpoint and pass it to
    :func:`sse_stream` as ``replay`` (with the request's ``Last-Event-ID``); every
    process of the deployment uses the same Redis and ``prefix``.

    Args:
        url_or_client: a Redis URL (``"redis://127.0.0.1:6379/0"``) or a
            ``redis.Redis`` client (extra ``redis``: ``pip install 'helixstream[redis]'``).
            With a client of your own, its socket timeout must exceed ``heartbeat / 2``
            (a follower blocks that long in ``XREAD``) and its pool must hold a
            connection per resumed client being served (redis-py's default is 100; a
            URL gets 10,000).
        grace: seconds a stream whose every client left stays open, waiting for a
            client to resume it (in any process); then its owner cancels it and closes
            its source.
        ttl: seconds a stream's events are kept in Redis after its end (the keys
            expire); at least 3 times ``heartbeat`` (a running stream's keys are
            refreshed at the process's heartbeats).
        max_events: events kept per stream (``XADD MAXLEN ~``: a few more may stay);
            a resume from before them gets ``events_expired``.
        detached_lookahead: while no client reads a stream, its source may run at most
            this many chunks ahead (None: as far as its queue allows).
        heartbeat: seconds between two heartbeats of a process; a client following a
            stream whose owner died gets ``producer_lost`` within two heartbeats.
        prefix: the prefix of every Redis key and of the control channel.
        timeout: seconds a Redis call may take (socket timeouts, for a URL).
        clock: the time source of ``grace`` (default ``time.monotonic``).

    Raises:
        ConfigError: a bad argument (a ``ValueError``).
        ImportError: redis-py is not installed.
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        grace: float = 10.0,
        ttl: float = 300.0,
        max_events: int = 10_000,
        detached_lookahead: Optional[int] = 16,
        heartbeat: float = 1.0,
        prefix: str = "helixstream:",
        timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.grace = check_seconds("grace", grace)
        self.ttl = check_seconds("ttl", ttl, allow_zero=False)
        self.max_events = check_positive_int("max_events", max_events)
        self.detached_lookahead = check_lookahead(detached_lookahead)
        self.heartbeat = check_seconds("heartbeat", heartbeat, allow_zero=False)
        if self.ttl < 3 * self.heartbeat:
            # a running stream's keys are kept alive at the process's ticks (every half
            # heartbeat, once a third of ttl has passed): a shorter ttl lets them expire
            # while the stream runs
            raise ConfigError(
                f"'ttl' ({ttl!r} s) must be at least 3 times 'heartbeat' ({heartbeat!r} s): "
                "running streams' keys are refreshed at heartbeats"
            )
        timeout = check_seconds("timeout", timeout, allow_zero=False)
        check_clock(clock)
        self._clock = clock
        self._check_every = self.heartbeat / 2
        self._heartbeat_ms = max(1, int(self.heartbeat * 1500))
        self._owns_client = isinstance(url_or_client, str)
        client = make_client(url_or_client, timeout, self._check_every)
        self._store = RedisStore(
            client, prefix, max_events=max_events, ttl=self.ttl, lease=self.heartbeat * 1.5
        )
        self._response_error = redis_errors()[2]
        self._closed = False
        self._process_state()

    def _process_state(self) -> None:
        """What belongs to this process: made again in a child after a fork (a
        registry made before gunicorn's ``--preload`` fork serves each worker as a
        process of its own, with its own id, heartbeat and threads)."""
        self._pid = os.getpid()
        #: this registry's id in Redis: its heartbeat, and the owner of its streams
        self.proc = new_key("")[:12]
        self._lock = threading.RLock()
        self._owned: Dict[str, _Owned] = {}
        self._followers: Set[_Follower] = set()
        self._epoch: Optional[str] = None
        self._warned = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._tick_now = False
        self._subscribed = threading.Event()
        self._threads: List[threading.Thread] = []
        self._writers: List[Any] = []  # connections for writes, taken and put back
        self._driven: Set[_Owned] = set()  # the streams the driver pulls
        # writes waiting for the writer (the driver thread): (stream, events, end, last,
        # the commands of a new stream's record)
        self._queue: List[
            Tuple[_Owned, List[Tuple[int, bytes]], Optional[str], int, Optional[List[bytes]]]
        ] = []
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._queued_at: Optional[float] = None  # when the oldest queued write came
        self._writer_idle = True

    # --- public -------------------------------------------------------------------------
    def open(self, feed: Feed, owner: Any, make_fmt: Callable[[str], EventFormat]) -> Reader:
        check_owner(owner)
        self._start()
        if self._closed:  # before any write: close() has forgotten the heartbeat
            raise RuntimeError("this RedisReplay registry is closed")
        now = self._clock()
        broken: Optional[BaseException] = None
        # read once: the heartbeat thread may learn the epoch meanwhile, and a key made
        # without it must take the slow path below (else it names no epoch)
        known = self._epoch
        key = new_key(known or "000000")
        create: Optional[List[bytes]] = None
        if known is not None:
            # the epoch is known: the stream's record goes through the writer, and the
            # opens queued meanwhile share one round trip (a thousand streams opening
            # at once each waited in the client's connection pool)
            create = self._store.encode_create(key, owner, self.proc, self._heartbeat_ms)
        else:
            try:
                epoch = self._store.create(key, owner, self.proc, self._heartbeat_ms)
                if epoch != key_epoch(key):  # first stream, or Redis lost its data
                    self._epoch = epoch
                    key = new_key(epoch)
                    self._store.create(key, owner, self.proc, self._heartbeat_ms)
            except redis_errors() as exc:
                broken = exc
        owned = _Owned(key, feed, owner, now)
        with self._lock:
            if self._closed:
                raise RuntimeError("this RedisReplay registry is closed")
            self._owned[key] = owned
        owned.sink = _Sink(self, owned)
        feed.bind(key, make_fmt(key), owned.sink)
        if broken is not None:
            self._broke(owned, broken)
        elif create is not None:
            self._enqueue(owned, [], None, create)
            # written when this returns (by this thread, or by the flush that took it
            # along): a resume or a cancel from anywhere finds the stream at once
            self._flush_writes()
        return _OwnerReader(self, owned)

    def resume(self, last_event_id: str, owner: Any, make_fmt: Callable[[str], EventFormat]) -> Reader:
        check_owner(owner)
        parsed = _parse(last_event_id)
        if parsed is None:
            raise unknown_id()
        key, seq = parsed
        self._start()
        if self._closed:
            raise RuntimeError("this RedisReplay registry is closed")
        try:
            state = self._store.state(key, seq, _BATCH)
        except redis_errors():
            raise ResumeError(UNAVAILABLE, "Cannot resume: " + _UNAVAILABLE_MESSAGE) from None
        if state.epoch != key_epoch(key):
            raise ResumeError(EXPIRED, _GONE_MESSAGE)
        if not state.meta or state.meta.get("owner") != owner_digest(owner):
            raise unknown_id()
        last = state.last
        last_event = 0 if last is None else (last[0] - 1 if last[2] is not None else last[0])
        if seq > last_event and (
            (last is not None and last[2] is not None) or seq - last_event > self.max_events
        ):
            raise unknown_id("Cannot resume: this event id was never sent.")
        # (a running stream's newest events may still be on their way to Redis: the
        # follower waits for the events after ``seq``)
        first = state.first
        if first is not None and first[0] > seq + 1:
            raise ResumeError(EXPIRED, "Cannot resume: the events after this id are no longer kept.")
        if last is not None and last[2] is not None and seq == last_event:
            if last[2] in ("done", "error", "cancelled"):
                raise Finished()
            if last[2] == "shutdown":
                raise ResumeError(PRODUCER_LOST, _LOST_MESSAGE)
            raise ResumeError(EXPIRED, _GONE_MESSAGE)
        follower = _Follower(self, key, seq, make_fmt(key), state.meta.get("proc", ""))
        follower._take(state.after)
        self._follow(follower)
        return follower

    def cancel(self, stream_id: str, *, owner: Any = ANY_OWNER) -> bool:
        """Stop the running stream ``stream_id``, in whichever process generates it.

        Returns:
            True if a running stream was stopped (its owner wrote the ``cancelled``
            event within a second, or one ``heartbeat`` if longer); False if the id is
            unknown, belongs to another owner, its stream had already ended or its
            owner is gone, or the stop is still on its way (the request stays recorded
            for the owner, which takes it at its next tick).
        """
        if not isinstance(stream_id, str):
            raise TypeError(f"stream_id must be a str, not {type(stream_id).__name__}")
        self._here()
        with self._lock:
            owned = self._owned.get(stream_id)
        if owned is not None:
            if owner is not ANY_OWNER and not same_owner(owned.owner, owner):
                return False
            if owned.feed.ended:
                return False
            self._stop(owned)
            return owned.feed.outcome == "cancelled"
        if _parse(stream_id + ".0") is None:
            return False
        store = self._store
        try:
            meta = store.client.hgetall(store.meta_key(stream_id))
            if not meta:
                return False
            record = {_str(k): _str(v) for k, v in meta.items()}
            digest = record.get("owner")
            if owner is not ANY_OWNER and digest != owner_digest(owner):
                return False
            last = store.after_last(stream_id)
            if last is not None and last[2] is not None:
                return False  # ended already
            # recorded for the owner's process too: a listener that was reconnecting
            # misses the message, and the owner takes the record at its next tick
            proc = record.get("proc", "")
            heard = store.request_cancel(stream_id, proc, "cancel " + stream_id)
            if not heard and not store.client.exists(store.proc_key(proc)):
                return False  # nobody listens and its owner is gone: nobody stops it
            seq = 0 if last is None else last[0]
            # the owner's tick comes every heartbeat / 2: wait for one, at least a second
            deadline = time.monotonic() + max(1.0, self.heartbeat)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                for s, _, end in store.read(stream_id, seq, _BATCH, int(left * 1000) + 1):
                    seq = s
                    if end is not None:
                        return end == "cancelled"
        except redis_errors():
            return False

    def _shut_down(self) -> None:
        """The streams this process generates end (their sources are closed; followers
        elsewhere get ``producer_lost``), its readers get a ``shutdown`` event, its
        threads end."""
        with self._lock:
            self._closed = True
            owned = list(self._owned.values())
            followers = list(self._followers)
        for follower in followers:
            follower.shutdown = True
        for entry in owned:
            self._stop(entry, shutdown=True)
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(5.0)
        self._flush_writes()  # the end markers (if the driver had ended already)
        try:
            self._store.forget_process(self.proc)
        except redis_errors():
            pass
        self._release_writers()
        if self._owns_client:
            self._store.client.close()

    def __repr__(self) -> str:
        return f"RedisReplay(prefix={self._store.prefix!r}, proc={self.proc!r})"

    # --- streams -------------------------------------------------------------------------
    def _connection(self) -> Any:
        """A connection for a write, from the registry's own free list (taking one
        from the client's pool costs more than a write: measured 50-60 against 20 µs)."""
        try:
            return self._writers.pop()
        except IndexError:
            return self._store.connection()

    def _give_back(self, conn: Any, broken: bool = False) -> None:
        if broken:
            self._store.release(conn, broken=True)
            return
        self._writers.append(conn)
        if self._closed:
            # a late writer (a stream's puller ending after close() stopped waiting
            # for it): close() may have emptied the list already; its sockets close now
            self._release_writers()

    def _release_writers(self) -> None:
        """After close(), from every thread that may still put one back: the free
        list's connections go back to the client's pool, closed if the client is ours
        (close() closes it; a connection put back later would stay open)."""
        while True:
            try:
                conn = self._writers.pop()
            except IndexError:
                return
            self._store.release(conn, broken=self._owns_client)

    def _write(self, key: str, events: List[Tuple[int, bytes]], end: Optional[str], last: int) -> None:
        """One write now, waiting for its replies (the scheduler's end markers)."""
        conn = self._connection()
        try:
            self._store.append(conn, key, events, end, last)
        except self._response_error:
            self._give_back(conn)  # the connection is fine: Redis refused the command
            raise
        except BaseException:
            self._give_back(conn, broken=True)
            raise
        self._give_back(conn)

    def _enqueue(
        self,
        owned: _Owned,
        events: List[Tuple[int, bytes]],
        end: Optional[str],
        raw: Optional[List[bytes]] = None,
    ) -> None:
        """Queue a stream's events for the writer (wakes it only when it is idle: the
        writes of a few milliseconds go together)."""
        with self._queue_lock:
            full = len(self._queue) >= _MAX_QUEUED
            if not full:
                if not self._queue:
                    self._queued_at = time.monotonic()
                if end is not None:
                    # a stream's end goes at once (a cancel waits for it, a resume looks
                    # for it): what is queued is taken along now
                    self._queued_at = time.monotonic() - _WRITE_EVERY
                self._queue.append((owned, events, end, owned.last, raw))
                wake, self._writer_idle = self._writer_idle or end is not None, False
        if full:
            self._broke(owned, OverflowError(f"{_MAX_QUEUED} writes are waiting for Redis"))
        elif wake:
            self._wake.set()

    def _flush_writes(self) -> bool:
        """Write what is queued, in one ``sendall``, and read the replies (in the
        driver thread, or a stream's puller at its end); False if nothing was queued.
        One flush at a time: the writes of a stream reach Redis in order."""
        with self._flush_lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        with self._queue_lock:
            batch, self._queue = self._queue, []
            self._queued_at = None
        if not batch:
            return False
        # a stream's writes of these few milliseconds go out as one (in their order)
        merged: Dict[_Owned, List[Any]] = {}
        for owned, events, end, last, raw in batch:
            same = merged.get(owned)
            if same is None:
                merged[owned] = [list(events), end, last, raw]
            else:
                same[0].extend(events)
                if end is not None:
                    same[1] = end
                if raw:  # the stream's record, queued after an early end: still first
                    same[3] = raw if not same[3] else same[3] + raw
        commands: List[bytes] = []
        streams: List[_Owned] = []
        for owned, (events, end, last, raw) in merged.items():
            if not owned.broken:
                encoded = self._store.encode(owned.key, events, end, last, owned.heads)
                if raw:  # a new stream's record, before its first events
                    encoded = raw + encoded
                commands.extend(encoded)
                streams.extend([owned] * len(encoded))
        if not commands:
            return True
        conn = None
        try:
            conn = self._connection()
            conn.send_packed_command([b"".join(commands)], check_health=False)
            failures = self._store.read_replies(conn, len(commands))
        except redis_errors() as exc:
            if conn is not None:
                self._give_back(conn, broken=True)
            for owned in set(streams):
                self._broke(owned, exc)
            return True
        self._give_back(conn)
        for owned, failure in zip(streams, failures):
            if failure is not None and not owned.broken:
                self._broke(owned, failure)
        return True

    def _broke(self, owned: _Owned, exc: BaseException) -> None:
        """Redis did not take a write: the stream goes on for its own connection only."""
        owned.broken = True
        with self._lock:
            first = not self._warned
            self._warned = True
        if first:
            _log.warning(
                "helixstream: RedisReplay cannot write to Redis (%s: %s): streams go on for "
                "their own connection, resumes get an error",
                type(exc).__name__, exc, extra={"stream_id": None},
            )
        self._wake.set()

    def _stop(self, owned: _Owned, shutdown: bool = False) -> None:
        """Cancel a stream this process owns, and record its end."""
        owned.feed.cancel(shutdown=shutdown)
        if owned.lock.acquire(timeout=1.0):  # else its puller ends it
            try:
                events = owned.feed.end_cancelled()
                _flush(owned)
                if owned.attached:  # its own connection sends them
                    owned.pending.extend(events)
            finally:
                owned.lock.release()

    def _detach(self, owned: _Owned) -> None:
        """The connection that started ``owned`` ended."""
        with self._lock:
            owned.attached = False
            owned.detached_at = owned.seen_at = self._clock()
            if owned.feed.ended:
                self._owned.pop(owned.key, None)
                return
            if self._closed:
                return
            followed = owned.followers > 0
        if self.grace == 0 and not followed:
            try:
                followed = bool(self._store.client.exists(self._store.lease_key(owned.key)))
            except redis_errors():
                followed = False
            if not followed:
                self._stop(owned)
                with self._lock:
                    self._owned.pop(owned.key, None)
                return
        with self._lock:
            # decided under the lock, as _follow does: a follower that came meanwhile
            # is not overridden (the stream would park with a reader waiting)
            self._set_driven(owned, followed or owned.followers > 0, detaching=True)
        self._tick_now = True
        self._wake.set()

    def _follow(self, follower: _Follower) -> None:
        key = follower.key
        assert key is not None
        with self._lock:
            self._followers.add(follower)
            owned = self._owned.get(key)
            if owned is not None:
                owned.followers += 1
                owned.seen_at = self._clock()
                self._set_driven(owned, not owned.attached)
        try:
            self._store.lease(key)
            if owned is None:
                self._store.publish("attach " + key)
        except redis_errors():
            pass  # the follower reports it on its first read
        self._wake.set()

    def _set_driven(self, owned: _Owned, driven: bool, detaching: bool = False) -> None:
        """Followed somewhere (the driver pulls it, its source runs freely) or not (its
        source runs at most ``detached_lookahead`` ahead). Called with the lock held;
        ``detaching``: its own connection just left, the lookahead is set either way."""
        if (detaching or owned.driven != driven) and not owned.attached:
            owned.feed.set_lookahead(None if driven else self.detached_lookahead)
        owned.driven = driven
        if driven:
            self._driven.add(owned)
        else:
            self._driven.discard(owned)

    def _unfollow(self, follower: _Follower) -> None:
        with self._lock:
            self._followers.discard(follower)
            owned = self._owned.get(follower.key or "")
            if owned is not None:
                owned.followers -= 1
                owned.seen_at = self._clock()

    def _attached(self, key: str) -> None:
        """A follower in another process: drive the stream if it is ours."""
        with self._lock:
            owned = self._owned.get(key)
            if owned is None:
                return
            owned.seen_at = self._clock()
            self._set_driven(owned, not owned.attached)
        self._wake.set()

    def _cancelled(self, key: str) -> None:
        with self._lock:
            owned = self._owned.get(key)
        # (a cancel is heard twice: by the listener and from the record at a tick)
        if owned is not None and not owned.feed.ended and not owned.feed.cancel_requested:
            self._stop(owned)

    # --- threads -------------------------------------------------------------------------
    def _here(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's threads and locks are not ours
            self._process_state()

    def _start(self) -> None:
        self._here()
        with self._lock:
            if self._threads or self._closed:
                return
            for target, name in ((self._run, "driver"), (self._listen, "listener")):
                thread = threading.Thread(
                    target=target, name=f"helixstream-redis-{name}-{self.proc}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        # a cancel published right after a stream opens must reach us
        self._subscribed.wait(2.0)

    def _listen(self) -> None:
        """The pub/sub listener: ``cancel <key>`` and ``attach <key>``."""
        errors: Tuple[Type[BaseException], ...] = (*redis_errors(), _Unconfirmed)
        pubsub: Any = None
        while not self._stopping.is_set():
            try:
                if pubsub is None:
                    pubsub = self._store.client.pubsub()
                    # subscribe() only sends SUBSCRIBE: a cancel published before Redis
                    # has processed it would be lost, so the registry counts itself
                    # subscribed (and streams open) once Redis has confirmed it
                    pubsub.subscribe(self._store.channel)
                    confirm_by = time.monotonic() + 5.0
                    while not self._stopping.is_set():
                        reply = pubsub.get_message(timeout=0.2)
                        if reply is not None and reply.get("type") == "subscribe":
                            break
                        if time.monotonic() > confirm_by:
                            raise _Unconfirmed("Redis did not confirm SUBSCRIBE within 5 s")
                    self._subscribed.set()
                    # a cancel sent while we were not subscribed is in our cancels set
                    self._tick_now = True
                    self._wake.set()
                message = pubsub.get_message(timeout=0.2)
            except errors:
                self._subscribed.set()  # nobody waits for a Redis that is not there
                if pubsub is not None:
                    _close_quietly(pubsub)
                    pubsub = None
                self._stopping.wait(0.2)
                continue
            if not message or message.get("type") != "message":
                continue
            verb, _, key = _str(message.get("data", b"")).partition(" ")
            try:
                if verb == "cancel":
                    self._cancelled(key)
                elif verb == "attach":
                    self._attached(key)
            except Exception:  # noqa: BLE001 - the listener serves every other stream
                _log.exception("helixstream: RedisReplay's listener hit an error", extra={"stream_id": None})
        if pubsub is not None:
            _close_quietly(pubsub)

    def _run(self) -> None:
        """The driver and scheduler: heartbeats, leases, grace periods; pulls the
        streams whose own connection left while a client follows them elsewhere."""
        next_tick = 0.0
        poll = 0.01
        while not self._stopping.is_set():
            now = time.monotonic()
            try:
                if now >= next_tick or self._tick_now:
                    self._tick_now = False
                    next_tick = now + self._check_every
                    self._tick()
                    next_tick = time.monotonic() + self._check_every
                queued_at = self._queued_at
                if queued_at is not None and time.monotonic() - queued_at >= _WRITE_EVERY:
                    self._flush_writes()  # what came in the last few milliseconds, at once
                moved = self._drive()
            except Exception:  # noqa: BLE001 - this thread carries the heartbeat: it goes on
                _log.exception("helixstream: RedisReplay's driver hit an error", extra={"stream_id": None})
                moved = False
            driving = bool(self._driven)
            with self._queue_lock:
                queued_at = self._queued_at
                self._writer_idle = queued_at is None
            timeout = max(0.0, next_tick - time.monotonic())
            if driving:
                timeout = 0.0 if moved else min(timeout, poll)
            if queued_at is not None:
                timeout = min(timeout, max(0.0, queued_at + _WRITE_EVERY - time.monotonic()))
            if timeout > 0:
                self._wake.wait(timeout)
            self._wake.clear()
        self._flush_writes()

    def _drive(self) -> bool:
        with self._lock:
            driven = [o for o in self._driven if not o.attached]
        moved = False
        for owned in driven:
            if not owned.lock.acquire(blocking=False):
                continue
            try:
                for _ in range(_DRIVE_BURST):
                    events = owned.feed.pull(_DRIVE_WAIT)
                    if events is None:
                        break
                    moved = True
                    if not events:
                        break
                _flush(owned)
            finally:
                owned.lock.release()
            if owned.feed.ended:
                with self._lock:
                    self._owned.pop(owned.key, None)
                    self._driven.discard(owned)
        return moved

    def _tick(self) -> None:
        now = self._clock()
        with self._lock:
            leases = sorted({f.key for f in self._followers if f.key is not None})
            detached = [o for o in self._owned.values() if not o.attached and not o.feed.ended]
            touch = [
                o.key for o in self._owned.values()
                if not o.feed.ended and not o.broken and now - o.touched_at >= self.ttl / 3
            ]
            lost = [o for o in self._owned.values() if o.broken and not o.lost_written]
        store = self._store
        try:
            epoch, present = store.heartbeat(
                self.proc, self._heartbeat_ms, leases, [o.key for o in detached]
            )
            store.touch(touch)
        except redis_errors() as exc:
            _log.debug("helixstream: RedisReplay tick failed: %s", exc)
            epoch, present = None, [False] * len(detached)
        else:
            for owned in self._owned_list():
                if owned.key in touch:
                    owned.touched_at = now
        try:
            cancels = store.take_cancels(self.proc)
        except redis_errors():
            cancels = []  # (the record stays: taken at the next tick)
        for key in cancels:  # asked while our listener was away (see cancel)
            self._cancelled(key)
        if epoch is not None and epoch != self._epoch:
            self._epoch = epoch
            for owned in self._owned_list():
                if key_epoch(owned.key) != epoch and not owned.broken:
                    owned.broken = True  # its events are gone: resumes get events_expired
                    owned.lost_written = True  # (and followers see the new epoch)
        for owned in lost:  # tell its followers, once Redis takes it
            try:
                self._write(owned.key, [], "lost", owned.last)
                owned.lost_written = True
            except redis_errors() as exc:
                if _is_response_error(exc):
                    # Redis refused it (say its end got there and only the reply was
                    # lost): retrying would never succeed, and would hold up the others
                    owned.lost_written = True
                    continue
                break  # Redis cannot be reached: try again at the next tick
        stop = []
        with self._lock:
            for owned, seen in zip(detached, present):
                if owned.followers > 0 or (seen and not owned.broken):
                    owned.seen_at = now
                    self._set_driven(owned, True)
                else:
                    self._set_driven(owned, False)
                    if now - max(owned.detached_at, owned.seen_at) >= self.grace:
                        stop.append(owned)
        for owned in stop:
            self._stop(owned)
        with self._lock:  # forget the streams that ended with nobody of ours reading
            for key in [k for k, o in self._owned.items() if o.feed.ended and not o.attached]:
                self._driven.discard(self._owned.pop(key))

    def _owned_list(self) -> List[_Owned]:
        with self._lock:
            return list(self._owned.values())


def _flush(owned: _Owned) -> None:
    if owned.sink is not None:
        owned.sink.flush()


def _str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _close_quietly(pubsub: Any) -> None:
    try:
        pubsub.close()
    except Exception:  # noqa: BLE001 - closing a broken connection
        pass
