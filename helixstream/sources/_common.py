"""What every source adapter shares: reading SDK objects and dicts alike, checking what
the service sent, and closing from another thread."""
from __future__ import annotations

import inspect
import json
import re
import socket
import threading
from typing import (
    Any,
    Iterator,
    Mapping,
    Optional,
    Union,
)

from .._chunk import StreamChunk


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
