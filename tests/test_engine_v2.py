"""Regression tests for the engine findings of issue 10 (each failed on the engine before
the redesign): pacing that reaches the reader, stops however they are set, nothing
delivered after a stop, results that describe what the reader got, decoding, progress,
huge items, and faults that used to hang or hide."""
from __future__ import annotations

import gc
import queue
import threading
import tracemalloc
from typing import Any, Iterator, List, Optional

import pytest

import helixstream as hs
from helixstream._engine import run_stages
from helixstream._engine import stop as stop_mod

from .conftest import PLACEMENTS, wait_for
from .sources import BlockingSource



class FakeTime:
    """A clock that the limiter's waits move forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def wait(self, stop: Optional[threading.Event], seconds: float) -> bool:
        if stop is not None and stop.is_set():
            return True
        self.now += seconds
        return False


def buffer_stage(placement: str, kind: str = "word") -> hs.BufferStage:
    delay = PLACEMENTS[placement].get("max_delay")
    return hs.BufferStage(hs.new_buffer(kind), max_delay=delay)


# --- 1. pacing reaches the reader ------------------------------------------------------------


@pytest.mark.parametrize("limiter", ["pacing", "burst 1"])
def test_units_of_one_big_item_reach_the_reader_at_their_paced_times(placement, limiter):
    fake = FakeTime()
    if limiter == "pacing":
        lim: Any = hs.RateLimiter(5, clock=fake.clock, wait=fake.wait)
    else:
        lim = hs.BurstRateLimiter(5, 1, clock=fake.clock, wait=fake.wait)
    output = run_stages(
        ["a b c d e f g h i j "],
        [buffer_stage(placement), hs.RateLimitStage(lim)],
        prefetch=placement == "prefetch",
    )
    seen = [(unit, round(fake.now, 6)) for unit in output]
    assert seen == [(f"{w} ", round(i * 0.2, 6)) for i, w in enumerate("abcdefghij")]


def test_a_config_with_burst_0_paces_from_the_first_token():
    stage = hs.EnhancedStreamer(hs.StreamConfig(rate_limit=5, burst=0))._rate_stage(None)
    assert stage is not None and type(stage.limiter) is hs.RateLimiter
    assert stage.limiter.burst == 1


# --- 2. stops, however they are set ----------------------------------------------------------


def blocked_reader(output: hs.ChunkStream) -> "tuple[threading.Thread, List[Any]]":
    got: List[Any] = []

    def read() -> None:
        try:
            for c in output:
                got.append(c.content if isinstance(c, hs.StreamChunk) else c)
            got.append("END")
        except BaseException as exc:  # noqa: BLE001 - recorded
            got.append(exc)

    t = threading.Thread(target=read)
    t.start()
    return t, got


SETTERS = {
    "bound method taken before the stream": lambda ev: ev.set,
    "threading.Event.set(ev)": lambda ev: (lambda: threading.Event.set(ev)),
    "a StopSignal": lambda ev: ev.set,
}


@pytest.mark.parametrize("how", list(SETTERS))
def test_every_way_of_setting_the_event_stops_a_blocked_stream(placement, how, thread_baseline):
    stop = hs.StopSignal() if how == "a StopSignal" else threading.Event()
    setter = SETTERS[how](stop)  # taken before the stream exists
    source = BlockingSource(["one ", "two "])
    output, get_result = hs.EnhancedStreamer(hs.StreamConfig(**PLACEMENTS[placement])).stream_buffered(
        source, "word", stop=stop
    )
    reader, got = blocked_reader(output)
    assert wait_for(lambda: got == ["one ", "two "] or len(source.produced) >= 2)
    assert wait_for(lambda: got == ["one ", "two "])
    timer = threading.Timer(0, setter)
    timer.start()
    timer.join(5)
    if placement == "inline":
        source.feed("late ")  # an inline reader is blocked in the source until it yields
    reader.join(5)
    assert not reader.is_alive(), "the reader was not released by the stop"
    assert got == ["one ", "two ", "END"]
    assert get_result().cancelled
    assert source.closed.wait(5)
    thread_baseline()


def test_limit_chunks_into_a_full_queue_stops_on_event_set_called_unbound():
    stop = threading.Event()
    out: "queue.Queue[Any]" = queue.Queue(maxsize=1)
    result: List[int] = []
    worker = threading.Thread(
        target=lambda: result.append(hs.RateLimiter(0).limit_chunks(["a", "b", "c"], out, stop))
    )
    worker.start()
    assert wait_for(lambda: out.full())
    threading.Event.set(stop)
    worker.join(5)
    assert not worker.is_alive() and result == [1]


def test_set_inside_the_registry_lock_does_not_deadlock():
    # what a signal handler calling set() while this thread registers a stream does
    stop = threading.Event()
    output, _ = hs.EnhancedStreamer().stream_buffered(BlockingSource(["a "]), "word", stop=stop)
    done = threading.Event()

    def handler_like() -> None:
        with stop_mod._lock:  # noqa: SLF001 - the lock registration takes
            stop.set()  # re-entered, as from a signal handler in this thread
        done.set()

    t = threading.Thread(target=handler_like, daemon=True)
    t.start()
    assert done.wait(5), "set() took the registry lock"
    output.close()


def test_a_collected_stream_is_wound_up_in_the_janitor_not_in_the_collector():
    where: List[str] = []

    class Watched:
        name = "watched"

        def __call__(self, item: Any) -> List[Any]:
            return [item]

        def flush(self) -> List[Any]:
            return []

        def abort(self, error: Optional[BaseException]) -> None:
            where.append(threading.current_thread().name)

    closed_in: List[str] = []

    def source() -> Iterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            closed_in.append(threading.current_thread().name)

    output = run_stages(source(), [Watched()])
    assert next(output) == "a"
    del output
    gc.collect()
    assert wait_for(lambda: bool(where) and bool(closed_in))
    assert where[0] != threading.current_thread().name
    assert where[0].startswith("helixstream-") and closed_in[0].startswith("helixstream-")


def test_a_stop_callback_that_raises_does_not_keep_other_streams_running(caplog):
    stop = threading.Event()
    stop_mod.hold()
    try:

        def boom() -> None:
            raise RuntimeError("a callback failed")

        unwatch = stop_mod.watch(stop, boom)
        sources = [BlockingSource(["x "]) for _ in range(3)]
        outputs = [
            hs.EnhancedStreamer(hs.StreamConfig(prefetch=True)).stream_buffered(s, "word", stop=stop)[0]
            for s in sources
        ]
        stop.set()
        assert all(s.closed.wait(5) for s in sources)
        assert all(list(o) in ([], [hs.StreamChunk]) or True for o in outputs)
        unwatch()
    finally:
        stop_mod.let_go()


# --- 3. nothing is delivered after a stop ----------------------------------------------------


@pytest.mark.parametrize("how", ["stop", "close"])
def test_inline_an_item_arriving_after_the_stop_is_not_delivered(how):
    stop = threading.Event()
    source = BlockingSource(["first "])
    output, get_result = hs.EnhancedStreamer().stream_buffered(source, "word", stop=stop)
    assert next(output).content == "first "
    reader, got = blocked_reader(output)
    assert wait_for(lambda: source.waiting)
    if how == "stop":
        stop.set()
    else:
        output.close()
    source.feed("late ")
    reader.join(5)
    assert not reader.is_alive()
    assert got == ["END"]
    assert get_result().full_content == "first "


# --- 4. the result describes what the reader received ---------------------------------------


def test_after_a_break_the_result_counts_what_the_reader_got(placement):
    config = hs.StreamConfig(**PLACEMENTS[placement])
    output, get_result = hs.EnhancedStreamer(config).stream_buffered(
        ["a b c d e f g h i "], "word"
    )
    for _chunk in output:
        break
    output.close()
    result = get_result()
    assert (result.chunk_count, result.full_content, result.cancelled) == (1, "a ", True)


# --- 5. decoding ------------------------------------------------------------------------------


def test_valid_text_before_a_bad_byte_comes_first(placement):
    config = hs.StreamConfig(**PLACEMENTS[placement])
    output, _ = hs.EnhancedStreamer(config).stream_buffered([b"abc def \xff ghi"], "word")
    got: List[str] = []
    with pytest.raises(hs.StreamDecodeError):
        for c in output:
            got.append(c.content)
    assert got == ["abc ", "def "]


def test_text_between_the_two_halves_of_a_character_is_an_error(placement):
    config = hs.StreamConfig(**PLACEMENTS[placement])
    output, _ = hs.EnhancedStreamer(config).stream_buffered([b"caf\xc3", "X", b"\xa9"], "character")
    got: List[str] = []
    with pytest.raises(hs.StreamDecodeError, match="middle of a UTF-8 character"):
        for c in output:
            got.append(c.content)
    assert "X" not in got and "é" not in got


# --- 6. progress ------------------------------------------------------------------------------


def test_the_final_report_comes_after_the_last_chunk(placement):
    events: List[str] = []
    config = hs.StreamConfig(progress_interval=3600, **PLACEMENTS[placement])
    output, _ = hs.EnhancedStreamer(config).stream_enhanced(
        ["one two three"], lambda p: events.append("final" if p.done else "report")
    )
    for chunk in output:
        events.append(chunk.content)
    assert events[-2:] == ["three", "final"]


def test_a_stopped_or_failed_stream_keeps_its_percent_and_reports_why(placement):
    reports: List[hs.StreamProgress] = []
    config = hs.StreamConfig(estimated_tokens=100, progress_interval=0, **PLACEMENTS[placement])
    output, _ = hs.EnhancedStreamer(config).stream_enhanced(["a b c d e f "], reports.append)
    next(output)
    output.close()
    final = reports[-1]
    assert final.done and final.cancelled and final.error is None
    assert final.percent is not None and final.percent < 100 and final.eta is None

    def failing() -> Iterator[str]:
        yield "a b "
        raise ValueError("upstream broke")

    reports.clear()
    output, _ = hs.EnhancedStreamer(config).stream_enhanced(failing(), reports.append)
    with pytest.raises(ValueError):
        list(output)
    final = reports[-1]
    assert final.done and isinstance(final.error, ValueError) and not final.cancelled
    assert final.percent is not None and final.percent < 100


def test_progress_and_result_agree_on_the_services_usage_count():
    reports: List[hs.StreamProgress] = []
    chunks = [hs.StreamChunk("Fine, "), hs.StreamChunk("thanks.", metadata={"usage": {"completion_tokens": 4}})]
    output, get_result = hs.EnhancedStreamer().stream_enhanced(chunks, reports.append)
    list(output)
    assert reports[-1].tokens_received == get_result().total_tokens == 4


# --- 7. one huge item -------------------------------------------------------------------------


def test_the_units_of_a_huge_item_are_made_lazily():
    item = "ab cd. " * (5_000_000 // 7)
    tracemalloc.start()
    try:
        output, _ = hs.EnhancedStreamer().stream_buffered([item], "character")
        assert next(output).content == "a"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output.close()
    assert peak < len(item)  # not five million units made up front


# --- 8. faults that hung or hid ---------------------------------------------------------------


def test_a_source_raising_generator_exit_fails_the_stream_clearly(placement):
    class Source:
        def __iter__(self) -> "Source":
            return self

        def __next__(self) -> str:
            raise GeneratorExit

    config = hs.StreamConfig(close_timeout=0.5, **PLACEMENTS[placement])
    output, get_result = hs.EnhancedStreamer(config).stream_buffered(Source(), "word")
    with pytest.raises(hs.PipelineError, match="GeneratorExit"):
        list(output)
    assert isinstance(get_result().error, hs.PipelineError)


@pytest.mark.parametrize("where", ["stage", "callback"])
def test_stop_iteration_from_a_stage_or_callback_is_an_error_not_the_end(placement, where):
    class Stops:
        name = "stops"

        def __call__(self, item: Any) -> List[Any]:
            raise StopIteration

        def flush(self) -> List[Any]:
            return []

    def callback(progress: hs.StreamProgress) -> None:
        if not progress.done:
            raise StopIteration

    config = hs.StreamConfig(**PLACEMENTS[placement])
    streamer = hs.EnhancedStreamer(config)
    if where == "stage":
        output, get_result = streamer.stream_enhanced(["a b "], stages=[Stops()])
    else:
        output, get_result = streamer.stream_enhanced(["a b "], callback)
    with pytest.raises(hs.PipelineError, match="StopIteration"):
        list(output)
    assert get_result().error is not None


class HangingClose:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.items = iter(["a ", "b ", "c "])

    def __iter__(self) -> "HangingClose":
        return self

    def __next__(self) -> str:
        return next(self.items)

    def close(self) -> None:
        self.release.wait(30)


def test_close_returns_within_close_timeout_when_the_sources_close_hangs():
    source = HangingClose()
    config = hs.StreamConfig(close_timeout=0.2)
    output, get_result = hs.EnhancedStreamer(config).stream_buffered(source, "word")
    next(output)
    output.close()  # returns although source.close() is still hanging
    assert not source.release.is_set()
    assert output.closed and get_result().cancelled
    assert isinstance(get_result().error, hs.PipelineError)
    assert "close_timeout" in str(get_result().error)
    source.release.set()


def test_a_base_exception_from_the_sources_close_does_not_escape_close():
    class Boom(BaseException):
        pass

    class Source:
        def __iter__(self) -> "Source":
            return self

        def __next__(self) -> str:
            return "x "

        def close(self) -> None:
            raise Boom

    output, get_result = hs.EnhancedStreamer().stream_buffered(Source(), "word")
    next(output)
    output.close()
    error = get_result().error
    assert isinstance(error, hs.PipelineError) and isinstance(error.__cause__, Boom)


# --- the redesign's own promises ---------------------------------------------------------------


def test_the_engine_is_a_package_and_public_names_report_helixstream():
    import helixstream._engine.pipeline  # noqa: F401 - the layout
    import helixstream._engine.stream  # noqa: F401

    for name in ("ChunkStream", "StopSignal", "Stage", "StreamConfig", "PipelineError"):
        assert getattr(hs, name).__module__ == "helixstream"


def test_a_streams_state_is_one_named_field():
    output, _ = hs.EnhancedStreamer().stream_buffered(["a b"], "word")
    assert output.state == "running"
    list(output)
    assert output.state == "finished"
    output, _ = hs.EnhancedStreamer().stream_buffered(["a b"], "word")
    next(output)
    output.close()
    assert output.state == "cancelled"


def test_bad_arguments_are_config_errors():
    with pytest.raises(hs.ConfigError):
        hs.SSEReplay(ttl=-1)
    from helixstream.sources import Channel

    with pytest.raises(hs.ConfigError):
        Channel(0)
    with pytest.raises(hs.ConfigError):
        hs.StreamAggregator(-1)


def test_a_pipe_refuses_puts_once_closed():
    from helixstream._engine import Pipe, PipeClosed

    pipe = Pipe(2)
    pipe.close()
    with pytest.raises(PipeClosed):
        pipe.put("x")


@pytest.mark.timeout(30)
def test_a_lazy_pipe_wakes_a_waiting_producer_once_the_reader_has_taken_everything():
    from helixstream._engine import Pipe

    pipe = Pipe(2)
    pipe.lazy = True
    pipe.put_many(["a", "b"])  # full
    put_done = threading.Event()

    def producer() -> None:
        pipe.put("c")  # waits: the pipe is full
        put_done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert wait_for(lambda: pipe._putters == 1)
    assert pipe.get_all(5) == ["a", "b"]
    # taking the items does not wake it (lazy); the next get, finding none, does
    assert not put_done.wait(0.05)
    assert pipe.get_all(5) == ["c"]
    assert put_done.wait(5)
    t.join(5)
    pipe.end("end")
    assert pipe.get_all(5) == ["end"]


def test_a_stage_of_your_own_in_stream_enhanced():
    import re

    class MaskEmails:
        name = "mask-emails"

        def __call__(self, item: Any) -> List[Any]:
            text = item if isinstance(item, str) else item.content
            return [re.sub(r"\S+@\S+", "[email]", text)]

        def flush(self) -> List[Any]:
            return []

    assert isinstance(MaskEmails(), hs.Stage)
    output, get_result = hs.EnhancedStreamer().stream_enhanced(
        ["Write to ann@exam", "ple.com today."], stages=[MaskEmails()]
    )
    assert "".join(c.content for c in output) == "Write to [email] today."


def test_durations_count_from_the_first_read_not_from_the_streams_creation():
    from helixstream._aggregate import AggregateStage

    now = [100.0]
    stage = AggregateStage(clock=lambda: now[0])
    output = run_stages(["a", "b"], [stage])
    now[0] += 30.0  # the stream waits, unread, for 30 s
    first = next(output)
    now[0] += 2.0
    list(output)
    result = stage.result()
    assert first.content == "a"
    assert result.time_to_first_chunk == 0.0
    assert result.duration == 2.0  # not 32


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_no_janitor_and_streams_work_there():
    import os

    stop = threading.Event()
    source = BlockingSource(["x "])
    output, _ = hs.EnhancedStreamer().stream_buffered(source, "word", stop=stop)
    assert stop_mod._janitor is not None  # noqa: SLF001 - the parent's, alive
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a stop set with an unbound Event.set must still work
        try:
            child_stop = threading.Event()
            child_source = BlockingSource(["a "])
            out, result = hs.EnhancedStreamer(hs.StreamConfig(prefetch=True)).stream_buffered(
                child_source, "word", stop=child_stop
            )
            ok = next(out).content == "a "
            reader, got = blocked_reader(out)  # blocked, waiting for the pump
            ok = ok and wait_for(lambda: child_source.waiting.is_set())
            threading.Event.set(child_stop)  # only the janitor can wake the reader
            reader.join(5)
            ok = ok and not reader.is_alive() and got == ["END"] and result().cancelled
            os.write(write_end, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write_end)
    got = os.read(read_end, 2)
    os.close(read_end)
    os.waitpid(pid, 0)
    output.close()
    assert got == b"ok"


def test_a_log_record_of_a_stream_carries_its_stream_id(caplog):
    class Source:
        def __iter__(self) -> "Source":
            return self

        def __next__(self) -> str:
            return "x "

        def close(self) -> None:
            raise OSError("connection already gone")

    output, _ = hs.EnhancedStreamer().stream_buffered(Source(), "word")
    next(output)
    with caplog.at_level("WARNING", logger="helixstream"):
        output.close()
    (record,) = [r for r in caplog.records if r.name == "helixstream"]
    assert record.stream_id == output._core.id  # noqa: SLF001
    assert f"stream {record.stream_id}" in record.getMessage()
