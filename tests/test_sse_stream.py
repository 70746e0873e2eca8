"""sse_stream: events, progress, the end, errors, keep-alives, close(), and resuming.

No network here (see test_sse_servers.py): the body is iterated as a WSGI server would.
Time-dependent registry behaviour (``ttl``) runs on an injected clock; the only real
waits are a stream's keep-alive timeout and the grace timer, both a few hundredths of a
second, and thread ends are observed by joining (``wait_for``), never by sleeping.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import re
import threading
import time
import weakref
from typing import Any, Iterator, List

import pytest

from helixstream._aggregate import ChunkAggregator
from helixstream._chunk import StreamChunk
from helixstream._engine import ChunkStream
from helixstream._errors import ConfigError
from helixstream.sse import SSEBody, SSEReplay, sse_stream, stream_chunks_to_sse
from helixstream._streamer import EnhancedStreamer
from helixstream._tokens import estimate_tokens

from .conftest import wait_for
from .sources import BlockingSource, CountingGenerator
from .test_sse_encoding import Dispatched, browser_events

OPENING = b": connected\n"
KEEPALIVE = b": keep-alive\n"


def read_all(body: SSEBody) -> bytes:
    try:
        return b"".join(body)
    finally:
        body.close()


def events_of(body: SSEBody) -> List[Dispatched]:
    return browser_events(read_all(body))


def next_event(body: SSEBody) -> List[Dispatched]:
    """The events of the body's next piece (skipping comments)."""
    while True:
        piece = next(body)
        if not piece.startswith(b":"):
            return browser_events(piece)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _not_called() -> List[str]:
    raise AssertionError("a resumed request must not start a new stream")


# --- events ------------------------------------------------------------------------------
def test_each_content_chunk_is_one_event_with_an_increasing_id_then_done() -> None:
    raw = read_all(sse_stream(["Hel", "lo", " world\n"]))
    assert raw.startswith(OPENING)
    assert browser_events(raw) == [
        Dispatched("message", "Hel", "1"),
        Dispatched("message", "lo", "2"),
        Dispatched("message", " world\n", "3"),
        Dispatched("done", "[DONE]", "4"),
    ]
    assert raw[len(OPENING) :] == (
        b"data: Hel\nid: 1\n\ndata: lo\nid: 2\n\ndata:  world\ndata: \nid: 3\n\n"
        b"event: done\ndata: [DONE]\nid: 4\n\n"
    )


def test_progress_events_count_tokens_against_the_estimate() -> None:
    chunks = [StreamChunk("Hello", tokens=3), "big world", StreamChunk("!", tokens=1)]
    events = events_of(sse_stream(chunks, progress=True, estimated_tokens=10))
    received = 3 + estimate_tokens("big world")
    assert events == [
        Dispatched("message", "Hello", "1"),
        Dispatched(
            "progress", json.dumps({"received": 3, "total": 10}, separators=(",", ":")), "2"
        ),
        Dispatched("message", "big world", "3"),
        Dispatched("progress", '{"received":%d,"total":10}' % received, "4"),
        Dispatched("message", "!", "5"),
        Dispatched("progress", '{"received":%d,"total":10}' % (received + 1), "6"),
        Dispatched("done", "[DONE]", "7"),
    ]


def test_progress_total_is_null_without_an_estimate() -> None:
    events = events_of(sse_stream([StreamChunk("a", tokens=2)], progress=True))
    assert events[1] == Dispatched("progress", '{"received":2,"total":null}', "2")


def test_chunks_without_text_send_no_event_but_count_their_tokens() -> None:
    chunks = ["a", "", StreamChunk("", tokens=5), "b"]
    events = events_of(sse_stream(chunks, progress=True))
    assert [(e.type, e.data) for e in events] == [
        ("message", "a"),
        ("progress", '{"received":1,"total":null}'),
        ("message", "b"),
        ("progress", '{"received":7,"total":null}'),
        ("done", "[DONE]"),
    ]


def test_bytes_are_decoded_across_chunk_boundaries() -> None:
    events = events_of(sse_stream([b"h\xc3", b"\xa9llo ", "w\u00f6rld"]))
    assert "".join(e.data for e in events if e.type == "message") == "héllo wörld"


def test_a_chunk_stream_is_streamed_as_it_is() -> None:
    output, get_result = EnhancedStreamer().stream_buffered(["Hel", "lo wor", "ld"], "word")
    body = sse_stream(output)
    assert body.stream is output
    events = events_of(body)
    assert [e.data for e in events] == ["Hello ", "world", "[DONE]"]
    assert get_result().full_content == "Hello world"


def test_a_callable_is_called_once_to_start_the_stream() -> None:
    calls: List[int] = []

    def start() -> List[str]:
        calls.append(1)
        return ["x", "y"]

    assert [e.data for e in events_of(sse_stream(start))] == ["x", "y", "[DONE]"]
    assert calls == [1]


def test_content_events_can_have_a_type_and_retry_goes_first() -> None:
    raw = read_all(sse_stream(["x"], event="token", retry=2500))
    assert raw.startswith(b"retry: 2500\n" + OPENING)
    assert browser_events(raw)[0] == Dispatched("token", "x", "1")


# --- errors ------------------------------------------------------------------------------
def _failing(after: List[str], exc: BaseException) -> Any:
    def gen() -> Any:
        yield from after
        raise exc

    return gen()


def test_a_failing_source_ends_with_a_generic_error_event_after_its_chunks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="helixstream.sse"):
        body = sse_stream(_failing(["one ", "two"], KeyError("internal secret")))
        events = events_of(body)
    assert [e.data for e in events[:2]] == ["one ", "two"]
    error = events[2]
    assert error.type == "error" and error.last_event_id == "3" and len(events) == 3
    payload = json.loads(error.data)
    assert payload["code"] == "stream_failed" and "secret" not in error.data
    assert payload["error_id"] in caplog.records[-1].getMessage()
    assert body.outcome == "error"


def test_expose_errors_sends_the_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.CRITICAL, logger="helixstream.sse"):
        events = events_of(sse_stream(_failing([], ValueError("bad key")), expose_errors=True))
    payload = json.loads(events[0].data)
    assert (payload["type"], payload["detail"]) == ("ValueError", "bad key")


def test_text_that_cannot_be_encoded_ends_the_stream_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = BlockingSource(["ok", "bad \ud800"])
    with caplog.at_level(logging.CRITICAL, logger="helixstream.sse"):
        events = events_of(sse_stream(source))
    assert [e.type for e in events] == ["message", "error"]
    assert source.closed.wait(5)


def test_unencodable_text_in_a_logged_stream_ends_it_with_an_error_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    replay = SSEReplay(clock=FakeClock())
    with caplog.at_level(logging.CRITICAL, logger="helixstream.sse"):
        body = sse_stream(["ok", "bad \ud800"], replay=replay)
        events = events_of(body)
    assert [e.type for e in events] == ["message", "error"]
    assert [e.last_event_id for e in events] == [f"{body.stream_id}.1", f"{body.stream_id}.2"]
    resumed = events_of(
        sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay)
    )
    assert resumed == events[1:]


# --- keep-alives -------------------------------------------------------------------------
def test_a_silent_source_gets_keep_alive_comments_until_it_speaks() -> None:
    source = BlockingSource(["first"])
    body = sse_stream(source, keepalive=0.05)
    try:
        assert next(body) == OPENING
        assert browser_events(next(body)) == [Dispatched("message", "first", "1")]
        assert next(body) == KEEPALIVE
        assert next(body) == KEEPALIVE
        source.feed("second")
        assert browser_events(next(body)) == [Dispatched("message", "second", "2")]
        source.end()
        assert browser_events(next(body)) == [Dispatched("done", "[DONE]", "3")]
        with pytest.raises(StopIteration):
            next(body)
    finally:
        body.close()


def test_no_keep_alives_while_chunks_flow() -> None:
    # chunks 10 ms apart for 0.4 s, keep-alive after 0.1 s of silence: one would be
    # sent if chunks did not count as activity
    def paced() -> Iterator[str]:
        for _ in range(40):
            time.sleep(0.01)  # the model's pace, not a wait for a thread
            yield "a"

    raw = read_all(sse_stream(paced(), keepalive=0.1))
    assert KEEPALIVE not in raw
    assert raw.count(b"data: a") == 40


# --- close -------------------------------------------------------------------------------
def test_close_mid_stream_closes_the_source_and_ends_every_thread() -> None:
    source = BlockingSource(["a"])
    body = sse_stream(source)
    assert next(body) == OPENING
    assert browser_events(next(body))[0].data == "a"
    threads = body.stream.threads()  # type: ignore[union-attr]
    assert threads and all(t.is_alive() for t in threads)
    body.close()
    assert source.closed.is_set()
    assert wait_for(lambda: not any(t.is_alive() for t in threads))
    assert body.stream.cancelled  # type: ignore[union-attr]
    with pytest.raises(StopIteration):
        next(body)
    body.close()  # twice is fine


def test_close_stops_a_generator_source() -> None:
    gen = CountingGenerator("word " for _ in range(100_000))
    body = sse_stream(gen)
    next(body), next(body)
    body.close()
    assert wait_for(gen.closed.is_set)
    assert not gen.finished.is_set()


def test_close_before_the_first_read_closes_the_source() -> None:
    source = BlockingSource()
    body = sse_stream(source)
    body.close()
    assert source.closed.is_set()
    assert list(body) == []


def test_a_body_dropped_without_close_still_stops_its_stream() -> None:
    source = BlockingSource(["a"])
    body = sse_stream(source)
    next(body), next(body)
    del body
    gc.collect()
    assert wait_for(source.closed.is_set)


def test_a_stop_event_ends_the_stream_with_a_cancelled_event() -> None:
    source = BlockingSource(["a"])
    stop = threading.Event()
    body = sse_stream(source, stop=stop)
    assert next_event(body)[0].data == "a"
    stop.set()
    events = next_event(body)
    assert events[0].type == "error" and json.loads(events[0].data)["code"] == "cancelled"
    with pytest.raises(StopIteration):
        next(body)
    body.close()
    assert wait_for(source.closed.is_set)
    assert body.outcome == "cancelled"


@pytest.mark.parametrize(
    "options",
    [
        dict(keepalive=0),
        dict(keepalive=-1),
        dict(keepalive="15"),
        dict(keepalive=float("nan")),
        dict(retry=-1),
        dict(retry=True),
        dict(event="a\nb"),
        dict(estimated_tokens=-1),
        dict(estimated_tokens=True),
    ],
)
def test_bad_options_are_refused_before_anything_starts(options: dict) -> None:
    source = BlockingSource()
    with pytest.raises(ValueError):
        sse_stream(source, **options)
    assert not source.closed.is_set()


# --- stream_chunks_to_sse ------------------------------------------------------------------
def test_stream_chunks_to_sse_writes_the_whole_stream() -> None:
    out = io.BytesIO()
    assert stream_chunks_to_sse(out, ["a", "b"], progress=True) is True
    assert [e.type for e in browser_events(out.getvalue())] == [
        "message",
        "progress",
        "message",
        "progress",
        "done",
    ]


def test_stream_chunks_to_sse_stops_when_the_client_is_gone() -> None:
    class Gone:
        writes = 0

        def write(self, data: bytes) -> int:
            self.writes += 1
            if self.writes > 2:
                raise BrokenPipeError("client went away")
            return len(data)

    source = BlockingSource(["a", "b", "c"])
    assert stream_chunks_to_sse(Gone(), source) is False
    assert source.closed.is_set()


# --- resuming with Last-Event-ID ---------------------------------------------------------------
def test_resume_replays_exactly_the_events_after_the_id() -> None:
    replay = SSEReplay(clock=FakeClock())
    first = sse_stream(["a", "b", "c"], replay=replay, progress=True)
    raw = read_all(first)
    events = browser_events(raw)
    key = first.stream_id
    assert key and [e.last_event_id for e in events] == [f"{key}.{n}" for n in range(1, 8)]
    body = sse_stream(_not_called, last_event_id=events[2].last_event_id, replay=replay)
    again = read_all(body)
    assert again.startswith(OPENING)
    assert browser_events(again) == events[3:]
    assert raw.endswith(again[len(OPENING) :])  # the very same bytes


def test_resume_continues_the_live_stream() -> None:
    source = BlockingSource(["one ", "two "])
    replay = SSEReplay(grace=30, clock=FakeClock())
    first = sse_stream(source, replay=replay)
    first_events = [next_event(first)[0], next_event(first)[0]]
    assert [e.data for e in first_events] == ["one ", "two "]
    first.close()  # the client dropped: the stream waits for it
    assert not source.closed.is_set()
    body = sse_stream(_not_called, last_event_id=first_events[0].last_event_id, replay=replay)
    try:
        assert next(body) == OPENING
        assert next_event(body) == [first_events[1]]  # replayed
        source.feed("three")
        source.end()
        rest = browser_events(b"".join(body))
    finally:
        body.close()
    assert [(e.type, e.data) for e in rest] == [("message", "three"), ("done", "[DONE]")]
    assert rest[0].last_event_id == f"{first.stream_id}.3"
    assert source.closed.is_set()


def test_with_no_grace_a_departed_client_stops_the_stream_and_a_resume_says_so() -> None:
    source = BlockingSource(["a"])
    replay = SSEReplay(grace=0, clock=FakeClock())
    first = sse_stream(source, replay=replay)
    event = next_event(first)[0]
    first.close()
    assert source.closed.is_set()
    events = events_of(sse_stream(_not_called, last_event_id=event.last_event_id, replay=replay))
    assert len(events) == 1 and events[0].type == "error"
    assert json.loads(events[0].data)["code"] == "cancelled"


def test_the_grace_period_ends_by_closing_the_stream() -> None:
    source = BlockingSource(["a"])
    replay = SSEReplay(grace=0.05, clock=FakeClock())
    first = sse_stream(source, replay=replay)
    event = next_event(first)[0]
    first.close()
    assert wait_for(source.closed.is_set)
    assert wait_for(
        lambda: not any(t.name.startswith("helixstream-sse-grace") for t in threading.enumerate())
    )
    events = events_of(sse_stream(_not_called, last_event_id=event.last_event_id, replay=replay))
    assert [json.loads(e.data)["code"] for e in events] == ["cancelled"]


def _resume_error(body: SSEBody) -> dict:
    raw = read_all(body)
    events = browser_events(raw)
    assert len(events) == 1 and events[0].type == "error", raw
    assert b"\nid:" not in raw  # the client's Last-Event-ID stays as it was
    return json.loads(events[0].data)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "suffix", ["nope.1", "garbage", "..", "{key}.99", "{key}.x", "{key}.-1", "{key}.١"]
)
def test_unknown_ids_get_an_error_event_and_start_nothing(suffix: str) -> None:
    replay = SSEReplay(clock=FakeClock())
    first = sse_stream(["a"], replay=replay)
    read_all(first)
    source = BlockingSource(["must not be read"])
    last_id = suffix.format(key=first.stream_id)
    payload = _resume_error(sse_stream(source, last_event_id=last_id, replay=replay))
    assert payload["code"] == "unknown_event_id" and payload["message"]
    assert source.closed.is_set() and source.produced == []


def test_without_a_registry_a_last_event_id_is_unknown() -> None:
    payload = _resume_error(sse_stream(_not_called, last_event_id="abc.1"))
    assert payload["code"] == "unknown_event_id"


def test_a_resumed_request_closes_a_stream_it_was_given() -> None:
    stream, _ = ChunkAggregator().aggregate_chunks(BlockingSource())
    _resume_error(sse_stream(stream, last_event_id="abc.1"))
    assert stream.closed and wait_for(lambda: not any(t.is_alive() for t in stream.threads()))


def test_logs_are_forgotten_ttl_seconds_after_their_stream_ended() -> None:
    clock = FakeClock()
    replay = SSEReplay(ttl=60, clock=clock)
    first = sse_stream(["a", "b"], replay=replay)
    events = events_of(first)
    clock.now += 59.5
    assert [
        e.data
        for e in events_of(
            sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay)
        )
    ] == ["b", "[DONE]"]
    clock.now += 0.5
    replay.sweep()
    assert len(replay) == 0
    payload = _resume_error(
        sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay)
    )
    assert payload["code"] == "unknown_event_id"


def test_a_live_stream_is_not_forgotten_however_long_it_runs() -> None:
    clock = FakeClock()
    replay = SSEReplay(ttl=1, clock=clock)
    source = BlockingSource(["a"])
    body = sse_stream(source, replay=replay)
    try:
        next_event(body)
        clock.now += 1e6
        replay.sweep()
        assert body.stream_id in replay
    finally:
        body.close()
        replay.close()
    assert source.closed.is_set()


def test_events_dropped_from_a_full_log_cannot_be_resumed() -> None:
    replay = SSEReplay(max_events=3, clock=FakeClock())
    first = sse_stream(list("abcdefghij"), replay=replay)
    events = events_of(first)
    assert len(events) == 11
    payload = _resume_error(
        sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay)
    )
    assert payload["code"] == "events_expired"
    tail = events_of(sse_stream(_not_called, last_event_id=events[7].last_event_id, replay=replay))
    assert tail == events[8:]


def test_a_reconnect_takes_the_stream_over_from_a_connection_not_yet_closed() -> None:
    source = BlockingSource(["a"])
    replay = SSEReplay(grace=30, clock=FakeClock())
    old = sse_stream(source, replay=replay)
    a = next_event(old)[0]
    new = sse_stream(_not_called, last_event_id=a.last_event_id, replay=replay)
    try:
        assert next(new) == OPENING
        with pytest.raises(StopIteration):
            next(old)  # superseded
        old.close()  # the server notices the old client's departure late: no effect
        assert not source.closed.is_set()
        source.feed("b")
        source.end()
        assert [e.data for e in browser_events(b"".join(new))] == ["b", "[DONE]"]
    finally:
        new.close()
    assert source.closed.is_set()


def test_the_oldest_logs_are_forgotten_beyond_max_streams() -> None:
    replay = SSEReplay(max_streams=2, clock=FakeClock())
    ids = []
    for text in "xyz":
        events = events_of(sse_stream([text], replay=replay))
        ids.append(events[0].last_event_id)
    assert len(replay) == 2
    assert (
        _resume_error(sse_stream(_not_called, last_event_id=ids[0], replay=replay))["code"]
        == "unknown_event_id"
    )
    assert [
        e.data for e in events_of(sse_stream(_not_called, last_event_id=ids[2], replay=replay))
    ] == ["[DONE]"]


def test_closing_the_registry_closes_streams_waiting_for_their_clients() -> None:
    source = BlockingSource(["a"])
    replay = SSEReplay(grace=60, clock=FakeClock())
    body = sse_stream(source, replay=replay)
    next_event(body)
    body.close()
    assert not source.closed.is_set()
    replay.close()
    assert source.closed.is_set()
    assert len(replay) == 0
    with pytest.raises(RuntimeError):
        sse_stream(["x"], replay=replay)


def test_a_registry_body_dropped_without_close_detaches() -> None:
    source = BlockingSource(["a"])
    replay = SSEReplay(grace=0, clock=FakeClock())
    body = sse_stream(source, replay=replay)
    next_event(body)
    del body
    gc.collect()
    assert wait_for(source.closed.is_set)


@pytest.mark.parametrize(
    "options",
    [dict(ttl=-1), dict(grace=-0.5), dict(max_events=0), dict(max_streams=0), dict(ttl="1")],
)
def test_registry_options_are_checked(options: dict) -> None:
    with pytest.raises(ValueError):
        SSEReplay(**options)


def test_ids_of_a_registry_stream_name_the_stream_and_the_position() -> None:
    replay = SSEReplay(clock=FakeClock())
    body = sse_stream(["a"], replay=replay)
    events = events_of(body)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{12}\.\d+", e.last_event_id) for e in events)
    assert isinstance(body.stream, ChunkStream)


# --- issue 11: owners, bounded parsing, 204, memory, cancel, shutdown ----------------------
def _code(body: SSEBody) -> str:
    return str(_resume_error(body)["code"])


def test_a_resume_from_another_owner_is_an_unknown_event_id() -> None:
    source = BlockingSource(["secret answer"])
    replay = SSEReplay(grace=30, clock=FakeClock())
    first = sse_stream(source, replay=replay, owner="alice")
    try:
        event = next_event(first)[0]
        for other in ("mallory", None, 7):
            stolen = sse_stream(
                _not_called, last_event_id=event.last_event_id, replay=replay, owner=other
            )
            assert _code(stolen) == "unknown_event_id"
        source.feed("more")
        assert next_event(first)[0].data == "more"  # alice's connection goes on
    finally:
        first.close()
        replay.close()


def test_the_owner_resumes_their_own_stream() -> None:
    replay = SSEReplay(clock=FakeClock())
    first = sse_stream(["a", "b"], replay=replay, owner=42)
    events = events_of(first)
    again = sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay, owner=42)
    assert events_of(again) == events[1:]


@pytest.mark.parametrize("owner", [object(), True, 1.5, b"x", ["a"]])
def test_an_owner_must_be_a_str_or_an_int(owner: Any) -> None:
    source = BlockingSource()
    with pytest.raises(TypeError, match="owner"):
        sse_stream(source, replay=SSEReplay(clock=FakeClock()), owner=owner)
    assert not source.closed.is_set()


@pytest.mark.parametrize("digits", [19, 30, 4301, 100_000])
def test_a_sequence_number_of_too_many_digits_is_an_unknown_event_id(digits: int) -> None:
    replay = SSEReplay(grace=30, clock=FakeClock())
    source = BlockingSource(["a"])
    first = sse_stream(source, replay=replay)
    try:
        next_event(first)
        last_id = f"{first.stream_id}.{'1' * digits}"
        assert _code(sse_stream(_not_called, last_event_id=last_id, replay=replay)) == (
            "unknown_event_id"
        )
    finally:
        first.close()
        replay.close()


def test_resuming_a_finished_stream_after_its_last_event_answers_204_with_no_body() -> None:
    replay = SSEReplay(clock=FakeClock())
    first = sse_stream(["a"], replay=replay)
    events = events_of(first)
    assert first.status == 200 and first.status_line == "200 OK"
    body = sse_stream(_not_called, last_event_id=events[-1].last_event_id, replay=replay)
    assert (body.status, body.status_line) == (204, "204 No Content")
    assert body.stream_id is None
    assert read_all(body) == b""
    # a finished stream with events still to send is replayed as before
    body = sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay)
    assert body.status == 200 and events_of(body) == events[1:]


def test_a_finished_stream_releases_its_source_while_its_log_is_kept() -> None:
    class Source:
        def __init__(self) -> None:
            self.items = iter(["a", "b"])

        def __iter__(self) -> "Source":
            return self

        def __next__(self) -> str:
            return next(self.items)

    replay = SSEReplay(clock=FakeClock())
    source = Source()
    ref = weakref.ref(source)
    body = sse_stream(source, replay=replay)
    del source
    events = events_of(body)
    del body
    gc.collect()
    assert ref() is None, gc.get_referrers(ref())
    assert len(replay) == 1  # the log is still there for a resume
    assert (
        events_of(sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay))
        == events[1:]
    )


def test_the_logs_are_bounded_by_bytes_the_oldest_finished_streams_forgotten_first() -> None:
    replay = SSEReplay(max_bytes=20_000, clock=FakeClock())
    live_source = BlockingSource(["x" * 1000])
    live = sse_stream(live_source, replay=replay)
    try:
        next_event(live)  # the oldest stream, still running
        ids = []
        for n in range(40):
            events = events_of(sse_stream([f"{n}:" + "y" * 1000], replay=replay))
            ids.append(events[0].last_event_id)
        assert replay.size_bytes <= 20_000
        assert live.stream_id in replay  # a live stream is not evicted for finished ones
        assert _code(sse_stream(_not_called, last_event_id=ids[0], replay=replay)) == (
            "unknown_event_id"
        )
        newest = events_of(sse_stream(_not_called, last_event_id=ids[-1], replay=replay))
        assert [e.type for e in newest] == ["done"]
    finally:
        live.close()
        replay.close()


def test_a_live_log_beyond_max_bytes_drops_its_oldest_events() -> None:
    replay = SSEReplay(max_bytes=5_000, clock=FakeClock())
    body = sse_stream(["z" * 1000 for _ in range(20)], replay=replay)
    events = events_of(body)
    assert replay.size_bytes <= 5_000
    assert _code(sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay)) == (
        "events_expired"
    )
    tail = events_of(sse_stream(_not_called, last_event_id=events[-2].last_event_id, replay=replay))
    assert tail == events[-1:]


def test_the_default_max_bytes_is_64_mib() -> None:
    assert SSEReplay().max_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize(
    "options",
    [
        dict(ttl=-1),
        dict(grace=-0.5),
        dict(max_events=0),
        dict(max_streams=0),
        dict(ttl="1"),
        dict(max_bytes=0),
        dict(max_bytes=-5),
        dict(max_bytes=1.5),
        dict(max_bytes="1"),
        dict(max_bytes=True),
        dict(ttl=float("inf")),
        dict(grace=float("nan")),
        dict(clock="now"),
        dict(max_events=None),
    ],
)
def test_every_bad_registry_argument_is_a_config_error(options: dict) -> None:
    with pytest.raises(ConfigError):
        SSEReplay(**options)


def test_cancel_by_id_closes_the_stream_and_its_source_at_once() -> None:
    source = BlockingSource(["a"])
    replay = SSEReplay(grace=30, clock=FakeClock())
    body = sse_stream(source, replay=replay, owner="alice")
    try:
        next_event(body)
        key = body.stream_id
        assert key is not None
        assert replay.cancel(key, owner="mallory") is False
        assert replay.cancel("no-such-stream") is False
        assert not source.closed.is_set()
        assert replay.cancel(key, owner="alice") is True
        assert source.closed.is_set()  # at once, not at the reader's next read
        events = next_event(body)
        assert [json.loads(e.data)["code"] for e in events] == ["cancelled"]
        assert events[0].last_event_id == f"{key}.2"
        with pytest.raises(StopIteration):
            next(body)
        assert body.outcome == "cancelled"
        assert replay.cancel(key) is False  # already over
    finally:
        body.close()
        replay.close()


def test_cancel_stops_a_stream_whose_client_left_during_its_grace() -> None:
    source = BlockingSource(["a"])
    replay = SSEReplay(grace=60, clock=FakeClock())
    body = sse_stream(source, replay=replay)
    next_event(body)
    body.close()
    assert not source.closed.is_set()
    assert replay.cancel(body.stream_id) is True  # type: ignore[arg-type]
    assert source.closed.is_set()
    assert wait_for(
        lambda: not any(t.name.startswith("helixstream-sse-grace") for t in threading.enumerate())
    )
    events = events_of(sse_stream(_not_called, last_event_id=f"{body.stream_id}.1", replay=replay))
    assert [json.loads(e.data)["code"] for e in events] == ["cancelled"]
    replay.close()


def test_cancel_needs_a_str_id() -> None:
    replay = SSEReplay(clock=FakeClock())
    with pytest.raises(TypeError):
        replay.cancel(5)  # type: ignore[arg-type]


def test_closing_the_registry_sends_each_open_stream_a_shutdown_error_and_closes_sources() -> None:
    sources = [BlockingSource(["a"]), BlockingSource(["b"])]
    replay = SSEReplay(grace=60, clock=FakeClock())
    reading = sse_stream(sources[0], replay=replay)
    waiting = sse_stream(sources[1], replay=replay)
    first = next_event(reading)[0]
    next_event(waiting)
    waiting.close()  # its client left: the stream waits for it
    replay.close()
    assert all(s.closed.is_set() for s in sources)
    raw = b"".join(reading)
    events = browser_events(raw)
    assert [e.type for e in events] == ["error"]
    assert json.loads(events[0].data)["code"] == "shutdown"
    assert b"\nid:" not in raw  # the browser keeps the id of the last event it got
    assert first.last_event_id.endswith(".1")
    assert reading.outcome == "cancelled"
    reading.close()
    replay.close()  # twice is fine


def test_closing_the_registry_leaves_a_finished_stream_being_replayed_as_it_was() -> None:
    replay = SSEReplay(clock=FakeClock())
    events = events_of(sse_stream(["a", "b"], replay=replay))
    body = sse_stream(_not_called, last_event_id=events[0].last_event_id, replay=replay)
    assert next(body) == OPENING
    replay.close()
    assert events_of(body) == events[1:]  # no shutdown notice after its "done"


def test_the_byte_count_matches_the_logs_kept_after_concurrent_streams() -> None:
    from helixstream.sse._replay import _ENTRY_OVERHEAD

    replay = SSEReplay(max_bytes=30_000, max_streams=25, clock=FakeClock())
    errors: List[BaseException] = []

    def client(n: int) -> None:
        try:
            events_of(sse_stream([f"{n}-{i} " * 20 for i in range(10)], replay=replay))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    kept = list(replay._entries.values())
    assert replay.size_bytes == sum(_ENTRY_OVERHEAD + e.log.size_bytes for e in kept)
    assert replay.size_bytes <= 30_000 and 0 < len(replay) <= 25
    replay.close()
    assert replay.size_bytes == 0


@pytest.mark.parametrize("max_bytes", [1, 3_000])
def test_a_reader_gets_every_event_however_small_max_bytes_is(max_bytes: int) -> None:
    replay = SSEReplay(max_bytes=max_bytes, clock=FakeClock())
    texts = [f"{n}:" + "z" * 1000 for n in range(20)]
    events = events_of(sse_stream(texts, replay=replay, progress=True))
    assert [e.data for e in events if e.type == "message"] == texts
    assert events[-1].type == "done"


def test_finished_streams_beyond_max_bytes_are_forgotten_when_they_end() -> None:
    replay = SSEReplay(max_bytes=10_000, clock=FakeClock())
    sources = [BlockingSource(["x" * 2000]) for _ in range(4)]
    bodies = [sse_stream(s, replay=replay) for s in sources]
    try:
        for body in bodies:
            next_event(body)
        for source in sources:
            source.end()
        for body in bodies:
            assert next_event(body)[0].type == "done"
        assert replay.size_bytes <= 10_000
    finally:
        for body in bodies:
            body.close()
        replay.close()


def test_the_log_record_of_a_failed_event_stream_carries_its_stream_id(caplog) -> None:
    def failing() -> Iterator[str]:
        yield "a"
        raise RuntimeError("model crashed")

    body = sse_stream(failing(), keepalive=None)
    with caplog.at_level(logging.ERROR, logger="helixstream.sse"):
        b"".join(body)
    (record,) = [r for r in caplog.records if r.name == "helixstream.sse"]
    assert body.stream is not None and record.stream_id == body.stream.id
    assert f"stream {body.stream.id}" in record.getMessage()


# --- the feed's aggregate keeps the text joined, not a string per chunk ------------------
_WORDS = [f"w{i % 97} " for i in range(300)]


def _usage_tokens(body: SSEBody) -> int:
    for event in events_of(body):
        if event.data.startswith("{") and '"usage"' in event.data:
            usage = json.loads(event.data)["usage"]
            if usage:
                return int(usage["completion_tokens"])
    raise AssertionError("no usage event")


def _own(words: List[Any]) -> List[Any]:
    """Each word a str of its own, as a real model's client makes them."""
    return ["".join(list(w)) if isinstance(w, str) else w for w in words]


@pytest.mark.timeout(20)
def test_a_long_stream_keeps_its_texts_joined_and_counts_the_same_tokens() -> None:
    body = sse_stream(_own(_WORDS), format="openai")
    stage = body._reader.stream._core.stages[-1]  # noqa: SLF001
    assert _usage_tokens(body) == estimate_tokens("".join(_WORDS))
    # what the aggregate held at the end: a few texts one by one, the rest joined
    assert len(stage._contents) < 64 and len(stage._folded) == 300 // 64  # noqa: SLF001
    assert stage.result().full_content == "".join(_WORDS)
    assert stage.result().chunk_count == 300


@pytest.mark.timeout(20)
@pytest.mark.parametrize("at", [3, 200])
def test_a_reported_count_before_or_after_the_joining_keeps_the_total_exact(at: int) -> None:
    items: List[Any] = list(_WORDS)
    items.insert(at, StreamChunk("counted ", tokens=50))
    body = sse_stream(_own(items), format="openai")
    stage = body._reader.stream._core.stages[-1]  # noqa: SLF001
    assert _usage_tokens(body) == 50 + estimate_tokens("".join(_WORDS))
    result = stage.result()
    assert result.full_content == "".join(_WORDS[:at]) + "counted " + "".join(_WORDS[at:])
    assert result.chunk_count == 301


@pytest.mark.timeout(20)
def test_a_stream_the_caller_made_keeps_every_chunk() -> None:
    # sse_stream(output) with the caller's own stream: its get_result() is the caller's
    stream, get_result = ChunkAggregator().aggregate_chunks(_own(_WORDS))
    read_all(sse_stream(stream))
    assert get_result().chunks == _WORDS


@pytest.mark.timeout(30)
def test_a_result_taken_while_the_texts_are_joined_is_always_a_whole_prefix() -> None:
    from helixstream._aggregate import aggregate, folder_of

    words = [f"x{i} " for i in range(3000)]
    stream, get_result = aggregate(words, [], stop=None, name="t", keep_chunks=False)
    from helixstream._engine import give_texts

    give_texts(stream)
    fold = folder_of(stream)
    assert fold is not None
    seen: List[Any] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(get_result())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for n, _text in enumerate(stream, 1):
            if n % 7 == 0:
                fold()
    finally:
        done.set()
        watcher.join(10)
    assert not watcher.is_alive()
    seen.append(get_result())
    assert len(seen) > 10
    for result in seen:
        # the chunks counted and the text are the same moment's
        assert result.full_content == "".join(words[: result.chunk_count])
        assert result.character_count == len(result.full_content)
    assert seen[-1].chunk_count == 3000 and seen[-1].chunks == []
    assert seen[-1].total_tokens == estimate_tokens("".join(words))


def test_fold_changes_nothing_for_an_aggregate_that_keeps_its_chunks() -> None:
    from helixstream._aggregate import folder_of

    stream, get_result = ChunkAggregator().aggregate_chunks(["a ", "b "])
    assert folder_of(stream) is None
    stage = stream._core.stages[-1]  # noqa: SLF001
    list(stream)
    stage.fold()
    assert get_result().chunks == ["a ", "b "]


@pytest.mark.parametrize("fails", [False, True])
def test_a_finished_stream_kept_for_resume_releases_its_aggregate_and_its_text(
    fails: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # found in review: the feed kept its aggregate's fold() after the end, and with it
    # every text of the stream (and a failure's traceback, and through it the source)
    # (the failure is logged with its traceback: pytest's log capture would keep it)
    monkeypatch.setattr(logging.getLogger("helixstream.sse"), "disabled", True)
    replay = SSEReplay(clock=FakeClock())
    source = BlockingSource([f"w{k} " for k in range(200)])
    if fails:
        source.fail(RuntimeError("the model broke"))
    else:
        source.end()
    source_ref = weakref.ref(source)
    body = sse_stream(source, replay=replay)
    del source
    stage_ref = weakref.ref(body._reader.stream._core.stages[-1])  # noqa: SLF001
    events = events_of(body)
    assert events[-1].type == ("error" if fails else "done")
    del body
    gc.collect()
    assert stage_ref() is None, gc.get_referrers(stage_ref())
    assert source_ref() is None
    assert len(replay) == 1  # the log is kept for a resume
