"""A rate limit shared by every process and host: a GCRA reservation in Redis.

The limiter's whole state is one number per key, the time (in microseconds of Redis's
own clock) at which the bucket is, or was, empty. One Lua script, run atomically by
Redis with Redis's ``TIME``, reserves ``n`` tokens the way :class:`RateLimiter` does
in one process::

    base     = max(empty_at, now - burst / rate)
    empty_at = base + n / rate
    wait     = max(0, empty_at - now)

so the hosts' clocks never matter; the caller then waits ``wait`` seconds on its own
stop signal, and a stop during the wait gives the reservation back when no later one
depends on it. When Redis cannot be reached the limiter does what ``on_error`` says,
logs one warning, and never hangs (socket timeouts bound every call).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from ._durations import check_number
from ._redis import redis_errors, redis_module
from ._errors import ConfigError, HelixStreamError
from ._ratelimit import BurstRateLimiter, WaitFunction, _check_tokens, wait_on_event

__all__ = ["RedisRateLimiter"]

_log = logging.getLogger("helixstream")

# KEYS[1]: the key; ARGV: rate (tokens/s), burst (tokens), tokens. Returns
# {wait µs, empty_at µs before, empty_at µs after} as strings (exact integers).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local empty_at = -1
if stored then empty_at = tonumber(stored) end
local floor = now - math.floor(burst * 1000000 / rate)
local base = empty_at
if base < floor then base = floor end
local after = base + math.floor(n * 1000000 / rate + 0.5)
local idle_ms = math.floor((after - now) / 1000) + math.floor(burst * 1000 / rate) + 1000
redis.call('SET', KEYS[1], string.format('%d', after), 'PX', idle_ms)
local wait = after - now
if wait < 0 then wait = 0 end
return {string.format('%d', wait), string.format('%d', base), string.format('%d', after)}
"""

# Give a reservation back if it is still the latest one: KEYS[1], ARGV: after, base.
_GIVE_BACK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""

_ON_ERROR = ("local", "allow", "deny")


class RedisRateLimiter:
    """A token bucket shared through Redis: every process using the same ``key``
    shares the rate.

    Args:
        url_or_client: a Redis URL (``"redis://127.0.0.1:6379/0"``) or a ``redis.Redis``
            client (extra ``redis``: ``pip install 'helixstream[redis]'``).
        key: what the rate is counted per: an API key, a user, a model (stored under
            ``prefix + key``).
        tokens_per_second: the rate shared by all (> 0).
        burst: tokens that may go at once after a pause (>= 1; 1 paces evenly).
        on_error: when Redis cannot be reached: ``"local"`` (default) falls back to an
            in-process :class:`BurstRateLimiter` with the same rate, ``"allow"`` lets
            everything through, ``"deny"`` raises :class:`HelixStreamError`. A warning
            is logged once per limiter.
        timeout: seconds a Redis call may take (socket timeouts, for a URL).
        prefix: the key prefix.
        wait: ``wait(stop, seconds) -> stopped`` (default: wait on ``stop``); tests
            inject one.

    ``acquire(tokens, stop)`` is the same as :meth:`RateLimiter.acquire`, so a
    :class:`RateLimitStage` (and ``StreamConfig(rate_limiter=...)``) takes it.
    """

    def __init__(
        self,
        url_or_client: Any,
        key: str,
        tokens_per_second: float,
        burst: float = 1,
        *,
        on_error: str = "local",
        timeout: float = 0.5,
        prefix: str = "helixstream:rate:",
        wait: Optional[WaitFunction] = None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigError(f"'key' must be a non-empty string (got {key!r})")
        rate = check_number(tokens_per_second, "tokens_per_second", what="tokens per second")
        if rate <= 0:
            raise ConfigError(f"'tokens_per_second' must be > 0 (got {tokens_per_second!r})")
        size = check_number(burst, "burst", minimum=1)
        if on_error not in _ON_ERROR:
            raise ConfigError(
                f"'on_error' must be one of {', '.join(repr(o) for o in _ON_ERROR)} (got {on_error!r})"
            )
        seconds = check_number(timeout, "timeout")
        if seconds <= 0:
            raise ConfigError(f"'timeout' must be > 0 (got {timeout!r})")
        if wait is not None and not callable(wait):
            raise TypeError(f"wait must be callable or None, not {type(wait).__name__}")
        self.key = prefix + key
        self._rate = float(rate)
        self._burst = float(size)
        self.on_error = on_error
        self._wait: WaitFunction = wait if wait is not None else wait_on_event
        self._client = _client(url_or_client, seconds)
        self._reserve: Callable[..., Any] = self._client.register_script(_RESERVE)
        self._give_back: Callable[..., Any] = self._client.register_script(_GIVE_BACK)
        self._local: Optional[BurstRateLimiter] = None
        self._warned = False
        self._lock = threading.Lock()

    @property
    def tokens_per_second(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _unreachable(self, exc: BaseException) -> None:
        with self._lock:
            first = not self._warned
            self._warned = True
        if first:
            _log.warning(
                "helixstream: Redis rate limiter %r unreachable (%s: %s); on_error=%r",
                self.key, type(exc).__name__, exc, self.on_error,
                extra={"stream_id": None},  # a limiter serves many streams
            )

    def _fallback(self) -> BurstRateLimiter:
        with self._lock:
            if self._local is None:
                self._local = BurstRateLimiter(self._rate, self._burst, wait=self._wait)
            return self._local

    def acquire(self, tokens: float = 1, stop: Optional[threading.Event] = None) -> bool:
        """Take ``tokens`` from the shared bucket, waiting until they are there.

        Returns True when taken, False when ``stop`` was set (before or during the
        wait). Raises :class:`HelixStreamError` with ``on_error="deny"`` when Redis
        cannot be reached.
        """
        _check_tokens(tokens)
        if stop is not None and stop.is_set():
            return False
        if tokens == 0:
            return True
        unreachable = redis_errors()
        try:
            wait_us, base, after = self._reserve(keys=[self.key], args=[
                repr(self._rate), repr(self._burst), repr(float(tokens)),
            ])
        except unreachable as exc:
            self._unreachable(exc)
            if self.on_error == "allow":
                return True
            if self.on_error == "deny":
                raise HelixStreamError(
                    f"the Redis rate limiter {self.key!r} cannot be reached: {exc}"
                ) from exc
            return self._fallback().acquire(tokens, stop)
        with self._lock:
            self._warned = False  # reachable again: warn again next time it is not
        seconds = int(wait_us) / 1e6
        if seconds > 0 and self._wait(stop, seconds):
            try:
                self._give_back(keys=[self.key], args=[after, base])
            except unreachable:
                pass  # gone: the reservation simply stands
            return False
        return True

    def __repr__(self) -> str:
        return (f"RedisRateLimiter(key={self.key!r}, tokens_per_second={self._rate!r}, "
                f"burst={self._burst!r})")


def _client(url_or_client: Any, timeout: float) -> Any:
    if isinstance(url_or_client, str):
        redis = redis_module("RedisRateLimiter")
        return redis.Redis.from_url(
            url_or_client, socket_timeout=timeout, socket_connect_timeout=timeout,
            decode_responses=True,
        )
    if not callable(getattr(url_or_client, "register_script", None)):
        raise TypeError(
            "url_or_client must be a Redis URL or a redis.Redis client, not "
            f"{type(url_or_client).__name__}"
        )
    redis_module("RedisRateLimiter")
    return url_or_client

