"""Review findings: SSEReplay's byte count, its grace timers."""
from __future__ import annotations

import threading

import pytest

from helixstream.sse import SSEReplay, sse_stream
from helixstream.sse._replay import _ENTRY_OVERHEAD, _Timers

from .sources import BlockingSource
from .test_sse_stream import FakeClock, events_of, next_event


@pytest.mark.timeout(30)
def test_trimming_a_stream_with_uncounted_growth_keeps_the_byte_count_right() -> None:
    # A running stream's growth is counted in 4 KiB steps; a trim may free bytes of
    # it that were not counted yet: its count must not go negative (-1 means
    # "forgotten"), else its later growth is never counted and the total drifts.
    replay = SSEReplay(max_bytes=6_000, clock=FakeClock())
    source = BlockingSource(["a" * 1200, "a" * 1200])
    live = sse_stream(source, replay=replay)
    try:
        next_event(live)
        next_event(live)  # two events read: ~2.6 KB, not yet counted
        events_of(sse_stream(["b" * 5000], replay=replay))  # counted at once: a trim
        entry = replay._entries[live.stream_id]
        assert entry.counted >= 0, entry.counted
        source.feed(*["c" * 1000 for _ in range(12)])
        for _ in range(12):
            next_event(live)
        kept = list(replay._entries.values())
        counted = sum(e.counted + e.uncounted for e in kept)
        assert replay.size_bytes + sum(e.uncounted for e in kept) == counted
        assert counted == sum(_ENTRY_OVERHEAD + e.log.size_bytes for e in kept)
    finally:
        live.close()
        replay.close()


@pytest.mark.timeout(30)
def test_a_timer_callback_that_raises_does_not_stop_later_timers() -> None:
    timers = _Timers("review-timers")
    ran = threading.Event()

    def boom(_: object) -> None:
        raise RuntimeError("boom")

    timers.schedule(0.0, boom, None)
    first = timers.thread
    assert first is not None
    first.join(10)
    timers.schedule(0.0, lambda _: ran.set(), None)
    assert ran.wait(10), "the grace thread died with the first callback's error"
