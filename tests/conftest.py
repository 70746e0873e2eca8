"""Shared fixtures: every test must leave no helixstream worker thread behind."""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterator, List

import pytest


#: Where a stream's source is read: by the reader itself, by a pump thread that reads
#: ahead, or by a pump because a stage has a timer.
PLACEMENTS = {
    "inline": {},
    "prefetch": {"prefetch": True},
    "timed": {"max_delay": 3600},
}


@pytest.fixture(params=list(PLACEMENTS))
def placement(request: pytest.FixtureRequest) -> str:
    """Each placement in turn (tests that take ``placement`` run three times)."""
    return str(request.param)


def helix_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("helixstream-")]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Wait until ``condition()`` holds, by joining the other threads with short timeouts.

    For observing threads end; it never lets time pass for its own sake: when no other
    thread is left, nothing can change and it answers at once.
    """
    deadline = time.monotonic() + timeout
    me = threading.current_thread()
    while not condition():
        others = [t for t in threading.enumerate() if t is not me and t.is_alive()]
        if not others or time.monotonic() > deadline:
            return condition()
        for t in others:
            t.join(0.01)
    return True


@pytest.fixture(autouse=True)
def no_leaked_stream_threads() -> Iterator[None]:
    """Fail a test that leaves a helixstream worker thread running (after 5 s)."""
    before = set(helix_threads())
    yield
    leaked = [t for t in helix_threads() if t not in before]
    for t in leaked:
        t.join(5.0)
    alive = [t.name for t in leaked if t.is_alive()]
    assert not alive, f"stream threads still running after the test: {alive}"


@pytest.fixture
def thread_baseline() -> Iterator[Callable[[], None]]:
    """Returns a check that ``threading.active_count()`` is back to its value at the start."""
    base = threading.active_count()

    def check() -> None:
        assert wait_for(lambda: threading.active_count() <= base), (
            f"{threading.active_count() - base} threads above baseline: "
            f"{[t.name for t in threading.enumerate()]}"
        )

    yield check
    check()
