"""What an event stream says, in the protocols front-ends read (private).

A format turns the moments of a stream (its start, each chunk of text, a progress
report, the end, a failure) into SSE events, ``(event type or None, data)`` pairs; the
SSE body gives them ids, encodes them and keeps them for resuming, whatever the
format. Three formats:

- ``"text"``: helixstream's own events (raw text ``message`` events, ``progress``,
  ``done``/``[DONE]``, ``error`` with a JSON payload), as before formats existed;
- ``"openai"``: OpenAI's ``chat.completion.chunk`` stream, as the ``openai`` SDKs,
  LangChain and curl scripts read it: one chunk per piece of text, a last chunk with
  ``finish_reason``, an optional ``usage`` chunk, then ``[DONE]``; a failure is an
  OpenAI-style ``{"error": {...}}`` object;
- ``"ai-sdk"``: the Vercel AI SDK's UI message stream protocol, v1 (what ``useChat``
  reads): ``start``, ``start-step``, ``text-start``, a ``text-delta`` per piece of
  text, ``text-end``, ``finish-step``, ``finish``, then ``[DONE]``; a failure is an
  ``error`` part and progress a ``data-progress`` part. It needs the response header
  ``x-vercel-ai-ui-message-stream: v1``.
"""
from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional, Tuple

from ._errors import ConfigError

__all__ = ["FORMATS", "EventFormat", "Events", "make_format"]

#: ``(event type, data)`` pairs; an event type of None is a plain ``message`` event.
Events = List[Tuple[Optional[str], str]]

DONE_DATA = "[DONE]"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


class EventFormat:
    """helixstream's own events (the ``"text"`` format); the base of the others."""

    name = "text"
    #: headers the format needs beside ``SSE_HEADERS``
    headers: Tuple[Tuple[str, str], ...] = ()

    def __init__(self, event: Optional[str] = None, **_: Any) -> None:
        self.event = event

    def begin(self) -> Events:
        """Events before the first chunk."""
        return []

    def text(self, text: str) -> Events:
        """Events for one piece of text."""
        return [(self.event, text)]

    def progress(self, received: int, total: Optional[int]) -> Events:
        """Events for a progress report (tokens received, expected total or None)."""
        return [("progress", _dumps({"received": received, "total": total or None}))]

    def end(self, tokens: Optional[int]) -> Events:
        """Events at the end of a complete stream (``tokens``: output tokens, if known)."""
        return [("done", DONE_DATA)]

    def failure(self, payload: Dict[str, Any]) -> Events:
        """Events for a stream that failed or was stopped. ``payload`` holds ``code``
        and ``message`` (and ``error_id``, ``type`` when known)."""
        return [("error", _dumps(payload))]


class OpenAIFormat(EventFormat):
    """OpenAI's ``chat.completion.chunk`` stream."""

    name = "openai"

    def __init__(
        self,
        *,
        stream_id: str = "",
        model: str = "helixstream",
        usage: bool = True,
        prompt_tokens: int = 0,
        **_: Any,
    ) -> None:
        super().__init__()
        self.id = f"chatcmpl-{stream_id}" if stream_id else "chatcmpl-helixstream"
        self.model = model
        self.usage = usage
        self.prompt_tokens = prompt_tokens
        self.created = int(time.time())
        self._first = True

    def _chunk(self, delta: Dict[str, Any], finish: Optional[str]) -> str:
        return _dumps({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        })

    def text(self, text: str) -> Events:
        delta: Dict[str, Any] = {"content": text}
        if self._first:
            self._first = False
            delta = {"role": "assistant", "content": text}
        return [(None, self._chunk(delta, None))]

    def progress(self, received: int, total: Optional[int]) -> Events:
        return []  # the protocol has no place for it

    def end(self, tokens: Optional[int]) -> Events:
        events: Events = [(None, self._chunk({}, "stop"))]
        if self.usage and tokens is not None:
            completion = int(tokens)
            events.append((None, _dumps({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": self.prompt_tokens + completion,
                },
            })))
        events.append((None, DONE_DATA))
        return events

    def failure(self, payload: Dict[str, Any]) -> Events:
        error: Dict[str, Any] = {
            "message": payload.get("message", "The stream failed."),
            "type": payload.get("type") or "server_error",
            "param": None,
            "code": payload.get("code"),
        }
        if "error_id" in payload:
            error["error_id"] = payload["error_id"]
        return [(None, _dumps({"error": error}))]


class AISDKFormat(EventFormat):
    """The Vercel AI SDK's UI message stream protocol, v1."""

    name = "ai-sdk"
    headers = (("x-vercel-ai-ui-message-stream", "v1"),)

    def __init__(self, *, stream_id: str = "", **_: Any) -> None:
        super().__init__()
        self.message_id = f"msg-{stream_id}" if stream_id else "msg-helixstream"
        self.text_id = "text-1"
        self._open = False

    def begin(self) -> Events:
        return [
            (None, _dumps({"type": "start", "messageId": self.message_id})),
            (None, _dumps({"type": "start-step"})),
        ]

    def _close_text(self) -> Events:
        if not self._open:
            return []
        self._open = False
        return [(None, _dumps({"type": "text-end", "id": self.text_id}))]

    def text(self, text: str) -> Events:
        events: Events = []
        if not self._open:
            self._open = True
            events.append((None, _dumps({"type": "text-start", "id": self.text_id})))
        events.append((None, _dumps({"type": "text-delta", "id": self.text_id, "delta": text})))
        return events

    def progress(self, received: int, total: Optional[int]) -> Events:
        data = {"received": received, "total": total or None}
        return [(None, _dumps({"type": "data-progress", "data": data, "transient": True}))]

    def end(self, tokens: Optional[int]) -> Events:
        return [
            *self._close_text(),
            (None, _dumps({"type": "finish-step"})),
            (None, _dumps({"type": "finish"})),
            (None, DONE_DATA),
        ]

    def failure(self, payload: Dict[str, Any]) -> Events:
        message = str(payload.get("message", "The stream failed."))
        if payload.get("error_id"):
            message = f"{message} (error id {payload['error_id']})"
        return [*self._close_text(), (None, _dumps({"type": "error", "errorText": message}))]


FORMATS = {f.name: f for f in (EventFormat, OpenAIFormat, AISDKFormat)}


def make_format(name: Any, **options: Any) -> EventFormat:
    """The format called ``name`` (``"text"``, ``"openai"`` or ``"ai-sdk"``)."""
    cls = FORMATS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(
            f"'format' must be one of {', '.join(repr(n) for n in FORMATS)} (got {name!r})"
        )
    return cls(**options)
