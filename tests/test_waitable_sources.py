"""Sources that can wait for their next item (``wait_ready(timeout)``): a stream's
``next_within`` reads them in the reader's own thread, so an event stream with
keep-alives needs no source thread (issue 11: one thread wake-up per event, not two).
"""
from __future__ import annotations

import threading
import time
from typing import Any, List

import pytest

import helixstream as hs
from helixstream.sources import Channel
from helixstream.sse import sse_stream

from .conftest import wait_for
from .test_sse_encoding import browser_events

KEEPALIVE = b": keep-alive\n"


def source_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-source")]


@pytest.mark.timeout(30)
def test_an_event_stream_of_a_simulated_model_reads_it_in_the_server_thread() -> None:
    model = hs.SimulatedLLM("one two three four", tokens_per_second=200,
                            first_token_delay=0.3, jitter=0)
    body = sse_stream(model, keepalive=0.1)
    pieces = []
    try:
        for piece in body:
            pieces.append(piece)
            assert source_threads() == []  # no thread reads the model
    finally:
        body.close()
    assert KEEPALIVE in pieces[:4]  # the first token's delay was filled with keep-alives
    events = browser_events(b"".join(pieces))
    assert "".join(e.data for e in events if e.type == "message") == "one two three four"
    assert events[-1].type == "done"


@pytest.mark.timeout(30)
def test_next_within_on_a_channel_times_out_without_a_thread_and_then_delivers() -> None:
    channel = Channel()
    output, _ = hs.EnhancedStreamer().stream_buffered(channel)
    with output:
        assert output.next_within(0.05) is None  # nothing yet: a timeout, not a block
        assert source_threads() == []
        channel.send("hello ")
        chunk = output.next_within(5)
        assert chunk is not None and chunk.content == "hello "
        channel.close()
        with pytest.raises(StopIteration):
            output.next_within(5)


@pytest.mark.timeout(30)
def test_a_buffer_holding_a_partial_word_still_times_out_at_the_deadline() -> None:
    channel = Channel()
    output, _ = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="word")).stream_buffered(channel)
    with output:
        channel.send("hel")
        channel.send("lo")  # items arrive, but no word is complete
        started = time.monotonic()
        assert output.next_within(0.2) is None
        assert time.monotonic() - started < 5
        channel.send(" world ")
        chunk = output.next_within(5)
        assert chunk is not None and chunk.content == "hello "
        channel.close()


@pytest.mark.timeout(30)
def test_closing_from_another_thread_ends_a_wait_on_the_source_at_once() -> None:
    model = hs.SimulatedLLM("never said", tokens_per_second=10, first_token_delay=60)
    output, get_result = hs.EnhancedStreamer().stream_buffered(model)
    waiting = threading.Event()
    outcome: List[object] = []

    def read() -> None:
        waiting.set()
        try:
            outcome.append(output.next_within(30))
        except StopIteration:
            outcome.append("end")

    reader = threading.Thread(target=read)
    reader.start()
    assert waiting.wait(5)
    assert wait_for(lambda: output._core.in_source, timeout=5)  # inside the source's wait
    started = time.monotonic()
    output.close()
    reader.join(5)
    assert not reader.is_alive()
    assert time.monotonic() - started < 2
    assert outcome == ["end"]
    assert model.closed
    assert get_result().cancelled


@pytest.mark.timeout(30)
def test_a_stop_signal_ends_a_wait_on_the_source() -> None:
    stop = hs.StopSignal()
    model = hs.SimulatedLLM("never said", tokens_per_second=10, first_token_delay=60)
    output, get_result = hs.EnhancedStreamer().stream_buffered(model, stop=stop)
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    try:
        with pytest.raises(StopIteration):
            output.next_within(30)
    finally:
        timer.cancel()
    assert model.closed
    assert get_result().cancelled


@pytest.mark.timeout(30)
def test_a_simulated_model_read_with_and_without_timeouts_gives_the_same_tokens() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 3
    plain = list(hs.SimulatedLLM(text, tokens_per_second=5000, first_token_delay=0, seed=1))
    output, _ = hs.EnhancedStreamer().stream_buffered(
        hs.SimulatedLLM(text, tokens_per_second=5000, first_token_delay=0, seed=1)
    )
    got = []
    with output:
        while True:
            try:
                chunk = output.next_within(0.0005)
            except StopIteration:
                break
            if chunk is not None:
                got.append(chunk.content)
    assert "".join(got) == "".join(plain) == text


@pytest.mark.timeout(30)
def test_next_within_zero_takes_what_the_pump_has_queued() -> None:
    """A deadline already past still looks at the queue (a poll, not 'nothing yet')."""
    # a generator: next_within gives it a pump (a list would be read in this thread)
    stream, _ = hs.EnhancedStreamer().stream_buffered(p for p in ["a ", "b ", "c "])
    with stream:
        assert stream.next_within(5) is not None  # starts the pump; the rest gets queued
        assert wait_for(lambda: len(stream._core.pipe or ()) > 0 or stream._core.source_done)
        got = []
        for _ in range(100):
            try:
                chunk = stream.next_within(0)
            except StopIteration:
                break
            if chunk is not None:
                got.append(chunk.content)
        assert "".join(got) == "b c "


@pytest.mark.timeout(30)
@pytest.mark.parametrize("source", [["a ", "b ", "c "], ("a ", "b ", "c "), "a b c "])
def test_a_source_in_memory_is_read_in_the_readers_thread_by_next_within(source: Any) -> None:
    """A list, a tuple or a str never blocks: next_within() starts no thread for it,
    and a deadline already past still gets its next unit."""
    stream, result = hs.EnhancedStreamer().stream_buffered(source)
    before = threading.active_count()
    with stream:
        got = []
        while True:
            try:
                chunk = stream.next_within(0)
            except StopIteration:
                break
            assert chunk is not None
            got.append(chunk.content)
            assert stream.threads() == [] and threading.active_count() == before
    assert got == ["a ", "b ", "c "]
    assert result().chunk_count == 3


class _WaitRaises:
    """A source whose wait_ready raises ``exc`` (a broken source)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __iter__(self) -> "_WaitRaises":
        return self

    def __next__(self) -> str:
        return "never read "

    def wait_ready(self, timeout: float) -> bool:
        raise self.exc


@pytest.mark.timeout(30)
def test_a_wait_ready_raising_generator_exit_ends_the_stream_with_a_clear_error() -> None:
    # It escaped as GeneratorExit, which looks like a stream closed by its reader.
    stream, result = hs.EnhancedStreamer().stream_buffered(_WaitRaises(GeneratorExit()))
    with pytest.raises(hs.PipelineError, match="GeneratorExit"):
        stream.next_within(1)
    assert stream.state == "failed"
    assert isinstance(result().error, hs.PipelineError)


@pytest.mark.timeout(30)
def test_a_stop_set_while_the_source_waits_leaves_its_next_item_unread() -> None:
    stop = threading.Event()
    reads: List[int] = []

    class Source:
        def __iter__(self) -> "Source":
            return self

        def __next__(self) -> str:
            reads.append(1)
            return "x "

        def wait_ready(self, timeout: float) -> bool:
            stop.set()  # the stop comes while the reader waits here
            return True

    stream, result = hs.EnhancedStreamer().stream_buffered(Source(), stop=stop)
    with pytest.raises(StopIteration):
        stream.next_within(1)
    assert reads == [] and stream.cancelled and result().cancelled
