"""A rate limit shared by several processes through Redis: what they achieve together.

Starts its own redis-server (free port, temporary directory, no persistence), then
``--processes`` processes that each take one token at a time from one
``RedisRateLimiter`` key for ``--seconds`` seconds, on the real clock. Prints each
process's tokens, the aggregate rate against the set one (target: 98-102 %) and the
spread between processes.

Run: python benchmarks/redis_rate.py [--processes 4] [--rate 400] [--seconds 5]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _redis_server import NOT_INSTALLED, redis_server

WORKER = """
import sys, time
import helixstream as hs
url, rate, seconds, start = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
limiter = hs.RedisRateLimiter(url, "bench", rate, burst=1)
while time.time() < start:
    time.sleep(0.001)
n = 0
first = last = None
while time.time() < start + seconds:
    limiter.acquire(1)
    now = time.time()
    first = now if first is None else first
    last = now
    n += 1
print(n, first, last)
"""


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    with redis_server() as running:
        if running is None:
            print(NOT_INSTALLED)
            return 1
        url, _ = running
        start = time.time() + 1.5  # every process imported and connected by then
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, url, str(args.rate), str(args.seconds), str(start)],
                stdout=subprocess.PIPE, text=True,
            )
            for _ in range(args.processes)
        ]
        results = [p.communicate(timeout=args.seconds + 60)[0].split() for p in procs]
    counts = [int(r[0]) for r in results]
    first = min(float(r[1]) for r in results)
    last = max(float(r[2]) for r in results)
    total = sum(counts)
    # tokens after the first, over the time from the first to the last
    achieved = (total - 1) / (last - first) if last > first else 0.0
    print(f"{args.processes} processes sharing {args.rate:g} tokens/s for {args.seconds:g} s")
    print(f"tokens per process: {counts}")
    print(f"aggregate: {achieved:.1f} tokens/s = {100 * achieved / args.rate:.2f} % of the set rate "
          f"(target 98-102 %)")
    mean = total / len(counts)
    print(f"spread: min {min(counts)} / mean {mean:.1f} / max {max(counts)} "
          f"({100 * (max(counts) - min(counts)) / mean:.1f} % of the mean)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
