"""helixstream.sources with the real SDKs and HTTP clients, against a local server.

``tests/llm_server.py`` serves OpenAI- and Anthropic-format event streams on
127.0.0.1. The tests read them through the real ``openai`` and ``anthropic`` SDKs,
``httpx`` and ``requests``, and check the text, the exact usage, and that closing the
helixstream output makes the server see the client go away.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

import helixstream as hs
from helixstream.sources import UpstreamError, from_anthropic, from_openai, from_sse

from .llm_server import DEFAULT_PIECES, LLMServer

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
httpx = pytest.importorskip("httpx")
requests = pytest.importorskip("requests")

TEXT = "".join(DEFAULT_PIECES)
MESSAGES = [{"role": "user", "content": "Say hello."}]
DISCONNECT_TIMEOUT = 5.0  # generous: the disconnect is normally seen within milliseconds


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv
    assert srv.lingering == [], "a client left a connection open"


@pytest.fixture(autouse=True)
def fresh(server: LLMServer) -> None:
    server.reset()


@pytest.fixture
def openai_client(server: LLMServer) -> Iterator[Any]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="test-key", max_retries=0, timeout=30) as client:
        yield client


@pytest.fixture
def anthropic_client(server: LLMServer) -> Iterator[Any]:
    with anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=0, timeout=30) as client:
        yield client


def chat(client: Any, **options: Any) -> Any:
    options.setdefault("stream_options", {"include_usage": True})
    return client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True, **options)


def read_some_then_close(output: Any, server: LLMServer, n: int = 3) -> float:
    """Read ``n`` chunks, close the output; return seconds until the server saw it."""
    for _ in range(n):
        assert next(output).content
    assert not server.finished.is_set()
    start = time.monotonic()
    output.close()
    assert server.disconnected.wait(DISCONNECT_TIMEOUT), "the server did not see the client go away"
    assert server.disconnect_time is not None
    assert not server.finished.is_set()
    assert not any(t.is_alive() for t in output.threads()), "a stream thread is still running"
    seconds = server.disconnect_time - start
    print(f"the server saw the disconnect {seconds * 1000:.1f} ms after close()")
    return seconds


# --- openai ---------------------------------------------------------------------------
def test_openai_stream_text_and_exact_usage(openai_client: Any, server: LLMServer, thread_baseline: Any) -> None:
    streamer = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="sentence"))
    output, get_result = streamer.stream_enhanced(from_openai(chat(openai_client)))
    with output:
        chunks = list(output)
    result = get_result()
    assert [c.content for c in chunks] == ["Hello, world. ", "How are you? ", "Fine, thanks.", ""]
    assert result.full_content == TEXT
    assert result.total_tokens == 42 != hs.estimate_tokens(TEXT)  # the server's own count
    assert chunks[-1].metadata == {
        "usage": {"prompt_tokens": 11, "completion_tokens": 42, "total_tokens": 53},
        "finish_reason": "stop", "model": "test-model", "id": "chatcmpl-test",
    }
    assert server.requests[-1]["stream_options"] == {"include_usage": True}
    assert not result.cancelled and result.error is None
    thread_baseline()


def test_openai_stream_without_usage_is_counted(openai_client: Any, server: LLMServer) -> None:
    stream = openai_client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_openai(stream))
    with output:
        chunks = list(output)
    assert chunks[-1].metadata == {"finish_reason": "stop", "model": "test-model", "id": "chatcmpl-test"}
    assert get_result().full_content == TEXT
    assert get_result().total_tokens == hs.estimate_tokens(TEXT)


def test_closing_the_output_mid_stream_disconnects_the_openai_request(
    openai_client: Any, server: LLMServer, thread_baseline: Any
) -> None:
    server.pieces = [f"tok{i} " for i in range(5000)]
    server.delay = 0.002  # 10 s in all: far longer than the test
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_openai(chat(openai_client)))
    seconds = read_some_then_close(output, server)
    assert seconds < DISCONNECT_TIMEOUT
    assert server.sent_before_disconnect is not None and server.sent_before_disconnect < 5000
    assert get_result().cancelled
    thread_baseline()


def test_closing_while_the_server_is_silent_disconnects_at_once(
    openai_client: Any, server: LLMServer, thread_baseline: Any
) -> None:
    # after the first word the server says nothing for 60 s (a model "thinking"): the
    # read in progress must end now, not at the server's next byte
    server.stall_after = 2  # the role chunk, "Hel", then 60 s of silence
    output, _ = hs.ChunkAggregator().aggregate_chunks(from_openai(chat(openai_client)))
    assert next(output).content == "Hel"
    start = time.monotonic()
    output.close()
    closed_in = time.monotonic() - start
    assert server.disconnected.wait(DISCONNECT_TIMEOUT)
    assert server.disconnect_time is not None and server.disconnect_time - start < 2.0
    assert closed_in < 1.0  # close() did not wait out its join timeout
    print(f"silent server: disconnect seen {(server.disconnect_time - start) * 1000:.1f} ms after close()")
    assert not any(t.is_alive() for t in output.threads())
    thread_baseline()


def test_a_stop_event_set_from_another_thread_disconnects_the_request(
    openai_client: Any, server: LLMServer
) -> None:
    server.pieces = [f"tok{i} " for i in range(5000)]
    server.delay = 0.002
    stop = threading.Event()
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_openai(chat(openai_client)), stop=stop)
    got = []
    with output:
        for chunk in output:
            got.append(chunk.content)
            if len(got) == 3:
                threading.Thread(target=stop.set).start()
    assert server.disconnected.wait(DISCONNECT_TIMEOUT)
    assert got[:3] == ["tok0 ", "tok1 ", "tok2 "]
    assert get_result().cancelled


def test_openai_error_in_the_stream_reaches_the_reader(openai_client: Any, server: LLMServer) -> None:
    server.error = {"message": "the model crashed", "type": "server_error"}
    output, get_result = hs.EnhancedStreamer().stream_buffered(from_openai(chat(openai_client)))
    got: List[str] = []
    with pytest.raises(openai.APIError, match="the model crashed"):
        for chunk in output:
            got.append(chunk.content)
    assert "".join(got) == TEXT  # everything before the error
    assert isinstance(get_result().error, openai.APIError)


def test_openai_responses_stream(openai_client: Any, server: LLMServer) -> None:
    stream = openai_client.responses.create(model="test-model", input="Say hello.", stream=True)
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_openai(stream))
    with output:
        chunks = list(output)
    assert get_result().full_content == TEXT
    assert get_result().total_tokens == 42
    assert chunks[-1].metadata["usage"] == {"prompt_tokens": 11, "completion_tokens": 42, "total_tokens": 53}
    assert chunks[-1].metadata["finish_reason"] == "completed"


# --- anthropic --------------------------------------------------------------------------
def test_anthropic_raw_stream_text_and_usage(anthropic_client: Any, server: LLMServer, thread_baseline: Any) -> None:
    stream = anthropic_client.messages.create(model="claude-test", max_tokens=100, messages=MESSAGES, stream=True)
    output, get_result = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="sentence")).stream_enhanced(
        from_anthropic(stream)
    )
    with output:
        chunks = list(output)
    assert [c.content for c in chunks] == ["Hello, world. ", "How are you? ", "Fine, thanks.", ""]
    assert get_result().total_tokens == 42
    assert chunks[-1].metadata == {
        "id": "msg_test", "model": "claude-test", "finish_reason": "end_turn",
        "usage": {"prompt_tokens": 11, "completion_tokens": 42, "total_tokens": 53},
    }
    thread_baseline()


def test_anthropic_message_stream_and_its_manager(anthropic_client: Any, server: LLMServer) -> None:
    with anthropic_client.messages.stream(model="claude-test", max_tokens=100, messages=MESSAGES) as stream:
        output, get_result = hs.EnhancedStreamer().stream_enhanced(from_anthropic(stream))
        with output:
            list(output)
    assert get_result().full_content == TEXT  # the MessageStream's "text" events are not doubled
    assert get_result().total_tokens == 42

    manager = anthropic_client.messages.stream(model="claude-test", max_tokens=100, messages=MESSAGES)
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_anthropic(manager))
    with output:
        list(output)
    assert get_result().full_content == TEXT and get_result().total_tokens == 42


def test_closing_the_output_disconnects_the_anthropic_request(
    anthropic_client: Any, server: LLMServer, thread_baseline: Any
) -> None:
    server.pieces = [f"tok{i} " for i in range(5000)]
    server.delay = 0.002
    stream = anthropic_client.messages.create(model="claude-test", max_tokens=100, messages=MESSAGES, stream=True)
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_anthropic(stream))
    read_some_then_close(output, server)
    assert get_result().cancelled
    thread_baseline()


def test_anthropic_error_event_reaches_the_reader(anthropic_client: Any, server: LLMServer) -> None:
    server.error = {"type": "overloaded_error", "message": "Overloaded"}
    stream = anthropic_client.messages.create(model="claude-test", max_tokens=100, messages=MESSAGES, stream=True)
    output, _ = hs.ChunkAggregator().aggregate_chunks(from_anthropic(stream))
    got: List[str] = []
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        for chunk in output:
            got.append(chunk.content)
    assert "".join(got) == TEXT


# --- raw HTTP: httpx and requests ---------------------------------------------------------
BODY = {"model": "test-model", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("how", ["response", "iter_bytes", "iter_text", "iter_lines"])
def test_httpx_stream_text_and_usage(server: LLMServer, how: str, newline: str) -> None:
    server.newline = newline
    server.comments = True
    with httpx.Client() as client, client.stream("POST", server.url + "/v1/chat/completions", json=BODY) as r:
        source = r if how == "response" else getattr(r, how)()
        output, get_result = hs.EnhancedStreamer().stream_enhanced(from_sse(source))
        with output:
            chunks = list(output)
    assert get_result().full_content == TEXT
    assert get_result().total_tokens == 42
    assert chunks[-1].metadata["usage"]["completion_tokens"] == 42


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("how", ["response", "iter_lines", "iter_content"])
def test_requests_stream_text_and_usage(server: LLMServer, how: str, newline: str) -> None:
    server.newline = newline
    with requests.Session() as session:
        with session.post(server.url + "/v1/chat/completions", json=BODY, stream=True) as r:
            source = {"response": r, "iter_lines": r.iter_lines(), "iter_content": r.iter_content(None)}[how]
            output, get_result = hs.EnhancedStreamer().stream_enhanced(from_sse(source))
            with output:
                list(output)
    assert get_result().full_content == TEXT
    assert get_result().total_tokens == 42


def test_raw_anthropic_and_responses_streams_over_http(server: LLMServer) -> None:
    for path in ("/v1/messages", "/v1/responses"):
        # a client per request: reusing a kept-alive connection races with the test
        # server closing it ("Server disconnected without sending a response")
        with httpx.Client() as client:
            with client.stream("POST", server.url + path, json={"model": "m", "stream": True}) as r:
                output, get_result = hs.EnhancedStreamer().stream_enhanced(from_sse(r))
                with output:
                    list(output)
        assert get_result().full_content == TEXT, path
        assert get_result().total_tokens == 42, path


@pytest.mark.parametrize("client_kind", ["httpx", "requests"])
def test_closing_the_output_disconnects_a_raw_http_request(
    server: LLMServer, client_kind: str, thread_baseline: Any
) -> None:
    server.pieces = [f"tok{i} " for i in range(5000)]
    server.delay = 0.002
    url = server.url + "/v1/chat/completions"
    if client_kind == "httpx":
        with httpx.Client() as client, client.stream("POST", url, json=BODY) as r:
            output, _ = hs.EnhancedStreamer().stream_enhanced(from_sse(r))
            read_some_then_close(output, server)
    else:
        with requests.Session() as session, session.post(url, json=BODY, stream=True) as r:
            output, _ = hs.EnhancedStreamer().stream_enhanced(from_sse(r))
            read_some_then_close(output, server)
    thread_baseline()


@pytest.mark.parametrize("client_kind", ["httpx", "requests"])
def test_closing_a_raw_http_stream_while_the_server_is_silent(server: LLMServer, client_kind: str) -> None:
    server.stall_after = 2  # the role chunk, "Hel", then 60 s of silence
    url = server.url + "/v1/chat/completions"

    def check(r: Any) -> None:
        output, _ = hs.ChunkAggregator().aggregate_chunks(from_sse(r))
        assert next(output).content == "Hel"
        start = time.monotonic()
        output.close()
        assert server.disconnected.wait(DISCONNECT_TIMEOUT)
        assert server.disconnect_time is not None and server.disconnect_time - start < 2.0
        assert not any(t.is_alive() for t in output.threads())
        print(f"silent server: disconnect seen {(server.disconnect_time - start) * 1000:.1f} ms after close()")

    if client_kind == "httpx":
        with httpx.Client() as client, client.stream("POST", url, json=BODY) as r:
            check(r)
    else:
        with requests.Session() as session, session.post(url, json=BODY, stream=True) as r:
            check(r)


def test_raw_http_error_payload_and_status(server: LLMServer) -> None:
    url = server.url + "/v1/chat/completions"
    server.error = {"message": "context length exceeded", "type": "invalid_request_error"}
    with httpx.Client() as client, client.stream("POST", url, json=BODY) as r:
        output, _ = hs.EnhancedStreamer().stream_buffered(from_sse(r))
        got: List[str] = []
        with pytest.raises(UpstreamError, match="context length exceeded"):
            for chunk in output:
                got.append(chunk.content)
    assert "".join(got) == TEXT

    server.reset()
    server.status = 503
    with requests.Session() as session, session.post(url, json=BODY, stream=True) as r:
        output, _ = hs.EnhancedStreamer().stream_buffered(from_sse(r))
        with pytest.raises(UpstreamError, match="HTTP 503: test failure") as info:
            list(output)
    assert info.value.status == 503


# --- docs/sources.md: every example not marked "not run" runs against the server --------
DOCS = Path(__file__).resolve().parent.parent / "docs" / "sources.md"


def doc_examples() -> List[Any]:
    text = DOCS.read_text(encoding="utf-8")
    examples = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S):
        before = text[: match.start()].rstrip().splitlines()[-1]
        if before.startswith("<!-- not run"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        examples.append(pytest.param(match.group(1), id=f"sources.md:{line}"))
    return examples


def test_the_docs_have_runnable_examples() -> None:
    assert len(doc_examples()) >= 8


# the SDKs warn when the model an example names gets old; the example still works
@pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
@pytest.mark.parametrize("code", doc_examples())
def test_docs_example_runs(code: str, server: LLMServer, monkeypatch: Any, capsys: Any,
                           thread_baseline: Any) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("LLM_BASE_URL", server.url + "/v1")
    exec(compile(code, str(DOCS), "exec"), {"__name__": "__docs__"})  # noqa: S102 - our own docs
    out = capsys.readouterr().out
    assert out.strip()
    if "from helixstream.sources import Channel" not in code:
        assert "Hello, world." in out or "end_turn" in out
    thread_baseline()
