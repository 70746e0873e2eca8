"""BufferStage called as a plain function, with a fake clock: no threads, no sleeping."""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import helixstream as hs
from helixstream._chunk import StreamChunk
from helixstream._stages import BufferStage


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def texts_of(items: List[Any]) -> List[str]:
    return [i if isinstance(i, str) else i.content for i in items]


def stage_with_clock(kind: str = "word", max_delay: Optional[float] = 1.0) -> Tuple[BufferStage, FakeClock]:
    clock = FakeClock()
    return BufferStage(hs.new_buffer(kind), max_delay=max_delay, clock=clock), clock


# --- plain calls ------------------------------------------------------------------------


def test_stage_releases_the_units_its_buffer_completes() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    assert stage("Hel") == []
    assert texts_of(stage("lo wor")) == ["Hello "]
    assert texts_of(stage("ld")) == []
    assert texts_of(stage.flush()) == ["world"]
    assert stage.flush() == []


def test_stage_takes_chunks_as_well_as_strings() -> None:
    stage = BufferStage(hs.new_buffer("sentence"))
    assert stage(StreamChunk("Hi. The")) == ["Hi. "]
    assert texts_of(stage.flush()) == ["The"]


def test_stage_takes_str_subclasses_like_str() -> None:
    class Text(str):
        pass

    stage = BufferStage(hs.new_buffer("word"))
    assert texts_of(stage(Text("ab cd"))) == ["ab "]
    assert texts_of(stage.flush()) == ["cd"]


def test_stage_drops_chunks_with_no_text_tokens_or_metadata() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    assert stage(StreamChunk("")) == []
    assert stage.flush() == []


def test_stage_name_is_the_buffer_type() -> None:
    assert BufferStage(hs.new_buffer("paragraph")).name == "paragraph"


@pytest.mark.parametrize("bad", [-1, "soon", float("nan")])
def test_stage_rejects_a_bad_max_delay(bad: object) -> None:
    with pytest.raises(hs.ConfigError, match="max_delay"):
        BufferStage(hs.new_buffer("word"), max_delay=bad)  # type: ignore[arg-type]


def test_stage_accepts_max_delay_as_a_duration_string() -> None:
    stage = BufferStage(hs.new_buffer("word"), max_delay="250ms")
    assert stage.max_delay == pytest.approx(0.25)


# --- max_delay, on a fake clock ----------------------------------------------------------


def test_without_max_delay_the_stage_has_no_timer() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    stage("held")
    # the runner's protocol: a stage without a callable time_left needs no timer thread
    assert stage.time_left is None


def test_time_left_is_none_while_nothing_is_held() -> None:
    stage, clock = stage_with_clock()
    assert stage.time_left() is None
    stage("done ")  # released at once, nothing held
    assert stage.time_left() is None
    assert stage.tick() == []


def test_time_left_counts_down_from_max_delay_once_text_is_held() -> None:
    stage, clock = stage_with_clock(max_delay=1.0)
    stage("abc")
    assert stage.time_left() == pytest.approx(1.0)
    clock.advance(0.4)
    assert stage.time_left() == pytest.approx(0.6)


def test_tick_releases_nothing_before_max_delay() -> None:
    stage, clock = stage_with_clock(max_delay=1.0)
    stage("abc")
    clock.advance(0.999)
    assert stage.tick() == []
    assert stage.buffer.pending == 3


def test_tick_releases_what_is_held_once_max_delay_has_passed() -> None:
    stage, clock = stage_with_clock(max_delay=1.0)
    stage("a long_identifier_without_spaces")  # "a " goes at once
    clock.advance(1.0)
    assert stage.time_left() == pytest.approx(0.0)
    assert texts_of(stage.tick()) == ["long_identifier_without_spaces"]
    assert stage.buffer.pending == 0
    assert stage.time_left() is None
    assert stage.tick() == []


def test_more_text_without_a_unit_does_not_restart_the_wait() -> None:
    stage, clock = stage_with_clock(max_delay=1.0)
    stage("ab")
    clock.advance(0.9)
    assert stage("cd") == []
    assert stage.time_left() == pytest.approx(0.1)
    clock.advance(0.1)
    assert texts_of(stage.tick()) == ["abcd"]


def test_releasing_a_unit_restarts_the_wait_for_what_is_still_held() -> None:
    stage, clock = stage_with_clock(max_delay=1.0)
    stage("ab")
    clock.advance(0.8)
    assert texts_of(stage("c d")) == ["abc "]
    assert stage.time_left() == pytest.approx(1.0)
    clock.advance(0.7)
    assert stage.tick() == []
    clock.advance(0.3)
    assert texts_of(stage.tick()) == ["d"]


def test_releasing_everything_stops_the_timer() -> None:
    stage, clock = stage_with_clock("line", max_delay=1.0)
    stage("partial")
    assert stage.time_left() is not None
    assert texts_of(stage(" line\n")) == ["partial line\n"]
    assert stage.time_left() is None


def test_flush_at_the_end_stops_the_timer() -> None:
    stage, clock = stage_with_clock("sentence", max_delay=1.0)
    stage("No end yet")
    assert texts_of(stage.flush()) == ["No end yet"]
    assert stage.time_left() is None


def test_a_sentence_stage_releases_a_long_code_block_after_max_delay() -> None:
    stage, clock = stage_with_clock("sentence", max_delay=0.5)
    released: List[str] = []
    for piece in ["def f(x):", "\n    return", " x*2", "\n"]:
        released += texts_of(stage(piece))
        clock.advance(0.2)
        released += texts_of(stage.tick())
    assert released == ["def f(x):\n    return x*2"]  # held 0.6 s at the third tick
    assert texts_of(stage.flush()) == ["\n"]


def test_text_after_a_timed_release_is_buffered_again() -> None:
    stage, clock = stage_with_clock("word", max_delay=1.0)
    stage("abc")
    clock.advance(1.0)
    assert texts_of(stage.tick()) == ["abc"]
    assert texts_of(stage("def ghi")) == ["def "]
    assert stage.time_left() == pytest.approx(1.0)


# --- the token ledger --------------------------------------------------------------------


def test_reported_tokens_are_spread_over_the_units_cut_from_the_chunk() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    out = stage(StreamChunk("Hello wor", tokens=3)) + stage(StreamChunk("ld. Bye", tokens=4))
    out += stage.flush()
    assert [(c.content, c.tokens) for c in out] == [
        ("Hello ", 2),  # 6 of the first chunk's 9 characters: 3 * 6 / 9
        ("world. ", 4),  # 7 of the 10 characters held, which carry 5 tokens: 3.5, rounded
        ("Bye", 1),  # the rest: the total stays exactly 7
    ]


def test_units_from_unreported_text_are_counted_with_the_counter() -> None:
    stage = BufferStage(hs.new_buffer("word"), counter=len)
    out = stage(StreamChunk("ab ", tokens=1)) + stage("cde ")
    assert [(c.content, c.tokens) for c in out] == [("ab ", 1), ("cde ", 4)]


def test_without_reported_tokens_units_are_plain_strings() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    assert stage(StreamChunk("ab cd")) == ["ab "]
    assert stage.flush() == ["cd"]


def test_token_stage_uses_reported_counts_for_its_threshold() -> None:
    stage = BufferStage(hs.new_buffer_with_token_threshold("token", 5))
    assert stage(StreamChunk("a", tokens=3)) == []
    out = stage(StreamChunk("b", tokens=2))
    assert [(c.content, c.tokens) for c in out] == [("ab", 5)]


@st.composite
def reported_chunks(draw: st.DrawFn) -> List[StreamChunk]:
    texts = draw(
        st.lists(
            st.text(alphabet=st.sampled_from("ab .!\n你。"), min_size=1, max_size=12),
            min_size=1,
            max_size=12,
        )
    )
    return [StreamChunk(t, tokens=draw(st.integers(0, 20))) for t in texts]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=reported_chunks(), kind=st.sampled_from(["character", "word", "sentence", "line", "paragraph"]))
def test_reported_token_totals_stay_exact_whatever_the_units(
    chunks: List[StreamChunk], kind: str
) -> None:
    stage = BufferStage(hs.new_buffer(kind))
    out: List[Any] = []
    for chunk in chunks:
        out += stage(chunk)
    out += stage.flush()
    assert "".join(c.content for c in out) == "".join(c.content for c in chunks)
    assert all(c.tokens is not None and c.tokens >= 0 for c in out)
    assert sum(c.tokens for c in out) == sum(c.tokens for c in chunks)


def test_abort_forgets_the_ledger() -> None:
    stage = BufferStage(hs.new_buffer("word"), counter=len)
    stage(StreamChunk("abc", tokens=50))
    stage.abort(None)
    stage.buffer.reset()
    out = stage(StreamChunk("de ", tokens=2))
    assert [(c.content, c.tokens) for c in out] == [("de ", 2)]


# --- chunks without text -----------------------------------------------------------------


def test_textless_chunk_with_metadata_passes_at_once_when_nothing_is_held() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    marker = StreamChunk("", metadata={"finish_reason": "stop"})
    assert stage(marker) == [marker]


def test_textless_chunk_with_metadata_follows_the_unit_being_built() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    marker = StreamChunk("", metadata={"k": 1})
    assert stage("Hel") == []
    assert stage(marker) == []
    out = stage("lo ")
    assert out[0] == "Hello " and out[1] is marker and len(out) == 2


def test_textless_chunk_goes_right_after_its_unit_when_one_call_completes_several() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    marker = StreamChunk("", metadata={"k": 1})
    stage("Hel")
    stage(marker)
    out = stage("lo big world ")
    assert texts_of(out) == ["Hello ", "", "big ", "world "]
    assert out[1] is marker


def test_textless_chunk_held_at_the_end_comes_after_the_flushed_text() -> None:
    stage = BufferStage(hs.new_buffer("sentence"))
    marker = StreamChunk("", metadata={"usage": {"total_tokens": 9}})
    stage("No end")
    stage(marker)
    out = stage.flush()
    assert out[0] == "No end" and out[1] is marker


def test_textless_chunk_with_tokens_keeps_its_count() -> None:
    stage = BufferStage(hs.new_buffer("word"))
    out = stage(StreamChunk("ab", tokens=1)) + stage(StreamChunk("", tokens=2))
    out += stage(StreamChunk(" ", tokens=1)) + stage.flush()
    assert [(c.content, c.tokens) for c in out] == [("ab ", 2), ("", 2)]


def test_textless_chunks_are_released_by_a_timed_release_too() -> None:
    stage, clock = stage_with_clock("word", max_delay=1.0)
    marker = StreamChunk("", metadata={"k": 1})
    stage("abc")
    stage(marker)
    clock.advance(1.0)
    out = stage.tick()
    assert out[0] == "abc" and out[1] is marker
