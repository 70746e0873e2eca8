"""Reading the ``text/event-stream`` format: lines cut anywhere, and the WHATWG rules
for fields, comments and dispatch. The one line-splitting implementation: the encoder
(:mod:`helixstream.sse._encoding`) and ``from_sse`` both use it."""
from __future__ import annotations

import re
from typing import Any, List, Optional, Tuple

#: The only line breaks of the event-stream format: CRLF, CR and LF (not what
#: ``str.splitlines()`` also breaks on: U+2028, U+0085, form feed, ...). One pattern,
#: for text (the encoder) and for bytes (the parser of ``from_sse``).
_EOL = r"\r\n|\r|\n"
LINE_BREAK = re.compile(_EOL)
BYTES_EOL = re.compile(_EOL.encode("ascii"))


def split_lines(text: str) -> List[str]:
    """``text`` cut at its line breaks (an empty string is one empty line)."""
    return LINE_BREAK.split(text)

BOM = b"\xef\xbb\xbf"

#: ``from_sse``'s default ``max_line_bytes`` and ``max_event_bytes``: 1 MiB each.
DEFAULT_SSE_LIMIT = 1024 * 1024

#: A ``retry:`` value of more digits is ignored: no reconnection time is that long
#: (10 digits of milliseconds are 115 days), and ``int()`` refuses over 4,300 digits.
RETRY_DIGITS = 10

#: One line of the stream: its byte offset, its text, and its length in bytes.
Line = Tuple[int, str, int]


def has_eol(piece: Any) -> bool:
    if isinstance(piece, str):
        return "\n" in piece or "\r" in piece
    data = bytes(piece)
    return b"\n" in data or b"\r" in data


class TooLarge(Exception):
    """A line or an event over its limit (becomes an :class:`UpstreamError`)."""

    def __init__(self, what: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.what = what  # "line" or "event"
        self.offset = offset


def line_too_long(limit: int, offset: int) -> TooLarge:
    return TooLarge("line", f"the event stream sent a line longer than max_line_bytes ({limit})", offset)


class ByteLines:
    """Lines from bytes cut anywhere (CRLF, CR or LF), each with its byte offset.

    The line being built is held until its end arrives; once it is longer than
    ``limit`` bytes, :class:`TooLarge` is raised at once, so at most ``limit`` bytes
    and one piece are ever held.
    """

    __slots__ = ("_parts", "_size", "_skip_lf", "_pos", "_start", "_limit")

    def __init__(self, limit: int) -> None:
        self._parts: List[bytes] = []  # the line being built
        self._size = 0  # bytes in _parts
        self._skip_lf = False  # the last piece ended with CR: an LF next belongs to it
        self._pos = 0  # the stream offset of the next piece
        self._start = 0  # the stream offset of the line being built
        self._limit = limit

    def feed(self, data: bytes) -> List[Tuple[int, bytes]]:
        if not data:
            return []
        pos = self._pos
        self._pos = pos + len(data)
        begin = 0
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == 0x0A:
                begin = 1
                self._start += 1
        lines: List[Tuple[int, bytes]] = []
        for match in BYTES_EOL.finditer(data, begin):
            if self._size + match.start() - begin > self._limit:
                raise line_too_long(self._limit, self._start)  # before copying it
            if self._parts:
                self._parts.append(data[begin : match.start()])
                line = b"".join(self._parts)
                self._parts = []
                self._size = 0
            else:
                line = data[begin : match.start()]
            lines.append((self._start, line))
            begin = match.end()
            self._start = pos + begin
        if begin < len(data):
            self._size += len(data) - begin
            if self._size > self._limit:
                raise line_too_long(self._limit, self._start)
            self._parts.append(data[begin:])
        self._skip_lf = data[-1] == 0x0D
        return lines


class EventStreamParser:
    """The WHATWG event-stream interpretation of lines: fields, comments, dispatch.

    The data of one event (its ``data:`` values joined with newlines) may be at most
    ``limit`` bytes: more raises :class:`TooLarge` before it is kept.
    """

    __slots__ = ("_data", "_size", "_event", "_start", "_limit", "last_event_id", "retry")

    def __init__(self, limit: int = DEFAULT_SSE_LIMIT) -> None:
        self._data: List[str] = []
        self._size = 0  # bytes of the event's data, newlines included
        self._event = ""
        self._start = -1  # the stream offset of the event's first line
        self._limit = limit
        self.last_event_id = ""
        self.retry: Optional[int] = None

    def line(self, offset: int, line: str, nbytes: int) -> Optional[Tuple[str, str, int]]:
        """Process one line (``nbytes`` long, at ``offset``); return ``(event type, data,
        offset of the event)`` when it dispatches an event."""
        if not line:
            start, self._start = self._start, -1
            if not self._data:
                self._event = ""
                return None
            event = (self._event or "message", "\n".join(self._data), start)
            self._data = []
            self._size = 0
            self._event = ""
            return event
        if self._start < 0:
            self._start = offset
        if line[0] == ":":
            return None  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            # the field name, colon and space are ASCII: the rest of the line's bytes is the value
            size = self._size + nbytes - (len(line) - len(value)) + (1 if self._data else 0)
            if size > self._limit:
                raise TooLarge(
                    "event",
                    f"the event stream sent an event larger than max_event_bytes ({self._limit})", self._start
                )
            self._data.append(value)
            self._size = size
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            # WHATWG: ASCII digits only, else ignored; and no more digits than is reasonable
            if len(value) <= RETRY_DIGITS and value.isascii() and value.isdigit():
                self.retry = int(value)
        return None
