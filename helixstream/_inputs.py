"""Checks on what is passed in as a stream or an output, made before anything starts (private).

A few mistakes are easy to make and, unchecked, fail far from their cause or not at
all: one ``bytes`` object given as the whole stream is iterated as ints (the first
item fails as "int"), a ``dict`` is iterated as its keys (silently streaming the
field names), and a text stream given to :class:`SSEWriter` only fails at the first
write. These helpers turn each into a ``TypeError`` that says what was given and
what to do instead.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

__all__ = ["check_binary_writer", "check_source"]

_BYTES = (bytes, bytearray, memoryview)


def check_source(source: Any, what: str = "the stream") -> None:
    """Refuse a source that cannot be what the caller meant.

    Args:
        source: what was passed as the stream (an iterable of ``str``, ``bytes`` or
            ``StreamChunk``).
        what: how the message names it.

    Raises:
        TypeError: ``source`` is one bytes-like object (iterating it gives ints), a
            mapping (iterating it gives its keys), or not iterable at all.
    """
    kind = type(source).__name__
    if isinstance(source, _BYTES):
        size = source.nbytes if isinstance(source, memoryview) else len(source)
        raise TypeError(
            f"{what} is one bytes object ({kind}, {size} bytes), but a stream is an "
            "iterable of pieces (str, bytes or StreamChunk), and iterating a bytes "
            "object gives ints; to stream it as a single piece, wrap it in a list: [data]"
        )
    if isinstance(source, Mapping):
        raise TypeError(
            f"{what} is a mapping ({kind}): iterating it would give its keys, not text; "
            "pass an iterable "
            "of str, bytes or StreamChunk (for an LLM SDK's response, see "
            "helixstream.sources)"
        )
    if source is None or not (hasattr(source, "__iter__") or hasattr(source, "__next__")):
        raise TypeError(f"{what} must be an iterable of str, bytes or StreamChunk, not {kind}")


def check_binary_writer(out: Any, what: str = "out") -> None:
    """Refuse an output that takes text where bytes will be written.

    Raises:
        TypeError: ``out`` has no ``write`` method, or is a text stream (an
            ``io.TextIOBase`` such as ``io.StringIO`` or ``sys.stdout``, or a file-like
            object opened in text mode).
    """
    kind = type(out).__name__
    if not callable(getattr(out, "write", None)):
        raise TypeError(f"{what} must have a write(bytes) method ({kind})")
    mode = getattr(out, "mode", None)
    text_mode = isinstance(mode, str) and "b" not in mode
    if isinstance(out, io.TextIOBase) or text_mode:
        buffer = getattr(out, "buffer", None)
        if callable(getattr(buffer, "write", None)):
            instead = f"its binary buffer, {what}.buffer, instead (or any binary writable such as io.BytesIO())"
        else:
            instead = "a binary writable instead, such as io.BytesIO() or sys.stdout.buffer"
        raise TypeError(
            f"{what} is a text stream ({kind}), but server-sent events are written as "
            f"UTF-8 bytes; pass {instead}"
        )
