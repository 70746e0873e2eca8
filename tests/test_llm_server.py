"""The test LLM server itself (``tests/llm_server.py``): tests that share one server
must not see each other's requests."""
from __future__ import annotations

import http.client
import json

import pytest

from .llm_server import LLMServer

pytestmark = pytest.mark.timeout(30)


def test_a_request_of_an_earlier_test_that_ends_after_reset_leaves_the_new_state_alone() -> None:
    # One test's stream may still be ending in the server's thread when the next test
    # resets the shared server; its end must mark that test's events, not the next
    # one's (a late "finished" made test_sources_sdk's close tests fail under load).
    with LLMServer() as server:
        server.pieces = [f"tok{i} " for i in range(3)]
        conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
        body = json.dumps({"model": "m", "messages": [], "stream": True})
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        first = response.readline()
        assert first  # the stream began: its handler holds the state of the "first test"
        old_finished = server.finished
        server.reset()  # the next test begins
        rest = response.read()  # the first stream runs to its end
        conn.close()
        assert b"[DONE]" in rest
        with server._conn_lock:  # noqa: SLF001 - wait until its handler is over
            assert server._conn_lock.wait_for(lambda: not server._connections, timeout=10)  # noqa: SLF001
        assert old_finished.is_set()
        assert not server.finished.is_set(), "the earlier request marked the new state finished"
        assert server.sent_before_disconnect is None and not server.disconnected.is_set()
