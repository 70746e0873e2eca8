"""Rate limiting: exact reservation times on an injected clock, stopping, streams, stage.

Time is fake in every test that checks a time: the limiter's ``wait`` advances the fake
clock (or records the wait and returns at once), so no test waits for real and none
asserts on wall-clock speed. Rates are powers of two, so the expected times are exact.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import pytest

from helixstream._chunk import StreamChunk
from helixstream._errors import ConfigError, StreamDecodeError
from helixstream._ratelimit import (
    BurstRateLimiter,
    RateLimiter,
    RateLimitStage,
    item_cost,
    wait_on_event,
)
from helixstream._engine import run_stages
from helixstream._tokens import estimate_tokens

from .conftest import wait_for
from .sources import BlockingSource, CountingGenerator


class FakeTime:
    """A clock and a ``wait`` for the limiter.

    With ``advance`` (the default), a wait moves the clock on by its length, as if the
    caller slept; without it, the clock stands still and each wait is only recorded
    (as the absolute time waited for), as if every caller were still waiting.
    ``stopped`` scripts the answers of the waits (True: "the stop event was set").
    """

    def __init__(self, now: float = 0.0, advance: bool = True) -> None:
        self.now = now
        self.advance = advance
        self.waits: List[float] = []  # seconds
        self.targets: List[float] = []  # absolute times waited for
        self.stopped: List[bool] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def wait(self, stop: Optional[threading.Event], seconds: float) -> bool:
        assert seconds > 0
        with self._lock:
            self.waits.append(seconds)
            self.targets.append(self.now + seconds)
            if self.stopped and self.stopped.pop(0):
                return True
            if self.advance:
                self.now += seconds
            return False

    def at(self, t: float) -> None:
        assert t >= self.now, "time only moves forward"
        self.now = t


def burst_limiter(rate: float, burst: float, fake: FakeTime) -> BurstRateLimiter:
    return BurstRateLimiter(rate, burst, clock=fake.clock, wait=fake.wait)


def limiter(rate: float, fake: FakeTime) -> RateLimiter:
    return RateLimiter(rate, clock=fake.clock, wait=fake.wait)


# --- exact reservation times -----------------------------------------------------------

# (rate, burst or None for RateLimiter, [(call at or None for "right after", tokens,
# release time)])
SCHEDULES = [
    pytest.param(4, None, [(0, 1, 0), (0, 1, 0.25), (None, 1, 0.5), (None, 1, 0.75)],
                 id="RateLimiter paces from the first token: 1/rate apart"),
    pytest.param(10, None, [(0, 1, 0), (None, 3, 0.3), (None, 1, 0.4)],
                 id="RateLimiter: a unit of n tokens comes n/rate after the last"),
    pytest.param(4, 2, [(0, 1, 0), (None, 1, 0), (None, 1, 0.25), (None, 1, 0.5)],
                 id="burst 2 goes at once, then 1/rate apart"),
    pytest.param(8, 1, [(0, 1, 0), (None, 1, 0.125), (None, 2, 0.375), (None, 4, 0.875)],
                 id="a request of n tokens waits n/rate"),
    pytest.param(4, 2, [(0, 2, 0), (10, 3, 10.25), (None, 1, 10.5)],
                 id="after a pause the bucket is full again, never fuller"),
    pytest.param(4, 4, [(0, 4, 0), (0.5, 3, 0.75)],
                 id="a bucket half refilled gives what it holds, then waits"),
    pytest.param(2, 1, [(0, 3, 1.0), (None, 1, 1.5)],
                 id="larger than the burst from a full bucket: (n - burst)/rate"),
    pytest.param(4, 2, [(0, 2, 0), (None, 8, 2.0), (None, 1, 2.25)],
                 id="larger than the burst from an empty bucket: n/rate"),
    pytest.param(0.5, None, [(0, 1, 0), (None, 1, 2.0), (None, 2, 6.0)],
                 id="fractional rate, burst 1"),
    pytest.param(4, 1, [(0, 1, 0), (None, 0, 0), (None, 1, 0.25), (None, 0, 0.25)],
                 id="zero tokens never wait"),
    pytest.param(4, 2, [(0, 1.5, 0), (None, 1, 0.125)],
                 id="fractional costs"),
    pytest.param(0, None, [(0, 1, 0), (0, 10 ** 9, 0), (5, 1, 5)],
                 id="rate 0 is unlimited"),
]


@pytest.mark.parametrize("rate, burst, steps", SCHEDULES)
def test_acquire_releases_at_the_reserved_time(
    rate: float, burst: Optional[float], steps: Sequence[Tuple[Optional[float], float, float]]
) -> None:
    fake = FakeTime()
    lim = limiter(rate, fake) if burst is None else burst_limiter(rate, burst, fake)
    released = []
    for call_at, tokens, _ in steps:
        if call_at is not None:
            fake.at(call_at)
        assert lim.acquire(tokens) is True
        released.append(fake.now)
    assert released == [expected for _, _, expected in steps]


def test_rate_limiter_paces_with_a_bucket_of_one_token() -> None:
    assert RateLimiter(50).burst == 1
    assert RateLimiter(0.25).burst == 1
    assert RateLimiter(0).burst == 1
    assert BurstRateLimiter(50, 100).burst == 100
    assert RateLimiter(50).tokens_per_second == 50


def test_a_new_limiter_starts_with_a_full_bucket() -> None:
    fake = FakeTime(now=1000.0)
    lim = burst_limiter(4, 3, fake)
    assert lim.available() == 3
    assert [lim.acquire() for _ in range(3)] == [True] * 3
    assert fake.waits == []
    assert lim.available() == 0


def test_oversized_request_is_served_not_refused_forever() -> None:
    fake = FakeTime()
    lim = burst_limiter(4, 1, fake)
    lim.acquire(1)  # empty
    assert lim.acquire(40) is True
    assert fake.now == 10.0  # 40 tokens at 4/s from an empty bucket
    assert lim.acquire(1) is True
    assert fake.now == 10.25  # and the next one follows on


def test_sleeping_late_does_not_lower_the_rate() -> None:
    # Each caller wakes 0.1 s late (less than the burst's worth); the reservations
    # still follow 1/rate apart from the previous reservation, not from the wake-up.
    fake = FakeTime()

    def late_wait(stop: Optional[threading.Event], seconds: float) -> bool:
        fake.targets.append(fake.now + seconds)
        fake.now += seconds + 0.125
        return False

    lim = BurstRateLimiter(4, 1, clock=fake.clock, wait=late_wait)
    lim.acquire()
    for _ in range(8):
        lim.acquire()
    assert fake.targets == [0.25 * k for k in range(1, 9)]


def test_available_counts_debt_of_callers_still_waiting() -> None:
    fake = FakeTime(advance=False)
    lim = burst_limiter(4, 2, fake)
    lim.acquire(2)
    lim.acquire(3)  # reserved for 0.75; the clock stands at 0
    assert fake.targets == [0.75]
    assert lim.available() == -3
    fake.at(0.75)
    assert lim.available() == 0
    fake.at(100)
    assert lim.available() == 2
    assert RateLimiter(0).available() == math.inf


# --- set_rate and reset ------------------------------------------------------------------


def test_set_rate_keeps_accumulated_credit() -> None:
    fake = FakeTime()
    lim = burst_limiter(4, 8, fake)
    lim.acquire(8)  # empty at 0
    fake.at(1.0)  # 4 tokens of credit at the old rate
    lim.set_rate(8)
    lim.acquire(4)
    assert fake.now == 1.0  # the credit was kept
    lim.acquire(1)
    assert fake.now == 1.125  # then the new rate


def test_set_rate_keeps_debt_and_waiters_keep_their_times() -> None:
    fake = FakeTime(advance=False)
    lim = burst_limiter(4, 4, fake)
    lim.acquire(4)
    lim.acquire(4)  # a caller waits until 1.0: 4 tokens owed
    lim.set_rate(2)
    lim.acquire(1)  # 4 owed + 1, at 2 tokens/s
    assert fake.targets == [1.0, 2.5]


def test_set_rate_takes_effect_for_the_next_acquire() -> None:
    fake = FakeTime()
    lim = burst_limiter(4, 1, fake)
    lim.acquire()
    lim.acquire()
    assert fake.now == 0.25
    lim.set_rate(1)
    lim.acquire()
    assert fake.now == 1.25
    assert lim.tokens_per_second == 1 and lim.burst == 1


def test_rate_limiter_set_rate_keeps_pacing_from_where_it_was() -> None:
    fake = FakeTime()
    lim = limiter(2, fake)
    lim.acquire(1)  # the first token goes at once
    lim.set_rate(8)
    assert lim.burst == 1
    lim.acquire(1)
    assert fake.now == 0.125
    lim.acquire(1)
    assert fake.now == 0.25


def test_set_rate_down_caps_the_credit_at_the_new_burst() -> None:
    fake = FakeTime()
    lim = burst_limiter(8, 8, fake)  # full: 8 tokens
    lim._burst_for = lambda rate: 2.0  # type: ignore[method-assign]  # as a smaller bucket
    lim.set_rate(2)  # burst 2
    lim.acquire(2)
    assert fake.now == 0
    lim.acquire(1)
    assert fake.now == 0.5


def test_set_rate_to_zero_is_unlimited_and_back_starts_full() -> None:
    fake = FakeTime()
    lim = burst_limiter(4, 2, fake)
    lim.acquire(2)
    lim.set_rate(0)
    assert lim.acquire(1000) is True
    assert fake.now == 0
    lim.set_rate(4)
    lim.acquire(2)
    assert fake.now == 0  # a full bucket
    lim.acquire(1)
    assert fake.now == 0.25


def test_reset_refills_the_bucket() -> None:
    fake = FakeTime()
    lim = burst_limiter(4, 2, fake)
    lim.acquire(2)
    lim.acquire(1)
    assert fake.now == 0.25
    lim.reset()
    lim.acquire(2)
    assert fake.now == 0.25  # full again
    lim.acquire(1)
    assert fake.now == 0.5


def test_reset_leaves_callers_already_waiting_alone() -> None:
    fake = FakeTime(advance=False)
    lim = burst_limiter(4, 1, fake)
    lim.acquire()
    lim.acquire()  # waits until 0.25
    lim.reset()
    lim.acquire()  # a full bucket: at once
    lim.acquire()
    assert fake.targets == [0.25, 0.25]


# --- configuration errors --------------------------------------------------------------

BAD_RATES = [-1, -0.5, math.nan, math.inf, True, False, "10", None, [10]]


@pytest.mark.parametrize("value", BAD_RATES, ids=repr)
def test_bad_rate_is_a_config_error_naming_field_and_value(value: Any) -> None:
    for make in (lambda: RateLimiter(value), lambda: BurstRateLimiter(value, 5)):
        with pytest.raises(ConfigError) as info:
            make()
        message = str(info.value)
        assert "'tokens_per_second'" in message
        assert f"(got {value!r})" in message
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [0, 0.5, -1, math.nan, True, "2", None], ids=repr)
def test_bad_burst_is_a_config_error_naming_field_and_value(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        BurstRateLimiter(10, value)
    if isinstance(value, str):  # a quoted number is called a string (issue 15)
        expected = f"'burst' must be a number >= 1, not a string (got {value!r}); write the number without quotes"
    else:
        expected = f"'burst' must be a number >= 1 (got {value!r})"
    assert str(info.value) == expected


def test_config_error_message_for_a_negative_rate() -> None:
    with pytest.raises(ConfigError) as info:
        RateLimiter(-5)
    assert str(info.value) == "'tokens_per_second' must be tokens per second >= 0 (got -5)"


def test_set_rate_checks_the_rate_and_keeps_the_old_one() -> None:
    lim = RateLimiter(10)
    with pytest.raises(ConfigError, match="tokens_per_second"):
        lim.set_rate(-1)
    assert lim.tokens_per_second == 10


@pytest.mark.parametrize(
    "tokens, error",
    [(-1, ValueError), (math.nan, ValueError), (math.inf, ValueError), ("1", TypeError),
     (True, TypeError), (None, TypeError)],
    ids=repr,
)
def test_acquire_checks_the_token_count(tokens: Any, error: type) -> None:
    with pytest.raises(error, match="tokens"):
        RateLimiter(10).acquire(tokens)


def test_clock_and_wait_must_be_callable() -> None:
    with pytest.raises(TypeError, match="clock"):
        RateLimiter(1, clock=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wait"):
        RateLimiter(1, wait="no")  # type: ignore[arg-type]


# --- stopping ------------------------------------------------------------------------------


def test_a_stop_already_set_returns_false_without_reserving() -> None:
    fake = FakeTime()
    lim = burst_limiter(4, 1, fake)
    stop = threading.Event()
    stop.set()
    assert lim.acquire(1, stop) is False
    assert RateLimiter(0).acquire(1, stop) is False  # stopped wins, even unlimited
    lim.acquire()
    assert fake.now == 0  # the full bucket was untouched


def test_a_stopped_wait_gives_the_reservation_back() -> None:
    fake = FakeTime()
    lim = burst_limiter(4, 1, fake)
    lim.acquire()
    fake.stopped = [True]
    assert lim.acquire(4, threading.Event()) is False
    assert fake.now == 0  # did not wait
    lim.acquire(1)
    assert fake.now == 0.25  # as if the stopped request had never been made


def test_stopped_waiters_give_back_last_first_and_never_under_a_later_one() -> None:
    fake = FakeTime(advance=False)
    lim = burst_limiter(4, 1, fake)
    lim.acquire()
    a = lim._reserve(1)
    b = lim._reserve(1)
    assert a is not None and b is not None and (a.at, b.at) == (0.25, 0.5)
    lim._cancel(a)  # b depends on it: kept, so b is not served early
    lim.acquire()
    assert fake.targets[-1] == 0.75
    fresh = FakeTime(advance=False)
    lim = burst_limiter(4, 1, fresh)
    lim.acquire()
    a = lim._reserve(1)
    b = lim._reserve(1)
    assert a is not None and b is not None
    lim._cancel(b)
    lim._cancel(a)  # last first: both given back
    lim.acquire()
    assert fresh.targets == [0.25]


def test_a_reservation_whose_time_came_is_not_given_back() -> None:
    fake = FakeTime(advance=False)
    lim = burst_limiter(4, 1, fake)
    lim.acquire()
    r = lim._reserve(1)
    assert r is not None
    fake.at(0.25)
    lim._cancel(r)
    lim.acquire()
    assert fake.targets[-1] == 0.5


def test_stop_from_another_thread_interrupts_a_long_wait_at_once() -> None:
    reserved = threading.Event()
    calls = []

    def clock() -> float:
        now = time.monotonic()
        calls.append(now)
        if len(calls) == 2:  # the reservation, after the first (emptying) acquire
            reserved.set()
        return now

    lim = BurstRateLimiter(1, 1, clock=clock)  # the real wait, on the stop event
    lim.acquire()
    stop = threading.Event()
    result: List[bool] = []
    worker = threading.Thread(target=lambda: result.append(lim.acquire(3600, stop)))
    worker.start()
    assert reserved.wait(10)
    stop.set()
    worker.join(10)
    assert not worker.is_alive()
    assert result == [False]
    assert lim.available() > -1  # the hour's reservation was given back


def test_wait_on_event_reports_a_stop() -> None:
    stop = threading.Event()
    assert wait_on_event(stop, 0) is False
    stop.set()
    assert wait_on_event(stop, 3600) is True
    assert wait_on_event(None, 0) is False


# --- concurrency ---------------------------------------------------------------------------


def test_concurrent_callers_get_distinct_evenly_spaced_reservations() -> None:
    fake = FakeTime(advance=False)
    lim = burst_limiter(4, 1, fake)
    lim.acquire()  # empty at 0
    threads, per_thread = 8, 5
    start = threading.Barrier(threads)
    errors: List[BaseException] = []

    def work(k: int) -> None:
        try:
            start.wait(10)
            for _ in range(per_thread):
                assert lim.acquire() is True
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert not any(w.is_alive() for w in workers) and not errors
    assert sorted(fake.targets) == [0.25 * k for k in range(1, threads * per_thread + 1)]


def test_concurrent_callers_are_each_served_in_the_order_they_asked() -> None:
    # Each thread's own reservations increase: nobody's later request overtakes its
    # earlier one, and the lock hands out times one at a time.
    fake = FakeTime(advance=False)
    got: List[List[float]] = [[] for _ in range(4)]
    lock = threading.Lock()
    original = fake.wait

    def wait(stop: Optional[threading.Event], seconds: float) -> bool:
        with lock:
            got[int(threading.current_thread().name)].append(fake.now + seconds)
        return original(stop, seconds)

    lim = BurstRateLimiter(8, 1, clock=fake.clock, wait=wait)
    lim.acquire()
    start = threading.Barrier(4)

    def work() -> None:
        start.wait(10)
        for _ in range(10):
            lim.acquire()

    workers = [threading.Thread(target=work, name=str(k)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert not any(w.is_alive() for w in workers)
    for times in got:
        assert times == sorted(times) and len(times) == 10
    everything = sorted(t for times in got for t in times)
    assert everything == [0.125 * k for k in range(1, 41)]


# --- item costs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item, expected",
    [
        ("", 0),
        ("a", 1),
        ("   ", 1),
        ("Hello, world! 3.14", estimate_tokens("Hello, world! 3.14")),
        (StreamChunk("whatever text", tokens=9), 9),
        (StreamChunk("abc", tokens=0), 0),
        (StreamChunk("", tokens=None), 0),
        (StreamChunk("", metadata={"usage": 3}), 0),
        (StreamChunk("two words"), estimate_tokens("two words")),
    ],
    # a chunk's repr holds its timestamp: ids must be the same in every collection
    # (pytest-xdist compares its workers' collections)
    ids=lambda v: repr(v.content if isinstance(v, StreamChunk) else v),
)
def test_item_cost_is_the_reported_count_else_the_estimate(item: Any, expected: int) -> None:
    assert item_cost(item) == expected


def test_item_cost_uses_the_counter_and_charges_nonempty_text_at_least_one() -> None:
    assert item_cost("abcdef", len) == 6
    assert item_cost("abc", lambda text: 0) == 1
    assert item_cost(StreamChunk("abc", tokens=2), len) == 2


# --- limit_stream and limit_chunks -------------------------------------------------------


def mixed_items() -> List[Any]:
    return [
        "Hello",
        StreamChunk(" world", tokens=7),
        b"caf\xc3",  # a character cut across two bytes items
        b"\xa9!",
        "",
        StreamChunk("", metadata={"k": 1}),
        "end",
    ]


# costs with counter=len: 5, 7 (reported), 3 ("caf"), 2 ("é!"), 0, 0, 3
MIXED_RELEASES = [5.0, 12.0, 15.0, 17.0, 17.0, 17.0, 20.0]


def test_limit_stream_yields_every_item_unchanged_in_order_at_its_cost() -> None:
    fake = FakeTime()
    lim = burst_limiter(1, 1, fake)
    lim.acquire()  # empty at 0
    items = mixed_items()
    out, released = [], []
    for item in lim.limit_stream(items, counter=len):
        out.append(item)
        released.append(fake.now)
    assert len(out) == len(items) and all(a is b for a, b in zip(out, items))
    assert released == MIXED_RELEASES


def test_limit_stream_counts_with_the_estimator_by_default() -> None:
    fake = FakeTime()
    lim = burst_limiter(1, 1, fake)
    lim.acquire()
    text = ["The quick brown ", "fox jumps 1234567 ", "over"]
    assert list(lim.limit_stream(text)) == text
    # whitespace at the end of a piece is not charged: it joins the next word
    assert fake.waits == [estimate_tokens(t.rstrip()) for t in text]


def test_limit_stream_ends_at_once_when_stop_is_set_and_closes_the_source() -> None:
    fake = FakeTime()
    lim = burst_limiter(1, 1, fake)
    source = CountingGenerator(["a", "b", "c", "d"])
    stop = threading.Event()
    out = []
    for item in lim.limit_stream(source, stop):
        out.append(item)
        if item == "b":
            stop.set()
    assert out == ["a", "b"]
    assert source.produced == 2  # nothing more was pulled from the source
    assert source.closed.is_set()


def test_limit_stream_stopped_during_a_wait_yields_nothing_more() -> None:
    fake = FakeTime()
    lim = burst_limiter(1, 1, fake)
    fake.stopped = [False, True]
    source = CountingGenerator(["a", "b", "c", "d"])
    assert list(lim.limit_stream(source, threading.Event())) == ["a", "b"]
    assert source.closed.is_set()


def test_limit_stream_closed_early_by_the_reader_closes_the_source() -> None:
    source = CountingGenerator(["a", "b", "c"])
    stream = RateLimiter(0).limit_stream(source)
    assert next(stream) == "a"
    stream.close()  # type: ignore[attr-defined]
    assert source.closed.is_set()


def test_limit_stream_checks_its_input() -> None:
    with pytest.raises(TypeError):
        RateLimiter(1).limit_stream(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item 1 is int"):
        list(RateLimiter(0).limit_stream(["a", 5]))
    with pytest.raises(StreamDecodeError):
        list(RateLimiter(0).limit_stream([b"ok", b"\xc3"]))  # cut at the end


def test_limit_chunks_puts_every_item_in_order_and_returns_the_count() -> None:
    fake = FakeTime()
    lim = burst_limiter(1, 1, fake)
    lim.acquire()
    out: "queue.Queue[Any]" = queue.Queue()
    items = mixed_items()
    assert lim.limit_chunks(items, out, counter=len) == len(items)
    got = [out.get_nowait() for _ in range(len(items))]
    assert all(a is b for a, b in zip(got, items)) and out.empty()
    assert fake.now == MIXED_RELEASES[-1]


def test_limit_chunks_stops_early_when_stop_is_set() -> None:
    fake = FakeTime()
    lim = burst_limiter(1, 1, fake)
    fake.stopped = [False, False, True]
    out: "queue.Queue[Any]" = queue.Queue()
    source = CountingGenerator(["a", "b", "c", "d", "e"])
    assert lim.limit_chunks(source, out, threading.Event()) == 3
    assert [out.get_nowait() for _ in range(3)] == ["a", "b", "c"]
    assert out.empty() and source.closed.is_set()


def test_limit_chunks_blocked_on_a_full_queue_ends_when_stop_is_set() -> None:
    out: "queue.Queue[Any]" = queue.Queue(maxsize=1)
    out.put("already there")
    stop = threading.Event()
    pulled = threading.Event()

    def source() -> Any:
        pulled.set()
        yield "a"
        yield "b"

    result: List[int] = []
    worker = threading.Thread(target=lambda: result.append(RateLimiter(0).limit_chunks(
        source(), out, stop)))
    worker.start()
    assert pulled.wait(10)  # "a" is being put into the full queue
    stop.set()
    worker.join(10)
    assert not worker.is_alive()
    assert result == [0] and out.get_nowait() == "already there"


def test_limit_chunks_into_any_queue_like_object() -> None:
    class ListQueue:
        def __init__(self) -> None:
            self.items: List[Any] = []

        def put(self, item: Any) -> None:
            self.items.append(item)

    out = ListQueue()
    stop = threading.Event()
    assert RateLimiter(0).limit_chunks(["a", "b"], out, stop) == 2  # type: ignore[arg-type]
    assert out.items == ["a", "b"]


# --- the stage ---------------------------------------------------------------------------


def test_stage_passes_items_after_paying_their_cost() -> None:
    fake = FakeTime()
    lim = burst_limiter(1, 1, fake)
    lim.acquire()
    stage = RateLimitStage(lim, counter=len)
    chunk = StreamChunk("xyz", tokens=4)
    assert stage("ab") == ["ab"]
    assert stage(chunk)[0] is chunk
    assert stage.flush() == []
    assert fake.waits == [2, 4]


def test_stage_returns_nothing_once_its_stop_event_is_set() -> None:
    stop = threading.Event()
    stage = RateLimitStage(RateLimiter(0), stop)
    assert stage("a") == ["a"]
    stop.set()
    assert stage("b") == []


def test_stage_takes_an_event_getter_and_bind_replaces_it() -> None:
    first, second = threading.Event(), threading.Event()
    stage = RateLimitStage(RateLimiter(0), lambda: first)
    assert stage.stop is first
    stage.bind(second)
    assert stage.stop is second
    first.set()
    assert stage("a") == ["a"]  # waits on the bound event only
    with pytest.raises(TypeError, match="stop"):
        RateLimitStage(RateLimiter(0), 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limiter"):
        RateLimitStage(object())  # type: ignore[arg-type]


def test_stage_in_a_stream_paces_every_item_in_order(thread_baseline: Callable[[], None]) -> None:
    fake = FakeTime()
    lim = burst_limiter(1, 1, fake)
    lim.acquire()
    output = run_stages(mixed_items(), [RateLimitStage(lim, counter=len)])
    with output:
        got = list(output)
    # the engine decodes bytes (the cut character arrives whole), drops the empty
    # piece and passes on chunks (the empty one carries metadata)
    assert [c if isinstance(c, str) else c.content for c in got] == [
        "Hello", " world", "caf", "é!", "", "end"]
    assert fake.waits == [5, 7, 3, 2, 3]
    assert all(not t.is_alive() for t in output.threads())
    thread_baseline()


def test_stage_is_bound_to_the_stream_so_close_ends_a_long_wait(
    thread_baseline: Callable[[], None],
) -> None:
    lim = BurstRateLimiter(1 / 3600, 1)  # a token an hour, on the real clock
    source = BlockingSource(["first ", "second ", "third "])
    output = run_stages(source, [RateLimitStage(lim, counter=lambda text: 1)], prefetch=True)
    assert next(output) == "first "  # the burst; "second " now waits an hour
    ended = threading.Event()
    got: List[Any] = []

    def reader() -> None:
        got.extend(output)  # waits in the limiter, in this thread
        ended.set()

    t = threading.Thread(target=reader)
    t.start()
    assert wait_for(lambda: len(source.produced) >= 2)
    output.close()
    assert ended.wait(5) and got == []
    t.join(5)
    assert all(not th.is_alive() for th in output.threads())
    assert output.cancelled
    assert lim.available() > -1  # the hour's reservation was given back
    thread_baseline()


def test_the_callers_stop_event_ends_a_stream_waiting_on_the_limiter(
    thread_baseline: Callable[[], None],
) -> None:
    lim = BurstRateLimiter(1 / 3600, 1)
    stop = threading.Event()
    output = run_stages(["a", "b", "c"], [RateLimitStage(lim, counter=lambda text: 1)], stop=stop)
    assert next(output) == "a"
    stop.set()
    assert list(output) == []
    assert wait_for(lambda: all(not t.is_alive() for t in output.threads()))
    thread_baseline()


def test_a_shared_limiter_paces_two_streams_together(thread_baseline: Callable[[], None]) -> None:
    fake = FakeTime()
    lock = threading.Lock()

    def wait(stop: Optional[threading.Event], seconds: float) -> bool:
        with lock:
            fake.targets.append(fake.now + seconds)
        return False  # the fake clock stands still: each reservation is recorded

    lim = BurstRateLimiter(4, 1, clock=fake.clock, wait=wait)
    lim.acquire()
    outs = [run_stages([f"{k}{i}" for i in range(5)], [RateLimitStage(lim, counter=lambda t: 1)])
            for k in "ab"]
    for out in outs:
        with out:
            assert len(list(out)) == 5
    assert sorted(fake.targets) == [0.25 * k for k in range(1, 11)]
    thread_baseline()


def test_repr_names_rate_and_burst() -> None:
    assert repr(BurstRateLimiter(5, 10)) == "BurstRateLimiter(tokens_per_second=5, burst=10)"
    assert "RateLimiter(tokens_per_second=5" in repr(RateLimitStage(RateLimiter(5)))
