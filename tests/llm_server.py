"""A small LLM streaming server for the tests, on 127.0.0.1, written with the stdlib.

It speaks enough of three wire formats for the real SDKs to talk to it:

- ``POST /v1/chat/completions`` (OpenAI chat completions; also what Ollama, vLLM and
  llama.cpp serve): ``data: {chunk}`` events, then ``data: [DONE]``. With
  ``stream_options.include_usage`` the last chunk has empty ``choices`` and the usage.
- ``POST /v1/responses`` (OpenAI Responses): ``response.output_text.delta`` events and
  a ``response.completed`` event with the usage.
- ``POST /v1/messages`` (Anthropic Messages): ``message_start``, ``content_block_*``,
  ``ping``, ``message_delta`` (with ``usage.output_tokens``) and ``message_stop``.

What it sends is set on the server (:attr:`LLMServer.pieces`, ``delay``, ``usage``,
``newline``, ...), so a test decides the exact text and token counts. The body is sent
with chunked transfer encoding, one HTTP chunk per event, with ``delay`` seconds
between events (a wait on the server's stop event, so stopping is immediate).

A write that fails because the client went away sets :attr:`LLMServer.disconnected`
and records how many events had been sent (:attr:`LLMServer.sent_before_disconnect`).
"""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

__all__ = ["LLMServer"]

DEFAULT_PIECES = ["Hel", "lo", ", wor", "ld", ". How", " are", " you", "? Fine", ", thanks", "."]


class LLMServer:
    """An OpenAI/Anthropic-compatible streaming server for tests (use as a context manager)."""

    def __init__(self) -> None:
        self.reset()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()  # readable once stopping
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = False  # server_close() joins the handler threads
        self._httpd.llm = self  # type: ignore[attr-defined]
        self._connections: Dict[socket.socket, str] = {}  # open connections -> last request path
        self._conn_lock = threading.Condition()
        self.lingering: List[str] = []  # paths of the connections stop() had to end
        self._thread: Optional[threading.Thread] = None

    # --- life cycle ------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LLMServer":
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-server"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        self._httpd.shutdown()
        with self._conn_lock:  # handlers of clients that just left may still be ending
            self._conn_lock.wait_for(lambda: not self._connections, timeout=1.0)
            lingering = dict(self._connections)
        for conn in lingering:  # a client that keeps a connection open: end it
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.lingering = sorted(lingering.values())
        self._httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> "LLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the defaults (between tests sharing one server)."""
        self.pieces: List[str] = list(DEFAULT_PIECES)
        self.delay = 0.0  # seconds between events
        self.first_delay = 0.0  # seconds before the first event
        self.stall_after: Optional[int] = None  # after this many events, go silent
        self.stall = 60.0  # for this many seconds (a model "thinking")
        self.usage: Tuple[int, int] = (11, 42)  # (prompt tokens, completion tokens)
        self.newline = "\n"  # the line ending of the event stream
        self.comments = False  # send ": keep-alive" comments between events
        self.error: Optional[Dict[str, Any]] = None  # sent as {"error": ...} after the pieces
        self.raw_body: Optional[List[bytes]] = None  # when set: send exactly these chunks
        self.status = 200
        self.requests: List[Dict[str, Any]] = []  # the JSON bodies received
        self.disconnected = threading.Event()  # a write failed: the client went away
        self.finished = threading.Event()  # a stream was sent to its end
        self.sent_before_disconnect: Optional[int] = None
        self.disconnect_time: Optional[float] = None  # time.monotonic() of the failed write

    # --- the event streams ------------------------------------------------------------
    def event(self, data: str, event: Optional[str] = None) -> bytes:
        nl = self.newline
        lines = []
        if event is not None:
            lines.append(f"event: {event}")
        lines.extend(f"data: {line}" for line in data.split("\n"))
        return (nl.join(lines) + nl + nl).encode("utf-8")

    def chat_events(self, body: Dict[str, Any]) -> Iterator[bytes]:
        model = body.get("model", "test-model")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta: Dict[str, Any], finish: Optional[str] = None, **extra: Any) -> bytes:
            payload = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
            if include_usage:
                payload["usage"] = None
            payload.update(extra)
            return self.event(json.dumps(payload, ensure_ascii=False))

        yield chunk({"role": "assistant", "content": ""})
        for piece in self.pieces:
            yield chunk({"content": piece})
        if self.error is not None:
            yield self.event(json.dumps({"error": self.error}))
            return
        yield chunk({}, "stop")
        if include_usage:
            prompt, completion = self.usage
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            yield self.event(json.dumps(dict(base, choices=[], usage=usage)))
        yield self.event("[DONE]")

    def responses_events(self, body: Dict[str, Any]) -> Iterator[bytes]:
        model = body.get("model", "test-model")
        prompt, completion = self.usage
        response: Dict[str, Any] = {
            "id": "resp_test", "object": "response", "created_at": int(time.time()), "model": model,
            "status": "in_progress", "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [],
        }
        seq = iter(range(10**6))

        def ev(kind: str, **fields: Any) -> bytes:
            return self.event(json.dumps(dict(type=kind, sequence_number=next(seq), **fields)), event=kind)

        yield ev("response.created", response=response)
        item = {"id": "msg_test", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        yield ev("response.output_item.added", output_index=0, item=item)
        for piece in self.pieces:
            yield ev(
                "response.output_text.delta", item_id="msg_test", output_index=0, content_index=0,
                delta=piece, logprobs=[],
            )
        text = "".join(self.pieces)
        done = dict(
            response, status="completed",
            output=[dict(item, status="completed", content=[{"type": "output_text", "text": text, "annotations": []}])],
            usage={
                "input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion,
                "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0},
            },
        )
        yield ev("response.completed", response=done)

    def anthropic_events(self, body: Dict[str, Any]) -> Iterator[bytes]:
        model = body.get("model", "test-model")
        prompt, completion = self.usage

        def ev(kind: str, **fields: Any) -> bytes:
            return self.event(json.dumps(dict(type=kind, **fields)), event=kind)

        yield ev("message_start", message={
            "id": "msg_test", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": 1},
        })
        yield ev("content_block_start", index=0, content_block={"type": "text", "text": ""})
        yield ev("ping")
        for piece in self.pieces:
            yield ev("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        if self.error is not None:
            yield ev("error", error=self.error)
            return
        yield ev("content_block_stop", index=0)
        yield ev("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
                 usage={"output_tokens": completion})
        yield ev("message_stop")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llm-test-server"

    def setup(self) -> None:
        super().setup()
        llm: LLMServer = self.server.llm  # type: ignore[attr-defined]
        with llm._conn_lock:
            llm._connections[self.connection] = "(no request yet)"

    def finish(self) -> None:
        llm: LLMServer = self.server.llm  # type: ignore[attr-defined]
        with llm._conn_lock:
            llm._connections.pop(self.connection, None)
            llm._conn_lock.notify_all()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        llm: LLMServer = self.server.llm  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        llm.requests.append(body)
        with llm._conn_lock:
            llm._connections[self.connection] = self.path
        # this request's outcome belongs to the test that made it: a reset() (the next
        # test) while it is still ending must not see it finish or fail
        finished, disconnected = llm.finished, llm.disconnected
        if self.path.endswith("/chat/completions"):
            events = llm.chat_events(body)
        elif self.path.endswith("/responses"):
            events = llm.responses_events(body)
        elif self.path.endswith("/messages"):
            events = llm.anthropic_events(body)
        else:
            self.close_connection = True
            self.send_error(404)
            return
        self.close_connection = True  # one request per connection, as the tests expect
        if llm.status != 200:
            data = json.dumps({"error": {"message": "test failure", "type": "server_error"}}).encode()
            self.send_response(llm.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            return
        if llm.raw_body is not None:
            events = iter(llm.raw_body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        sent = 0
        try:
            self.wfile.flush()
            if self._pause(llm.first_delay):
                return
            for i, data in enumerate(events):
                if i and self._pause(llm.stall if i == llm.stall_after else llm.delay):
                    return
                if llm.comments:
                    data = b": keep-alive" + llm.newline.encode() + data
                self._chunk(data)
                sent += 1
            self._chunk(b"")
            finished.set()
        except OSError:  # BrokenPipeError, ConnectionResetError: the client went away
            if disconnected is llm.disconnected:  # not reset since: record it
                llm.sent_before_disconnect = sent
                llm.disconnect_time = time.monotonic()
            disconnected.set()

    def _pause(self, seconds: float) -> bool:
        """Wait between events, watching the connection; True when the server stops.

        Like an asynchronous server, it notices at once when the client closes the
        connection (the socket turns readable with nothing to read), and then raises
        ``ConnectionResetError``.
        """
        llm: LLMServer = self.server.llm  # type: ignore[attr-defined]
        deadline = time.monotonic() + seconds
        while not llm._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.connection, llm._wake_r], [], [], left)
            if self.connection in ready and not llm._stop.is_set():
                try:
                    data = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    raise ConnectionResetError("the client closed the connection")
                return llm._stop.wait(max(0.0, deadline - time.monotonic()))  # unexpected bytes
        return True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
