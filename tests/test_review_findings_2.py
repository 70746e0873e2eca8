"""Review findings of 2026-11-30 (afternoon): each test failed on the code it was written against."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest

import helixstream as hs
from helixstream.sse import SSEReplay, sse_stream

from .redis_server import RedisServer
from .redis_server import redis_server as _redis_server
from .sources import BlockingSource
from .test_redis_replay import read_all, read_until
from .test_sse_stream import FakeClock, next_event

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _redis_server(tmp_path)


def streaming(replay: Any) -> Tuple[BlockingSource, Any]:
    """A stream of ``replay`` whose first event was read (its source waits for more)."""
    source = BlockingSource(["a "])
    body = hs.sse_stream(source, replay=replay, keepalive=5)
    read_until(body, 1)
    return source, body


def test_a_cancelled_event_is_not_trimmed_before_its_reader_sent_it() -> None:
    # the log marks every event recorded as read (_puller_reads), also the one _stop()
    # records for cancel(): a trim (here: the growth step that event crosses) may drop
    # it before the reader sends it, which then sends events_expired instead
    replay = SSEReplay(max_bytes=1, clock=FakeClock())
    src = BlockingSource(["a" * 1000, "b" * 3046])
    body = sse_stream(src, replay=replay)
    try:
        next_event(body)
        next_event(body)  # the log's untold growth is now just under 4 KiB
        assert replay.cancel(body.stream_id)
        events = next_event(body)
        assert events[0].type == "error"
        assert json.loads(events[0].data)["code"] == "cancelled"
    finally:
        body.close()
        replay.close()


def test_a_cancel_nobody_heard_at_once_answers_true_when_it_stops_the_stream(
    server: RedisServer,
) -> None:
    # cancel() records the request for the owner's process, which takes it at its
    # tick and stops the stream; but it answered False at once when PUBLISH reached no
    # listener (the owner's was reconnecting, the caller's process has none): the
    # stream was stopped all the same, and the caller was told it was not
    a = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.3)
    a._store.channel = a._store.channel + ":deaf"  # its listener hears nothing
    b = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.3)  # never opened a stream
    try:
        source, body = streaming(a)
        answer = b.cancel(body.stream_id)
        assert source.closed.wait(5)
        events = read_all(body)
        assert '"cancelled"' in events[-1].data
        assert answer is True, "cancel() said False, and the stream was cancelled"
    finally:
        a.close()
        b.close()


def test_the_writers_merge_keeps_an_end_queued_before_a_record(server: RedisServer) -> None:
    # close() racing open(): a stream's end ("shutdown") queued before its record; one
    # flush merging the two kept the later entry's end (None) and dropped its record
    replay = hs.RedisReplay(server.url, grace=5.0, heartbeat=0.5)
    try:
        _, body = streaming(replay)
        key = body.stream_id
        owned = replay._owned[key]
        store = replay._store
        record = store.encode_create(key, None, replay.proc, 1500)
        with replay._flush_lock:  # the writer waits: one flush takes both
            replay._enqueue(owned, [], "shutdown")
            replay._enqueue(owned, [], None, record)
        replay._flush_writes()
        last = store.after_last(key)
        assert last is not None and last[2] == "shutdown"
        assert store.client.hgetall(store.meta_key(key))  # the record is there
        body.close()
    finally:
        replay.close()
