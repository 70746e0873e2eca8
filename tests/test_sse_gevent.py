"""sse_stream under gevent: a monkey-patched ``gevent.pywsgi`` server in a subprocess.

helixstream is not changed for gevent: once the standard library is patched (as
``gunicorn -k gevent`` does), its threads, locks and waits are greenlets and gevent's.
The server (tests/gevent_server.py) serves several streams at once, which must arrive
whole and in order; a client that hangs up mid-stream must make the server close the
stream's source and end its greenlets.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

try:
    import gevent  # noqa: F401
except ImportError as exc:  # missing, or a build that does not load here
    pytest.skip(
        f"gevent is not installed or does not load ({exc}): pip install gevent "
        "(it is in the test extra)",
        allow_module_level=True,
    )

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@contextlib.contextmanager
def gevent_server() -> Iterator[int]:
    """Start tests/gevent_server.py; yield its port; stop it (terminate, then kill)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "gevent_server.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the port, once it listens
        if not line.strip().isdigit():
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"the gevent server did not start: {line!r} {err.decode()[-2000:]}")
        yield int(line)
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            proc.kill()
            proc.communicate(timeout=10)


def stats(port: int) -> Dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/stats")
        return dict(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


def wait_until(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return bool(check())
        time.sleep(0.02)
    return True


def read_events(port: int, path: str) -> List[Dict[str, Optional[str]]]:
    """The events of a whole response (HTTP/1.0: no chunked framing), parsed."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        raw = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            raw += data
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head
    events = []
    for block in body.decode("utf-8").split("\n\n")[:-1]:
        event: Dict[str, Optional[str]] = {"event": None, "data": None, "id": None}
        data = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            if field == "data":
                data.append(value)
            else:
                event[field] = value
        if data:
            event["data"] = "\n".join(data)
            events.append(event)
    return events


@pytest.mark.timeout(60)
@pytest.mark.parametrize("registry", ["0", "1"])
def test_streams_served_concurrently_arrive_whole_and_in_order(registry: str) -> None:
    k, n = 4, 30
    with gevent_server() as port:
        results: Dict[int, List[Dict[str, Optional[str]]]] = {}
        errors: List[BaseException] = []

        def client(i: int) -> None:
            try:
                # no source yields a token before all k streams are open at once
                results[i] = read_events(
                    port, f"/stream?n={n}&gap=0.005&together={k}&registry={registry}"
                )
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        assert not errors, errors
        assert sorted(results) == list(range(k))
        for events in results.values():
            texts = [e["data"] for e in events if e["event"] is None]
            assert "".join(t or "" for t in texts) == "".join(f"tok{j} " for j in range(1, n + 1))
            assert events[-1]["event"] == "done"
            ids = [e["id"] for e in events]
            if registry == "1":
                numbers = [int(str(i).rsplit(".", 1)[1]) for i in ids]
                assert numbers == list(range(1, len(events) + 1))
        final = stats(port)
        assert final["most_open"] == k
        assert wait_until(lambda: not stats(port)["helix_threads"]), stats(port)
        assert stats(port)["closed"] == k


@pytest.mark.timeout(60)
@pytest.mark.parametrize("registry", ["0", "1"])
def test_a_client_hang_up_closes_the_source(registry: str) -> None:
    with gevent_server() as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        try:
            # a stream without end: only the hang-up can stop it
            sock.sendall(
                f"GET /stream?n=0&gap=0.01&registry={registry} HTTP/1.0\r\n"
                f"Host: 127.0.0.1\r\n\r\n".encode()
            )
            raw = b""
            while len(re.findall(rb"data: tok\d+ \n", raw)) < 3:
                data = sock.recv(65536)
                assert data, raw
                raw += data
            assert raw.startswith(b"HTTP/1.")
            assert re.findall(rb"data: (tok\d+ )\n", raw)[:3] == [b"tok1 ", b"tok2 ", b"tok3 "]
            during = stats(port)
            assert during["opened"] == 1 and during["closed"] == 0
            assert during["helix_threads"], "the stream's pump (a greenlet) runs"
        finally:
            sock.close()  # a normal close, mid-stream
        # the next write fails (at most a few tokens later), the server closes the body
        assert wait_until(lambda: stats(port)["closed"] == 1), stats(port)
        assert wait_until(lambda: not stats(port)["helix_threads"]), stats(port)
