"""Properties of SSE encoding, for arbitrary events, checked against a browser's parser.

Whatever the event type, data, id and retry, the text ``format_sse_event`` writes is
dispatched by a WHATWG ``EventSource`` (``browser_events``, the spec's algorithm) as
exactly that event: the data unchanged except that every line break arrives as
``\\n``, the type (``message`` by default) and the id; ``retry`` is written once, as
given. A run of events with comments between them is dispatched event by event, the
last id carrying over to events without one. Values that cannot be carried (a line
break in the type or id, NUL in the id, a retry that is not an int >= 0) raise
``ValueError`` naming the field, and nothing is written.

Each property runs 200 examples in the default run and 2,000 in a ``slow``-marked one.
"""
from __future__ import annotations

import io
import re
from typing import Any, List, Optional, Tuple, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helixstream import SSEWriter, format_sse_comment, format_sse_event

from .test_sse_encoding import Dispatched, browser_events, httpx_sse_events

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text a stream can carry: any character but a lone surrogate (not encodable as UTF-8),
# with the characters that matter to the format drawn often.
SPECIAL = list("\r\n :\0\ufeff\u2028\u2029\x85\x0b\x0c\t") + ["\r\n", "é", "😀", "data: ", "id: "]
CHAR = st.characters(blacklist_categories=("Cs",))
any_text = st.lists(CHAR | st.sampled_from(SPECIAL), max_size=40).map("".join)
# a field value: no line break
field_text = st.lists(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")
    | st.sampled_from([" ", ":", "\0", "é", "😀", "\u2028", "\x85"]),
    max_size=16,
).map("".join)
events = st.none() | field_text
ids: "st.SearchStrategy[Union[str, int, None]]" = (
    st.none() | field_text.filter(lambda s: "\0" not in s) | st.integers(-(10**6), 10**15)
)
retries = st.none() | st.integers(0, 10**12)
Event = Tuple[Optional[str], str, Union[str, int, None], Optional[int]]
one_event = st.tuples(events, any_text, ids, retries)


def dispatched(event: Optional[str], data: str, last_id: str) -> Dispatched:
    return Dispatched(event or "message", re.sub(r"\r\n|\r", "\n", data), last_id)


def fields(block: str) -> List[Tuple[str, str]]:
    """The ``(name, value)`` lines of one encoded event, as the spec splits them."""
    out = []
    for line in re.split(r"\r\n|\r|\n", block):
        if line and not line.startswith(":"):
            name, _, value = line.partition(":")
            out.append((name, value[1:] if value.startswith(" ") else value))
    return out


# --- one event -------------------------------------------------------------------------


def check_event_round_trips(args: Event) -> None:
    event, data, id, retry = args
    text = format_sse_event(event, data, id, retry)
    encoded = text.encode("utf-8")
    want = [dispatched(event, data, "" if id is None else str(id))]
    assert browser_events(encoded) == want
    assert httpx_sse_events(encoded) == want
    assert text.endswith("\n\n") and "\n\n" not in text[:-2]  # one event, one empty line
    got = fields(text)
    assert [v for n, v in got if n == "retry"] == ([] if retry is None else [str(retry)])
    assert [v for n, v in got if n == "event"] == ([event] if event else [])
    # the fields come in the guide's order: event, data, id, retry
    order = [n for n, _ in got]
    assert order == sorted(order, key=["event", "data", "id", "retry"].index)


@FAST
@given(one_event)
def test_any_event_is_dispatched_exactly_as_given(args: Event) -> None:
    check_event_round_trips(args)


@pytest.mark.slow
@pytest.mark.timeout(600)
@SLOW
@given(one_event)
def test_any_event_is_dispatched_exactly_as_given_slow(args: Event) -> None:
    check_event_round_trips(args)


# --- a stream of events ---------------------------------------------------------------------

stream_parts = st.lists(st.tuples(one_event, st.none() | any_text), max_size=4)


def check_stream_round_trips(parts: List[Tuple[Event, Optional[str]]]) -> None:
    """Events, each maybe followed by a comment, written by SSEWriter into one stream."""
    out = io.BytesIO()
    writer = SSEWriter(out)
    want = []
    last_id = ""
    for (event, data, id, retry), comment in parts:
        writer.write_event(event, data, id=id, retry=retry)
        if id is not None:
            last_id = str(id)
        want.append(dispatched(event, data, last_id))
        if comment is not None:
            writer.write_comment(comment)
            assert browser_events(format_sse_comment(comment).encode("utf-8")) == []
    stream = out.getvalue()
    assert stream == b"".join(
        format_sse_event(e, d, i, r).encode("utf-8")
        + (b"" if c is None else format_sse_comment(c).encode("utf-8"))
        for (e, d, i, r), c in parts
    )
    assert browser_events(stream) == want


@FAST
@given(stream_parts)
def test_a_stream_of_events_and_comments_is_dispatched_event_by_event(parts) -> None:
    check_stream_round_trips(parts)


@pytest.mark.slow
@pytest.mark.timeout(600)
@SLOW
@given(stream_parts)
def test_a_stream_of_events_and_comments_is_dispatched_event_by_event_slow(parts) -> None:
    check_stream_round_trips(parts)


# --- invalid values ---------------------------------------------------------------------------


@st.composite
def invalid_field(draw: Any) -> Tuple[str, Any]:
    """One field made invalid: a line break in the event type or id, NUL in the id, or a
    retry that is not an int >= 0."""
    field = draw(st.sampled_from(["event", "id", "retry"]))
    if field == "retry":
        bad = draw(
            st.integers(max_value=-1)
            | st.floats(allow_nan=True)
            | st.booleans()
            | st.text(max_size=5)
            | st.decimals(allow_nan=False)
        )
        return field, bad
    breakers = ["\r", "\n", "\r\n"] + (["\0"] if field == "id" else [])
    base = draw(field_text.filter(lambda s: "\0" not in s))
    at = draw(st.integers(0, len(base)))
    return field, base[:at] + draw(st.sampled_from(breakers)) + base[at:]


def check_invalid_is_refused(args: Event, bad: Tuple[str, Any]) -> None:
    event, data, id, retry = args
    values = {"event": event, "data": data, "id": id, "retry": retry}
    field, value = bad
    values[field] = value
    with pytest.raises(ValueError, match=field):
        format_sse_event(**values)
    out = io.BytesIO()
    with pytest.raises(ValueError, match=field):
        SSEWriter(out).write_event(values["event"], data, id=values["id"], retry=values["retry"])
    assert out.getvalue() == b""  # nothing half-written


@FAST
@given(one_event, invalid_field())
def test_values_a_stream_cannot_carry_raise_value_error(args: Event, bad: Tuple[str, Any]) -> None:
    check_invalid_is_refused(args, bad)


@pytest.mark.slow
@pytest.mark.timeout(600)
@SLOW
@given(one_event, invalid_field())
def test_values_a_stream_cannot_carry_raise_value_error_slow(args: Event, bad: Tuple[str, Any]) -> None:
    check_invalid_is_refused(args, bad)
