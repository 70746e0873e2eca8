"""Edge cases of the engine found in review: each test failed before its fix."""
from __future__ import annotations

import gc
import random
import sys
import threading
import weakref
from typing import Any, List

import pytest

import helixstream as hs
from helixstream._aggregate import AggregateStage
from helixstream._engine import give_texts, run_stages

from .conftest import wait_for


def read_all(output: Any, into: List[Any]) -> None:
    """Read ``output`` to its end into ``into``; an exception is recorded, not raised."""
    try:
        for chunk in output:
            into.append(chunk.content)
        into.append("<end>")
    except BaseException as exc:  # noqa: BLE001 - what the reader saw
        into.append(exc)


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_an_interrupt_raised_in_a_worker_thread_reaches_the_reader(exc_type: type) -> None:
    def source() -> Any:
        yield "hello "
        raise exc_type(3)

    output, get_result = hs.EnhancedStreamer(hs.StreamConfig(prefetch=True)).stream_buffered(source())
    got: List[Any] = []
    reader = threading.Thread(target=read_all, args=(output, got))
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "the reader was left waiting"
    assert got[0] == "hello " and isinstance(got[1], exc_type) and len(got) == 2
    assert isinstance(get_result().error, exc_type)


def test_a_stop_set_after_the_stream_finished_loses_nothing() -> None:
    # timed placement: the pump has read the whole source (the end is in the queue)
    # when the caller's stop event is set; the reader still gets everything
    stop = threading.Event()
    config = hs.StreamConfig(buffer_type="word", max_delay=5, queue_size=2)
    output, get_result = hs.EnhancedStreamer(config).stream_buffered(
        iter(["one two ", "three"]), stop=stop
    )
    assert wait_for(lambda: output._core.source_done)  # noqa: SLF001
    stop.set()
    got = [c.content for c in output]
    assert got == ["one ", "two ", "three"]
    assert not output.cancelled
    result = get_result()
    assert result.full_content == "one two three" and not result.cancelled


@pytest.mark.parametrize("prefetch", [False, True])
def test_streams_made_with_a_stop_event_already_set_are_freed(prefetch: bool) -> None:
    stop = threading.Event()
    stop.set()
    cores = []
    for _ in range(20):
        output, get_result = hs.EnhancedStreamer(hs.StreamConfig(prefetch=prefetch)).stream_buffered(
            iter(["a b c"]), stop=stop
        )
        assert list(output) == []
        assert output.cancelled
        cores.append(weakref.ref(output._core))  # noqa: SLF001
        output.close()
        del output, get_result
    gc.collect()
    assert all(ref() is None for ref in cores), "a stopped stream stayed registered on the event"


def test_close_from_another_thread_while_the_reader_is_in_next_winds_the_stream_up() -> None:
    class Source:
        def __init__(self) -> None:
            self.closed = False
            self.i = 0

        def __iter__(self) -> "Source":
            return self

        def __next__(self) -> str:
            self.i += 1
            if self.i > 1000:
                raise StopIteration
            return f"w{self.i} "

        def close(self) -> None:
            self.closed = True

    reports: List[hs.StreamProgress] = []

    def callback(progress: hs.StreamProgress) -> None:
        reports.append(progress)
        if len(reports) == 2:  # the reader is inside next(): close from elsewhere
            closer = threading.Thread(target=output.close)
            closer.start()
            closer.join(5)
            assert not closer.is_alive()

    source = Source()
    config = hs.StreamConfig(progress_interval=0)
    output, get_result = hs.EnhancedStreamer(config).stream_with_progress(source, callback)
    got = [c.content for c in output]
    assert 1 <= len(got) < 1000
    # wound up by the reader's own thread, without waiting for garbage collection
    assert source.closed
    assert output.cancelled and get_result().cancelled
    assert reports[-1].done


class _Hold:
    """Holds everything until flush."""

    name = "hold"

    def __init__(self) -> None:
        self.held: List[Any] = []

    def __call__(self, item: Any) -> List[Any]:
        self.held.append(item)
        return []

    def flush(self) -> List[Any]:
        held, self.held = self.held, []
        return held


class _FailOn:
    name = "fail-on"

    def __call__(self, item: Any) -> List[Any]:
        if item == "BAD":
            raise ValueError("bad item")
        return [item]

    def flush(self) -> List[Any]:
        return []


@pytest.mark.parametrize("prefetch", [False, True])
def test_what_a_flush_released_before_a_later_stage_fails_is_delivered(prefetch: bool) -> None:
    aggregate = AggregateStage()
    output = run_stages(
        iter(["good", "BAD"]), [_Hold(), _FailOn(), aggregate], result=aggregate.result,
        prefetch=prefetch,
    )
    got: List[Any] = []
    read_all(output, got)
    assert got[0] == "good"
    assert isinstance(got[1], ValueError) and len(got) == 2


def test_a_result_taken_while_a_chunk_is_recorded_is_consistent_and_the_final_one_exact() -> None:
    stage = AggregateStage(counter=len)
    snapshots = []

    class Spy(list):  # type: ignore[type-arg]
        def append(self, item: Any) -> None:
            super().append(item)
            # another thread's get_result() at the worst moment: just after the text
            result = stage.result()
            snapshots.append((result.total_tokens, len(result.full_content)))

    stage._contents = Spy()  # noqa: SLF001
    for piece in ("ab", "cde", "f"):
        stage(piece)
    stage.flush()
    assert all(tokens == chars for tokens, chars in snapshots), snapshots
    assert stage.result().total_tokens == 6


def test_empty_pieces_and_bytes_cut_mid_character_do_not_become_chunks() -> None:
    source = [b"caf\xc3", b"\xa9", "", b" ok"]
    output, get_result = hs.EnhancedStreamer().stream_with_progress(iter(source), lambda p: None)
    assert [(c.index, c.content) for c in output] == [(0, "caf"), (1, "é"), (2, " ok")]
    assert get_result().chunk_count == 3


class _CountingSource:
    """Yields ``w1 w2 ...`` up to ``n``; records close(); ``reached`` is set at item ``at``."""

    def __init__(self, n: int, at: int = 0) -> None:
        self.n = n
        self.at = at
        self.i = 0
        self.closed = False
        self.reached = threading.Event()

    def __iter__(self) -> "_CountingSource":
        return self

    def __next__(self) -> str:
        self.i += 1
        if self.i == self.at:
            self.reached.set()
        if self.i > self.n:
            raise StopIteration
        return f"w{self.i} "

    def close(self) -> None:
        self.closed = True


def test_a_next_while_another_thread_winds_the_stream_up_waits_for_the_wind_up() -> None:
    # next() takes no lock: it enters the pipeline generator directly. A close() from
    # another thread runs the generator's wind-up in that thread; a next() arriving
    # meanwhile must wait for it and then end, not fail with "generator already
    # executing".
    closing = threading.Event()
    release = threading.Event()

    class Source(_CountingSource):
        def close(self) -> None:
            closing.set()
            release.wait(5)
            super().close()

    source = Source(10**6)
    output, get_result = hs.EnhancedStreamer(hs.StreamConfig(close_timeout=10)).stream_buffered(
        source
    )
    assert next(output).content == "w1 "
    closer = threading.Thread(target=output.close)
    closer.start()
    assert closing.wait(5)  # the closer is inside the wind-up, in its own thread
    got: List[Any] = []
    reader = threading.Thread(target=read_all, args=(output, got))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive(), f"next() did not wait for the wind-up: {got}"
    release.set()
    closer.join(5)
    reader.join(5)
    assert not closer.is_alive() and not reader.is_alive()
    assert got == ["<end>"]
    assert source.closed and output.closed
    assert output.cancelled and get_result().cancelled


@pytest.mark.parametrize("prefetch", [False, True])
def test_close_from_another_thread_at_any_moment_never_breaks_the_reader(prefetch: bool) -> None:
    rng = random.Random(20261130)
    config = hs.StreamConfig(prefetch=prefetch, queue_size=rng.choice([1, 4, 256]))
    for trial in range(150):
        source = _CountingSource(400, at=rng.randrange(1, 400))
        output, get_result = hs.EnhancedStreamer(config).stream_buffered(source)
        got: List[Any] = []
        close_errors: List[BaseException] = []
        spin = rng.randrange(0, 300)

        def close_soon(
            source: _CountingSource = source,
            output: Any = output,
            spin: int = spin,
            close_errors: List[BaseException] = close_errors,
        ) -> None:
            source.reached.wait(5)
            for _ in range(spin):
                pass  # land the close() anywhere in the reader's work
            try:
                output.close()
            except BaseException as exc:  # noqa: BLE001 - checked below
                close_errors.append(exc)

        closer = threading.Thread(target=close_soon)
        closer.start()
        read_all(output, got)
        closer.join(5)
        assert not closer.is_alive() and not close_errors, (trial, close_errors)
        assert got[-1] == "<end>", (trial, got[-3:])
        assert all(isinstance(g, str) for g in got), (trial, got[-3:])
        assert wait_for(lambda source=source: source.closed), trial  # type: ignore[misc]
        assert output.closed and output.state in ("cancelled", "finished"), trial
        result = get_result()
        assert result.chunk_count == len(got) - 1, trial
        assert result.cancelled == (output.state == "cancelled"), trial


@pytest.mark.parametrize("queue_size", [1, 2, 256])
def test_the_pumps_lock_free_hand_off_loses_no_item_and_no_wake_up(queue_size: int) -> None:
    # The pump appends to the pipe without its lock and takes the lock only to wake a
    # reader that waits (or to wait on a full pipe). Here the source sends its next
    # item only once the reader has the one before, so every item is handed to a
    # reader that is about to wait or waiting, and a GIL switch every microsecond moves
    # the append anywhere in the reader's get. An append landing between the reader's
    # look at the items and its wait, unseen by both, would leave the item queued and
    # the reader asleep (the source's wait then times out); an append racing a get
    # would lose the item.
    received = threading.Condition()
    count = [0]
    stalls: List[int] = []

    def source() -> Any:
        for i in range(1500):
            yield f"{i} "
            with received:
                if not received.wait_for(lambda i=i: count[0] > i, timeout=5):  # type: ignore[misc]
                    stalls.append(i)
                    return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        config = hs.StreamConfig(prefetch=True, queue_size=queue_size)
        output, _ = hs.EnhancedStreamer(config).stream_buffered(source(), "character")
        text = []
        for chunk in output:
            text.append(chunk.content)
            if chunk.content == " ":
                with received:
                    count[0] += 1
                    received.notify()
    finally:
        sys.setswitchinterval(old)
    assert not stalls, f"item {stalls[0]} stayed queued while the reader waited"
    assert "".join(text) == "".join(f"{i} " for i in range(1500))


@pytest.mark.parametrize("queue_size", [3, 100_000])
def test_appends_racing_the_readers_gets_lose_nothing(queue_size: int) -> None:
    # A free-running source: the pump appends while the reader takes a batch, with a
    # GIL switch every microsecond. A get that copied the queue and then cleared it
    # would drop what was appended in between.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            config = hs.StreamConfig(prefetch=True, queue_size=queue_size)
            output, _ = hs.EnhancedStreamer(config).stream_buffered(
                (f"{i} " for i in range(20000)), "character"
            )
            text = "".join(chunk.content for chunk in output)
            assert text == "".join(f"{i} " for i in range(20000))
    finally:
        sys.setswitchinterval(old)


def test_a_stage_with_note_text_gets_text_through_it_and_the_same_output() -> None:
    class Count:
        name = "count"

        def __init__(self) -> None:
            self.seen: List[Any] = []
            self.noted = 0

        def __call__(self, item: Any) -> List[Any]:
            self.seen.append(item)
            return [item]

        def note_text(self, text: str) -> None:
            self.noted += 1
            self.seen.append(text)

        def flush(self) -> List[Any]:
            return []

    class Plain(Count):
        note_text = None  # type: ignore[assignment]

    source = ["one tw", "o three ", hs.StreamChunk("four ", tokens=1), "five"]
    outputs = []
    stages = []
    for stage_type in (Count, Plain):
        stage = stage_type()
        stages.append(stage)
        output, get_result = hs.EnhancedStreamer().stream_enhanced(iter(source), stages=[stage])
        chunks = [(c.content, c.index, c.tokens) for c in output]
        seen = [s if isinstance(s, str) else (s.content, s.tokens) for s in stage.seen]
        outputs.append((chunks, seen))
        assert get_result().full_content == "one two three four five"
    assert outputs[0] == outputs[1]
    assert outputs[0][0][0] == ("one ", 0, None)
    assert outputs[0][1][:3] == ["one ", "two ", "three "]
    assert stages[0].noted == 3 and stages[1].noted == 0  # text went through note_text


def test_a_chunk_stream_still_takes_attributes_of_the_callers() -> None:
    output, _ = hs.EnhancedStreamer().stream_buffered(["a b"])
    output.tag = "mine"  # type: ignore[attr-defined]
    assert output.tag == "mine"  # type: ignore[attr-defined]
    assert [c.content for c in output] == ["a ", "b"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("queue_size", [1, 3, 256])
@pytest.mark.parametrize("kind", [list, tuple])
def test_a_pump_reading_a_source_in_memory_loses_nothing(kind: type, queue_size: int) -> None:
    # The pump slices a list or a tuple into the pipe, as much as there is room for;
    # with a full pipe it waits with the next item. A GIL switch every microsecond moves
    # the slices anywhere in the reader's gets.
    pieces = kind(f"{i} " for i in range(3000))
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        config = hs.StreamConfig(prefetch=True, queue_size=queue_size)
        output, get_result = hs.EnhancedStreamer(config).stream_buffered(pieces, "word")
        assert len(output.threads()) == 1
        text = "".join(chunk.content for chunk in output)
    finally:
        sys.setswitchinterval(old)
    assert text == "".join(pieces)
    assert get_result().chunk_count == 3000 and not get_result().cancelled


@pytest.mark.timeout(30)
@pytest.mark.parametrize("queue_size", [2, 256])
def test_a_pump_stops_reading_a_list_at_the_chunk_that_says_it_is_over(queue_size: int) -> None:
    pieces = [f"{i} " for i in range(10)] + [hs.StreamChunk("end ", done=True)]
    pieces += [f"after{i} " for i in range(10)]
    config = hs.StreamConfig(prefetch=True, queue_size=queue_size)
    output, get_result = hs.EnhancedStreamer(config).stream_buffered(pieces, "word")
    text = "".join(chunk.content for chunk in output)
    assert text == "".join(f"{i} " for i in range(10)) + "end "
    assert get_result().chunk_count == 11


@pytest.mark.timeout(30)
def test_a_stop_ends_a_pump_reading_a_list_and_nothing_after_it_is_delivered() -> None:
    stop = threading.Event()
    config = hs.StreamConfig(prefetch=True, queue_size=4)
    output, get_result = hs.EnhancedStreamer(config).stream_buffered(
        [f"{i} " for i in range(100_000)], "word", stop=stop
    )
    got = [next(output).content for _ in range(10)]
    stop.set()
    rest = list(output)
    assert got == [f"{i} " for i in range(10)]
    assert rest == []  # the reader checks the stop before each item
    assert get_result().cancelled
    assert wait_for(lambda: not any(t.is_alive() for t in output.threads()))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("config", [{"prefetch": True}, {"max_delay": 0.05}])
def test_polling_with_next_within_zero_reads_a_pumped_list_to_its_end(config: Any) -> None:
    # Review finding: a pump reading a list waits on a full queue until the reader
    # finds the queue empty; a poll whose deadline had passed returned "nothing yet"
    # without telling it, and the stream stalled after queue_size items for good.
    pieces = [f"{i} " for i in range(1000)]
    output, _ = hs.EnhancedStreamer(hs.StreamConfig(queue_size=8, **config)).stream_buffered(
        pieces, "word"
    )
    got: List[str] = []
    core = output._core
    with output:
        while True:
            try:
                chunk = output.next_within(0)
            except StopIteration:
                break
            if chunk is None:  # nothing queued: the pump must be filling the queue again
                assert wait_for(lambda: len(core.pipe) > 0 or core.pipe.ended), len(got)
            else:
                got.append(chunk.content)
    assert got == pieces



class _Waitable:
    """A source that can wait (so next_within reads it in the caller's thread)."""

    def __init__(self, items: List[Any]) -> None:
        self._items = iter(items)

    def __iter__(self) -> "_Waitable":
        return self

    def __next__(self) -> Any:
        return next(self._items)

    def wait_ready(self, timeout: float) -> bool:
        return True


def _pieces() -> List[Any]:
    return ["one tw", "o three ", hs.StreamChunk("four ", tokens=7), "five six ", "seven"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("how", ["list", "generator", "next_within"])
def test_a_reader_given_texts_gets_each_text_chunk_as_its_str_and_the_result_is_whole(how: str) -> None:
    # the SSE feed's way: no StreamChunk per event, the aggregate records all the same
    source: Any = {
        "list": _pieces(),
        "generator": (p for p in _pieces()),
        "next_within": _Waitable(_pieces()),
    }[how]
    output, get_result = hs.ChunkAggregator().aggregate_chunks(source)
    baseline, base_result = hs.ChunkAggregator().aggregate_chunks(_pieces())
    give_texts(output)
    got: List[Any] = []
    while True:
        try:
            item = output.next_within(1.0) if how == "next_within" else next(output)
        except StopIteration:
            break
        assert item is not None
        got.append(item)
    want = list(baseline)
    # a text chunk comes as its text; a chunk with more than text (a count) as a chunk
    assert [g if g.__class__ is str else g.content for g in got] == [c.content for c in want]
    assert [g.__class__ for g in got] == [str if c.tokens is None else hs.StreamChunk for c in want]
    result, base = get_result(), base_result()
    assert (result.chunks, result.full_content, result.total_tokens, result.chunk_count) == (
        base.chunks, base.full_content, base.total_tokens, base.chunk_count)


@pytest.mark.timeout(10)
def test_asking_for_texts_changes_nothing_without_an_aggregate_last() -> None:
    output = run_stages(["a ", "b "], [])
    give_texts(output)
    assert output._core.texts is False  # noqa: SLF001
    output.close()


# A piece that completes several units: the hot loop hands them over one by one, each
# but the last from a small loop of its own (not by the stack: that cost a
# StopIteration a piece). Sources of several kinds reach that loop: a list read inline,
# a generator read inline, and the pump's batches.
_SEVERAL = ["a b c ", "d ", "e f g h ", "i"]
_SEVERAL_UNITS = ["a ", "b ", "c ", "d ", "e ", "f ", "g ", "h ", "i"]


class _OpenAfter:
    """Its pieces, then nothing until it is closed."""

    def __init__(self, pieces: List[str]) -> None:
        self._pieces = iter(pieces)
        self._closed = threading.Event()

    def __iter__(self) -> "_OpenAfter":
        return self

    def __next__(self) -> str:
        for piece in self._pieces:
            return piece
        self._closed.wait(10)
        raise StopIteration

    def close(self) -> None:
        self._closed.set()


def _several_source(kind: str) -> Any:
    return list(_SEVERAL) if kind != "generator" else (p for p in _SEVERAL)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["list", "generator", "prefetch"])
@pytest.mark.parametrize("progress", [False, True])
def test_the_units_of_a_piece_that_completes_several_come_in_order_and_all_recorded(
    kind: str, progress: bool
) -> None:
    reports: List[Any] = []
    streamer = hs.EnhancedStreamer(hs.StreamConfig(prefetch=kind == "prefetch", progress_interval=0))
    if progress:
        output, get_result = streamer.stream_enhanced(_several_source(kind), reports.append)
    else:
        output, get_result = streamer.stream_buffered(_several_source(kind), "word")
    chunks = list(output)
    assert [c.content for c in chunks] == _SEVERAL_UNITS
    assert [c.index for c in chunks] == list(range(len(_SEVERAL_UNITS)))
    result = get_result()
    assert (result.chunks, result.chunk_count, result.cancelled) == (
        _SEVERAL_UNITS, len(_SEVERAL_UNITS), False)
    if progress:
        assert reports[-1].done and reports[-1].chunks_received == len(_SEVERAL_UNITS)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["list", "generator", "prefetch"])
@pytest.mark.parametrize("progress", [False, True])
def test_a_stop_between_two_units_of_one_piece_delivers_no_more(kind: str, progress: bool) -> None:
    # the first piece completes three units; the reader stops after the second (its
    # first chunk numbered 0 goes the general way, the rest through the hot loop)
    stop = threading.Event()
    reports: List[Any] = []
    streamer = hs.EnhancedStreamer(hs.StreamConfig(prefetch=kind == "prefetch"))
    pieces = ["x "] + _SEVERAL
    # a source that is still open when the stop comes (a stop after the source ended
    # lets the stream finish: a pump reading a list would have ended it)
    source = pieces if kind == "list" else _OpenAfter(pieces)
    if progress:
        output, get_result = streamer.stream_enhanced(source, reports.append, stop=stop)
    else:
        output, get_result = streamer.stream_buffered(source, "word", stop=stop)
    got = []
    for chunk in output:
        got.append(chunk.content)
        if chunk.content == "b ":
            threading.Event.set(stop)  # a way of setting it that the stream is not told of
    assert got == ["x ", "a ", "b "]
    result = get_result()
    assert (result.chunks, result.cancelled) == (["x ", "a ", "b "], True)
    if progress:
        assert reports[-1].cancelled and reports[-1].chunks_received == 3


@pytest.mark.timeout(10)
def test_a_progress_callback_failing_on_the_second_unit_of_a_piece_fails_the_stream() -> None:
    calls: List[Any] = []

    def callback(report: Any) -> None:
        calls.append(report)
        if len(calls) == 3 and not report.done:
            raise RuntimeError("callback broke")

    streamer = hs.EnhancedStreamer(hs.StreamConfig(progress_interval=0))
    output, get_result = streamer.stream_enhanced(["x "] + _SEVERAL, callback)
    got = []
    with pytest.raises(RuntimeError, match="callback broke"):
        for chunk in output:
            got.append(chunk.content)
    # the unit whose report failed is not delivered; those before it are
    assert got == ["x ", "a "]
    result = get_result()
    assert result.chunks == ["x ", "a "]
    assert str(result.error) == "callback broke"


# The hot loop does not count the items it takes one by one: it works the count out
# when it leaves (a list's iterator says how many are left; a read source counts its
# reads). The decoder's messages name the item, so the count must be exact whatever
# the hot loop did before: empty pieces, pieces completing several units, a chunk.
_BEFORE_BAD = ["a ", "", "b c d ", "e", "", " f g ", hs.StreamChunk("h "), "i j ", ""]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["list", "tuple", "generator", "prefetch", "prefetch-generator"])
@pytest.mark.parametrize("at", [0, 1, 3, len(_BEFORE_BAD)])
def test_an_item_of_the_wrong_type_is_named_by_its_place_after_the_hot_loop(kind: str, at: int) -> None:
    items: List[Any] = _BEFORE_BAD[:at] + [42, "never "]
    source: Any = {
        "list": items, "tuple": tuple(items), "generator": (i for i in items),
        "prefetch": items, "prefetch-generator": (i for i in items),
    }[kind]
    config = hs.StreamConfig(prefetch=kind.startswith("prefetch"), queue_size=2)
    output, _ = hs.EnhancedStreamer(config).stream_buffered(source, "word")
    with pytest.raises(TypeError, match=f"item {at} is int"):
        list(output)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["list", "generator", "prefetch"])
def test_text_between_the_halves_of_a_character_is_named_by_its_place(kind: str) -> None:
    items: List[Any] = _BEFORE_BAD + [b"caf\xc3", "X", b"\xa9"]
    source: Any = (i for i in items) if kind == "generator" else items
    config = hs.StreamConfig(prefetch=kind == "prefetch", queue_size=3)
    output, _ = hs.EnhancedStreamer(config).stream_buffered(source, "word")
    with pytest.raises(hs.StreamDecodeError, match=f"stream item {len(_BEFORE_BAD) + 1} is text"):
        list(output)


@pytest.mark.timeout(10)
def test_a_list_that_grows_while_it_is_read_still_names_the_bad_item_by_its_place() -> None:
    # found in review: counting the taken items by what a list iterator has left was
    # wrong once the reader appended to the list
    items: List[Any] = ["a ", "b "]
    output, _ = hs.EnhancedStreamer().stream_buffered(items, "word")
    got = []
    with pytest.raises(TypeError, match="stream item 5 is int"):
        for chunk in output:
            got.append(chunk.content)
            if chunk.content == "a ":
                items.extend(["c d ", "", "e ", 42])  # items 2, 3, 4, then 5
    assert got == ["a ", "b ", "c ", "d ", "e "]
