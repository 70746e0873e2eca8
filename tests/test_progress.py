"""Progress tracking, throttled callbacks and the progress stage (injected clocks)."""
from __future__ import annotations

import threading
from typing import Any, List

import pytest

import helixstream as hs
from helixstream._progress import ProgressStage
from helixstream._tokens import RememberLast

from .sources import BlockingSource


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_tracker_counts_tokens_chunks_and_characters():
    clock = FakeClock()
    t = hs.ProgressTracker(clock=clock)
    t.update("Hello", tokens=2)
    t.update(" world", tokens=1)
    t.update_tokens(3)
    p = t.get_progress()
    assert (p.tokens_received, p.chunks_received, p.characters_received) == (6, 2, 11)
    assert p.percent is None and p.eta is None and not p.done


def test_tracker_guide_example_percent():
    t = hs.ProgressTracker()
    t.set_estimated_tokens(500)
    t.update_tokens(10)
    p = t.get_progress()
    assert p.tokens_received == 10 and p.estimated_tokens == 500
    assert p.percent == pytest.approx(2.0)


def test_tracker_speed_eta_and_time_to_first_token():
    clock = FakeClock(0.0)
    t = hs.ProgressTracker(100, clock=clock)
    clock.advance(2.0)  # the model thinks for two seconds
    t.update_tokens(10)
    clock.advance(1.0)
    t.update_tokens(20)
    p = t.get_progress()
    assert p.time_to_first_token == pytest.approx(2.0)
    assert p.elapsed == pytest.approx(3.0)
    # 20 tokens after the first batch, in the 1 s since it arrived
    assert p.tokens_per_second == pytest.approx(20.0)
    assert p.percent == pytest.approx(30.0)
    assert p.eta == pytest.approx(70 / 20.0)


def test_tracker_percent_is_capped_and_final_progress_is_complete():
    clock = FakeClock()
    t = hs.ProgressTracker(10, clock=clock)
    t.update_tokens(15)
    assert t.get_progress().percent == 100.0
    final = t.finish()
    assert final.done and final.percent == 100.0 and final.eta == 0.0


def test_tracker_reset_starts_over_and_keeps_the_estimate():
    clock = FakeClock()
    t = hs.ProgressTracker(50, clock=clock)
    t.update("abc", tokens=5)
    clock.advance(5)
    t.reset()
    p = t.get_progress()
    assert p.tokens_received == 0 and p.elapsed == 0 and p.estimated_tokens == 50
    assert p.time_to_first_token is None


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_tracker_rejects_bad_estimates(bad):
    with pytest.raises(hs.ConfigError, match="estimated_tokens"):
        hs.ProgressTracker().set_estimated_tokens(bad)


@pytest.mark.parametrize("bad", [-1, 2.5, None])
def test_tracker_rejects_bad_token_counts(bad):
    with pytest.raises(ValueError, match="token count"):
        hs.ProgressTracker().update_tokens(bad)


def test_tracker_is_thread_safe():
    t = hs.ProgressTracker()

    def work() -> None:
        for _ in range(2000):
            t.update("ab", tokens=1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    p = t.get_progress()
    assert (p.tokens_received, p.chunks_received, p.characters_received) == (16000, 16000, 32000)


def test_throttled_callback_calls_at_most_once_per_interval_and_flushes_the_newest():
    clock = FakeClock()
    calls: List[Any] = []
    throttled = hs.throttled_callback(calls.append, 0.5, clock=clock)
    throttled(1)  # leading edge: at once
    clock.advance(0.25)
    throttled(2)  # held
    throttled(3)  # replaces 2
    assert calls == [1] and throttled.pending
    assert throttled.time_left() == pytest.approx(0.25)
    clock.advance(0.25)
    throttled(4)
    assert calls == [1, 4] and not throttled.pending
    clock.advance(0.125)
    throttled(5)
    throttled.flush()
    assert calls == [1, 4, 5]


def test_throttled_callback_accepts_duration_strings():
    assert hs.throttled_callback(print, "250ms").interval == pytest.approx(0.25)


def test_throttled_callback_always_delivers_a_final_progress():
    clock = FakeClock()
    calls: List[Any] = []
    throttled = hs.throttled_callback(calls.append, 10, clock=clock)
    throttled(hs.StreamProgress(tokens_received=1))
    throttled(hs.StreamProgress(tokens_received=2))
    throttled(hs.StreamProgress(tokens_received=3, done=True))
    assert [p.tokens_received for p in calls] == [1, 3]


def test_progress_stage_throttles_and_reports_the_final_progress_once():
    clock = FakeClock()
    calls: List[hs.StreamProgress] = []
    stage = ProgressStage(calls.append, 1.0, 0, clock=clock)
    for _ in range(5):
        chunk = hs.StreamChunk("word ", tokens=1)
        (passed,) = stage(chunk)
        assert passed is chunk
        clock.advance(0.25)
    # calls at t=0 and t=1.0
    assert [p.tokens_received for p in calls] == [1, 5]
    stage.flush()
    stage.abort(None)
    assert [p.tokens_received for p in calls] == [1, 5, 5]
    assert calls[-1].done and not calls[0].done


def test_stream_with_progress_reports_final_totals():
    calls: List[hs.StreamProgress] = []
    streamer = hs.EnhancedStreamer(hs.StreamConfig(progress_interval=3600, estimated_tokens=4))
    pieces = [hs.StreamChunk(w, tokens=1) for w in ["a ", "b ", "c ", "d"]]
    output, get_result = streamer.stream_with_progress(pieces, calls.append)
    assert [c.content for c in output] == ["a ", "b ", "c ", "d"]
    assert calls[0].tokens_received == 1  # first call at once
    final = calls[-1]
    assert final.done and final.tokens_received == 4 and final.chunks_received == 4
    assert final.percent == 100.0
    assert get_result().total_tokens == 4


def test_stopped_stream_still_reports_final_progress():
    calls: List[hs.StreamProgress] = []
    stop = threading.Event()
    source = BlockingSource(["one "])
    streamer = hs.EnhancedStreamer(hs.StreamConfig(progress_interval=0))
    output, get_result = streamer.stream_enhanced(source, calls.append, stop=stop)
    assert next(output).content == "one "
    rest: list = []
    reader = threading.Thread(target=lambda: rest.extend(output))
    reader.start()
    assert source.waiting.wait(5)  # the reader's thread is blocked in the source
    stop.set()
    reader.join(5)
    assert not reader.is_alive() and rest == []
    for t in output.threads():
        t.join(5)
    assert [p.done for p in calls] == [False, True]
    assert calls[-1].tokens_received == calls[0].tokens_received
    assert get_result().cancelled


def test_failing_callback_ends_the_stream_with_its_exception():
    def callback(p: hs.StreamProgress) -> None:
        if p.chunks_received == 2:
            raise LookupError("callback broke")

    output, get_result = hs.EnhancedStreamer(
        hs.StreamConfig(progress_interval=0)
    ).stream_with_progress(["a ", "b ", "c "], callback)
    got = []
    with pytest.raises(LookupError, match="callback broke"):
        for c in output:
            got.append(c.content)
    assert got == ["a "]
    assert isinstance(get_result().error, LookupError)


def test_stream_enhanced_guide_example():
    seen: List[hs.StreamProgress] = []
    streamer = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="sentence", progress_interval=0.01))
    output, get_result = streamer.stream_enhanced(iter(["One. ", "Two", " words. Three"]), seen.append)
    got = [c.content for c in output]
    assert got == ["One. ", "Two words. ", "Three"]
    result = get_result()
    assert result.full_content == "One. Two words. Three" and result.chunk_count == 3
    assert seen[-1].done and seen[-1].chunks_received == 3


def test_stream_with_progress_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        hs.EnhancedStreamer().stream_with_progress(["a"], "not callable")  # type: ignore[arg-type]


def test_final_progress_counts_the_same_tokens_as_the_result():
    calls: List[hs.StreamProgress] = []
    streamer = hs.EnhancedStreamer(hs.StreamConfig(progress_interval=0))
    output, get_result = streamer.stream_with_progress(["a ", "b ", "c", "onomatopoeia"], calls.append)
    list(output)
    assert calls[-1].done
    assert calls[-1].tokens_received == get_result().total_tokens == hs.estimate_tokens("a b conomatopoeia")


@pytest.mark.timeout(10)
def test_progress_stage_reports_every_time_a_report_is_due() -> None:
    # A text that arrives exactly when a report is due gets it, every time (the stage
    # throttles by its own ``due``, with no second throttle measuring from another
    # reading of the clock).
    now = [0.0]

    def clock() -> float:
        now[0] += 1e-6  # time moves on between any two readings
        return now[0]

    reports: List[Any] = []
    stage = ProgressStage(reports.append, interval=1.0, clock=clock)
    stage.start()
    for k in range(10):
        if k:
            now[0] = stage.due - 1e-6  # the next reading is exactly when one is due
        stage(f"w{k} ")
    assert len(reports) == 10
    assert [r.chunks_received for r in reports] == list(range(1, 11))
    stage.flush()
    assert len(reports) == 11 and reports[-1].done


def _a_progress_with_every_field_known() -> hs.StreamProgress:
    clock = FakeClock()
    tracker = hs.ProgressTracker(10, clock=clock)
    tracker.update_tokens(2)
    clock.advance(1.0)
    tracker.update("ab", tokens=3)
    return tracker.get_progress()


def test_progress_reports_are_made_with_the_fields_in_their_declared_order() -> None:
    # ProgressTracker._snapshot passes the fields positionally (for speed): a change
    # of their order must change it too
    import attrs

    assert [f.name for f in attrs.fields(hs.StreamProgress)] == [
        "tokens_received", "chunks_received", "characters_received", "estimated_tokens",
        "elapsed", "tokens_per_second", "percent", "eta", "time_to_first_token", "done",
        "cancelled", "error",
    ]
    p = _a_progress_with_every_field_known()
    assert (p.tokens_received, p.chunks_received, p.characters_received) == (5, 1, 2)
    assert (p.estimated_tokens, p.elapsed, p.tokens_per_second) == (10, 1.0, 3.0)
    assert (p.percent, p.eta, p.time_to_first_token) == (50.0, 5 / 3, 0.0)
    assert (p.done, p.cancelled, p.error) == (False, False, None)


def test_a_failing_token_counter_does_not_count_the_chunks_of_a_report_twice() -> None:
    # Review finding: a report whose count raised kept its chunks pending, and the
    # final report recorded them a second time.
    def counter(text: str) -> int:
        raise RuntimeError("counter down")

    reports: List[Any] = []
    stage = ProgressStage(reports.append, interval=0.0, counter=counter)
    stage.start()
    with pytest.raises(RuntimeError):
        stage("hello ")
    with pytest.raises(RuntimeError):
        stage.abort(RuntimeError("counter down"))
    assert reports[-1].done
    assert (reports[-1].chunks_received, reports[-1].characters_received) == (1, 6)


def test_a_counter_that_fails_once_still_counts_that_text_at_the_end() -> None:
    calls = [0]

    def counter(text: str) -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("counter down once")
        return len(text.split())

    reports: List[Any] = []
    stage = ProgressStage(reports.append, interval=0.0, counter=counter)
    stage.start()
    with pytest.raises(RuntimeError):
        stage("hello ")
    stage("big world ")
    stage.flush()
    assert reports[-1].done and reports[-1].tokens_received == 3
    assert (reports[-1].chunks_received, reports[-1].characters_received) == (2, 16)


@pytest.mark.parametrize("drafts", [True, False])
def test_a_report_is_a_frozen_stream_progress_made_either_way(monkeypatch: Any, drafts: bool) -> None:
    # Reports are made by filling a writable twin of StreamProgress and assigning its
    # class (fast), or, where that does not work, by StreamProgress(...): the same.
    import attrs

    from helixstream import _progress

    assert _progress._DRAFTS  # CPython 3.11 with this attrs: the fast way works
    monkeypatch.setattr(_progress, "_DRAFTS", drafts)
    p = _a_progress_with_every_field_known()
    assert type(p) is hs.StreamProgress
    assert p == hs.StreamProgress(5, 1, 2, 10, 1.0, 3.0, 50.0, 5 / 3, 0.0, False, False, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        p.done = True  # type: ignore[misc]
    assert attrs.evolve(p, done=True).done and hash(p) == hash(attrs.evolve(p))


@pytest.mark.timeout(10)
def test_with_the_estimator_every_count_is_the_whole_text_so_far() -> None:
    # Reports count batch by batch; with the default counter each count is that of all
    # the text so far, as if counted whole, and the end needs no second count of it.
    counter = RememberLast(hs.estimate_tokens)
    t = hs.ProgressTracker(counter=counter)
    batches = [["The quick ", "brown "], ["fox jum"], ["ps over ", "the"], [" lazy dog. "]]
    text = ""
    for batch in batches:
        for piece in batch:
            t.update(piece)
        text += "".join(batch)
        assert t.get_progress().tokens_received == hs.estimate_tokens(text)
    final = t.finish()
    assert final.tokens_received == hs.estimate_tokens(text)
    # the whole text's count is remembered for the stream's aggregate (no recount)
    assert counter._last == (text, final.tokens_received)  # noqa: SLF001


@pytest.mark.timeout(10)
def test_a_text_that_leaves_the_estimators_fast_path_is_counted_whole_at_the_end() -> None:
    t = hs.ProgressTracker()
    pieces = ["Hello there ", "friend.\n\n", "Second  paragraph, ", "naïve café. "]
    for piece in pieces:
        t.update(piece)
        t.get_progress()
    assert t.finish().tokens_received == hs.estimate_tokens("".join(pieces))


@pytest.mark.timeout(10)
def test_a_streams_final_progress_and_result_count_the_whole_text_either_way() -> None:
    reports: List[Any] = []
    for source in (["one two ", "three four ", "five."], ["one\ntwo ", "three  four"]):
        out, get_result = hs.EnhancedStreamer(
            hs.StreamConfig(buffer_type="word", progress_interval=0)
        ).stream_enhanced(source, reports.append)
        text = "".join(chunk.content for chunk in out)
        result = get_result()
        assert reports[-1].done
        assert reports[-1].tokens_received == result.total_tokens == hs.estimate_tokens(text)


@pytest.mark.timeout(10)
def test_text_recorded_after_finish_is_counted_once() -> None:
    t = hs.ProgressTracker()
    t.update("hello world ")
    assert t.finish().tokens_received == hs.estimate_tokens("hello world ")
    t.update("foo ")
    assert t.get_progress().tokens_received == hs.estimate_tokens("hello world foo ")


@pytest.mark.timeout(10)
def test_a_stream_with_other_ascii_whitespace_counts_as_its_whole_text() -> None:
    reports: List[Any] = []
    out, get_result = hs.EnhancedStreamer(
        hs.StreamConfig(buffer_type="word", progress_interval=0)
    ).stream_enhanced(["alpha\x0c", "beta gamma ", "delta\x0b", "epsilon."], reports.append)
    text = "".join(c.content for c in out)
    assert reports[-1].tokens_received == get_result().total_tokens == hs.estimate_tokens(text)
