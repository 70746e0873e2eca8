"""A real gunicorn (gthread) stopped with SIGTERM while clients are streaming (issue 11).

The recipe of docs/sse.md (``replay.close_on(shutdown)``, with ``shutdown.set()`` in
the worker's SIGTERM handler): every client gets an ``error`` event ``shutdown``
without an id, every source is closed, and the server exits long before its
``graceful_timeout``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from .redis_server import free_port
from .test_sse_encoding import Dispatched, browser_events
from .wsgi_apps import wait_until_serving

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("gunicorn") is None and not shutil.which(os.path.join(os.path.dirname(sys.executable), "gunicorn")),
    reason="gunicorn is not installed (pip install gunicorn; the test extra has it)",
)


def start_gunicorn(conf: str, tmp: Path, graceful: float) -> Tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, HS_TEST_DIR=str(tmp / "closed"), PYTHONPATH=str(ROOT))
    (tmp / "closed").mkdir(exist_ok=True)
    log = tmp / "gunicorn.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "8", "-w", "1",
             "-b", f"127.0.0.1:{port}", "--graceful-timeout", str(graceful),
             "-c", str(ROOT / "tests" / "wsgi_apps" / conf), "tests.wsgi_apps.app:app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )
    wait_until_serving(proc, port, log, "gunicorn")
    return proc, port


class Client:
    """An HTTP/1.0 event-stream client on a raw socket (the body ends at EOF)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(b"GET /stream HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        self.raw = b""

    def body(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.raw else b""

    def read_events(self, n: int) -> List[Dispatched]:
        while len(browser_events(self.body())) < n:
            data = self.sock.recv(65536)
            assert data, "the server closed the stream early"
            self.raw += data
        return browser_events(self.body())

    def read_to_end(self) -> bytes:
        while True:
            data = self.sock.recv(65536)
            if not data:
                self.sock.close()
                return self.body()
            self.raw += data


@pytest.fixture
def clients_on(tmp_path: Path) -> Iterator[object]:
    procs: List[subprocess.Popen] = []

    def start(conf: str, graceful: float) -> Tuple[subprocess.Popen, List[Client]]:
        proc, port = start_gunicorn(conf, tmp_path, graceful)
        procs.append(proc)
        clients = [Client(port) for _ in range(3)]
        for c in clients:
            c.read_events(2)
        return proc, clients

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.timeout(60)
def test_sigterm_sends_every_client_a_shutdown_event_and_closes_every_source(
    clients_on, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    proc, clients = clients_on("conf_close_on.py", graceful=30)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    for client in clients:
        raw = client.read_to_end()
        events = browser_events(raw)
        assert events[-1].type == "error", raw[-300:]
        assert json.loads(events[-1].data)["code"] == "shutdown"
        last_block = raw.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert b"id:" not in last_block  # the browser keeps its last event id
        words = [e.data for e in events if e.type == "message"]
        assert words == [f"w{i} " for i in range(len(words))]  # nothing lost or reordered
    assert proc.wait(20) == 0
    took = time.monotonic() - started
    assert took < 15, f"the server took {took:.1f} s to stop (graceful_timeout 30)"
    assert sorted(p.name for p in (tmp_path / "closed").iterdir()) == ["closed-0", "closed-1", "closed-2"]
