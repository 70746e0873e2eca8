"""SSE encoding: byte-exact tables for every rule, and what a browser would dispatch.

``browser_events`` below is the WHATWG "event stream interpretation" algorithm written
out plainly (what ``EventSource`` does); the other SSE test modules import it. The
independent parsers ``httpx-sse`` and ``sseclient-py`` must agree with it.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from typing import Any, List, NamedTuple, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helixstream.sse import SSEWriter, format_sse_comment, format_sse_event


class Dispatched(NamedTuple):
    """One event as a browser's EventSource dispatches it."""

    type: str
    data: str
    last_event_id: str


def browser_events(stream: bytes) -> List[Dispatched]:
    """The events an ``EventSource`` dispatches for ``stream`` (WHATWG HTML, 9.2.6).

    A final line without its line break, and an event without its empty line, are not
    dispatched, as in a browser when the connection closes.
    """
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the last piece has no line end yet
    out: List[Dispatched] = []
    data, event_type, last_id, id_buffer = "", "", "", ""
    data_set = False  # the data buffer is "" but a data field was seen -> still ""
    for line in lines:
        if line == "":
            last_id = id_buffer
            if not data_set:
                data, event_type = "", ""
                continue
            if data.endswith("\n"):
                data = data[:-1]
            out.append(Dispatched(event_type or "message", data, last_id))
            data, event_type, data_set = "", "", False
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
            data_set = True
        elif name == "id":
            if "\0" not in value:
                id_buffer = value
        # retry and unknown fields change nothing that is dispatched
    return out


def httpx_sse_events(stream: bytes) -> List[Dispatched]:
    """What httpx-sse's decoder makes of ``stream`` (fed in one piece)."""
    from httpx_sse._decoders import SSEDecoder, SSELineDecoder

    lines = SSELineDecoder().decode(stream.decode("utf-8"))
    decoder = SSEDecoder()
    out = []
    for line in lines:
        sse = decoder.decode(line)
        if sse is not None:
            out.append(Dispatched(sse.event, sse.data, sse.id))
    return out


def sseclient_events(stream: bytes, piece: int = 7) -> List[Dispatched]:
    """What sseclient-py makes of ``stream``, fed in ``piece``-byte chunks."""
    import sseclient

    class Source:
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([stream[i : i + piece] for i in range(0, len(stream), piece)])

        def close(self) -> None:
            pass

    return [Dispatched(e.event, e.data, e.id or "") for e in sseclient.SSEClient(Source()).events()]


# --- format_sse_event: exact bytes ---------------------------------------------------------
EVENTS = [
    # (event, data, id, retry) -> expected text
    (
        ("message", "data", "id-123", 1000),
        "event: message\ndata: data\nid: id-123\nretry: 1000\n\n",
    ),
    ((None, "hi", None, None), "data: hi\n\n"),
    (("", "hi", None, None), "data: hi\n\n"),
    (("update", "hi", None, None), "event: update\ndata: hi\n\n"),
    ((None, "", None, None), "data: \n\n"),
    ((None, " leading", None, None), "data:  leading\n\n"),
    ((None, "  two", None, None), "data:   two\n\n"),
    ((None, "trailing ", None, None), "data: trailing \n\n"),
    ((None, "a\nb", None, None), "data: a\ndata: b\n\n"),
    ((None, "a\r\nb", None, None), "data: a\ndata: b\n\n"),
    ((None, "a\rb", None, None), "data: a\ndata: b\n\n"),
    ((None, "a\n", None, None), "data: a\ndata: \n\n"),
    ((None, "\n", None, None), "data: \ndata: \n\n"),
    ((None, "a\r\n\r\nb", None, None), "data: a\ndata: \ndata: b\n\n"),
    ((None, "a\n\rb", None, None), "data: a\ndata: \ndata: b\n\n"),
    ((None, "a\r\rb", None, None), "data: a\ndata: \ndata: b\n\n"),
    ((None, "\r\n", None, None), "data: \ndata: \n\n"),
    # only CR and LF break lines: not U+2028/2029, NEL, VT, FF or the separators
    ((None, "a\u2028b\u2029c", None, None), "data: a\u2028b\u2029c\n\n"),
    ((None, "a\x85b\x0bc\x0cd", None, None), "data: a\x85b\x0bc\x0cd\n\n"),
    ((None, "a\x1cb\x1dc\x1ed", None, None), "data: a\x1cb\x1dc\x1ed\n\n"),
    ((None, "colon: inside", None, None), "data: colon: inside\n\n"),
    ((None, ": not a comment", None, None), "data: : not a comment\n\n"),
    ((None, "héllo 世界 😀", None, None), "data: héllo 世界 😀\n\n"),
    ((None, "nul\0inside", None, None), "data: nul\0inside\n\n"),
    ((None, "x", "", None), "data: x\nid: \n\n"),
    ((None, "x", " spaced id", None), "data: x\nid:  spaced id\n\n"),
    ((None, "x", 42, None), "data: x\nid: 42\n\n"),
    ((None, "x", None, 0), "data: x\nretry: 0\n\n"),
    (("e", "x", "7", 5), "event: e\ndata: x\nid: 7\nretry: 5\n\n"),
    (("two words", "x", None, None), "event: two words\ndata: x\n\n"),
    ((" lead", "x", None, None), "event:  lead\ndata: x\n\n"),
]


@pytest.mark.parametrize("args, expected", EVENTS)
def test_format_sse_event_writes_exact_text(args: tuple, expected: str) -> None:
    assert format_sse_event(*args) == expected


def test_format_sse_event_guide_example() -> None:
    assert (
        format_sse_event("message", "data", "id-123", 1000)
        == "event: message\ndata: data\nid: id-123\nretry: 1000\n\n"
    )


@pytest.mark.parametrize("args, expected", EVENTS)
def test_every_table_event_dispatches_its_data_in_a_browser(args: tuple, expected: str) -> None:
    event, data, id, _ = args
    got = browser_events(format_sse_event(*args).encode("utf-8"))
    want_data = re.sub(r"\r\n|\r", "\n", data)
    assert got == [Dispatched(event or "message", want_data, "" if id is None else str(id))]


REFUSED = [
    # (kwargs, exception, words the message holds)
    (dict(event="a\nb"), ValueError, "event"),
    (dict(event="a\rb"), ValueError, "event"),
    (dict(event="\r\n"), ValueError, "event"),
    (dict(event="trailing\n"), ValueError, "event"),
    (dict(id="a\nb"), ValueError, "id"),
    (dict(id="a\rb"), ValueError, "id"),
    (dict(id="a\0b"), ValueError, "id"),
    (dict(id="\0"), ValueError, "id"),
    (dict(retry=-1), ValueError, "retry"),
    (dict(retry=1.5), ValueError, "retry"),
    (dict(retry=1000.0), ValueError, "retry"),
    (dict(retry="1000"), ValueError, "retry"),
    (dict(retry=True), ValueError, "retry"),
    (dict(retry=False), ValueError, "retry"),
    (dict(data=None), TypeError, "data"),
    (dict(data=b"bytes"), TypeError, "data"),
    (dict(data=3), TypeError, "data"),
    (dict(event=1), TypeError, "event"),
    (dict(id=True), TypeError, "id"),
    (dict(id=1.5), TypeError, "id"),
]


@pytest.mark.parametrize("kwargs, exc, word", REFUSED)
def test_format_sse_event_refuses_what_would_change_the_stream(
    kwargs: dict, exc: type, word: str
) -> None:
    args = dict(event="e", data="d", id=None, retry=None)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        format_sse_event(**args)


COMMENTS = [
    ("", ":\n"),
    ("keep-alive", ": keep-alive\n"),
    ("a\nb", ": a\n: b\n"),
    ("a\r\nb\rc", ": a\n: b\n: c\n"),
    ("a\n", ": a\n:\n"),
    ("\ndata: injected", ":\n: data: injected\n"),
    (" x", ":  x\n"),
]


@pytest.mark.parametrize("text, expected", COMMENTS)
def test_comments_are_prefixed_on_every_line(text: str, expected: str) -> None:
    assert format_sse_comment(text) == expected
    assert browser_events(expected.encode() + b"data: after\n\n") == [
        Dispatched("message", "after", "")
    ]


# --- SSEWriter ------------------------------------------------------------------------------
class Recorder(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


WRITES = [
    (lambda w: w.write_event("message", "Hello world"), b"event: message\ndata: Hello world\n\n"),
    (
        lambda w: w.write_event("m", "x", id="1", retry=10),
        b"event: m\ndata: x\nid: 1\nretry: 10\n\n",
    ),
    (lambda w: w.write_data("Plain data"), b"data: Plain data\n\n"),
    (lambda w: w.write_data("a\nb", id=3), b"data: a\ndata: b\nid: 3\n\n"),
    (lambda w: w.write_json({"key": "value"}), b'data: {"key":"value"}\n\n'),
    (
        lambda w: w.write_json({"a": [1, 2.5, None, True], "t": "é\n"}, event="obj"),
        'event: obj\ndata: {"a":[1,2.5,null,true],"t":"é\\n"}\n\n'.encode(),
    ),
    (
        lambda w: w.write_progress(50, 100),
        b'event: progress\ndata: {"received":50,"total":100}\n\n',
    ),
    (lambda w: w.write_progress(5), b'event: progress\ndata: {"received":5,"total":null}\n\n'),
    (lambda w: w.write_done(), b"event: done\ndata: [DONE]\n\n"),
    (lambda w: w.write_done(id="9"), b"event: done\ndata: [DONE]\nid: 9\n\n"),
    (lambda w: w.write_comment("ping"), b": ping\n"),
]


@pytest.mark.parametrize("write, expected", WRITES)
def test_writer_writes_exact_bytes_and_flushes(write: Any, expected: bytes) -> None:
    out = Recorder()
    write(SSEWriter(out))
    assert out.getvalue() == expected
    assert out.flushes == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_write_json_refuses_nan_and_infinities(value: float) -> None:
    out = Recorder()
    with pytest.raises(ValueError):
        SSEWriter(out).write_json({"x": value})
    assert out.getvalue() == b""


def test_write_error_sends_a_generic_message_and_logs_the_exception_with_its_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = Recorder()
    with caplog.at_level(logging.ERROR, logger="helixstream.sse"):
        error_id = SSEWriter(out).write_error(KeyError("db password is hunter2"))
    text = out.getvalue().decode()
    assert text.startswith("event: error\ndata: ") and text.endswith("\n\n")
    assert "hunter2" not in text and "KeyError" not in text
    payload = json.loads(browser_events(out.getvalue())[0].data)
    assert payload == {
        "code": "stream_failed",
        "message": "The stream failed.",
        "error_id": error_id,
    }
    assert re.fullmatch(r"[0-9a-f]{12}", error_id)
    record = caplog.records[-1]
    assert error_id in record.getMessage() and record.exc_info[1].args == (
        "db password is hunter2",
    )


def test_write_error_exposes_the_exception_only_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = Recorder()
    with caplog.at_level(logging.CRITICAL, logger="helixstream.sse"):
        SSEWriter(out).write_error(ValueError("bad\nthing"), expose=True, error_id="e1", id="4")
    assert out.getvalue() == (
        b'event: error\ndata: {"code":"stream_failed","message":"The stream failed.",'
        b'"error_id":"e1","type":"ValueError","detail":"bad\\nthing"}\nid: 4\n\n'
    )
    out2 = Recorder()
    with caplog.at_level(logging.CRITICAL, logger="helixstream.sse"):
        SSEWriter(out2, expose_errors=True).write_error(ValueError("x"), error_id="e2")
    assert b'"detail":"x"' in out2.getvalue()


def test_writer_finishes_partial_writes_of_a_raw_stream() -> None:
    class Trickle:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b: Any) -> int:
            piece = bytes(b[:3])
            self.data += piece
            return len(piece)

    out = Trickle()
    SSEWriter(out).write_data("héllo wörld, in small writes")
    assert bytes(out.data) == "data: héllo wörld, in small writes\n\n".encode()


def test_writer_needs_a_write_method() -> None:
    with pytest.raises(TypeError):
        SSEWriter(object())  # type: ignore[arg-type]


def test_concurrent_writes_never_interleave() -> None:
    out = Recorder()
    writer = SSEWriter(out)

    def work(n: int) -> None:
        for i in range(200):
            writer.write_event("t%d" % n, "line one\nline two %d" % i, id=f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    events = browser_events(out.getvalue())
    assert len(events) == 1200
    for e in events:
        n, i = e.last_event_id.split("-")
        assert e.type == "t" + n and e.data == "line one\nline two " + i


# --- agreement between the browser algorithm and the independent parsers --------------------
def _sample_stream() -> bytes:
    out = Recorder()
    w = SSEWriter(out)
    w.write_comment("opening")
    for i, (args, _) in enumerate(EVENTS):
        event, data, _, retry = args
        w.write_event(event, data, id=str(i), retry=retry)
        w.write_comment("keep-alive")
    w.write_progress(3, 10, id="p")
    w.write_json({"k": [1, "two"]}, id="j")
    w.write_done(id="end")
    return out.getvalue()


def test_httpx_sse_and_sseclient_dispatch_what_a_browser_would() -> None:
    stream = _sample_stream()
    want = browser_events(stream)
    assert len(want) == len(EVENTS) + 3
    assert httpx_sse_events(stream) == want
    for piece in (1, 5, 64, len(stream)):
        assert sseclient_events(stream, piece) == want


@settings(max_examples=300, deadline=None)
@given(
    data=st.text(
        alphabet=st.sampled_from(list("ab :\r\n\t\u2028\x85\x0c\0é😀")) | st.characters(),
        max_size=40,
    ),
    event=st.none() | st.text(alphabet=st.sampled_from(list("ab :-é")), max_size=8),
    id=st.none() | st.text(alphabet=st.sampled_from(list("ab 1:-é")), max_size=8),
)
def test_any_text_round_trips_through_every_parser(
    data: str, event: Optional[str], id: Optional[str]
) -> None:
    try:
        encoded = format_sse_event(event, data, id).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate is not text a stream can carry
        return
    want = [Dispatched(event or "message", re.sub(r"\r\n|\r", "\n", data), id or "")]
    assert browser_events(encoded) == want
    assert httpx_sse_events(encoded) == want
    assert sseclient_events(encoded, 3) == want
