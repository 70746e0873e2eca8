"""StreamConfig validation, the streamer's methods, and the aggregators."""
from __future__ import annotations

import threading
from typing import Any, List

import pytest

import helixstream as hs

from .conftest import wait_for
from .sources import BlockingSource


# --- StreamConfig ----------------------------------------------------------------------


def test_config_defaults_match_the_contract():
    cfg = hs.StreamConfig()
    assert cfg.buffer_type is hs.BufferType.WORD
    assert (cfg.progress_interval, cfg.rate_limit, cfg.estimated_tokens) == (0.1, 0, 0)
    assert (cfg.token_buffer_threshold, cfg.burst, cfg.max_delay) == (5, 0, None)


@pytest.mark.parametrize(
    "value, expected",
    [("sentence", hs.BufferType.SENTENCE), ("Line", hs.BufferType.LINE), (hs.BufferType.TOKEN, hs.BufferType.TOKEN)],
)
def test_config_takes_buffer_types_and_their_values(value, expected):
    assert hs.StreamConfig(buffer_type=value).buffer_type is expected


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("buffer_type", "bogus", "'word'"),
        ("buffer_type", 3, "'sentence'"),
        ("progress_interval", -0.5, ">= 0"),
        ("progress_interval", "fast", "250ms"),
        ("rate_limit", -1, ">= 0"),
        ("rate_limit", "10", ">= 0"),
        ("rate_limit", float("nan"), ">= 0"),
        ("estimated_tokens", -3, ">= 0"),
        ("estimated_tokens", 2.5, "an int"),
        ("token_buffer_threshold", 0, ">= 1"),
        ("token_buffer_threshold", True, ">= 1"),
        ("burst", -2, ">= 0"),
        ("max_delay", -1, ">= 0"),
        ("queue_size", 0, ">= 1"),
        ("token_counter", 5, "callable"),
    ],
)
def test_bad_config_raises_config_error_naming_field_value_and_what_is_allowed(field, value, allowed):
    with pytest.raises(hs.ConfigError) as info:
        hs.StreamConfig(**{field: value})
    message = str(info.value)
    assert field in message and repr(value) in message and allowed in message
    assert isinstance(info.value, ValueError)


def test_config_assignment_is_checked_too():
    cfg = hs.StreamConfig()
    with pytest.raises(hs.ConfigError, match="rate_limit"):
        cfg.rate_limit = -5
    cfg.progress_interval = "250ms"
    assert cfg.progress_interval == pytest.approx(0.25)


@pytest.mark.parametrize(
    "text, seconds", [("100ms", 0.1), ("1.5s", 1.5), ("2m", 120.0), (" 3 ", 3.0), (0.2, 0.2), (1, 1.0)]
)
def test_config_durations_accept_numbers_and_strings(text, seconds):
    assert hs.StreamConfig(progress_interval=text).progress_interval == pytest.approx(seconds)


def test_streamer_refuses_something_that_is_not_a_config():
    with pytest.raises(hs.ConfigError, match="StreamConfig"):
        hs.EnhancedStreamer({"buffer_type": "word"})  # type: ignore[arg-type]


# --- streamer ----------------------------------------------------------------------------


def test_stream_buffered_uses_the_configured_type_unless_given():
    streamer = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="line"))
    output, _ = streamer.stream_buffered(["a\nb", "c\n"])
    assert [c.content for c in output] == ["a\n", "bc\n"]
    output, _ = streamer.stream_buffered(["a b"], "word")
    assert [c.content for c in output] == ["a ", "b"]


def test_stream_buffered_with_a_bad_type_fails_before_starting():
    with pytest.raises(hs.ConfigError, match="nope"):
        hs.EnhancedStreamer().stream_buffered(["x"], "nope")


def test_token_buffer_uses_the_configured_threshold():
    streamer = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="token", token_buffer_threshold=3))
    chunks = [hs.StreamChunk(w, tokens=1) for w in ["a ", "b ", "c ", "d ", "e"]]
    output, get_result = streamer.stream_buffered(chunks)
    got = [(c.content, c.tokens) for c in output]
    assert got == [("a b c ", 3), ("d e", 2)]
    assert get_result().total_tokens == 5


def test_custom_token_counter_is_used_for_totals():
    streamer = hs.EnhancedStreamer(hs.StreamConfig(token_counter=lambda text: len(text)))
    output, get_result = streamer.stream_buffered(["abc ", "de"])
    list(output)
    assert get_result().total_tokens == 6


def test_reported_tokens_are_shared_among_the_units_cut_from_them():
    chunks = [hs.StreamChunk("one two ", tokens=2), hs.StreamChunk("three", tokens=1)]
    output, get_result = hs.EnhancedStreamer().stream_buffered(chunks, "word")
    got = [(c.content, c.tokens) for c in output]
    assert got == [("one ", 1), ("two ", 1), ("three", 1)]
    assert get_result().total_tokens == 3


def test_metadata_only_chunks_pass_through_after_the_text_before_them():
    usage = hs.StreamChunk("", metadata={"usage": {"completion_tokens": 42}})
    output, get_result = hs.EnhancedStreamer().stream_buffered(["Hello wor", "ld", usage], "word")
    got = list(output)
    assert [c.content for c in got] == ["Hello ", "world", ""]
    assert got[-1].metadata["usage"]["completion_tokens"] == 42
    assert get_result().total_tokens == 42  # the source's own total wins


# --- aggregators -------------------------------------------------------------------------


def test_chunk_aggregator_guide_example():
    output, get_result = hs.ChunkAggregator().aggregate_chunks(iter(["Hel", "lo ", "world"]))
    assert [c.content for c in output] == ["Hel", "lo ", "world"]
    result = get_result()
    assert result.full_content == "Hello world"
    assert result.chunk_count == 3 and result.chunks == ["Hel", "lo ", "world"]
    assert result.character_count == 11
    assert result.total_tokens == hs.estimate_tokens("Hello world")
    assert result.duration >= 0 and result.tokens_per_second >= 0


def test_chunk_aggregator_passes_chunks_through_numbered_by_position():
    first = hs.StreamChunk("x", index=0, metadata={"k": 1})
    second = hs.StreamChunk("y", index=7, metadata={"k": 2}, tokens=3)
    output, _ = hs.ChunkAggregator().aggregate_chunks([first, second])
    got = list(output)
    assert got[0] is first  # already numbered right: the very object
    assert got[1] is not second and second.index == 7  # the source's chunk is not changed
    assert (got[1].index, got[1].content, got[1].metadata, got[1].tokens) == (1, "y", {"k": 2}, 3)


def test_stream_aggregator_guide_example():
    aggregator = hs.StreamAggregator(16)
    output = aggregator.aggregate(iter(["a", "b", "c"]))
    assert list(output) == ["a", "b", "c"]
    result = aggregator.result()
    assert result.full_content == "abc" and result.chunk_count == 3


def test_stream_aggregator_output_can_be_closed_and_stops_the_source():
    source = BlockingSource(["a"])
    aggregator = hs.StreamAggregator()
    output = aggregator.aggregate(source)
    with output:
        assert next(output) == "a"
    assert source.closed.is_set()
    assert aggregator.result().cancelled


def test_stream_aggregator_before_any_stream_has_an_empty_result():
    assert hs.StreamAggregator().result() == hs.AggregatedStream()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_stream_aggregator_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="estimated_size"):
        hs.StreamAggregator(bad)


def test_aggregated_stream_is_frozen():
    result = hs.AggregatedStream(full_content="x")
    with pytest.raises(AttributeError):
        result.full_content = "y"  # type: ignore[misc]


def test_stream_chunk_defaults():
    a, b = hs.StreamChunk("x"), hs.StreamChunk("y")
    assert a.metadata == {} and a.metadata is not b.metadata
    assert a.index == 0 and not a.done and a.error is None and a.tokens is None
    assert a.timestamp > 1_600_000_000


def test_get_result_is_thread_safe_while_streaming():
    source = BlockingSource()
    output, get_result = hs.EnhancedStreamer().stream_buffered(source, "word")
    results: list = []
    sampled = threading.Event()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            r = get_result()
            results.append((r.chunk_count, len(r.chunks), r.full_content))
            sampled.set()

    poller = threading.Thread(target=poll)
    poller.start()
    with output:
        for i in range(50):
            source.feed(f"{i} ")
            if i:
                assert next(output).content == f"{i - 1} "
                sampled.clear()
                assert sampled.wait(5)  # the poller looked at least once mid-stream
        source.end()
        list(output)
    done.set()
    poller.join(10)
    assert all(n == m and len(text.split()) == n for n, m, text in results)
    assert any(0 < n < 50 for n, _, _ in results)  # it did see the stream half way


# --- rate limiting through the streamer -------------------------------------------------


def test_rate_limit_zero_adds_no_limiter_stage():
    output, _ = hs.EnhancedStreamer(hs.StreamConfig(prefetch=True)).stream_with_rate_limit(["a ", "b"])
    assert [c.content for c in output] == ["a ", "b"]
    assert "ratelimit" not in output.threads()[0].name


def test_stream_with_rate_limit_refuses_a_negative_rate():
    with pytest.raises(hs.ConfigError, match="tokens_per_second"):
        hs.EnhancedStreamer().stream_with_rate_limit(["a"], -1)


def test_close_interrupts_a_rate_limit_wait_at_once(thread_baseline):
    streamer = hs.EnhancedStreamer(
        hs.StreamConfig(rate_limit=0.01, burst=1, close_timeout=30, prefetch=True)
    )
    chunks = [hs.StreamChunk("a ", tokens=1), hs.StreamChunk("b ", tokens=1)]
    output, get_result = streamer.stream_with_rate_limit(chunks)
    assert output.threads()[0].name.endswith("-source")  # the source is read ahead
    assert next(output).content == "a "  # the second chunk would now wait 100 s
    output.close()  # would wait up to close_timeout=30 s if the wait were not interrupted
    assert all(not t.is_alive() for t in output.threads())
    assert get_result().cancelled
    thread_baseline()


def test_stream_enhanced_chains_buffer_limiter_progress_and_aggregation():
    calls = []
    streamer = hs.EnhancedStreamer(
        hs.StreamConfig(buffer_type="sentence", rate_limit=1e6, prefetch=True)
    )
    output, get_result = streamer.stream_enhanced(["One. Tw", "o. Three"], calls.append)
    assert [c.content for c in output] == ["One. ", "Two. ", "Three"]
    (thread,) = output.threads()
    assert thread.name.endswith("-enhanced-source")  # the stages run in the reader's thread
    assert calls[-1].done and calls[-1].chunks_received == 3


def test_close_from_another_thread_interrupts_a_rate_limit_wait_in_the_readers_thread():
    streamer = hs.EnhancedStreamer(hs.StreamConfig(rate_limit=0.01, burst=1))
    chunks = [hs.StreamChunk("a ", tokens=1), hs.StreamChunk("b ", tokens=1)]
    output, get_result = streamer.stream_with_rate_limit(chunks)
    assert output.threads() == []  # the pipeline runs in the reader's thread
    assert next(output).content == "a "
    rest: list = []
    reader = threading.Thread(target=lambda: rest.extend(output))
    reader.start()  # it now waits 100 s for the second token
    limiter = output._core.stages[0].limiter  # noqa: SLF001 - to see the reservation
    assert wait_for(lambda: limiter.available() < -0.5)  # "b " has reserved its slot
    output.close()
    reader.join(5)
    assert not reader.is_alive() and rest == []
    assert get_result().cancelled


def test_prefetch_must_be_a_bool():
    with pytest.raises(hs.ConfigError, match="prefetch"):
        hs.StreamConfig(prefetch="yes")


def test_the_whole_text_is_counted_once_for_progress_and_result_together() -> None:
    counted: List[str] = []

    def counter(text: str) -> int:
        counted.append(text)
        return len(text.split())

    words = [f"w{i} " for i in range(50)]
    config = hs.StreamConfig(buffer_type="word", progress_interval=3600, token_counter=counter)
    reports: List[Any] = []
    output, get_result = hs.EnhancedStreamer(config).stream_enhanced(iter(words), reports.append)
    assert [c.content for c in output] == words
    result = get_result()
    whole = "".join(words)
    assert result.total_tokens == reports[-1].tokens_received == 50
    assert counted.count(whole) == 1  # the final progress counted it; the result reused it
