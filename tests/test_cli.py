"""The command line, run as a user would: ``python -m helixstream ...`` in a subprocess."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import urllib.request
from typing import List

import pytest

import helixstream as hs

from .llm_server import LLMServer

FAST = ["--tps", "5000", "--first-token-delay", "0", "--seed", "1"]


def helix(*args: str, input: str = "", env: dict = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if not (env and "OPENAI_BASE_URL" in env):
        full_env.pop("OPENAI_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "helixstream", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def sentences(text: str) -> List[str]:
    buf = hs.new_buffer("sentence")
    units = buf.add(text)
    rest = buf.flush()
    return [u.strip() for u in units + [rest] if u.strip()]


def test_demo_prints_each_sentence_on_its_own_line_and_a_summary():
    done = helix("demo", *FAST)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line]
    assert lines == sentences("".join(hs.SimulatedLLM().tokens))
    assert "Dr. Smith's favourite number, 3.14, survives intact" in done.stdout
    summary = done.stderr.strip().splitlines()[-1]
    assert re.match(r"\d+ tokens, \d+ chunks in [\d.]+s; first chunk after [\d.]+s; [\d.]+ tokens/s", summary)
    assert summary.startswith(f"{len(hs.SimulatedLLM())} tokens")


def test_demo_other_buffers():
    done = helix("demo", "--buffer", "paragraph", *FAST)
    assert done.returncode == 0, done.stderr
    paragraphs = [p for p in done.stdout.split("\n\n") if p.strip()]
    assert len(paragraphs) == 3


def test_demo_streams_from_an_openai_compatible_endpoint():
    with LLMServer() as server:
        server.pieces = ["The sky", " is blue", ". Grass", " is green."]
        server.usage = (7, 11)
        done = helix("demo", "--base-url", server.url + "/v1", "--model", "test-model")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["The sky is blue.", "Grass is green."]
    assert done.stderr.strip().splitlines()[-1].startswith("11 tokens")


def test_demo_takes_the_base_url_from_the_environment():
    with LLMServer() as server:
        server.pieces = ["Hi there."]
        done = helix("demo", "--model", "m", env={"OPENAI_BASE_URL": server.url + "/v1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hi there."


def test_demo_with_an_unreachable_endpoint_is_a_one_line_error():
    done = helix("demo", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--timeout", "5")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("helixstream: error: cannot reach")
    assert "Traceback" not in done.stderr


def test_demo_base_url_needs_a_model():
    done = helix("demo", "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 2
    expected = (
        "helixstream demo: error: --base-url needs a model: add --model NAME "
        "(or set HELIXSTREAM_MODEL) (see 'helixstream demo --help')"
    )
    assert done.stderr.splitlines() == [expected]


def test_the_quick_start_demo_ignores_openai_base_url_in_the_environment():
    # OPENAI_BASE_URL is often set for other tools: a plain `demo` still runs the
    # built-in simulated model, and says how to use the endpoint instead
    done = helix("demo", *FAST, env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "HELIXSTREAM_MODEL": "m"})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line]
    assert lines == sentences("".join(hs.SimulatedLLM().tokens))
    assert "simulated model" in done.stderr and "--model" in done.stderr


def test_demo_model_without_an_endpoint_is_a_one_line_error():
    done = helix("demo", "--model", "llama3.2")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("helixstream demo: error: --model needs an endpoint")
    assert "--base-url" in lines[0] and "OPENAI_BASE_URL" in lines[0]


def test_demo_takes_the_model_from_the_environment_with_an_explicit_base_url():
    with LLMServer() as server:
        server.pieces = ["Hi there."]
        done = helix("demo", "--base-url", server.url + "/v1", env={"HELIXSTREAM_MODEL": "m"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hi there."


def test_serve_checks_the_model_before_it_starts_listening():
    done = helix("serve", "--port", "0", "--base-url", "http://127.0.0.1:9/v1", timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("helixstream serve: error: --base-url needs a model")
    assert "serving" not in done.stderr


# --- ports ---------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_serve_with_an_impossible_port_is_a_one_line_error(port):
    done = helix("serve", "--port", port, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("helixstream serve: error: argument --port: ")
    assert "0 to 65535" in lines[0] and repr(port) in lines[0]


def test_serve_on_a_port_in_use_is_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = helix("serve", "--port", str(port), *FAST, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"helixstream serve: error: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in lines[0] and "--port 0" in lines[0]


# --- durations on the command line -----------------------------------------------------
DURATION_FLAGS = [
    ("demo", "--max-delay"), ("demo", "--first-token-delay"), ("demo", "--timeout"),
    ("pipe", "--max-delay"),
    ("serve", "--max-delay"), ("serve", "--first-token-delay"), ("serve", "--timeout"),
]


@pytest.mark.parametrize("command, flag", DURATION_FLAGS)
@pytest.mark.parametrize("text", ["500ms", "1m30s", "1.5h", "300us", "1e3ms", "0.25", "2"])
def test_every_duration_flag_takes_what_the_config_takes(command, flag, text):
    from helixstream._cli import build_parser
    from helixstream._durations import parse_duration

    args = build_parser().parse_args([command, flag, text])
    assert getattr(args, flag[2:].replace("-", "_")) == pytest.approx(parse_duration(text, "x"))


@pytest.mark.parametrize("command, flag", DURATION_FLAGS)
@pytest.mark.parametrize("text, says", [("soon", "must be a duration"), ("-1s", "must be >= 0")])
def test_a_bad_duration_flag_is_a_one_line_error(command, flag, text, says):
    done = helix(command, f"{flag}={text}")  # "--max-delay -1s" would read "-1s" as a flag
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"helixstream {command}: error: argument {flag}: {says}")


def test_pipe_with_a_max_delay_in_milliseconds():
    done = helix("pipe", "--buffer", "sentence", "--max-delay", "500ms", input="no sentence end here")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no sentence end here"


@pytest.mark.parametrize("buffer", ["word", "sentence", "line", "paragraph", "character", "token"])
def test_pipe_is_lossless_for_every_buffer(buffer):
    text = "Hello wor" + "ld. Dr. Smith — 3.14 café 你好。\r\nNext line\n\nNew para  with  spaces "
    done = helix("pipe", "--buffer", buffer, input=text)
    assert done.returncode == 0, done.stderr
    assert done.stdout == text.replace("\r\n", "\n")  # text mode on our side of the pipe


def test_pipe_with_progress_prints_a_summary_on_stderr():
    done = helix("pipe", "--progress", "--rate", "100000", input="one two three four")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "one two three four"
    assert re.search(r"\d+ tokens, 4 chunks", done.stderr)


def test_pipe_segments_in_the_given_language():
    text = "Das gilt z. B. am 31. Dezember. Dann nicht."
    done = helix("pipe", "--buffer", "sentence", "--language", "de", input=text)
    assert done.returncode == 0, done.stderr
    assert done.stdout == text


@pytest.mark.parametrize(
    "args",
    [["--bogus"], ["demo", "--buffer", "bogus"], ["demo", "--tps", "0"], ["pipe", "--rate", "-1"],
     ["serve", "--port", "x"], ["nosuchcommand"], [], ["pipe", "--language", "xx"]],
)
def test_bad_flags_give_one_line_and_exit_code_2(args):
    done = helix(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.match(r"helixstream( \w+)?: error: ", lines[0]), lines[0]


@pytest.mark.parametrize("command", [[], ["demo"], ["pipe"], ["serve"]])
def test_help_for_each_command(command):
    done = helix(*command, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: helixstream")


def test_the_installed_console_script_runs():
    exe = os.path.join(os.path.dirname(sys.executable), "helixstream")
    if not os.path.exists(exe):
        pytest.skip("the console script is not installed next to this interpreter")
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("helixstream ")


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "helixstream", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _reap(proc: subprocess.Popen) -> None:
    """Kill ``proc`` if still running, close its pipes and wait: nothing left behind
    when a test fails half-way."""
    proc.kill()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    proc.wait(timeout=10)


def test_ctrl_c_during_demo_ends_cleanly_without_a_traceback():
    proc = _start("demo", "--tps", "5", "--first-token-delay", "0")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first sentence: the stream is running
        assert first.strip()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        _reap(proc)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err


def test_serve_shows_a_page_and_streams_events_then_stops_on_ctrl_c():
    proc = _start("serve", "--port", "0", *FAST)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
        assert match, banner
        url = match.group(0)
        with urllib.request.urlopen(url, timeout=10) as page:
            html = page.read().decode()
        assert "EventSource" in html and "<progress" in html
        events = []
        with urllib.request.urlopen(url + "events", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            event: dict = {}
            for raw in response:  # the event-stream rules, enough for this server's output
                line = raw.decode().rstrip("\n")
                if not line:
                    if event:
                        event["data"] = "\n".join(event["data"])
                        events.append(event)
                    if event.get("event") == "done":
                        break
                    event = {}
                elif not line.startswith(":"):
                    field, _, value = line.partition(": ")
                    if field == "data":
                        event.setdefault("data", []).append(value)
                    else:
                        event[field] = value
        text = "".join(e["data"] for e in events if "event" not in e)
        assert text == "".join(hs.SimulatedLLM().tokens)
        progress = [json.loads(e["data"]) for e in events if e.get("event") == "progress"]
        assert progress[-1] == {"received": len(hs.SimulatedLLM()), "total": len(hs.SimulatedLLM())}
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        _reap(proc)
    assert proc.returncode == 0
    assert "Traceback" not in err


def _read_until(pipe, wanted: bytes, timeout: float = 20.0) -> bytes:
    """Read ``pipe`` (a binary pipe) until ``wanted`` has arrived; the bytes read."""
    got = b""
    fd = pipe.fileno()
    while wanted not in got:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"waited {timeout}s for {wanted!r}; got {got!r}"
        data = os.read(fd, 4096)
        assert data, f"the pipe ended before {wanted!r}; got {got!r}"
        got += data
    return got


@pytest.mark.parametrize(
    "options",
    [[], ["--max-delay", "1m"], ["--buffer", "sentence", "--rate", "100000"], ["--progress"]],
    ids=["word", "timer-thread", "rate-limited", "progress"],
)
def test_ctrl_c_on_pipe_writes_the_text_it_holds_then_exits_130(options):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "helixstream", "pipe", *options],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        sent = "Hello world. Dr. Smith says 3.14 is wor" if "sentence" in options else "Hello wor"
        proc.stdin.write(sent.encode())
        proc.stdin.flush()  # stdin stays open: the producer is still running
        first = b"Hello world. " if "sentence" in options else b"Hello "
        out = _read_until(proc.stdout, first)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        out += proc.stdout.read()
        err = proc.stderr.read().decode()
    finally:
        _reap(proc)
    assert out.decode() == sent  # nothing it had read is lost
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err


def test_pipe_rate_writes_each_word_at_its_paced_time():
    # the whole input arrives at once (one item); with --rate 4 the ten words are
    # written one by one over about 2.25 s, not together at the end
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "helixstream", "pipe", "--rate", "4"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"a b c d e f g h i j ")
        proc.stdin.close()
        first = _read_until(proc.stdout, b"a ")
        assert b"j " not in first, first  # the last word is not there yet
        rest = proc.stdout.read()
        assert proc.wait(timeout=20) == 0
    finally:
        _reap(proc)
    assert (first + rest).decode() == "a b c d e f g h i j "


def test_the_serve_demo_answers_204_to_a_resume_after_the_end():
    import wsgiref.util

    from helixstream._cli import build_parser
    from helixstream._serve import make_app

    from .test_sse_encoding import browser_events

    args = build_parser().parse_args(["serve", "--port", "0"])
    app = make_app(args, lambda _args: ["Hello", " there."])

    def get(headers):
        environ = {"PATH_INFO": "/events", **headers}
        wsgiref.util.setup_testing_defaults(environ)
        started = []
        body = app(environ, lambda status, hdrs: started.append((status, hdrs)))
        try:
            return started[0][0], b"".join(body)
        finally:
            body.close()

    status, raw = get({})
    last = browser_events(raw)[-1]
    assert (status, last.type) == ("200 OK", "done")
    assert get({"HTTP_LAST_EVENT_ID": last.last_event_id}) == ("204 No Content", b"")
    app.replay.close()
