"""Rate limiting: token buckets that reserve absolute times, and the rate limit stage.

A limiter holds a bucket of at most ``burst`` tokens that refills at ``rate`` tokens
per second. Its whole state is one number, the time ``empty_at`` at which the bucket
holds (or held) no tokens; at time ``now`` it holds ``min(burst, (now - empty_at) *
rate)`` tokens, which may be negative: tokens already promised to callers still
waiting. An acquire of ``n`` tokens, under a lock::

    base     = max(empty_at, now - burst / rate)    # the bucket is never fuller than burst
    empty_at = base + n / rate                      # take n tokens (possibly into debt)
    release  = max(now, empty_at)                   # the absolute time the caller may go

and then, without the lock, waits until ``release`` on the caller's stop event. As in
Go's ``golang.org/x/time/rate``, callers are served in the order they reserve, each
reservation follows on from the previous one rather than from when a sleep happened to
end (so oversleeping never lowers the rate), and a stop interrupts the wait at once.
A request larger than the burst is let through once the bucket has been empty for
``n / rate`` seconds (Go's limiter refuses it forever).
"""
from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any, Callable, Generator, Iterable, Iterator, List, Optional, Union

from ._chunk import Decoder, StreamChunk
from ._durations import check_number
from ._engine.pipe import put_until_stopped
from ._inputs import check_source
from ._tokens import TokenCounter, estimate_tokens
from ._util import close_quietly

__all__ = [
    "RateLimiter",
    "BurstRateLimiter",
    "RateLimitStage",
    "WaitFunction",
    "item_cost",
    "wait_on_event",
]

#: ``wait(stop, seconds) -> stopped``: wait ``seconds``, or less if ``stop`` (a
#: ``threading.Event`` or None) is set; return True when it was stopped.
WaitFunction = Callable[[Optional[threading.Event], float], bool]

#: What ``RateLimitStage`` accepts as its stop signal: an event, or a function that
#: returns one (called at every item), or None.
StopSource = Union[threading.Event, Callable[[], Optional[threading.Event]], None]


def wait_on_event(stop: Optional[threading.Event], seconds: float) -> bool:
    """Wait ``seconds`` on the real clock, returning True at once when ``stop`` is set.

    Without a stop event this is ``time.sleep``. ``Event.wait`` may wake a hair early;
    the wait is resumed until the full time (on ``time.monotonic``) has passed.
    """
    if stop is None:
        if seconds > 0:
            time.sleep(seconds)
        return False
    deadline = time.monotonic() + seconds
    while True:
        if stop.wait(seconds if seconds > 0 else 0):
            return True
        seconds = deadline - time.monotonic()
        if seconds <= 0:
            return False


def _check_tokens(tokens: Any) -> float:
    if isinstance(tokens, bool) or not isinstance(tokens, (int, float)):
        raise TypeError(f"tokens must be a number, not {type(tokens).__name__}")
    if not math.isfinite(tokens) or tokens < 0:
        raise ValueError(f"tokens must be a finite number >= 0 (got {tokens!r})")
    return tokens


def _check_rate(tokens_per_second: Any) -> float:
    rate: float = check_number(tokens_per_second, "tokens_per_second", what="tokens per second")
    return rate


class _Reservation:
    __slots__ = ("base", "end", "at", "epoch")

    def __init__(self, base: float, end: float, at: float, epoch: int) -> None:
        self.base = base  # empty_at before this reservation
        self.end = end  # empty_at after it
        self.at = at  # when the caller may go
        self.epoch = epoch


class _TokenBucket:
    """The token bucket shared by :class:`RateLimiter` and :class:`BurstRateLimiter`."""

    def __init__(
        self,
        tokens_per_second: float,
        burst: float,
        clock: Callable[[], float],
        wait: Optional[WaitFunction],
    ) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be callable, not {type(clock).__name__}")
        if wait is not None and not callable(wait):
            raise TypeError(f"wait must be callable or None, not {type(wait).__name__}")
        self._rate = tokens_per_second
        self._burst = burst
        self._clock = clock
        self._wait: WaitFunction = wait if wait is not None else wait_on_event
        self._lock = threading.Lock()
        self._empty_at = -math.inf  # -inf: a full bucket, whatever the time
        self._epoch = 0  # bumped by set_rate and reset: older reservations are stale

    # --- state ---------------------------------------------------------------------
    @property
    def tokens_per_second(self) -> float:
        """The rate: tokens per second (0 means unlimited)."""
        return self._rate

    @property
    def burst(self) -> float:
        """The most tokens the bucket holds: what may go at once after a pause."""
        return self._burst

    def _burst_for(self, rate: float) -> float:
        return self._burst

    def available(self) -> float:
        """Tokens in the bucket now; negative while callers wait for tokens promised to them."""
        with self._lock:
            if self._rate == 0:
                return math.inf
            return self._tokens_at(self._clock())

    def _tokens_at(self, now: float) -> float:
        # called with the lock held, rate > 0
        if self._empty_at == -math.inf:
            return self._burst
        return min(self._burst, (now - self._empty_at) * self._rate)

    def set_rate(self, tokens_per_second: float) -> None:
        """Change the rate, from the next acquire on.

        The bucket is first brought up to date at the old rate, so the tokens it holds
        (or owes: callers already waiting keep their times) carry over to the new rate.
        Leaving unlimited mode (rate 0) starts with a full bucket.

        Raises:
            ConfigError: the rate is negative, not finite, or not a number.
        """
        rate = _check_rate(tokens_per_second)
        with self._lock:
            now = self._clock()
            old = self._rate
            credit = None if old == 0 else self._tokens_at(now)
            self._rate = rate
            self._burst = self._burst_for(rate)
            if rate > 0:
                if credit is None or credit >= self._burst:
                    self._empty_at = -math.inf
                else:
                    self._empty_at = now - credit / rate
            self._epoch += 1

    def reset(self) -> None:
        """Refill the bucket: the next ``burst`` tokens may go at once.

        This is a fresh limiter's state. Callers already waiting keep their times, and
        their tokens are not given back.
        """
        with self._lock:
            self._empty_at = -math.inf
            self._epoch += 1

    # --- acquiring -----------------------------------------------------------------
    def _reserve(self, tokens: float) -> Optional[_Reservation]:
        with self._lock:
            rate = self._rate
            if rate == 0:
                return None
            now = self._clock()
            base = self._empty_at
            floor = now - self._burst / rate
            if base < floor:
                base = floor
            end = base + tokens / rate
            self._empty_at = end
            return _Reservation(base, end, end if end > now else now, self._epoch)

    def _cancel(self, r: _Reservation) -> None:
        """Give back a reservation that was not used, if nothing depends on it yet.

        Only the latest reservation is given back (so cancelling the waiters of a
        stopped stream, last first, gives all of them back); one followed by others is
        kept, so that they are never served faster than the rate. A reservation whose
        time has come, or made before a ``set_rate`` or ``reset``, is kept too.
        """
        with self._lock:
            if r.epoch == self._epoch and self._empty_at == r.end and self._clock() < r.at:
                self._empty_at = r.base

    def acquire(self, tokens: float = 1, stop: Optional[threading.Event] = None) -> bool:
        """Take ``tokens`` from the bucket, waiting until they are there.

        The time is reserved under a lock, so callers in several threads are served in
        turn; the wait is on ``stop``, so setting it ends the wait at once.

        Args:
            tokens: how many tokens (a number >= 0; a request larger than the burst is
                served once the bucket has been empty for ``tokens / rate`` seconds).
            stop: a ``threading.Event`` that abandons the wait when set.

        Returns:
            True when the tokens were taken; False when ``stop`` was set (before or
            during the wait). A reservation that was not used is given back when no
            later one depends on it.

        Raises:
            TypeError: ``tokens`` is not a number.
            ValueError: ``tokens`` is negative or not finite.
        """
        _check_tokens(tokens)
        if stop is not None and stop.is_set():
            return False
        if tokens == 0:
            return True
        r = self._reserve(tokens)
        if r is None:
            return True
        left = r.at - self._clock()
        if left > 0 and self._wait(stop, left):
            self._cancel(r)
            return False
        return True

    # --- streams -------------------------------------------------------------------
    def limit_stream(
        self,
        items: Iterable[Any],
        stop: Optional[threading.Event] = None,
        *,
        counter: Optional[TokenCounter] = None,
    ) -> Iterator[Any]:
        """Yield the items of ``items`` no faster than the rate.

        Each item (``str``, UTF-8 ``bytes`` or :class:`StreamChunk`) costs its token
        count (see :func:`item_cost`) and is yielded, unchanged, once that many tokens
        were acquired. When ``stop`` is set, or the iterator is closed early, iteration
        ends at once and the source is closed (if it has ``close()``).

        Raises:
            TypeError: ``items`` is not iterable, or (while iterating) an item is not
                ``str``, ``bytes`` or a chunk.
            StreamDecodeError: (while iterating) invalid UTF-8 in a bytes item.
        """
        check_source(items)
        it = iter(items)
        return self._limited(it, stop, _Coster(counter))

    def _limited(
        self, it: Iterator[Any], stop: Optional[threading.Event], cost: "_Coster"
    ) -> Generator[Any, None, None]:
        finished = False
        try:
            while stop is None or not stop.is_set():
                try:
                    item = next(it)
                except StopIteration:
                    cost.finish()
                    finished = True
                    return
                if not self.acquire(cost(item), stop):
                    return
                yield item
        finally:
            if not finished:
                close_quietly(it)

    def limit_chunks(
        self,
        items: Iterable[Any],
        output_queue: "queue.Queue[Any]",
        stop: Optional[threading.Event] = None,
        *,
        counter: Optional[TokenCounter] = None,
    ) -> int:
        """Put the items of ``items`` into ``output_queue`` no faster than the rate.

        Items cost what they cost in :meth:`limit_stream`. Blocks until the input ends
        or ``stop`` is set; a ``put`` waiting on a full ``queue.Queue`` is abandoned
        at once when ``stop`` is set too. The source is closed when stopped early.

        Returns:
            How many items were put into the queue.
        """
        check_source(items)
        put = put_until_stopped(output_queue, stop)
        limited = self._limited(iter(items), stop, _Coster(counter))
        count = 0
        try:
            for item in limited:
                if not put(item):
                    break
                count += 1
        finally:
            put.done()  # type: ignore[attr-defined]
            limited.close()  # closes the source unless it ended
        return count

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokens_per_second={self._rate!r}, burst={self._burst!r})"


class RateLimiter(_TokenBucket):
    """A pacing limiter: tokens go out evenly at ``tokens_per_second``, from the first.

    The first token goes at once; after it, each request of ``n`` tokens goes ``n /
    rate`` seconds after the previous one was due (a bucket of one token). A unit of 3
    tokens at 10 tokens/s is released 0.2 s after the one before it would have let a
    1-token unit go, so a reader sees the text at the set speed even when the source
    sends it all at once. This is what ``StreamConfig(burst=0)`` means. Time lost to a
    slow source or reader is not made up; use :class:`BurstRateLimiter` to allow a
    burst after a pause (a limit rather than a pace).

    A new limiter, like one just :meth:`reset`, lets the first token go at once.

    Args:
        tokens_per_second: the rate (a number >= 0); 0 means unlimited.
        clock: the monotonic time source, in seconds (default ``time.monotonic``).
        wait: ``wait(stop, seconds) -> stopped`` (default: ``stop.wait(seconds)``, or
            ``time.sleep`` without a stop event); tests inject one that advances a fake
            clock.

    Raises:
        ConfigError: the rate is negative, not finite, or not a number (or a bool).
    """

    def __init__(
        self,
        tokens_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Optional[WaitFunction] = None,
    ) -> None:
        rate = _check_rate(tokens_per_second)
        super().__init__(rate, self._burst_for(rate), clock, wait)

    def _burst_for(self, rate: float) -> float:
        return 1.0


class BurstRateLimiter(_TokenBucket):
    """A token bucket limiter that lets up to ``burst`` tokens go at once.

    The bucket starts full and refills at ``tokens_per_second``; after a pause, up to
    ``burst`` tokens go without waiting, then the rate applies. A request larger than
    the burst is served once the bucket has been empty for ``tokens / rate`` seconds.
    :meth:`reset` refills the bucket; :meth:`set_rate` keeps the burst.

    Args:
        tokens_per_second: the rate (a number >= 0); 0 means unlimited.
        burst: the bucket's size in tokens (a number >= 1).
        clock: the monotonic time source, in seconds (default ``time.monotonic``).
        wait: ``wait(stop, seconds) -> stopped`` (see :class:`RateLimiter`).

    Raises:
        ConfigError: the rate or the burst is out of range, not finite, or not a
            number (or a bool).
    """

    def __init__(
        self,
        tokens_per_second: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Optional[WaitFunction] = None,
    ) -> None:
        rate = _check_rate(tokens_per_second)
        size: float = check_number(burst, "burst", minimum=1)
        super().__init__(rate, size, clock, wait)


# --- costs -----------------------------------------------------------------------------
def item_cost(item: Union[str, StreamChunk], counter: Optional[TokenCounter] = None) -> int:
    """The tokens an item costs: a chunk's reported ``tokens``, else its text counted.

    Text is counted with ``counter`` (default :func:`estimate_tokens`) and costs at
    least 1 token when not empty; an empty item with no reported count costs 0.
    Whitespace at the end of a unit is not charged (a tokenizer joins it to the next
    word: ``"a "`` costs 1, as ``"a"`` does), so a stream of words is paced word by
    word.
    """
    if isinstance(item, str):
        text = item
    else:
        tokens = item.tokens
        if tokens is not None:
            return int(tokens)
        text = item.content
    if not text:
        return 0
    if text[-1].isspace():
        text = text.rstrip() or text
    return max(1, (counter or estimate_tokens)(text))


class _Coster:
    """Costs the raw items of a source (str, bytes or chunks), decoding bytes."""

    __slots__ = ("_decode", "_counter")

    def __init__(self, counter: Optional[TokenCounter]) -> None:
        self._decode = Decoder()
        self._counter = counter

    def __call__(self, item: Any) -> int:
        return item_cost(self._decode(item), self._counter)

    def finish(self) -> None:
        self._decode.finish()  # raises on a character cut off at the end


# --- the stage -------------------------------------------------------------------------
class RateLimitStage:
    """The rate limiter as a stage of a stream: passes each item on once it is paid for.

    Each item costs :func:`item_cost` tokens, acquired from ``limiter`` while waiting
    on the stream's stop event, so closing or stopping the stream ends the wait at once
    (the stage then releases nothing). The runner hands the stage that event through
    :meth:`bind` before the stream starts; the ``stop`` argument is for using the stage
    on its own.

    Args:
        limiter: a :class:`RateLimiter` or :class:`BurstRateLimiter` (it may be shared
            by several streams, which then share its rate).
        stop: a ``threading.Event``, or a function returning one (or None), to wait on
            until :meth:`bind` is called.
        counter: counts the tokens of text whose count the source did not report.
    """

    name = "ratelimit"

    def __init__(
        self,
        limiter: _TokenBucket,
        stop: StopSource = None,
        counter: Optional[TokenCounter] = None,
    ) -> None:
        if not callable(getattr(limiter, "acquire", None)):
            raise TypeError(f"limiter must have an acquire method, not {type(limiter).__name__}")
        if stop is not None and not callable(stop) and not callable(getattr(stop, "is_set", None)):
            raise TypeError(
                f"stop must be a threading.Event, a function returning one, or None, "
                f"not {type(stop).__name__}"
            )
        if counter is not None and not callable(counter):
            raise TypeError(f"counter must be callable, not {type(counter).__name__}")
        self.limiter = limiter
        self._stop: StopSource = stop
        self._counter = counter

    def bind(self, stop: threading.Event) -> None:
        """Wait on ``stop`` (the stream's internal stop event) from now on."""
        self._stop = stop

    @property
    def stop(self) -> Optional[threading.Event]:
        """The event the stage waits on now."""
        source = self._stop
        if source is None or isinstance(source, threading.Event):
            return source
        if callable(getattr(source, "is_set", None)):
            return source  # type: ignore[return-value]  # an Event-like object
        return source()

    def __call__(self, item: Any) -> List[Any]:
        if self.limiter.acquire(item_cost(item, self._counter), self.stop):
            return [item]
        return []

    def flush(self) -> List[Any]:
        return []

    def __repr__(self) -> str:
        return f"RateLimitStage({self.limiter!r})"
