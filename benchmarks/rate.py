"""Achieved rate of the rate limiters, against a naive sleep and a polling bucket.

For each target rate (100 and 1000 tokens/s by default), over ``--seconds`` (2 s) on
the real clock, one token at a time:

- ours: ``RateLimiter(rate)`` (burst one second's worth), and
  ``BurstRateLimiter(rate, 1)`` (strict pacing, no slack for late wake-ups);
- naive: ``time.sleep(1 / rate)`` before each token;
- polling: a bucket of 1 token refilled from the elapsed time, checked every 1 ms;
- engine: ``RateLimiter(rate)`` as a ``RateLimitStage`` of a real stream (source ->
  stage -> aggregation -> reader, through ``helixstream._aggregate.aggregate``): the
  rate at which the reader receives 1-token chunks.

The achieved rate is N tokens over the time from the release of token 0 to that of
token N (N = rate x seconds), so it measures the sustained rate. Our limiters start
with a full bucket (a burst that would go at once); it is emptied before measuring.
Target for ours and the engine: 99.5-100.5% of the set rate.

Run: python benchmarks/rate.py [--seconds S] [--rates 100 1000]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Callable, Iterator, List

from helixstream._aggregate import aggregate
from helixstream._chunk import StreamChunk
from helixstream._ratelimit import BurstRateLimiter, RateLimiter, RateLimitStage


def measure(acquire: Callable[[], None], n: int) -> float:
    """Tokens per second over the releases of tokens 0..n."""
    acquire()
    t0 = time.monotonic()
    for _ in range(n):
        acquire()
    return n / (time.monotonic() - t0)


def ours(rate: float, n: int) -> float:
    limiter = RateLimiter(rate)
    limiter.acquire(limiter.burst)  # empty the initial burst
    return measure(limiter.acquire, n)


def ours_burst_1(rate: float, n: int) -> float:
    limiter = BurstRateLimiter(rate, 1)
    limiter.acquire(1)
    return measure(limiter.acquire, n)


def naive_sleep(rate: float, n: int) -> float:
    period = 1.0 / rate

    def acquire() -> None:
        time.sleep(period)

    return measure(acquire, n)


class PollingBucket:
    """A common hand-written bucket: refill from elapsed time, poll until a token is there."""

    def __init__(self, rate: float, capacity: float = 1.0, poll: float = 0.001) -> None:
        self.rate = rate
        self.capacity = capacity
        self.poll = poll
        self.tokens = 0.0
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
            time.sleep(self.poll)


def polling(rate: float, n: int) -> float:
    return measure(PollingBucket(rate).acquire, n)


def engine(rate: float, n: int) -> float:
    limiter = RateLimiter(rate)
    limiter.acquire(limiter.burst)

    def source() -> Iterator[StreamChunk]:
        for _ in range(n + 1):
            yield StreamChunk("a", tokens=1)

    output, get_result = aggregate(source(), [RateLimitStage(limiter)], stop=None, name="rate")
    times: List[float] = []
    with output:
        for _chunk in output:
            times.append(time.monotonic())
    assert len(times) == n + 1 and get_result().total_tokens == n + 1
    return n / (times[-1] - times[0])


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0])
    args = ap.parse_args(argv)
    runs = [
        ("ours: RateLimiter", ours, True),
        ("ours: BurstRateLimiter(burst=1)", ours_burst_1, True),
        ("engine: RateLimitStage in a stream", engine, True),
        ("naive sleep(1/rate)", naive_sleep, False),
        ("polling bucket (1 token, 1 ms poll)", polling, False),
    ]
    before = threading.active_count()
    ok = True
    for rate in args.rates:
        n = round(rate * args.seconds)
        print(f"target {rate:g} tokens/s, {n} tokens (~{args.seconds:g} s each):")
        for label, fn, targeted in runs:
            pct = fn(rate, n) / rate * 100
            mark = ""
            if targeted:
                met = 99.5 <= pct <= 100.5
                ok = ok and met
                mark = "  (target 99.5-100.5%: " + ("met" if met else "NOT met") + ")"
            print(f"  {label:38s} {pct:8.3f}%{mark}")
    print(f"threads before/after: {before}/{threading.active_count()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
