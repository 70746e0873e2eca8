"""RedisReplay against a real redis-server: two registries in one process stand for two
worker processes (each has its own id, threads and connections); the owner killed with
SIGKILL is a real subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import traceback
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest

import helixstream as hs

from .conftest import helix_threads, wait_for
from .redis_server import RedisServer
from .redis_server import redis_server as _redis_server
from .sources import BlockingSource
from .test_sse_encoding import Dispatched, browser_events

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _redis_server(tmp_path)


@pytest.fixture
def pair(server: RedisServer) -> Iterator[Tuple[Any, Any]]:
    """Two registries on one Redis: worker A and worker B."""
    a = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.5)
    b = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.5)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


class Factory:
    """A chunks factory that counts the generations it starts."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.source


def events_of(data: bytes) -> List[Dispatched]:
    return browser_events(data)


def texts(events: List[Dispatched]) -> str:
    return "".join(e.data for e in events if e.type == "message")


def read_until(body: Any, count: int) -> Tuple[bytes, List[Dispatched]]:
    """Read ``body`` until ``count`` message events came; return the bytes and events."""
    got = b""
    while True:
        got += next(body)
        events = events_of(got)
        if sum(e.type == "message" for e in events) >= count:
            return got, events


def read_all(body: Any) -> List[Dispatched]:
    got = b"".join(body)
    body.close()
    return events_of(got)


def error_code(events: List[Dispatched]) -> Optional[str]:
    errors = [e for e in events if e.type == "error"]
    return json.loads(errors[-1].data)["code"] if errors else None


def test_a_resume_in_another_process_gives_the_whole_text_once(pair):
    a, b = pair
    source = BlockingSource(["one ", "two "])
    factory = Factory(source)
    body = hs.sse_stream(factory, replay=a, keepalive=5)
    _, first = read_until(body, 2)
    assert texts(first) == "one two "
    last_id = first[-1].last_event_id
    body.close()  # the client hangs up; the stream stays for grace
    assert not source.closed.is_set()
    again = hs.sse_stream(Factory(BlockingSource()), replay=b, last_event_id=last_id, keepalive=5)
    assert again.stream_id == body.stream_id
    source.feed("three ", "four ")
    source.end()
    rest = read_all(again)
    assert texts(first) + texts(rest) == "one two three four "
    assert rest[-1].type == "done" and error_code(rest) is None
    assert factory.calls == 1  # one generation
    ids = [e.last_event_id for e in first + rest]
    assert len(set(ids)) == len(ids)  # nothing twice
    assert wait_for(source.closed.is_set)


def test_a_resume_in_the_owner_process_follows_too(pair):
    a, _ = pair
    source = BlockingSource(["x ", "y "])
    body = hs.sse_stream(lambda: source, replay=a, keepalive=5)
    _, first = read_until(body, 1)
    body.close()
    again = hs.sse_stream(lambda: BlockingSource(), replay=a, last_event_id=first[-1].last_event_id)
    source.feed("z ")
    source.end()
    rest = read_all(again)
    assert texts(first) + texts(rest) == "x y z "


def test_resuming_a_finished_stream_is_204_and_an_unknown_id_an_error(pair):
    a, b = pair
    body = hs.sse_stream(["a ", "b "], replay=a)
    events = read_all(body)
    done = hs.sse_stream(lambda: [], replay=b, last_event_id=events[-1].last_event_id)
    assert done.status == 204 and list(done) == []
    middle = hs.sse_stream(lambda: [], replay=b, last_event_id=events[0].last_event_id)
    assert texts(read_all(middle)) == texts(events)[len(events[0].data):]
    key = body.stream_id
    # another key of the same length (the last character changed: a key ending in "x"
    # made "x" no change at all, 1 run in 62)
    other = key[:-1] + ("y" if key.endswith("x") else "x")
    for bad in (f"{key}.99", f"{key}." + "9" * 5000, "nope.1", f"{other}.1", f"{key}.-1"):
        resumed = read_all(hs.sse_stream(lambda: [], replay=b, last_event_id=bad))
        assert error_code(resumed) == "unknown_event_id", bad


def test_owner_binding_holds_across_processes(pair):
    a, b = pair
    source = BlockingSource(["a "])
    body = hs.sse_stream(lambda: source, replay=a, owner="alice", keepalive=5)
    _, first = read_until(body, 1)
    last_id = first[-1].last_event_id
    for other in ("bob", None):
        got = read_all(hs.sse_stream(lambda: [], replay=b, last_event_id=last_id, owner=other))
        assert error_code(got) == "unknown_event_id"
    assert b.cancel(body.stream_id, owner="bob") is False
    assert not source.closed.is_set()
    assert b.cancel(body.stream_id, owner="alice") is True
    assert source.closed.is_set()
    assert error_code(read_all(body)) == "cancelled"


def test_cancel_from_another_process_closes_the_source(pair):
    a, b = pair
    latencies = []
    for _ in range(5):
        source = BlockingSource(["a "])
        body = hs.sse_stream(source, replay=a, keepalive=5)
        read_until(body, 1)
        start = time.perf_counter()
        assert b.cancel(body.stream_id) is True
        assert source.closed.wait(5)
        latencies.append(time.perf_counter() - start)
        assert error_code(read_all(body)) == "cancelled"
        assert b.cancel(body.stream_id) is False  # ended already
    assert max(latencies) < 1.0, latencies
    assert b.cancel("nothing-of-ours") is False


def test_nobody_attached_for_grace_closes_the_source(server):
    # grace well above the lease's refresh period, so that a loaded machine's late
    # refresh is not taken for a departure
    a = hs.RedisReplay(server.url, grace=1.0, heartbeat=0.2)
    b = hs.RedisReplay(server.url, grace=1.0, heartbeat=0.2)
    try:
        # followed in another process: kept past grace
        source = BlockingSource(["a "])
        body = hs.sse_stream(lambda: source, replay=a, keepalive=5)
        _, first = read_until(body, 1)
        body.close()
        follower = hs.sse_stream(lambda: [], replay=b, last_event_id=first[-1].last_event_id,
                                 keepalive=0.1)
        start = time.monotonic()
        while time.monotonic() - start < 2.5:  # 2.5 graces, the follower attached
            assert next(follower)
        assert not source.closed.is_set()
        source.feed("b ")
        assert b"b " in read_until(follower, 1)[0]
        follower.close()  # now nobody reads it anywhere
        assert source.closed.wait(10)
        # never followed
        lonely = BlockingSource(["a "])
        body = hs.sse_stream(lambda: lonely, replay=a, keepalive=5)
        read_until(body, 1)
        body.close()
        assert lonely.closed.wait(10)
    finally:
        a.close()
        b.close()


def test_grace_zero_closes_at_once(server):
    with hs.RedisReplay(server.url, grace=0) as a:
        source = BlockingSource(["a "])
        body = hs.sse_stream(lambda: source, replay=a)
        read_until(body, 1)
        body.close()
        assert source.closed.is_set()


def test_closing_the_registry_sends_shutdown_and_followers_elsewhere_producer_lost(pair):
    a, b = pair
    source = BlockingSource(["a "])
    body = hs.sse_stream(lambda: source, replay=a, keepalive=5)
    _, first = read_until(body, 1)
    follower = hs.sse_stream(lambda: [], replay=b, last_event_id=first[-1].last_event_id,
                             keepalive=5)
    a.close()
    assert source.closed.is_set()
    rest = b"".join(body)
    body.close()
    assert error_code(events_of(rest)) == "shutdown" and b"id:" not in rest
    assert error_code(read_all(follower)) == "producer_lost"
    with pytest.raises(RuntimeError):
        hs.sse_stream(["x"], replay=a)


def test_two_threads_per_registry_ended_by_close(server):
    before = set(helix_threads())
    registry = hs.RedisReplay(server.url)
    assert set(helix_threads()) == before  # started lazily
    bodies = [hs.sse_stream(BlockingSource(["a "]), replay=registry, keepalive=5) for _ in range(5)]
    for body in bodies:
        read_until(body, 1)
    mine = [t for t in helix_threads() if t not in before and "redis" in t.name]
    assert len(mine) == 2, mine
    for body in bodies:
        body.close()
    registry.close()
    assert wait_for(lambda: not any(t.is_alive() for t in mine))


def test_a_flush_mid_stream(pair):
    a, b = pair
    source = BlockingSource(["a "])
    body = hs.sse_stream(lambda: source, replay=a, keepalive=5)
    _, first = read_until(body, 1)
    last_id = first[-1].last_event_id
    follower = hs.sse_stream(lambda: [], replay=b, last_event_id=last_id, keepalive=5)
    next(follower)  # the opening
    b._store.client.flushall()
    source.feed("b ", "c ")
    source.end()
    # the connection reading the owner keeps streaming to the end
    assert texts(first) + texts(read_all(body)) == "a b c "
    # the follower ends with a clear error, and so does a resume
    assert error_code(read_all(follower)) == "events_expired"
    resumed = read_all(hs.sse_stream(lambda: [], replay=b, last_event_id=last_id))
    assert error_code(resumed) == "events_expired"
    # new streams work again
    assert texts(read_all(hs.sse_stream(["fresh"], replay=a))) == "fresh"


def test_redis_restarted_mid_stream(tmp_path):
    gen = _redis_server(tmp_path)
    server = next(gen)
    a = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.3)
    b = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.3)
    try:
        source = BlockingSource(["a "])
        body = hs.sse_stream(lambda: source, replay=a, keepalive=5)
        _, first = read_until(body, 1)
        last_id = first[-1].last_event_id
        follower = hs.sse_stream(lambda: [], replay=b, last_event_id=last_id, keepalive=5)
        next(follower)
        server.stop()
        source.feed("b ")
        got, _ = read_until(body, 1)  # streams on without Redis
        assert b"b " in got
        assert error_code(read_all(follower)) in ("unavailable", "events_expired")
        failed = read_all(hs.sse_stream(lambda: [], replay=b, last_event_id=last_id))
        assert error_code(failed) == "unavailable"
        server.start()  # without persistence: the data is gone
        source.feed("c ")
        source.end()
        rest = read_all(body)
        assert texts(rest) == "c " and rest[-1].type == "done"
        resumed = read_all(hs.sse_stream(lambda: [], replay=b, last_event_id=last_id))
        assert error_code(resumed) == "events_expired"
        assert texts(read_all(hs.sse_stream(["again"], replay=a))) == "again"
    finally:
        a.close()
        b.close()
        gen.close()


OWNER = textwrap.dedent("""
    import sys, threading
    import helixstream as hs
    from tests.sources import BlockingSource
    replay = hs.RedisReplay(sys.argv[1], heartbeat=float(sys.argv[2]), grace=30)
    source = BlockingSource(["first ", "second "])
    body = hs.sse_stream(lambda: source, replay=replay, keepalive=30)
    got = b""
    while got.count(b"id: ") < 2:
        got += next(body)
    last = [line for line in got.decode().splitlines() if line.startswith("id: ")][-1]
    print(last[4:], flush=True)
    threading.Event().wait()  # generating, until killed
""")


def test_a_follower_of_a_killed_owner_gets_producer_lost(server):
    heartbeat = 0.5
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, server.url, str(heartbeat)],
        stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).parent.parent),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    try:
        assert owner.stdout is not None
        last_id = owner.stdout.readline().strip()
        assert last_id, "the owner printed no event id"
        with hs.RedisReplay(server.url, heartbeat=heartbeat) as follower_side:
            first_id = last_id.rsplit(".", 1)[0] + ".1"
            body = hs.sse_stream(lambda: [], replay=follower_side, last_event_id=first_id,
                                 keepalive=30)
            _, events = read_until(body, 1)
            assert texts(events) == "second "
            os.kill(owner.pid, signal.SIGKILL)
            owner.wait(10)
            killed = time.monotonic()
            rest = read_all(body)
            took = time.monotonic() - killed
            assert error_code(rest) == "producer_lost"
            assert took <= 2 * heartbeat + 0.2, took
            # a resume afterwards: the same clear answer, at once
            again = read_all(hs.sse_stream(lambda: [], replay=follower_side, last_event_id=last_id,
                                           keepalive=30))
            assert error_code(again) == "producer_lost"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        if owner.stdout is not None:
            owner.stdout.close()


def test_bad_arguments_and_a_missing_redis_py(monkeypatch):
    pytest.importorskip("redis", reason="redis-py is not installed")
    url = "redis://127.0.0.1:1/0"  # never reached: nothing connects before a stream
    for kwargs in ({"grace": -1}, {"ttl": 0}, {"max_events": 0}, {"heartbeat": 0},
                   {"detached_lookahead": 0}, {"timeout": float("nan")}, {"clock": 5}):
        with pytest.raises(hs.ConfigError):
            hs.RedisReplay(url, **kwargs)
    # a running stream's keys are refreshed at heartbeats: a shorter ttl would expire them
    with pytest.raises(hs.ConfigError, match="3 times 'heartbeat'"):
        hs.RedisReplay(url, ttl=0.3)
    with pytest.raises(TypeError, match="Redis URL or a redis.Redis client"):
        hs.RedisReplay(42)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"helixstream\[redis\]"):
        hs.RedisReplay(url)


def test_redis_unreachable_streams_go_on_and_resumes_get_an_error():
    pytest.importorskip("redis", reason="redis-py is not installed")
    from .redis_server import free_port

    with hs.RedisReplay(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2) as replay:
        events = read_all(hs.sse_stream(["a ", "b "], replay=replay))
        assert texts(events) == "a b " and events[-1].type == "done"
        resumed = read_all(hs.sse_stream(lambda: [], replay=replay,
                                         last_event_id=events[0].last_event_id))
        assert error_code(resumed) == "unavailable"


def test_a_departed_client_costs_at_most_the_lookahead_in_generation(server):
    from .test_sse_detached import GatedModel

    with hs.RedisReplay(server.url, grace=0.5, heartbeat=0.2, detached_lookahead=16) as replay:
        model = GatedModel()
        body = hs.sse_stream(model, replay=replay)
        _, got = read_until(body, 3)
        assert texts(got) == "w0 w1 w2 "
        body.close()  # nobody reads it anywhere now
        model.gate.set()
        assert wait_for(model.closed.is_set, timeout=10)  # grace ended: source closed
        assert len(model.produced) <= 3 + 16 + 1, len(model.produced)


def test_close_on_an_event_closes_the_registry(server):
    replay = hs.RedisReplay(server.url)
    source = BlockingSource(["a "])
    body = hs.sse_stream(source, replay=replay, keepalive=5)
    read_until(body, 1)
    stop = threading.Event()
    replay.close_on(stop)
    stop.set()
    assert source.closed.wait(10)
    assert error_code(read_all(body)) == "shutdown"
    assert wait_for(lambda: not [t for t in helix_threads() if replay.proc in t.name])


def test_a_registry_made_before_a_fork_is_its_own_process_in_the_child(server, tmp_path):
    # gunicorn --preload: the registry is made (and used) in the master, then forked
    replay = hs.RedisReplay(server.url, heartbeat=0.5)
    try:
        read_all(hs.sse_stream(["before "], replay=replay))  # its threads run here
        parent = replay.proc
        out = tmp_path / "child"
        pid = os.fork()
        if pid == 0:  # the child: a stream, then report its id and threads
            try:
                events = read_all(hs.sse_stream(["child "], replay=replay))
                names = [t.name for t in helix_threads() if "redis" in t.name]
                out.write_text(json.dumps([replay.proc, texts(events), names]))
                replay.close()
            except BaseException:  # noqa: BLE001 - reported to the parent
                out.write_text(json.dumps(["failed", traceback.format_exc(), []]))
            finally:
                os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        proc, text, names = json.loads(out.read_text())
        assert proc != "failed", text
        assert proc != parent and text == "child "
        assert len(names) == 2 and all(proc in n for n in names)
    finally:
        replay.close()


def test_a_stream_parked_at_its_lookahead_runs_again_for_a_follower_elsewhere(pair):
    a, b = pair

    gate = threading.Event()
    made: List[int] = []

    def model() -> Iterator[str]:
        for i in range(60):
            if i == 1:
                assert gate.wait(10)
            made.append(i)
            yield f"w{i} "

    body = hs.sse_stream(model(), replay=a, keepalive=5)
    _, first = read_until(body, 1)
    body.close()
    gate.set()  # the source runs on to the lookahead (16) and parks there
    assert wait_for(lambda: len(made) >= 17)
    rest = read_all(hs.sse_stream(lambda: [], replay=b, last_event_id=first[-1].last_event_id,
                                  keepalive=5))
    assert texts(first) + texts(rest) == "".join(f"w{i} " for i in range(60))
    assert rest[-1].type == "done"


def test_trimmed_events_and_expired_streams(server):
    import redis

    client = redis.Redis.from_url(server.url)
    # ttl: long enough for the resumes below to come before it under a loaded CI
    # machine (0.3 s was not), short enough to watch Redis expire the keys
    with hs.RedisReplay(server.url, max_events=10, ttl=3) as replay:
        body = hs.sse_stream([f"w{i} " for i in range(400)], replay=replay)
        events = read_all(body)
        assert texts(events) == "".join(f"w{i} " for i in range(400))
        old = read_all(hs.sse_stream(lambda: [], replay=replay, last_event_id=events[0].last_event_id))
        assert error_code(old) == "events_expired"  # trimmed near max_events (MAXLEN ~)
        recent = read_all(hs.sse_stream(lambda: [], replay=replay,
                                        last_event_id=events[-3].last_event_id))
        assert [e.type for e in recent] == ["message", "done"]
        key = body.stream_id
        # ttl after the end: the keys expire (watched through Redis, which expires them)
        assert wait_for(
            lambda: not client.exists(f"helixstream:s:{key}:ev", f"helixstream:s:{key}"), timeout=20
        )
        gone = read_all(hs.sse_stream(lambda: [], replay=replay, last_event_id=events[-3].last_event_id))
        assert error_code(gone) == "unknown_event_id"
    client.close()


def test_a_resume_may_overtake_the_writer_and_an_id_past_the_end_is_unknown(pair):
    a, b = pair
    source = BlockingSource(["a "])
    body = hs.sse_stream(source, replay=a, keepalive=5)
    read_until(body, 1)
    with a._flush_lock:  # the writer is held up: the next events reach the client first
        source.feed("b ")
        _, events = read_until(body, 1)
        last_id = events[-1].last_event_id
        follower = hs.sse_stream(lambda: [], replay=b, last_event_id=last_id, keepalive=5)
        assert follower.status == 200  # not unknown: the events after it will come
        ahead = hs.sse_stream(lambda: [], replay=b, keepalive=0.2,
                              last_event_id=last_id.rsplit(".", 1)[0] + ".40")
    source.feed("c ")
    source.end()
    assert texts(read_all(body)) == "c "  # the owner's connection pulls the stream
    assert texts(read_all(follower)) == "c "
    # an id past the stream's end: unknown, once the end is known
    assert error_code(read_all(ahead)) == "unknown_event_id"
