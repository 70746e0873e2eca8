"""RedisRateLimiter against a real redis-server (started by the test on a free port)."""
from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
import yaml

import helixstream as hs

from .conftest import wait_for
from .redis_server import RedisServer, free_port
from .redis_server import redis_server as _redis_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _redis_server(tmp_path)


class Waits:
    """An injected wait: records the seconds asked for, lets no time pass."""

    def __init__(self) -> None:
        self.seconds: List[float] = []

    def __call__(self, stop: Optional[threading.Event], seconds: float) -> bool:
        self.seconds.append(seconds)
        return False


def redis_time_us(server: RedisServer) -> int:
    import redis

    seconds, micros = redis.Redis.from_url(server.url).time()
    return int(seconds) * 1_000_000 + int(micros)


def stored(server: RedisServer, key: str) -> int:
    import redis

    return int(redis.Redis.from_url(server.url).get("helixstream:rate:" + key))


def test_reservations_follow_on_from_each_other_at_the_rate(server):
    # Redis's clock runs on while the test runs (a loaded machine took 7 ms between two
    # calls, which once failed a check of each wait against i/50 s): the reservations
    # are checked as Redis stores them, and each wait against Redis's time around it
    waits = Waits()
    limiter = hs.RedisRateLimiter(server.url, "k", 5, burst=1, wait=waits)
    reserved = []
    times = []
    for _ in range(5):
        before = redis_time_us(server)
        assert limiter.acquire(1) is True
        times.append((before, redis_time_us(server)))
        reserved.append(stored(server, "k"))
    # each reservation follows on from the one before by exactly 1/5 s (the calls come
    # far faster than that, so none finds the bucket empty)
    assert [b - a for a, b in zip(reserved, reserved[1:])] == [200_000] * 4
    # the first token goes at once; each later one waits until its reservation
    assert len(waits.seconds) == 4
    assert reserved[0] <= times[0][1]
    for seconds, at, (before, after) in zip(waits.seconds, reserved[1:], times[1:]):
        assert (at - after) / 1e6 <= seconds <= (at - before) / 1e6, waits.seconds


def test_a_burst_goes_at_once_then_the_rate_applies(server):
    # checked against Redis's time around each call, as above: time passes meanwhile
    waits = Waits()
    limiter = hs.RedisRateLimiter(server.url, "b", 1, burst=5, wait=waits)
    reserved = []
    times = []
    for _ in range(7):
        before = redis_time_us(server)
        limiter.acquire(1)
        times.append((before, redis_time_us(server)))
        reserved.append(stored(server, "b"))
    assert len(waits.seconds) == 2  # five went at once
    assert reserved[6] - reserved[5] == 1_000_000  # then one a second
    for seconds, at, (before, after) in zip(waits.seconds, reserved[5:], times[5:]):
        assert (at - after) / 1e6 <= seconds <= (at - before) / 1e6, waits.seconds
    assert 0.5 < waits.seconds[0] <= 1.0 and 1.5 < waits.seconds[1] <= 2.0  # about 1 s, 2 s


SHARER = textwrap.dedent("""
    import sys
    import helixstream as hs
    limiter = hs.RedisRateLimiter(sys.argv[1], "shared", 1000, burst=1,
                                  wait=lambda stop, seconds: False)
    for _ in range(100):
        limiter.acquire(1)
    print("done")
""")


def test_three_processes_share_one_schedule(server):
    # the parent reserves 60 s worth first (the injected wait lets no time pass), so
    # every one of the 300 reservations of three concurrent processes follows on from
    # the one before it, whenever each process starts: none may be lost or doubled
    hs.RedisRateLimiter(server.url, "shared", 1000, burst=1, wait=Waits()).acquire(60_000)
    start = stored(server, "shared")
    procs = [
        subprocess.Popen([sys.executable, "-c", SHARER, server.url], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs == ["done\n"] * 3
    assert stored(server, "shared") - start == 300 * 1000  # µs: 300 tokens at 1000/s


def test_a_stop_ends_a_wait_at_once_and_gives_the_reservation_back(server):
    limiter = hs.RedisRateLimiter(server.url, "s", 0.01, burst=1)  # a token per 100 s
    stop = threading.Event()
    assert limiter.acquire(1, stop) is True  # the first one goes at once
    before = stored(server, "s")
    result: List[bool] = []
    t = threading.Thread(target=lambda: result.append(limiter.acquire(1, stop)))
    t.start()
    assert wait_for(lambda: stored(server, "s") != before)  # it has reserved and waits
    stop.set()
    t.join(5)
    assert result == [False]
    assert stored(server, "s") == before  # given back: the next caller is not held up


def test_redis_unreachable_falls_back_without_hanging_and_warns_once(caplog):
    pytest.importorskip("redis", reason="redis-py is not installed")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    waits = Waits()
    local = hs.RedisRateLimiter(url, "x", 100, burst=1, timeout=0.2, wait=waits)
    with caplog.at_level(logging.WARNING, logger="helixstream"):
        assert all(local.acquire(1) for _ in range(3))
    assert len(waits.seconds) == 2  # an in-process limiter paced the second and third
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    allow = hs.RedisRateLimiter(url, "x", 100, on_error="allow", timeout=0.2)
    assert allow.acquire(5) is True
    deny = hs.RedisRateLimiter(url, "x", 100, on_error="deny", timeout=0.2)
    with pytest.raises(hs.HelixStreamError, match="cannot be reached"):
        deny.acquire(1)


def test_a_restarted_redis_is_used_again(tmp_path):
    gen = _redis_server(tmp_path)
    server = next(gen)
    try:
        waits = Waits()
        limiter = hs.RedisRateLimiter(server.url, "r", 100, burst=1, timeout=0.2, wait=waits)
        assert limiter.acquire(1)
        server.stop()
        assert limiter.acquire(1)  # the local fallback
        server.start()
        assert limiter.acquire(1)
        assert stored(server, "r") > 0  # Redis holds the schedule again
    finally:
        gen.close()


def test_a_stream_paced_by_a_shared_limiter(server):
    waits = Waits()
    limiter = hs.RedisRateLimiter(server.url, "stream", 5, burst=1, wait=waits)
    output, get_result = hs.EnhancedStreamer(hs.StreamConfig(rate_limiter=limiter)).stream_enhanced(
        ["a b c d "]
    )
    assert [c.content for c in output] == ["a ", "b ", "c ", "d "]
    assert len(waits.seconds) == 3 and abs(waits.seconds[-1] - 0.6) < 0.05


def test_bad_arguments_are_config_errors():
    pytest.importorskip("redis", reason="redis-py is not installed")
    url = "redis://127.0.0.1:1/0"
    for kwargs in ({"tokens_per_second": 0}, {"tokens_per_second": 5, "burst": 0},
                   {"tokens_per_second": 5, "on_error": "ignore"},
                   {"tokens_per_second": 5, "timeout": 0}):
        with pytest.raises(hs.ConfigError):
            hs.RedisRateLimiter(url, "k", **kwargs)
    with pytest.raises(hs.ConfigError, match="key"):
        hs.RedisRateLimiter(url, "", 5)
    with pytest.raises(TypeError, match="Redis URL or a redis.Redis client"):
        hs.RedisRateLimiter(42, "k", 5)


def test_a_yaml_file_names_a_redis_limiter(server, tmp_path):
    path = tmp_path / "helix.yaml"
    path.write_text(textwrap.dedent(f"""
        optimization:
          streaming:
            buffer_type: word
            rate_limiter:
              redis: "{server.url}"
              key: "model-a"
              tokens_per_second: 200
              burst: 2
    """))
    settings = hs.load_config(path)
    limiter = settings.stream.rate_limiter
    assert isinstance(limiter, hs.RedisRateLimiter)
    assert limiter.key == "helixstream:rate:model-a" and limiter.tokens_per_second == 200
    assert limiter.burst == 2
    output, _ = hs.OptimizationService(settings).stream_enhanced(["a b c d "])
    assert [c.content for c in output] == ["a ", "b ", "c ", "d "]
    assert stored(server, "model-a") > 0  # the schedule is in Redis


@pytest.mark.parametrize(
    "spec, message",
    [
        ("rate_limiter: 5", "must be a mapping"),
        ("rate_limiter: {redis: 'redis://x', key: k}", "missing key(s) 'tokens_per_second'"),
        ("rate_limiter: {redis: 'http://x', key: k, tokens_per_second: 5}", "redis:// URL"),
        ("rate_limiter: {redis: 'redis://x', key: k, tokens_per_second: 5, bust: 2}",
         "did you mean 'burst'"),
        ("rate_limiter: {redis: 'redis://x', key: k, tokens_per_second: 0}", "tokens_per_second"),
    ],
)
def test_a_bad_redis_limiter_in_yaml_is_a_config_error(spec, message):
    pytest.importorskip("redis", reason="redis-py is not installed")
    with pytest.raises(hs.ConfigError) as info:
        hs.load_config({"optimization": {"streaming": yaml.safe_load(spec)}})
    assert message in str(info.value) and "rate_limiter" in str(info.value)
