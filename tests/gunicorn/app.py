"""A WSGI app for the tests that run a real gunicorn (see tests/test_sse_gunicorn.py).

Each ``/stream`` request streams words until stopped; when its source is closed it
writes a file ``closed-<n>`` into ``$HS_TEST_DIR``, so the test (another process) can
count the sources that were closed.
"""
from __future__ import annotations

import itertools
import os
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


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
    if environ["PATH_INFO"] == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    n = next(_numbers)
    body = hs.sse_stream(lambda: _words(n), replay=replay, keepalive=0.5, environ=environ)
    start_response(body.status_line, body.headers)
    return body
