"""What an open event stream with a registry keeps in memory (issue 11: RSS per
connection): measured with tracemalloc, as benchmarks/sse_memory.py does."""
from __future__ import annotations

import gc
import threading
import tracemalloc
from typing import Any, List

import helixstream as hs
from helixstream._engine import run_stages
from helixstream._simulate import SAMPLE_ANSWER, split_tokens

from .test_sse_encoding import browser_events


class Ready:
    """A model whose tokens are all due (``wait_ready`` never waits)."""

    def __init__(self, tokens: List[str]) -> None:
        self.tokens = tokens
        self.k = 0

    def __iter__(self) -> "Ready":
        return self

    def wait_ready(self, timeout: float) -> bool:
        return True

    def __next__(self) -> str:
        if self.k >= len(self.tokens):
            raise StopIteration
        self.k += 1
        return self.tokens[self.k - 1]

    def close(self) -> None:
        self.k = len(self.tokens)


def test_an_open_stream_of_200_events_costs_under_12_kb() -> None:
    base = split_tokens(SAMPLE_ANSWER)
    tokens = [base[k % len(base)] for k in range(300)]
    replay = hs.SSEReplay(grace=10.0)
    warm = hs.sse_stream(Ready(tokens), keepalive=15.0, replay=replay)
    for _ in range(6):
        next(warm)
    warm.close()
    del warm
    gc.collect()
    bodies: List[Any] = []
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        for _ in range(20):
            body = hs.sse_stream(Ready(tokens), keepalive=15.0, replay=replay)
            for _ in range(201):  # the opening comment and 200 events
                next(body)
            bodies.append(body)
        gc.collect()
        used = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(start, "filename"))
    finally:
        tracemalloc.stop()
    try:
        assert used / 20 < 12_000  # 36 KB with a tuple per event in a deque
        # and what was kept is what was sent: a resume replays the last 50 events
        body = bodies[-1]
        first = hs.sse_stream(lambda: Ready(tokens), replay=replay,
                              last_event_id=f"{body.stream_id}.150")
        body.close()
        got = browser_events(b"".join(next(first) for _ in range(2)))
        assert [e.data for e in got] == tokens[150:200]
        assert got[-1].last_event_id == f"{body.stream_id}.200"
        first.close()
    finally:
        for body in bodies:
            body.close()
        replay.close()


def test_the_internal_stop_event_is_made_only_for_stages_that_wait() -> None:
    """An Event (a Condition: ~1 KB) per stream only when a stage is given one."""
    plain = run_stages(iter(["a", "b"]), [])
    assert plain._core.stop is None
    plain.close()  # wakes nothing, fails nothing

    class Waits:
        def __init__(self) -> None:
            self.stop: Any = None

        def bind(self, stop: threading.Event) -> None:
            self.stop = stop

        def __call__(self, item: Any) -> List[Any]:
            return [item]

        def flush(self) -> List[Any]:
            return []

    stage = Waits()
    stream = run_stages(iter(["a", "b"]), [stage])
    assert isinstance(stage.stop, threading.Event) and stream._core.stop is stage.stop
    assert not stage.stop.is_set()
    stream.close()
    assert stage.stop.is_set()  # the stage's waits end at a close
