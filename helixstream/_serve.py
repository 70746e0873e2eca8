"""``helixstream serve``: a stdlib WSGI demo with a live page (private)."""
from __future__ import annotations

import argparse
import errno
import html
import sys
import weakref
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, Iterable, List
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._cli import UsageError
from ._simulate import SimulatedLLM
from .sse import SSEReplay, sse_stream
from ._streamer import EnhancedStreamer, StreamConfig

__all__ = ["make_app", "serve"]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>helixstream</title>
<style>
 body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }}
 #text {{ white-space: pre-wrap; min-height: 8rem; border-left: 3px solid #8ab; padding-left: 1rem; }}
 progress {{ width: 100%; height: 1rem; }}
 #status {{ color: #567; font-size: .9rem; }}
</style></head>
<body>
<h1>helixstream</h1>
<p>{source} through a <b>{buffer}</b> buffer, as Server-Sent Events.</p>
<progress id="bar" value="0" max="{total}"></progress>
<div id="status">connecting&hellip;</div>
<div id="text"></div>
<p><button id="again">Stream again</button></p>
<script>
let source = null;
function start() {{
  const text = document.getElementById("text"), bar = document.getElementById("bar"),
        status = document.getElementById("status");
  text.textContent = ""; bar.value = 0;
  if (source) source.close();
  source = new EventSource("events?n=" + Date.now());
  source.onopen = () => {{ status.textContent = "streaming"; }};
  source.onmessage = (e) => {{ text.textContent += e.data; }};
  source.addEventListener("progress", (e) => {{
    const p = JSON.parse(e.data);
    if (p.total) bar.max = p.total;
    bar.value = p.received;
    status.textContent = p.received + (p.total ? " of ~" + p.total : "") + " tokens";
  }});
  source.addEventListener("done", () => {{
    bar.value = bar.max; status.textContent = "done"; source.close();
  }});
  source.addEventListener("error", (e) => {{
    if (e.data) {{ status.textContent = "error: " + JSON.parse(e.data).message; source.close(); }}
  }});
}}
document.getElementById("again").onclick = start;
start();
</script>
</body></html>
"""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_app(
    args: argparse.Namespace, make_source: Callable[[argparse.Namespace], Any]
) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: ``/`` is the page, ``/events`` the event stream."""
    config = StreamConfig(
        buffer_type=args.buffer,
        rate_limit=args.rate,
        max_delay=args.max_delay,
        language=getattr(args, "language", "en"),
        progress_interval=0.1,
    )
    streamer = EnhancedStreamer(config)
    replay = SSEReplay()
    bodies: "weakref.WeakSet[Any]" = weakref.WeakSet()
    estimate = len(SimulatedLLM()) if not args.base_url else 0
    described = f"The model at {html.escape(args.base_url)}" if args.base_url else "A simulated model"
    page = PAGE.format(source=described, buffer=html.escape(str(config.buffer_type)), total=estimate or 1)

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/":
            data = page.encode("utf-8")
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Content-Length", str(len(data)))])
            return [data]
        if path == "/events":
            def chunks() -> Any:
                output, _ = streamer.stream_enhanced(make_source(args))
                return output

            body = sse_stream(
                chunks,
                progress=True,
                estimated_tokens=estimate,
                keepalive=15.0,
                replay=replay,
                last_event_id=environ.get("HTTP_LAST_EVENT_ID"),
            )
            bodies.add(body)
            start_response(body.status_line, body.headers)  # 204: a resume after the end
            return body
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found\n"]

    app.bodies = bodies  # type: ignore[attr-defined]
    app.replay = replay  # type: ignore[attr-defined]
    return app


def serve(args: argparse.Namespace, make_source: Callable[[argparse.Namespace], Any]) -> int:
    """Serve the demo until Ctrl-C; then close every open stream.

    Raises:
        UsageError: the port cannot be listened on (in use, or not allowed).
    """
    app = make_app(args, make_source)
    try:
        server = make_server("127.0.0.1", args.port, app, server_class=_ThreadingServer,
                             handler_class=_QuietHandler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "the port is already in use"
        raise UsageError(
            f"cannot listen on 127.0.0.1:{args.port}: {reason}; "
            "pick another --port, or --port 0 for any free port"
        ) from None
    host, port = server.server_address[:2]
    if isinstance(host, bytes):
        host = host.decode()
    sys.stderr.write(f"helixstream: serving on http://{host}:{port}/  (Ctrl-C to stop)\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        sys.stderr.write("\nstopping\n")
    finally:
        app.replay.close()  # type: ignore[attr-defined]  # open pages get "shutdown"
        bodies: List[Any] = list(app.bodies)  # type: ignore[attr-defined]
        for body in bodies:
            body.close()
        server.server_close()
    return 0
