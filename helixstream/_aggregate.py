"""Aggregation: the final stage of every stream, and the guide's two aggregators."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Tuple

import attrs

from ._chunk import StreamChunk
from ._errors import ConfigError
from ._engine import ChunkStream, run_stages
from ._tokens import TokenCounter, estimate_tokens

__all__ = ["AggregatedStream", "AggregateStage", "ChunkAggregator", "StreamAggregator"]


@attrs.frozen(slots=True)
class AggregatedStream:
    """What a stream delivered, with counts and timings.

    Attributes:
        full_content: all the text delivered, in order.
        chunks: the content of each chunk delivered.
        chunk_count: how many chunks were delivered.
        total_tokens: tokens delivered: the counts the source reported, plus the token
            counter's count of text whose count was not reported.
        character_count: characters delivered.
        duration: seconds from the start of the stream to its end (or to now, for a
            stream still running). The start is the reader's first request for a
            chunk (the first ``next()``), not the creation of the stream, so time
            spent before reading is not counted.
        tokens_per_second: ``total_tokens / duration`` (0.0 for a zero duration).
        time_to_first_chunk: seconds from the start to the first chunk, or None.
        cancelled: the stream was stopped before its source ended.
        error: the exception that ended the stream, or None.
    """

    full_content: str = ""
    chunks: List[str] = attrs.field(factory=list)
    chunk_count: int = 0
    total_tokens: int = 0
    character_count: int = 0
    duration: float = 0.0
    tokens_per_second: float = 0.0
    time_to_first_chunk: Optional[float] = None
    cancelled: bool = False
    error: Optional[BaseException] = None


class AggregateStage:
    """The last stage of a stream: numbers chunks and records what went through.

    ``str`` items become :class:`StreamChunk` objects; every chunk leaves numbered by its
    place in the stream, from 0 (a chunk from the source that carries another index is
    copied, not changed). :meth:`result` may be called from any thread at any time.

    With ``keep_chunks=False`` (an internal reader that needs only the text and the
    totals: the SSE feed), the reader may join the texts now and then (:meth:`fold`),
    so a stream keeps about a byte per character rather than a string object per chunk
    (~50 bytes more); the result's ``chunks`` is then empty.
    """

    name = "aggregate"
    #: a failed stream is recorded by ``abort(error)``, not ``flush()``
    flush_on_failure = False
    # one per stream: slots take less than an instance dict
    __slots__ = (
        "_count", "_clock", "_lock", "_contents", "_reported", "_counted_at", "_usage",
        "_usage_key", "_start", "_first", "_end", "_cancelled", "_error", "_cache",
        "_fold", "_folded", "_done", "__weakref__",
    )

    def __init__(
        self,
        counter: Optional[TokenCounter] = None,
        clock: Callable[[], float] = time.monotonic,
        usage_key: str = "usage",
        keep_chunks: bool = True,
    ) -> None:
        self._count = counter or estimate_tokens
        self._clock = clock
        self._lock = threading.Lock()
        self._contents: List[str] = []
        self._reported = 0  # tokens the source reported
        # indexes of contents whose count was reported (usually none: a list of every
        # uncounted index would cost more than the text of a stream of characters)
        self._counted_at: List[int] = []
        self._usage: Optional[int] = None  # a total reported by the source at the end
        self._usage_key = usage_key
        self._start = clock()
        self._first: Optional[float] = None
        self._end: Optional[float] = None
        self._cancelled = False
        self._error: Optional[BaseException] = None
        self._cache: Optional[Tuple[int, int]] = None  # (chunks counted, tokens)
        self._fold = not keep_chunks
        self._folded: List[str] = []  # keep_chunks=False: older texts, joined
        self._done = 0  # ... and how many chunks they were

    def __call__(self, item: Any) -> List[Any]:
        # One thread at a time calls this. Text without a reported count (the common
        # case) is recorded without the lock. A reported count changes a total, so it is
        # recorded with its text under the lock, its index before its text: result()
        # copies ``_contents`` first, so every reported index below that length is there.
        contents = self._contents
        n = self._done + len(contents)
        if self._first is None:
            self._first = self._clock()
        if item.__class__ is str:
            contents.append(item)
            return [StreamChunk(item, n)]
        chunk = item
        if chunk.index != n:
            # number it by its place in this stream; the source's object is not changed
            chunk = attrs.evolve(chunk, index=n)
        if chunk.metadata:
            usage = chunk.metadata.get(self._usage_key)
            if usage is not None:
                self._note_usage(usage)
        if chunk.tokens is None:
            contents.append(chunk.content)
        else:
            with self._lock:
                self._reported += chunk.tokens
                self._counted_at.append(n)
                contents.append(chunk.content)
        return [chunk]

    def chunk_of(self, text: str) -> StreamChunk:
        """For the engine: what calling the stage with the ``str`` ``text`` releases,
        the one chunk itself rather than a list of it."""
        contents = self._contents
        if self._first is None:
            self._first = self._clock()
        chunk = StreamChunk(text, self._done + len(contents))
        contents.append(text)
        return chunk

    def text_of(self, text: str) -> str:
        """:meth:`chunk_of` for a reader that takes the text itself: recorded as the
        next chunk, handed back as is."""
        contents = self._contents
        if self._first is None:
            self._first = self._clock()
        contents.append(text)
        return text

    def text_sink(self) -> Optional[List[str]]:
        """For the engine's hot loop: once the first chunk is recorded, the list of
        texts itself (None before). Appending ``text`` to it and making
        ``StreamChunk(text, its length before)`` is then what :meth:`chunk_of` does
        (for a reader that takes texts: see :meth:`fold`)."""
        return None if self._first is None else self._contents

    def fold(self) -> None:
        """With ``keep_chunks=False``: join the texts recorded so far into one string.

        For a reader that takes each text chunk as its ``str`` (``give_texts``: chunks
        are not numbered by the list's length then), called now and then by it. Not
        once a count was reported (``_tokens`` must leave that chunk's text out): the
        texts are then kept one by one, as by default."""
        if not self._fold:
            return
        with self._lock:
            if self._counted_at:
                self._fold = False
                return
            contents = self._contents
            if contents:
                self._folded.append("".join(contents))
                self._done += len(contents)
                contents.clear()  # in place: the engine appends to this very list

    def _note_usage(self, usage: Any) -> None:
        total = usage.get("completion_tokens") if isinstance(usage, dict) else usage
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            self._usage = total

    def start(self) -> None:
        """The reader asked for the first chunk: durations count from now."""
        with self._lock:
            if self._first is None:
                self._start = self._clock()

    def flush(self) -> List[Any]:
        with self._lock:
            self._end = self._clock()
        return []

    def abort(self, error: Optional[BaseException]) -> None:
        with self._lock:
            if self._end is None:
                self._end = self._clock()
            if error is None:
                self._cancelled = True
            else:
                self._error = error

    def mark_cancelled(self) -> None:
        """The reader stopped the stream (the worker may not have noticed yet)."""
        with self._lock:
            if self._end is None:
                self._end = self._clock()
                self._cancelled = True

    def _tokens(self, contents: List[str], counted_at: List[int], reported: int) -> int:
        # called with the lock held
        if self._usage is not None:
            return self._usage
        done = self._done
        n = done + len(contents)
        if self._cache is not None and self._cache[0] == n:
            return self._cache[1]
        if counted_at:  # (nothing folded after the first of them: see fold)
            skip = set(counted_at)
            text = "".join(c for i, c in enumerate(contents, done) if i not in skip)
        else:
            text = "".join(contents)
        if self._folded:
            text = "".join(self._folded) + text
        total = reported + (self._count(text) if text else 0)
        self._cache = (n, total)
        return total

    def result(self) -> AggregatedStream:
        """The aggregate so far; final once the stream has ended."""
        with self._lock:
            end = self._end if self._end is not None else self._clock()
            duration = max(0.0, end - self._start)
            reported = self._reported
            contents = list(self._contents)  # first: the indexes below hold all it has
            counted_at = list(self._counted_at)
            tokens = self._tokens(contents, counted_at, reported)
            full = "".join(contents)
            if self._folded:
                full = "".join(self._folded) + full
            return AggregatedStream(
                full_content=full,
                chunks=[] if self._done else contents,
                chunk_count=self._done + len(contents),
                total_tokens=tokens,
                character_count=len(full),
                duration=duration,
                tokens_per_second=tokens / duration if duration > 0 else 0.0,
                time_to_first_chunk=None if self._first is None else self._first - self._start,
                cancelled=self._cancelled,
                error=self._error,
            )


def folder_of(stream: ChunkStream) -> Optional[Callable[[], None]]:
    """The :meth:`AggregateStage.fold` of ``stream``'s aggregate if it was made with
    ``keep_chunks=False``, else None."""
    stages = stream._core.stages  # noqa: SLF001 - same package
    stage = stages[-1] if stages else None
    if isinstance(stage, AggregateStage) and stage._fold:  # noqa: SLF001
        return stage.fold
    return None


def _result_of(stream: ChunkStream, stage: AggregateStage) -> Callable[[], AggregatedStream]:
    core = stream._core  # noqa: SLF001 - same package

    def get_result() -> AggregatedStream:
        if core.cancelled:
            stage.mark_cancelled()
        result = stage.result()
        if result.error is None and core.close_error is not None:
            # the source's close() failed or hung: the stream's error all the same
            result = attrs.evolve(result, error=core.close_error)
        return result

    core.result = get_result
    return get_result


def aggregate(
    source: Iterable[Any],
    stages: List[Any],
    *,
    stop: Optional[Any],
    name: str,
    counter: Optional[TokenCounter] = None,
    queue_size: int = 256,
    clock: Callable[[], float] = time.monotonic,
    close_timeout: float = 1.0,
    prefetch: bool = False,
    telemetry: Any = None,
    keep_chunks: bool = True,
) -> Tuple[ChunkStream, Callable[[], AggregatedStream]]:
    """Run ``source`` through ``stages`` and an aggregation stage (and, given
    ``telemetry``, an object with ``stage(aggregate)``, its stage after that one).
    ``keep_chunks=False``: see :class:`AggregateStage`."""
    stage = AggregateStage(counter, clock, keep_chunks=keep_chunks)
    extra = [] if telemetry is None else [telemetry.stage(stage)]
    stream = run_stages(
        source,
        [*stages, stage, *extra],
        stop=stop,
        name=name,
        queue_size=queue_size,
        close_timeout=close_timeout,
        prefetch=prefetch,
    )
    return stream, _result_of(stream, stage)


class ChunkAggregator:
    """Aggregates a stream of chunks while passing them on (the guide's ChunkAggregator)."""

    def __init__(self, counter: Optional[TokenCounter] = None) -> None:
        self._counter = counter

    def aggregate_chunks(
        self, chunks: Iterable[Any], stop: Optional[threading.Event] = None
    ) -> Tuple[ChunkStream, Callable[[], AggregatedStream]]:
        """Return ``(output, get_result)``; ``output`` yields the chunks unchanged."""
        return aggregate(chunks, [], stop=stop, name="aggregate", counter=self._counter)


class StreamAggregator:
    """Aggregates a stream of strings (the guide's StreamAggregator).

    Args:
        estimated_size: expected number of characters (a hint; 0 when unknown).
    """

    def __init__(self, estimated_size: int = 0, counter: Optional[TokenCounter] = None) -> None:
        if isinstance(estimated_size, bool) or not isinstance(estimated_size, int) or estimated_size < 0:
            raise ConfigError(f"'estimated_size' must be an int >= 0 (got {estimated_size!r})")
        self.estimated_size = estimated_size
        self._counter = counter
        self._get: Optional[Callable[[], AggregatedStream]] = None

    def aggregate(
        self, chunks: Iterable[Any], stop: Optional[threading.Event] = None
    ) -> "TextStream":
        """Start aggregating; returns an iterator of the strings, closeable like a stream."""
        stream, get = aggregate(chunks, [], stop=stop, name="aggregate", counter=self._counter)
        self._get = get
        return TextStream(stream)

    def result(self) -> AggregatedStream:
        """The aggregate of the last :meth:`aggregate` call (so far, if still running)."""
        if self._get is None:
            return AggregatedStream()
        return self._get()


class TextStream:
    """A :class:`ChunkStream` that yields each chunk's text instead of the chunk."""

    def __init__(self, stream: ChunkStream) -> None:
        self._stream = stream

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        return self._stream.__next__().content

    def close(self) -> None:
        """Stop the stream (see :meth:`ChunkStream.close`)."""
        self._stream.close()

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()

    def get_result(self) -> AggregatedStream:
        """The :class:`AggregatedStream` so far (final once the stream has ended)."""
        result: AggregatedStream = self._stream.get_result()
        return result
