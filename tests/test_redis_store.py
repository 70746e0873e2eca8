"""The Redis keys of RedisReplay, against a real redis-server (started on a free port)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from helixstream.sse._redis_store import (
    RedisStore,
    key_epoch,
    make_client,
    new_key,
    owner_digest,
    parse_event_id,
)

from .redis_server import RedisServer
from .redis_server import redis_server as _redis_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _redis_server(tmp_path)


@pytest.fixture
def store(server: RedisServer) -> Iterator[RedisStore]:
    client = make_client(server.url, 1.0, 0.5)
    yield RedisStore(client, "t:", max_events=100, ttl=60.0, lease=1.5)
    client.close()


def test_event_ids_are_parsed_with_bounds() -> None:
    key = new_key("abc123")
    assert parse_event_id(f"{key}.7") == (key, 7)
    assert parse_event_id(f"{key}.{'9' * 18}") == (key, 10**18 - 1)
    for bad in (
        f"{key}.{'9' * 19}",  # longer than any id we issue (and never int() of 4,301 digits)
        f"{key}." + "1" * 5000,
        f"{key}.-1",
        f"{key}.１",  # a fullwidth digit: isdigit() but not ASCII
        f"{key}.",
        "7",
        "zzzzzz" + key[6:] + ".1",  # not an epoch
        key + "x.1",
        f"{key}\n.1",
    ):
        assert parse_event_id(bad) is None, bad


def test_owner_digests_tell_types_apart() -> None:
    assert owner_digest("1") != owner_digest(1)
    assert owner_digest(None) == owner_digest(None)
    assert len(owner_digest("user-" * 1000)) == 32


def test_events_are_entries_numbered_as_the_ids(store: RedisStore) -> None:
    epoch = store.epoch()
    assert store.epoch() == epoch  # created once
    key = new_key(epoch)
    assert store.create(key, "alice", "p1", 1500) == epoch
    store.append_once(key, [(1, b"a"), (2, b"b"), (3, b"c")])
    store.append_once(key, [(4, b"d")], end="done", last=3)
    state = store.state(key, 1, 10)
    assert state.epoch == epoch and state.meta == {"owner": owner_digest("alice"), "proc": "p1"}
    assert state.after == [(2, b"b", None), (3, b"c", None), (4, b"d", None), (5, b"", "done")]
    assert state.first == (1, b"a", None) and state.last == (5, b"", "done")
    assert store.read(key, 3, 10, 10) == [(4, b"d", None), (5, b"", "done")]
    assert store.after_last(key) == (5, b"", "done")
    assert 0 < store.client.pttl(store.events_key(key)) <= 60_000


def test_a_stream_is_capped_near_max_events(store: RedisStore) -> None:
    key = new_key(store.epoch())
    store.create(key, None, "p1", 1500)
    for start in range(1, 1001, 100):
        store.append_once(key, [(n, b"x") for n in range(start, start + 100)])
    state = store.state(key, 0, 1)
    assert state.last == (1000, b"x", None)
    assert state.first is not None and 800 < state.first[0] <= 901  # MAXLEN ~ 100


def test_a_flush_changes_the_epoch(store: RedisStore) -> None:
    epoch = store.epoch()
    key = new_key(epoch)
    store.create(key, None, "p1", 1500)
    store.client.flushall()
    after, alive, last = store.alive("p1", key)
    assert after is None and not alive and last is None
    again = store.epoch()
    assert again != epoch and key_epoch(new_key(again)) == again
    # a stream made with a key of the old epoch is refused (its meta is not kept)
    assert store.create(key, None, "p1", 1500) == again
    assert store.state(key, 0, 1).meta == {}


def test_heartbeats_and_leases(store: RedisStore) -> None:
    key = new_key(store.epoch())
    epoch, present = store.heartbeat("p2", 1500, [key], [key, "nothere"])
    assert epoch == store.epoch() and present == [True, False]
    assert store.alive("p2", key) == (epoch, True, None)
    store.forget_process("p2")
    assert store.alive("p2", key) == (epoch, False, None)


def test_a_client_made_with_decoded_replies_still_gives_bytes(server: RedisServer) -> None:
    import redis

    client: Any = redis.Redis.from_url(server.url, decode_responses=True)
    store = RedisStore(make_client(client, 1.0, 0.5), "d:", max_events=10, ttl=60.0, lease=1.5)
    key = new_key(store.epoch())
    store.create(key, None, "p", 1500)
    store.append_once(key, [(1, "é\n".encode())], end="done", last=0)
    assert store.read(key, 0, 10, 10) == [(1, "é\n".encode(), None), (2, b"", "done")]
    client.close()


def test_cancel_requests_are_kept_for_the_owner_until_taken(store: RedisStore) -> None:
    key, other = new_key(store.epoch()), new_key(store.epoch())
    assert store.request_cancel(key, "p3", "cancel " + key) == 0  # nobody listens here
    store.request_cancel(other, "p3", "cancel " + other)
    assert store.client.pttl(store.cancels_key("p3")) > 0  # kept no longer than ttl
    assert sorted(store.take_cancels("p3")) == sorted([key, other])
    assert store.take_cancels("p3") == []  # taken once
    store.request_cancel(key, "p3", "cancel " + key)
    store.forget_process("p3")
    assert store.take_cancels("p3") == []


def test_events_are_encoded_as_the_generic_command_would(store: RedisStore) -> None:
    """encode() writes what every XADD of a write shares once, then one format per
    event: byte for byte the generic RESP encoding of each command."""
    from helixstream.sse._redis_store import _command

    key = new_key(store.epoch())
    ev = store.events_key(key).encode()
    cap = store._cap
    for last, batch in ((0, [(1, b"data: a\n\n"), (2, b"x" * 300)]),
                        (5, [(6, b""), (7, "data: é\n\n".encode())])):
        got = store.encode(key, batch, None, last)
        extra = [b"NOMKSTREAM"] if last else []
        want = [_command(b"XADD", ev, *extra, b"MAXLEN", b"~", cap, b"0-%d" % seq, b"d", data)
                for seq, data in batch]
        assert got[:len(batch)] == want
