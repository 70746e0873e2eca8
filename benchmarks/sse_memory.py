"""Memory per SSE connection: ``hs.sse_stream`` with a registry vs a plain WSGI generator.

What ``sse_scale.py`` measures as RSS per connection under gunicorn, measured here with
``tracemalloc`` in one process, deterministically and without timing: K bodies are
built as the ``hs-wait`` variant of ``sse_scale.py`` builds them (a model with
``wait_ready``, ``keepalive=15``, one ``SSEReplay(grace=10)`` for all), each read to
its 200th event (10 s at 20 tokens/s: where the benchmark's clients hang up, all of
them open at once), the bodies read in turns (the first event of each, then the
second...), and kept open; then the same for the benchmark's plain generator
(``data:`` events, read to the same point). The models never wait (their tokens are
all due): only memory is measured.

Printed: the Python heap allocated per connection (what stays allocated, by
``tracemalloc``, after a ``gc.collect()``), for both and their ratio, and the top
allocation sites of each. This is the heap that Python allocates, not RSS: RSS adds
the allocator's slack and, under gunicorn, the thread and socket per connection that
both variants pay.

With ``--rss``, also each variant's RSS growth per connection, in a fresh process
each (without tracemalloc, which costs memory of its own); one process holds the K
bodies and nothing else: no thread and no socket per connection, unlike gunicorn.

The models share their token strings, as in ``sse_scale.py``; ``--own-tokens`` gives
each its own, as a real model's client makes them: the stream's aggregate keeps every
chunk's text (``get_result()``), so these then count too.

Run: python benchmarks/sse_memory.py [--k 200] [--events 200] [--top 15] [--rss]
                                     [--own-tokens]
"""
from __future__ import annotations

import argparse
import gc
import linecache
import os
import sys
import tracemalloc
from typing import Any, Callable, Iterator, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's helixstream first

import helixstream as hs  # noqa: E402

RATE = 20.0
SECONDS = 10.0
EXTRA = 5.0  # as sse_scale.py: a model has 5 s of tokens beyond the clients' reading


def model_tokens(count: int) -> List[str]:
    from helixstream._simulate import SAMPLE_ANSWER, split_tokens

    base = split_tokens(SAMPLE_ANSWER)
    return [base[k % len(base)] for k in range(count)]


#: --own-tokens: every model makes its own strings of its tokens, as a real model's
#: client does (parsing each one out of a response), instead of sharing one list's
OWN_TOKENS = False


def own(token: str) -> str:
    return token.encode("utf-8").decode("utf-8") if OWN_TOKENS else token


class ReadyModel:
    """``sse_scale.WaitingModel`` whose tokens are all due: ``wait_ready`` and
    ``__next__`` never wait. Same attributes (tokens shared by all models, as the
    benchmark's are)."""

    def __init__(self, tokens: List[str], start: float, gap: float) -> None:
        self.tokens = tokens
        self.start = start
        self.gap = gap
        self.closed = False
        self._k = 0

    def __iter__(self) -> "ReadyModel":
        return self

    def wait_ready(self, timeout: float) -> bool:
        return True

    def __next__(self) -> str:
        k = self._k
        if self.closed or k >= len(self.tokens):
            raise StopIteration
        self._k = k + 1
        return own(self.tokens[k])

    def close(self) -> None:
        self.closed = True


def _sse_data(text: str) -> bytes:
    return ("".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode("utf-8")


def plain_body(tokens: List[str], start: float, gap: float) -> Iterator[bytes]:
    """``sse_scale._plain_body`` without its waits."""
    yield b": connected\n"
    for token in tokens:
        yield _sse_data(own(token))
    yield b"event: done\ndata: [DONE]\n\n"


def make_hs(replay: Any, tokens: List[str]) -> Callable[[], Any]:
    def make() -> Any:
        return hs.sse_stream(ReadyModel(tokens, 0.0, 1 / RATE), keepalive=15.0,
                             replay=replay, environ={})
    return make


def make_plain(tokens: List[str]) -> Callable[[], Any]:
    def make() -> Any:
        return plain_body(tokens, 0.0, 1 / RATE)
    return make


def build(make: Callable[[], Any], k: int, events: int) -> List[Any]:
    """``k`` bodies, read in turns as a server does: the opening of each, then the
    first event of each, the second..."""
    bodies = [make() for _ in range(k)]
    for _ in range(events + 1):
        for body in bodies:
            next(body)
    gc.collect()
    return bodies


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_child(variant: str, k: int, events: int) -> None:
    """In a fresh process: RSS growth per connection of one variant (no tracemalloc)."""
    tokens = model_tokens(int((SECONDS + EXTRA) * RATE))
    replay = hs.SSEReplay(grace=10.0)
    make = make_plain(tokens) if variant == "plain" else make_hs(replay, tokens)
    build(make, 5, 5)  # warm up: imports, caches (then dropped)
    gc.collect()
    before = _rss_kb()
    bodies = build(make, k, events)
    after = _rss_kb()
    print((after - before) * 1024 / k)
    for body in bodies:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    replay.close()


def rss(k: int, events: int) -> None:
    import subprocess

    got = {}
    for variant in ("plain", "hs-wait"):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--rss-child", variant, "--k", str(k),
             "--events", str(events), *(["--own-tokens"] if OWN_TOKENS else [])],
            check=True, capture_output=True, text=True).stdout
        got[variant] = float(out.split()[-1])
        print(f"{variant}: RSS {got[variant]:,.0f} bytes per connection ({k} open, a fresh "
              f"process each)")
    print(f"hs-wait over plain: {got['hs-wait'] - got['plain']:,.0f} bytes per connection "
          f"(RSS of this process: no thread or socket per connection, unlike gunicorn)")


def measure(make: Callable[[], Any], k: int, events: int
            ) -> Tuple[float, List[Tuple[str, float, float]], List[Any]]:
    """(bytes per connection, [(site, bytes, blocks) per connection], the bodies)."""
    for warm in build(make, 1, 5):  # first allocations of this variant (caches, names)
        close = getattr(warm, "close", None)
        if close is not None:
            close()
    del warm
    gc.collect()
    before = tracemalloc.take_snapshot()
    bodies = build(make, k, events)
    after = tracemalloc.take_snapshot()
    filters = [tracemalloc.Filter(False, tracemalloc.__file__),
               tracemalloc.Filter(False, linecache.__file__)]
    diff = after.filter_traces(filters).compare_to(before.filter_traces(filters), "lineno")
    total = sum(d.size_diff for d in diff)
    sites = []
    for d in sorted(diff, key=lambda d: -d.size_diff):
        frame = d.traceback[0]
        name = os.path.relpath(frame.filename, os.path.dirname(HERE)) \
            if frame.filename.startswith(os.path.dirname(HERE)) else os.path.basename(frame.filename)
        sites.append((f"{name}:{frame.lineno}", d.size_diff / k, d.count_diff / k))
    return total / k, sites, bodies


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=200, help="connections open at once")
    parser.add_argument("--events", type=int, default=int(SECONDS * RATE),
                        help="events read on each before measuring")
    parser.add_argument("--top", type=int, default=15, help="allocation sites shown")
    parser.add_argument("--rss", action="store_true",
                        help="also the RSS growth per connection, each variant in a fresh "
                             "process")
    parser.add_argument("--own-tokens", action="store_true",
                        help="each model makes its own token strings (as a real model's "
                             "client does) instead of sharing them, as sse_scale.py does")
    parser.add_argument("--rss-child", choices=("plain", "hs-wait"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global OWN_TOKENS
    OWN_TOKENS = args.own_tokens
    if args.rss_child:
        rss_child(args.rss_child, args.k, args.events)
        return 0
    tokens = model_tokens(int((SECONDS + EXTRA) * RATE))
    tracemalloc.start(1)
    replay = hs.SSEReplay(grace=10.0)
    results = {}
    for name, make in (("plain", make_plain(tokens)), ("hs-wait", make_hs(replay, tokens))):
        per, sites, bodies = measure(make, args.k, args.events)
        results[name] = per
        print(f"{name}: {per:,.0f} bytes per connection ({args.k} open, {args.events} "
              f"events read on each)")
        for site, size, count in sites[:args.top]:
            print(f"    {size:9,.0f} B {count:7.1f} blocks  {site}")
        if name == "hs-wait":
            print(f"    (the registry's size_bytes: {replay.size_bytes / args.k:,.0f} "
                  f"per connection)")
        for body in bodies:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        del bodies
        gc.collect()
    replay.close()
    plain, hsw = results["plain"], results["hs-wait"]
    print()
    print(f"hs-wait over plain: {hsw - plain:,.0f} bytes per connection; "
          f"ratio {hsw / plain:.1f}x (tracemalloc: the Python heap, not RSS)")
    if args.rss:
        print()
        rss(args.k, args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
