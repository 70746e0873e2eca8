"""The stage engine (private): where a pipeline runs, threads, queues and the stop signal.

Stages know nothing about threads. A stage is a callable object::

    stage(item) -> list of items     # item: str or StreamChunk
    stage.flush() -> list of items   # end of input

and may also have ``abort(error)`` (the stream failed with ``error``, or was cancelled
when ``error`` is None), and, for stages that must act on a timer, ``time_left()``
(seconds until ``tick()`` must be called, or None) and ``tick() -> list of items``.
A stage that blocks (the rate limiter) may have ``bind(stop)``: it is called once,
before the stream's threads start, with the stream's internal stop event (set when the
stream is cancelled), and the stage waits on that event so a cancel ends its wait.

This module owns everything else. By default the reader's own thread runs the source
and the stages inside ``next()`` (no thread, no hand-off). A worker thread reads ahead
and hands results to the reader through a bounded queue when asked to (``prefetch``)
or when the reader waits with a timeout (``next_within``). When a stage needs a timer,
the source gets a thread of its own, so that the stage thread can wake on its deadline
while the source is blocked::

    reader ──next()──▶ [source ▸ decode ▸ stage ▸ stage ▸ ...]          (inline)

    source ──▶ [worker: decode ▸ stage ▸ stage ▸ ...] ══queue══▶ reader  (driven)

    source ──▶ [pump: decode] ══queue══▶ [stages, timers] ══queue══▶ reader  (timed)

Queues move items in batches: a put appends to the queue under its lock and wakes the
other side only when it is waiting, and a get takes everything queued at once. Queues
are bounded (a fast source is held back by a slow reader) and closeable: cancelling a
stream closes them, which wakes every thread blocked on them at once.
"""
from __future__ import annotations

import collections
import inspect
import itertools
import queue
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

from ._chunk import Decoder, StreamChunk
from ._signals import nothing, on_set
from ._util import close_quietly

__all__ = ["ChunkStream", "run_stages", "END"]

_ids = itertools.count(1)


class _Closed(Exception):
    """The queue was closed: the stream is cancelled."""


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()
_EMPTY = _End()
_NOTHING: List[Any] = []  # shared empty list; never appended to


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Pipe(queue.Queue):  # type: ignore[type-arg]
    """A bounded ``queue.Queue`` that moves items in batches and can be closed.

    ``put_many`` blocks while the queue holds ``maxsize`` items or more (a batch may
    take it past the bound); ``get_all`` takes every queued item at once. ``close``
    wakes all waiters; after it both raise ``_Closed``.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self._closed = False
        self._getters = 0
        self._putters = 0

    def put_many(self, items: Sequence[Any]) -> None:
        with self.mutex:
            q = self.queue
            if self.maxsize and len(q) >= self.maxsize:
                self._putters += 1
                try:
                    while len(q) >= self.maxsize and not self._closed:
                        self.not_full.wait()
                finally:
                    self._putters -= 1
            if self._closed:
                raise _Closed
            q.extend(items)
            if self._getters:
                self.not_empty.notify()

    def get_all(self, timeout: Optional[float] = None) -> List[Any]:
        with self.mutex:
            q = self.queue
            if not q:
                if self._closed:
                    raise _Closed
                self._getters += 1
                try:
                    if timeout is None:
                        while not q and not self._closed:
                            self.not_empty.wait()
                    else:
                        deadline = time.monotonic() + timeout
                        while not q and not self._closed:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                raise queue.Empty
                            self.not_empty.wait(remaining)
                finally:
                    self._getters -= 1
            if self._closed:
                raise _Closed
            items = list(q)
            q.clear()
            if self._putters:
                self.not_full.notify()
            return items

    def close(self) -> None:
        with self.mutex:
            self._closed = True
            self.queue.clear()
            self.not_empty.notify_all()
            self.not_full.notify_all()


class _Core:
    """The shared state of one stream. Worker threads hold this, never the ChunkStream.

    The pipeline itself (read the source, run the stages, release batches of output) is
    one generator, :meth:`_produce`. Where it runs is the *placement*:

    - ``inline``: the reader's own thread drives it, inside ``next()``. No thread and
      no hand-off: the cheapest placement, used when no stage needs a timer.
    - ``driven``: a worker thread drives it and hands batches to the reader through a
      bounded queue (``prefetch=True``, or an inline stream promoted when the reader
      asks for ``next_within``, which needs the source read elsewhere).
    - ``timed``: a stage needs a timer, so the source gets a pump thread of its own and
      a stage thread runs the stages, waking on their deadlines.
    """

    def __init__(
        self,
        source: Iterable[Any],
        stages: Sequence[Any],
        stop: Optional[threading.Event],
        name: str,
        queue_size: int,
        result: Optional[Callable[[], Any]],
        prefetch: bool = False,
    ) -> None:
        self.id = next(_ids)
        self.name = name
        self.stages = list(stages)
        self.source = source
        self.iterator: Optional[Iterator[Any]] = None
        self.stop = threading.Event()  # the internal stop signal stages wait on
        self.queue_size = queue_size
        self.out = _Pipe(queue_size)
        self.mid: Optional[_Pipe] = None
        self.result = result
        self.error: Optional[BaseException] = None
        self.cancelled = False
        self.finished = False  # the last batch (END or a failure) was released
        self.threads: List[threading.Thread] = []
        self._lock = threading.Lock()
        self._gen_lock = threading.Lock()  # held while the reader drives the pipeline
        self._live = 0
        self._in_source = False
        self._source_closed = False
        self._iterator_closed = False
        self._unwatch: Callable[[], None] = nothing
        self.timed = [s for s in self.stages if callable(getattr(s, "time_left", None))]
        self._gen: Optional[Iterator[List[Any]]] = None
        if self.timed:
            self.placement = "timed"
            self.mid = _Pipe(queue_size)
            self._spawn(self._pump, "source")
            self._spawn(self._run_stages, self._stage_names())
        else:
            self._gen = self._produce()
            if prefetch:
                self.placement = "driven"
                self._spawn(self._drive, "source+" + self._stage_names())
            else:
                self.placement = "inline"
        for stage in self.stages:
            bind = getattr(stage, "bind", None)
            if bind is not None:
                bind(self.stop)
        self._unwatch = on_set(stop, self._stop_requested)
        if self.cancelled and self.placement == "inline":
            # the stop event was already set: the pipeline was wound up before the
            # watch could be stored, so release it now
            self._release_stop()
        for t in self.threads:
            t.start()

    # --- set up ------------------------------------------------------------------
    def _stage_names(self) -> str:
        names = [getattr(s, "name", type(s).__name__) for s in self.stages]
        return "+".join(names) or "passthrough"

    def _spawn(self, target: Callable[[], None], what: str) -> threading.Thread:
        t = threading.Thread(
            target=self._thread_main,
            args=(target,),
            name=f"helixstream-{self.id}-{self.name}-{what}",
            daemon=True,
        )
        with self._lock:
            self._live += 1
        self.threads.append(t)
        return t

    def _thread_main(self, target: Callable[[], None]) -> None:
        try:
            target()
        finally:
            with self._lock:
                self._live -= 1
                last = self._live == 0
            if last:
                self._close_source()
                self._release_stop()

    def _in_worker(self) -> bool:
        """Whether the calling thread is one of this stream's worker threads."""
        return threading.current_thread() in self.threads

    def _release_stop(self) -> None:
        unwatch, self._unwatch = self._unwatch, nothing
        unwatch()

    def promote(self) -> None:
        """Move an inline pipeline to a worker thread (the reader wants to wait with a
        timeout, so the source must be read elsewhere)."""
        with self._lock:
            if self.placement != "inline" or self.cancelled or self.finished:
                return
            self.placement = "driven"
        self._spawn(self._drive, "source+" + self._stage_names()).start()

    # --- stopping --------------------------------------------------------------------
    def _stop_requested(self) -> None:
        """The caller's stop event was set: like :meth:`cancel`, but a stream that has
        already ended is left alone, so its reader still gets everything."""
        self.cancel(reader_left=False)

    def cancel(self, reader_left: bool = True) -> None:
        """Stop the stream: wake every thread and close the source.

        It does not wait for threads. In the inline placement, when nobody is reading at
        that moment, it winds the pipeline up in the calling thread (the stages' clean-up
        and the source's ``close()`` run there).
        """
        with self._lock:
            if self.cancelled:
                return
            if self.finished:
                if not reader_left:
                    return
                # The stream is complete, but a worker may still be waiting for room to
                # hand over its last batch: the reader has left, so wake it (the result
                # stays complete: nothing is marked cancelled).
                alive = any(t.is_alive() for t in self.threads)
            else:
                self.cancelled = True
                alive = None
            in_source = self._in_source
            inline = self.placement == "inline"
        if alive is not None:
            if alive:
                self.out.close()
                if self.mid is not None:
                    self.mid.close()
            return
        self.stop.set()
        self.out.close()
        if self.mid is not None:
            self.mid.close()
        if in_source:
            # Closing a network response from here is what unblocks a read in progress
            # (and stops the upstream request). A generator can only be closed by the
            # thread running it, which does so as soon as it gets control back.
            self._close_source(outside=True)
        if inline and self._gen_lock.acquire(blocking=False):
            # Nobody is driving the pipeline: wind it up here.
            try:
                self._close_pipeline()
            finally:
                self._gen_lock.release()

    def _close_pipeline(self) -> None:
        gen = self._gen
        if gen is None:
            return
        started = inspect.getgeneratorstate(gen) != inspect.GEN_CREATED  # type: ignore[arg-type]
        gen.close()  # type: ignore[attr-defined]
        if not started:  # its own clean-up never ran
            self._abort(None)
            self._close_source()
            self._release_stop()

    def _close_source(self, outside: bool = False) -> None:
        """Close the source object and, if it is another object, its iterator.

        From another thread (``outside``), generators are left to the thread running them.
        """
        targets = []
        with self._lock:
            for attr, obj in (("_source_closed", self.source), ("_iterator_closed", self.iterator)):
                if obj is None or getattr(self, attr) or (outside and inspect.isgenerator(obj)):
                    continue
                if attr == "_iterator_closed" and obj is self.source:
                    continue
                setattr(self, attr, True)
                targets.append(obj)
        for obj in targets:
            close_quietly(obj)

    def join(self, timeout: Optional[float]) -> bool:
        """Wait for the worker threads to end; True when they all have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        for t in list(self.threads):
            if t is me:
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads if t is not me)

    # --- the source --------------------------------------------------------------
    def _source_items(self) -> Iterator[Any]:
        """Yield the decoded items of the source, checking for cancellation."""
        decode = Decoder()
        it = iter(self.source)
        self.iterator = it
        nxt = it.__next__
        while not self.cancelled:
            self._in_source = True
            try:
                raw = nxt()
            except StopIteration:
                break
            finally:
                self._in_source = False
            if raw.__class__ is str:
                decode.index += 1
                if raw:  # an empty piece carries nothing
                    yield raw
                continue
            item = decode(raw)
            if not item and item.__class__ is str:
                continue  # empty, or bytes that end mid-character
            if type(item) is StreamChunk or isinstance(item, StreamChunk):
                if item.error is not None:
                    raise item.error
                if item.done:
                    if item.content or item.metadata or item.tokens:
                        yield item
                    break
            yield item
        if self.cancelled:
            raise _Closed
        rest = decode.finish()
        if rest:
            yield rest

    # --- running stages ------------------------------------------------------------
    def _push(self, item: Any, start: int = 0) -> List[Any]:
        """Run one item through the stages from ``start``; return what comes out."""
        items: List[Any] = [item]
        stages = self.stages
        i = start
        try:
            for i in range(start, len(stages)):
                stage = stages[i]
                if len(items) == 1:  # the usual case: one item in, zero or one out
                    items = stage(items[0])
                    if items.__class__ is not list:
                        items = [] if items is None else list(items)
                else:
                    nxt: List[Any] = []
                    self._partial = nxt  # what stage i passed on before any failure
                    for it in items:
                        got = stage(it)
                        if got:
                            nxt.extend(got)
                    items = nxt
                    self._partial = _NOTHING
                if not items:
                    return items
        except BaseException:
            self._failed_at = i
            raise
        return items

    _failed_at = -1
    _partial: List[Any] = []
    _flushed: List[Any] = []

    def _push_many(self, items: Iterable[Any], start: int, out: List[Any]) -> None:
        """Push each item from stage ``start``, adding what comes out to ``out`` item by
        item, so that a failure on a later item keeps what earlier ones released."""
        for item in items:
            got = self._push(item, start)
            if got:
                out.extend(got)

    def _flush_from(self, first: int) -> List[Any]:
        """Flush stages ``first``.. in order; what stage i releases goes through i+1..

        What is released so far is kept on the core, so a later flush that fails does
        not lose it (see :meth:`_failure`).
        """
        out: List[Any] = []
        self._flushed = out
        stages = self.stages
        for i in range(first, len(stages)):
            try:
                got = stages[i].flush()
            except BaseException:
                self._failed_at = i
                raise
            if got:
                self._push_many(got, i + 1, out)
        return out

    def _abort(self, error: Optional[BaseException]) -> None:
        if error is None and self.finished:
            return  # it ended before anyone stopped it
        for stage in self.stages:
            abort = getattr(stage, "abort", None)
            if abort is not None:
                try:
                    abort(error)
                except Exception:  # noqa: BLE001 - already failing or cancelled
                    pass

    def _end(self) -> bool:
        """Mark the stream finished, unless it was cancelled first."""
        with self._lock:
            if self.cancelled:
                return False
            self.finished = True
            return True

    def _failure(self, exc: BaseException, pending: List[Any]) -> Optional[List[Any]]:
        """What was produced before ``exc``, then ``exc``; None if cancelled meanwhile."""
        failed_at = self._failed_at  # -1: the source failed
        # Nothing produced before the fault is lost: what earlier flushes released, and
        # what the failing stage passed on before it failed (through the later stages),
        # then whatever the later stages still hold.
        out = list(pending)
        out.extend(self._flushed)
        partial, self._partial, self._flushed = self._partial, _NOTHING, _NOTHING
        try:
            if partial:
                self._push_many(partial, failed_at + 1, out)
            out.extend(self._flush_from(failed_at + 1))
        except BaseException:  # noqa: BLE001 - the first error wins
            pass
        self.error = exc
        self._abort(exc)
        if not self._end():
            return None
        return out + [_Failure(exc)]

    def _produce(self) -> Iterator[List[Any]]:
        """The pipeline: batches of output, the last one ending in END or a failure.

        The last batch is released only after the clean-up (source closed, stop event
        released), since nobody resumes the generator after it.
        """
        pending: List[Any] = []
        final: Optional[List[Any]] = None
        try:
            for item in self._source_items():
                pending = self._push(item)
                if pending:
                    yield pending
                    pending = []
            self._close_source()
            pending = self._flush_from(0)
            self._flushed = _NOTHING
            if self._end():
                final = pending + [END]
            else:
                self._abort(None)  # stopped while the last items were being finished
        except _Closed:
            self._abort(None)
        except GeneratorExit:
            self._abort(None)
            raise
        except BaseException as exc:  # noqa: BLE001 - delivered to the reader
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not self._in_worker():
                # the reader's own thread was interrupted: stop now, deliver nothing more
                self.error = exc
                self._end()
                self._abort(exc)
                raise
            if self.cancelled:
                self._abort(None)
            else:
                final = self._failure(exc, pending)
        finally:
            self._close_source()
            self._release_stop()
        if final is not None:
            yield final

    def pull(self) -> List[Any]:
        """Run the inline pipeline in the calling thread until it releases a batch.

        Raises ``StopIteration`` when the stream was cancelled.
        """
        with self._gen_lock:
            gen = self._gen
            assert gen is not None
            if self.cancelled:
                self._close_pipeline()
                raise StopIteration
            batch = next(gen)
            if self.cancelled:
                # closed from another thread while this one was running the pipeline:
                # cancel() left the winding up to this thread
                self._close_pipeline()
            return batch

    def _drive(self) -> None:
        gen = self._gen
        assert gen is not None
        put = self.out.put_many
        try:
            for batch in gen:
                put(batch)
        except _Closed:
            gen.close()  # type: ignore[attr-defined]

    def _pump(self) -> None:
        mid = self.mid
        assert mid is not None
        try:
            for item in self._source_items():
                mid.put_many((item,))
            self._close_source()
            mid.put_many((END,))
        except _Closed:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the stage thread
            if not self.cancelled:
                try:
                    mid.put_many((_Failure(exc),))
                except _Closed:
                    pass

    def _time_left(self) -> Optional[float]:
        best: Optional[float] = None
        for stage in self.timed:
            left = stage.time_left()
            if left is not None and (best is None or left < best):
                best = left
        return best

    def _tick(self) -> List[Any]:
        out: List[Any] = []
        self._flushed = out  # kept on the core, as in _flush_from
        stages = self.stages
        for i, stage in enumerate(stages):
            if stage in self.timed:
                left = stage.time_left()
                if left is not None and left <= 0:
                    try:
                        got = stage.tick()
                    except BaseException:
                        self._failed_at = i
                        raise
                    if got:
                        self._push_many(got, i + 1, out)
        self._flushed = _NOTHING
        return out

    def _put_last(self, batch: Optional[List[Any]]) -> None:
        if batch is not None:
            try:
                self.out.put_many(batch)
            except _Closed:
                pass

    def _run_stages(self) -> None:
        mid = self.mid
        assert mid is not None
        put = self.out.put_many
        pending: List[Any] = []
        try:
            while True:
                try:
                    batch = mid.get_all(self._time_left())
                except queue.Empty:
                    released = self._tick()
                    if released:
                        put(released)
                    continue
                for item in batch:
                    if item is END:
                        pending.extend(self._flush_from(0))
                        self._flushed = _NOTHING
                        if self._end():
                            self._put_last(pending + [END])
                        else:
                            self._abort(None)  # stopped while finishing
                        return
                    if type(item) is _Failure:
                        self._failed_at = -1
                        self._put_last(self._failure(item.exc, pending))
                        return
                    got = self._push(item)
                    if got:
                        pending.extend(got)
                left = self._time_left()
                if left is not None and left <= 0:
                    pending.extend(self._tick())
                if pending:
                    put(pending)
                    pending = []
        except _Closed:
            self._abort(None)
        except BaseException as exc:  # noqa: BLE001 - delivered to the reader
            if self.cancelled:
                self._abort(None)
            else:
                self._put_last(self._failure(exc, pending))
                self.cancel_upstream()

    def cancel_upstream(self) -> None:
        """A stage failed: stop the pump and close the source."""
        self.stop.set()
        if self.mid is not None:
            self.mid.close()
        if self._in_source:
            self._close_source(outside=True)


class ChunkStream:
    """The output of a stream: an iterator of :class:`StreamChunk` that can be closed.

    Iterate it, or call :meth:`close` (or leave a ``with`` block) to stop early; a
    stream that is garbage collected is closed too. Closing ends every worker thread
    of the stream and closes the source (stopping the upstream request). An exception
    raised by the source or a stage is raised here, after every chunk before it.
    """

    def __init__(self, core: _Core, close_timeout: float = 1.0) -> None:
        self._core = core
        self._batch: Iterator[Any] = iter(())
        self._done = False
        self._close_timeout = close_timeout
        self._finalizer = weakref.finalize(self, core.cancel)

    def __iter__(self) -> "ChunkStream":
        return self

    def __next__(self) -> StreamChunk:
        item = next(self._batch, _EMPTY)
        if item.__class__ is StreamChunk:
            return item
        if item is _EMPTY:
            item = self._refill()
            if item.__class__ is StreamChunk:
                return item
        return self._deliver(item)

    def _deliver(self, item: Any) -> StreamChunk:
        if item is END:
            self._over()
            self._core.join(self._close_timeout)
            raise StopIteration
        if item.__class__ is _Failure:
            self._over()
            self._core.join(self._close_timeout)
            raise item.exc
        return item  # type: ignore[no-any-return]

    def _refill(self, timeout: Optional[float] = None) -> Any:
        if self._done:
            raise StopIteration
        core = self._core
        if core.placement == "inline":
            if timeout is None:
                try:
                    batch = core.pull()
                except StopIteration:
                    self._over()
                    raise
                except BaseException:
                    self._over()
                    raise
                if len(batch) == 1:
                    return batch[0]
                self._batch = it = iter(batch)
                return next(it)
            core.promote()
        try:
            batch = core.out.get_all(timeout)
        except _Closed:
            self._over()
            raise StopIteration from None
        self._batch = it = iter(batch)
        return next(it)

    def next_within(self, timeout: float) -> Optional[StreamChunk]:
        """The next chunk, or None if none arrives within ``timeout`` seconds.

        Raises ``StopIteration`` at the end of the stream, and the stream's error if it
        failed, like ``next()``. Server-Sent Events use this to send keep-alives.
        """
        item = next(self._batch, _EMPTY)
        if item is _EMPTY:
            try:
                item = self._refill(timeout)
            except queue.Empty:
                return None
        return self._deliver(item)

    def close(self) -> None:
        """Stop the stream; safe to call more than once, and after the end."""
        self._done = True
        self._batch = iter(())
        self._core.cancel()
        self._core.join(self._close_timeout)
        self._over()

    def _over(self) -> None:
        """The stream is over for this reader: nothing is left for the finalizer to stop.

        Detaching it matters: its registry holds the core, and a failed core holds the
        exception, whose traceback holds the reader's frame and so this object; left
        attached, a failed stream would never be freed.
        """
        self._done = True
        self._finalizer.detach()

    def __enter__(self) -> "ChunkStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once the stream has ended, failed, or been closed."""
        return self._done

    @property
    def cancelled(self) -> bool:
        """True when the stream was stopped before its source ended."""
        return self._core.cancelled

    def get_result(self) -> Any:
        """The :class:`AggregatedStream` so far (final once the stream has ended)."""
        if self._core.result is None:
            raise TypeError("this stream has no aggregation stage")
        return self._core.result()

    def threads(self) -> List[threading.Thread]:
        """The worker threads of this stream (for diagnostics and tests)."""
        return list(self._core.threads)

    def __repr__(self) -> str:
        state = "closed" if self._done else "open"
        return f"<ChunkStream {self._core.id} {self._core.name} {state}>"


def run_stages(
    source: Iterable[Any],
    stages: Sequence[Any],
    *,
    stop: Optional[threading.Event] = None,
    name: str = "stream",
    queue_size: int = 256,
    result: Optional[Callable[[], Any]] = None,
    close_timeout: float = 1.0,
    prefetch: bool = False,
) -> ChunkStream:
    """Start a stream of ``source`` through ``stages``; return its output.

    Args:
        prefetch: read the source ahead in a worker thread from the start (otherwise
            the reader's thread runs the pipeline unless a stage needs a timer).
    """
    if source is None or not hasattr(source, "__iter__") and not hasattr(source, "__next__"):
        raise TypeError(f"source must be an iterable, not {type(source).__name__}")
    core = _Core(source, stages, stop, name, queue_size, result, prefetch)
    return ChunkStream(core, close_timeout)
