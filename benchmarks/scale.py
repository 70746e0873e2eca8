"""Many concurrent streams: can the engine keep up, and what does each stream cost?

N streams at once, each a simulated LLM emitting ``--rate`` tokens per second for
``--seconds`` seconds through ``EnhancedStreamer.stream_enhanced`` (word buffer,
progress callback, aggregation), each consumed by its own thread, as a threaded WSGI
server would. For each N it prints:

- achieved aggregate tokens/s against the offered rate (N x rate);
- p50 / p99 / max of the delay each chunk gained: from the moment the token that
  completed it was due on the simulated model's schedule to the moment the reader
  received it. Measuring from the schedule, not from when the source's code ran,
  counts a source that was read late (in the default placement the source runs in the
  reader's thread) as delay, as a real model's tokens would wait in a socket buffer;
- threads per stream (the stream's own threads; the reader thread is the caller's);
- RSS per stream (peak RSS above the idle baseline, divided by N);
- CPU seconds per 1,000 tokens (process CPU time, all threads), the kernel's share of
  it, and voluntary context switches per token: about 1 is each reader sleeping between
  tokens; more is threads waiting for the GIL. In a GIL hand-over storm the switches
  and the kernel's share climb together (1.5 M switches, 60-70% system time).

Targets (issue 6): 1,000 streams keep up with 20,000 tokens/s on a 2-core machine with
p99 added delay under 50 ms, and at most 150 KB RSS per stream.

``--switch-interval S`` sets ``sys.setswitchinterval(S)`` first (CPython's default is
0.005 s): with a thousand threads waking 20,000 times a second, threads waiting for the
GIL time out every switch interval and force hand-overs, and on a small machine that
can tip the process into a storm of futex calls (see benchmarks/README.md).

``--plain-buffer`` is a second baseline: the same word buffer and chunks in the
reader's own loop, no engine (what the work costs apart from the stream around it).

``--no-progress`` runs the engine without a progress callback; ``--burn US`` makes
every reader spend US microseconds of CPU per token (with ``--plain``: how much work
per token it takes to tip 1,000 threads into a storm).

Run: python benchmarks/scale.py [--streams 100 500 1000] [--seconds 10] [--rate 20]
                                [--switch-interval 0.05] [--prefetch | --plain | --plain-buffer]
                                [--no-progress] [--burn US]
"""
from __future__ import annotations

import argparse
import functools
import gc
import os
import resource
import sys
import threading
import time
from typing import Dict, List

import helixstream as hs
from helixstream._chunk import StreamChunk

WORDS = ("streams of tokens arrive from the model at an uneven pace and the reader "
         "wants whole words delivered promptly without loss").split()


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class SimulatedLLM:
    """Emits ``count`` tokens at ``rate`` per second on an absolute schedule.

    Every token is a whole word plus a space, so each completes one word unit; the time
    it was due is recorded under its sequence number, written into the text.
    """

    def __init__(self, stream_no: int, count: int, rate: float, start: float,
                 scheduled: threading.Event) -> None:
        self.stream_no = stream_no
        self.scheduled = scheduled  # set once ``start`` is
        self.count = count
        self.period = 1.0 / rate
        self.start = start
        self.due_at: List[float] = [0.0] * count

    def __iter__(self):
        clock = time.perf_counter
        sleep = time.sleep
        self.scheduled.wait()  # a stream that reads ahead in a thread starts early
        t = self.start
        for i in range(self.count):
            t += self.period
            left = t - clock()
            if left > 0:
                sleep(left)
            self.due_at[i] = t
            yield f"{WORDS[i % len(WORDS)]}{i} "


PREFETCH = False
PLAIN = False


class _Plain:
    """The baseline: the reader iterates the simulated model itself, no helixstream."""

    def __init__(self, source: SimulatedLLM) -> None:
        self.source = source

    def threads(self) -> list:
        return []

    def __enter__(self) -> "_Plain":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __iter__(self):
        if not PLAIN_BUFFER:
            return iter(self.source)
        return self._buffered()

    def _buffered(self):
        """``--plain-buffer``: the reader's own loop cuts the text into words with the
        same buffer and wraps each in a StreamChunk, without the engine: what the work
        itself costs, apart from the stream around it."""
        buffer = hs.new_buffer("word")
        n = 0
        for piece in self.source:
            for unit in buffer.add(piece):
                yield StreamChunk(unit, n)
                n += 1
        rest = buffer.flush()
        if rest:
            yield StreamChunk(rest, n)


PLAIN_BUFFER = False
NO_PROGRESS = False
BURN = 0.0


def run(n: int, seconds: float, rate: float) -> Dict[str, float]:
    count = int(seconds * rate)
    gc.collect()
    base_threads = threading.active_count()
    base_rss = rss_kb()
    peak_rss = [base_rss]
    scheduled = threading.Event()
    sources = [SimulatedLLM(k, count, rate, 0.0, scheduled) for k in range(n)]
    delays: List[List[float]] = [[] for _ in range(n)]
    received = [0] * n
    stream_threads = [0] * n
    last = [0.0] * n  # when each reader received its last chunk
    options = {"prefetch": True} if PREFETCH else {}
    config = hs.StreamConfig(buffer_type="word", progress_interval=0.25, **options)
    schedule = [0.0]

    def set_schedule() -> None:
        # The schedule starts once every stream is open, so starting a thousand threads
        # is not counted as delay; the slack lets the readers, released at once, settle
        # before the first token is due. Streams start at different moments, as a
        # thousand users' requests do: their tokens are spread evenly over each period.
        schedule[0] = start = time.perf_counter() + 0.5
        for k, src in enumerate(sources):
            src.start = start + k / (n * rate)
        scheduled.set()

    ready = threading.Barrier(n + 1, action=set_schedule)  # every reader has opened its stream

    def reader(k: int) -> None:
        src = sources[k]
        # the newest report only: a callback that kept every report (40 per stream
        # here) would hold 40,000 objects the garbage collector walks at N=1,000
        latest: List[object] = [None]
        on_progress = functools.partial(latest.__setitem__, 0)
        if PLAIN or PLAIN_BUFFER:
            output, get_result = _Plain(src), None
        else:
            output, get_result = hs.EnhancedStreamer(config).stream_enhanced(
                src, None if NO_PROGRESS else on_progress)
        stream_threads[k] = len(output.threads())
        ready.wait()
        clock = time.perf_counter
        got = delays[k]
        due = src.due_at
        i = 0
        burn = BURN
        with output:
            for _chunk in output:
                now = clock()
                got.append(now - due[i])
                i += 1
                if burn:  # --burn: CPU work per token, holding the GIL as real work does
                    until = clock() + burn
                    while clock() < until:
                        pass
        received[k] = i
        last[k] = now if i else 0.0
        assert get_result is None or get_result().chunk_count == count
        assert get_result is None or NO_PROGRESS or getattr(latest[0], "done", False)

    threads = [threading.Thread(target=reader, args=(k,), name=f"reader-{k}") for k in range(n)]
    cpu0 = time.process_time()
    use0 = resource.getrusage(resource.RUSAGE_SELF)
    for t in threads:
        t.start()
    ready.wait()
    start = schedule[0]
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(0.5):
            peak_rss[0] = max(peak_rss[0], rss_kb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for t in threads:
        t.join()
    time.perf_counter()
    cpu = time.process_time() - cpu0
    use1 = resource.getrusage(resource.RUSAGE_SELF)
    sampler_stop.set()
    sampler.join()
    peak_rss[0] = max(peak_rss[0], rss_kb())
    # helixstream's process-wide janitor ends a moment after the last stream: wait for
    # it (and any stream thread still ending) before counting what is left
    for t in threading.enumerate():
        if t.name.startswith("helixstream-"):
            t.join(2.0)
    all_delays = sorted(d for ds in delays for d in ds)
    total = sum(received)
    # Tokens are due from one period after the start; kept up, the last arrives
    # count periods later (the streams' phases spread over one period). The rate is
    # measured to the last chunk received, not to the readers' final bookkeeping.
    elapsed = max(last) - (start + 1 / rate)
    return {
        "n": n,
        "offered": n * rate,
        "achieved": total / elapsed if elapsed > 0 else 0.0,
        "tokens": total,
        "expected": n * count,
        "p50_ms": all_delays[len(all_delays) // 2] * 1e3,
        "p99_ms": all_delays[int(len(all_delays) * 0.99)] * 1e3,
        "max_ms": all_delays[-1] * 1e3,
        "threads_per_stream": sum(stream_threads) / n,
        "rss_kb_per_stream": (peak_rss[0] - base_rss) / n,
        "cpu_per_1000": cpu / total * 1000 if total else 0.0,
        # the kernel's share, and how often a thread gave up the CPU (sleeping between
        # tokens: about one per token; waiting for the GIL: the rest)
        "sys_share": (use1.ru_stime - use0.ru_stime) / cpu if cpu > 0 else 0.0,
        "switches_per_token": (use1.ru_nvcsw - use0.ru_nvcsw) / total if total else 0.0,
        "leftover_threads": threading.active_count() - base_threads,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[100, 500, 1000])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval value (default: leave CPython's 0.005)")
    ap.add_argument("--prefetch", action="store_true",
                    help="give every stream a worker thread (StreamConfig(prefetch=True))")
    ap.add_argument("--plain", action="store_true",
                    help="baseline: the readers iterate the simulated models directly, "
                         "without helixstream, to show what the interpreter alone costs")
    ap.add_argument("--plain-buffer", action="store_true",
                    help="second baseline: the readers cut the models' text into words "
                         "with the same buffer and make the chunks themselves, without "
                         "the engine")
    ap.add_argument("--no-progress", action="store_true",
                    help="the engine without a progress callback (what the reports cost)")
    ap.add_argument("--burn", type=float, default=0.0, metavar="US",
                    help="each reader spends US microseconds of CPU per token (with --plain: "
                         "how much work per token tips 1,000 threads into a storm)")
    args = ap.parse_args(argv)
    global PREFETCH, PLAIN, PLAIN_BUFFER, NO_PROGRESS, BURN
    BURN = args.burn / 1e6
    NO_PROGRESS = args.no_progress
    PREFETCH = args.prefetch
    PLAIN = args.plain
    PLAIN_BUFFER = args.plain_buffer
    threading.stack_size(256 * 1024)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; "
          f"{args.rate:g} tokens/s per stream for {args.seconds:g}s; "
          f"switch interval {sys.getswitchinterval():g}s; "
          f"{'baseline: no helixstream' if PLAIN else 'baseline: the word buffer and chunks in the reader, no engine' if PLAIN_BUFFER else 'prefetch (a worker thread per stream)' if PREFETCH else 'default placement'}"
          f"{'; no progress callback' if NO_PROGRESS else ''}"
          f"{f'; {args.burn:g} us of CPU per token in each reader' if args.burn else ''}")
    header = (f"{'N':>5} {'offered/s':>10} {'achieved/s':>11} {'delivered':>10} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'max ms':>8} {'thr/stream':>10} {'RSS KB/str':>10} {'CPU s/1k tok':>12} "
              f"{'sys %':>6} {'switch/tok':>10}")
    print(header)
    for n in args.streams:
        r = run(n, args.seconds, args.rate)
        print(f"{r['n']:>5} {r['offered']:>10,.0f} {r['achieved']:>11,.0f} "
              f"{r['tokens']:>5}/{r['expected']:<5}"
              f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.1f} "
              f"{r['threads_per_stream']:>10.1f} {r['rss_kb_per_stream']:>10.1f} {r['cpu_per_1000']:>12.3f} "
              f"{100 * r['sys_share']:>6.0f} {r['switches_per_token']:>10.2f}",
              flush=True)
        if r["leftover_threads"] > 0:
            print(f"      ({r['leftover_threads']} threads still alive after the run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
