"""The event formats (``text``, ``openai``, ``ai-sdk``): what each says, and the `ai`
npm package's own parser reading an ``ai-sdk`` stream back."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import helixstream as hs
from helixstream._formats import make_format

READER = Path(__file__).parent / "js" / "read_ui_message_stream.js"


def body_of(events: List[Tuple[Optional[str], str]]) -> bytes:
    return "".join(
        hs.format_sse_event(event, data, str(i + 1)) for i, (event, data) in enumerate(events)
    ).encode()


def test_text_is_todays_events():
    f = make_format("text", event="token")
    assert f.begin() == []
    assert f.text("Hi") == [("token", "Hi")]
    assert f.progress(3, 0) == [("progress", '{"received":3,"total":null}')]
    assert f.end(3) == [("done", "[DONE]")]
    assert f.failure({"code": "stream_failed", "message": "x"}) == [
        ("error", '{"code":"stream_failed","message":"x"}')
    ]


def test_openai_chunks_a_final_chunk_usage_then_done():
    f = make_format("openai", stream_id="k.1", model="m")
    first = json.loads(f.text("Hel")[0][1])
    second = json.loads(f.text("lo")[0][1])
    assert first["object"] == "chat.completion.chunk" and first["model"] == "m"
    assert first["id"] == second["id"] == "chatcmpl-k.1"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert second["choices"][0]["delta"] == {"content": "lo"}
    assert first["choices"][0]["finish_reason"] is None
    assert f.progress(1, 2) == []
    end = f.end(7)
    final, usage, done = json.loads(end[0][1]), json.loads(end[1][1]), end[2]
    assert final["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 7
    assert done == (None, "[DONE]")
    error = json.loads(f.failure({"code": "stream_failed", "message": "The stream failed."})[0][1])
    assert error["error"]["message"] == "The stream failed." and error["error"]["code"] == "stream_failed"


def test_ai_sdk_parts_in_order():
    f = make_format("ai-sdk", stream_id="s")
    events = f.begin() + f.text("a") + f.text("b") + f.end(2)
    types = [json.loads(d)["type"] if d != "[DONE]" else d for _, d in events]
    assert types == ["start", "start-step", "text-start", "text-delta", "text-delta",
                     "text-end", "finish-step", "finish", "[DONE]"]
    assert dict(f.headers)["x-vercel-ai-ui-message-stream"] == "v1"


def test_an_unknown_format_is_a_config_error():
    with pytest.raises(hs.ConfigError, match="'format' must be one of 'text', 'openai', 'ai-sdk'"):
        make_format("html")


# --- the `ai` package's own parser ------------------------------------------------------


def node_with_ai() -> Dict[str, str]:
    """The environment in which ``node`` finds the ``ai`` package, or a skip."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed (.ci/run uses the machine's node)")
    modules = os.environ.get("HELIXSTREAM_NODE_MODULES", "")
    env = {**os.environ, "NODE_PATH": modules}
    found = subprocess.run(
        ["node", "-e", "require.resolve('ai')"], env=env, capture_output=True, timeout=60
    )
    if not modules or found.returncode != 0:
        pytest.skip(
            "the npm package 'ai' is not installed: .ci/run installs it (npm install ai) "
            "and sets HELIXSTREAM_NODE_MODULES to its node_modules folder"
        )
    return env


def read_with_ai(body: bytes) -> Dict[str, Any]:
    done = subprocess.run(
        ["node", str(READER)], input=body, env=node_with_ai(), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    result: Dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_ai_package_reads_an_ai_sdk_stream_back_exactly():
    pieces = ["Hello", " world", "\n", "  indented", "line\r\nbreak", "é 😀", "a\u2028b", ": colon"]
    f = make_format("ai-sdk", stream_id="abc.1")
    events = f.begin()
    for i, piece in enumerate(pieces):
        events += f.text(piece) + f.progress(i + 1, 20)
    events += f.end(10)
    got = read_with_ai(body_of(events))
    assert got["errors"] == []
    assert got["text"] == "".join(pieces)
    assert got["id"] == "msg-abc.1"
    assert got["data"][-1] == {"received": len(pieces), "total": 20}
    assert got["types"][-2:] == ["finish-step", "finish"]


def test_the_ai_package_reads_a_failure_as_an_error_part():
    f = make_format("ai-sdk")
    events = f.begin() + f.text("partial") + f.failure(
        {"code": "stream_failed", "message": "The stream failed.", "error_id": "e1"}
    )
    got = read_with_ai(body_of(events))
    assert "error" in got["types"]
    assert any("The stream failed. (error id e1)" in e for e in got["errors"])


# --- real clients over HTTP: the openai SDK, the ai package, resuming ------------------

from .test_sse_servers import serve  # noqa: E402

PIECES = ["Hello", " world", "\n", "  indented", "line\r\nbreak", "é 😀", "a\u2028b", ": colon"]


def flask_app(make_source: Any, **options: Any) -> Any:
    flask = pytest.importorskip("flask")
    from helixstream.integrations.flask import sse_response

    app = flask.Flask("formats")

    @app.post("/v1/chat/completions")
    def chat() -> Any:
        body = flask.request.get_json()
        return sse_response(make_source, model=body["model"], format="openai", **options)

    @app.get("/ui")
    def ui() -> Any:
        return sse_response(make_source, format="ai-sdk", **options)

    return app


def test_the_openai_sdk_reads_the_text_and_the_usage_back_exactly():
    openai = pytest.importorskip("openai")
    usage = hs.StreamChunk("", metadata={"usage": {"completion_tokens": 12}})
    app = flask_app(lambda: [*PIECES, usage])
    with serve(app, "werkzeug") as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="test", max_retries=0)
        stream = client.chat.completions.create(
            model="helix-test", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True},
        )
        contents, finish, got_usage, models = [], [], None, set()
        for chunk in stream:
            models.add(chunk.model)
            if chunk.usage is not None:
                got_usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content is not None:
                    contents.append(choice.delta.content)
                if choice.finish_reason is not None:
                    finish.append(choice.finish_reason)
        client.close()
    assert "".join(contents) == "".join(PIECES)
    assert contents == PIECES  # chunk by chunk, nothing merged or split
    assert finish == ["stop"] and models == {"helix-test"}
    assert got_usage is not None and got_usage.completion_tokens == 12


def test_the_openai_sdk_raises_the_error_of_a_failed_stream():
    openai = pytest.importorskip("openai")

    def failing() -> Iterator[str]:
        yield "partial "
        raise RuntimeError("model crashed")

    app = flask_app(failing)
    with serve(app, "werkzeug") as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="test", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        got: List[str] = []
        with pytest.raises(openai.APIError, match="The stream failed"):
            for chunk in stream:
                got.extend(c.delta.content or "" for c in chunk.choices)
        client.close()
    assert "".join(got) == "partial "


def test_the_ai_package_reads_an_ai_sdk_response_over_http():
    httpx = pytest.importorskip("httpx")
    env = node_with_ai()
    app = flask_app(lambda: PIECES, progress=True, estimated_tokens=20)
    with serve(app, "werkzeug") as base:
        response = httpx.get(base + "/ui", timeout=10)
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    done = subprocess.run(
        ["node", str(READER)], input=response.content, env=env, capture_output=True, timeout=60
    )
    got = json.loads(done.stdout)
    assert got["errors"] == [] and got["text"] == "".join(PIECES)
    assert got["data"][-1]["total"] == 20


@pytest.mark.parametrize("fmt", ["openai", "ai-sdk"])
def test_resume_works_with_every_format(fmt):
    replay = hs.SSEReplay()
    try:
        source = ["one ", "two ", "three"]
        body = hs.sse_stream(source, replay=replay, format=fmt, keepalive=None)
        first = next(body) + next(body)  # the opening comment, then the first events
        events = [e for e in first.decode().split("\n\n") if "id: " in e]
        last_id = events[-1].rsplit("id: ", 1)[1].strip()
        body.close()  # the client goes away; the registry keeps the stream (grace)
        resumed = hs.sse_stream(lambda: [], replay=replay, last_event_id=last_id, format=fmt,
                                keepalive=None)
        rest = b"".join(resumed).decode()
        whole = first.decode() + rest
        texts = [json.loads(line[6:]) for line in whole.splitlines()
                 if line.startswith("data: {")]
        if fmt == "openai":
            text = "".join(c["choices"][0]["delta"].get("content", "")
                           for c in texts if c.get("choices"))
        else:
            text = "".join(p["delta"] for p in texts if p["type"] == "text-delta")
        assert text == "one two three"
        assert whole.count("[DONE]") == 1
    finally:
        replay.close()


def test_sse_stream_refuses_an_unknown_format():
    with pytest.raises(hs.ConfigError, match="'format' must be one of"):
        hs.sse_stream(["a"], format="html")
