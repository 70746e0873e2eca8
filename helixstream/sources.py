"""Sources: LLM streams from SDKs, raw HTTP event streams and push-style producers.

Each function here turns what an LLM client gives you into an iterable that any
helixstream stream takes as its source::

    from openai import OpenAI
    import helixstream as hs
    from helixstream.sources import from_openai

    client = OpenAI()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
        stream=True, stream_options={"include_usage": True},
    )
    output, get_result = hs.EnhancedStreamer().stream_enhanced(from_openai(stream))
    with output:
        for chunk in output:
            print(chunk.content, end="", flush=True)
    print(get_result().total_tokens)   # the service's own count

- :func:`from_openai`: the ``openai`` SDK's chat completion stream (also its legacy
  completions and its Responses streams).
- :func:`from_anthropic`: the ``anthropic`` SDK's message stream.
- :func:`from_sse`: a raw OpenAI-compatible event stream read with ``requests`` or
  ``httpx`` (Ollama, vLLM, llama.cpp, LM Studio, ...), without any SDK.
- :class:`Channel`: a bounded, thread-safe pipe for producers that push text (a
  LangChain callback handler, a transformers ``TextStreamer``, any thread).

What they have in common:

- The text arrives as ``str`` items. The service's token counts, when it sends them,
  arrive last, as a chunk with no text and ``metadata["usage"]`` (a dict with
  ``prompt_tokens``, ``completion_tokens`` and ``total_tokens``); the aggregation stage
  then reports ``completion_tokens`` as ``total_tokens``, exactly. That chunk's
  metadata also holds ``finish_reason`` (the service's own word: ``"stop"``,
  ``"length"``, ``"end_turn"``, ...), ``model`` and ``id`` when the service sent them.
  It is only sent when the stream reported usage or a finish reason.
- The adapters are objects, not generators, with a ``close()`` that may be called from
  any thread: closing the helixstream output calls it while another thread may be
  blocked reading, and it closes the SDK stream or the HTTP response, which ends that
  read and the request upstream. For an HTTP/1.1 connection of ``httpx`` (which both
  SDKs use) or ``requests``, ``close()`` first shuts the socket down, so a read that is
  waiting for a silent server returns at once instead of at the server's next byte.
- helixstream imports no SDK: the adapters read the objects they are given by
  attribute or key (``event.choices[0].delta.content`` or
  ``event["choices"][0]["delta"]["content"]``), so plain dicts work too.
- Blocking code only: an ``AsyncStream`` is refused with a ``TypeError``.

Push-style producers write into a :class:`Channel` from their own thread, and the
stream reads it::

    channel = Channel()

    def produce():                     # in another thread
        for word in ["Hello ", "world."]:
            channel.send(word)         # blocks while the channel is full

    threading.Thread(target=channel.run, args=(produce,), daemon=True).start()
    output, get_result = hs.EnhancedStreamer().stream_buffered(channel)

``channel.run(func, ...)`` calls ``func`` and then closes the channel (or fails it with
the exception ``func`` raised); when the reader stops the stream, the next ``send``
raises :class:`~helixstream.StreamClosedError`, which ``run`` takes as the signal to
stop. The LangChain recipe: a callback handler whose ``on_llm_new_token`` sends the
token, with ``raise_error = True`` so that this error stops the model run (the model
must stream, e.g. ``ChatOpenAI(model=..., streaming=True)``)::

    from langchain_core.callbacks import BaseCallbackHandler

    class ToChannel(BaseCallbackHandler):
        raise_error = True

        def __init__(self, channel):
            self.channel = channel

        def on_llm_new_token(self, token, **kwargs):
            self.channel.send(token)

    channel = Channel()
    config = {"callbacks": [ToChannel(channel)]}
    threading.Thread(target=channel.run, args=(llm.invoke, question),
                     kwargs={"config": config}, daemon=True).start()

The transformers recipe: a ``TextStreamer`` whose ``on_finalized_text`` sends the text,
and ``model.generate`` run by ``channel.run`` in a thread::

    from transformers import TextStreamer

    class ChannelStreamer(TextStreamer):
        def __init__(self, tokenizer, channel, **decode_kwargs):
            super().__init__(tokenizer, skip_prompt=True, **decode_kwargs)
            self.channel = channel

        def on_finalized_text(self, text, stream_end=False):
            if text:
                self.channel.send(text)

    channel = Channel()
    streamer = ChannelStreamer(tokenizer, channel, skip_special_tokens=True)
    threading.Thread(target=channel.run, args=(model.generate,),
                     kwargs=dict(**inputs, streamer=streamer, max_new_tokens=200),
                     daemon=True).start()

``docs/sources.md`` has these recipes in full, with OpenAI, Anthropic, ``requests``,
``httpx``, Ollama, vLLM and llama.cpp.
"""
from __future__ import annotations

import collections
import inspect
import json
import re
import socket
import threading
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from ._chunk import StreamChunk
from ._engine.pipe import Pipe, PipeClosed
from ._errors import ConfigError, StreamClosedError, UpstreamError

__all__ = [
    "from_openai",
    "from_anthropic",
    "from_sse",
    "Channel",
    "SDKSource",
    "SSESource",
    "UpstreamError",
]

#: What the sources yield: text, and ``StreamChunk`` objects for metadata.
SourceItem = Union[str, StreamChunk]


# --- reading SDK objects and dicts alike ------------------------------------------------
def _get(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``; None when it has neither."""
    if obj is None:
        return None
    if type(obj) is dict or isinstance(obj, Mapping):  # dict first: typing.Mapping's check is slow
        return obj.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a property that fails is as good as absent
        return None


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _error_message(error: Any) -> str:
    """A readable message from an error payload (a dict, an SDK object or a string)."""
    message = _get(error, "message") if not isinstance(error, str) else error
    if not isinstance(message, str) or not message:
        try:
            message = json.dumps(error, default=str)
        except (TypeError, ValueError, RecursionError):
            message = _describe(error)
    kind = _get(error, "type") if not isinstance(error, str) else None
    code = _get(error, "code") if not isinstance(error, str) else None
    label = kind if isinstance(kind, str) else code if isinstance(code, (str, int)) else None
    return f"{message} ({label})" if label is not None and str(label) not in message else message


def _plain(obj: Any) -> Any:
    """An SDK object (pydantic) as plain data for ``UpstreamError.payload``."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump()
        except Exception:  # noqa: BLE001 - keep the object itself
            return obj
    return obj


# --- checking what the service sent ---------------------------------------------------
#: The most tokens a usage count may say: more is not a count but a broken upstream.
MAX_TOKEN_COUNT = 10**12

#: What is not an object (a dict or an SDK object) in an event.
_NOT_OBJECTS = (str, bytes, bytearray, int, float, list, tuple)

#: A UTF-16 surrogate; in a ``str`` that JSON decoded, it can only be a lone one.
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Malformed(Exception):
    """An event of the wrong shape (becomes an :class:`UpstreamError` with its location)."""


def _describe(value: Any) -> str:
    """``int 5``, ``str 'hi'``, ``list of 3``: a value for a message, kept short."""
    if value is None:
        return "null"
    kind = type(value).__name__
    if isinstance(value, (list, tuple, dict)):
        return f"{kind} of {len(value)}"
    if isinstance(value, int) and value.bit_length() > 200:
        try:
            text = str(value)
        except ValueError:  # more digits than str() converts
            return f"{kind} of about {int(value.bit_length() * 0.30103) + 1} digits"
        return f"{kind} {text[:8]}... ({len(text.lstrip('-'))} digits)"
    if isinstance(value, (str, bytes, bytearray, int, float)):
        text = repr(value)
        return f"{kind} {text[:60]}..." if len(text) > 60 else f"{kind} {text}"
    return kind


def _obj(value: Any, name: str) -> Any:
    """``value`` when it is an object (a dict or an SDK object) or None."""
    if value is not None and isinstance(value, _NOT_OBJECTS):
        raise _Malformed(f"{name!r} must be an object, got {_describe(value)}")
    return value


def _opt_str(value: Any, name: str) -> Optional[str]:
    """``value`` when it is a string or None."""
    if value is not None and not isinstance(value, str):
        raise _Malformed(f"{name!r} must be a string, got {_describe(value)}")
    return value


def _opt_int(value: Any, name: str) -> Optional[int]:
    """``value`` when it is an int (not a bool) or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _Malformed(f"{name!r} must be an int, got {_describe(value)}")
    return value


def _count(obj: Any, name: str) -> Optional[int]:
    """The token count ``obj.name``: None when absent, else an int within bounds."""
    value = _get(obj, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise _Malformed(f"{name!r} must be an int from 0 to 10**12, got {_describe(value)}")
    return value


def _word(value: Any) -> Optional[str]:
    """A metadata word (``finish_reason``, ``model``, ``id``): kept when a non-empty string."""
    if isinstance(value, str) and value:
        return _clean(value)
    return None


def _clean(text: str) -> str:
    """``text`` with each lone surrogate (from a JSON ``"\\ud800"``) as U+FFFD."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text)


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
        usage = _obj(_get(event, "usage"), "usage")
        if usage is not None:
            self._usage(
                _count(usage, "prompt_tokens"),
                _count(usage, "completion_tokens"),
                _count(usage, "total_tokens"),
            )
        return out

    def _ids(self, obj: Any) -> None:
        for key in ("model", "id"):
            value = _word(_get(obj, key))
            if value is not None:
                self.meta[key] = value

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
            usage = _obj(_get(response, "usage"), "usage")
            if usage is not None:
                self._usage(
                    _count(usage, "input_tokens"),
                    _count(usage, "output_tokens"),
                    _count(usage, "total_tokens"),
                )
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


# --- closing from another thread ------------------------------------------------------
def _shutdown_connection(obj: Any) -> bool:
    """Shut down the socket under an HTTP/1.x response, so a blocked read returns now.

    ``obj`` may be an ``httpx`` response (its documented ``network_stream``
    extension), a ``requests`` response (urllib3's ``shutdown()``), or an object with
    such a ``response`` (the SDKs' streams). HTTP/2 connections carry other requests
    and are left alone. Returns True when a socket was shut down.
    """
    for target in (obj, _get(obj, "response")):
        if target is None or _get(target, "is_closed") is True:
            continue
        extensions = _get(target, "extensions")
        if isinstance(extensions, Mapping):
            version = extensions.get("http_version")
            if version not in (b"HTTP/1.1", b"HTTP/1.0", "HTTP/1.1", "HTTP/1.0"):
                return False
            extra = _get(extensions.get("network_stream"), "get_extra_info")
            if callable(extra):
                try:
                    sock = extra("socket")
                    if isinstance(sock, socket.socket):
                        # the plain socket's shutdown, also under TLS: the SSL object
                        # is being used by the reading thread
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                        return True
                except (OSError, ValueError):
                    return False
            return False
        shutdown = _get(_get(target, "raw"), "shutdown")  # requests -> urllib3 >= 2.3
        if callable(shutdown) and _get(target, "iter_content") is not None:
            try:
                shutdown()
                return True
            except Exception:  # noqa: BLE001 - released already, or an older urllib3
                return False
    return False


def _refuse_async(stream: Any) -> None:
    if hasattr(stream, "__aiter__") and not hasattr(stream, "__iter__"):
        raise TypeError(
            f"{type(stream).__name__} is an asynchronous stream; helixstream reads "
            "blocking streams (use the SDK's synchronous client)"
        )


class _Source:
    """Base of the adapters: one pass over an underlying stream, closeable from any thread.

    Iterating it starts the pass (only one: it is a stream, not a collection); its
    ``close()`` ends it from any thread. A generator given as the underlying stream
    can only be closed by the thread running it: a ``close()`` from another thread
    leaves that to the reading thread, which does it when it gets control back.
    """

    def __init__(self, stream: Any) -> None:
        _refuse_async(stream)
        self._stream = stream
        self._lock = threading.Lock()
        self._closed = False
        self._closed_stream = False
        self._started = False
        self._completed = False  # the underlying stream ended normally
        self._reader: Optional[threading.Thread] = None

    def __iter__(self) -> Iterator[SourceItem]:
        with self._lock:
            if self._started:
                raise RuntimeError(f"{type(self).__name__} can be iterated only once")
            self._started = True
        return self._run()

    def _run(self) -> Iterator[SourceItem]:
        with self._lock:
            if self._closed:
                return
            self._reader = threading.current_thread()
        try:
            yield from self._items()
            self._completed = True
        finally:
            with self._lock:
                self._reader = None
            self.close()

    def _items(self) -> Iterator[SourceItem]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or the pass ended)."""
        return self._closed

    def close(self) -> None:
        """Close the underlying stream (its HTTP response); safe from any thread, and twice."""
        with self._lock:
            self._closed = True
            elsewhere = self._reader is not None and self._reader is not threading.current_thread()
            target = self._stream
            if inspect.isgenerator(target) and elsewhere:
                return  # the reading thread closes it (in _run) as soon as it can
            if self._closed_stream:
                return
            self._closed_stream = True
            completed = self._completed
        if not completed:
            _shutdown_connection(target)
        close = getattr(target, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


# --- Server-Sent Events -----------------------------------------------------------------
_BYTES_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_BODY_LIMIT = 64 * 1024  # bytes of an error response's body kept in the message
_READ_SIZE = 64 * 1024  # the most bytes read from a requests response at a time

#: ``from_sse``'s default ``max_line_bytes`` and ``max_event_bytes``: 1 MiB each.
DEFAULT_SSE_LIMIT = 1024 * 1024

#: A ``retry:`` value of more digits is ignored: no reconnection time is that long
#: (10 digits of milliseconds are 115 days), and ``int()`` refuses over 4,300 digits.
_RETRY_DIGITS = 10

#: One line of the stream: its byte offset, its text, and its length in bytes.
_Line = Tuple[int, str, int]


def _has_eol(piece: Any) -> bool:
    if isinstance(piece, str):
        return "\n" in piece or "\r" in piece
    data = bytes(piece)
    return b"\n" in data or b"\r" in data


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


class _TooLarge(Exception):
    """A line or an event over its limit (becomes an :class:`UpstreamError`)."""

    def __init__(self, what: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.what = what  # "line" or "event"
        self.offset = offset


def _line_too_long(limit: int, offset: int) -> _TooLarge:
    return _TooLarge("line", f"the event stream sent a line longer than max_line_bytes ({limit})", offset)


class _ByteLines:
    """Lines from bytes cut anywhere (CRLF, CR or LF), each with its byte offset.

    The line being built is held until its end arrives; once it is longer than
    ``limit`` bytes, :class:`_TooLarge` is raised at once, so at most ``limit`` bytes
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
        for match in _BYTES_EOL.finditer(data, begin):
            if self._size + match.start() - begin > self._limit:
                raise _line_too_long(self._limit, self._start)  # before copying it
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
                raise _line_too_long(self._limit, self._start)
            self._parts.append(data[begin:])
        self._skip_lf = data[-1] == 0x0D
        return lines


class _EventStreamParser:
    """The WHATWG event-stream interpretation of lines: fields, comments, dispatch.

    The data of one event (its ``data:`` values joined with newlines) may be at most
    ``limit`` bytes: more raises :class:`_TooLarge` before it is kept.
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
                raise _TooLarge(
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
            if len(value) <= _RETRY_DIGITS and value.isascii() and value.isdigit():
                self.retry = int(value)
        return None


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
        self._parser = _EventStreamParser(self.max_event_bytes)

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

    def _lines(self) -> Iterator[_Line]:
        """The lines of the stream, whatever the shape of its pieces."""
        pieces = iter(self._pieces())
        mode = self.detected
        held: List[bytes] = []
        held_size = 0
        limit = self.max_line_bytes
        splitter = _ByteLines(limit)
        pos = 0  # lines mode: the stream offset of the next item

        def as_bytes(piece: Any) -> bytes:
            if isinstance(piece, (bytes, bytearray, memoryview)):
                return bytes(piece)
            if isinstance(piece, str):
                return _utf8(piece)
            raise TypeError(f"from_sse() got a {type(piece).__name__} item; expected str or bytes")

        def lines_of(data: bytes, mode: str) -> List[_Line]:
            nonlocal pos
            if mode == "raw":
                found = splitter.feed(data)
            else:
                # one line per item (requests' iter_lines()): a terminator left on it (as
                # iter_lines(delimiter="\n") leaves a CR) is dropped, and several lines in
                # one item are split; each counts one byte for the terminator it lost
                end = len(data) - (2 if data.endswith(b"\r\n") else 1 if data.endswith((b"\r", b"\n")) else 0)
                if end > limit and data.find(b"\n", 0, end) < 0 and data.find(b"\r", 0, end) < 0:
                    raise _line_too_long(limit, pos)
                if end < len(data):
                    data = data[:end]
                found = []
                for line in _BYTES_EOL.split(data) if _has_eol(data) else (data,):
                    if len(line) > limit:
                        raise _line_too_long(limit, pos)
                    found.append((pos, line))
                    pos += len(line) + 1
            out = []
            for start, line in found:
                if start == 0 and line.startswith(_BOM):
                    line = line[3:]
                out.append((start, line.decode("utf-8", "replace"), len(line)))
            return out

        for piece in pieces:
            data = as_bytes(piece)
            if mode is None:
                if not data:
                    mode = "lines"
                elif _has_eol(data):
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
        except _TooLarge as exc:
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


# --- push-style producers --------------------------------------------------------------
_END = object()


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Channel:
    """A bounded, thread-safe pipe from a producer that pushes text to a stream.

    The producer (any thread) calls :meth:`send` for each piece, then :meth:`close`
    (or :meth:`fail` with an exception); the channel is the stream's source, read by
    the thread that runs the stream. Nothing polls: both sides wait on conditions.

    Args:
        maxsize: how many items may wait in the channel (>= 1); :meth:`send` blocks
            while it is full, so a slow reader holds the producer back.

    When the reader stops the stream, helixstream closes its source, this channel:
    the producer's next :meth:`send` (or the one waiting for room) raises
    :class:`~helixstream.StreamClosedError`, which is how it learns to stop.
    """

    def __init__(self, maxsize: int = 256) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigError(f"'maxsize' must be an int >= 1 (got {maxsize!r})")
        self.maxsize = maxsize
        self._pipe = Pipe(maxsize)  # the engine's one bounded queue
        self._batch: Deque[Any] = collections.deque()  # taken from the pipe, not yet read

    def send(self, item: Union[str, bytes, StreamChunk]) -> None:
        """Put ``item`` in the channel, waiting while it is full.

        Args:
            item: text, UTF-8 bytes, or a :class:`StreamChunk` (for token counts or
                metadata).

        Raises:
            StreamClosedError: the channel is closed: by :meth:`close` or
                :meth:`fail`, or because the reader stopped the stream.
            TypeError: ``item`` is of another type.
        """
        if not isinstance(item, (str, bytes, bytearray, StreamChunk)):
            raise TypeError(f"Channel.send() takes str, bytes or StreamChunk, not {type(item).__name__}")
        try:
            self._pipe.put(item)
        except PipeClosed:
            raise StreamClosedError(
                "the channel is closed (ended by its producer, or the reader stopped the stream)"
            ) from None

    def close(self) -> None:
        """End of input: the reader gets what was sent, then the end. Safe to repeat."""
        self._pipe.end(_END)

    def fail(self, exc: BaseException) -> None:
        """End the input with an error: the reader gets what was sent, then ``exc``.

        Does nothing when the channel is already closed.
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"Channel.fail() takes an exception, not {type(exc).__name__}")
        self._pipe.end(_Failed(exc))

    @property
    def closed(self) -> bool:
        """True once the channel is closed (a producer may check it to stop early)."""
        return self._pipe.ended

    def run(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Call ``func(*args, **kwargs)``, then close the channel; for a producer thread.

        If ``func`` raises, the reader gets the exception (:meth:`fail`), unless it is
        the :class:`StreamClosedError` of a channel the reader closed: then the reader
        is gone and ``run`` simply returns. Nothing is raised in the producer thread.
        """
        try:
            func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            if not (isinstance(exc, StreamClosedError) and self.closed):
                self.fail(exc)
        else:
            self.close()

    # the reading side ----------------------------------------------------------------
    def __iter__(self) -> "Channel":
        return self

    def __next__(self) -> Union[str, bytes, StreamChunk]:
        batch = self._batch
        if not batch:
            try:
                batch.extend(self._pipe.get_all())
            except PipeClosed:
                raise StopIteration from None
        item = batch.popleft()
        if item is _END:
            batch.appendleft(item)
            raise StopIteration
        if item.__class__ is _Failed:
            batch.appendleft(_END)
            raise item.exc
        return item  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Channel {state} {len(self._pipe) + len(self._batch)}/{self.maxsize}>"
