"""Streams whose client left (issue 11): how far their source runs during ``grace``
(``SSEReplay(detached_lookahead=)``), and what threads they hold.

A "model" here is a generator that counts what it was asked to generate; after the
first three tokens it waits on a gate, so the test decides when it may run freely.
"""
from __future__ import annotations

import itertools
import json
import os
import threading
import time
from typing import Iterator, List

import pytest

from helixstream import ConfigError
from helixstream.sse import SSEBody, SSEReplay, sse_stream

from .conftest import wait_for
from .test_sse_encoding import Dispatched, browser_events


class GatedModel:
    """Counts the tokens generated; tokens after the first ``free`` wait for ``gate``."""

    def __init__(self, free: int = 3) -> None:
        self.produced: List[int] = []
        self.gate = threading.Event()
        self.closed = threading.Event()
        self.free = free

    def __iter__(self) -> Iterator[str]:
        try:
            for i in itertools.count():
                self.produced.append(i)
                if i >= self.free:
                    assert self.gate.wait(10), "the test never opened the gate"
                yield f"w{i} "
        finally:
            self.closed.set()


def next_events(body: SSEBody, n: int) -> List[Dispatched]:
    events: List[Dispatched] = []
    while len(events) < n:
        piece = next(body)
        if not piece.startswith(b":"):
            events.extend(browser_events(piece))
    return events


def grace_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("helixstream-sse-grace")]


@pytest.mark.timeout(30)
def test_a_departed_client_costs_at_most_the_lookahead_in_generation() -> None:
    model = GatedModel()
    replay = SSEReplay(grace=0.5, detached_lookahead=16)
    body = sse_stream(model, replay=replay)
    got = next_events(body, 3)
    assert [e.data for e in got] == ["w0 ", "w1 ", "w2 "]
    body.close()  # the client left; the stream waits for it during grace
    model.gate.set()  # from now on the model generates as fast as it is asked to
    assert wait_for(model.closed.is_set, timeout=10)  # grace ended: source closed
    # 3 tokens were sent; at most 16 more were generated for nobody
    assert len(model.produced) <= 3 + 16
    replay.close()


@pytest.mark.timeout(30)
def test_without_a_lookahead_a_detached_stream_keeps_generating() -> None:
    model = GatedModel()
    replay = SSEReplay(grace=60, detached_lookahead=None)
    body = sse_stream(model, replay=replay)
    next_events(body, 3)
    body.close()
    model.gate.set()
    assert wait_for(lambda: len(model.produced) >= 200, timeout=10)  # the queue's 256
    replay.close()
    assert model.closed.is_set()


@pytest.mark.timeout(30)
def test_a_resumed_stream_runs_freely_again_and_loses_nothing() -> None:
    model = GatedModel()
    replay = SSEReplay(grace=60, detached_lookahead=4)
    body = sse_stream(model, replay=replay)
    first = next_events(body, 3)
    body.close()
    model.gate.set()
    assert wait_for(lambda: len(model.produced) >= 3 + 4, timeout=10)
    resumed = sse_stream(lambda: [], last_event_id=first[-1].last_event_id, replay=replay)
    try:
        rest = next_events(resumed, 300)  # past the lookahead and past the queue's bound
    finally:
        resumed.close()
    assert [e.data for e in rest] == [f"w{i} " for i in range(3, 303)]
    assert len(model.produced) > 303
    replay.close()
    assert model.closed.is_set()


@pytest.mark.timeout(30)
def test_detached_streams_share_one_grace_thread_which_ends_with_them() -> None:
    baseline = threading.active_count()
    models = [GatedModel(free=1) for _ in range(20)]
    replay = SSEReplay(grace=60)
    bodies = [sse_stream(m, replay=replay) for m in models]
    for body in bodies:
        next_events(body, 1)
        body.close()
    assert len(grace_threads()) == 1
    for m in models:
        m.gate.set()  # the models run on, up to the lookahead
    for body in bodies:
        assert replay.cancel(body.stream_id) is True  # type: ignore[arg-type]
    assert wait_for(lambda: not grace_threads())
    assert all(m.closed.is_set() for m in models)
    assert wait_for(lambda: threading.active_count() <= baseline)
    replay.close()


@pytest.mark.timeout(30)
def test_a_resume_stops_the_grace_period_and_the_thread_ends() -> None:
    model = GatedModel(free=10)
    replay = SSEReplay(grace=60)
    body = sse_stream(model, replay=replay)
    first = next_events(body, 2)
    body.close()
    assert len(grace_threads()) == 1
    resumed = sse_stream(lambda: [], last_event_id=first[-1].last_event_id, replay=replay)
    assert wait_for(lambda: not grace_threads())
    assert [e.data for e in next_events(resumed, 2)] == ["w2 ", "w3 "]
    resumed.close()  # leaves again: a new grace period
    assert len(grace_threads()) == 1
    model.gate.set()
    replay.close()
    assert wait_for(lambda: not grace_threads())
    assert model.closed.is_set()


@pytest.mark.timeout(30)
def test_the_grace_period_still_ends_with_a_cancelled_event() -> None:
    model = GatedModel(free=1)
    replay = SSEReplay(grace=0.05)
    body = sse_stream(model, replay=replay)
    first = next_events(body, 1)
    body.close()
    model.gate.set()
    assert wait_for(model.closed.is_set)
    again = sse_stream(lambda: [], last_event_id=first[-1].last_event_id, replay=replay)
    try:
        events = browser_events(b"".join(again))
    finally:
        again.close()
    assert events[-1].type == "error"
    assert json.loads(events[-1].data)["code"] == "cancelled"
    replay.close()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "16", True])
def test_a_bad_lookahead_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="detached_lookahead"):
        SSEReplay(detached_lookahead=bad)  # type: ignore[arg-type]


# --- close_on: a shutdown signal ------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["bound set taken early", "Event.set(ev)", "StopSignal"])
def test_close_on_closes_the_registry_when_the_event_is_set_any_way(how: str) -> None:
    import helixstream as hs

    baseline = threading.active_count()
    event: threading.Event = hs.StopSignal() if how == "StopSignal" else threading.Event()
    early_set = event.set
    replay = SSEReplay(grace=60)
    model = GatedModel()
    model.gate.set()  # an endless, fast model
    body = sse_stream(model, replay=replay)
    next_events(body, 1)
    replay.close_on(event)
    if how == "bound set taken early":
        early_set()
    elif how == "Event.set(ev)":
        threading.Event.set(event)
    else:
        event.set()
    rest = browser_events(b"".join(body))  # ends: the registry closed
    body.close()
    assert json.loads(rest[-1].data)["code"] == "shutdown"
    # closed by the registry's shutdown thread, which may still be at it when the
    # reader has taken its last event
    assert wait_for(model.closed.is_set)
    with pytest.raises(RuntimeError, match="closed"):
        sse_stream(["x"], replay=replay)
    assert wait_for(lambda: threading.active_count() <= baseline)


@pytest.mark.timeout(30)
def test_close_on_an_event_already_set_closes_at_once_and_close_lets_the_janitor_go() -> None:
    baseline = threading.active_count()
    event = threading.Event()
    event.set()
    replay = SSEReplay()
    replay.close_on(event)
    assert wait_for(lambda: _closed(replay))
    assert wait_for(lambda: threading.active_count() <= baseline)
    listening = SSEReplay()
    listening.close_on(threading.Event())
    assert any(t.name == "helixstream-janitor" for t in threading.enumerate())
    listening.close()
    assert wait_for(lambda: threading.active_count() <= baseline)


def _closed(replay: SSEReplay) -> bool:
    try:
        sse_stream(["x"], replay=replay).close()
    except RuntimeError:
        return True
    return False


def test_close_on_needs_an_event() -> None:
    with pytest.raises(TypeError, match="threading.Event"):
        SSEReplay().close_on("soon")  # type: ignore[arg-type]


# --- a detached stream at its lookahead holds no thread -------------------------------------
def helixstream_threads() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("helixstream-"))


@pytest.mark.timeout(30)
def test_detached_streams_at_their_lookahead_hold_no_thread_but_the_grace_timer() -> None:
    models = [GatedModel(free=1) for _ in range(20)]
    replay = SSEReplay(grace=60, detached_lookahead=4)
    bodies = [sse_stream(m, replay=replay) for m in models]
    for body in bodies:
        next_events(body, 1)
    assert len([n for n in helixstream_threads() if n.endswith("-source")]) == 20
    for body, model in zip(bodies, models):
        body.close()
        model.gate.set()
    # each pump reads up to the lookahead, then ends: the source stays open, unread
    assert wait_for(lambda: not [n for n in helixstream_threads() if n.endswith("-source")])
    assert all(len(m.produced) <= 1 + 4 for m in models)
    assert not any(m.closed.is_set() for m in models)
    # what is left: the registry's grace timer and the process's janitor, for all 20
    assert [n.rsplit("-", 1)[0] for n in helixstream_threads()] == [
        "helixstream", "helixstream-sse-grace"
    ]
    replay.close()  # closes the sources no thread was reading
    assert all(m.closed.is_set() for m in models)


@pytest.mark.timeout(30)
def test_a_stop_signal_closes_the_source_of_a_parked_stream() -> None:
    stop = threading.Event()
    model = GatedModel(free=1)
    replay = SSEReplay(grace=60, detached_lookahead=2)
    body = sse_stream(model, replay=replay, stop=stop)
    first = next_events(body, 1)
    body.close()
    model.gate.set()
    assert wait_for(lambda: not [n for n in helixstream_threads() if n.endswith("-source")])
    stop.set()
    assert wait_for(model.closed.is_set)
    resumed = sse_stream(lambda: [], last_event_id=first[0].last_event_id, replay=replay)
    try:
        events = browser_events(b"".join(resumed))
    finally:
        resumed.close()
    assert [e.data for e in events[:-1]] == ["w1 "][: len(events) - 1]
    assert json.loads(events[-1].data)["code"] == "cancelled"
    replay.close()


# --- a live reader never loses events to a small log -----------------------------------------
@pytest.mark.timeout(30)
def test_a_live_reader_gets_every_event_even_when_the_log_keeps_one() -> None:
    replay = SSEReplay(max_events=1)
    body = sse_stream(["a ", "b ", "c "], replay=replay, progress=True, estimated_tokens=3)
    try:
        events = browser_events(b"".join(body))
    finally:
        body.close()
    assert [e.type for e in events] == ["message", "progress"] * 3 + ["done"]
    assert [e.data for e in events if e.type == "message"] == ["a ", "b ", "c "]
    ids = [int(e.last_event_id.rsplit(".", 1)[1]) for e in events]
    assert ids == list(range(1, 8))
    replay.close()


@pytest.mark.timeout(30)
def test_a_second_close_returns_only_once_the_first_has_closed_every_source() -> None:
    # gunicorn's shutdown recipe closes the registry twice: close_on(SIGTERM) starts a
    # close in a thread, and worker_exit calls close() once the requests are over. The
    # second must not return (and let the process exit) while the first still waits
    # for a source to close: that source's close() never ran (seen with a real
    # gunicorn under load: 2 of 3 sources closed).
    model = GatedModel(free=1)
    replay = SSEReplay(grace=30)
    body = sse_stream(model, replay=replay, keepalive=5.0)  # a pump reads the model
    assert [e.data for e in next_events(body, 1)] == ["w0 "]
    assert wait_for(lambda: model.produced == [0, 1])  # the pump waits in the source
    first = threading.Thread(target=replay.close, name="first-close")
    first.start()  # waits for the pump, which waits for the gate
    assert wait_for(lambda: len(replay) == 0)  # the first close is under way
    opener = threading.Timer(0.3, model.gate.set)  # the source may end in 0.3 s
    opener.start()
    try:
        replay.close()
        assert model.closed.is_set(), "close() returned before the source was closed"
    finally:
        model.gate.set()
        opener.cancel()
        first.join(10)
        body.close()
    assert not first.is_alive()


@pytest.mark.timeout(30)
def test_a_close_from_inside_a_source_while_another_close_runs_does_not_hang() -> None:
    # The second close waits for the first; the first waits for the stream's reader,
    # which here is the one calling the second close, from inside the source.
    replay = SSEReplay(grace=30)
    inside, gate = threading.Event(), threading.Event()

    class Source:
        def __init__(self) -> None:
            self.n = 0

        def __iter__(self) -> "Source":
            return self

        def __next__(self) -> str:
            self.n += 1
            if self.n == 1:
                return "w0 "
            inside.set()
            assert gate.wait(10)
            replay.close()  # e.g. a source that shuts the app down on an upstream error
            raise StopIteration

    body = sse_stream(Source(), replay=replay, keepalive=None)  # read inline by the reader
    assert [e.data for e in next_events(body, 1)] == ["w0 "]
    reader = threading.Thread(target=lambda: list(body), name="reader")
    reader.start()
    assert inside.wait(10)  # the reader holds the stream, inside the source
    closer = threading.Thread(target=replay.close, name="closer")
    closer.start()
    assert wait_for(lambda: len(replay) == 0)  # the first close is under way
    gate.set()
    reader.join(10)
    closer.join(10)
    assert not reader.is_alive() and not closer.is_alive(), "the two closes wait for each other"
    body.close()


@pytest.mark.timeout(30)
def test_after_a_fork_during_a_close_the_child_can_close_its_own_copy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # (gunicorn --preload forks workers from a master that may be shutting down)
    model = GatedModel(free=1)
    replay = SSEReplay(grace=30)
    body = sse_stream(model, replay=replay, keepalive=5.0)
    assert [e.data for e in next_events(body, 1)] == ["w0 "]
    assert wait_for(lambda: model.produced == [0, 1])
    first = threading.Thread(target=replay.close, name="first-close")
    first.start()  # waits for the pump, which waits for the gate
    assert wait_for(lambda: len(replay) == 0)
    out = tmp_path / "child"
    pid = os.fork()
    if pid == 0:
        try:
            started = time.monotonic()
            replay.close()  # the parent's close is not this process's: no wait
            out.write_text(f"{time.monotonic() - started:.3f}")
        finally:
            os._exit(0)
    try:
        assert os.waitpid(pid, 0)[1] == 0
        assert float(out.read_text()) < 5.0
    finally:
        model.gate.set()
        first.join(10)
        body.close()
