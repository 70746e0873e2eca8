"""The stage engine: ordering, stopping, errors, backpressure and threads."""
from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List

import pytest

import helixstream as hs
from helixstream._engine import stop as _stop_mod
from helixstream._engine import run_stages

from .conftest import PLACEMENTS, helix_threads, wait_for
from .sources import BlockingSource, CountingGenerator


def words(n: int) -> List[str]:
    return [f"w{i} " for i in range(n)]


def contents(output: Any) -> List[str]:
    return [c.content for c in output]




def streamer(placement: str, **config: Any) -> hs.EnhancedStreamer:
    return hs.EnhancedStreamer(hs.StreamConfig(**PLACEMENTS[placement], **config))


def read_in_thread(output: Any) -> "tuple[threading.Thread, List[Any]]":
    """Read a stream to its end in another thread; returns the thread and the list it fills."""
    got: List[Any] = []

    def read() -> None:
        try:
            got.extend(output)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            got.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    return reader, got


# --- normal end ----------------------------------------------------------------------


def test_stream_delivers_every_unit_in_order_and_ends_its_threads(thread_baseline, placement):
    pieces = ["Hel", "lo wor", "ld, how", " are", " you?"]
    output, get_result = streamer(placement).stream_buffered(pieces, "word")
    assert contents(output) == ["Hello ", "world, ", "how ", "are ", "you?"]
    result = get_result()
    assert result.full_content == "Hello world, how are you?"
    assert result.chunk_count == 5
    assert not result.cancelled and result.error is None
    assert all(not t.is_alive() for t in output.threads())
    thread_baseline()


def test_output_chunks_are_numbered_from_zero(placement):
    output, _ = streamer(placement).stream_buffered(words(5), "word")
    assert [c.index for c in output] == [0, 1, 2, 3, 4]


def test_stream_threads_are_named_after_stream_and_are_daemons():
    source = BlockingSource()
    output, _ = streamer("prefetch").stream_buffered(source, "sentence")
    with output:
        (thread,) = output.threads()
        assert thread.daemon
        assert thread.name.startswith("helixstream-")
        assert thread.name.endswith("-buffered-source")


def test_a_timed_stage_gives_the_source_a_thread_of_its_own_and_nothing_more():
    source = BlockingSource()
    streamer = hs.EnhancedStreamer(hs.StreamConfig(max_delay=5))
    output, _ = streamer.stream_buffered(source, "word")
    with output:
        names = [t.name.rsplit("-", 1)[-1] for t in output.threads()]
        assert names == ["source"]  # the stages run in the reader's thread


def test_source_generator_is_closed_at_the_end(placement):
    source = CountingGenerator(words(3))
    output, _ = streamer(placement).stream_buffered(source, "word")
    assert contents(output) == words(3)
    assert source.finished.is_set() and source.closed.is_set()


def test_empty_source_gives_empty_output_and_empty_result(placement):
    output, get_result = streamer(placement).stream_buffered([], "word")
    assert contents(output) == []
    result = get_result()
    assert result.full_content == "" and result.chunk_count == 0
    assert result.time_to_first_chunk is None


def test_source_must_be_iterable():
    with pytest.raises(TypeError, match="iterable"):
        hs.EnhancedStreamer().stream_buffered(42, "word")  # type: ignore[arg-type]


# --- stopping ------------------------------------------------------------------------


def test_close_mid_stream_closes_the_source_and_ends_the_threads(thread_baseline, placement):
    source = BlockingSource(words(3))
    output, get_result = streamer(placement).stream_buffered(source, "word")
    assert next(output).content == "w0 "
    output.close()
    assert source.closed.is_set()
    assert all(not t.is_alive() for t in output.threads())
    assert list(output) == []
    result = get_result()
    assert result.cancelled
    thread_baseline()


def test_close_is_safe_twice_and_after_the_end(placement):
    output, _ = streamer(placement).stream_buffered(words(2), "word")
    assert contents(output) == words(2)
    output.close()
    output.close()
    assert output.closed and not output.cancelled


def test_with_block_exit_stops_the_stream(placement):
    source = BlockingSource(words(2))
    output, get_result = streamer(placement).stream_buffered(source, "word")
    with output:
        assert next(output).content == "w0 "
    assert source.closed.is_set()
    assert get_result().cancelled


def test_break_then_garbage_collection_stops_the_stream(placement):
    source = BlockingSource(words(2))
    output, _ = streamer(placement).stream_buffered(source, "word")
    threads = output.threads()
    for _chunk in output:
        break
    del output
    gc.collect()
    assert source.closed.wait(5)
    for t in threads:
        t.join(5)
        assert not t.is_alive()


def test_a_stream_that_is_never_read_is_stopped_when_dropped(placement):
    source = BlockingSource()
    output, _ = streamer(placement).stream_buffered(source, "word")
    threads = output.threads()
    del output
    gc.collect()
    assert source.closed.wait(5)
    for t in threads:
        t.join(5)
        assert not t.is_alive()


def test_stop_event_wakes_a_blocked_reader_and_closes_the_source(thread_baseline, placement):
    source = BlockingSource(["one "])
    stop = threading.Event()
    output, get_result = streamer(placement).stream_buffered(source, "word", stop=stop)
    assert next(output).content == "one "
    got: List[Any] = []
    reader = threading.Thread(target=lambda: got.extend(output))
    reader.start()
    assert source.waiting.wait(5)  # the source is blocked in a read; so is the reader
    stop.set()
    reader.join(5)
    assert not reader.is_alive()
    assert got == []
    assert source.closed.is_set()
    assert get_result().cancelled
    thread_baseline()


def test_stop_event_already_set_gives_an_empty_cancelled_stream(placement):
    stop = threading.Event()
    stop.set()
    source = CountingGenerator(words(3))
    output, get_result = streamer(placement).stream_buffered(source, "word", stop=stop)
    assert contents(output) == []
    assert get_result().cancelled
    assert source.produced == 0


def test_generator_source_blocked_in_python_is_closed_once_it_yields(placement):
    gate = threading.Event()
    closed = threading.Event()

    def slow() -> Any:
        try:
            yield "a "
            gate.wait(5)
            yield "b "
            yield "c "
        finally:
            closed.set()

    stop = threading.Event()
    output, _ = streamer(placement).stream_buffered(slow(), "word", stop=stop)
    assert next(output).content == "a "
    stop.set()
    assert list(output) == []
    gate.set()
    assert closed.wait(5)


def test_a_shared_stop_event_forgets_streams_that_ended(placement):
    stop = threading.Event()
    for _ in range(20):
        output, _ = streamer(placement).stream_buffered(words(2), "word", stop=stop)
        assert len(contents(output)) == 2
    assert _stop_mod.watched(stop) == 0


def test_stop_event_shared_by_many_streams_stops_them_all(placement):
    stop = threading.Event()
    sources = [BlockingSource(["x "]) for _ in range(10)]
    outputs = [streamer(placement).stream_buffered(s, "word", stop=stop)[0] for s in sources]
    for out in outputs:
        assert next(out).content == "x "
    stop.set()
    for out, src in zip(outputs, sources):
        assert list(out) == []
        assert src.closed.wait(5)


def test_stop_must_be_an_event():
    with pytest.raises(TypeError, match="threading.Event"):
        hs.EnhancedStreamer().stream_buffered(words(1), "word", stop="yes")  # type: ignore[arg-type]


# --- errors --------------------------------------------------------------------------


def test_source_error_reaches_the_reader_after_everything_before_it(thread_baseline, placement):
    boom = KeyError("boom")

    def source() -> Any:
        yield "fine "
        yield "held-back"
        raise boom

    output, get_result = streamer(placement).stream_buffered(source(), "word")
    got = []
    with pytest.raises(KeyError) as info:
        for chunk in output:
            got.append(chunk.content)
    assert info.value is boom
    # the traceback still shows where the source raised
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "source" in frames
    assert got == ["fine ", "held-back"]
    result = get_result()
    assert result.error is boom and not result.cancelled
    assert result.full_content == "fine held-back"
    thread_baseline()


def test_iteration_after_an_error_is_over(placement):
    def source() -> Any:
        yield "a "
        raise ValueError("bad")

    output, _ = streamer(placement).stream_buffered(source(), "word")
    with pytest.raises(ValueError):
        list(output)
    assert list(output) == []


class Exploding:
    name = "exploding"

    def __init__(self, at: str) -> None:
        self.at = at
        self.seen: List[Any] = []

    def __call__(self, item: Any) -> List[Any]:
        if item == self.at:
            raise RuntimeError(f"stage failed on {item!r}")
        self.seen.append(item)
        return [item]

    def flush(self) -> List[Any]:
        return []


@pytest.mark.parametrize("prefetch", [False, True])
def test_stage_error_reaches_the_reader_and_closes_the_source(thread_baseline, prefetch):
    source = BlockingSource(["a", "b", "c"])
    output = run_stages(source, [Exploding("b")], prefetch=prefetch)
    assert next(output) == "a"
    with pytest.raises(RuntimeError, match="stage failed on 'b'"):
        next(output)
    assert source.closed.wait(5)
    thread_baseline()


def test_stage_error_in_flush_is_delivered():
    class FailsAtEnd(Exploding):
        def flush(self) -> List[Any]:
            raise OSError("flush failed")

    output = run_stages(["a", "b"], [FailsAtEnd("zzz")])
    got = []
    with pytest.raises(OSError, match="flush failed"):
        for item in output:
            got.append(item)
    assert got == ["a", "b"]


def test_a_chunk_carrying_an_error_ends_the_stream_with_it(placement):
    err = TimeoutError("upstream timed out")
    chunks = [hs.StreamChunk("one "), hs.StreamChunk("", error=err), hs.StreamChunk("never ")]
    output, get_result = streamer(placement).stream_buffered(chunks, "word")
    got = []
    with pytest.raises(TimeoutError) as info:
        for c in output:
            got.append(c.content)
    assert info.value is err and got == ["one "]
    assert get_result().error is err


def test_a_done_chunk_ends_the_input(placement):
    source = CountingGenerator([hs.StreamChunk("a "), hs.StreamChunk("b", done=True), "c "])
    output, _ = streamer(placement).stream_buffered(source, "word")
    assert contents(output) == ["a ", "b"]
    assert source.closed.is_set() and source.produced == 2


# --- input types -----------------------------------------------------------------------


def test_bytes_are_decoded_even_when_a_character_is_split(placement):
    data = "naïve café — 你好 ".encode()
    pieces = [data[i : i + 1] for i in range(len(data))]
    output, _ = streamer(placement).stream_buffered(pieces, "word")
    assert "".join(contents(output)) == "naïve café — 你好 "


def test_invalid_utf8_raises_a_helixstream_error_naming_the_byte_offset(placement):
    output, _ = streamer(placement).stream_buffered([b"ok ", b"fi\xffne"], "word")
    got = []
    with pytest.raises(hs.StreamDecodeError) as info:
        for c in output:
            got.append(c.content)
    assert isinstance(info.value, hs.HelixStreamError)
    assert info.value.offset == 5 and "offset 5" in str(info.value)
    assert got == ["ok ", "fi"]  # the valid text before the bad byte comes first


def test_a_character_cut_off_at_the_end_is_a_decode_error(placement):
    output, _ = streamer(placement).stream_buffered([b"abc", "é".encode()[:1]], "word")
    with pytest.raises(hs.StreamDecodeError) as info:
        list(output)
    assert info.value.offset == 3


@pytest.mark.parametrize("bad", [None, 42, 3.5, ["list"], object()])
def test_items_of_the_wrong_type_raise_type_error_naming_type_and_index(bad, placement):
    output, _ = streamer(placement).stream_buffered(["fine ", bad], "word")
    with pytest.raises(TypeError) as info:
        list(output)
    assert type(bad).__name__ in str(info.value) and "item 1" in str(info.value)


def test_str_bytes_and_chunks_mix(placement):
    items = ["one ", b"two ", hs.StreamChunk("three ", tokens=1), bytearray(b"four")]
    output, _ = streamer(placement).stream_buffered(items, "word")
    assert "".join(contents(output)) == "one two three four"


# --- backpressure, timers, idleness ------------------------------------------------------


def test_a_slow_reader_holds_back_a_fast_source():
    produced = []
    too_far = threading.Event()

    def endless() -> Any:
        i = 0
        while True:
            produced.append(i)
            if i > 200:
                too_far.set()
            yield f"w{i} "
            i += 1

    streamer = hs.EnhancedStreamer(hs.StreamConfig(queue_size=16))
    output, _ = streamer.stream_buffered(endless(), "word")
    with output:
        assert next(output).content == "w0 "
        # The reader stops reading: the source may only run ahead by what fits in the
        # queue plus the batch the reader took from it.
        assert not too_far.wait(0.3)
        assert len(produced) <= 2 * 16 + 2


def test_max_delay_releases_held_text_while_the_source_is_silent():
    source = BlockingSource(["a_long_identifier_without_spaces"])
    streamer = hs.EnhancedStreamer(hs.StreamConfig(max_delay=0.05))
    output, _ = streamer.stream_buffered(source, "word")
    with output:
        chunk = output.next_within(5)
        assert chunk is not None and chunk.content == "a_long_identifier_without_spaces"
        assert source.waiting.is_set()  # released although the source has sent nothing more
        source.feed("tail ", "end")
        source.end()
        assert contents(output) == ["tail ", "end"]


def test_next_within_returns_none_on_silence_and_the_chunk_when_it_comes(placement):
    source = BlockingSource()
    output, _ = streamer(placement).stream_buffered(source, "word")
    with output:
        assert output.next_within(0.01) is None
        source.feed("hi ")
        chunk = output.next_within(5)
        assert chunk is not None and chunk.content == "hi "
        source.end()
        with pytest.raises(StopIteration):
            output.next_within(5)


def test_an_idle_open_stream_uses_no_cpu(placement):
    source = BlockingSource(["held"])
    output, _ = streamer(placement).stream_buffered(source, "sentence")
    with output:
        assert output.next_within(0.01) is None  # moves an inline stream to a thread
        assert source.waiting.wait(5)
        cpu = time.process_time()
        assert output.next_within(0.3) is None  # the reader waits too
        assert time.process_time() - cpu < 0.05


# --- results ---------------------------------------------------------------------------


def test_get_result_mid_stream_is_a_snapshot(placement):
    source = BlockingSource(["a ", "b "])
    output, get_result = streamer(placement).stream_buffered(source, "word")
    with output:
        assert [next(output).content, next(output).content] == ["a ", "b "]
        snap = get_result()
        assert snap.full_content == "a b " and not snap.cancelled
        assert snap.time_to_first_chunk is not None and snap.time_to_first_chunk >= 0
        source.end()
        assert list(output) == []
    final = get_result()
    assert final.chunk_count == 2 and not final.cancelled


def test_result_uses_token_counts_the_source_reported(placement):
    chunks = [hs.StreamChunk("Hello ", tokens=1), hs.StreamChunk("world", tokens=1)]
    output, get_result = streamer(placement).stream_buffered(chunks, "word")
    assert [c.tokens for c in output] == [1, 1]
    assert get_result().total_tokens == 2


# --- scale and process exit --------------------------------------------------------------


def test_200_streams_at_once_in_a_thread_pool(thread_baseline, placement):
    texts = [f"stream {n} says hello to you all. " * 5 for n in range(200)]

    def run(text: str) -> str:
        pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
        output, get_result = streamer(placement).stream_buffered(pieces, "sentence")
        got = "".join(c.content for c in output)
        assert get_result().full_content == got
        return got

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(run, texts))
    assert results == texts
    assert wait_for(lambda: not helix_threads())
    thread_baseline()


def test_open_streams_do_not_keep_the_interpreter_alive(tmp_path):
    script = tmp_path / "exits.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading, helixstream as hs
            never = threading.Event()
            def stuck():
                yield "first "
                never.wait()
                yield "never"
            output, _ = hs.EnhancedStreamer().stream_buffered(stuck(), "word")
            print(next(output).content, flush=True)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "first"
    assert "Traceback" not in done.stderr


class SDKStyleSource:
    """Like an SDK stream object: ``__iter__`` is a generator over a blocking response,
    and ``close()`` on the object closes the response."""

    def __init__(self, response: BlockingSource) -> None:
        self.response = response
        self.iterations_closed = threading.Event()

    def __iter__(self) -> Any:
        try:
            for item in self.response:
                yield item.upper()
        finally:
            self.iterations_closed.set()

    def close(self) -> None:
        self.response.close()


def test_stopping_closes_an_sdk_style_source_while_its_generator_is_blocked(thread_baseline, placement):
    response = BlockingSource(["hello "])
    source = SDKStyleSource(response)
    stop = threading.Event()
    output, get_result = streamer(placement).stream_buffered(source, "word", stop=stop)
    assert next(output).content == "HELLO "
    reader, got = read_in_thread(output)
    assert response.waiting.wait(5)  # the generator is blocked reading the response
    stop.set()
    assert response.closed.wait(5)  # closed from the stopping thread, at once
    reader.join(5)
    assert not reader.is_alive() and got == []
    for t in output.threads():
        t.join(5)
        assert not t.is_alive()
    assert source.iterations_closed.is_set()  # the worker closed the generator too
    result = get_result()
    assert result.cancelled and result.error is None
    thread_baseline()


def test_str_subclasses_are_plain_text_to_every_stage(placement):
    class Tagged(str):
        pass

    calls: List[Any] = []
    output, _ = streamer(placement).stream_enhanced([Tagged("ab "), Tagged("cd")], calls.append)
    got = list(output)
    assert [c.content for c in got] == ["ab ", "cd"]
    assert all(type(c.content) is str for c in got)
    assert calls[-1].chunks_received == 2
