"""sse_stream behind real WSGI servers on 127.0.0.1, read by real SSE clients.

Servers: waitress (a plain WSGI app), Werkzeug's development server under a Flask app,
and Django's WSGI handler under waitress. Clients: httpx + httpx-sse, and sseclient-py
over ``http.client``. A client that reads a few events and hangs up must make the
server close the body, which closes the stream: the test waits (with a timeout) for the
source's ``close()`` and joins the stream's threads.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
import types
import wsgiref.validate
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest

from helixstream.sse import SSEBody, SSEReplay, sse_stream

from .conftest import helix_threads, wait_for
from .sources import BlockingSource
from .test_sse_encoding import Dispatched, browser_events

httpx = pytest.importorskip("httpx")
httpx_sse = pytest.importorskip("httpx_sse")
sseclient = pytest.importorskip("sseclient")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}

TRICKY = ["Hello", " world", "\n", "  indented", "line\r\nbreak", "é 😀", "a\u2028b", ": colon"]


class PacedSource:
    """A stand-in LLM stream: a token every ``interval`` s, then (``limit``) silence.

    Not a generator: like an HTTP response, it can be closed from another thread while
    a read is blocked, and ``close()`` is recorded in ``closed``.
    """

    def __init__(self, interval: float = 0.01, limit: Optional[int] = None) -> None:
        self.interval = interval
        self.limit = limit
        self.sent = 0
        self.closed = threading.Event()

    def __iter__(self) -> "PacedSource":
        return self

    def __next__(self) -> str:
        if self.limit is not None and self.sent >= self.limit:
            self.closed.wait()  # silent until closed: only keep-alives go out
            raise StopIteration
        if self.closed.wait(self.interval):
            raise StopIteration
        self.sent += 1
        return f"tok{self.sent} "

    def close(self) -> None:
        self.closed.set()


# --- servers -------------------------------------------------------------------------------
@contextlib.contextmanager
def serve(app: Callable[..., Any], server: str) -> Iterator[str]:
    """Run ``app`` on 127.0.0.1 (a free port) in ``server``; yield the base URL."""
    if server == "waitress":
        import waitress

        srv = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
        thread = threading.Thread(target=srv.run, name="test-waitress", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.effective_port}"
        finally:
            # Closed by its own loop (no select timeout). Not pull_trigger(srv.close): it
            # appends the thunk, then writes to the trigger's pipe; a worker's own pull
            # (a response just finishing) can wake the loop in between, which runs the
            # thunk and closes the pipe before that write (EBADF, or a write into a
            # reused descriptor). Holding the trigger's lock keeps the loop from running
            # the thunk until the wake-up byte is written.
            with srv.trigger.lock:
                srv.trigger.thunks.append(srv.close)
                srv.trigger._physical_pull()
            thread.join(5)
            srv.task_dispatcher.shutdown(timeout=5)
    elif server == "werkzeug":
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log(self, *args: Any) -> None:
                pass

        srv = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
        thread = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.05}, name="test-werkzeug"
        )
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.server_port}"
        finally:
            srv.shutdown()
            srv.server_close()
            thread.join(5)
    else:  # pragma: no cover
        raise ValueError(server)
    assert not thread.is_alive()


class Recorder:
    """A WSGI middleware that records the headers each response started with."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.headers: List[List[Tuple[str, str]]] = []

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def recording(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            self.headers.append(list(headers))
            return start_response(status, headers, exc_info)

        return self.app(environ, recording)


def plain_app(make_source: Callable[[], Any], bodies: List[SSEBody], **options: Any) -> Recorder:
    """A WSGI app of sse_stream and SSE_HEADERS alone, checked by wsgiref's validator."""

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = sse_stream(make_source, last_event_id=environ.get("HTTP_LAST_EVENT_ID"), **options)
        bodies.append(body)
        start_response(body.status_line, body.headers)
        return body

    return Recorder(wsgiref.validate.validator(app))


def flask_app(make_source: Callable[[], Any], bodies: List[SSEBody], **options: Any) -> Recorder:
    flask = pytest.importorskip("flask")
    from helixstream.integrations.flask import sse_response

    app = flask.Flask("sse_test")

    @app.get("/stream")
    def stream() -> Any:
        response = sse_response(make_source, **options)
        bodies.append(response.response)
        return response

    return Recorder(app)


_django_views: Dict[str, Callable[..., Any]] = {}


def django_app(make_source: Callable[[], Any], bodies: List[SSEBody], **options: Any) -> Recorder:
    pytest.importorskip("django")
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.urls import path

    from helixstream.integrations.django import sse_response

    def view(request: Any) -> Any:
        # (Django keeps the body private: tests find its threads by name instead)
        return sse_response(make_source, request=request, **options)

    urls = types.ModuleType("sse_test_urls")
    urls.urlpatterns = [path("stream", view)]  # type: ignore[attr-defined]
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="helixstream-tests",
            ALLOWED_HOSTS=["127.0.0.1"],
            ROOT_URLCONF=urls,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    settings.ROOT_URLCONF = urls  # each test its own views
    from django.urls import clear_url_caches

    clear_url_caches()
    return Recorder(WSGIHandler())


APPS = {"waitress": plain_app, "werkzeug": flask_app, "django": django_app}
SERVER_OF = {"waitress": "waitress", "werkzeug": "werkzeug", "django": "waitress"}
SETUPS = ["waitress", "werkzeug", "django"]


@contextlib.contextmanager
def running(
    setup: str, make_source: Callable[[], Any], **options: Any
) -> Iterator[Tuple[str, List[SSEBody], Recorder]]:
    bodies: List[SSEBody] = []
    app = APPS[setup](make_source, bodies, **options)
    with serve(app, SERVER_OF[setup]) as base:
        yield base + "/stream", bodies, app


# --- clients -------------------------------------------------------------------------------
def read_httpx_sse(
    url: str, headers: Optional[Dict[str, str]] = None, limit: Optional[int] = None
) -> Tuple[List[Dispatched], Any]:
    """Events as httpx-sse dispatches them; hang up after ``limit`` message events."""
    got: List[Dispatched] = []
    with httpx.Client(timeout=10) as client:
        with httpx_sse.connect_sse(client, "GET", url, headers=dict(headers or {})) as source:
            response = source.response
            for sse in source.iter_sse():
                got.append(Dispatched(sse.event, sse.data, sse.id))
                if limit is not None and sum(e.type == "message" for e in got) >= limit:
                    break
    return got, response


def read_sseclient(url: str) -> List[Dispatched]:
    """Events as sseclient-py dispatches them, over the standard library's http.client."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path, headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        client = sseclient.SSEClient(response)
        return [Dispatched(e.event, e.data, e.id or "") for e in client.events()]
    finally:
        conn.close()


def read_raw(url: str) -> bytes:
    with httpx.Client(timeout=10) as client:
        return client.get(url).content


def _ids_increase(events: List[Dispatched]) -> bool:
    ids = [int(e.last_event_id.rpartition(".")[2]) for e in events]
    return ids == sorted(ids) and len(set(ids)) == len(ids)


# --- tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("setup", SETUPS)
def test_real_clients_and_the_browser_algorithm_agree_on_every_event(setup: str) -> None:
    with running(setup, lambda: iter(TRICKY), progress=True, estimated_tokens=20) as (
        url,
        bodies,
        _,
    ):
        via_httpx, response = read_httpx_sse(url)
        via_sseclient = read_sseclient(url)
        raw = read_raw(url)
    browser = browser_events(raw)
    assert via_httpx == browser
    assert via_sseclient == browser
    texts = [e.data for e in browser if e.type == "message"]
    assert texts == [t.replace("\r\n", "\n") for t in TRICKY]
    progress = [json.loads(e.data) for e in browser if e.type == "progress"]
    assert len(progress) == len(TRICKY) and progress[-1]["total"] == 20
    assert browser[-1] == Dispatched("done", "[DONE]", str(2 * len(TRICKY) + 1))
    assert _ids_increase(browser)
    assert all(b.outcome == "done" for b in bodies)


@pytest.mark.parametrize("setup", SETUPS)
def test_headers_are_the_event_stream_headers_and_never_hop_by_hop(setup: str) -> None:
    with running(setup, lambda: ["x"]) as (url, _, app):
        _, response = read_httpx_sse(url)
    sent = app.headers[0]
    names = {name.lower() for name, _ in sent}
    assert not names & HOP_BY_HOP, sent
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-length" not in response.headers
    assert "content-encoding" not in response.headers


@pytest.mark.parametrize("mode", ["flowing", "silent"])
@pytest.mark.parametrize("setup", SETUPS)
def test_a_client_hang_up_closes_the_source_and_ends_the_stream_threads(
    setup: str, mode: str, thread_baseline: Callable[[], None]
) -> None:
    """Flowing: the next event's write fails. Silent: the model pauses, so only the
    keep-alive comments can reveal that the client left."""
    source = PacedSource(limit=None if mode == "flowing" else 3)
    before = set(helix_threads())
    with running(setup, lambda: source, keepalive=0.05) as (url, bodies, _):
        events, _ = read_httpx_sse(url, limit=3)
        assert [e.data for e in events] == ["tok1 ", "tok2 ", "tok3 "]
        assert source.closed.wait(5), "the source was not closed after the client left"
        assert wait_for(lambda: not set(helix_threads()) - before, 5), helix_threads()
        for body in bodies:  # the servers that let the test see the body
            assert body.closed and body.stream.cancelled  # type: ignore[union-attr]
            for thread in body.stream.threads():  # type: ignore[union-attr]
                thread.join(5)  # (a thread leaves enumerate() just before it is dead)
                assert not thread.is_alive()
    thread_baseline()  # servers and streams gone: no thread left behind


@pytest.mark.parametrize("setup", ["werkzeug", "waitress"])
def test_a_reconnecting_client_resumes_with_last_event_id(setup: str) -> None:
    source = BlockingSource(["one ", "two "])
    replay = SSEReplay(grace=30)
    try:
        with running(setup, lambda: source, replay=replay, keepalive=0.05) as (url, bodies, _):
            first, _ = read_httpx_sse(url, limit=2)
            assert [e.data for e in first] == ["one ", "two "]
            assert not source.closed.is_set()  # held for the client's return
            source.feed("three ")
            source.end()
            resumed, _ = read_httpx_sse(url, headers={"Last-Event-ID": first[0].last_event_id})
            assert [(e.type, e.data) for e in resumed] == [
                ("message", "two "),
                ("message", "three "),
                ("done", "[DONE]"),
            ]
            assert resumed[0] == first[1]
            assert source.closed.wait(5)
            again, _ = read_httpx_sse(url, headers={"Last-Event-ID": "not-a-stream.4"})
            assert [e.type for e in again] == ["error"]
            assert json.loads(again[0].data)["code"] == "unknown_event_id"
    finally:
        replay.close()


@pytest.mark.parametrize("setup", SETUPS)
def test_a_last_event_id_without_a_registry_is_an_error_not_a_restart(setup: str) -> None:
    started: List[int] = []

    def make_source() -> List[str]:
        started.append(1)
        return ["answer"]

    with running(setup, make_source) as (url, _, _):
        events, _ = read_httpx_sse(url, headers={"Last-Event-ID": "7"})
    assert [e.type for e in events] == ["error"]
    assert json.loads(events[0].data)["code"] == "unknown_event_id"
    assert started == []


# --- the integrations themselves -------------------------------------------------------------
def test_importing_the_integrations_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, helixstream.integrations.flask, helixstream.integrations.django\n"
        "assert 'flask' not in sys.modules and 'django' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


@pytest.mark.parametrize(
    "module, blocked, extra",
    [
        ("helixstream.integrations.flask", "flask", "flask"),
        ("helixstream.integrations.django", "django.http", "django"),
    ],
)
def test_a_missing_framework_names_the_extra_to_install(
    module: str, blocked: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    monkeypatch.setitem(__import__("sys").modules, blocked, None)
    sse_response = importlib.import_module(module).sse_response
    source = BlockingSource(["x"])
    with pytest.raises(ImportError, match=re.escape(f"pip install 'helixstream[{extra}]'")):
        sse_response(source)
    assert not source.closed.is_set() and source.produced == []  # nothing started


@pytest.mark.parametrize("name", ["Connection", "keep-alive", "Transfer-Encoding", "Upgrade"])
def test_hop_by_hop_headers_are_refused(name: str) -> None:
    pytest.importorskip("flask")
    from helixstream.integrations.flask import sse_response

    with pytest.raises(ValueError, match="hop-by-hop"):
        sse_response(["x"], headers={name: "x"})


def test_extra_headers_go_out_with_the_event_stream_headers() -> None:
    flask = pytest.importorskip("flask")
    from helixstream.integrations.flask import sse_response

    app = flask.Flask("extra_headers")

    @app.get("/stream")
    def stream() -> Any:
        return sse_response(["x"], headers={"X-Request-Id": "42"}, status=201)

    response = app.test_client().get("/stream")
    assert response.status_code == 201
    assert response.headers["X-Request-Id"] == "42"
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert [e.data for e in browser_events(response.data)] == ["x", "[DONE]"]


# --- issue 11: 204 for a finished stream, bounded ids, the stream id, cancel, shutdown -------
@pytest.mark.parametrize("setup", SETUPS)
def test_resuming_a_finished_stream_answers_204_with_no_body(setup: str) -> None:
    replay = SSEReplay()
    try:
        with running(setup, lambda: ["a", "b"], replay=replay) as (url, _, _):
            events, first = read_httpx_sse(url)
            assert first.status_code == 200
            with httpx.Client(timeout=10) as client:
                again = client.get(url, headers={"Last-Event-ID": events[-1].last_event_id})
                assert (again.status_code, again.content) == (204, b"")
                assert "x-stream-id" not in again.headers
                assert "content-type" not in again.headers
                # events still to send: a 200 that replays them
                rest = client.get(url, headers={"Last-Event-ID": events[0].last_event_id})
                assert rest.status_code == 200
                assert browser_events(rest.content) == events[1:]
    finally:
        replay.close()


@pytest.mark.parametrize("setup", SETUPS)
def test_a_last_event_id_with_thousands_of_digits_is_unknown_not_a_500(setup: str) -> None:
    source = BlockingSource(["a"])
    replay = SSEReplay(grace=30)
    try:
        with running(setup, lambda: source, replay=replay, keepalive=0.05) as (url, _, _):
            first, _ = read_httpx_sse(url, limit=1)
            key = first[0].last_event_id.rpartition(".")[0]
            events, response = read_httpx_sse(url, headers={"Last-Event-ID": f"{key}.{'9' * 4301}"})
            assert response.status_code == 200
            assert [json.loads(e.data)["code"] for e in events] == ["unknown_event_id"]
    finally:
        replay.close()


@pytest.mark.parametrize("setup", SETUPS)
def test_the_stream_id_goes_out_as_the_x_stream_id_header(setup: str) -> None:
    replay = SSEReplay()
    try:
        with running(setup, lambda: ["a"], replay=replay) as (url, bodies, _):
            events, response = read_httpx_sse(url)
        key = response.headers["x-stream-id"]
        assert all(e.last_event_id.startswith(key + ".") for e in events)
        assert all(body.stream_id == key for body in bodies)
    finally:
        replay.close()


@pytest.mark.parametrize("module", ["flask", "django"])
def test_the_integrations_put_the_stream_id_on_the_response(module: str) -> None:
    pytest.importorskip(module)
    if module == "django":
        django_app(lambda: [], [])  # configures Django
        from helixstream.integrations.django import sse_response
    else:
        from helixstream.integrations.flask import sse_response  # type: ignore[no-redef]
    replay = SSEReplay()
    response = sse_response(["a"], replay=replay)
    without = sse_response(["a"])
    try:
        assert response.stream_id in replay
        assert response.headers["X-Stream-Id"] == response.stream_id
        assert without.stream_id is None and "X-Stream-Id" not in without.headers
    finally:
        response.close()
        without.close()
        replay.close()


def test_closing_the_registry_while_a_client_reads_sends_it_a_shutdown_event() -> None:
    """What a server's shutdown hook does: the reading client gets ``shutdown`` and the
    stream's source is closed."""
    source = PacedSource(limit=2)  # two tokens, then silence
    replay = SSEReplay(grace=30)
    with running("waitress", lambda: source, replay=replay, keepalive=0.05) as (url, _, _):
        got: List[Dispatched] = []
        with httpx.Client(timeout=10) as client:
            with httpx_sse.connect_sse(client, "GET", url) as events:
                for sse in events.iter_sse():
                    got.append(Dispatched(sse.event, sse.data, sse.id))
                    if len(got) == 2:
                        replay.close()
        assert source.closed.wait(5)
    assert [e.data for e in got[:2]] == ["tok1 ", "tok2 "]
    assert [(e.type, json.loads(e.data)["code"]) for e in got[2:]] == [("error", "shutdown")]
    assert got[-1].last_event_id == got[1].last_event_id  # no id: the browser keeps its own


@pytest.mark.parametrize("setup", SETUPS)
def test_cancel_by_id_ends_the_response_a_client_is_reading(setup: str) -> None:
    source = PacedSource(limit=2)  # two tokens, then silence
    replay = SSEReplay(grace=30)
    try:
        with running(setup, lambda: source, replay=replay, owner="alice", keepalive=0.05) as (
            url,
            _,
            _,
        ):
            got: List[Dispatched] = []
            with httpx.Client(timeout=10) as client:
                with httpx_sse.connect_sse(client, "GET", url) as events:
                    key = events.response.headers["x-stream-id"]
                    for sse in events.iter_sse():
                        got.append(Dispatched(sse.event, sse.data, sse.id))
                        if len(got) == 2:
                            assert replay.cancel(key, owner="mallory") is False
                            assert replay.cancel(key, owner="alice") is True
                            assert source.closed.is_set()
        assert [e.data for e in got[:2]] == ["tok1 ", "tok2 "]
        assert [(e.type, json.loads(e.data)["code"]) for e in got[2:]] == [("error", "cancelled")]
        assert got[-1].last_event_id == f"{key}.3"
    finally:
        replay.close()


# --- a client that hangs up during silence, noticed through its socket -----------------
@pytest.mark.parametrize("with_socket", [True, False], ids=["socket", "writes-only"])
def test_a_hang_up_during_silence_is_noticed_without_another_keepalive(with_socket: bool) -> None:
    """Werkzeug puts the client's socket in the environ. With it, the keep-alive tick
    after a normal close finds the connection closed and ends the stream without writing;
    without it (``environ`` not given), the server learns only when a write fails, and
    the first keep-alive after a normal close is still written."""
    source = BlockingSource(["first"])
    hung_up = threading.Event()
    after: List[bytes] = []  # what the body yielded once the client had hung up
    bodies: List[SSEBody] = []

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = sse_stream(source, keepalive=0.5, environ=environ if with_socket else None)
        bodies.append(body)
        start_response(body.status_line, body.headers)

        def recorded() -> Iterator[bytes]:
            try:
                for piece in body:
                    if hung_up.is_set():
                        after.append(piece)
                    yield piece
            finally:
                body.close()

        return recorded()

    with serve(app, "werkzeug") as base:
        with httpx.Client(timeout=10) as client:
            with client.stream("GET", base + "/stream") as response:
                for line in response.iter_lines():
                    if line == "data: first":
                        break
        hung_up.set()  # the connection is closed normally (FIN), the model is silent
        assert source.closed.wait(10), "the stream was not closed after the hang-up"
    if with_socket:
        assert after == []  # noticed at the first tick: nothing more was written
    else:
        assert after[:1] == [b": keep-alive\n"]  # the first write after a close succeeds
