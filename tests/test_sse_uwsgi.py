"""uWSGI: a client that hangs up while the model is silent is noticed at the first
keep-alive tick, through a duplicate of ``uwsgi.connection_fd()`` (issue 11).

After a normal close the server's first write still succeeds, so without the socket
the first keep-alive would be written and only the second would fail.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from .redis_server import free_port
from .wsgi_apps import wait_until_serving

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("uwsgi") is None, reason="uWSGI is not installed (pip install uwsgi)"
)


@pytest.fixture
def uwsgi_server(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    out = tmp_path / "closed"
    out.mkdir()
    env = dict(os.environ, HS_TEST_DIR=str(out), PYTHONPATH=str(ROOT))
    with open(tmp_path / "uwsgi.log", "wb") as log:
        proc = subprocess.Popen(
            ["uwsgi", "--http-socket", f"127.0.0.1:{port}", "--module", "tests.wsgi_apps.app:app",
             "--chdir", str(ROOT), "--threads", "4", "--master", "--processes", "1",
             "--die-on-term", "--enable-threads"],
            env=env, stdout=log, stderr=log,
        )
    try:
        wait_until_serving(proc, port, tmp_path / "uwsgi.log", "uwsgi")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.timeout(60)
def test_a_hang_up_during_silence_is_noticed_at_the_first_keepalive_tick(
    uwsgi_server: int, tmp_path: Path
) -> None:
    with socket.create_connection(("127.0.0.1", uwsgi_server), timeout=10) as s:
        s.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"data: first" not in got:
            data = s.recv(4096)
            assert data
            got += data
    # a normal close (FIN) while the model is silent
    marker = tmp_path / "closed" / "silent-0"
    deadline = time.monotonic() + 20
    # written by the server process when the stream ends (a process we poll)
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the stream did not end after the hang-up"
        time.sleep(0.05)
    assert marker.read_text() == "0"  # ended at the first tick: no keep-alive was written
