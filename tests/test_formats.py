"""The event formats (``text``, ``openai``, ``ai-sdk``): what each says, and the `ai`
npm package's own parser reading an ``ai-sdk`` stream back."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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
