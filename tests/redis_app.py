"""A WSGI app for the multi-process tests: ``gunicorn -w 2 -k gthread tests.redis_app:app``.

Environment: ``HELIX_REDIS_URL`` (the Redis of the test), ``HELIX_MARKS`` (a directory:
each generation writes ``started-<n>`` when its source is first read and ``closed-<n>``
when it is closed, so the test counts generations across the workers).

- ``GET /stream?n=40&interval=0.02`` starts a stream of ``tok1 `` ... ``tok<n> ``; with
  a ``Last-Event-ID`` header it resumes instead (the factory is not called).
- ``GET /pid``: the worker's pid (a client keeps its connection to reach one worker).
  Each worker makes its registry on its first request.
- ``POST /cancel?id=<stream id>`` cancels a stream, in whichever worker owns it.

Every response carries ``X-Worker: <pid>``. Each worker makes its registry on its first
request (after gunicorn forked it) and closes it when it exits. The mark files hold the
``time.time()`` of what they mark.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Any, Callable, Dict, Optional
from urllib.parse import parse_qs

import helixstream as hs

_lock = threading.Lock()
_replay: Optional[Any] = None
_count = 0


def _registry() -> Any:
    global _replay
    with _lock:
        if _replay is None:
            _replay = hs.RedisReplay(
                os.environ["HELIX_REDIS_URL"], grace=float(os.environ.get("HELIX_GRACE", "10")),
                heartbeat=0.5,
            )
            atexit.register(_replay.close)
        return _replay


class Source:
    """A paced stand-in for an LLM response that records its start and its close."""

    def __init__(self, n: int, interval: float) -> None:
        global _count
        with _lock:
            _count += 1
            self.name = f"{os.getpid()}-{_count}"
        self.n = n
        self.interval = interval
        self.sent = 0
        self.closed = threading.Event()
        self._marks = os.environ["HELIX_MARKS"]

    def _mark(self, what: str) -> None:
        with open(os.path.join(self._marks, f"{what}-{self.name}"), "w") as f:
            f.write(str(time.time()))

    def __iter__(self) -> "Source":
        return self

    def __next__(self) -> str:
        if self.sent == 0:
            self._mark("started")
        if self.sent >= self.n or self.closed.wait(self.interval):
            raise StopIteration
        self.sent += 1
        return f"tok{self.sent} "

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._mark("closed")


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
    worker = [("X-Worker", str(os.getpid()))]
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ.get("PATH_INFO", "")
    if path == "/pid":
        _registry()  # made on the worker's first request, as a real app would
        start_response("200 OK", [("Content-Type", "text/plain"), *worker])
        return [str(os.getpid()).encode()]
    if path == "/cancel" and environ.get("REQUEST_METHOD") == "POST":
        stopped = _registry().cancel(query.get("id", ""))
        start_response("200 OK", [("Content-Type", "text/plain"), *worker])
        return [b"true" if stopped else b"false"]
    if path == "/stream":
        n, interval = int(query.get("n", "40")), float(query.get("interval", "0.02"))
        body = hs.sse_stream(
            lambda: Source(n, interval),
            replay=_registry(),
            last_event_id=environ.get("HTTP_LAST_EVENT_ID"),
            keepalive=1.0,
            environ=environ,
        )
        start_response(body.status_line, [*body.headers, *worker])
        return body
    start_response("404 Not Found", [("Content-Type", "text/plain"), *worker])
    return [b"not found"]

