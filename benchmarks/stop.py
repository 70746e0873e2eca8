"""How long a stop takes: from ``set()`` to the reader's loop ending.

For each placement, ``--trials`` streams whose reader is blocked waiting for the next
item (the source is a response-like object blocked in a read, as a silent LLM
connection is). The stop event is set the way the issue's findings set it: through
``threading.Event.set(ev)``, which no patching of the instance would see. The time is
measured from just before ``set()`` to the moment the reader's ``for`` loop ended;
also from ``set()`` to the source's ``close()`` (what stops the upstream request).

Target (issue 10): every way of setting the event stops the stream within 50 ms.

Run: python benchmarks/stop.py [--trials 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from typing import List

import helixstream as hs

PLACEMENTS = {"inline": {}, "prefetch": {"prefetch": True}, "timed": {"max_delay": 3600}}


class BlockedResponse:
    """Yields one word, then blocks in "a read" until closed (like a silent socket)."""

    def __init__(self) -> None:
        self.closed_at = 0.0
        self._closed = threading.Event()
        self.first = True

    def __iter__(self) -> "BlockedResponse":
        return self

    def __next__(self) -> str:
        if self.first:
            self.first = False
            return "hello "
        self._closed.wait()
        raise StopIteration

    def close(self) -> None:
        if not self._closed.is_set():
            self.closed_at = time.perf_counter()
            self._closed.set()


def trial(config: hs.StreamConfig) -> "tuple[float, float]":
    stop = threading.Event()
    source = BlockedResponse()
    output, _ = hs.EnhancedStreamer(config).stream_buffered(source, "word", stop=stop)
    assert next(output).content == "hello "
    ended = threading.Event()
    end_at = [0.0]

    def read() -> None:
        for _ in output:
            pass
        end_at[0] = time.perf_counter()
        ended.set()

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.005)  # let the reader block in next() (the benchmark's own pacing)
    t0 = time.perf_counter()
    threading.Event.set(stop)
    assert ended.wait(10), "the stop was not seen"
    reader.join()
    return end_at[0] - t0, source.closed_at - t0


def main(argv: "List[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}; {args.trials} trials per placement; "
          f"stop set with threading.Event.set(ev)")
    print(f"{'placement':>10} {'loop ended p50/p99/max ms':>28} {'source closed p50/p99/max ms':>30}")
    for name, options in PLACEMENTS.items():
        config = hs.StreamConfig(**options)
        ends: List[float] = []
        closes: List[float] = []
        for _ in range(args.trials):
            end, close = trial(config)
            ends.append(end * 1e3)
            closes.append(close * 1e3)
        ends.sort()
        closes.sort()

        def fmt(xs: List[float]) -> str:
            return (f"{statistics.median(xs):6.2f} {xs[int(len(xs) * 0.99) - 1]:6.2f} "
                    f"{xs[-1]:6.2f}")

        print(f"{name:>10} {fmt(ends):>28} {fmt(closes):>30}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
