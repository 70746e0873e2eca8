"""A running stream: its state, where its source is read, and its output (private).

The stages always run in the thread that reads the output (:mod:`.pipeline`), so what
the stages record (progress, the aggregate) is what the reader received, and a paced
unit reaches the reader at its paced time. Only the *source* may move to a thread of
its own, the pump, which hands raw items over through a bounded :class:`~.pipe.Pipe`::

    reader ──next()──▶ [source ▸ decode ▸ stage ▸ stage ▸ ...]             (inline)

    source ──▶ [pump] ══pipe══▶ reader: [decode ▸ stage ▸ ... ▸ timers]    (pumped)

A stream is pumped from the start when asked to read ahead (``prefetch``) or when a
stage has a timer (``max_delay``: the reader must wake at the deadline while the source
is blocked), and becomes pumped when the reader first waits with a timeout
(``next_within``). Inline, a stream has no thread at all.

A stream's state is one field: ``running``, then ``finished``, ``failed`` or
``cancelled``. A stop (the caller's stop event, ``close()``, a reader that let go)
first only *requests* the end (``stopping``) and wakes whoever waits; the winding up
(stages' ``abort``, the final progress, ``source.close()``) runs in the thread that
runs the pipeline: the reader's, or the janitor's for a stream nobody reads any more.
"""
from __future__ import annotations

import inspect
import itertools
import logging
import queue
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

from .._chunk import Decoder, StreamChunk
from .._errors import PipelineError
from .._inputs import check_source
from . import stop as _stop
from .pipe import Pipe, PipeClosed, PipeFull
from .pipeline import IDLE, TICK, Pipeline, Stopped, unexpected

__all__ = ["ChunkStream", "run_stages", "END", "RUNNING", "FINISHED", "FAILED", "CANCELLED"]

_log = logging.getLogger("helixstream")
_ids = itertools.count(1)

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()


_NOTHING: Any = object()  # no item held by a parked pump


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _closeable(obj: Any) -> bool:
    return obj is not None and callable(getattr(obj, "close", None))


class _Core:
    """The shared state of one stream (threads hold this, never the ChunkStream)."""

    def __init__(
        self,
        source: Iterable[Any],
        stages: Sequence[Any],
        stop: Optional[threading.Event],
        name: str,
        queue_size: int,
        result: Optional[Callable[[], Any]],
        prefetch: bool,
        close_timeout: float,
    ) -> None:
        self.id = next(_ids)
        self.name = name
        self.source = source
        self.iterator: Iterator[Any] = iter(source)
        # a source that can wait for its next item with a timeout (``wait_ready``):
        # next_within() then needs no pump thread
        wait_ready = getattr(self.iterator, "wait_ready", None)
        self.wait_ready: Optional[Callable[[float], bool]] = (
            wait_ready if callable(wait_ready) else None
        )
        self.user_stop = stop
        self.stop = threading.Event()  # internal: stages wait on it (the rate limiter)
        self.queue_size = queue_size
        self.close_timeout = close_timeout
        self.result = result
        self.state = RUNNING
        self.stopping = False  # an end was requested
        self.abandoned = False  # the reader let go (set by the finalizer, lock-free)
        self.source_done = False  # the source was read to its end
        self.error: Optional[BaseException] = None
        self.close_error: Optional[BaseException] = None
        self.pipe: Optional[Pipe] = None
        self.pump: Optional[threading.Thread] = None
        self.threads: List[threading.Thread] = []
        self.deadline: Optional[float] = None  # the reader's next_within deadline
        self.in_source = False
        self.lookahead: Optional[int] = None  # see set_lookahead()
        self.parked = False  # the pump ended at the lookahead; the source waits, unread
        self.held: Any = _NOTHING  # the item the pump had taken when it parked
        self._lock = threading.Lock()
        self._closed_objects: List[int] = []
        self._released = False
        self.pipeline = Pipeline(stages)
        self.stages = self.pipeline.stages
        for stage in self.stages:
            bind = getattr(stage, "bind", None)
            if bind is not None:
                bind(self.stop)
        self.gen: Iterator[Any] = self._run()
        self.gen_lock = threading.Lock()  # held while a thread runs the pipeline
        _stop.hold()
        try:
            self._unwatch = _stop.watch(stop, self._on_stop)
        except BaseException:
            _stop.let_go()
            raise
        if stop is not None and stop.is_set():
            self.halt()  # stopped before it began: nothing is read
        elif prefetch or self.pipeline.timed:
            self.start_pump()

    # --- stopping ----------------------------------------------------------------------
    def stopped(self) -> bool:
        """Was an end requested? (Checked before each item is passed on.)"""
        if self.stopping:
            return True
        user = self.user_stop
        if user is not None and user.is_set() and not self.source_done:
            self.halt()
            return True
        return False

    def _on_stop(self) -> None:
        """The caller's stop event was set (run by the janitor). A stream whose source
        has ended is left to finish: its reader still gets everything."""
        if not self.source_done:
            self.halt()

    def halt(self) -> None:
        """Request the end and wake every thread of the stream. Idempotent; runs in any
        ordinary thread (never in a signal handler or a finalizer)."""
        with self._lock:
            if self.stopping or self.state is not RUNNING:
                return
            self.stopping = True
        self._wake()

    def _wake(self) -> None:
        """Wake every thread of the stream: stages waiting on the internal stop event,
        the reader and the pump waiting on the pipe, a pump blocked in a read."""
        self.stop.set()
        pipe = self.pipe
        if pipe is not None:
            pipe.close()
        if self.in_source:
            # A blocked read of a response object ends when it is closed (that is also
            # what stops the upstream request). A generator can only be closed by the
            # thread running it, which does so once it gets control back.
            self._close_source(outside=True)
        elif self.parked:
            self._close_source_bounded()  # no thread iterates it: close it here

    def abandon(self) -> None:
        """The reader let the stream go without closing it (run by the janitor)."""
        self.halt()
        self.wind_up()

    def wind_up(self) -> None:
        """Close the pipeline in this thread, unless a thread is inside ``next()``: that
        thread winds it up itself, woken by ``halt``."""
        if not self.gen_lock.acquire(blocking=False):
            return
        try:
            gen = self.gen
            unstarted = inspect.getgeneratorstate(gen) == inspect.GEN_CREATED  # type: ignore[arg-type]
            gen.close()  # type: ignore[attr-defined]
            if unstarted:  # closing it ran none of its code: wind up here
                self._finish_unstarted()
        finally:
            self.gen_lock.release()

    def _finish_unstarted(self) -> None:
        with self._lock:
            if self.state is not RUNNING:
                return
            self.state = CANCELLED
        self.pipeline.abort(None)
        self._end_source_early()
        self._release()

    # --- the end -----------------------------------------------------------------------
    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._unwatch()
        self._unwatch = _stop.nothing
        _stop.let_go()

    def _set_state(self, state: str, error: Optional[BaseException] = None) -> None:
        with self._lock:
            if self.state is RUNNING:
                self.state = state
                if error is not None:
                    self.error = error

    @property
    def cancelled(self) -> bool:
        return self.state is CANCELLED or (
            (self.stopping or self.abandoned) and self.state is RUNNING
        )

    # --- the source --------------------------------------------------------------------
    def _close_targets(self, outside: bool) -> List[Any]:
        targets = []
        with self._lock:
            for obj in (self.source, self.iterator):
                if obj is None or id(obj) in self._closed_objects or not _closeable(obj):
                    continue
                if outside and inspect.isgenerator(obj):
                    continue
                self._closed_objects.append(id(obj))
                targets.append(obj)
        return targets

    def _close_source(self, outside: bool = False) -> None:
        """Close the source (and its iterator), in this thread. An error from close()
        is recorded, never raised."""
        for obj in self._close_targets(outside):
            try:
                obj.close()
            except BaseException as exc:  # noqa: BLE001 - recorded
                self._note_close_error(exc, "raised")

    def _note_close_error(self, exc: Optional[BaseException], what: str) -> None:
        if what == "hung":
            err = PipelineError(
                f"the source's close() did not return within close_timeout "
                f"({self.close_timeout} s); it was left running in a thread"
            )
        else:
            err = PipelineError(f"the source's close() raised {type(exc).__name__}: {exc}")
            err.__cause__ = exc
        _log.warning(
            "helixstream stream %s (%s): %s", self.id, self.name, err,
            extra={"stream_id": self.id},
        )
        if self.close_error is None:
            self.close_error = err

    def _end_source_early(self) -> None:
        """The stream ends before its source: a pump closes the source itself (it is
        the thread iterating it; ``halt`` woke it); inline, it is closed here."""
        if self.pump is not None:
            self._wake()
            return
        self._close_source_bounded()

    def _close_source_bounded(self) -> None:
        """Close the source early (the stream was stopped), waiting at most
        ``close_timeout``: a close() that hangs is left in a thread of its own."""
        targets = self._close_targets(outside=False)
        if not targets:
            return
        done = threading.Event()
        errors: List[BaseException] = []

        def close_them() -> None:
            for obj in targets:
                try:
                    obj.close()
                except BaseException as exc:  # noqa: BLE001 - recorded
                    errors.append(exc)
            done.set()

        t = threading.Thread(
            target=close_them, name=f"helixstream-{self.id}-{self.name}-close", daemon=True
        )
        t.start()
        if not done.wait(self.close_timeout):
            self._note_close_error(None, "hung")
        else:
            t.join()
            if errors:
                self._note_close_error(errors[0], "raised")

    def start_pump(self) -> None:
        """Read the source in a thread of its own from now on."""
        with self._lock:
            if self.pipe is not None or self.state is not RUNNING or self.stopping:
                return
            if self.source_done:
                return
            self.pipe = Pipe(self.queue_size)
            if self.lookahead is not None:
                self.pipe.set_limit(self.lookahead - 1, park=True)
            t = self._new_pump_locked()
        t.start()

    def _new_pump_locked(self) -> threading.Thread:
        t = threading.Thread(
            target=self._pump,
            name=f"helixstream-{self.id}-{self.name}-source",
            daemon=True,
        )
        self.pump = t
        self.threads.append(t)
        return t

    def _put_or_park(self, pipe: Pipe, raw: Any) -> bool:
        """Put ``raw`` in the pipe; False when the pump parks instead: the pipe is at
        the lookahead and nobody reads (the item is kept for the next pump)."""
        while True:
            try:
                pipe.put(raw)
                return True
            except PipeFull:
                with self._lock:
                    if self.stopping or self.state is not RUNNING:
                        raise PipeClosed from None  # closing: the pump ends as usual
                    if not pipe.park:
                        continue  # the lookahead was lifted meanwhile
                    self.held = raw
                    self.parked = True
                    self.pump = None
                    return False

    def _pump(self) -> None:
        pipe = self.pipe
        assert pipe is not None
        nxt = self.iterator.__next__
        user = self.user_stop
        parked = False
        try:
            held, self.held = self.held, _NOTHING
            if held is not _NOTHING:
                if not self._put_or_park(pipe, held):
                    parked = True
                    return
                if held.__class__ is StreamChunk and (held.done or held.error is not None):
                    raise StopIteration
            while not self.stopping:
                if user is not None and user.is_set():
                    self.halt()
                    return
                self.in_source = True
                try:
                    raw = nxt()
                finally:
                    self.in_source = False
                if not self._put_or_park(pipe, raw):
                    parked = True
                    return
                if raw.__class__ is StreamChunk and (raw.done or raw.error is not None):
                    break  # the source said it is over: read no further
            else:
                return
            raise StopIteration
        except StopIteration:
            if user is not None and user.is_set():
                self.halt()  # stopped before the end was seen: the stop wins
                return
            self.source_done = True
            pipe.end(END)
        except PipeClosed:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            pipe.end(_Failure(exc))
        finally:
            if not parked:
                self._close_source()  # the pump is the thread that iterates the source

    def _items(self) -> Iterator[Any]:
        """Decoded source items (with TICK and IDLE markers when pumped).

        A raw item comes from the source itself (inline) or from the pump's latest
        batch; the first ``next_within`` may switch from one to the other between two
        items (the pump then reads the same iterator)."""
        decode = Decoder()
        stopped = self.stopped
        user = self.user_stop
        nxt = self.iterator.__next__
        wait_ready = self.wait_ready
        batch: List[Any] = []
        taken = 0
        try:
            while True:
                if self.stopping or user is not None and stopped():
                    raise Stopped
                if self.pipe is None:  # inline: the reader reads the source
                    deadline = self.deadline
                    if deadline is not None and wait_ready is not None:
                        # next_within(): wait for the source until the deadline, in
                        # this thread (a close from another thread closes the source,
                        # which ends the wait)
                        self.in_source = True
                        try:
                            ready = wait_ready(max(0.0, deadline - time.monotonic()))
                        finally:
                            self.in_source = False
                        if self.stopping or user is not None and stopped():
                            raise Stopped
                        if not ready:
                            yield IDLE
                            continue
                    self.in_source = True
                    try:
                        raw = nxt()
                    except StopIteration:
                        if stopped():
                            raise Stopped from None  # stopped while it ended
                        break
                    except GeneratorExit as exc:
                        raise unexpected(exc, "the source") from exc
                    finally:
                        self.in_source = False
                    if self.stopping or user is not None and stopped():
                        raise Stopped  # it arrived after the stop: not delivered
                else:  # pumped: the next raw item of the pump's batch
                    if taken == len(batch):
                        got = self._next_batch(self.pipe)
                        if got.__class__ is not list:
                            yield got  # TICK or IDLE
                            continue
                        batch, taken = got, 0
                    raw = batch[taken]
                    taken += 1
                    if raw is END:
                        break
                    if raw.__class__ is _Failure:
                        failure = raw.exc
                        if isinstance(failure, GeneratorExit):
                            raise unexpected(failure, "the source") from failure
                        raise failure
                if raw.__class__ is str and decode._decoder is None:
                    decode.index += 1
                    if raw:
                        yield raw
                    continue
                item = decode(raw)
                if item.__class__ is StreamChunk:
                    if item.error is not None:
                        raise item.error
                    if item.done:
                        if item.content or item.metadata or item.tokens:
                            yield item
                        break
                    yield item
                elif item:
                    yield item
                if decode.error is not None:
                    raise decode.error
            self.source_done = True
            rest = decode.finish()
            if rest:
                yield rest
        except (GeneratorExit, Stopped):
            raise
        except BaseException:
            self.pipeline.at = -1
            raise

    def _next_batch(self, pipe: Pipe) -> Any:
        """A batch from the pump, or TICK (a timer is due) or IDLE (the reader's
        deadline passed)."""
        while True:
            left = self.pipeline.time_left() if self.pipeline.timed else None
            if left is not None and left <= 0:
                return TICK
            deadline = self.deadline
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return IDLE
                if left is None or wait < left:
                    left = wait
            try:
                return pipe.get_all(left)
            except queue.Empty:
                continue
            except PipeClosed:
                if self.stopping:
                    raise Stopped from None
                raise

    # --- the pipeline ------------------------------------------------------------------
    def _run(self) -> Iterator[Any]:
        """The pipeline with its end: the one generator a stream's reader drives."""
        pipeline = self.pipeline
        try:
            pipeline.begin(self.stopped)
            yield from pipeline.feed(self._items())
            yield from pipeline.finish()
        except (GeneratorExit, Stopped) as exc:
            # stopped, or the reader closed the stream: nothing more is delivered
            self._set_state(CANCELLED)
            pipeline.abort(None)
            self._end_source_early()
            self._release()
            if exc.__class__ is GeneratorExit:
                raise
            return
        except BaseException as exc:  # noqa: BLE001 - delivered to the reader
            if self.stopping and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self._set_state(CANCELLED)
                pipeline.abort(None)
                self._end_source_early()
                self._release()
                return
            error = pipeline.describe_failure(exc)
            interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
            if not interrupted:
                # nothing produced before the fault is lost: what the later stages hold
                try:
                    yield from pipeline.after_failure(error)
                except GeneratorExit:
                    self._set_state(CANCELLED)
                    pipeline.abort(None)
                    self._end_source_early()
                    self._release()
                    raise
            self._set_state(FAILED, error)
            pipeline.abort(error)
            self._end_source_early()
            self._release()
            raise error
        self._set_state(FINISHED)
        self._close_source()
        self._release()


class ChunkStream:
    """The output of a stream: an iterator of :class:`StreamChunk` that can be closed.

    Iterate it, or call :meth:`close` (or leave a ``with`` block) to stop early; a
    stream that is garbage collected is closed too. Closing ends every thread of the
    stream and closes the source (stopping the upstream request). An exception raised
    by the source or a stage is raised here, after every chunk before it.
    """

    def __init__(self, core: _Core, close_timeout: float = 1.0) -> None:
        self._core = core
        self._done = False
        self._close_timeout = close_timeout
        self._finalizer = weakref.finalize(self, _let_go_of, core)

    def __iter__(self) -> "ChunkStream":
        return self

    def __next__(self) -> StreamChunk:
        core = self._core
        lock = core.gen_lock
        lock.acquire()
        try:
            item = core.gen.__next__()
        except BaseException as exc:
            lock.release()
            # interrupted (Ctrl-C): no waiting for the pump on the way out
            self._over(join=not isinstance(exc, (KeyboardInterrupt, SystemExit)))
            raise
        lock.release()
        return item  # type: ignore[no-any-return]

    def next_within(self, timeout: float) -> Optional[StreamChunk]:
        """The next chunk, or None if none arrives within ``timeout`` seconds.

        Raises ``StopIteration`` at the end of the stream, and the stream's error if it
        failed, like ``next()``. Server-Sent Events use this to send keep-alives. The
        first call moves the reading of the source to a thread of its own, unless the
        source can wait for its next item with a timeout (its iterator has
        ``wait_ready(timeout) -> bool``, as :class:`SimulatedLLM` and
        :class:`~helixstream.sources.Channel` do): then this thread waits on it.
        """
        core = self._core
        if core.pipe is None and not self._done and core.wait_ready is None:
            core.start_pump()
        core.deadline = time.monotonic() + max(0.0, timeout)
        try:
            item = self.__next__()
        finally:
            core.deadline = None
        if item is IDLE:  # type: ignore[comparison-overlap]
            return None
        return item

    def close(self) -> None:
        """Stop the stream; safe to call more than once, and after the end.

        Waits at most ``close_timeout`` for the stream's threads and its source's
        ``close()``; a close that takes longer is recorded as the stream's error.
        """
        core = self._core
        if not self._done:
            core.halt()
            core.wind_up()
        self._over()

    def _over(self, join: bool = True) -> None:
        """The stream is over for this reader: nothing is left for the finalizer to stop.

        Detaching it matters: its registry holds the core, and a failed core holds the
        exception, whose traceback holds the reader's frame and so this object.
        """
        if not self._done:
            self._done = True
            self._finalizer.detach()
        if join:
            self._join_pump()

    def _join_pump(self) -> None:
        # A pump blocked in a generator can't be interrupted; it closes the source
        # once the generator gives it control back (a daemon thread meanwhile).
        pump = self._core.pump
        if pump is not None and pump is not threading.current_thread():
            pump.join(self._close_timeout)

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

    @property
    def id(self) -> int:
        """The stream's number in this process: what its threads' names and log records
        (``record.stream_id``) carry."""
        return self._core.id

    @property
    def state(self) -> str:
        """``"running"``, ``"finished"``, ``"failed"`` or ``"cancelled"``."""
        return self._core.state

    def get_result(self) -> Any:
        """The :class:`AggregatedStream` so far (final once the stream has ended)."""
        if self._core.result is None:
            raise TypeError("this stream has no aggregation stage")
        return self._core.result()

    def threads(self) -> List[threading.Thread]:
        """The threads of this stream (for diagnostics and tests)."""
        return list(self._core.threads)

    def __repr__(self) -> str:
        return f"<ChunkStream {self._core.id} {self._core.name} {self._core.state}>"


ChunkStream.__module__ = "helixstream"


def set_lookahead(stream: ChunkStream, chunks: Optional[int]) -> None:
    """Let ``stream``'s source be read at most ``chunks`` items ahead of its reader
    from now on (None: as far as its queue allows). Only a pumped source is read
    ahead: the pump holds one item, so its queue takes ``chunks - 1``; at that point
    the pump thread *parks* (ends, keeping the item and leaving the source unread and
    open) rather than wait, so a stream nobody reads holds no thread. None starts a
    parked pump again. What is already queued stays."""
    core = stream._core
    start = None
    with core._lock:
        core.lookahead = chunks
        pipe = core.pipe
        if pipe is not None:
            pipe.set_limit(None if chunks is None else chunks - 1, park=chunks is not None)
        if chunks is None and core.parked and not core.stopping and core.state is RUNNING:
            core.parked = False  # a reader is back: the source is read again
            start = core._new_pump_locked()
    if start is not None:
        start.start()


def _let_go_of(core: _Core) -> None:
    """The finalizer of a stream nobody reads any more: it runs inside the garbage
    collector, in whatever thread, so it only marks the stream (a plain attribute) and
    hands the winding up to the janitor (a ``SimpleQueue.put``)."""
    core.abandoned = True
    _stop.post(core.abandon)


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
        prefetch: read the source ahead in a thread from the start (otherwise the
            reader's thread reads it, unless a stage needs a timer).
    """
    check_source(source)
    _stop.check_stop(stop)
    core = _Core(source, stages, stop, name, queue_size, result, prefetch, close_timeout)
    return ChunkStream(core, close_timeout)
