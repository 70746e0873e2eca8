"""Review findings: the engine's lookahead / parking."""
from __future__ import annotations

import threading
from typing import Any, List

import pytest

from helixstream._engine.stream import run_stages, set_lookahead

from .conftest import wait_for


class _WatchedLock:
    """The core's lock, telling ``contended`` when a thread has to wait for it."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.Lock()
        self._contended = contended

    def __enter__(self) -> bool:
        if not self._lock.acquire(blocking=False):
            self._contended.set()
            self._lock.acquire()
        return True

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()


@pytest.mark.timeout(30)
def test_a_close_while_an_unparked_pump_is_being_started_does_not_raise(monkeypatch) -> None:
    # set_lookahead(None) makes the new pump the core's pump under the lock and
    # started it only after the lock was let go: a close() in that window joined a
    # thread not started yet (RuntimeError out of close(), so out of a registry's
    # cancel() or close(), or its grace thread)
    stream = run_stages((f"{i}," for i in range(100)), [], queue_size=8)  # a generator: read by a pump
    set_lookahead(stream, 2)
    assert stream.next_within(5) is not None
    core = stream._core
    assert wait_for(lambda: core.parked)
    gate = threading.Event()
    starting = threading.Event()
    core._lock = _WatchedLock(gate)
    real_start = threading.Thread.start
    real_join = threading.Thread.join

    def slow_start(self: threading.Thread) -> None:
        if self.name.endswith("-source"):
            starting.set()
            gate.wait(10)
        real_start(self)

    def join(self: threading.Thread, timeout: Any = None) -> None:
        try:
            real_join(self, timeout)
        finally:
            if self.name.endswith("-source"):
                gate.set()

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    monkeypatch.setattr(threading.Thread, "join", join)
    errors: List[BaseException] = []
    unpark = threading.Thread(target=set_lookahead, args=(stream, None))
    real_start(unpark)
    try:
        assert starting.wait(10)
        try:
            stream.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    finally:
        gate.set()
        real_join(unpark, 10)
    assert not errors, errors
