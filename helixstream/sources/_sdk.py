"""Adapters for the ``openai`` and ``anthropic`` SDKs' streams."""
from __future__ import annotations

from typing import (
    Any,
    Iterator,
)

from .._errors import UpstreamError

from ._common import (
    SourceItem,
    _plain,
    _Malformed,
    _refuse_async,
    _Source,
)


from ._events import _Events


class SDKSource(_Source):
    """The text and usage of an SDK's stream (what :func:`from_openai` and
    :func:`from_anthropic` return): an iterable of ``str`` and, last, a metadata
    :class:`StreamChunk`, with a thread-safe :meth:`close`.
    """

    def __init__(self, stream: Any, kind: str = "stream") -> None:
        _refuse_async(stream)
        if not hasattr(stream, "__iter__") and not hasattr(stream, "__enter__"):
            raise TypeError(f"{kind} must be an iterable of events, not {type(stream).__name__}")
        super().__init__(stream)
        self._manager: Any = None

    def _items(self) -> Iterator[SourceItem]:
        stream = self._stream
        if not hasattr(stream, "__iter__"):
            # anthropic's MessageStreamManager (client.messages.stream(...)): entering
            # it sends the request
            entered = stream.__enter__()
            with self._lock:
                self._manager, self._stream = stream, entered
                closed = self._closed
            if closed:
                return
            stream = entered
        events = _Events()
        feed = events.feed
        for event in stream:
            try:
                texts = feed(event)
            except _Malformed as exc:
                raise UpstreamError(f"the stream sent an event of the wrong shape: {exc}", _plain(event)) from None
            for text in texts:
                yield text
        yield from events.flush()
        final = events.final()
        if final is not None:
            yield final

    def close(self) -> None:
        """Close the SDK stream (its HTTP response); safe from any thread, and twice."""
        super().close()
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.__exit__(None, None, None)


def from_openai(stream: Any) -> SDKSource:
    """The text of an ``openai`` SDK stream, and its usage, as a helixstream source.

    Args:
        stream: what ``client.chat.completions.create(..., stream=True)`` returns (an
            ``openai.Stream`` of ``ChatCompletionChunk``), or any iterable of such
            chunks as objects or dicts. The legacy ``client.completions.create`` stream
            (``choices[0].text``) and the Responses stream
            (``client.responses.create(..., stream=True)``: ``response.output_text.delta``
            events, the usage on ``response.completed``) work too.

    Returns:
        An iterable of the text of ``choices[0]`` (``delta.content``; role-only and
        tool-call deltas carry none), then, when the stream reported usage (ask for it
        with ``stream_options={"include_usage": True}``) or a finish reason, a text-less
        :class:`StreamChunk` whose ``metadata`` has ``usage`` (``prompt_tokens``,
        ``completion_tokens``, ``total_tokens``), ``finish_reason``, ``model`` and
        ``id``. Its ``close()`` closes the SDK stream and so the HTTP request, from
        any thread.

    Raises:
        TypeError: ``stream`` is not iterable, or is an ``AsyncStream``.

    While iterating, an ``{"error": ...}`` event, and an event of the wrong shape (a
    field carrying text or counts of the wrong type, a token count that is not an int
    from 0 to 10**12), raise :class:`UpstreamError`; the SDK's own exceptions
    (``openai.APIError``, ...) pass through unchanged.
    """
    return SDKSource(stream, "from_openai(stream)")


def from_anthropic(stream: Any) -> SDKSource:
    """The text of an ``anthropic`` SDK message stream, and its usage, as a source.

    Args:
        stream: what ``client.messages.create(..., stream=True)`` returns (a ``Stream``
            of raw events), the ``MessageStream`` of
            ``with client.messages.stream(...) as stream:``, the
            ``MessageStreamManager`` that ``client.messages.stream(...)`` returns
            (entered when the stream starts, exited when it is closed), or any
            iterable of such events as objects or dicts.

    Returns:
        An iterable of the text of the ``text_delta`` events (thinking, tool input and
        citation deltas carry none; the ``MessageStream``'s derived ``text`` events are
        skipped, as their text is in the deltas), then a text-less
        :class:`StreamChunk` whose ``metadata["usage"]`` has ``completion_tokens``
        (the last ``output_tokens``), ``prompt_tokens`` (``input_tokens`` plus the
        cache creation and cache read input tokens) and ``total_tokens``, with
        ``finish_reason`` (the ``stop_reason``), ``model`` and ``id``. Its ``close()``
        closes the SDK stream (the HTTP request), from any thread.

    Raises:
        TypeError: ``stream`` is not iterable, or is asynchronous.

    While iterating, an ``error`` event raises :class:`UpstreamError`; the SDK's own
    exceptions pass through unchanged.
    """
    return SDKSource(stream, "from_anthropic(stream)")
