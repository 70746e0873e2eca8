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

import functools
import inspect
import itertools
import logging
import queue
import threading
import time
import weakref
from operator import length_hint
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

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
_STOPPED = object()  # the pump saw a stop
_NOTHING = object()  # no raw item in hand
_HANDLED = object()  # the hot loop is done with what it took
#: Iterators over what is already in memory: a read never blocks, so it needs neither
#: the ``in_source`` mark nor a thread for ``next_within``, and the hot loop takes
#: their items with a ``for`` loop (a third of the cost of ``next()`` in a ``try``).
_IN_MEMORY = frozenset({type(iter([])), type(iter(())), type(iter("")), type(iter("\u00e9"))})


def _ready(timeout: float) -> bool:
    """``wait_ready`` of an in-memory source: its next item is always there."""
    return True
_PARKED = object()  # the pump stopped at the lookahead, keeping the item it took


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _closeable(obj: Any) -> bool:
    return obj is not None and callable(getattr(obj, "close", None))


class _Core:
    """The shared state of one stream (threads hold this, never the ChunkStream)."""

    # Slots: the reader's and the pump's loops read and write these for every item,
    # and slot access stays fast (a plain instance would outgrow CPython's shared-key
    # dicts at this many attributes, and every access would become a dict lookup).
    __slots__ = (
        "id", "name", "source", "iterator", "user_stop", "stop", "queue_size",
        "close_timeout", "result", "state", "stopping", "abandoned", "source_done",
        "error", "close_error", "pipe", "pump", "threads", "deadline", "in_source",
        "_lock", "_closed_objects", "_released", "pipeline", "stages", "gen", "gen_lock",
        "done", "finalizer", "_unwatch", "lookahead", "parked", "held", "wait_ready",
        "texts", "__weakref__",
    )

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
            wait_ready
            if callable(wait_ready)
            else _ready if self.iterator.__class__ in _IN_MEMORY else None
        )
        self.user_stop = stop
        # internal: stages that wait (the rate limiter) are given it by ``bind``; made
        # only for those (an Event is a Condition, about 1 KB per stream)
        self.stop: Optional[threading.Event] = None
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
        self.texts = False  # see give_texts()
        self._lock = threading.Lock()
        self._closed_objects: List[int] = []
        self._released = False
        self.pipeline = Pipeline(stages)
        self.stages = self.pipeline.stages
        for stage in self.stages:
            bind = getattr(stage, "bind", None)
            if bind is not None:
                if self.stop is None:
                    self.stop = threading.Event()
                bind(self.stop)
        self.gen: Iterator[Any] = self._run()
        # taken by a wind-up from another thread, and by every next() after a close()
        self.gen_lock = threading.Lock()
        self.done = False  # over for the reader (ended, failed or closed)
        self.finalizer: Optional["weakref.finalize[Any, Any]"] = None  # the ChunkStream's
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
        stop = self.stop
        if stop is not None:
            stop.set()
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

    def wind_up(self) -> bool:
        """Close the pipeline in this thread, unless a thread is inside ``next()``: that
        thread winds it up itself, woken by ``halt``. False in that case.

        A reader's ``next()`` enters the generator without a lock, so "inside" is the
        generator's own state: ``close()`` of a running generator raises ValueError
        before running any of its code. Under the GIL, a reader that has taken the
        generator's ``__next__`` is inside it before any other thread runs; a reader
        that had not by then calls the locked ``next()`` (``ChunkStream.close`` swaps
        it in first) and waits here on ``gen_lock``.
        """
        if not self.gen_lock.acquire(blocking=False):
            return False  # another wind-up, or a reader's locked next(), is running
        try:
            gen = self.gen
            unstarted = inspect.getgeneratorstate(gen) == inspect.GEN_CREATED  # type: ignore[arg-type]
            try:
                gen.close()  # type: ignore[attr-defined]
            except ValueError as exc:
                if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                    return False  # raised by close() itself: the reader is inside
                raise
            if unstarted:  # closing it ran none of its code: wind up here
                self._finish_unstarted()
            return True
        finally:
            self.gen_lock.release()

    def over(self, join: bool) -> None:
        """The stream is over for its reader: nothing is left for the finalizer to stop.

        Detaching it matters: its registry holds the core, and a failed core holds the
        exception, whose traceback holds the reader's frame and so the ChunkStream.
        """
        self.done = True
        finalizer = self.finalizer
        if finalizer is not None:
            self.finalizer = None
            finalizer.detach()
        if join:
            self.join_pump()

    def join_pump(self) -> None:
        # A pump blocked in a generator can't be interrupted; it closes the source
        # once the generator gives it control back (a daemon thread meanwhile).
        with self._lock:
            pump = self.pump
        if pump is not None and pump is not threading.current_thread():
            pump.join(self.close_timeout)

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
            self._new_pump_locked()

    def _new_pump_locked(self) -> threading.Thread:
        """Start a pump (with the lock held: whoever reads ``self.pump`` under the lock,
        as ``join_pump`` does, finds a started thread; a join of one not started yet
        raises RuntimeError). The pump takes the lock only to park or end."""
        t = threading.Thread(
            target=self._pump,
            name=f"helixstream-{self.id}-{self.name}-source",
            daemon=True,
        )
        t.start()
        self.pump = t
        self.threads.append(t)
        return t

    def _put_or_park(self, pipe: Pipe, raw: Any) -> bool:
        """Put ``raw`` in the pipe, waiting while it is full; False when the pump parks
        instead: the pipe is at the lookahead and nobody reads (the item is kept for
        the next pump)."""
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
        user = self.user_stop
        parked = False
        try:
            held, self.held = self.held, _NOTHING
            if held is not _NOTHING:  # a pump parked with it: it goes first
                if not self._put_or_park(pipe, held):
                    parked = True
                    return
                if held.__class__ is StreamChunk and (held.done or held.error is not None):
                    raise StopIteration
            memory = self.iterator.__class__ in _IN_MEMORY
            pipe.lazy = memory  # this pump never waits for the source
            while True:
                over = self._pump_memory(pipe) if memory else self._pump_some(pipe, 64)
                if over is _STOPPED:
                    return
                if over is _PARKED:
                    parked = True
                    return
                if over is not None:
                    raise StopIteration  # the source said it is over: read no further
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
            if not parked:  # a parked pump leaves the source open, for the next one
                self._close_source()  # the pump is the thread that iterates the source

    def _pump_some(self, pipe: Pipe, count: int) -> Any:
        """Read up to ``count`` items of the source into the pipe; None, or _STOPPED,
        or the chunk by which the source said it is over.

        The pump's loop is cut into calls of this: CPython 3.11 specializes a
        function's bytecode only after it has been entered a few times, so a loop
        that never returned would run unspecialized (about twice the instructions).

        The pipe's fast path (Pipe.wake): append without its lock, and take the lock
        only to wake a waiting reader, or to wait (a plain put) while the pipe is full.
        ``room`` is what may be appended before the pipe is full, counted down here and
        looked up again when it runs out (the reader only ever makes more), or at every
        item while a lookahead is set (``set_lookahead``: the limit may be lowered). A stop
        sets ``stopping`` before it closes the pipe: the test at the top sees it.
        """
        source = self.iterator
        user = self.user_stop
        items = pipe._items  # noqa: SLF001 - the pipe's producer side
        append = items.append
        room = pipe.limit - len(items)
        for _ in range(count):
            if self.stopping:
                return _STOPPED
            if user is not None and user.is_set():
                self.halt()
                return _STOPPED
            self.in_source = True
            try:
                raw = next(source)
            finally:
                self.in_source = False
            if room <= 0 or pipe.park:  # (the limit may have been lowered: lookahead)
                room = pipe.limit - len(items)
            if room > 0:
                append(raw)
                room -= 1
                if pipe._getter_waits:  # noqa: SLF001
                    pipe.wake()
            elif not self._put_or_park(pipe, raw):  # waits while full; PipeClosed once closed
                return _PARKED
            if raw.__class__ is StreamChunk and (raw.done or raw.error is not None):
                return raw
        return None

    def _pump_memory(self, pipe: Pipe) -> Any:
        """:meth:`_pump_some` for a source in memory (a list, a tuple, a str: no read
        blocks): as many items as the pipe has room for, sliced off in one call and
        appended at once; the stop is checked once per slice. Raises StopIteration at
        the source's end."""
        if self.stopping:
            return _STOPPED
        user = self.user_stop
        if user is not None and user.is_set():
            self.halt()
            return _STOPPED
        source = self.iterator
        items = pipe._items  # noqa: SLF001 - the pipe's producer side
        room = pipe.limit - len(items)
        if room <= 0:  # full: wait for room with the next item (or park with it)
            raw = next(source, _NOTHING)
            if raw is _NOTHING:
                raise StopIteration
            if not self._put_or_park(pipe, raw):
                return _PARKED
            batch = [raw]
        else:
            batch = list(itertools.islice(source, room))
            if not batch:
                raise StopIteration
            if StreamChunk in set(map(type, batch)):  # the source may say it is over
                for k, raw in enumerate(batch):
                    if raw.__class__ is StreamChunk and (raw.done or raw.error is not None):
                        del batch[k + 1 :]
                        break
            items.extend(batch)
            if pipe._getter_waits:  # noqa: SLF001
                pipe.wake()
        raw = batch[-1]
        if raw.__class__ is StreamChunk and (raw.done or raw.error is not None):
            return raw
        return None

    def _run(self) -> Iterator[Any]:
        """The pipeline with its end: the one generator a stream's reader drives.

        It yields what the last stage releases, item by item (and IDLE: the reader's
        deadline passed), then flushes the stages; the failure and stop handling is
        at the bottom. One frame does it all, so an item costs no generator hand-offs:
        the source is read here (inline, or from the pump's latest batch; the first
        ``next_within`` may switch from one to the other between two items), and what a
        stage releases at once waits on a stack of (iterator, next stage) and goes on
        depth first, checked for a stop item by item. Shortcuts, each equivalent to
        calling the stage: a first stage may offer a text path for ``str`` items (the
        buffer's ``add``: ``text_path()``), a middle stage may take a ``str`` it passes
        on unchanged (``note_text``, or the progress stage's ``text_watch``), and a last
        stage may turn a ``str`` into its chunk (the aggregate's ``chunk_of``; its
        ``text_of`` records it and hands the ``str`` back, for a reader that asked for
        texts: ``give_texts``).
        """
        pipeline = self.pipeline
        try:
            pipeline.begin(self.stopped)
            stages = pipeline.stages
            n = len(stages)
            ticks = pipeline._ticks if pipeline.timed else None  # noqa: SLF001
            fault = pipeline.fault
            stopped = self.stopped
            user = self.user_stop
            source = self.iterator
            wait_ready = self.wait_ready  # None unless the source can wait (next_within)
            decode = Decoder()
            decoding = False  # bytes came: every item goes to the decoder from now on
            index = 0  # the decoder's item count, kept here while it is not in use
            batch: Iterator[Any] = iter(())  # the rest of the pump's latest batch
            stack: List[Any] = []  # [iterator, stage index] of items released at once
            refresh = n > 0 and callable(getattr(stages[0], "text_path", None))
            head, limit = _text_path(stages[0]) if refresh else (None, 0)
            # an internal reader that wants a text chunk as its ``str`` (``texts``: the
            # SSE feed) gets it so, recorded by the aggregate all the same (``text_of``)
            texts = self.texts
            tail = getattr(stages[-1], "text_of" if texts else "chunk_of", None) if n else None
            tail_at = n - 1 if tail is not None else -1
            notes = [getattr(stage, "note_text", None) for stage in stages]
            if not any(notes):
                notes = []
            # the two usual shapes, done in a few lines: buffer ▸ aggregate, and
            # buffer ▸ a watcher (progress: text_watch(), due, on_due()) ▸ aggregate
            pair = head is not None and tail is not None and n == 2
            watched: Any = None
            if head is not None and tail is not None and n == 3:
                watch = getattr(stages[1], "text_watch", None)
                if watch is not None:
                    watched = stages[1]
                    watch_append, watch_clock = watch()

                    def watch_one(item: str) -> None:
                        # the watcher's text_watch: what calling it with ``item`` does
                        try:
                            watch_append(item)
                            if watch_clock() >= watched.due:
                                watched.on_due()
                        except BaseException as exc:
                            raise fault(1, exc)  # noqa: B904 - the same, or a PipelineError
            # the hot loop's shapes: text into the buffer, then the aggregate's chunk,
            # with at most a watcher between them, and no timers
            fast = ticks is None and (pair or watched is not None)
            sink_of = getattr(stages[-1], "text_sink", None) if tail is not None else None
            sink: Optional[List[str]] = None
            at_end = False  # the source is over: its last item has been taken
            finished = False  # ... and what the decoder held has gone through too
            item: Any = None
            while True:
                if stack:
                    top = stack[-1]
                    try:
                        item = next(top[0])
                    except StopIteration:
                        stack.pop()
                        continue
                    except BaseException as exc:  # a stage's lazily released items
                        raise fault(top[1] - 1, exc)  # noqa: B904 - the same, or a PipelineError
                    if self.stopping or user is not None and stopped():
                        raise Stopped
                    i = top[1]
                else:
                    # the previous source item is all through: timers, then the next item
                    if ticks is not None:
                        yield from ticks(stopped)
                    if decoding and decode.error is not None:
                        raise decode.error
                    if at_end:
                        if finished:
                            break
                        finished = True
                        self.source_done = True
                        item = decode.finish()
                        if not item:
                            break
                        i = 0
                    else:
                        raw = _NOTHING
                        if fast and not decoding:
                            # The hot loop: text pieces, buffer ▸ (watcher ▸) aggregate.
                            # It leaves with ``raw`` for the general way below, with
                            # _NOTHING to have it read (the batch ran out), or with
                            # _HANDLED when it is done with what it took.
                            inline = self.pipe is None
                            # A batch of the pump's, or a source in memory, is read with
                            # a ``for`` loop; a source that may block, through
                            # _read_inline (each read marked for a stop to interrupt).
                            # The items it takes are counted once it leaves (for the
                            # decoder's messages): by the position of a source in memory
                            # (a list may grow meanwhile), by how many of the pump's
                            # batch are left, or by _read_inline's count of its reads.
                            reads: Optional[List[int]] = None
                            if not inline:
                                feed = batch
                                unread = length_hint(feed)
                            elif source.__class__ in _IN_MEMORY:
                                feed = source
                                unread = -_position(feed)
                            else:
                                reads = [0]
                                feed = _read_inline(self, source, reads)
                            chunks = len(sink) if sink is not None else 0
                            for raw in feed:
                                if self.stopping or user is not None and stopped():
                                    raise Stopped
                                if raw.__class__ is not str or len(raw) > limit:
                                    break
                                if not raw:
                                    continue
                                try:
                                    out = head(raw)  # type: ignore[misc]
                                except BaseException as exc:
                                    raise fault(0, exc)  # noqa: B904 - the same, or a PipelineError
                                if not out:
                                    continue
                                if len(out) == 1:
                                    item = out[0]
                                elif sink is None:  # before the first chunk: the general way
                                    stack.append((iter(out), 1))
                                    raw = _HANDLED
                                    break
                                else:
                                    # a piece that completed several units: each but the
                                    # last is handed over here, a stop checked after
                                    # each; the last goes on below (leaving the loop for
                                    # the stack would cost a StopIteration a piece)
                                    for item in out[:-1]:
                                        if watched is not None:
                                            watch_one(item)
                                        sink.append(item)
                                        yield item if texts else StreamChunk(item, chunks)
                                        chunks += 1
                                        if self.stopping or user is not None and stopped():
                                            raise Stopped
                                    item = out[-1]
                                if watched is not None:
                                    watch_one(item)
                                if sink is not None:  # the aggregate's chunk_of, in line
                                    sink.append(item)
                                    yield item if texts else StreamChunk(item, chunks)
                                    chunks += 1
                                else:
                                    try:
                                        item = tail(item)  # type: ignore[misc]
                                    except BaseException as exc:
                                        raise fault(tail_at, exc)  # noqa: B904 - the same, or a PipelineError
                                    if sink_of is not None:
                                        sink = sink_of()
                                        if sink is not None:
                                            chunks = len(sink)
                                    yield item
                            else:
                                if inline:  # the source is over
                                    if stopped():
                                        raise Stopped  # stopped while it ended
                                    at_end = True
                                    raw = _HANDLED
                                else:
                                    raw = _NOTHING  # the general way waits for more
                            if reads is not None:
                                index += reads[0]
                            elif inline:
                                if not at_end:  # (once it is over, nothing is counted)
                                    index += _position(feed) + unread
                            else:
                                index += unread - length_hint(feed)
                            if raw is not _HANDLED and raw is not _NOTHING:
                                index -= 1  # taken, but left for the general way, which counts it
                            if raw is _HANDLED:
                                continue
                        elif self.stopping or user is not None and stopped():
                            raise Stopped
                        if raw is not _NOTHING:
                            pass  # taken by the hot loop
                        elif self.pipe is None:  # inline: the reader reads the source
                            deadline = self.deadline
                            self.in_source = True
                            try:
                                if deadline is not None and wait_ready is not None:
                                    # next_within(): wait for the source until the
                                    # deadline, in this thread (a close from another
                                    # thread closes the source, which ends the wait)
                                    left = deadline - time.monotonic()
                                    if not wait_ready(left if left > 0.0 else 0.0):
                                        raw = _NOTHING  # nothing by the deadline
                                    elif self.stopping or user is not None and stopped():
                                        raw = _NOTHING  # stopped while it waited: unread
                                    else:
                                        raw = next(source)
                                else:
                                    raw = next(source)
                            except StopIteration:
                                if stopped():
                                    raise Stopped from None  # stopped while it ended
                                at_end = True
                                continue
                            except GeneratorExit as exc:
                                raise unexpected(exc, "the source") from exc
                            finally:
                                self.in_source = False
                            if self.stopping or user is not None and stopped():
                                raise Stopped  # it arrived after the stop: not delivered
                            if raw is _NOTHING:
                                yield IDLE
                                continue
                        else:  # pumped: the next raw item of the pump's batch
                            raw = next(batch, _NOTHING)
                            if raw is _NOTHING:
                                got = self._next_batch(self.pipe)
                                if got.__class__ is not list:
                                    if got is IDLE:
                                        yield got
                                    elif ticks is not None:
                                        yield from ticks(stopped)
                                    continue
                                batch = iter(got)
                                continue
                        if raw is END:
                            at_end = True
                            continue
                        if raw.__class__ is _Failure:
                            failure = raw.exc
                            if isinstance(failure, GeneratorExit):
                                raise unexpected(failure, "the source") from failure
                            raise failure
                        if raw.__class__ is str and not decoding:
                            index += 1
                            if not raw:
                                continue
                            if head is not None and len(raw) <= limit:
                                # the hot path: text into the buffer
                                try:
                                    out = head(raw)
                                except BaseException as exc:
                                    raise fault(0, exc)  # noqa: B904 - the same, or a PipelineError
                                if not out:
                                    continue
                                if len(out) != 1:
                                    stack.append((iter(out), 1))
                                    continue
                                item = out[0]
                                if pair:
                                    try:
                                        item = tail(item)  # type: ignore[misc]
                                    except BaseException as exc:
                                        raise fault(1, exc)  # noqa: B904 - the same, or a PipelineError
                                    yield item
                                    continue
                                if watched is not None:
                                    watch_one(item)
                                    try:
                                        item = tail(item)  # type: ignore[misc]
                                    except BaseException as exc:
                                        raise fault(2, exc)  # noqa: B904 - the same, or a PipelineError
                                    yield item
                                    continue
                                i = 1
                            else:
                                item = raw
                                i = 0
                        else:
                            if decoding:
                                item = decode(raw)
                            else:
                                decode.index = index
                                item = decode(raw)
                                index = decode.index
                                decoding = decode._decoder is not None  # noqa: SLF001
                            if item.__class__ is StreamChunk:
                                if item.error is not None:
                                    raise item.error
                                if item.done:
                                    at_end = True  # the source said it is over
                                    if not (item.content or item.metadata or item.tokens):
                                        continue
                            elif not item:
                                continue
                            i = 0
                # ``item`` enters stage ``i``
                while i < n:
                    if item.__class__ is str:
                        if i == tail_at:
                            if sink is not None:  # the aggregate's chunk_of, in line
                                sink.append(item)
                                yield item if texts else StreamChunk(item, len(sink) - 1)
                                break
                            try:
                                item = tail(item)  # type: ignore[misc]
                            except BaseException as exc:
                                raise fault(i, exc)  # noqa: B904 - the same, or a PipelineError
                            if sink_of is not None:
                                sink = sink_of()
                            yield item
                            break
                        if notes:
                            note = notes[i]
                            if note is not None:
                                try:
                                    note(item)
                                except BaseException as exc:
                                    raise fault(i, exc)  # noqa: B904 - the same, or a PipelineError
                                i += 1
                                continue
                    try:
                        out = stages[i](item)
                    except BaseException as exc:
                        raise fault(i, exc)  # noqa: B904 - the same, or a PipelineError
                    i += 1
                    if i == 1 and refresh:
                        head, limit = _text_path(stages[0])  # its state may allow it again, or not
                    if out.__class__ is list:
                        if not out:
                            break
                        if len(out) == 1:
                            item = out[0]
                            continue
                    elif out is None:
                        break
                    stack.append((iter(out), i))
                    break
                else:
                    yield item
            yield from pipeline.finish()
        except (GeneratorExit, Stopped) as exc:
            # stopped, or the reader closed the stream: nothing more is delivered
            self._set_state(CANCELLED)
            pipeline.abort(None)
            self._end_source_early()
            self._release()
            if exc.__class__ is GeneratorExit:
                raise  # closed: the closing thread does the rest
            self.over(join=True)
            return
        except BaseException as exc:  # noqa: BLE001 - delivered to the reader
            if self.stopping and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self._set_state(CANCELLED)
                pipeline.abort(None)
                self._end_source_early()
                self._release()
                self.over(join=True)
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
            # interrupted (Ctrl-C): no waiting for the pump on the way out
            self.over(join=not interrupted)
            raise error
        self._set_state(FINISHED)
        self._close_source()
        self._release()
        self.over(join=True)

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
                    if not len(pipe):
                        pipe.nudge()  # a lazy pump waits for the reader to find it empty
                        return IDLE
                    wait = 0.0  # past the deadline, but items are queued: take them
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


class ChunkStream:
    """The output of a stream: an iterator of :class:`StreamChunk` that can be closed.

    Iterate it, or call :meth:`close` (or leave a ``with`` block) to stop early; a
    stream that is garbage collected is closed too. Closing ends every thread of the
    stream and closes the source (stopping the upstream request). An exception raised
    by the source or a stage is raised here, after every chunk before it.
    """

    # ``__next__`` is a slot holding the pipeline generator's own ``__next__``: a
    # ``next()`` goes straight into the generator, with no Python frame of ours and no
    # lock (the generator does the end's bookkeeping itself). A ``close()`` from
    # another thread first swaps it for a ``next()`` that waits for the wind-up under
    # the stream's lock, then closes the generator unless the reader is inside it
    # (see ``_Core.wind_up``).
    __slots__ = ("__next__", "_core", "_finalizer", "__weakref__", "__dict__")

    if TYPE_CHECKING:

        def __next__(self) -> StreamChunk: ...

    def __init__(self, core: _Core, close_timeout: float = 1.0) -> None:
        self._core = core
        core.close_timeout = close_timeout
        self.__next__ = core.gen.__next__  # type: ignore[method-assign]
        self._finalizer = core.finalizer = weakref.finalize(self, _let_go_of, core)

    def __iter__(self) -> "ChunkStream":
        return self

    def next_within(self, timeout: float) -> Optional[StreamChunk]:
        """The next chunk, or None if none arrives within ``timeout`` seconds.

        Raises ``StopIteration`` at the end of the stream, and the stream's error if it
        failed, like ``next()``. Server-Sent Events use this to send keep-alives. The
        first call moves the reading of the source to a thread of its own, unless the
        source can wait for its next item with a timeout (its iterator has
        ``wait_ready(timeout) -> bool``, as :class:`SimulatedLLM` and
        :class:`~helixstream.sources.Channel` do), or is a ``list``, ``tuple`` or
        ``str`` (in memory, it never waits): then this thread waits on it.
        """
        return self._next_by(time.monotonic() + max(0.0, timeout))

    def _next_by(self, deadline: float) -> Optional[StreamChunk]:
        """:meth:`next_within` up to a ``time.monotonic()`` deadline (for callers that
        already hold one: Server-Sent Events' pull)."""
        core = self._core
        if core.pipe is None and core.wait_ready is None and not core.done:
            core.start_pump()
        core.deadline = deadline
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
        if not core.done:
            core.halt()
            # from now on a next() waits while a wind-up runs, instead of finding the
            # generator busy
            self.__next__ = functools.partial(_locked_next, core)  # type: ignore[method-assign]
            if not core.wind_up():
                # the reader is inside next(): it winds the stream up itself (halt woke
                # it); should it never come back, the finalizer still will
                core.done = True
                core.join_pump()
                return
        core.over(join=True)

    def __enter__(self) -> "ChunkStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once the stream has ended, failed, or been closed."""
        return self._core.done

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


def _read_inline(core: _Core, source: Iterator[Any], reads: List[int]) -> Iterator[Any]:
    """The hot loop's items of a source read in the reader's thread, whose reads may
    block: each read is marked ``in_source`` (a stop closes what can be closed), none
    starts once a stop was asked for, and a source raising GeneratorExit is an error.
    It ends with the source; it yields _NOTHING, then ends, once the source is no longer
    the hot loop's to read: ``next_within`` started a pump, or waits for the next item
    (the general way does that). ``reads[0]`` counts the items it read."""
    user = core.user_stop
    waits = core.wait_ready is not None
    while True:
        if core.pipe is not None or waits and core.deadline is not None:
            yield _NOTHING
            return
        if core.stopping or user is not None and core.stopped():
            raise Stopped
        core.in_source = True
        try:
            raw = next(source)
        except StopIteration:
            return
        except GeneratorExit as exc:
            raise unexpected(exc, "the source") from exc
        finally:
            core.in_source = False
        reads[0] += 1
        yield raw


def _position(iterator: Any) -> int:
    """How many items the iterator of a list, tuple or str has given (0 once it is
    exhausted: it no longer knows). Not ``length_hint``: a list may grow meanwhile."""
    state = iterator.__reduce__()
    return state[2] if len(state) > 2 else 0


def _text_path(stage: Any) -> Tuple[Optional[Callable[[str], List[Any]]], int]:
    """A stage's text path: ``(function, longest text it takes)``, or ``(None, 0)``.

    A stage may offer ``text_path()``, returning a function equivalent to calling the
    stage with a ``str`` of at most that many characters (or None while its state does
    not allow one); the engine asks again after every other call of the stage."""
    path = stage.text_path()
    if path is None:
        return None, 0
    return path  # type: ignore[no-any-return]


def _locked_next(core: _Core) -> Any:
    """``next()`` once a close was asked for: it waits while another thread winds the
    stream up, then finds the generator closed (StopIteration)."""
    with core.gen_lock:
        return core.gen.__next__()


def give_texts(stream: ChunkStream) -> None:
    """An internal reader (the SSE feed) asks for each text chunk as its ``str``, not a
    :class:`StreamChunk` it would only unpack: the aggregate records it all the same
    (``text_of``), and a chunk with more than text still comes as a chunk. Before the
    first ``next()``; only where the last stage is an aggregate with ``text_of``."""
    core = stream._core  # noqa: SLF001 - same package
    if core.stages and callable(getattr(core.stages[-1], "text_of", None)):
        core.texts = True


def set_lookahead(stream: ChunkStream, chunks: Optional[int]) -> None:
    """Let ``stream``'s source be read at most ``chunks`` items ahead of its reader
    from now on (None: as far as its queue allows). Only a pumped source is read
    ahead: the pump holds one item, so its queue takes ``chunks - 1``; at that point
    the pump thread *parks* (ends, keeping the item and leaving the source unread and
    open) rather than wait, so a stream nobody reads holds no thread. None starts a
    parked pump again. What is already queued stays."""
    core = stream._core
    with core._lock:
        core.lookahead = chunks
        pipe = core.pipe
        if pipe is not None:
            pipe.set_limit(None if chunks is None else chunks - 1, park=chunks is not None)
        if chunks is None and core.parked and not core.stopping and core.state is RUNNING:
            # a reader is back: the source is read again (parked until the pump is
            # started: should the start fail, a close still closes the source)
            core._new_pump_locked()
            core.parked = False


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
