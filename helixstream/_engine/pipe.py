"""The one bounded queue between two threads (private).

A :class:`Pipe` moves items in batches: ``put`` appends under the lock and wakes the
reader only when it is waiting (a stream's pump appends without the lock, see
:meth:`Pipe.wake`); ``get_all`` takes everything queued at once. It is
bounded (a fast producer is held back by a slow reader), can be *ended* (the reader
gets what was put, then the end marker) and *closed* (what is queued is dropped and
every waiter wakes at once). After either, ``put`` raises :class:`PipeClosed`.

:func:`put_until_stopped` is the other side of the same idea for a caller's own
``queue.Queue``: a put that a stop signal abandons even while the queue is full.
"""
from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
from typing import Any, Callable, Deque, Iterable, List, Optional

from . import stop as _stop

__all__ = ["Pipe", "PipeClosed", "PipeFull", "put_until_stopped"]


#: A sentinel no queued item is (``iter(popleft, _NEVER)`` never stops by itself).
_NEVER = object()


class PipeClosed(Exception):
    """The pipe was ended or closed."""


class PipeFull(Exception):
    """A put found the pipe at its limit while the pipe says not to wait (see
    :meth:`Pipe.set_limit`)."""


class Pipe:
    """A bounded, closeable queue that hands items over in batches, from one producer
    to one reader."""

    __slots__ = ("maxsize", "limit", "park", "lazy", "_items", "_lock", "_not_empty", "_not_full",
                 "_ended", "_closed", "_getter_waits", "_putters")

    def __init__(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            from .._errors import ConfigError

            raise ConfigError(f"'maxsize' must be an int >= 1 (got {maxsize!r})")
        self.maxsize = maxsize
        self.limit = maxsize  # puts wait while this many items are queued
        self.park = False  # at the limit, a put raises PipeFull instead of waiting
        # a producer that waits on a full pipe is woken when the reader has taken every
        # item, not when it takes them: for a producer that never waits for its input
        # (a source in memory), which would only contend for the GIL meanwhile
        self.lazy = False
        self._items: Deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._ended = False  # no more puts; the reader drains what is there
        self._closed = False  # dropped; everyone wakes
        # the reader waits for an item and nobody has woken it yet: the first put
        # wakes it, the puts after it (until the reader runs) need not
        self._getter_waits = False
        self._putters = 0

    def put(self, item: Any) -> None:
        """Append ``item``, waiting while the pipe is full. Raises PipeClosed once the
        pipe is ended or closed."""
        self.put_many((item,))

    def put_many(self, batch: Iterable[Any]) -> None:
        """Append a batch at once (it may take the pipe past its bound)."""
        with self._lock:
            items = self._items
            if len(items) >= self.limit and not (self._ended or self._closed):
                if self.park:
                    raise PipeFull
                self._putters += 1
                try:
                    while len(items) >= self.limit and not (self._ended or self._closed):
                        if self.park:
                            raise PipeFull
                        self._not_full.wait()
                finally:
                    self._putters -= 1
            if self._ended or self._closed:
                raise PipeClosed
            items.extend(batch)
            if self._getter_waits:
                self._getter_waits = False
                self._not_empty.notify()

    def set_limit(self, limit: Optional[int], park: bool = False) -> None:
        """Let puts wait while ``limit`` items are queued (0: every put waits), or
        ``maxsize`` again with None; with ``park``, a put at the limit raises
        :class:`PipeFull` instead of waiting (a waiting one too). Items already
        queued stay."""
        with self._lock:
            self.limit = self.maxsize if limit is None else max(0, min(limit, self.maxsize))
            self.park = park
            if self._putters:
                self._not_full.notify_all()

    def wake(self) -> None:
        """The producer appended to ``_items`` without the lock and then saw
        ``_getter_waits`` set: wake the reader.

        The producer's fast path (a stream's pump) is: when the pipe is full, a plain
        :meth:`put` (it waits); otherwise ``_items.append(item)``, then this call only
        if ``_getter_waits`` is set. That is safe because the GIL orders the steps: the
        producer appends and *then* reads ``_getter_waits``; the reader, under the lock,
        sets ``_getter_waits`` and *then* looks for items before it waits. Either the
        reader sees the item, or the producer sees the flag and wakes it (taking the
        lock, which the reader holds until it waits). The reader takes items with
        ``popleft``, so an append racing a get is never lost.
        """
        with self._lock:
            if self._getter_waits:
                self._getter_waits = False
                self._not_empty.notify()

    def nudge(self) -> None:
        """The reader found the pipe empty and will not wait now (a poll whose deadline
        has passed): wake a producer waiting on a full pipe, as a waiting get does (a
        ``lazy`` one waits for exactly that)."""
        if self._putters:
            with self._lock:
                if self._putters:
                    self._not_full.notify()

    def end(self, last: Any) -> bool:
        """Append ``last`` (past the bound) and accept no more. False if already over."""
        with self._lock:
            if self._ended or self._closed:
                return False
            self._items.append(last)
            self._ended = True
            self._not_empty.notify_all()
            self._not_full.notify_all()
            return True

    def get_all(self, timeout: Optional[float] = None) -> List[Any]:
        """Take every queued item, waiting up to ``timeout`` seconds (None: no limit)
        for one. Raises ``queue.Empty`` on a timeout and PipeClosed once closed (or
        ended and drained)."""
        with self._lock:
            items = self._items
            if not items:
                if self._closed or self._ended:
                    raise PipeClosed
                if self._putters:  # (lazy: a waiting producer is woken only now)
                    self._not_full.notify()
                # the flag first, then the look at the items (see ``wake``)
                try:
                    if timeout is None:
                        while True:
                            self._getter_waits = True
                            if items or self._closed or self._ended:
                                break
                            self._not_empty.wait()
                    else:
                        deadline = time.monotonic() + timeout
                        while True:
                            self._getter_waits = True
                            if items or self._closed or self._ended:
                                break
                            left = deadline - time.monotonic()
                            if left <= 0:
                                raise queue.Empty
                            self._not_empty.wait(left)
                finally:
                    self._getter_waits = False
                if not items:
                    raise PipeClosed
            if self._closed:
                raise PipeClosed
            # exactly the items there now: one appended meanwhile stays for next time
            # (the pump appends without the lock, only at the right end; the loop runs
            # in C: popleft called len(items) times, never reaching the sentinel)
            batch = list(itertools.islice(iter(items.popleft, _NEVER), len(items)))
            if self._putters and not self.lazy:
                self._not_full.notify()
            return batch

    def close(self) -> None:
        """Drop what is queued and wake every waiter; puts and gets raise from now on."""
        with self._lock:
            self._closed = True
            self._items.clear()
            self._not_empty.notify_all()
            self._not_full.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ended(self) -> bool:
        return self._ended or self._closed

    def __len__(self) -> int:
        return len(self._items)


def put_until_stopped(q: "queue.Queue[Any]", stop: Optional[threading.Event]) -> "Callable[[Any], bool]":
    """A ``put`` into a caller's ``queue.Queue`` that gives up when ``stop`` is set, even
    while the queue is full (the stop's watch wakes the queue's waiters). Returns
    ``put(item) -> bool`` (False: stopped); call ``put.done()`` when finished."""
    own = stop is not None and isinstance(q, queue.Queue)
    unwatch: Callable[[], None] = _stop.nothing
    if own:
        _stop.hold()

        def wake() -> None:
            with q.not_full:
                q.not_full.notify_all()

        unwatch = _stop.watch(stop, wake)

    def put(item: Any) -> bool:
        if not own:
            q.put(item)
            return True
        assert stop is not None
        with q.not_full:
            while q.maxsize > 0 and q._qsize() >= q.maxsize:
                if stop.is_set():
                    return False
                q.not_full.wait()
            if stop.is_set():
                return False
            q._put(item)
            q.unfinished_tasks += 1
            q.not_empty.notify()
        return True

    released = [False]

    def done() -> None:
        if own and not released[0]:
            released[0] = True
            unwatch()
            _stop.let_go()

    put.done = done  # type: ignore[attr-defined]
    return put
