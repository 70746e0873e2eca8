"""A gevent WSGI server (monkey-patched) serving ``sse_stream``, for tests/test_sse_gevent.py.

Run as ``python tests/gevent_server.py``: it patches the standard library first (as
``gunicorn -k gevent`` does), serves on a free port of 127.0.0.1 and prints the port on
its first line of output. helixstream is used as it is: its threads become greenlets.

- ``/stream?n=N&gap=S&together=K&registry=0|1``: an event stream of the tokens
  ``tok1 `` .. ``tokN `` (a token every ``S`` seconds; ``n=0``: without end). Its source
  yields nothing until ``K`` streams are open at once (so a server that could not serve
  them concurrently would never start them: the test's timeout fails it).
- ``/stats``: JSON: sources opened and closed, greenlet "threads" named ``helixstream-*``
  still alive, the most streams open at once.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402  (after the patching, as a gevent app does)
import sys  # noqa: E402
import threading  # noqa: E402
from typing import Any, Dict, Iterator, List  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

import helixstream as hs  # noqa: E402

_lock = threading.Lock()
_state: Dict[str, Any] = {"opened": 0, "closed": 0, "open_now": 0, "most_open": 0}
_together: Dict[int, threading.Event] = {}
_replay = hs.SSEReplay(grace=0)


class PacedSource:
    """A model stand-in: ``n`` tokens (0: without end), one every ``gap`` seconds, once
    ``together`` streams are open. Not a generator: ``close()`` from another greenlet
    ends a wait at once, like closing an HTTP response."""

    def __init__(self, n: int, gap: float, together: int) -> None:
        self.n = n
        self.gap = gap
        self.closed = threading.Event()
        self.sent = 0
        with _lock:
            _state["opened"] += 1
            _state["open_now"] += 1
            _state["most_open"] = max(_state["most_open"], _state["open_now"])
            self.go = _together.setdefault(together, threading.Event())
            if _state["open_now"] >= together:
                self.go.set()

    def __iter__(self) -> "PacedSource":
        return self

    def __next__(self) -> str:
        if not self.go.wait(30) or self.closed.is_set():
            raise StopIteration
        if self.n and self.sent >= self.n:
            raise StopIteration
        if self.closed.wait(self.gap):
            raise StopIteration
        self.sent += 1
        return f"tok{self.sent} "

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            with _lock:
                _state["closed"] += 1
                _state["open_now"] -= 1


def _helix_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("helixstream-")]


def app(environ: Dict[str, Any], start_response: Any) -> Iterator[bytes]:
    if environ["PATH_INFO"] == "/stats":
        with _lock:
            body = json.dumps({**_state, "helix_threads": _helix_threads()}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return iter([body])
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    source = PacedSource(int(query.get("n", "10")), float(query.get("gap", "0.01")),
                         int(query.get("together", "1")))
    body = hs.sse_stream(
        source,
        keepalive=0.5,
        replay=_replay if query.get("registry") == "1" else None,
        environ=environ,
    )
    start_response(body.status_line, body.headers)
    return body


def main() -> None:
    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
    sys.exit(0)
