"""Progress: a thread-safe tracker, throttled callbacks, and the progress stage."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional, Tuple

import attrs

from ._durations import check_number, parse_seconds
from ._tokens import RememberLast, RunningEstimate, TokenCounter, estimate_tokens, is_estimator

__all__ = [
    "StreamProgress",
    "ProgressTracker",
    "ProgressCallback",
    "ThrottledCallback",
    "throttled_callback",
    "ProgressStage",
]


@attrs.frozen(slots=True, weakref_slot=False)
class StreamProgress:
    """A snapshot of a stream's progress.

    Attributes:
        tokens_received: tokens so far (reported by the source, else counted).
        chunks_received: chunks so far.
        characters_received: characters so far.
        estimated_tokens: the expected total, 0 when unknown.
        elapsed: seconds since the stream (or the tracker) started.
        tokens_per_second: generation speed: tokens after the first one, divided by
            the time since the first one arrived (so the wait for the first token does
            not drag it down); 0.0 until it can be measured.
        percent: ``tokens_received / estimated_tokens`` in percent, at most 100; None
            without an estimate. 100 once the stream has ended complete; a stream that
            was stopped or failed keeps the percent it had reached.
        eta: estimated seconds until ``estimated_tokens`` are reached; None without an
            estimate or a speed; 0.0 once the stream has ended complete, None once it
            was stopped or failed.
        time_to_first_token: seconds from the start to the first token; None before.
        done: True for the final report of a stream (ended, failed or stopped).
        cancelled: True in the final report of a stream that was stopped early.
        error: the exception that ended the stream, in its final report; else None.

    In a stream, "the start" is the reader's first request for a chunk, not the
    creation of the stream (idle time before the first ``next()`` is not counted).
    """

    tokens_received: int = 0
    chunks_received: int = 0
    characters_received: int = 0
    estimated_tokens: int = 0
    elapsed: float = 0.0
    tokens_per_second: float = 0.0
    percent: Optional[float] = None
    eta: Optional[float] = None
    time_to_first_token: Optional[float] = None
    done: bool = False
    cancelled: bool = False
    error: Optional[BaseException] = None


#: What a progress callback looks like.
ProgressCallback = Callable[[StreamProgress], Any]


class _Draft:
    """A :class:`StreamProgress` being made: the same slots, in the same order, but
    writable. Filled in, it becomes one by having its class assigned (CPython allows
    that between classes of the same layout). A frozen attrs class sets each field
    through ``object.__setattr__`` in ``__init__``: 13,200 instructions for the twelve
    fields, against 3,900 this way, and a stream makes several reports a second."""

    __slots__ = tuple(f.name for f in attrs.fields(StreamProgress))
    tokens_received: int
    chunks_received: int
    characters_received: int
    estimated_tokens: int
    elapsed: float
    tokens_per_second: float
    percent: Optional[float]
    eta: Optional[float]
    time_to_first_token: Optional[float]
    done: bool
    cancelled: bool
    error: Optional[BaseException]


def _drafts_work() -> bool:
    """Can a _Draft become a StreamProgress here (this interpreter, this attrs)?"""
    try:
        values = (1, 2, 3, 4, 5.0, 6.0, 7.0, 8.0, 9.0, True, False, None)
        draft: Any = _Draft()
        for name, value in zip(_Draft.__slots__, values):
            setattr(draft, name, value)
        draft.__class__ = StreamProgress
        return type(draft) is StreamProgress and bool(draft == StreamProgress(*values))
    except Exception:  # noqa: BLE001 - any failure: make them the usual way
        return False


_DRAFTS = _drafts_work()


class ProgressTracker:
    """Counts what a stream delivered and turns it into :class:`StreamProgress`.

    Thread-safe: updates and snapshots may come from different threads.

    Args:
        estimated_tokens: the expected total (0: unknown).
        clock: the time source (default ``time.monotonic``); inject a fake one in tests.
        counter: counts tokens for :meth:`update` when no count is given.
    """

    def __init__(
        self,
        estimated_tokens: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        counter: Optional[TokenCounter] = None,
    ) -> None:
        self._clock = clock
        self._count = counter or estimate_tokens
        # the estimator counts the text as it comes, so the final count of the whole
        # text costs nothing more (other counters count the whole text at the end)
        self._piecewise = is_estimator(self._count)
        self._lock = threading.Lock()
        self._estimated = check_number(estimated_tokens, "estimated_tokens", integer=True)
        self.reset()

    def reset(self) -> None:
        """Start again from zero, now (the estimate is kept)."""
        with self._lock:
            self._start = self._clock()
            self._tokens = 0
            self._reported = 0  # tokens the source reported
            self._uncounted: List[str] = []  # text whose tokens are counted when asked
            self._counted: List[str] = []  # text counted so far, batch by batch
            # the estimate of all the text counted so far, added to batch by batch
            self._running = RunningEstimate() if self._piecewise else None
            self._running_count = 0  # its count when last asked
            self._chunks = 0
            self._chars = 0
            self._first_at: Optional[float] = None
            self._first: Any = 0  # the first tokens: a count, or text to count
            self._done = False
            self._cancelled = False
            self._error: Optional[BaseException] = None
            self._usage: Optional[int] = None  # a total the source reported (usage)

    def set_estimated_tokens(self, n: int) -> None:
        """Set the expected total number of tokens (0: unknown)."""
        n = check_number(n, "estimated_tokens", integer=True)
        with self._lock:
            self._estimated = n

    def update_tokens(self, n: int) -> None:
        """Record ``n`` more tokens."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"token count must be an int >= 0 (got {n!r})")
        with self._lock:
            self._tokens += n
            self._reported += n
            if n and self._first_at is None:
                self._first_at = self._clock()
                self._first = n

    def update(self, text: str, tokens: Optional[int] = None) -> None:
        """Record one chunk: its text, and its token count if known.

        Text without a count is counted when progress is asked for, all at once: a
        token counter is more accurate, and much cheaper, on whole text than on
        fragments. (``estimate_tokens``, the default, gives the count of all the text
        so far, as if counted whole.)
        """
        with self._lock:
            self._record(text, tokens)

    def _update_chunks(self, chunks: List[Any]) -> None:
        """Record several chunks (``str`` or :class:`StreamChunk`) at once."""
        with self._lock:
            record = self._record
            for chunk in chunks:
                if chunk.__class__ is str:
                    record(chunk, None)
                else:
                    record(chunk.content, chunk.tokens)
                    if chunk.metadata:
                        self._note_usage(chunk.metadata.get("usage"))

    def _update_texts(self, texts: List[str]) -> None:
        """Record several chunks that are all ``str`` (without reported counts): what
        :meth:`_record` does for each, done for the list at once."""
        with self._lock:
            self._record_texts(texts)

    def _report_texts(self, texts: List[str]) -> StreamProgress:
        """:meth:`_update_texts`, then :meth:`get_progress`, under one lock (a stream's
        progress stage reports several times a second)."""
        with self._lock:
            self._record_texts(texts)
            self._count_pending()
            return self._snapshot()

    def _record_texts(self, texts: List[str]) -> None:
        # called with the lock held; the text is kept joined (one string per call, not
        # one per chunk), uncounted until counted (a counter that raises leaves it for
        # the end)
        self._chunks += len(texts)
        text = "".join(texts)
        if text:
            self._chars += len(text)
            self._uncounted.append(text)
            if self._first_at is None:
                self._first_at = self._clock()
                self._first = next(filter(None, texts))

    def _note_usage(self, usage: Any) -> None:
        # the same rule as the aggregate's: the service's own count wins
        total = usage.get("completion_tokens") if isinstance(usage, dict) else usage
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            self._usage = total

    def _record(self, text: str, tokens: Optional[int]) -> None:
        # called with the lock held
        self._chunks += 1
        self._chars += len(text)
        if tokens is None:
            if text:
                self._uncounted.append(text)
                if self._first_at is None:
                    self._first_at = self._clock()
                    self._first = text
        else:
            self._tokens += tokens
            self._reported += tokens
            if tokens and self._first_at is None:
                self._first_at = self._clock()
                self._first = tokens

    def _count_pending(self) -> int:
        # called with the lock held
        if self._uncounted:
            text = "".join(self._uncounted)
            running = self._running
            n = running.add(text) if running is not None else -1
            if n >= 0:  # the text so far, as the estimator counts it whole
                self._tokens += n - self._running_count
                self._running_count = n
            else:
                self._tokens += self._count(text)
            self._counted.extend(self._uncounted)
            self._uncounted = []
        if self._first.__class__ is str:
            self._first = self._count(self._first)
        return self._tokens

    def finish(self) -> StreamProgress:
        """Mark the stream done and return the final progress.

        The final count of the text without reported counts is the whole text's, the
        one the stream's aggregate gives (counting batch by batch differs a little
        where batches cut words). With the default counter, ``estimate_tokens``, every
        count already is the whole text's so far, made batch by batch as it came, so
        the end costs no second count; another counter counts the whole text again.
        """
        progress, error = self._finish()
        if error is not None:
            raise error
        return progress

    def _finish(
        self, cancelled: bool = False, failure: Optional[BaseException] = None
    ) -> "tuple[StreamProgress, Optional[BaseException]]":
        """Like :meth:`finish`, but a failing token counter is returned, not raised: the
        final progress (with the tokens counted so far) is still made."""
        error: Optional[BaseException] = None
        with self._lock:
            self._done = True
            self._cancelled = cancelled
            self._error = failure
            whole = self._counted + self._uncounted
            try:
                running = self._running
                n = running.add("".join(self._uncounted)) if running is not None else -1
                if n >= 0:  # the whole text's count, made as it came
                    self._running_count = n
                    counter = self._count
                    if isinstance(counter, RememberLast):
                        counter.remember("".join(whole), n)  # the aggregate's count: free
                else:
                    text = "".join(whole)
                    n = self._count(text) if text else 0
                self._tokens = self._reported + n
                self._counted = whole
                self._uncounted = []
                if self._first.__class__ is str:
                    self._first = self._count(self._first)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                error = exc
            return self._snapshot(), error

    def get_progress(self) -> StreamProgress:
        """A snapshot of the progress now."""
        with self._lock:
            self._count_pending()
            return self._snapshot()

    def _snapshot(self) -> StreamProgress:
        # called with the lock held; counts nothing
        now = self._clock()
        elapsed = max(0.0, now - self._start)
        tokens = self._tokens if self._usage is None else self._usage
        first = self._first if self._first.__class__ is not str else 0
        est = self._estimated
        rate = 0.0
        if self._first_at is not None:
            span = now - self._first_at
            after_first = tokens - first
            if span > 0 and after_first > 0:
                rate = after_first / span
        percent: Optional[float] = None
        eta: Optional[float] = None
        complete = self._done and not self._cancelled and self._error is None
        if est > 0:
            percent = 100.0 if complete else min(100.0, tokens * 100.0 / est)
            if complete:
                eta = 0.0
            elif rate > 0 and not self._done:
                eta = max(0, est - tokens) / rate
        elif complete:
            percent = 100.0 if tokens else None
            eta = 0.0
        first_at = self._first_at
        if _DRAFTS:
            p: Any = _Draft()
            p.tokens_received = tokens
            p.chunks_received = self._chunks
            p.characters_received = self._chars
            p.estimated_tokens = est
            p.elapsed = elapsed
            p.tokens_per_second = rate
            p.percent = percent
            p.eta = eta
            p.time_to_first_token = None if first_at is None else first_at - self._start
            p.done = self._done
            p.cancelled = self._cancelled
            p.error = self._error
            p.__class__ = StreamProgress
            return p  # type: ignore[no-any-return]
        # positional, in the fields' order (keywords cost a third more)
        return StreamProgress(
            tokens,  # tokens_received
            self._chunks,  # chunks_received
            self._chars,  # characters_received
            est,  # estimated_tokens
            elapsed,
            rate,  # tokens_per_second
            percent,
            eta,
            None if self._first_at is None else self._first_at - self._start,  # time_to_first_token
            self._done,
            self._cancelled,
            self._error,
        )


class ThrottledCallback:
    """Calls ``callback`` at most once per ``interval`` seconds.

    The first call goes through at once; later calls inside the interval are held back,
    keeping only the newest value, which :meth:`flush` delivers. A progress marked
    ``done`` always goes through. Thread-safe.
    """

    def __init__(
        self,
        callback: Callable[[Any], Any],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self.callback = callback
        self.interval = parse_seconds(interval, "interval")
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Optional[float] = None
        self._held: Any = None
        self._has_held = False

    def __call__(self, value: Any) -> None:
        with self._lock:
            now = self._clock()
            final = getattr(value, "done", False)
            if not final and self._last is not None and now - self._last < self.interval:
                self._held = value
                self._has_held = True
                return
            self._last = now
            self._held = None
            self._has_held = False
        self.callback(value)

    def due(self) -> bool:
        """Would a value passed now go through at once? (Lets callers skip building it.)"""
        last = self._last
        return last is None or self._clock() - last >= self.interval

    @property
    def pending(self) -> bool:
        """A value is held back, waiting for :meth:`flush`."""
        return self._has_held

    def time_left(self) -> Optional[float]:
        """Seconds until the held value may be delivered, or None if none is held."""
        with self._lock:
            if not self._has_held or self._last is None:
                return None
            return self._last + self.interval - self._clock()

    def flush(self) -> None:
        """Deliver the value held back, if any."""
        with self._lock:
            if not self._has_held:
                return
            value = self._held
            self._held = None
            self._has_held = False
            self._last = self._clock()
        self.callback(value)


def throttled_callback(
    callback: Callable[[Any], Any], interval: float, clock: Callable[[], float] = time.monotonic
) -> ThrottledCallback:
    """Wrap ``callback`` so it runs at most once per ``interval`` (seconds or "100ms").

    A value with ``done=True`` (a stream's final progress) always goes through.
    """
    return ThrottledCallback(callback, interval, clock)


class ProgressStage:
    """Tracks the chunks going through and reports progress to a callback.

    The callback runs at most once per ``interval`` and once more, always, with the
    final progress (``done=True``) when the stream ends, fails or is stopped. A
    callback that raises ends the stream with its exception, like a failing stage.
    """

    name = "progress"
    #: a failed stream gets its final report from ``abort(error)``, not ``flush()``
    flush_on_failure = False

    def __init__(
        self,
        callback: ProgressCallback,
        interval: float = 0.1,
        estimated_tokens: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        counter: Optional[TokenCounter] = None,
    ) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self.tracker = ProgressTracker(estimated_tokens, clock=clock, counter=counter)
        # ``due`` throttles the reports: the callback runs when one is due, or at the end
        self._notify = callback
        self._clock = clock
        self._interval = parse_seconds(interval, "interval")
        self.due = float("-inf")  # when the callback may run again
        self._pending: List[Any] = []  # chunks not yet given to the tracker
        self._only_text = True  # ... and all of them are str
        self._final_sent = False

    def __call__(self, item: Any) -> List[Any]:
        # Note the chunk; hand the tracker everything at once when a report is due (the
        # first chunk's report goes out at once).
        if item.__class__ is not str:
            self._only_text = False
        self._pending.append(item)
        if self._clock() >= self.due:
            self.on_due()
        return [item]

    def note_text(self, text: str) -> None:
        """For the engine: calling the stage with the ``str`` ``text`` releases it
        unchanged, so the engine passes it on itself."""
        self._pending.append(text)
        if self._clock() >= self.due:
            self.on_due()

    def text_watch(self) -> Tuple[Callable[[str], None], Callable[[], float]]:
        """For the engine's hot path, the same as :meth:`note_text` in its own frame:
        ``(append, clock)``; the engine appends the text, then calls :meth:`on_due`
        once ``clock() >= self.due``."""
        return self._pending.append, self._clock

    def _catch_up(self) -> None:
        pending = self._pending
        if pending:
            batch = pending[:]
            pending.clear()  # the same list: the engine may hold its append
            if self._only_text:
                self.tracker._update_texts(batch)  # noqa: SLF001 - same module
            else:
                self._only_text = True
                self.tracker._update_chunks(batch)  # noqa: SLF001 - same module

    def on_due(self) -> None:
        """A report is due: hand the tracker what came since the last one, and report."""
        pending = self._pending
        if self._only_text:
            batch = pending[:]
            pending.clear()  # first (a counter may raise); the engine holds its append
            progress = self.tracker._report_texts(batch)  # noqa: SLF001 - same module
        else:
            self._catch_up()
            progress = self.tracker.get_progress()
        self.due = self._clock() + self._interval
        self._notify(progress)

    def start(self) -> None:
        """The reader asked for the first chunk: elapsed time counts from now."""
        self.tracker._start = self._clock()  # noqa: SLF001 - same module

    def _final(self, cancelled: bool = False, failure: Optional[BaseException] = None) -> None:
        if not self._final_sent:
            self._final_sent = True
            self._catch_up()
            progress, error = self.tracker._finish(cancelled, failure)  # noqa: SLF001
            self._notify(progress)  # the final report goes out even if counting failed
            if error is not None:
                raise error

    def flush(self) -> List[Any]:
        self._final()
        return []

    def abort(self, error: Optional[BaseException]) -> None:
        self._final(cancelled=error is None, failure=error)
