"""RedisReplay under real gunicorn with 2 worker processes sharing a real redis-server.

The kernel gives each new connection to either worker; a client that must reach the
other worker opens connections until ``GET /pid`` answers with the other pid, then
sends its request on that same (keep-alive) connection.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from .redis_server import RedisServer, free_port
from .redis_server import redis_server as _redis_server

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parent.parent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _redis_server(tmp_path)


class Gunicorn:
    def __init__(self, port: int, marks: Path) -> None:
        self.port = port
        self.marks = marks

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def pid_of(self, conn: http.client.HTTPConnection) -> int:
        conn.request("GET", "/pid")
        resp = conn.getresponse()
        return int(resp.read())

    def connection_to(self, pid: int, other: bool) -> Tuple[http.client.HTTPConnection, int]:
        """A keep-alive connection to worker ``pid`` (or, ``other``, to any other one)."""
        for _ in range(200):
            conn = self.connect()
            got = self.pid_of(conn)
            if (got != pid) == other:
                return conn, got
            conn.close()
        raise AssertionError("the kernel never gave a connection to the wanted worker")

    def marked(self, what: str) -> List[str]:
        return sorted(p.name for p in self.marks.iterdir() if p.name.startswith(what + "-"))

    def wait_marked(self, what: str, count: int, timeout: float = 10.0) -> List[str]:
        """The marks ``what`` once there are ``count`` (polling what a worker process
        writes), or those there are at ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.marked(what)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.marked(what)


@pytest.fixture
def gunicorn(server: RedisServer, tmp_path: Path) -> Iterator[Gunicorn]:
    if shutil.which("gunicorn") is None:
        pytest.skip("gunicorn is not installed")
    marks = tmp_path / "marks"
    marks.mkdir()
    port = free_port()
    env = {**os.environ, "HELIX_REDIS_URL": server.url, "HELIX_MARKS": str(marks),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "8",
         "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "--log-level", "warning",
         "tests.redis_app:app"],
        cwd=str(ROOT), env=env, stderr=subprocess.PIPE, text=True,
    )
    g = Gunicorn(port, marks)
    try:
        deadline = time.monotonic() + 30
        pids = set()
        while len(pids) < 2:  # both workers answer (polling a server we started)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "gunicorn did not start two workers"
            try:
                conn = g.connect()
                pids.add(g.pid_of(conn))
                conn.close()
            except OSError:
                time.sleep(0.05)
        yield g
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


class SSE:
    """Reads events from a streaming response, line by line."""

    def __init__(self, resp: http.client.HTTPResponse) -> None:
        self.resp = resp

    def events(self) -> Iterator[Dict[str, str]]:
        event: Dict[str, str] = {}
        while True:
            line = self.resp.readline()
            if not line:
                return
            text = line.decode("utf-8").rstrip("\n")
            if not text:
                if "data" in event:
                    yield event
                event = {}
            elif not text.startswith(":"):
                name, _, value = text.partition(": ")
                event[name] = value


def stream(conn: http.client.HTTPConnection, query: str,
           last_event_id: Optional[str] = None) -> Tuple[http.client.HTTPResponse, SSE]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    conn.request("GET", "/stream?" + query, headers=headers)
    resp = conn.getresponse()
    return resp, SSE(resp)


def test_a_resume_on_the_other_worker_gets_the_whole_text_once(gunicorn: Gunicorn) -> None:
    conn = gunicorn.connect()
    resp, sse = stream(conn, "n=40&interval=0.03")
    owner = int(resp.getheader("X-Worker"))
    first: List[Dict[str, str]] = []
    for event in sse.events():
        first.append(event)
        if len(first) == 5:
            break
    conn.close()  # the client hangs up
    other, pid = gunicorn.connection_to(owner, other=True)
    resp, sse = stream(other, "n=40&interval=0.03", last_event_id=first[-1]["id"])
    assert int(resp.getheader("X-Worker")) == pid != owner
    rest = list(sse.events())
    other.close()
    messages = [e for e in first + rest if "event" not in e]
    assert "".join(e["data"] for e in messages) == "".join(f"tok{i} " for i in range(1, 41))
    assert rest[-1]["event"] == "done"
    ids = [e["id"] for e in first + rest]
    assert len(ids) == len(set(ids))  # nothing twice
    assert len(gunicorn.marked("started")) == 1  # one generation, in its owner
    assert gunicorn.marked("started")[0].startswith(f"started-{owner}-")


def test_a_cancel_sent_to_the_other_worker_closes_the_source(gunicorn: Gunicorn) -> None:
    conn = gunicorn.connect()
    resp, sse = stream(conn, "n=10000&interval=0.05")
    owner = int(resp.getheader("X-Worker"))
    stream_id = resp.getheader("X-Stream-Id")
    events = sse.events()
    next(events)
    other, pid = gunicorn.connection_to(owner, other=True)
    sent = time.time()
    other.request("POST", f"/cancel?id={stream_id}")
    answer = other.getresponse()
    assert int(answer.getheader("X-Worker")) == pid != owner
    assert answer.read() == b"true"
    rest = list(events)
    assert json.loads(rest[-1]["data"])["code"] == "cancelled"
    # the source is closed by the owner's stream, which waits for it at most its
    # close_timeout: the mark may come a moment after the event
    closed = gunicorn.wait_marked("closed", 1)
    assert len(closed) == 1
    took = float((gunicorn.marks / closed[0]).read_text()) - sent
    # from the request to the source closed in the owner: at once, not after the 10 s
    # of grace (measured 6-7 ms on a quiet machine; later than the event beside two
    # CPU hogs)
    print(f"the source was closed {took * 1000:.0f} ms after the cancel was sent")
    assert took < 5.0, took
    conn.close()
    other.close()


def test_a_follower_on_the_other_worker_learns_that_the_owner_was_killed(
    gunicorn: Gunicorn,
) -> None:
    conn = gunicorn.connect()
    resp, sse = stream(conn, "n=10000&interval=0.05")
    owner = int(resp.getheader("X-Worker"))
    events = sse.events()
    first = next(events)
    conn.close()  # the owner goes on during grace (10 s)
    other, pid = gunicorn.connection_to(owner, other=True)
    resp, sse = stream(other, "", last_event_id=first["id"])
    assert int(resp.getheader("X-Worker")) == pid != owner
    following = sse.events()
    next(following)  # it follows the live stream
    os.kill(owner, signal.SIGKILL)
    killed = time.monotonic()
    rest = list(following)
    took = time.monotonic() - killed
    assert json.loads(rest[-1]["data"])["code"] == "producer_lost"
    assert took <= 2 * 0.5 + 0.3, took  # two heartbeats of the app's registry (0.5 s)
    other.close()
