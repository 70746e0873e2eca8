"""A redis-server of the benchmarks' own: a free port on 127.0.0.1, a temporary
directory, no persistence; stopped on the way out."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator, Optional, Tuple


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[Optional[Tuple[str, "subprocess.Popen[bytes]"]]]:
    """``(url, process)`` of a running redis-server, or None when it is not installed
    (the caller says so)."""
    if shutil.which("redis-server") is None:
        yield None
        return
    import redis

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(250):  # up to 5 s: answering PING
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.exceptions.ConnectionError:
                    time.sleep(0.02)
            yield url, server
        finally:
            server.terminate()
            server.wait(10)


NOT_INSTALLED = "redis-server is not installed (apt-get install redis-server)"
