"""The interpretation of the OpenAI and Anthropic stream events (SDK objects or
dicts alike), shared by the SDK adapters and ``from_sse``."""
from __future__ import annotations

from typing import (
    Any,
    Dict,
    List,
    Optional,
)

from .._chunk import StreamChunk
from .._errors import UpstreamError

from ._common import (
    _NOT_OBJECTS,
    _SURROGATE,
    _get,
    _error_message,
    _plain,
    _Malformed,
    _describe,
    _obj,
    _opt_str,
    _opt_int,
    _count,
    _word,
)


class _Events:
    """Turns the events of an LLM stream into text and a final metadata chunk.

    It understands, by their shape, OpenAI chat completion chunks (and legacy
    completion chunks), OpenAI Responses events, Anthropic Messages events and
    llama.cpp's native ``/completion`` events, given as SDK objects or dicts.

    What carries text or counts is checked: a field of the wrong type raises
    ``_Malformed``, a token count must be an int from 0 to :data:`MAX_TOKEN_COUNT`.
    The metadata words (``finish_reason``, ``model``, ``id``) are kept when they are
    strings and ignored otherwise. Lone surrogates in text become U+FFFD.
    """

    __slots__ = ("meta", "prompt", "completion", "total", "cache", "_high")

    def __init__(self) -> None:
        self.meta: Dict[str, Any] = {}
        self.prompt: Optional[int] = None
        self.completion: Optional[int] = None
        self.total: Optional[int] = None
        self.cache = 0  # Anthropic: cached input tokens, not counted in input_tokens
        self._high = ""  # a high surrogate that ended the last text: half of a pair?

    def feed(self, event: Any) -> List[str]:
        """The text of one event (``[]`` when it has none).

        Raises ``UpstreamError`` for an error the event reports, ``_Malformed`` for an
        event of the wrong shape.
        """
        if isinstance(event, (str, bytes, bytearray)):
            raise TypeError(
                f"expected an event object or dict, got {type(event).__name__}: "
                "use from_sse() for a raw event stream"
            )
        out = self._texts(event)
        if self._high:
            return self._mend(out)
        for text in out:
            if not text.isascii():
                return self._mend(out)
        return out

    def _mend(self, texts: List[str]) -> List[str]:
        """``texts`` with lone surrogates as U+FFFD, and a pair cut between two texts
        (by a service that cuts text in UTF-16 units) joined into one character."""
        mended = []
        for text in texts:
            if self._high:
                text = self._high + text
                self._high = ""
            if "\ud800" <= text[-1] <= "\udbff":  # a first half: wait for the second
                self._high = text[-1]
                text = text[:-1]
            if _SURROGATE.search(text) is not None:
                # UTF-16 joins the pairs and replaces what is left alone
                text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
            if text:
                mended.append(text)
        return mended

    def flush(self) -> List[str]:
        """The text still held at the end: U+FFFD for a first half never completed."""
        high, self._high = self._high, ""
        return ["\ufffd"] if high else []

    def _texts(self, event: Any) -> List[str]:
        kind = _get(event, "type")
        if isinstance(kind, str):
            if kind.startswith("response."):
                return self._responses(kind, event)
            if kind.startswith(("message_", "content_block_")) or kind in ("ping", "error"):
                return self._anthropic(kind, event)
        error = _get(event, "error")
        if error is not None:
            raise UpstreamError(f"the LLM service reported an error: {_error_message(error)}", _plain(event))
        choices = _get(event, "choices")
        if choices is not None or _get(event, "usage") is not None:
            return self._chat(event, choices)
        content = _get(event, "content")
        if isinstance(content, str):  # llama.cpp's native /completion stream
            return self._llamacpp(event, content)
        return []

    # OpenAI chat completions (and legacy completions) -------------------------------
    def _chat(self, event: Any, choices: Any) -> List[str]:
        out: List[str] = []
        if choices is not None and not isinstance(choices, (list, tuple)):
            raise _Malformed(f"'choices' must be a list, got {_describe(choices)}")
        for number, choice in enumerate(choices or ()):
            if choice is None or isinstance(choice, _NOT_OBJECTS):
                raise _Malformed(f"'choices[{number}]' must be an object, got {_describe(choice)}")
            index = _opt_int(_get(choice, "index"), "index")
            if index not in (None, 0):
                continue  # n > 1: the first choice only
            delta = _obj(_get(choice, "delta"), "delta")
            if delta is not None:
                text = _opt_str(_get(delta, "content"), "content")
            else:
                text = _opt_str(_get(choice, "text"), "text")
            if text:
                out.append(text)
            finish = _word(_get(choice, "finish_reason"))
            if finish is not None:
                self.meta["finish_reason"] = finish
        self._ids(event)
        self._usage_of(event, "prompt_tokens", "completion_tokens")
        return out

    def _ids(self, obj: Any) -> None:
        for key in ("model", "id"):
            value = _word(_get(obj, key))
            if value is not None:
                self.meta[key] = value

    def _usage_of(self, obj: Any, prompt: str, completion: str) -> None:
        """The ``usage`` object of ``obj``, if any, with these names for its two counts
        (and ``total_tokens``)."""
        usage = _obj(_get(obj, "usage"), "usage")
        if usage is not None:
            self._usage(_count(usage, prompt), _count(usage, completion), _count(usage, "total_tokens"))

    def _usage(self, prompt: Optional[int], completion: Optional[int], total: Optional[int] = None) -> None:
        if prompt is not None:
            self.prompt = prompt
        if completion is not None:
            self.completion = completion
        if total is not None:
            self.total = total

    # OpenAI Responses -------------------------------------------------------------
    def _responses(self, kind: str, event: Any) -> List[str]:
        if kind == "response.output_text.delta":
            text = _opt_str(_get(event, "delta"), "delta")
            return [text] if text else []
        if kind in ("response.completed", "response.incomplete", "response.failed", "response.created"):
            response = _obj(_get(event, "response"), "response")
            self._ids(response)
            if kind == "response.failed":
                error = _get(response, "error")
                raise UpstreamError(
                    f"the LLM service reported an error: {_error_message(error or 'response failed')}",
                    _plain(event),
                )
            if kind != "response.created":
                reason = _get(_obj(_get(response, "incomplete_details"), "incomplete_details"), "reason")
                status = _get(response, "status")
                finish = _word(reason) or _word(status)
                if finish is not None:
                    self.meta["finish_reason"] = finish
            self._usage_of(response, "input_tokens", "output_tokens")
        elif kind == "response.error":
            raise UpstreamError(f"the LLM service reported an error: {_error_message(event)}", _plain(event))
        return []

    # Anthropic Messages -----------------------------------------------------------
    def _anthropic(self, kind: str, event: Any) -> List[str]:
        if kind == "content_block_delta":
            delta = _obj(_get(event, "delta"), "delta")
            if _get(delta, "type") == "text_delta":
                text = _get(delta, "text")
                if not isinstance(text, str):
                    raise _Malformed(f"'text' must be a string, got {_describe(text)}")
                return [text] if text else []
            return []
        if kind == "message_start":
            message = _obj(_get(event, "message"), "message")
            self._ids(message)
            self._anthropic_usage(_obj(_get(message, "usage"), "usage"))
        elif kind == "message_delta":
            reason = _word(_get(_obj(_get(event, "delta"), "delta"), "stop_reason"))
            if reason is not None:
                self.meta["finish_reason"] = reason
            self._anthropic_usage(_obj(_get(event, "usage"), "usage"))
        elif kind == "error":
            error = _get(event, "error")
            raise UpstreamError(
                f"the LLM service reported an error: {_error_message(error if error is not None else event)}",
                _plain(event),
            )
        return []

    def _anthropic_usage(self, usage: Any) -> None:
        if usage is None:
            return
        given = _count(usage, "input_tokens")
        cache = [_count(usage, key) for key in ("cache_creation_input_tokens", "cache_read_input_tokens")]
        if any(n is not None for n in cache):
            self.cache = sum(n for n in cache if n is not None)
        if given is not None:
            self.prompt = given
        output = _count(usage, "output_tokens")
        if output is not None:
            self.completion = output  # cumulative: the last one is the total

    # llama.cpp native --------------------------------------------------------------
    def _llamacpp(self, event: Any, content: str) -> List[str]:
        if _get(event, "stop") is True:
            self._usage(_count(event, "tokens_evaluated"), _count(event, "tokens_predicted"))
            self.meta["finish_reason"] = _word(_get(event, "stop_type")) or "stop"
            model = _word(_get(event, "model"))
            if model is not None:
                self.meta["model"] = model
        return [content] if content else []

    def final(self) -> Optional[StreamChunk]:
        """The text-less chunk with the usage and finish reason, if there is any."""
        meta = dict(self.meta)
        if self.completion is not None:
            prompt = (self.prompt or 0) + self.cache
            total = self.total if self.total is not None else prompt + self.completion
            meta["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": self.completion,
                "total_tokens": total,
            }
        if "usage" not in meta and "finish_reason" not in meta:
            return None
        return StreamChunk("", metadata=meta)
