"""What may be passed as a stream, checked up front (helixstream/_inputs.py)."""
from __future__ import annotations

import collections
import io
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

import helixstream as hs

STREAMER = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="word"))
ENTRY_POINTS = {
    "stream_buffered": lambda source: STREAMER.stream_buffered(source),
    "stream_enhanced": lambda source: STREAMER.stream_enhanced(source),
    "stream_with_progress": lambda source: STREAMER.stream_with_progress(source, lambda p: None),
    "stream_with_rate_limit": lambda source: STREAMER.stream_with_rate_limit(source, 1000),
    "service": lambda source: hs.OptimizationService().stream_enhanced(source),
    "service_disabled": lambda source: hs.OptimizationService(
        {"optimization": {"streaming": {"enabled": False}}}
    ).stream_enhanced(source),
    "limit_stream": lambda source: hs.RateLimiter(0).limit_stream(source),
    "sse_stream": lambda source: hs.sse_stream(source),
    "sse_stream_factory": lambda source: hs.sse_stream(lambda: source),
}


@pytest.fixture(params=sorted(ENTRY_POINTS))
def start(request: Any) -> Callable[[Any], Any]:
    return ENTRY_POINTS[request.param]


@pytest.mark.parametrize("data", [b"Hello world", bytearray(b"Hello world"), memoryview(b"Hello world")])
def test_one_bytes_object_as_the_whole_stream_says_so_and_how_to_wrap_it(start, data):
    with pytest.raises(TypeError) as info:
        start(data)
    message = str(info.value)
    assert "one bytes object" in message and "[data]" in message
    assert type(data).__name__ in message


@pytest.mark.parametrize("mapping", [{"content": "Hello"}, collections.OrderedDict(a=1)])
def test_a_dict_source_is_refused(start, mapping):
    with pytest.raises(TypeError, match=r"is a mapping \(\w+\): .*keys"):
        start(mapping)


def test_a_list_holding_the_bytes_object_streams_it():
    output, _ = STREAMER.stream_buffered([b"Hello world"])
    with output:
        assert [c.content for c in output] == ["Hello ", "world"]


def test_one_str_as_the_whole_stream_still_works():
    # a str is an iterable of str: each character is a piece, and no text is lost
    output, _ = STREAMER.stream_buffered("Hello world")
    with output:
        assert "".join(c.content for c in output) == "Hello world"


def test_non_iterables_are_still_refused():
    with pytest.raises(TypeError, match="iterable"):
        STREAMER.stream_enhanced(42)  # type: ignore[arg-type]


# --- SSEWriter: a binary writable, checked up front -------------------------------------
def test_sse_writer_refuses_a_text_stream_up_front():
    with pytest.raises(TypeError) as info:
        hs.SSEWriter(io.StringIO())  # type: ignore[arg-type]
    message = str(info.value)
    assert "StringIO" in message and "bytes" in message and "io.BytesIO()" in message


def test_sse_writer_suggests_the_buffer_of_a_text_file(tmp_path):
    with open(tmp_path / "events.txt", "w", encoding="utf-8") as f, pytest.raises(TypeError, match=r"\.buffer"):
        hs.SSEWriter(f)  # type: ignore[arg-type]


def test_sse_writer_refuses_sys_stdout_but_takes_its_buffer():
    with pytest.raises(TypeError, match="text stream"):
        hs.SSEWriter(sys.__stdout__)  # type: ignore[arg-type]
    out = io.BytesIO()
    hs.SSEWriter(io.BufferedWriter(out))  # a binary writer, like sys.stdout.buffer


def test_sse_writer_refuses_a_file_like_object_opened_in_text_mode():
    with tempfile.SpooledTemporaryFile(mode="w+") as f, pytest.raises(TypeError, match="text"):
        hs.SSEWriter(f)  # type: ignore[arg-type]


def test_stream_chunks_to_sse_checks_its_writer_before_reading_the_stream():
    read = []

    def source() -> Any:
        read.append(True)
        yield "never read"

    with pytest.raises(TypeError, match="text stream"):
        hs.stream_chunks_to_sse(io.StringIO(), source())  # type: ignore[arg-type]
    assert read == []


def test_sse_writer_still_takes_binary_writers():
    out = io.BytesIO()
    hs.SSEWriter(out).write_data("x")
    assert out.getvalue() == b"data: x\n\n"
