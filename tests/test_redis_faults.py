"""Review findings: RedisReplay."""
from __future__ import annotations

from pathlib import Path
import threading
from typing import Any, Iterator

import pytest

import helixstream as hs

from .conftest import wait_for
from .redis_server import RedisServer
from .redis_server import redis_server as _redis_server
from .sources import BlockingSource
from .test_redis_replay import read_all, read_until, texts

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _redis_server(tmp_path)


def test_writes_after_a_flush_leave_no_key_without_expiry(server: RedisServer) -> None:
    # "every stream key expires" (docs/deployment.md): a stream running through a
    # FLUSHALL must not recreate its events key without a TTL
    a = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.5)
    try:
        source = BlockingSource(["a "])
        body = hs.sse_stream(lambda: source, replay=a, keepalive=5)
        read_until(body, 1)
        key = body.stream_id
        client: Any = a._store.client
        assert wait_for(lambda: client.exists(a._store.events_key(key)) == 1)
        client.flushall()
        source.feed("b ")
        read_until(body, 1)
        # the tick sees the new epoch (the stream is then broken: no more writes)
        assert wait_for(lambda: a._owned[key].broken, timeout=10)
        source.feed("c ")
        source.end()
        assert texts(read_all(body)) == "c "
        a._flush_writes()
        for name in client.keys(a._store.prefix + "s:*"):
            assert client.pttl(name) > 0, (name, client.pttl(name))
    finally:
        a.close()


def test_the_driver_outlives_an_unexpected_error(server: RedisServer) -> None:
    # the driver thread carries the heartbeat, the writes and the grace periods: an
    # error it did not expect (a stream's close() raising, a bug) must not end it, or
    # every follower of the process's streams gets producer_lost while it runs on
    a = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.2)
    ticks = []
    real_tick = a._tick

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 1:
            raise RuntimeError("unexpected")
        real_tick()

    a._tick = tick  # type: ignore[method-assign]
    try:
        body = hs.sse_stream(["x "], replay=a)
        assert texts(read_all(body)) == "x "
        assert wait_for(lambda: len(ticks) >= 3, timeout=10), "the driver thread died"
    finally:
        a.close()


def test_a_stream_opened_after_close_touches_nothing_in_redis(server: RedisServer) -> None:
    # close() forgets the process's heartbeat; a later sse_stream raises RuntimeError
    # (docs/api.md), and must not first write a stream's hash and bring the heartbeat
    # back (followers would think the process alive), on a connection never closed
    a = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.5)
    check = hs.RedisReplay(server.url)
    try:
        assert texts(read_all(hs.sse_stream(["x "], replay=a))) == "x "
        a.close()
        client: Any = check._store.client
        before = set(client.keys(a._store.prefix + "s:*"))
        with pytest.raises(RuntimeError):
            hs.sse_stream(["y"], replay=a)
        assert set(client.keys(a._store.prefix + "s:*")) == before
        assert not client.exists(a._store.proc_key(a.proc))
    finally:
        a.close()
        check.close()


def test_a_stalled_redis_does_not_hold_up_the_owners_last_event(server: RedisServer) -> None:
    # docs/deployment.md: "Redis being slow or gone never holds up the owner's own
    # client". Review finding: the end of a stream was written by its puller before its
    # last event went out, waiting for the writer's flush in progress and for Redis's
    # replies (1.5 s measured). The last event now goes at once; the response ends
    # once Redis has the end (or gave up).
    import os
    import signal
    import time

    a = hs.RedisReplay(server.url, grace=5.0, heartbeat=1.0)
    assert server.proc is not None
    try:
        source = BlockingSource(["a "])
        body = hs.sse_stream(lambda: source, replay=a, keepalive=5)
        read_until(body, 1)
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            source.feed("b ")
            read_until(body, 1)  # at once (queued for the writer)
            source.end()
            start = time.monotonic()
            rest = b""
            while b"done" not in rest:
                rest += next(body)
            waited = time.monotonic() - start
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert waited < 0.5, f"the owner's client waited {waited:.2f} s for its last event"
        assert b"".join(body) == b""  # the response ends (once Redis has the end)
    finally:
        a.close()


def test_an_epoch_learnt_by_the_heartbeat_during_an_open_names_the_key(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI finding: the heartbeat thread learnt the epoch between the moment open() made
    the key (with no epoch known: "000000...") and the moment it chose the fast path (the
    epoch known): the stream's key named no epoch, and every resume answered
    ``events_expired``. Here the heartbeat's write lands at exactly that moment."""
    from helixstream.sse import _redis_replay

    replay = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.5)
    real_new_key = _redis_replay.new_key
    epoch = replay._store.epoch()

    def new_key_then_heartbeat(known: str) -> str:
        key = real_new_key(known)
        replay._epoch = epoch  # what the heartbeat thread does
        return key

    monkeypatch.setattr(_redis_replay, "new_key", new_key_then_heartbeat)
    try:
        source = BlockingSource(["a "])
        body = hs.sse_stream(lambda: source, replay=replay, keepalive=5)
        _, first = read_until(body, 1)
        assert body.stream_id.startswith(epoch)
        body.close()
        again = hs.sse_stream(lambda: [], replay=replay, last_event_id=first[-1].last_event_id)
        source.feed("b ")
        source.end()
        rest = read_all(again)
        assert texts(first) + texts(rest) == "a b "
    finally:
        replay.close()


def test_a_stream_opens_only_once_redis_confirmed_the_subscription(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's ``subscribe()`` only sends SUBSCRIBE; a cancel published before Redis
    has processed it is lost (pub/sub is at-most-once). The registry counted itself
    subscribed once the command was sent, so a stream could open, and a cancel from
    another process miss it. Here Redis's confirmation is held back: open() must wait
    for it."""
    import redis

    confirmed = threading.Event()
    real_pubsub = redis.Redis.pubsub

    class SlowConfirm:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def get_message(self, *args: Any, **kwargs: Any) -> Any:
            message = self.inner.get_message(*args, **kwargs)
            if message is not None and message.get("type") == "subscribe":
                # what the listener sees of the confirmation waits for the test
                assert confirmed.wait(10)
            return message

    def pubsub(self: Any, **kwargs: Any) -> Any:
        return SlowConfirm(real_pubsub(self, **kwargs))

    monkeypatch.setattr(redis.Redis, "pubsub", pubsub)
    replay = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.5)
    opened = threading.Event()

    def open_one() -> None:
        body = hs.sse_stream(BlockingSource(["a "]), replay=replay, keepalive=5)
        opened.set()
        body.close()

    opener = threading.Thread(target=open_one)
    try:
        opener.start()
        assert not opened.wait(0.5), "the stream opened before Redis confirmed SUBSCRIBE"
        confirmed.set()
        assert opened.wait(10)
    finally:
        confirmed.set()
        opener.join(10)
        replay.close()


def test_a_cancel_the_owners_listener_missed_still_stops_the_stream(
    server: RedisServer,
) -> None:
    """Pub/sub is at-most-once: a listener that is reconnecting misses a message, and
    the cancel was lost (the model ran on for nobody). Here the owner's listener never
    hears the other process's message (it listens on another channel); the cancel must
    still stop the stream, through the record the owner takes at its tick."""
    a = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.3)
    a._store.channel = a._store.channel + ":deaf"  # before its listener starts
    b = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.3)
    try:
        source = BlockingSource(["a "])
        body = hs.sse_stream(source, replay=a, keepalive=5)
        read_until(body, 1)
        b.cancel(body.stream_id)  # its answer depends on the tick's timing: not asserted
        assert source.closed.wait(5), "the cancel was lost"
        events = read_all(body)
        assert [e.type for e in events][-1] == "error"
        assert '"cancelled"' in events[-1].data
    finally:
        a.close()
        b.close()


def test_a_write_made_after_close_leaves_no_connection_open(server: RedisServer) -> None:
    """A stream's puller may write its end after close() (close waits at most 1 s for
    it, then goes on: under load it came later): the connection it used went back to
    the registry's free list, which close had already emptied, and its socket was left
    for the garbage collector (``ResourceWarning: unclosed socket``, seen once in the
    test suite beside two CPU hogs)."""
    replay = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.5)
    replay.close()
    # what a late puller's flush does: take a connection, write, give it back
    conn = replay._connection()
    conn.send_command("PING")
    assert conn.read_response() in (b"PONG", "PONG")
    replay._give_back(conn)
    assert replay._writers == []
    assert conn._sock is None  # closed, not left open in a list nobody empties
