"""``from_sse``: the text of a raw OpenAI-compatible Server-Sent Events stream."""
from __future__ import annotations

import json
from typing import (
    Any,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
)

from .._errors import ConfigError, UpstreamError

from ._common import (
    SourceItem,
    _SURROGATE,
    _get,
    _int,
    _error_message,
    _Malformed,
    _Source,
)
from ._events import _Events
from ..sse._parsing import (
    BYTES_EOL,
    BOM,
    DEFAULT_SSE_LIMIT,
    Line,
    has_eol,
    TooLarge,
    line_too_long,
    ByteLines,
    EventStreamParser,
)

_BODY_LIMIT = 64 * 1024  # bytes of an error response's body kept in the message
_READ_SIZE = 64 * 1024  # the most bytes read from a requests response at a time


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate in it becomes U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def _check_limit(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name!r} must be an int >= 1 (got {value!r})")
    return value


class SSESource(_Source):
    """The text of an OpenAI-compatible Server-Sent Events stream (what
    :func:`from_sse` returns), with a thread-safe :meth:`close`.

    Attributes:
        mode: ``"auto"``, ``"lines"`` or ``"raw"`` as given; :attr:`detected` tells
            what ``"auto"`` decided (None until it has).
        max_line_bytes: the longest line taken, in bytes.
        max_event_bytes: the most data one event may carry, in bytes.
    """

    MODES = ("auto", "lines", "raw")

    def __init__(
        self,
        source: Any,
        mode: str = "auto",
        max_line_bytes: int = DEFAULT_SSE_LIMIT,
        max_event_bytes: int = DEFAULT_SSE_LIMIT,
    ) -> None:
        if mode not in self.MODES:
            raise ConfigError(f"'mode' must be one of {', '.join(self.MODES)} (got {mode!r})")
        self.max_line_bytes = _check_limit("max_line_bytes", max_line_bytes)
        self.max_event_bytes = _check_limit("max_event_bytes", max_event_bytes)
        response = None
        if callable(_get(source, "iter_bytes")) or callable(_get(source, "iter_content")):
            response = source
        elif isinstance(source, (str, bytes, bytearray)) or not hasattr(source, "__iter__"):
            raise TypeError(
                "from_sse() takes an iterable of lines or byte/text pieces, or a requests/"
                f"httpx response, not {type(source).__name__}"
            )
        super().__init__(source)
        self._response = response
        self._status: Optional[int] = None  # the response's HTTP status, once known
        self.mode = mode
        self.detected: Optional[str] = None if mode == "auto" else mode
        self._parser = EventStreamParser(self.max_event_bytes)

    @property
    def last_event_id(self) -> str:
        """The last ``id:`` the stream set (``""`` when none)."""
        return self._parser.last_event_id

    @property
    def retry(self) -> Optional[int]:
        """The last valid ``retry:`` the stream set, in milliseconds (None when none)."""
        return self._parser.retry

    def _pieces(self) -> Iterable[Any]:
        response = self._response
        if response is None:
            return self._stream  # type: ignore[no-any-return]
        status = self._status = _int(_get(response, "status_code"))
        if status is not None and status >= 400:
            self._http_error(response, status)
        if callable(_get(response, "iter_bytes")):  # httpx
            self.detected = self.detected or "raw"
            return response.iter_bytes()  # type: ignore[no-any-return]
        # requests: pieces as they arrive (each HTTP chunk), at most _READ_SIZE at a time:
        # with chunk_size=None, urllib3 reads a whole HTTP chunk, however large, at once
        self.detected = self.detected or "raw"
        return response.iter_content(chunk_size=_READ_SIZE)  # type: ignore[no-any-return]

    def _http_error(self, response: Any, status: int) -> None:
        body = b""
        try:
            reader = _get(response, "iter_bytes") or (lambda: response.iter_content(chunk_size=8192))
            for piece in reader():
                body += piece if isinstance(piece, bytes) else str(piece).encode()
                if len(body) >= _BODY_LIMIT:
                    break
        except Exception:  # noqa: BLE001 - the status is the news
            pass
        text = body[:_BODY_LIMIT].decode("utf-8", "replace")
        payload: Any = text
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply: keep the text
            pass
        detail = _error_message(payload["error"]) if isinstance(payload, dict) and "error" in payload else text.strip()
        raise UpstreamError(f"HTTP {status}: {detail[:_BODY_LIMIT] or 'no body'}", payload, status)

    def _where(self, what: str, offset: int) -> str:
        """``(event at byte 120 of an HTTP 200 response)``: for an error message."""
        status = f" of an HTTP {self._status} response" if self._status is not None else ""
        return f"({what} at byte {offset}{status})"

    def _lines(self) -> Iterator[Line]:
        """The lines of the stream, whatever the shape of its pieces."""
        pieces = iter(self._pieces())
        mode = self.detected
        held: List[bytes] = []
        held_size = 0
        limit = self.max_line_bytes
        splitter = ByteLines(limit)
        pos = 0  # lines mode: the stream offset of the next item

        def as_bytes(piece: Any) -> bytes:
            if isinstance(piece, (bytes, bytearray, memoryview)):
                return bytes(piece)
            if isinstance(piece, str):
                return _utf8(piece)
            raise TypeError(f"from_sse() got a {type(piece).__name__} item; expected str or bytes")

        def lines_of(data: bytes, mode: str) -> List[Line]:
            nonlocal pos
            if mode == "raw":
                found = splitter.feed(data)
            else:
                # one line per item (requests' iter_lines()): a terminator left on it (as
                # iter_lines(delimiter="\n") leaves a CR) is dropped, and several lines in
                # one item are split; each counts one byte for the terminator it lost
                end = len(data) - (2 if data.endswith(b"\r\n") else 1 if data.endswith((b"\r", b"\n")) else 0)
                if end > limit and data.find(b"\n", 0, end) < 0 and data.find(b"\r", 0, end) < 0:
                    raise line_too_long(limit, pos)
                if end < len(data):
                    data = data[:end]
                found = []
                for line in BYTES_EOL.split(data) if has_eol(data) else (data,):
                    if len(line) > limit:
                        raise line_too_long(limit, pos)
                    found.append((pos, line))
                    pos += len(line) + 1
            out = []
            for start, line in found:
                if start == 0 and line.startswith(BOM):
                    line = line[3:]
                out.append((start, line.decode("utf-8", "replace"), len(line)))
            return out

        for piece in pieces:
            data = as_bytes(piece)
            if mode is None:
                if not data:
                    mode = "lines"
                elif has_eol(data):
                    mode = "raw"
                else:
                    held.append(data)
                    held_size += len(data)
                    if held_size <= self.max_line_bytes:
                        continue
                    mode = "raw"  # as much as a line may hold, and no line ending yet
                    data = b""
                self.detected = mode
                for old in held:
                    yield from lines_of(old, mode)
                held = []
            yield from lines_of(data, mode)
        if mode is None:  # ended before telling: lines (each piece whole) is all that fits
            mode = self.detected = "lines"
            for old in held:
                yield from lines_of(old, mode)
        # an unfinished line at the end is discarded (WHATWG)

    def _events(self) -> Iterator[Tuple[str, str, int]]:
        """The ``(event type, data, byte offset)`` of each event dispatched by a blank line."""
        parse = self._parser.line
        for offset, line, nbytes in self._lines():
            event = parse(offset, line, nbytes)
            if event is not None:
                yield event

    def _items(self) -> Iterator[SourceItem]:
        events = _Events()
        feed = events.feed
        where = self._where
        try:
            for kind, data, offset in self._events():
                stripped = data.strip()
                if stripped == "[DONE]":
                    break
                if not stripped:
                    continue  # an empty event (a keep-alive)
                try:
                    payload = json.loads(data)
                except RecursionError:
                    raise UpstreamError(
                        f"the event stream sent JSON nested too deeply {where('event', offset)}", data, offset=offset
                    ) from None
                except ValueError:
                    if kind == "error":
                        raise UpstreamError(
                            f"the LLM service reported an error: {stripped[:500]}", data, offset=offset
                        ) from None
                    raise UpstreamError(
                        f"the event stream sent data that is not JSON: {stripped[:200]!r} {where('event', offset)}",
                        data,
                        offset=offset,
                    ) from None
                if not isinstance(payload, dict):
                    raise UpstreamError(
                        f"the event stream sent JSON that is not an object: {stripped[:200]} "
                        f"{where('event', offset)}",
                        payload,
                        offset=offset,
                    )
                if kind == "error" and "error" not in payload and payload.get("type") != "error":
                    raise UpstreamError(
                        f"the LLM service reported an error: {_error_message(payload)}", payload, offset=offset
                    )
                try:
                    texts = feed(payload)
                except _Malformed as exc:
                    raise UpstreamError(
                        f"the event stream sent an event of the wrong shape: {exc} {where('event', offset)}",
                        payload,
                        offset=offset,
                    ) from None
                except UpstreamError as exc:  # an error the service reports
                    exc.offset = offset
                    raise
                for text in texts:
                    yield text
        except TooLarge as exc:
            raise UpstreamError(f"{exc} {where(exc.what, exc.offset)}", None, offset=exc.offset) from None
        yield from events.flush()
        final = events.final()
        if final is not None:
            yield final


def from_sse(
    source: Any,
    mode: str = "auto",
    max_line_bytes: int = DEFAULT_SSE_LIMIT,
    max_event_bytes: int = DEFAULT_SSE_LIMIT,
) -> SSESource:
    """The text of a raw OpenAI-compatible event stream, as a helixstream source.

    For servers spoken to over plain HTTP (Ollama, vLLM, llama.cpp, LM Studio, a
    gateway): ``data: {json}`` events ending with ``data: [DONE]``. The payloads may be
    OpenAI chat completion chunks, OpenAI Responses events, Anthropic Messages events
    or llama.cpp's native ``/completion`` events; their text and usage come out as
    with :func:`from_openai`.

    Args:
        source: one of

            - a ``requests`` response opened with ``stream=True`` or an ``httpx``
              response opened with ``client.stream(...)`` (best: ``close()`` can then
              shut its connection down and close it from another thread, and an HTTP
              error status raises :class:`UpstreamError` with the body);
            - ``response.iter_lines()`` of ``requests``: lines without their
              terminators, a blank line as an empty item;
            - ``response.iter_bytes()`` or ``iter_text()`` of ``httpx`` (or any
              iterable of ``bytes``/``str`` pieces cut anywhere, terminators included).
              Bytes are decoded as UTF-8, incrementally, so a character cut in two
              comes out whole; invalid bytes become U+FFFD, as the standard says.
        mode: ``"lines"`` (each item is one line), ``"raw"`` (items are pieces cut
            anywhere) or ``"auto"``: an empty item means lines, an item with a CR or
            LF in it means raw; until one comes the items are held (up to
            ``max_line_bytes``; more is read as raw), and a stream that ends first is
            read as lines.
        max_line_bytes: the longest line taken, in bytes, terminator not counted
            (default 1 MiB). A longer line raises :class:`UpstreamError` as soon as
            this many bytes of it have arrived: the rest is not read.
        max_event_bytes: the most data one event may carry, in bytes: its ``data:``
            values joined with newlines (default 1 MiB); more raises
            :class:`UpstreamError` before it is kept.

    Returns:
        An iterable of the text, then the usage/finish-reason chunk (see
        :func:`from_openai`); ``close()`` closes ``source`` (when it has ``close()``)
        from any thread. An iterator that is a generator (``iter_lines()`` is one) can
        only be closed by the thread reading it: pass the response itself for a prompt
        stop.

    The event stream is parsed as the WHATWG HTML standard says: ``:`` comments,
    ``data:`` lines joined with newlines, one optional space after the colon, CRLF, CR
    or LF line endings, a byte order mark at the start, dispatch on a blank line, an
    unfinished event at the end discarded.

    While iterating, :class:`UpstreamError` is raised for an ``{"error": ...}``
    payload or an ``error`` event, an HTTP error status (``.status``, the body in the
    message), and for what an upstream must not send: data that is not JSON or is
    nested too deeply, JSON that is not an object, a field that carries text or counts
    with the wrong type (``{"choices": 5}``), a token count that is not an int from 0
    to 10**12, a line or an event over its limit. Those errors say what and where:
    ``.offset`` is the byte offset of the event (or line) in the stream, and the
    message names it and the response's HTTP status. A ``retry:`` field that is not
    at most 10 ASCII digits is ignored (:attr:`SSESource.retry` keeps the last valid
    one), and a lone surrogate in the text (JSON ``"\\ud800"``) becomes U+FFFD.

    Raises:
        ConfigError: ``mode``, ``max_line_bytes`` or ``max_event_bytes`` is not valid.
        TypeError: ``source`` is not a response or an iterable of pieces.
    """
    return SSESource(source, mode, max_line_bytes, max_event_bytes)
