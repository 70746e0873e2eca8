"""A WSGI app for the tests that run a real server in a process of its own (gunicorn,
uWSGI: tests/test_sse_gunicorn.py, tests/test_sse_uwsgi.py).

Each ``/stream`` request streams words until stopped; when its source is closed it
writes a file ``closed-<n>`` into ``$HS_TEST_DIR``, so the test (another process) can
count the sources that were closed. ``/silent`` sends one event and then nothing (a
model thinking), with keep-alives every 2 s; when it ends it writes ``silent-<n>``
holding how many keep-alives it yielded.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, Callable, Dict, Iterator

import helixstream as hs

replay = hs.SSEReplay(grace=30)
_numbers = itertools.count()


def _words(n: int) -> Iterator[str]:
    try:
        for i in itertools.count():
            yield f"w{i} "
            time.sleep(0.05)
    finally:
        with open(os.path.join(os.environ["HS_TEST_DIR"], f"closed-{n}"), "w") as f:
            f.write("closed")


class _Silent:
    """One word, then silence until closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.said = False

    def __iter__(self) -> "_Silent":
        return self

    def __next__(self) -> str:
        if not self.said:
            self.said = True
            return "first"
        self.closed.wait()
        raise StopIteration

    def close(self) -> None:
        self.closed.set()


def _silent(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
    n = next(_numbers)
    body = hs.sse_stream(_Silent(), keepalive=2.0, environ=environ)
    start_response(body.status_line, body.headers)

    def counted() -> Iterator[bytes]:
        keepalives = 0
        try:
            for piece in body:
                keepalives += piece.startswith(b": keep-alive")
                yield piece
        finally:
            body.close()
            with open(os.path.join(os.environ["HS_TEST_DIR"], f"silent-{n}"), "w") as f:
                f.write(str(keepalives))

    return counted()


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
    if environ["PATH_INFO"] == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if environ["PATH_INFO"] == "/silent":
        return _silent(environ, start_response)
    n = next(_numbers)
    body = hs.sse_stream(lambda: _words(n), replay=replay, keepalive=0.5, environ=environ)
    start_response(body.status_line, body.headers)
    return body
