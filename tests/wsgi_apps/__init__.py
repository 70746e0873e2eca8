"""WSGI apps and configs for the tests that run a real server in a process of its own."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def wait_until_serving(proc: subprocess.Popen, port: int, log: Path, name: str) -> None:
    """Wait until the server in ``proc`` answers ``/pid`` on ``port`` (polling a child
    process we started: nothing to wait on); kill it and raise with its log if it
    exits or takes over 20 s."""
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /pid HTTP/1.0\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1"):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise RuntimeError(f"{name} did not start: " + log.read_text()[-2000:])
        time.sleep(0.05)
