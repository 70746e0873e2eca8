"""Server-Sent Events at scale: what does one helixstream stream cost a WSGI worker?

N clients in a separate process (one thread, non-blocking sockets and epoll) against ONE
gunicorn worker (``gthread`` with N+16 threads, or ``gevent``), bound to a free port
on 127.0.0.1. Each client streams a simulated model at 20 tokens/s:

- ``hs``: ``hs.sse_stream(model, keepalive=15, replay=REPLAY, environ=environ)``, with
  one ``SSEReplay()`` registry for the endpoint (the documented defaults); the model
  is a generator that sleeps, so keep-alives need a source thread per stream;
- ``hs-wait``: the same with a model that can wait for its next token with a timeout
  (``wait_ready``, as ``hs.SimulatedLLM`` and ``sources.Channel`` can): no source
  thread, one wake-up per event;
- ``plain``: the baseline, a plain WSGI generator that yields the same tokens as SSE
  ``data:`` events, waiting for each with ``time.sleep``.

Each variant gets a fresh gunicorn. The model is helixstream's simulated answer
(``helixstream._simulate``'s tokens, repeated) on an absolute schedule without jitter:
token k of a client is due at ``t0 + 0.5 + k / 20``, where ``t0`` is the moment the
client connects (in its query string; both processes share ``CLOCK_MONOTONIC``). A
token the server sends late stays late: its lateness is the moment the client received
its event minus its due time. Clients connect over ``--ramp`` seconds, read for
``--seconds`` seconds, then hang up mid-answer (a normal close, as a browser leaving the
page); a model has ``--seconds + 5`` seconds of tokens.

Measured, per variant:

- on time: % of the events due before the client's hang-up (less 0.5 s) received within
  100 ms of their due time (an event never received is late); p50 / p99 / max lateness;
- CPU per event: the worker's ``utime + stime`` (``/proc/<pid>/stat``) over the window
  in which all N streams run, divided by the events received in that window; and the
  worker's share of a core in that window;
- RSS per connection: (peak ``VmRSS`` of the worker in the window - its idle ``VmRSS``
  after one warm-up stream) / N; the registry's ``size_bytes`` is shown beside it;
- context switches per event: voluntary + involuntary, summed over the worker's threads
  (``/proc/<pid>/task/*/status``), over the same window (wake-ups);
- helixstream threads per streaming connection: threads (greenlets under gevent) named
  ``helixstream-*`` in the worker (its ``/stats`` endpoint), by kind; the same 1 s after
  the clients left (detached streams waiting out ``grace``) and after ``grace``; models
  still open then (a source that ``grace`` should have closed).

Targets (issue 11), at N=500 under gthread: >= 99% on time, p99 < 100 ms, CPU per event
<= 1.5x the baseline's, RSS per connection <= 1.5x; at most one helixstream thread per
streaming connection, none per detached one. Under gevent: 2,000 streams, p99 < 200 ms.

Run: python benchmarks/sse_scale.py [--n 100 200 500] [--seconds 10]
                                    [--worker gthread|gevent] [--variants plain hs]
(needs gunicorn; gevent for ``--worker gevent``). ``--json FILE`` saves the results.
More variants, to find where the cost is: ``pumped`` (the baseline with keep-alives by
hand: a thread per stream and a ``queue.Queue``), ``hs-inline`` (no keep-alive, so no
thread of its own), ``hs-noreplay`` (no registry). ``--grace``, ``--keepalive``,
``--switch-interval`` and ``--gc-threshold`` set the registry, the stream and the
worker's interpreter.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from bisect import bisect_left
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs

RATE = 20.0  # tokens per second per stream
DELAY = 0.5  # seconds before a model's first token (SimulatedLLM's default)
EXTRA = 5.0  # seconds of tokens beyond the clients' reading time
ON_TIME = 0.100  # seconds
#: plain: the baseline; hs: sse_stream with keep-alive and a registry; for finding where
#: the cost is: hs-inline (no keep-alive: no thread of its own), hs-noreplay (no
#: registry), pumped (the baseline with keep-alives by hand: a thread and a queue.Queue);
#: hs-wait: as hs, with a model that can wait with a timeout (no source thread)
VARIANTS = ("plain", "hs", "hs-wait", "hs-inline", "hs-noreplay", "pumped")
HERE = os.path.dirname(os.path.abspath(__file__))


def model_tokens(count: int) -> List[str]:
    from helixstream._simulate import SAMPLE_ANSWER, split_tokens

    base = split_tokens(SAMPLE_ANSWER)
    return [base[k % len(base)] for k in range(count)]


# --- the server side (imported by gunicorn as sse_scale:app) -----------------------------
class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.models = 0
        self.closed = 0


COUNTS = _Counts()
if os.environ.get("SSE_SCALE_SWITCH_INTERVAL"):  # in the worker: --switch-interval
    sys.setswitchinterval(float(os.environ["SSE_SCALE_SWITCH_INTERVAL"]))
if os.environ.get("SSE_SCALE_GC_THRESHOLD"):  # in the worker: --gc-threshold
    import gc

    gc.set_threshold(int(os.environ["SSE_SCALE_GC_THRESHOLD"]))
_REPLAY: Any = None
_TOKENS: Dict[int, List[str]] = {}


def _replay() -> Any:
    global _REPLAY
    if _REPLAY is None:
        import helixstream as hs

        grace = float(os.environ.get("SSE_SCALE_GRACE", "10"))
        _REPLAY = hs.SSEReplay(grace=grace)
    return _REPLAY


def _tokens(count: int) -> List[str]:
    got = _TOKENS.get(count)
    if got is None:
        got = _TOKENS[count] = model_tokens(count)
    return got


class ScheduledModel:
    """A simulated model (``helixstream.SimulatedLLM`` without jitter) on an absolute
    schedule: token k is due at ``start + k * gap``. It waits with ``time.sleep``, as
    the baseline does, so that both pay the same for the model; ``close()`` (from any
    thread) is seen when the current wait ends, like a response closed between two
    reads."""

    def __init__(self, tokens: List[str], start: float, gap: float) -> None:
        self.tokens = tokens
        self.start = start
        self.gap = gap
        self.closed = False
        with COUNTS.lock:
            COUNTS.models += 1

    def __iter__(self) -> Iterator[str]:
        clock = time.monotonic
        sleep = time.sleep
        start, gap = self.start, self.gap
        for k, token in enumerate(self.tokens):
            left = start + k * gap - clock()
            if left > 0:
                sleep(left)
            if self.closed:
                return
            yield token

    def close(self) -> None:
        with COUNTS.lock:
            if not self.closed:
                self.closed = True
                COUNTS.closed += 1


class WaitingModel(ScheduledModel):
    """The same model, able to wait for its next token with a timeout (``wait_ready``),
    as ``helixstream.SimulatedLLM``'s iterator is: a stream's ``next_within`` then reads
    it in the request's own thread, with no thread of its own. It waits with
    ``time.sleep``, as the baseline and ``ScheduledModel`` do (so a ``close()`` is
    seen when the current wait ends), so that all variants pay the same for the
    model."""

    def __init__(self, tokens: List[str], start: float, gap: float) -> None:
        super().__init__(tokens, start, gap)
        self._k = 0

    def __iter__(self) -> "WaitingModel":  # type: ignore[override]
        return self

    def wait_ready(self, timeout: float) -> bool:
        if self.closed or self._k >= len(self.tokens):
            return True
        left = self.start + self._k * self.gap - time.monotonic()
        if left <= 0:
            return True
        if timeout < left:
            time.sleep(max(0.0, timeout))
            return self.closed
        time.sleep(left)
        return True

    def __next__(self) -> str:
        k = self._k
        if self.closed or k >= len(self.tokens):
            raise StopIteration
        left = self.start + k * self.gap - time.monotonic()
        if left > 0:
            time.sleep(left)
        if self.closed:
            raise StopIteration
        self._k = k + 1
        return self.tokens[k]


def _sse_data(text: str) -> bytes:
    return ("".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode("utf-8")


def _plain_body(tokens: List[str], start: float, gap: float) -> Iterator[bytes]:
    yield b": connected\n"
    clock = time.monotonic
    for k, token in enumerate(tokens):
        left = start + k * gap - clock()
        if left > 0:
            time.sleep(left)
        yield _sse_data(token)
    yield b"event: done\ndata: [DONE]\n\n"


def _pumped_body(tokens: List[str], start: float, gap: float, keepalive: float) -> Iterator[bytes]:
    """The plain generator with keep-alives done by hand: the model runs in a thread of
    its own and hands tokens over through a ``queue.Queue`` read with a timeout."""
    import queue

    q: "queue.Queue[Optional[str]]" = queue.Queue(256)
    model = ScheduledModel(tokens, start, gap)

    def pump() -> None:
        try:
            for token in model:
                q.put(token)
        finally:
            q.put(None)

    threading.Thread(target=pump, name="pumped-source", daemon=True).start()
    try:
        yield b": connected\n"
        while True:
            try:
                token = q.get(timeout=keepalive)
            except queue.Empty:
                yield b": keep-alive\n"
                continue
            if token is None:
                break
            yield _sse_data(token)
        yield b"event: done\ndata: [DONE]\n\n"
    finally:
        model.close()


def _stats() -> Dict[str, Any]:
    total = threading.active_count()
    # a grace timer is "helixstream-sse-grace-<key>", a stream's thread
    # "helixstream-<id>-<name>-<role>": group by what the thread does
    grouped: Dict[str, int] = collections.Counter()
    for t in threading.enumerate():
        name = t.name
        if not name.startswith("helixstream-"):
            continue
        if name.startswith("helixstream-sse-grace-"):
            grouped["grace timer"] += 1
        elif name == "helixstream-janitor":
            grouped["janitor"] += 1
        else:
            grouped[name.rsplit("-", 1)[-1]] += 1
    replay = _REPLAY
    with COUNTS.lock:
        models, closed = COUNTS.models, COUNTS.closed
    return {
        "pid": os.getpid(),
        "threads": total,
        "helix": sum(grouped.values()),
        "helix_kinds": dict(grouped),
        "models": models,
        "models_open": models - closed,
        "registry_streams": len(replay) if replay is not None else 0,
        "registry_bytes": replay.size_bytes if replay is not None else 0,
    }


def app(environ: Dict[str, Any], start_response: Any) -> Any:
    path = environ.get("PATH_INFO", "")
    if path == "/stats":
        body = json.dumps(_stats()).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    start = float(query["t0"][0]) + DELAY
    tokens = _tokens(int(query["count"][0]))
    gap = 1.0 / RATE
    if path == "/plain":
        start_response("200 OK", [("Content-Type", "text/event-stream; charset=utf-8"),
                                  ("Cache-Control", "no-cache")])
        return _plain_body(tokens, start, gap)
    keepalive = float(os.environ.get("SSE_SCALE_KEEPALIVE", "15"))
    if path == "/pumped":
        start_response("200 OK", [("Content-Type", "text/event-stream; charset=utf-8"),
                                  ("Cache-Control", "no-cache")])
        return _pumped_body(tokens, start, gap, keepalive)
    if path.startswith("/hs"):
        import helixstream as hs

        model_class = WaitingModel if path == "/hs-wait" else ScheduledModel
        body = hs.sse_stream(model_class(tokens, start, gap),
                             keepalive=None if path == "/hs-inline" else keepalive,
                             replay=None if path == "/hs-noreplay" else _replay(),
                             environ=environ)
        start_response(body.status_line, body.headers)
        return body
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]


# --- the clients (a separate process: ``sse_scale.py --client``) -------------------------
def _parse(raw: bytes) -> Tuple[int, List[Tuple[int, Optional[str], str]]]:
    """The HTTP head's end and the events of a response: (end offset, event, data)."""
    head = raw.find(b"\r\n\r\n")
    if head < 0:
        return 0, []
    pos = head + 4
    events = []
    while True:
        end = raw.find(b"\n\n", pos)
        if end < 0:
            break
        name: Optional[str] = None
        data: List[str] = []
        for line in raw[pos:end + 1].decode("utf-8").split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((end + 2, name, "\n".join(data)))
        pos = end + 2
    return pos, events


def run_clients(port: int, path: str, n: int, seconds: float, ramp: float,
                start: float, window: Tuple[float, float]) -> Dict[str, Any]:
    count = int((seconds + EXTRA) * RATE)
    tokens = model_tokens(count)
    sel = selectors.DefaultSelector()
    t0s = [start + ramp * k / n for k in range(n)]
    hangups = [t + DELAY + seconds for t in t0s]
    chunks: List[List[Tuple[float, bytes]]] = [[] for _ in range(n)]
    socks: List[Optional[socket.socket]] = [None] * n
    closed_early = 0
    errors = 0
    opened = 0
    hung = 0
    order = sorted(range(n), key=lambda k: hangups[k])
    clock = time.monotonic
    while hung < n:
        now = clock()
        while opened < n and t0s[opened] <= now:
            k = opened
            opened += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks[k] = s
            sel.register(s, selectors.EVENT_WRITE, k)
        while hung < n and hangups[order[hung]] <= now:
            k = order[hung]
            hung += 1
            s = socks[k]
            if s is not None:
                try:
                    while True:  # read what is there, so the close is a FIN
                        data = s.recv(65536)
                        if not data:
                            break
                        chunks[k].append((now, data))
                except (BlockingIOError, OSError):
                    pass
                sel.unregister(s)
                s.close()
                socks[k] = None
        nxt = min(t0s[opened] if opened < n else 1e18,
                  hangups[order[hung]] if hung < n else 1e18)
        timeout = max(0.0, min(nxt - clock(), 0.05))
        for key, mask in sel.select(timeout):
            k = key.data
            s = key.fileobj
            if mask & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    errors += 1
                    sel.unregister(s)
                    s.close()
                    socks[k] = None
                    continue
                request = (f"GET {path}?t0={t0s[k]!r}&count={count} HTTP/1.0\r\n"
                           f"Host: 127.0.0.1\r\n\r\n").encode()
                s.send(request)
                sel.modify(s, selectors.EVENT_READ, k)
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                chunks[k].append((clock(), data))
            else:
                closed_early += 1
                sel.unregister(s)
                s.close()
                socks[k] = None
    cpu = os.times()
    # afterwards: parse, match each text event to its token and due time
    late: List[float] = []
    measured = 0
    on_time = 0
    received = 0
    in_window = 0
    wrong_text = 0
    for k in range(n):
        raw = b"".join(data for _, data in chunks[k])
        ends = list(itertools.accumulate(len(d) for _, d in chunks[k]))
        _, events = _parse(raw)
        texts = [(end, data) for end, name, data in events if name is None]
        received += len(texts)
        last_due = hangups[k] - 0.5
        first = t0s[k] + DELAY
        got = 0
        for i, (end, data) in enumerate(texts):
            if data != tokens[i]:
                wrong_text += 1
            at = chunks[k][bisect_left(ends, end)][0]
            if window[0] <= at < window[1]:
                in_window += 1
            due = first + i / RATE
            if due <= last_due:
                measured += 1
                got += 1
                lateness = at - due
                late.append(lateness)
                if lateness <= ON_TIME:
                    on_time += 1
        expected = int((last_due - first) * RATE) + 1
        missing = max(0, expected - got)
        measured += missing
        late.extend([float("inf")] * missing)
    late.sort()
    finite = [x for x in late if x != float("inf")]

    def pct(p: float) -> float:
        return late[min(len(late) - 1, int(len(late) * p))] if late else float("nan")

    return {
        "n": n, "measured": measured, "on_time": on_time, "received": received,
        "in_window": in_window, "wrong_text": wrong_text, "connect_errors": errors,
        "closed_by_server": closed_early,
        "p50": pct(0.50), "p99": pct(0.99), "max": finite[-1] if finite else float("nan"),
        "client_cpu": cpu.user + cpu.system,
    }


# --- the orchestrator --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        data = r.read()
    return json.loads(data) if path == "/stats" else data


def _server_stats(port: int) -> Dict[str, Any]:
    """The worker's /stats, or {} when it does not answer within 30 s (overloaded)."""
    try:
        return dict(_get(port, "/stats", 30.0))
    except OSError:
        return {}


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _switches(pid: int) -> int:
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(variant: str, n: int, args: argparse.Namespace) -> Dict[str, Any]:
    port = _free_port()
    env = dict(os.environ, SSE_SCALE_GRACE=str(args.grace),
               SSE_SCALE_KEEPALIVE=str(args.keepalive),
               SSE_SCALE_SWITCH_INTERVAL=str(args.switch_interval or ""),
               SSE_SCALE_GC_THRESHOLD=str(args.gc_threshold or ""))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(HERE), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
           "--pythonpath", HERE, "--backlog", "4096", "--timeout", "600",
           "--graceful-timeout", "3", "--log-level", "warning",
           "--worker-connections", str(n + 100)]
    if args.worker == "gthread":
        cmd += ["-k", "gthread", "--threads", str(n + 16)]
    else:
        cmd += ["-k", "gevent"]
    cmd.append("sse_scale:app")
    server = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                stats = _get(port, "/stats", 1.0)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("gunicorn did not start")
                time.sleep(0.1)
        pid = stats["pid"]
        # warm up: one short stream of this variant (imports, first allocations)
        _get(port, f"/{variant}?t0={time.monotonic() - DELAY!r}&count=5")
        time.sleep(0.5)
        idle_rss = _rss_kb(pid)
        load_before = _load()
        start = time.monotonic() + 1.0
        window = (start + args.ramp + 0.5, start + DELAY + args.seconds)
        client = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--client", str(port), f"/{variant}",
             str(n), str(args.seconds), str(args.ramp), repr(start), repr(window[0]),
             repr(window[1])],
            stdout=subprocess.PIPE, env=env)
        peak = idle_rss
        cpu_all0 = _cpu_s(pid)
        while time.monotonic() < window[0]:
            time.sleep(0.05)
        cpu0, sw0, t_w0 = _cpu_s(pid), _switches(pid), time.monotonic()
        mid = (window[0] + window[1]) / 2
        streaming: Dict[str, Any] = {}
        while time.monotonic() < window[1]:
            peak = max(peak, _rss_kb(pid))
            if not streaming and time.monotonic() >= mid:
                streaming = _server_stats(port) or {"unanswered": True}
            time.sleep(0.25)
        cpu1, sw1, t_w1 = _cpu_s(pid), _switches(pid), time.monotonic()
        peak = max(peak, _rss_kb(pid))
        out, _ = client.communicate(timeout=args.seconds + args.ramp + 120)
        cpu_all1 = _cpu_s(pid)
        result = json.loads(out)
        time.sleep(1.0)
        left = _server_stats(port)
        after: Dict[str, Any] = {}
        if variant.startswith("hs") and args.grace > 0:
            time.sleep(args.grace + 1.0)
            after = _server_stats(port)
        result.update({
            "variant": variant, "worker": args.worker, "seconds": args.seconds,
            "switch_interval": args.switch_interval, "gc_threshold": args.gc_threshold,
            "load_before": load_before, "load_after": _load(),
            "idle_rss_kb": idle_rss, "peak_rss_kb": peak,
            "rss_kb_per_conn": (peak - idle_rss) / n,
            "cpu_window_s": cpu1 - cpu0, "window_s": t_w1 - t_w0,
            "cpu_total_s": cpu_all1 - cpu_all0,
            "cpu_us_per_event": (cpu1 - cpu0) / max(1, result["in_window"]) * 1e6,
            "core_share": (cpu1 - cpu0) / (t_w1 - t_w0),
            "switches_per_event": (sw1 - sw0) / max(1, result["in_window"]),
            "streaming": streaming, "left_1s": left, "after_grace": after,
        })
        return result
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _fmt_ms(x: float) -> str:
    return "never" if x == float("inf") else f"{x * 1e3:.0f}" if x >= 0.0995 else f"{x * 1e3:.1f}"


def describe(r: Dict[str, Any]) -> str:
    s = r["streaming"]
    n = r["n"]
    lines = [
        f"  {r['variant']:5} N={n} {r['worker']}: on time {100 * r['on_time'] / max(1, r['measured']):.2f}% "
        f"of {r['measured']}, p50/p99/max {_fmt_ms(r['p50'])}/{_fmt_ms(r['p99'])}/"
        f"{_fmt_ms(r['max'])} ms, CPU {r['cpu_us_per_event']:.0f} us/event "
        f"({100 * r['core_share']:.0f}% of a core), {r['switches_per_event']:.2f} switches/event, "
        f"RSS {r['rss_kb_per_conn']:.0f} KB/conn (idle {r['idle_rss_kb'] // 1024} MB, peak "
        f"{r['peak_rss_kb'] // 1024} MB), text errors {r['wrong_text']}, connect errors "
        f"{r['connect_errors']}, closed by server {r['closed_by_server']}, client CPU "
        f"{r['client_cpu']:.1f} s, load {r['load_before']} -> {r['load_after']}",
        f"        streaming: {s.get('threads')} threads, helixstream {s.get('helix')} "
        f"{s.get('helix_kinds')} ({s.get('helix', 0) / n:.2f}/conn), registry "
        f"{s.get('registry_streams')} streams {s.get('registry_bytes', 0) // 1024} KB",
    ]
    for label, st in (("1 s after leaving", r["left_1s"]), ("after grace", r["after_grace"])):
        if st:
            lines.append(
                f"        {label}: {st.get('threads')} threads, helixstream {st.get('helix')} "
                f"{st.get('helix_kinds')} ({st.get('helix', 0) / n:.2f}/detached), models open "
                f"{st.get('models_open')} of {st.get('models')}")
    return "\n".join(lines)


def table(results: List[Dict[str, Any]]) -> str:
    rows = ["| worker | N | variant | on time (<= 100 ms) | p99 ms | CPU us/event | switches/event "
            "| RSS KB/conn | hs threads/conn streaming | after 1 s / after grace |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r["worker"], r["n"], r["variant"]): r for r in results}
    for r in results:
        s, l1, ag = r["streaming"], r["left_1s"], r["after_grace"]
        rows.append(
            f"| {r['worker']} | {r['n']} | {r['variant']} | "
            f"{100 * r['on_time'] / max(1, r['measured']):.2f}% | {_fmt_ms(r['p99'])} | "
            f"{r['cpu_us_per_event']:.0f} | {r['switches_per_event']:.2f} | "
            f"{r['rss_kb_per_conn']:.0f} | {s.get('helix', 0) / r['n']:.2f} | "
            f"{l1.get('helix', 0) / r['n']:.2f} / "
            f"{(ag.get('helix', 0) / r['n']) if ag else 0:.2f} |")
    ratios = ["", "| worker | N | variant | CPU/event hs : plain (<= 1.5) | RSS/conn hs : plain (<= 1.5) "
              "| on time hs / plain | p99 hs / plain ms |", "|---|---|---|---|---|---|---|"]
    for (worker, n, variant), r in by.items():
        base = by.get((worker, n, "plain"))
        if not variant.startswith("hs") or base is None:
            continue
        rss_ratio = r["rss_kb_per_conn"] / base["rss_kb_per_conn"] if base["rss_kb_per_conn"] > 0 else float("nan")
        # (a run too short for the CPU clock to tick gives 0: no ratio)
        cpu_ratio = (r["cpu_us_per_event"] / base["cpu_us_per_event"]
                     if base["cpu_us_per_event"] > 0 else float("nan"))
        ratios.append(
            f"| {worker} | {n} | {variant} | {cpu_ratio:.2f} | "
            f"{rss_ratio:.2f} | {100 * r['on_time'] / max(1, r['measured']):.2f}% / "
            f"{100 * base['on_time'] / max(1, base['measured']):.2f}% | "
            f"{_fmt_ms(r['p99'])} / {_fmt_ms(base['p99'])} |")
    return "\n".join(rows + (ratios if len(ratios) > 3 else []))


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--client":
        port, path, n, seconds, ramp, start, w0, w1 = argv[1:9]
        result = run_clients(int(port), path, int(n), float(seconds), float(ramp),
                             float(start), (float(w0), float(w1)))
        json.dump(result, sys.stdout)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ramp", type=float, default=1.0,
                        help="seconds over which the clients connect")
    parser.add_argument("--worker", choices=("gthread", "gevent"), default="gthread")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["plain", "hs"])
    parser.add_argument("--grace", type=float, default=10.0, help="SSEReplay(grace=)")
    parser.add_argument("--keepalive", type=float, default=15.0)
    parser.add_argument("--switch-interval", type=float,
                        help="sys.setswitchinterval() in the worker (CPython's default: 0.005)")
    parser.add_argument("--gc-threshold", type=int,
                        help="gc.set_threshold() of the youngest generation in the worker "
                             "(CPython's default: 700)")
    parser.add_argument("--json", help="append the results to this file (JSON lines)")
    args = parser.parse_args(argv)
    results = []
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, worker {args.worker}, "
          f"{args.seconds:g} s per client, load {_load()}", flush=True)
    for n in args.n:
        for variant in args.variants:
            r = measure(variant, n, args)
            results.append(r)
            print(describe(r), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
