"""helixstream.sources without a network: SSE parsing, event shapes, closing, Channel.

The real SDKs and real HTTP clients against a local server are in test_sources_sdk.py.
"""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace as NS
from typing import Any, Dict, Iterator, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import helixstream as hs
from helixstream.sources import (
    Channel,
    SSESource,
    UpstreamError,
    from_anthropic,
    from_openai,
    from_sse,
)

from .sources import BlockingSource


def texts_and_final(source: Any) -> "tuple[List[str], Optional[hs.StreamChunk]]":
    """Iterate a source directly: its text items and its final metadata chunk."""
    texts: List[str] = []
    final = None
    for item in source:
        if isinstance(item, hs.StreamChunk):
            assert final is None, "only one metadata chunk, at the end"
            assert item.content == ""
            final = item
        else:
            assert final is None, "text after the metadata chunk"
            texts.append(item)
    return texts, final


def chat_chunk(text: Optional[str] = None, finish: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    delta = {} if text is None else {"content": text}
    chunk = {"id": "c1", "model": "m1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    chunk.update(extra)
    return chunk


def sse(*payloads: Any, nl: str = "\n", done: bool = True) -> str:
    """An OpenAI-style event stream of these payloads."""
    out = "".join(f"data: {json.dumps(p, ensure_ascii=False)}{nl}{nl}" for p in payloads)
    return out + (f"data: [DONE]{nl}{nl}" if done else "")


USAGE = {"prompt_tokens": 3, "completion_tokens": 17, "total_tokens": 20}
STREAM = [chat_chunk("Hé"), chat_chunk("llo 日本"), chat_chunk(" 🙂!"), chat_chunk(finish="stop"),
          {"id": "c1", "model": "m1", "choices": [], "usage": USAGE}]
STREAM_TEXT = "Héllo 日本 🙂!"


# --- from_sse: the event-stream format, table-driven ---------------------------------
@pytest.mark.parametrize(
    "pieces, texts",
    [
        pytest.param(["data: " + json.dumps(chat_chunk("a")), "", "data: [DONE]", ""], ["a"], id="lines"),
        pytest.param([b"data: " + json.dumps(chat_chunk("a")).encode(), b"", b"data: [DONE]", b""], ["a"],
                     id="lines-as-bytes"),
        pytest.param([sse(chat_chunk("a"), chat_chunk("b"))], ["a", "b"], id="raw-one-piece"),
        pytest.param([sse(chat_chunk("a"), chat_chunk("b"), nl="\r\n")], ["a", "b"], id="raw-crlf"),
        pytest.param([sse(chat_chunk("a"), chat_chunk("b"), nl="\r")], ["a", "b"], id="raw-cr"),
        pytest.param([sse(chat_chunk("a")).replace("data: ", "data:")], ["a"], id="no-space-after-colon"),
        pytest.param(
            [": keep-alive\n\n", ":\n", sse(chat_chunk("a")).replace("data: {", ": comment\ndata: {")],
            ["a"], id="comments",
        ),
        pytest.param(['data: {"choices": [{"index": 0,\ndata:  "delta": {"content": "x\\ny"}}]}\n\n'], ["x\ny"],
                     id="multi-line-data-joined-with-newline"),
        pytest.param(["\ufeff" + sse(chat_chunk("a"))], ["a"], id="bom"),
        pytest.param([b"\xef\xbb", b"\xbf" + sse(chat_chunk("a")).encode()], ["a"], id="bom-split"),
        pytest.param(["\ufeffdata: " + json.dumps(chat_chunk("a")), "", "data: [DONE]", ""], ["a"], id="bom-lines"),
        pytest.param([sse(chat_chunk("a")) + sse(chat_chunk("after"))], ["a"], id="stops-at-done"),
        pytest.param([sse(chat_chunk("a"), done=False)], ["a"], id="no-done-at-all"),
        pytest.param([sse(chat_chunk("a"), done=False) + "data: " + json.dumps(chat_chunk("cut"))], ["a"],
                     id="unfinished-event-discarded"),
        pytest.param([sse(chat_chunk("a"), done=False) + "data: " + json.dumps(chat_chunk("cut")) + "\n"], ["a"],
                     id="event-without-blank-line-discarded"),
        pytest.param(["event: message\nid: 7\nretry: 100\n" + sse(chat_chunk("a"))], ["a"], id="other-fields"),
        pytest.param(["data\n\ndata:\n\n" + sse(chat_chunk("a"))], ["a"], id="empty-data-events-skipped"),
        pytest.param([sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
                          chat_chunk("a"))], ["a"], id="role-only-chunk"),
        pytest.param(["data: " + json.dumps(chat_chunk("a")) + "\r\n", "\r\n", "data: [DONE]\r\n", "\r\n"],
                     ["a"], id="crlf-raw-pieces"),
        pytest.param(["data: " + json.dumps(chat_chunk("a")) + "\r", "\r", "data: [DONE]\r", "\r"], ["a"],
                     id="crlf-split-on-lf-only"),
    ],
)
def test_sse_event_stream_format(pieces: List[Any], texts: List[str]) -> None:
    got, _ = texts_and_final(from_sse(pieces))
    assert got == texts


def test_sse_detects_lines_from_an_empty_item_and_raw_from_a_line_ending() -> None:
    lines = from_sse(["data: " + json.dumps(chat_chunk("a")), "", "data: [DONE]", ""])
    assert texts_and_final(lines)[0] == ["a"] and lines.detected == "lines"
    # raw pieces that carry no line ending at first are held until one comes
    body = sse(chat_chunk("ab"))
    raw = from_sse([body[:5], body[5:20], body[20:]])
    assert texts_and_final(raw)[0] == ["ab"] and raw.detected == "raw"


def test_sse_explicit_modes() -> None:
    # forced line mode: each item is a line even without an empty item
    forced = from_sse(["data: " + json.dumps(chat_chunk("a")), "", "data: [DONE]", ""], mode="lines")
    assert texts_and_final(forced)[0] == ["a"]
    assert texts_and_final(from_sse([sse(chat_chunk("a"))], mode="raw"))[0] == ["a"]
    # lines that kept a terminator (iter_lines(delimiter=...)), in line mode
    kept = ["data: " + json.dumps(chat_chunk("a")) + "\r", "", "data: [DONE]\r\n", ""]
    assert texts_and_final(from_sse(kept, mode="lines"))[0] == ["a"]
    with pytest.raises(ValueError, match="'mode' must be one of auto, lines, raw"):
        from_sse([], mode="bytes")


def test_sse_usage_finish_reason_and_model_come_last_in_one_chunk() -> None:
    texts, final = texts_and_final(from_sse([sse(*STREAM)]))
    assert "".join(texts) == STREAM_TEXT
    assert final is not None
    assert final.metadata == {"usage": USAGE, "finish_reason": "stop", "model": "m1", "id": "c1"}


LINE_ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


@settings(max_examples=200, deadline=None)
@given(nl=LINE_ENDINGS, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=40),
       as_text=st.booleans(), comments=st.booleans())
def test_sse_raw_pieces_cut_anywhere_give_the_same_text(nl: str, cuts: List[int], as_text: bool,
                                                        comments: bool) -> None:
    body = sse(*STREAM, nl=nl)
    if comments:
        body = f": ping{nl}" + body.replace(f"{nl}{nl}data", f"{nl}{nl}: ping{nl}data")
    data = body.encode("utf-8")
    if as_text:
        points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
        pieces: List[Any] = [body[a:b] for a, b in zip(points, points[1:]) if b > a]
    else:  # bytes cut anywhere, mid-character included
        points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
        pieces = [data[a:b] for a, b in zip(points, points[1:]) if b > a]
    texts, final = texts_and_final(from_sse(pieces))
    assert "".join(texts) == STREAM_TEXT
    assert final is not None and final.metadata["usage"] == USAGE


def test_sse_bytes_cut_inside_every_multibyte_character() -> None:
    data = sse(*STREAM).encode()
    pieces = [data[i:i + 1] for i in range(len(data))]  # one byte at a time
    assert "".join(texts_and_final(from_sse(pieces))[0]) == STREAM_TEXT


def test_sse_invalid_utf8_becomes_replacement_characters() -> None:
    data = sse(chat_chunk("ok")).encode().replace(b"ok", b"o\xffk")
    assert texts_and_final(from_sse([data]))[0] == ["o\ufffdk"]


def test_sse_reads_requests_iter_lines_output() -> None:
    requests = pytest.importorskip("requests")
    import io

    for nl in ("\n", "\r\n"):
        response = requests.models.Response()
        response.raw = io.BytesIO(sse(*STREAM, nl=nl).encode())
        texts, final = texts_and_final(from_sse(response.iter_lines(chunk_size=7)))
        assert "".join(texts) == STREAM_TEXT and final is not None
        response.close()


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"error": {"message": "model overloaded", "type": "server_error"}}, r"model overloaded \(server_error\)"),
        ({"error": "rate limited"}, "rate limited"),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
         r"Overloaded \(overloaded_error\)"),
        ({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "boom"}}},
         r"boom \(server_error\)"),
    ],
)
def test_sse_error_payload_raises_upstream_error_after_the_text(payload: Dict[str, Any], message: str) -> None:
    source = from_sse([sse(chat_chunk("a"), payload)])
    got: List[Any] = []
    with pytest.raises(UpstreamError, match=message) as info:
        for item in source:
            got.append(item)
    assert got == ["a"]
    assert info.value.payload == payload
    assert isinstance(info.value, hs.HelixStreamError)


@pytest.mark.parametrize(
    "body, message, payload",
    [
        ("data: hello\n\n", "not JSON: 'hello'", "hello"),
        ("data: {\"choices\": [\n\n", "not JSON", '{"choices": ['),
        ("data: [1, 2]\n\n", "not an object", [1, 2]),
        ("event: error\ndata: upstream timed out\n\n", "reported an error: upstream timed out", "upstream timed out"),
        ("event: error\ndata: {\"detail\": \"bad\"}\n\n", "reported an error", {"detail": "bad"}),
    ],
)
def test_sse_bad_data_raises_upstream_error(body: str, message: str, payload: Any) -> None:
    with pytest.raises(UpstreamError, match=message) as info:
        list(from_sse([body]))
    assert info.value.payload == payload


def test_sse_errors_reach_the_reader_of_a_stream_after_the_text() -> None:
    body = sse(chat_chunk("Hello "), chat_chunk("world"), {"error": {"message": "quota"}})
    output, get_result = hs.EnhancedStreamer().stream_buffered(from_sse([body]))
    got = []
    with pytest.raises(UpstreamError, match="quota"):
        for chunk in output:
            got.append(chunk.content)
    assert "".join(got) == "Hello world"
    assert isinstance(get_result().error, UpstreamError)


def test_sse_other_payload_shapes() -> None:
    responses = [
        {"type": "response.created", "response": {"id": "r1", "model": "m2", "status": "in_progress"}},
        {"type": "response.output_text.delta", "delta": "Hi "},
        {"type": "response.output_text.delta", "delta": "there"},
        {"type": "response.completed", "response": {
            "id": "r1", "model": "m2", "status": "completed",
            "usage": {"input_tokens": 4, "output_tokens": 9, "total_tokens": 13}}},
    ]
    texts, final = texts_and_final(from_sse([sse(*responses, done=False)]))
    assert texts == ["Hi ", "there"]
    assert final is not None and final.metadata == {
        "id": "r1", "model": "m2", "finish_reason": "completed",
        "usage": {"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13}}

    llamacpp = [{"content": "Hel", "stop": False}, {"content": "lo", "stop": False},
                {"content": "", "stop": True, "model": "llama", "tokens_predicted": 2, "tokens_evaluated": 5,
                 "stop_type": "eos"}]
    texts, final = texts_and_final(from_sse([sse(*llamacpp, done=False)]))
    assert texts == ["Hel", "lo"]
    assert final is not None and final.metadata == {
        "finish_reason": "eos", "model": "llama",
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}

    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in ANTHROPIC_EVENTS)
    texts, final = texts_and_final(from_sse([body]))
    assert texts == ["Hello", " world"]
    assert final is not None and final.metadata["usage"] == ANTHROPIC_USAGE


def test_sse_refuses_what_is_not_a_stream() -> None:
    with pytest.raises(TypeError, match="not str"):
        from_sse("data: x\n\n")
    with pytest.raises(TypeError, match="not int"):
        from_sse(42)
    with pytest.raises(TypeError, match="got a dict item"):
        list(from_sse([{"choices": []}]))


def test_sse_http_error_response_raises_with_status_and_body() -> None:
    httpx = pytest.importorskip("httpx")
    body = json.dumps({"error": {"message": "model 'x' not found", "type": "not_found"}}).encode()
    response = httpx.Response(404, content=body)
    with pytest.raises(UpstreamError, match=r"HTTP 404: model 'x' not found \(not_found\)") as info:
        list(from_sse(response))
    assert info.value.status == 404
    assert info.value.payload == json.loads(body)
    assert response.is_closed


def test_sse_reads_an_httpx_response_and_closes_it() -> None:
    httpx = pytest.importorskip("httpx")
    data = sse(*STREAM).encode()
    response = httpx.Response(200, content=iter([data[i:i + 5] for i in range(0, len(data), 5)]))
    texts, final = texts_and_final(from_sse(response))
    assert "".join(texts) == STREAM_TEXT and final is not None
    assert response.is_closed


# --- from_openai / from_anthropic on plain data and SDK-like objects -------------------
def as_objects(value: Any) -> Any:
    """Dicts as attribute objects, the way the SDKs' pydantic models read."""
    if isinstance(value, dict):
        return NS(**{k: as_objects(v) for k, v in value.items()})
    if isinstance(value, list):
        return [as_objects(v) for v in value]
    return value


@pytest.mark.parametrize("shape", [lambda x: x, as_objects], ids=["dicts", "objects"])
def test_from_openai_text_and_usage(shape: Any) -> None:
    events = [chat_chunk(None, role="assistant")] + STREAM
    texts, final = texts_and_final(from_openai([shape(e) for e in events]))
    assert "".join(texts) == STREAM_TEXT
    assert final is not None
    assert final.metadata == {"usage": USAGE, "finish_reason": "stop", "model": "m1", "id": "c1"}


def test_from_openai_gives_exact_usage_to_the_result() -> None:
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_openai(STREAM))
    with output:
        chunks = list(output)
    result = get_result()
    assert result.full_content == STREAM_TEXT
    assert result.total_tokens == 17 != hs.estimate_tokens(STREAM_TEXT)
    assert chunks[-1].content == "" and chunks[-1].metadata["usage"] == USAGE


def test_from_openai_only_first_choice_and_no_tool_calls() -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"content": "A"}}, {"index": 1, "delta": {"content": "B"}}]},
        {"choices": [{"index": 0, "delta": {"content": None, "tool_calls": [{"index": 0}]}}]},
        {"choices": [{"index": 0, "delta": {"content": "C"}, "finish_reason": "length"}]},
    ]
    texts, final = texts_and_final(from_openai(events))
    assert texts == ["A", "C"]
    assert final is not None and final.metadata == {"finish_reason": "length"}


def test_from_openai_legacy_completions_and_usage_without_total() -> None:
    events = [{"choices": [{"index": 0, "text": "Once", "finish_reason": None}]},
              {"choices": [{"index": 0, "text": " upon", "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 2, "completion_tokens": 2}}]
    texts, final = texts_and_final(from_openai(events))
    assert texts == ["Once", " upon"]
    assert final is not None and final.metadata["usage"] == {
        "prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}


def test_from_openai_without_usage_or_finish_sends_no_metadata_chunk() -> None:
    assert texts_and_final(from_openai([chat_chunk("a"), chat_chunk("b")])) == (["a", "b"], None)


def test_from_openai_error_event_raises_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="nope"):
        list(from_openai([chat_chunk("a"), {"error": {"message": "nope"}}]))


def test_from_openai_refuses_strings_async_streams_and_non_iterables() -> None:
    with pytest.raises(TypeError, match="use from_sse"):
        list(from_openai(["data: {}"]))

    class AsyncStream:
        def __aiter__(self) -> "AsyncStream":
            return self

    with pytest.raises(TypeError, match="asynchronous"):
        from_openai(AsyncStream())
    with pytest.raises(TypeError, match="must be an iterable"):
        from_openai(3)


ANTHROPIC_EVENTS: List[Dict[str, Any]] = [
    {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {
        "input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " world"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 12}},
    {"type": "message_stop"},
]
ANTHROPIC_USAGE = {"prompt_tokens": 105, "completion_tokens": 12, "total_tokens": 117}


@pytest.mark.parametrize("shape", [lambda x: x, as_objects], ids=["dicts", "objects"])
def test_from_anthropic_text_deltas_and_usage(shape: Any) -> None:
    # the MessageStream of the SDK adds "text" events next to the deltas: not counted twice
    events = [shape(e) for e in ANTHROPIC_EVENTS]
    events.insert(4, as_objects({"type": "text", "text": "Hello", "snapshot": "Hello"}))
    texts, final = texts_and_final(from_anthropic(events))
    assert texts == ["Hello", " world"]
    assert final is not None
    assert final.metadata == {"id": "msg_1", "model": "claude-x", "finish_reason": "end_turn",
                              "usage": ANTHROPIC_USAGE}


def test_from_anthropic_error_event() -> None:
    events = ANTHROPIC_EVENTS[:4] + [{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
    got: List[Any] = []
    with pytest.raises(UpstreamError, match="Overloaded"):
        for item in from_anthropic(events):
            got.append(item)
    assert got == ["Hello"]


class FakeManager:
    """Like anthropic's MessageStreamManager: entering it sends the request."""

    def __init__(self, events: List[Any]) -> None:
        self.events = events
        self.entered = False
        self.exited = False

    def __enter__(self) -> Iterator[Any]:
        self.entered = True
        return iter(self.events)

    def __exit__(self, *exc: object) -> None:
        self.exited = True


def test_from_anthropic_enters_and_exits_a_stream_manager() -> None:
    manager = FakeManager(ANTHROPIC_EVENTS)
    source = from_anthropic(manager)
    assert not manager.entered  # not before the stream starts
    assert texts_and_final(source)[0] == ["Hello", " world"]
    assert manager.entered and manager.exited


def test_a_manager_closed_before_the_start_is_never_entered() -> None:
    manager = FakeManager(ANTHROPIC_EVENTS)
    source = from_anthropic(manager)
    source.close()
    assert list(source) == []
    assert not manager.entered


# --- closing ----------------------------------------------------------------------------
def test_closing_the_output_closes_a_blocked_sdk_stream_from_the_stopping_thread(thread_baseline: Any) -> None:
    upstream = BlockingSource([chat_chunk("Hello "), chat_chunk("world. ")])
    source = from_openai(upstream)
    output, _ = hs.EnhancedStreamer(hs.StreamConfig(prefetch=True)).stream_buffered(source)
    assert next(output).content == "Hello "
    assert next(output).content == "world. "
    assert upstream.waiting.wait(5)  # the worker is blocked in a read
    output.close()
    assert upstream.closed.is_set() and source.closed
    assert not any(t.is_alive() for t in output.threads())
    thread_baseline()


def test_a_generator_given_to_from_sse_is_closed_by_the_reading_thread() -> None:
    reading = threading.Event()
    release = threading.Event()
    closed_in: List[str] = []

    def lines() -> Iterator[str]:
        try:
            yield "data: " + json.dumps(chat_chunk("a"))
            yield ""
            reading.set()
            release.wait(5)  # a read that takes a while
            yield ": tick"
        finally:
            closed_in.append(threading.current_thread().name)

    prefetching = hs.EnhancedStreamer(hs.StreamConfig(prefetch=True))
    output, _ = prefetching.stream_buffered(from_sse(lines()), "character")
    assert next(output).content == "a"
    assert reading.wait(5)
    output._core.halt()  # noqa: SLF001 - close without waiting, as from another thread
    assert closed_in == []  # not closed from here: it is running in the worker
    release.set()
    output.close()
    assert len(closed_in) == 1 and closed_in[0].startswith("helixstream-")


def test_a_source_iterates_once_and_close_is_idempotent() -> None:
    source = from_openai(STREAM)
    assert texts_and_final(source)[0] == ["Hé", "llo 日本", " 🙂!"]
    with pytest.raises(RuntimeError, match="only once"):
        iter(source)
    source.close()
    source.close()
    assert source.closed


def test_a_source_closed_before_it_starts_is_empty() -> None:
    closed = []

    class Upstream:
        def __iter__(self) -> Iterator[Any]:
            raise AssertionError("never read")

        def close(self) -> None:
            closed.append(True)

    source = from_openai(Upstream())
    with source:
        pass
    assert closed == [True]
    assert list(source) == []


# --- Channel ------------------------------------------------------------------------------
def start(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name="producer")
    thread.start()
    return thread


def test_channel_carries_a_producer_thread_to_a_stream(thread_baseline: Any) -> None:
    channel = Channel(maxsize=4)
    words = [f"word{i} " for i in range(200)]

    def produce() -> None:
        for word in words:
            channel.send(word)

    producer = start(channel.run, produce)
    output, get_result = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="word")).stream_buffered(channel)
    with output:
        got = [chunk.content for chunk in output]
    producer.join(5)
    assert got == words
    assert get_result().full_content == "".join(words)
    assert channel.closed
    thread_baseline()


def test_channel_is_bounded_send_waits_for_room() -> None:
    channel = Channel(maxsize=3)
    sent = []

    def produce() -> None:
        for i in range(10):
            channel.send(str(i))
            sent.append(i)
        channel.close()

    producer = start(produce)
    producer.join(0.2)  # gives it time to fill the channel; it must then be waiting
    assert producer.is_alive()
    assert sent == [0, 1, 2]
    assert list(channel) == [str(i) for i in range(10)]
    producer.join(5)
    assert not producer.is_alive() and len(sent) == 10


def test_channel_fail_delivers_what_was_sent_then_the_same_exception() -> None:
    channel = Channel()
    error = KeyError("model crashed")
    channel.send("Hello ")
    channel.send(b"w\xc3")  # bytes, cut inside a character: the stream decodes them
    channel.send(b"\xa9rld")
    channel.fail(error)
    channel.fail(ValueError("ignored: already closed"))
    output, get_result = hs.ChunkAggregator().aggregate_chunks(channel)
    got = []
    with pytest.raises(KeyError) as info:
        for chunk in output:
            got.append(chunk.content)
    assert info.value is error
    assert "".join(got) == "Hello wérld"
    assert get_result().error is error


def test_channel_close_ends_the_input_after_what_was_sent() -> None:
    channel = Channel()
    channel.send("a")
    channel.send(hs.StreamChunk("b", tokens=5))
    channel.close()
    channel.close()
    with pytest.raises(hs.StreamClosedError):
        channel.send("c")
    assert [c if isinstance(c, str) else c.content for c in channel] == ["a", "b"]
    assert list(channel) == []


def test_send_raises_stream_closed_once_the_reader_stops_the_stream(thread_baseline: Any) -> None:
    channel = Channel(maxsize=2)
    outcome: List[Any] = []

    def produce() -> None:
        try:
            for i in range(10**6):
                channel.send(f"t{i} ")
        except hs.StreamClosedError as exc:
            outcome.append(exc)

    producer = start(produce)
    output, _ = hs.EnhancedStreamer().stream_buffered(channel)
    assert next(output).content == "t0 "
    output.close()  # the reader leaves
    producer.join(5)
    assert not producer.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], hs.StreamClosedError)
    assert channel.closed
    with pytest.raises(hs.StreamClosedError):
        channel.send("more")
    thread_baseline()


def test_channel_run_closes_fails_or_stops_quietly() -> None:
    done = Channel()
    done.run(lambda: done.send("x"))
    assert done.closed and list(done) == ["x"]

    failed = Channel()
    error = RuntimeError("generation failed")

    def crash() -> None:
        failed.send("partial")
        raise error

    failed.run(crash)  # nothing raised here: the reader gets it
    got = []
    with pytest.raises(RuntimeError) as info:
        for item in failed:
            got.append(item)
    assert got == ["partial"] and info.value is error

    left = Channel()
    left.close()  # as the runner does when the reader leaves
    left.run(lambda: left.send("nobody listens"))  # StreamClosedError: a quiet stop


def test_channel_checks_its_arguments() -> None:
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="'maxsize' must be an int >= 1"):
            Channel(maxsize=bad)  # type: ignore[arg-type]
    channel = Channel()
    with pytest.raises(TypeError, match="not int"):
        channel.send(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes an exception"):
        channel.fail("oops")  # type: ignore[arg-type]
    assert repr(channel) == "<Channel open 0/256>"


def test_sources_are_sse_sources() -> None:
    assert isinstance(from_sse([]), SSESource)


# --- from_sse: an upstream that is not to be trusted ------------------------------------
class EndlessPieces:
    """An iterable of ``head`` and then ``piece`` forever; counts what was read."""

    def __init__(self, head: bytes, piece: bytes) -> None:
        self.head = head
        self.piece = piece
        self.read = 0  # bytes handed out

    def __iter__(self) -> Iterator[bytes]:
        self.read += len(self.head)
        yield self.head
        while True:
            self.read += len(self.piece)
            yield self.piece


@pytest.mark.parametrize("name", ["max_line_bytes", "max_event_bytes"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1024", None])
def test_sse_limits_must_be_positive_ints(name: str, value: Any) -> None:
    with pytest.raises(hs.ConfigError, match=f"'{name}' must be an int >= 1") as info:
        from_sse([], **{name: value})
    assert isinstance(info.value, ValueError)


def test_sse_limits_default_to_one_mebibyte() -> None:
    source = from_sse([])
    assert source.max_line_bytes == source.max_event_bytes == 1024 * 1024


@pytest.mark.parametrize("mode", ["auto", "raw"])
def test_sse_an_endless_line_stops_reading_just_past_max_line_bytes(mode: str) -> None:
    # the default limit, 64 KiB pieces: a 200 MB line must not be buffered whole
    head = sse(chat_chunk("a"), done=False).encode()
    pieces = EndlessPieces(head + b"data: ", b"x" * 65536)
    got: List[Any] = []
    with pytest.raises(UpstreamError, match=r"a line longer than max_line_bytes \(1048576\)") as info:
        for item in from_sse(pieces, mode=mode):
            got.append(item)
    assert got == ["a"]
    assert pieces.read <= len(head) + 6 + 1024 * 1024 + 65536
    assert info.value.offset == len(head)
    assert f"at byte {len(head)}" in str(info.value)


class OneHugeChunk:
    """A requests response's ``raw`` whose body is one HTTP chunk of ``size`` bytes, read
    as urllib3 reads a chunk: ``amt`` bytes at a time, or all of it when ``amt`` is None."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.read = 0

    def stream(self, amt: Optional[int] = None, decode_content: bool = True) -> Iterator[bytes]:
        while self.left:
            n = min(amt or self.left, self.left)
            self.left -= n
            self.read += n
            yield b"data: " + b"x" * (n - 6) if self.read == n else b"x" * n

    def close(self) -> None:
        pass


def test_sse_reads_a_requests_response_in_bounded_pieces() -> None:
    requests = pytest.importorskip("requests")
    response = requests.models.Response()
    response.status_code = 200
    response.raw = raw = OneHugeChunk(16 * 1024 * 1024)
    with pytest.raises(UpstreamError, match="a line longer than max_line_bytes"):
        list(from_sse(response, max_line_bytes=100_000))
    assert raw.read <= 100_000 + 2 * 65536


def test_sse_a_line_longer_than_the_limit_in_one_piece_or_one_item() -> None:
    line = "data: " + json.dumps(chat_chunk("x" * 100))
    ok = len(line.encode())
    assert texts_and_final(from_sse([line + "\n\n"], max_line_bytes=ok))[0] == ["x" * 100]
    with pytest.raises(UpstreamError, match="a line longer than max_line_bytes") as info:
        list(from_sse([line + "\n\n"], max_line_bytes=ok - 1))
    assert info.value.offset == 0
    # lines mode (each item a line): the same limit, counted in UTF-8 bytes
    with pytest.raises(UpstreamError, match="a line longer than max_line_bytes"):
        list(from_sse([": ping", "", "data: " + "é" * 60, ""], mode="lines", max_line_bytes=100))


def test_sse_an_endless_event_stops_reading_just_past_max_event_bytes() -> None:
    head = b": hello\n\n"
    line = b"data: " + b"y" * 994 + b"\n"  # 1,000 bytes a line
    pieces = EndlessPieces(head, line)
    with pytest.raises(UpstreamError, match=r"an event larger than max_event_bytes \(100000\)") as info:
        list(from_sse(pieces, max_event_bytes=100_000))
    assert pieces.read <= len(head) + 100_000 + 2 * len(line)
    assert info.value.offset == len(head)


def test_sse_max_event_bytes_counts_the_joined_data() -> None:
    body = 'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "ab"}}]}\n\n'
    size = len('{"choices": [{"index": 0,\n"delta": {"content": "ab"}}]}')
    assert texts_and_final(from_sse([body], max_event_bytes=size))[0] == ["ab"]
    with pytest.raises(UpstreamError, match="an event larger than max_event_bytes"):
        list(from_sse([body], max_event_bytes=size - 1))


def test_sse_an_endless_stream_of_pieces_without_line_endings_is_not_held_forever() -> None:
    pieces = EndlessPieces(b"data: ", b"z" * 1000)  # auto mode holds items until one tells
    with pytest.raises(UpstreamError, match="a line longer than max_line_bytes"):
        list(from_sse(pieces, max_line_bytes=10_000))
    assert pieces.read <= 12_000


BAD_SHAPES = [
    pytest.param({"choices": 5}, "'choices' must be a list, got int 5", id="choices-int"),
    pytest.param({"choices": [5]}, "'choices\\[0\\]' must be an object, got int 5", id="choice-int"),
    pytest.param({"choices": [{"delta": "hi"}]}, "'delta' must be an object, got str 'hi'", id="delta-str"),
    pytest.param({"choices": [{"delta": {"content": 5}}]}, "'content' must be a string", id="content-int"),
    pytest.param({"choices": [{"delta": {"content": ["a"]}}]}, "'content' must be a string, got list",
                 id="content-list"),
    pytest.param({"choices": [{"text": {"a": 1}}]}, "'text' must be a string", id="legacy-text"),
    pytest.param({"choices": [{"index": "0", "delta": {}}]}, "'index' must be an int", id="index-str"),
    pytest.param({"choices": [], "usage": 5}, "'usage' must be an object", id="usage-int"),
    pytest.param({"type": "response.output_text.delta", "delta": 5}, "'delta' must be a string",
                 id="responses-delta"),
    pytest.param({"type": "response.completed", "response": "done"}, "'response' must be an object",
                 id="responses-response"),
    pytest.param({"type": "content_block_delta", "delta": {"type": "text_delta", "text": None}},
                 "'text' must be a string", id="anthropic-text"),
    pytest.param({"type": "message_start", "message": []}, "'message' must be an object", id="anthropic-message"),
    pytest.param({"content": "x", "stop": True, "tokens_predicted": "2"}, "'tokens_predicted' must be an int",
                 id="llamacpp-count"),
]


@pytest.mark.parametrize("payload, message", BAD_SHAPES)
def test_sse_a_payload_of_the_wrong_shape_raises_upstream_error_saying_where(payload: Any, message: str) -> None:
    head = (": ping\r\n\r\n" + sse(chat_chunk("a"), nl="\r\n", done=False)).encode()
    body = head + f"data: {json.dumps(payload)}\r\n\r\n".encode()
    got: List[Any] = []
    with pytest.raises(UpstreamError, match=message) as info:
        for item in from_sse([body]):
            got.append(item)
    assert got == ["a"]
    assert info.value.offset == len(head)
    assert f"at byte {len(head)}" in str(info.value)
    assert info.value.payload == payload
    assert info.value.status is None


def test_from_openai_a_payload_of_the_wrong_shape_raises_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="'choices' must be a list") as info:
        list(from_openai([{"choices": 5}]))
    assert info.value.offset is None


def test_sse_offsets_count_the_bytes_of_the_stream() -> None:
    # a byte order mark, multi-byte characters, invalid bytes and CRLF all count as sent
    head = b"\xef\xbb\xbf: \xff\xfe\r\n" + sse(chat_chunk("日本"), nl="\r\n", done=False).encode()
    data = head + b"data: 42\r\n\r\n"
    with pytest.raises(UpstreamError, match="not an object") as info:
        list(from_sse([data[i:i + 3] for i in range(0, len(data), 3)]))
    assert info.value.offset == len(head)


def test_sse_json_nested_too_deeply_is_an_upstream_error() -> None:
    head = sse(chat_chunk("a"), done=False).encode()
    got: List[Any] = []
    with pytest.raises(UpstreamError, match="nested too deeply") as info:
        for item in from_sse([head + b"data: " + b"[" * 100_000 + b"\n\n"]):
            got.append(item)
    assert got == ["a"]
    assert info.value.offset == len(head)


def test_an_error_payload_nested_too_deeply_to_print_still_reports_the_error() -> None:
    deep: Any = "boom"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(UpstreamError, match="reported an error: list of 1"):
        list(from_openai([{"error": deep}]))


@pytest.mark.parametrize("status", [500, 503])
def test_sse_http_error_status_is_not_hidden_by_a_deeply_nested_body(status: int) -> None:
    httpx = pytest.importorskip("httpx")
    response = httpx.Response(status, content=b"[" * 100_000)
    with pytest.raises(UpstreamError, match=f"HTTP {status}") as info:
        list(from_sse(response))
    assert info.value.status == status


def test_sse_a_malformed_event_in_an_http_response_names_its_status() -> None:
    httpx = pytest.importorskip("httpx")
    response = httpx.Response(200, content=sse({"choices": 5}).encode())
    with pytest.raises(UpstreamError, match=r"at byte 0 of an HTTP 200 response") as info:
        list(from_sse(response))
    assert info.value.status is None  # .status is for an HTTP error status only
    assert info.value.offset == 0


@pytest.mark.parametrize(
    "value, retry",
    [
        ("1000", 1000),
        ("0", 0),
        ("1" * 5000, 7),  # more than int() takes
        ("9" * 11, 7),  # not a reasonable number of milliseconds
        ("-1", 7),
        ("1e3", 7),
        (" 100", 7),  # one space after the colon is dropped, not two
        ("\u0661\u0662", 7),  # digits, but not ASCII digits
        ("", 7),
    ],
)
def test_sse_a_retry_field_that_is_not_a_reasonable_number_is_ignored(value: str, retry: int) -> None:
    source = from_sse([f"retry: 7\n\nretry: {value}\n" + sse(chat_chunk("a"), chat_chunk("b"))])
    assert texts_and_final(source)[0] == ["a", "b"]
    assert source.retry == retry


def usage_stream(**usage: Any) -> str:
    return sse(chat_chunk("a"), {"choices": [], "usage": usage})


@pytest.mark.parametrize(
    "count, message",
    [
        pytest.param(int("9" * 400), "'completion_tokens' must be an int from 0 to 10\\*\\*12, got int 99999999... \\(400 digits\\)",
                     id="400-digits"),
        pytest.param(-1, "'completion_tokens' must be an int from 0 to 10\\*\\*12, got int -1", id="negative"),
        pytest.param(10**12 + 1, "must be an int from 0 to 10\\*\\*12", id="too-large"),
        pytest.param(1.5, "'completion_tokens' must be an int .*got float 1.5", id="float"),
        pytest.param("17", "'completion_tokens' must be an int .*got str '17'", id="string"),
        pytest.param(True, "'completion_tokens' must be an int .*got bool True", id="bool"),
    ],
)
def test_sse_a_usage_count_that_is_not_a_sane_int_is_an_upstream_error(count: Any, message: str) -> None:
    output, get_result = hs.EnhancedStreamer().stream_buffered(
        from_sse([usage_stream(prompt_tokens=3, completion_tokens=count, total_tokens=20)]))
    got = []
    with pytest.raises(UpstreamError, match=message):
        for chunk in output:
            got.append(chunk.content)
    assert "".join(got) == "a"
    result = get_result()  # no OverflowError
    assert isinstance(result.error, UpstreamError)


def test_sse_usage_counts_up_to_the_bound_and_null_counts_are_taken() -> None:
    _, final = texts_and_final(from_sse([usage_stream(prompt_tokens=None, completion_tokens=10**12)]))
    assert final is not None
    assert final.metadata["usage"] == {"prompt_tokens": 0, "completion_tokens": 10**12, "total_tokens": 10**12}


@pytest.mark.parametrize(
    "escaped, text",
    [
        ("\\ud800x", "\ufffdx"),
        ("a\\udfffb\\udc00", "a\ufffdb\ufffd"),
        ("\\ud83d\\ude42", "\U0001f642"),  # a pair is one character, as it should be
    ],
)
def test_sse_a_lone_surrogate_in_a_delta_becomes_a_replacement_character(escaped: str, text: str) -> None:
    body = 'data: {"choices": [{"index": 0, "delta": {"content": "%s"}}]}\n\n' % escaped
    assert texts_and_final(from_sse([body + sse(chat_chunk("!"))]))[0] == [text, "!"]


def escaped_deltas(*escaped: str) -> str:
    return "".join('data: {"choices": [{"index": 0, "delta": {"content": "%s"}}]}\n\n' % e for e in escaped)


@pytest.mark.parametrize(
    "deltas, texts",
    [
        # a gateway that cuts text by UTF-16 units may cut a pair in two: it is joined
        (["a\\ud83d", "\\ude42b"], ["a", "\U0001f642b"]),
        (["\\ud83d", "\\ude42"], ["\U0001f642"]),
        # a first half whose second half never comes is U+FFFD, where it was
        (["a\\ud83d", "b"], ["a", "\ufffdb"]),
        (["a\\ud83d"], ["a", "\ufffd"]),
        (["\\ud83d", "\\ud83d", "\\ude42"], ["\ufffd", "\U0001f642"]),
    ],
)
def test_sse_a_surrogate_pair_cut_between_two_deltas_is_one_character(deltas: List[str], texts: List[str]) -> None:
    texts_got, final = texts_and_final(from_sse([escaped_deltas(*deltas) + sse(chat_chunk(finish="stop"))]))
    assert texts_got == texts
    assert final is not None and final.metadata["finish_reason"] == "stop"


def test_a_lone_surrogate_does_not_end_an_sse_stream_as_failed() -> None:
    from helixstream.sse import sse_stream

    body = 'data: {"choices": [{"index": 0, "delta": {"content": "a\\ud800b"}}]}\n\n' + sse(chat_chunk("c"))
    raw = b"".join(sse_stream(from_sse([body])))
    assert b"stream_failed" not in raw
    assert "a\ufffdb".encode() in raw and b"event: done" in raw


def test_from_openai_mends_surrogates_too() -> None:
    texts, _ = texts_and_final(from_openai([chat_chunk("a\ud83d"), chat_chunk("\ude42\udc00"), chat_chunk("b\ud83d")]))
    assert texts == ["a", "\U0001f642\ufffd", "b", "\ufffd"]


def test_upstream_error_keeps_its_offset_through_pickle() -> None:
    import pickle

    error = UpstreamError("bad event", {"choices": 5}, None, 42)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.payload, copy.status, copy.offset) == ("bad event", {"choices": 5}, None, 42)
