"""Randomised fault injection over the full enhanced stream, in every placement.

Every trial streams a short random text, cut into random pieces (``str``, UTF-8
``bytes`` cut anywhere, even inside a character, or ``StreamChunk`` objects with and
without token counts), through ``EnhancedStreamer.stream_enhanced``: a random buffer
type, a rate limiter fast enough never to slow the test (sometimes with a burst of 1,
so that its wait on the stop event is used), a progress callback called for every chunk
(``progress_interval=0``) and aggregation; random queue sizes; in the three placements
(inline, ``prefetch=True``, and timed with a ``max_delay`` that is sometimes short
enough to fire). One fault is injected at a random point:

- the source raises (or sends a chunk carrying an error);
- a stage raises: the progress callback, or the token counter (used by the buffer,
  the rate limiter and the progress tracker);
- the consumer closes (``close()``, leaving a ``with`` block, an exception of its own
  inside the ``with`` block, or dropping the iterator and collecting garbage);
- the caller's stop event is set from another thread, racing the reader or not;
- the source blocks (on an event the test controls) while a reader waits, and is
  then released, or the stream is stopped or closed meanwhile.

Each trial checks that nothing delivered before the fault is lost or duplicated, that
the consumer sees the very exception raised (or a clean end), that the source was
closed, that ``get_result()`` says what happened and that the progress callback got
exactly one final report, and that the stream's threads are gone and the thread count
is back to its value before the trial. Trials are seeded (``random.Random`` per trial,
named by test, placement and number); a failure names its trial. Threads are waited
for by joining them, never by sleeping.
"""
from __future__ import annotations

import gc
import inspect
import random
import threading
import weakref
from typing import Any, Callable, List, Optional, Tuple

import pytest

import helixstream as hs

from .conftest import helix_threads, wait_for
from .sources import BlockingSource

PLACEMENTS = ["inline", "prefetch", "timed"]
BUFFER_TYPES = [t.value for t in hs.BufferType]
TRIALS = 150  # per fault kind and placement: 6 kinds x 3 placements x 150 = 2,700 trials

WORDS = ["Hello", "world", "a", "3.14", "e.g.", "Dr.", "naïve", "你好", "😀", "token" * 3, "x"]
SEPARATORS = [" ", " ", " ", ", ", ". ", "! ", "? ", "\n", "\n\n", "。", "... ", "\r\n", ""]


class SourceError(Exception):
    """An exception type of the tests' own, raised by sources and stages."""


EXCEPTION_TYPES = [ValueError, KeyError, OSError, RuntimeError, TimeoutError, SourceError]


def make_exception(rng: random.Random, what: str) -> BaseException:
    return rng.choice(EXCEPTION_TYPES)(f"{what} failed")


# --- inputs ----------------------------------------------------------------------------


def make_items(rng: random.Random) -> Tuple[List[Any], str]:
    """A random short text cut into random pieces, and the kind of the pieces."""
    text = "".join(rng.choice(WORDS) + rng.choice(SEPARATORS) for _ in range(rng.randint(0, 12)))
    kind = rng.choice(["str", "str", "bytes", "chunk"])
    data: Any = text.encode() if kind == "bytes" else text
    cuts = sorted({rng.randint(0, len(data)) for _ in range(rng.randint(0, 10))})
    bounds = [0, *cuts, len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]  # may hold empty pieces
    if kind == "chunk":
        items: List[Any] = [
            hs.StreamChunk(p, tokens=rng.choice([None, None, rng.randint(0, 4)])) for p in pieces
        ]
        return items, kind
    return pieces, kind


def text_of(items: List[Any], kind: str) -> str:
    """The text of ``items``; bytes ending inside a character give the characters before it."""
    if kind == "bytes":
        return b"".join(items).decode("utf-8", "ignore")
    if kind == "chunk":
        return "".join(c.content for c in items)
    return "".join(items)


# --- sources ---------------------------------------------------------------------------


class ResponseSource:
    """A source like an HTTP response: an iterator with ``close()``.

    It blocks before item ``block_at`` until ``gate`` is set, raises ``exc`` instead of
    item ``fail_at``, and calls ``on_read(i)`` as each read starts. ``close()``, from any
    thread, makes a read in progress fail, as closing a socket does.
    """

    def __init__(
        self,
        items: List[Any],
        fail_at: Optional[int] = None,
        exc: Optional[BaseException] = None,
        block_at: Optional[int] = None,
        on_read: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.items = items
        self.fail_at = fail_at
        self.exc = exc
        self.block_at = block_at
        self.on_read = on_read
        self.pos = 0
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.closed = threading.Event()
        self.source: Any = self

    def __iter__(self) -> "ResponseSource":
        return self

    def __next__(self) -> Any:
        if self.closed.is_set():
            raise ConnectionResetError("read on a closed response")
        i = self.pos
        if self.on_read is not None:
            self.on_read(i)
        if i == self.block_at:
            self.blocked.set()
            self.gate.wait(10)
            if self.closed.is_set():
                raise ConnectionResetError("response closed while reading")
        if i == self.fail_at:
            assert self.exc is not None
            raise self.exc
        if i >= len(self.items):
            raise StopIteration
        self.pos = i + 1
        return self.items[i]

    def close(self) -> None:
        self.closed.set()
        self.gate.set()

    def is_closed(self) -> bool:
        return self.closed.is_set()


class GeneratorSource:
    """The same behaviour as a plain generator (what most adapters are), passed as the
    source itself. It blocks in pure Python, so only the thread running it can close it."""

    def __init__(
        self,
        items: List[Any],
        fail_at: Optional[int] = None,
        exc: Optional[BaseException] = None,
        block_at: Optional[int] = None,
        on_read: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.items = items
        self.fail_at = fail_at
        self.exc = exc
        self.block_at = block_at
        self.on_read = on_read
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.finalised = threading.Event()
        self.source: Any = self._generate()

    def _generate(self) -> Any:
        try:
            for i in range(len(self.items) + 1):
                if self.on_read is not None:
                    self.on_read(i)
                if i == self.block_at:
                    self.blocked.set()
                    self.gate.wait(10)
                if i == self.fail_at:
                    assert self.exc is not None
                    raise self.exc
                if i == len(self.items):
                    return
                yield self.items[i]
        finally:
            self.finalised.set()

    def is_closed(self) -> bool:
        # a generator closed before it started never runs its finally block
        return inspect.getgeneratorstate(self.source) == inspect.GEN_CLOSED


Source = Any  # ResponseSource or GeneratorSource


def make_source(rng: random.Random, items: List[Any], **faults: Any) -> Source:
    return rng.choice([ResponseSource, GeneratorSource])(items, **faults)


# --- the stream ------------------------------------------------------------------------


class Progress:
    """A progress callback that records every report and raises ``exc`` on call ``fail_at``."""

    def __init__(self, fail_at: Optional[int] = None, exc: Optional[BaseException] = None) -> None:
        self.calls: List[hs.StreamProgress] = []
        self.fail_at = fail_at
        self.exc = exc
        self.raised = False

    def __call__(self, progress: hs.StreamProgress) -> None:
        self.calls.append(progress)
        if len(self.calls) - 1 == self.fail_at:
            self.raised = True
            assert self.exc is not None
            raise self.exc


class Counter:
    """A token counter that raises ``exc`` on call ``fail_at`` while armed."""

    def __init__(self, fail_at: int, exc: BaseException) -> None:
        self.fail_at = fail_at
        self.exc = exc
        self.calls = 0
        self.armed = True
        self.raised = False

    def __call__(self, text: str) -> int:
        if self.armed:
            n = self.calls
            self.calls += 1
            if n == self.fail_at:
                self.raised = True
                raise self.exc
        return hs.estimate_tokens(text)


def make_streamer(rng: random.Random, placement: str, **extra: Any) -> hs.EnhancedStreamer:
    config: dict = dict(
        buffer_type=rng.choice(BUFFER_TYPES),
        token_buffer_threshold=rng.randint(1, 6),
        rate_limit=rng.choice([1e5, 1e6]),
        burst=rng.choice([0, 0, 1]),
        progress_interval=0,
        estimated_tokens=rng.choice([0, 40]),
        queue_size=rng.choice([1, 2, 4, 256]),
    )
    if placement == "prefetch":
        config["prefetch"] = True
    elif placement == "timed":
        config["max_delay"] = rng.choice([0.0005, 0.005, 3600])
    config.update(extra)
    return hs.EnhancedStreamer(hs.StreamConfig(**config))


def read(output: hs.ChunkStream, rng: random.Random, limit: Optional[int] = None) -> Tuple[List[str], Any]:
    """Read up to ``limit`` chunks (all when None), with ``next()`` or ``next_within()``.

    Returns the texts read and how reading ended: ``"end"``, ``"open"`` (the limit was
    reached) or the exception raised.
    """
    within = rng.random() < 0.3  # moves an inline stream to a worker thread
    got: List[str] = []
    try:
        while limit is None or len(got) < limit:
            chunk = output.next_within(5) if within else next(output)
            assert chunk is not None, "no chunk within 5 s"
            got.append(chunk.content)
    except StopIteration:
        return got, "end"
    except BaseException as exc:  # noqa: BLE001 - the trial looks at it
        return got, exc
    return got, "open"


def join_stream_threads() -> None:
    """Wait (joining, at most 5 s each) for every helixstream thread; fail if one is left."""
    for t in helix_threads():
        t.join(5)
    alive = [t.name for t in helix_threads()]
    assert not alive, f"stream threads still running: {alive}"


def check_final_progress(progress: Progress, result: hs.AggregatedStream, exact: bool = True) -> None:
    """The callback got exactly one final report, the last one; with ``exact``, it
    counts what was aggregated."""
    finals = [p for p in progress.calls if p.done]
    assert len(finals) == 1 and progress.calls[-1].done, progress.calls[-3:]
    if exact:
        assert finals[0].characters_received == result.character_count


def run_trials(trial: Callable[[random.Random, str], None], placement: str, n: int = TRIALS) -> None:
    """Run ``n`` seeded trials; after each, no stream thread and no other new thread is left."""
    for i in range(n):
        rng = random.Random(f"{trial.__name__}/{placement}/{i}")
        base = threading.active_count()
        try:
            trial(rng, placement)
            join_stream_threads()
            assert threading.active_count() == base, [t.name for t in threading.enumerate()]
        except BaseException as exc:
            exc.add_note(f"in trial {trial.__name__}/{placement}/{i}")
            raise


# --- engine bugs found by the trials, kept as regression tests ----------------------------
#
# Each ``check_*`` function below runs one deterministic scenario that the random trials
# first found failing (the engine has since been fixed); the tests at the end of this
# module run each in every placement.


def placement_config(placement: str) -> dict:
    return {"inline": {}, "prefetch": {"prefetch": True}, "timed": {"max_delay": 3600}}[placement]


def read_to_end(output: hs.ChunkStream) -> Tuple[List[str], Any]:
    got: List[str] = []
    try:
        for chunk in output:
            got.append(chunk.content)
    except Exception as exc:  # noqa: BLE001 - the check looks at it
        return got, exc
    return got, "end"


def check_units_a_stage_passed_on_before_failing_are_delivered(placement: str) -> None:
    """One source item makes a batch of units (character buffer: "abcdefgh" gives eight);
    the progress callback raises on the fifth. The four it reported before failing
    passed the failing stage and must reach the reader (the stages after it are flushed,
    nothing before the fault is lost).

    The bug was (all placements): ``_Core._push`` runs a batch stage by stage; when stage
    i raises on item j, the items 0..j-1 it already returned are in a local list that is
    dropped, and ``_failure`` only flushes the stages after i."""
    boom = SourceError("progress callback failed")
    calls: List[hs.StreamProgress] = []

    def callback(progress: hs.StreamProgress) -> None:
        calls.append(progress)
        if len(calls) == 5:
            raise boom

    config = hs.StreamConfig(buffer_type="character", progress_interval=0, **placement_config(placement))
    output, get_result = hs.EnhancedStreamer(config).stream_enhanced(["abcdefgh"], callback)
    got, outcome = read_to_end(output)
    join_stream_threads()
    assert outcome is boom
    assert calls[3].characters_received == 4
    assert got == ["a", "b", "c", "d"], got
    assert get_result().full_content == "abcd"


def check_units_flushed_before_a_later_flush_fails_are_delivered(placement: str) -> None:
    """At the end of the source the word buffer releases "world", which goes through every
    stage (the aggregation records it); then the progress stage's flush calls the callback
    with the final report, which raises. "world" must reach the reader before the error.

    The bug was (all placements): ``_Core._flush_from`` collects what each flush releases
    in a local list; when a later stage's flush raises, the list is lost, so
    ``get_result().full_content`` holds text the reader never gets."""
    boom = SourceError("final progress report failed")

    def callback(progress: hs.StreamProgress) -> None:
        if progress.done:
            raise boom

    config = hs.StreamConfig(buffer_type="word", progress_interval=0, **placement_config(placement))
    output, get_result = hs.EnhancedStreamer(config).stream_enhanced(["hello wor", "ld"], callback)
    got, outcome = read_to_end(output)
    join_stream_threads()
    assert outcome is boom
    assert get_result().full_content == "hello world"
    assert got == ["hello ", "world"], got


def check_a_stop_after_the_source_ended_is_not_reported_as_a_complete_stream(placement: str) -> None:
    """The stop event is set after the source ended but before the stages are done with its
    last items: the rate limiter drops those (the stream is stopping), so the result must
    not say the stream is complete (cancelled False, no error) with text missing.

    Inline and prefetch: the stop is set when the engine closes the source after its end,
    just before the stages are flushed ("c" is held by the word buffer until then).
    Timed: the progress callback holds the stage thread on "a " until the source thread
    has ended, then sets the stop on "b ", so "c " and END are in the batch being worked
    through.

    The bug was (all placements): the stages are flushed as for a normal end (the
    aggregation's flush sets its end time), then ``_end()`` refuses because the stream is
    cancelled, and ``abort(None)`` never runs: ``get_result()`` says cancelled=False,
    error=None, and ``full_content`` lacks "c"."""
    stop = threading.Event()
    limiter = dict(rate_limit=1e6, progress_interval=0, **placement_config(placement))
    streamer = hs.EnhancedStreamer(hs.StreamConfig(**limiter))
    if placement == "timed":
        # the pump has read the whole source (its end is queued) when the stop is set:
        # the reader still gets everything
        output, get_result = streamer.stream_enhanced(["a ", "b ", "c "], lambda p: None, stop=stop)
        (pump,) = [t for t in output.threads() if t.name.endswith("-source")]
        pump.join(5)
        assert not pump.is_alive()
        stop.set()
        full = "a b c "
    else:

        class StopsWhenClosed:
            def __init__(self) -> None:
                self.items = iter(["a ", "b ", "c"])

            def __iter__(self) -> "StopsWhenClosed":
                return self

            def __next__(self) -> str:
                return next(self.items)

            def close(self) -> None:
                stop.set()

        output, get_result = streamer.stream_enhanced(StopsWhenClosed(), lambda p: None, stop=stop)
        full = "a b c"
    got, outcome = read_to_end(output)
    join_stream_threads()
    assert outcome == "end"
    result = get_result()
    assert full.startswith("".join(got))
    assert result.cancelled or result.error is not None or result.full_content == full, result


def check_closing_a_stream_whose_source_ended_with_its_queue_full_ends_its_worker(
    placement: str,
) -> None:
    """queue_size=1; the reader reads nothing. The worker puts "a " in the queue, the source
    ends, and the last batch ("b" and the end) waits for room. Closing the stream must end
    the worker (and dropping it must too): it may not stay blocked in the full queue.

    The bug was (prefetch, timed): ``_produce`` and ``_run_stages`` call ``_end()``
    (``finished = True``) before the last batch is put; ``cancel()`` returns at once when
    ``finished``, so the queue is never closed and the worker waits in ``put_many``
    forever (a leaked thread per abandoned stream)."""
    source = BlockingSource(["a "])
    config = hs.StreamConfig(
        buffer_type="word", queue_size=1, close_timeout=0.3, **placement_config(placement)
    )
    output, get_result = hs.EnhancedStreamer(config).stream_enhanced(source, lambda p: None)
    core = output._core  # noqa: SLF001 - how full the queue is, and when the last batch waits
    threads = output.threads()
    try:
        assert wait_for(lambda: core.pipe is not None and len(core.pipe) >= 1)
        source.feed("b")
        source.end()
        # the pump waits for room to hand over "b" (and would then see the end)
        assert wait_for(lambda: core.pipe._putters == 1)  # noqa: SLF001
        output.close()  # joins the threads (close_timeout)
        assert not [t.name for t in threads if t.is_alive()], "close() left the worker blocked"
    finally:
        core.pipe.close()  # should the bug come back: wake a worker left blocked, for the next tests
        for t in threads:
            t.join(5)


def wound_up(src: Any, get_result: Any) -> Any:
    """The stream is over: every stream thread has ended and the source is closed.

    Returns the stream's result.
    """
    join_stream_threads()
    assert src.is_closed()
    return get_result()


# --- the source fails ------------------------------------------------------------------


def source_fails(rng: random.Random, placement: str) -> None:
    items, kind = make_items(rng)
    fail_at = rng.randint(0, len(items))
    exc = make_exception(rng, "source")
    if kind == "chunk" and rng.random() < 0.5:
        # the failure arrives as a chunk carrying the error
        src = make_source(rng, [*items[:fail_at], hs.StreamChunk("", error=exc), *items[fail_at:]])
    else:
        src = make_source(rng, items, fail_at=fail_at, exc=exc)
    progress = Progress()
    output, get_result = make_streamer(rng, placement).stream_enhanced(src.source, progress)
    got, outcome = read(output, rng)
    expected = text_of(items[:fail_at], kind)
    assert outcome is exc
    assert "".join(got) == expected  # held text was flushed before the error
    assert next(output, None) is None  # the stream is over
    result = wound_up(src, get_result)
    assert result.error is exc and not result.cancelled
    assert result.full_content == expected
    check_final_progress(progress, result)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_source_failure_delivers_everything_before_it_then_the_same_exception(placement):
    run_trials(source_fails, placement)


# --- a stage fails -----------------------------------------------------------------------


def callback_fails(rng: random.Random, placement: str) -> None:
    items, kind = make_items(rng)
    fail_at = rng.randint(0, len(items) + 2)  # sometimes the final report, sometimes never
    exc = make_exception(rng, "progress callback")
    progress = Progress(fail_at, exc)
    src = make_source(rng, items)
    output, get_result = make_streamer(rng, placement).stream_enhanced(src.source, progress)
    got, outcome = read(output, rng)
    full = text_of(items, kind)
    delivered = "".join(got)
    if progress.raised:
        assert outcome is exc
        # every chunk the callback reported on before the failing report was delivered
        before = progress.calls[fail_at - 1].characters_received if fail_at else 0
        assert delivered == full[:before]
    else:
        assert outcome == "end"
        assert delivered == full
    result = wound_up(src, get_result)
    assert result.error is (exc if progress.raised else None) and not result.cancelled
    assert result.full_content == delivered
    check_final_progress(progress, result, exact=not progress.raised)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_progress_callback_failure_ends_the_stream_with_its_exception(placement):
    run_trials(callback_fails, placement)


def counter_fails(rng: random.Random, placement: str) -> None:
    items, kind = make_items(rng)
    exc = make_exception(rng, "token counter")
    counter = Counter(rng.randint(0, 2 * len(items) + 2), exc)
    progress = Progress()
    src = make_source(rng, items)
    streamer = make_streamer(rng, placement, token_counter=counter)
    output, get_result = streamer.stream_enhanced(src.source, progress)
    got, outcome = read(output, rng)
    join_stream_threads()
    counter.armed = False  # get_result() counts too, in this thread
    full = text_of(items, kind)
    delivered = "".join(got)
    if counter.raised:
        assert outcome is exc
        assert full.startswith(delivered)
    else:
        assert outcome == "end"
        assert delivered == full
    assert src.is_closed()
    result = get_result()
    assert result.error is (exc if counter.raised else None) and not result.cancelled
    assert result.full_content == delivered
    check_final_progress(progress, result, exact=not counter.raised)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_token_counter_failure_ends_the_stream_with_its_exception(placement):
    run_trials(counter_fails, placement)


# --- the consumer closes -----------------------------------------------------------------


class ConsumerError(Exception):
    pass


def stopped_cleanly(src: Any, got: List[str], get_result: Any, full: str) -> Tuple[str, Any]:
    """After a close or a stop: no stream thread left, the source closed, and the result
    a prefix of the whole text holding all that was delivered, with no error.

    Returns the delivered text and the result.
    """
    result = wound_up(src, get_result)
    delivered = "".join(got)
    assert result.full_content.startswith(delivered)
    assert full.startswith(result.full_content)
    assert result.error is None
    return delivered, result


def consumer_closes(rng: random.Random, placement: str) -> None:
    items, kind = make_items(rng)
    full = text_of(items, kind)
    src = make_source(rng, items)
    progress = Progress()
    streamer = make_streamer(rng, placement)
    output, get_result = streamer.stream_enhanced(src.source, progress)
    limit = rng.randint(0, len(items) + 1)
    how = rng.choice(["close", "with", "with-error", "drop"])
    if how == "close":
        got, outcome = read(output, rng, limit)
        output.close()
    elif how == "with":
        with output:
            got, outcome = read(output, rng, limit)
    elif how == "with-error":
        mine = ConsumerError("the consumer's own error")
        with pytest.raises(ConsumerError) as info:
            with output:
                got, outcome = read(output, rng, limit)
                raise mine
        assert info.value is mine  # leaving the block does not swallow or replace it
        del info
    else:
        got, outcome = read(output, rng, limit)
        dropped = weakref.ref(output)
        del output
        if dropped() is not None:  # only a reference cycle needs the collector
            gc.collect()
        assert dropped() is None
    assert outcome in ("open", "end")
    if how != "drop":
        assert output.closed
        assert next(output, None) is None  # nothing after close
    delivered, result = stopped_cleanly(src, got, get_result, full)
    if outcome == "end":
        assert delivered == full and not result.cancelled
    elif not result.cancelled:  # it had ended before it was closed: nothing is missing
        assert result.full_content == full
    check_final_progress(progress, result)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_consumer_closing_at_any_point_stops_cleanly_and_closes_the_source(placement):
    run_trials(consumer_closes, placement)


# --- the stop event fires ----------------------------------------------------------------


def stop_fires(rng: random.Random, placement: str) -> None:
    items, kind = make_items(rng)
    full = text_of(items, kind)
    stop = threading.Event()
    trigger = threading.Event()
    when = rng.choice(["source", "reader", "reader-waits", "before"])
    at = rng.randint(0, len(items) + 1)

    def stopper() -> None:
        trigger.wait(10)
        stop.set()  # cancels the stream from this thread

    thread = threading.Thread(target=stopper, name="test-stopper")
    thread.start()

    def on_read(i: int) -> None:
        if i == at:
            trigger.set()  # from the thread reading the source

    src = make_source(rng, items, on_read=on_read if when == "source" else None)
    if when == "before":
        trigger.set()
        thread.join(5)
    progress = Progress()
    output, get_result = make_streamer(rng, placement).stream_enhanced(src.source, progress, stop=stop)
    if when.startswith("reader"):
        got, outcome = read(output, rng, at)
        trigger.set()
        if when == "reader-waits":
            thread.join(5)  # the stop has been handled: the reader reads on after it
        if outcome == "open":
            more, outcome = read(output, rng)
            got += more
    else:
        got, outcome = read(output, rng)
    trigger.set()
    thread.join(5)
    assert not thread.is_alive()
    assert outcome == "end"  # a stop is a clean end for the reader
    delivered, result = stopped_cleanly(src, got, get_result, full)
    if when == "before":
        assert delivered == "" and result.cancelled
    if not result.cancelled:  # the stop came after the end: nothing is missing
        assert result.full_content == full
        assert delivered == full  # and the reader got it all
    check_final_progress(progress, result)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_stop_event_set_from_another_thread_at_any_point_ends_the_stream_cleanly(placement):
    run_trials(stop_fires, placement)


# --- the source blocks ------------------------------------------------------------------


def source_blocks(rng: random.Random, placement: str) -> None:
    items, kind = make_items(rng)
    full = text_of(items, kind)
    block_at = rng.randint(0, len(items))
    action = rng.choice(["release", "stop", "close"])
    fail_at = None
    exc = None
    if action == "release" and rng.random() < 0.4:
        fail_at = rng.randint(block_at, len(items))
        exc = make_exception(rng, "source")
    src = make_source(rng, items, block_at=block_at, fail_at=fail_at, exc=exc)
    stop = threading.Event()
    progress = Progress()
    # close() waits close_timeout for a worker blocked in a generator, which only ends
    # once the generator yields: keep that wait short
    streamer = make_streamer(rng, placement, close_timeout=0.02)
    output, get_result = streamer.stream_enhanced(src.source, progress, stop=stop)
    within = rng.random() < 0.3
    got: List[str] = []
    ended: List[Any] = []

    def reader() -> None:
        try:
            while True:
                chunk = output.next_within(0.05) if within else next(output)
                if chunk is not None:
                    got.append(chunk.content)
        except StopIteration:
            ended.append("end")
        except BaseException as e:  # noqa: BLE001 - the trial looks at it
            ended.append(e)

    thread = threading.Thread(target=reader, name="test-reader")
    thread.start()
    assert src.blocked.wait(5)
    before_block = text_of(items[:block_at], kind)
    if placement == "timed" and streamer.config.max_delay < 1:
        # the timer releases the held text although the source is silent
        assert wait_for(lambda: "".join(got) == before_block), (got, before_block)
    else:
        assert before_block.startswith("".join(list(got)))
    # A generator blocked in pure Python cannot be interrupted: an inline reader is
    # stuck in it until it is released; every other reader is woken by a stop at once.
    reader_in_source = (
        isinstance(src, GeneratorSource) and placement == "inline" and not within
    )
    if action == "release":
        src.gate.set()
    else:
        if action == "stop":
            stop.set()
        else:
            output.close()
        if isinstance(src, ResponseSource):
            # closed (by close() there and then, by a stop in the janitor thread): what
            # ends a blocked read and stops the upstream request
            if action == "stop":
                assert src.closed.wait(5), "the blocked source was not closed by the stop"
            else:
                assert src.closed.is_set(), "the blocked source was not closed by close()"
        if not reader_in_source:
            thread.join(5)
            assert not thread.is_alive(), "the reader was not woken by the stop"
        src.gate.set()
    thread.join(5)
    assert not thread.is_alive()
    result = wound_up(src, get_result)
    delivered = "".join(got)
    if action == "release":
        expected = full if fail_at is None else text_of(items[:fail_at], kind)
        assert ended == ["end" if exc is None else exc]
        assert delivered == expected
        assert result.full_content == expected and not result.cancelled
        assert result.error is exc
    else:
        assert ended == ["end"]
        assert full.startswith(delivered)
        assert result.full_content.startswith(delivered)
        assert before_block.startswith(result.full_content)
        assert result.cancelled and result.error is None
    check_final_progress(progress, result)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_source_blocking_while_a_reader_waits_then_released_stopped_or_closed(placement):
    run_trials(source_blocks, placement)


# --- engine bugs the trials found (now fixed), as regression tests ---------------------------
# Each is described in full in its check_* function above.


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_units_a_stage_passed_on_before_failing_reach_the_reader(placement):
    check_units_a_stage_passed_on_before_failing_are_delivered(placement)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_units_flushed_before_a_later_flush_fails_reach_the_reader(placement):
    check_units_flushed_before_a_later_flush_fails_are_delivered(placement)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_a_stop_after_the_source_ended_is_not_reported_as_a_complete_stream(placement):
    check_a_stop_after_the_source_ended_is_not_reported_as_a_complete_stream(placement)


@pytest.mark.parametrize("placement", ["prefetch", "timed"])
def test_closing_a_stream_whose_source_ended_with_its_queue_full_ends_its_worker(placement):
    check_closing_a_stream_whose_source_ended_with_its_queue_full_ends_its_worker(placement)
