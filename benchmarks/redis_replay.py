"""Resumable streams in Redis (RedisReplay) against in memory (SSEReplay).

Starts its own redis-server (free port, temporary directory, no persistence), then
measures, in one run:

1. CPU per event: ``--events`` content chunks through ``sse_stream`` with each
   registry, the body read to the end (this process's CPU time, all threads; and the
   redis-server's CPU for the Redis run). Target: RedisReplay at most 2x SSEReplay.
2. Resume: a client resumes on another registry (another "process") after event 10
   of a running stream: the time to its first replayed bytes.
3. Cancel: ``cancel(id)`` on another registry until the owner's source is closed,
   ``--cancels`` times: p50 / p99 (target: p99 <= 100 ms).
4. ``--streams`` concurrent streams at ``--rate`` tokens/s across 2 worker processes
   (each its own RedisReplay and reader threads): p99 of the delay added between the
   source producing a token and the client reading it (target: < 100 ms).

Run: python benchmarks/redis_replay.py [--events 20000] [--cancels 200] [--streams 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import helixstream as hs  # noqa: E402
from _redis_server import NOT_INSTALLED, redis_server  # noqa: E402


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: List[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Blocking:
    """A source that waits to be closed (recording when)."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.first = True

    def __iter__(self) -> "Blocking":
        return self

    def __next__(self) -> str:
        if self.first:
            self.first = False
            return "a "
        self.closed.wait()
        raise StopIteration

    def close(self) -> None:
        self.closed.set()


def paced(events: int, interval: float) -> Iterator[str]:
    for i in range(events):
        time.sleep(interval)
        yield f"w{i} "


def cpu_per_event(make: Any, events: int, interval: float = 0.0) -> float:
    """CPU seconds per event of one stream of ``events`` chunks, read to the end (the
    registry made, and warmed up by a first stream, beforehand): from a list (chunks
    pile up: a reader takes several per round trip), or ``interval`` seconds apart (one
    chunk per read)."""
    chunks: Any = paced(events, interval) if interval else [f"w{i} " for i in range(events)]
    with make() as replay:
        for data in (["warm", "up"], chunks):
            start = time.process_time()
            body = hs.sse_stream(data, replay=replay, keepalive=15)
            n = sum(1 for _ in body)
            body.close()
            took = time.process_time() - start
    assert n > 0
    return took / events


def resume_latency(url: str, runs: int) -> List[float]:
    out = []
    with hs.RedisReplay(url) as a, hs.RedisReplay(url) as b:
        for _ in range(runs):
            source = iter([f"t{i} " for i in range(10)] + [None])

            def gen(src: Iterator[Optional[str]] = source) -> Iterator[str]:
                for item in src:
                    if item is None:
                        threading.Event().wait(0.5)
                        return
                    yield item

            body = hs.sse_stream(gen(), replay=a, keepalive=15)
            got = b""
            while got.count(b"id: ") < 10:
                got += next(body)
            last = [line for line in got.decode().splitlines() if line.startswith("id: ")]
            first_id = last[0][4:]
            time.sleep(0.02)  # a real reconnect comes later than the writer's 5 ms
            start = time.perf_counter()
            again = hs.sse_stream(lambda: [], replay=b, last_event_id=first_id, keepalive=15)
            next(again)  # the opening comment
            data = next(again)
            out.append(time.perf_counter() - start)
            assert b"t1 " in data
            again.close()
            body.close()
    return out


def cancel_latency(url: str, runs: int) -> List[float]:
    out = []
    with hs.RedisReplay(url) as a, hs.RedisReplay(url) as b:
        for _ in range(runs):
            source = Blocking()
            body = hs.sse_stream(source, replay=a, keepalive=15)
            next(body)
            next(body)
            start = time.perf_counter()
            stopped = b.cancel(body.stream_id or "")
            source.closed.wait(5)
            out.append(time.perf_counter() - start)
            assert stopped
            body.close()
    return out


WORKER = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[5])
import helixstream as hs
url, streams, rate, tokens = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
replay = hs.SSEReplay() if sys.argv[6] == "memory" else hs.RedisReplay(url)
sys.setswitchinterval(float(sys.argv[7]))
delays = []
lock = threading.Lock()
start = time.time() + 1.0

def source(offset):
    t0 = start + offset
    for i in range(tokens):
        due = t0 + i / rate
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        yield f"{time.time():.6f} "


class Waiting:
    # The same model, able to wait for its next token with a timeout (wait_ready, as
    # hs.SimulatedLLM can): the stream needs no source thread. Waits with time.sleep.

    def __init__(self, offset):
        self.t0 = start + offset
        self.i = 0

    def __iter__(self):
        return self

    def wait_ready(self, timeout):
        if self.i >= tokens:
            return True
        left = self.t0 + self.i / rate - time.time()
        if left <= 0:
            return True
        time.sleep(min(left, max(0.0, timeout)))
        return timeout >= left

    def __next__(self):
        if self.i >= tokens:
            raise StopIteration
        left = self.t0 + self.i / rate - time.time()
        if left > 0:
            time.sleep(left)
        self.i += 1
        return f"{time.time():.6f} "


make_source = Waiting if sys.argv[8] == "waiting" else source

def client(n):
    body = hs.sse_stream(make_source(n / streams / rate), replay=replay, keepalive=15)
    mine = []
    for data in body:
        now = time.time()
        at = data.find(b"data: ")
        while at >= 0:
            end = data.find(b" ", at + 6)
            if data[at + 6:at + 7].isdigit():
                mine.append((len(mine), now - float(data[at + 6:end])))
            at = data.find(b"data: ", end)
    body.close()
    with lock:
        delays.extend(mine)

threads = [threading.Thread(target=client, args=(n,)) for n in range(streams)]
for t in threads:
    t.start()
for t in threads:
    t.join()
replay.close()
print(json.dumps(delays))
"""


def concurrent(
    url: str, streams: int, rate: float, tokens: int, registry: str, switch: float,
    model: str = "generator",
) -> List[List[float]]:
    """The delays of every token (index, seconds) of ``streams`` streams over 2 worker
    processes."""
    per = streams // 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(per), str(rate), str(tokens), str(ROOT),
             registry, str(switch), model],
            stdout=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    delays: List[List[float]] = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        delays.extend(json.loads(out))
    return delays


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--cancels", type=int, default=200)
    ap.add_argument("--resumes", type=int, default=50)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--switch-interval", type=float, default=0.005,
                    help="sys.setswitchinterval in the worker processes (CPython: 0.005)")
    ap.add_argument("--model", choices=("generator", "waiting"), default="generator",
                    help="the concurrent streams' model: a generator that sleeps (a source "
                         "thread per stream) or one that can wait (wait_ready: none)")
    ap.add_argument("--skip-single", action="store_true",
                    help="only the concurrent streams")
    args = ap.parse_args(argv)
    with redis_server() as running:
        if running is None:
            print(NOT_INSTALLED)
            return 1
        url, server = running
        if not args.skip_single:
            memory: List[float] = []
            in_redis: List[float] = []
            server_cpu = []
            for _ in range(5):
                memory.append(cpu_per_event(hs.SSEReplay, args.events))
                before = proc_cpu(server.pid)
                in_redis.append(cpu_per_event(lambda: hs.RedisReplay(url), args.events))
                server_cpu.append((proc_cpu(server.pid) - before) / args.events)
            m, r, s = statistics.median(memory), statistics.median(in_redis), statistics.median(server_cpu)
            print(f"CPU per event (median of 5, {args.events} events from a list): SSEReplay "
                  f"{m * 1e6:.1f} µs, RedisReplay {r * 1e6:.1f} µs (ratio {r / m:.2f}; "
                  f"target <= 2); redis-server {s * 1e6:.1f} µs")
            m = statistics.median(cpu_per_event(hs.SSEReplay, 1000, 0.001) for _ in range(3))
            r = statistics.median(
                cpu_per_event(lambda: hs.RedisReplay(url), 1000, 0.001) for _ in range(3)
            )
            print(f"CPU per event (median of 3, 1000 events 1 ms apart): SSEReplay "
                  f"{m * 1e6:.1f} µs, RedisReplay {r * 1e6:.1f} µs (ratio {r / m:.2f})")
            resumes = resume_latency(url, args.resumes)
            print(f"resume on another registry, to the first replayed bytes ({args.resumes} runs): "
                  f"p50 {pct(resumes, 0.5) * 1e3:.2f} ms, p99 {pct(resumes, 0.99) * 1e3:.2f} ms")
            cancels = cancel_latency(url, args.cancels)
            print(f"cancel from another registry to source closed ({args.cancels} runs): "
                  f"p50 {pct(cancels, 0.5) * 1e3:.2f} ms, p99 {pct(cancels, 0.99) * 1e3:.2f} ms, "
                  f"max {max(cancels) * 1e3:.2f} ms (target p99 <= 100 ms)")
        for registry in ("memory", "redis") if args.streams else ():
            delays = concurrent(url, args.streams, args.rate, args.tokens, registry,
                                args.switch_interval, args.model)
            name = "SSEReplay" if registry == "memory" else "RedisReplay"
            every = [d for _, d in delays]
            later = [d for i, d in delays if i >= 3]  # after each stream's start
            print(f"{name} ({args.model} model): {args.streams} streams at {args.rate:g} tokens/s over 2 "
                  f"processes, {len(every)} tokens: added delay p50 "
                  f"{pct(every, 0.5) * 1e3:.1f} ms, p99 {pct(every, 0.99) * 1e3:.1f} ms, "
                  f"max {max(every) * 1e3:.1f} ms (target p99 < 100 ms); from each "
                  f"stream's 4th token: p99 {pct(later, 0.99) * 1e3:.1f} ms, "
                  f"max {max(later) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
