"""A real browser reads helixstream event streams: headless Chromium's EventSource.

A Flask app on 127.0.0.1 (Werkzeug's server) serves small pages whose EventSource reads
a helixstream stream; Chromium loads a page, runs it under a virtual-time budget (time
stands still while a request is open, so the page sees the whole stream), and prints
the DOM (``--dump-dom``), which the test reads back:

- the text and the progress a page shows from ``sse_response(..., progress=True)``;
- every event of the encoding table as the browser dispatched it (type, data,
  lastEventId), which must be what ``browser_events`` (the reference algorithm the other
  tests and the httpx-sse/sseclient-py checks rely on) says;
- a connection the server cuts mid-stream: the browser reconnects by itself with
  ``Last-Event-ID`` and the page ends with the whole text, nothing twice.
- a "Stop" button: the page POSTs the stream's id, the server cancels it (checked
  against the session's owner), the page gets ``cancelled`` and the model's stream is
  closed;
- a page that never closes its EventSource: after the end, its reconnect is answered
  204 and the browser stops for good.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped, saying so, without it.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from typing import Any, Callable, Dict, Iterator, List

import pytest

from helixstream.sse import SSEReplay, SSEWriter
from helixstream._tokens import estimate_tokens

from .test_sse_encoding import EVENTS, Dispatched, browser_events
from .test_sse_servers import serve

flask = pytest.importorskip("flask")

CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)",
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]

ANSWER = (
    "Streams from a language model arrive in ragged pieces. helixstream turns them into "
    "events a browser can show as they come: text, progress, and a clean end."
)
WORDS = [w + " " for w in ANSWER.split(" ")]
WORDS[-1] = WORDS[-1].rstrip()
ESTIMATE = 60

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>helixstream</title></head><body>
<div id="text"></div>
<progress id="bar" value="0" max="1"></progress>
<span id="progress">0/?</span> <span id="status">connecting</span>
<span id="opens">0</span>
<script>
const text = document.getElementById("text");
const es = new EventSource("/stream" + location.search);
let opens = 0;
es.onopen = () => { document.getElementById("opens").textContent = String(++opens); };
es.onmessage = (e) => { text.textContent += e.data; };
es.addEventListener("progress", (e) => {
  const p = JSON.parse(e.data);
  const bar = document.getElementById("bar");
  bar.max = p.total; bar.value = p.received;
  document.getElementById("progress").textContent = p.received + "/" + p.total;
});
es.addEventListener("done", () => {
  es.close();
  document.getElementById("status").textContent = "done";
});
es.addEventListener("error", (e) => {
  if (e.data) { es.close(); document.getElementById("status").textContent = "error " + e.data; }
});
</script></body></html>
"""

TABLE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"></head><body><pre id="log"></pre>
<script>
const seen = [];
const es = new EventSource("/table");
const record = (e) => { seen.push([e.type, e.data, e.lastEventId]); };
for (const type of TYPES) { es.addEventListener(type, record); }
es.addEventListener("done", (e) => {
  es.close();
  document.getElementById("log").textContent = JSON.stringify(seen);
});
</script></body></html>
"""


def table_stream() -> bytes:
    """Every row of the encoding table, as SSEWriter writes it, then ``done``."""
    out = io.BytesIO()
    writer = SSEWriter(out)
    writer.write_comment("the encoding table")
    for i, (args, _) in enumerate(EVENTS):
        event, data, _, _ = args
        writer.write_event(event, data, id=f"row-{i}")
    writer.write_done(id="end")
    return out.getvalue()


def paced_words() -> Iterator[str]:
    """The answer, a word at a time at an LLM's pace (the server's real time)."""
    import threading

    pause = threading.Event()
    for word in WORDS:
        pause.wait(0.005)
        yield word


class CutFirstConnection:
    """WSGI middleware: ends the first ``/stream?cut=N`` response after N text events,
    as a dropped connection would; records the ``Last-Event-ID`` of every request."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.last_event_ids: List[str] = []

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        result = self.app(environ, start_response)
        if environ["PATH_INFO"] != "/stream":
            return result
        last = environ.get("HTTP_LAST_EVENT_ID")
        self.last_event_ids.append(last or "")
        match = re.search(r"cut=(\d+)", environ.get("QUERY_STRING", ""))
        if last or not match:
            return result
        return self._cut(result, int(match.group(1)))

    @staticmethod
    def _cut(result: Any, after: int) -> Iterator[bytes]:
        try:
            texts = 0
            for piece in result:
                yield piece
                texts += piece.startswith(b"data: ")
                if texts >= after:
                    return
        finally:
            result.close()


def make_app(replay: SSEReplay) -> CutFirstConnection:
    from helixstream.integrations.flask import sse_response

    app = flask.Flask("sse_browser_test")
    types = sorted({(args[0] or "message") for args, _ in EVENTS})

    @app.get("/")
    def page() -> Any:
        return flask.Response(PAGE, mimetype="text/html")

    @app.get("/table.html")
    def table_page() -> Any:
        return flask.Response(TABLE_PAGE.replace("TYPES", json.dumps(types)), mimetype="text/html")

    @app.get("/stream")
    def stream() -> Any:
        return sse_response(
            paced_words, progress=True, estimated_tokens=ESTIMATE, replay=replay, retry=50
        )

    @app.get("/table")
    def table() -> Any:
        return flask.Response(table_stream(), content_type="text/event-stream; charset=utf-8")

    return CutFirstConnection(app)


def dump_dom(url: str) -> str:
    """Load ``url`` in headless Chromium (fresh profile) and return the final DOM."""
    with tempfile.TemporaryDirectory(prefix="helixstream-chromium-") as profile:
        cmd = [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            out, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError("Chromium did not finish within 40 s") from None
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        return out.decode("utf-8")


def element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', dom, re.S)
    assert match, f"no #{element_id} in the page:\n{dom[:2000]}"
    return html.unescape(match.group(1))


@pytest.fixture
def site() -> Iterator[Any]:
    replay = SSEReplay(grace=30)
    app = make_app(replay)
    try:
        with serve(app, "werkzeug") as base:
            yield base, app
    finally:
        replay.close()


def test_the_browser_shows_the_streamed_text_and_progress(site: Any) -> None:
    base, app = site
    dom = dump_dom(base + "/")
    tokens = sum(estimate_tokens(w) for w in WORDS)
    assert element_text(dom, "text") == ANSWER
    assert element_text(dom, "progress") == f"{tokens}/{ESTIMATE}"
    assert f'<progress id="bar" value="{tokens}" max="{ESTIMATE}">' in dom
    assert element_text(dom, "status") == "done"
    assert element_text(dom, "opens") == "1"
    assert app.last_event_ids == [""]


def test_the_browser_dispatches_what_the_reference_parser_says(site: Any) -> None:
    base, _ = site
    dom = dump_dom(base + "/table.html")
    seen = [Dispatched(*row) for row in json.loads(element_text(dom, "log"))]
    want = browser_events(table_stream())
    assert seen == want[:-1]  # all but the final "done", which closes the page's stream
    assert len(seen) == len(EVENTS)


def test_the_browser_resumes_a_cut_stream_with_last_event_id(site: Any) -> None:
    base, app = site
    dom = dump_dom(base + "/?cut=5")
    assert element_text(dom, "text") == ANSWER  # the whole text, nothing twice
    assert element_text(dom, "status") == "done"
    assert element_text(dom, "opens") == "2"
    first, resumed = app.last_event_ids
    assert first == "" and re.fullmatch(r"[\w-]+\.10", resumed), app.last_event_ids


# --- a "Stop" button (docs/recipes.md): cancel by id, checked against the owner ------------
STOP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"></head><body>
<div id="text"></div> <span id="status">connecting</span> <span id="stop">-</span>
<script>
const es = new EventSource("/long");
let asked = false;
es.onmessage = (e) => {
  document.getElementById("text").textContent += e.data;
  if (asked) return;
  asked = true;   // the user presses "Stop" after the first words
  const id = e.lastEventId.slice(0, e.lastEventId.lastIndexOf("."));
  fetch("/stop/" + id, {method: "POST"}).then((r) => {
    document.getElementById("stop").textContent = String(r.status);
  });
};
es.addEventListener("error", (e) => {
  if (e.data) { es.close(); document.getElementById("status").textContent = JSON.parse(e.data).code; }
});
</script></body></html>
"""


def test_the_browser_stops_its_stream_with_a_post_checked_against_its_owner() -> None:
    import secrets
    import threading

    closed = threading.Event()
    stop_answers: List[int] = []

    def long_answer() -> Iterator[str]:
        pause = threading.Event()
        try:
            for n in range(2000):  # 20 s of words unless stopped
                pause.wait(0.01)
                yield f"w{n} "
        finally:
            closed.set()

    app = flask.Flask("sse_stop_test")
    app.secret_key = "helixstream-tests"
    replay = SSEReplay(grace=30)
    from helixstream.integrations.flask import sse_response

    def owner() -> str:
        return str(flask.session.setdefault("owner", secrets.token_hex(8)))

    @app.get("/")
    def page() -> Any:
        return flask.Response(STOP_PAGE, mimetype="text/html")

    @app.get("/long")
    def long() -> Any:
        return sse_response(long_answer, replay=replay, owner=owner())

    @app.post("/stop/<stream_id>")
    def stop(stream_id: str) -> Any:
        # someone else who learnt the id cannot stop it
        assert replay.cancel(stream_id, owner="someone else") is False
        cancelled = replay.cancel(stream_id, owner=owner())
        stop_answers.append(204 if cancelled else 404)
        return ("", 204) if cancelled else ("", 404)

    try:
        with serve(app, "werkzeug") as base:
            dom = dump_dom(base + "/")
            assert closed.wait(5), "the model's stream was not closed"
    finally:
        replay.close()
    assert element_text(dom, "status") == "cancelled"
    assert element_text(dom, "stop") == "204" and stop_answers == [204]
    words = element_text(dom, "text").split()
    assert words and len(words) < 2000 and words == [f"w{n}" for n in range(len(words))]


FORGETFUL_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"></head><body>
<div id="text"></div> <span id="state">open</span>
<script>
const es = new EventSource("/short");   // never closed: the browser reconnects after "done"
es.onmessage = (e) => { document.getElementById("text").textContent += e.data; };
es.addEventListener("error", () => {
  if (es.readyState === EventSource.CLOSED) document.getElementById("state").textContent = "closed";
});
</script></body></html>
"""


def test_a_page_that_forgets_to_close_stops_reconnecting_after_the_end() -> None:
    from helixstream.integrations.flask import sse_response

    app = flask.Flask("sse_forgetful_test")
    replay = SSEReplay()
    requests: List[str] = []

    @app.get("/")
    def page() -> Any:
        return flask.Response(FORGETFUL_PAGE, mimetype="text/html")

    @app.get("/short")
    def short() -> Any:
        requests.append(flask.request.headers.get("Last-Event-ID", ""))
        return sse_response(["Hello", " there"], replay=replay, retry=50)

    try:
        with serve(app, "werkzeug") as base:
            dom = dump_dom(base + "/")
    finally:
        replay.close()
    assert element_text(dom, "text") == "Hello there"
    assert element_text(dom, "state") == "closed"  # 204: the EventSource gave up
    assert len(requests) == 2 and requests[0] == "" and requests[1].endswith(".3"), requests


UI_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>useChat-style</title></head><body>
<div id="text"></div><span id="parts"></span> <span id="status">connecting</span>
<script>
// what a UI message stream reader does with the parts: text deltas by text id
const text = document.getElementById("text");
const parts = [];
const es = new EventSource("/ui");
es.onmessage = (e) => {
  if (e.data === "[DONE]") { es.close(); document.getElementById("status").textContent = "done"; return; }
  const part = JSON.parse(e.data);
  parts.push(part.type);
  if (part.type === "text-delta") text.textContent += part.delta;
  document.getElementById("parts").textContent = parts.join(",");
};
</script></body></html>"""


def test_a_page_reads_the_ai_sdk_stream() -> None:
    from helixstream.integrations.flask import sse_response

    app = flask.Flask("ui")

    @app.get("/")
    def page() -> Any:
        return UI_PAGE

    @app.get("/ui")
    def ui() -> Any:
        return sse_response(lambda: WORDS, format="ai-sdk", keepalive=None)

    with serve(app, "werkzeug") as base:
        dom = dump_dom(base + "/")
    assert element_text(dom, "text") == ANSWER
    assert element_text(dom, "status") == "done"
    parts = element_text(dom, "parts").split(",")
    assert parts[:3] == ["start", "start-step", "text-start"]
    assert parts[-3:] == ["text-end", "finish-step", "finish"]
    assert parts.count("text-delta") == len(WORDS)
