"""The chunk type and the normalisation of what a source yields."""
from __future__ import annotations

import codecs
import time
from typing import Any, Dict, Iterator, Optional, Union, cast

import attrs

from ._errors import StreamDecodeError

__all__ = ["StreamChunk", "ChunkInput", "Decoder"]


@attrs.define(slots=True, eq=True, repr=True)
class StreamChunk:
    """One piece of a stream.

    Attributes:
        content: the text.
        index: position of the chunk in its stream, from 0.
        timestamp: wall-clock time (``time.time()``) at which the chunk was created.
        done: True for a final marker chunk a source may send.
        error: an error a source reports in-band; a chunk with an error ends the stream
            with that error.
        metadata: free-form data (a fresh dict for every chunk).
        tokens: the token count of ``content`` when the source knows it; ``None`` means
            "count it" (see ``AggregatedStream.total_tokens``).
    """

    content: str = ""
    index: int = 0
    timestamp: float = attrs.field(factory=time.time)
    done: bool = False
    error: Optional[BaseException] = None
    metadata: Dict[str, Any] = attrs.field(factory=dict)
    tokens: Optional[int] = None


#: What a source may yield: text, UTF-8 bytes, or ready-made chunks.
ChunkInput = Union[str, bytes, bytearray, memoryview, StreamChunk]


class Decoder:
    """Turns the items of a source into ``str`` or ``StreamChunk``, checking their type.

    Bytes are decoded incrementally: a character split across two items comes out
    whole. Invalid UTF-8 raises :class:`StreamDecodeError` with the absolute byte offset,
    after the valid text before it: the call that meets the bad byte returns that text
    and keeps the error in :attr:`error`, and the next call (or :meth:`finish`) raises
    it. A ``str`` or a chunk with text that arrives between the two halves of a
    character is an error too (the text would otherwise come out of order).
    """

    __slots__ = ("_decoder", "_consumed", "index", "error")

    def __init__(self) -> None:
        self._decoder: Optional[codecs.IncrementalDecoder] = None
        self._consumed = 0  # bytes handed to the decoder so far
        self.index = 0  # index of the next item
        self.error: Optional[StreamDecodeError] = None  # raised at the next call

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished character are held."""
        return self._decoder is not None and bool(self._decoder.getstate()[0])

    def check_text(self, index: int) -> None:
        """Text arrived as item ``index``: an error if it cuts a character in two."""
        if self.error is not None:
            raise self.error
        if self._decoder is not None and self._decoder.getstate()[0]:
            pending = len(self._decoder.getstate()[0])
            raise StreamDecodeError(
                self._consumed - pending,
                f"stream item {index} is text, but it arrived in the middle of a UTF-8 "
                f"character (its first {pending} byte(s) came in the item before); send "
                f"whole characters, or only bytes",
            )

    def __call__(self, item: object) -> Union[str, StreamChunk]:
        """Normalise one item. Returns ``""`` for bytes that end mid-character."""
        index = self.index
        self.index = index + 1
        if self.error is not None:
            raise self.error
        cls = type(item)
        if cls is str or cls is StreamChunk:
            if self._decoder is not None and (
                item if cls is str else cast(StreamChunk, item).content
            ):
                self.check_text(index)
            return item  # type: ignore[return-value]
        if isinstance(item, (bytes, bytearray, memoryview)):
            return self._decode(bytes(item), final=False)
        if isinstance(item, str):  # a str subclass: a plain str from here on
            if self._decoder is not None:
                self.check_text(index)
            return str(item)
        if isinstance(item, StreamChunk):
            if self._decoder is not None and item.content:
                self.check_text(index)
            return item
        raise TypeError(
            f"stream item {index} is {cls.__name__}; expected str, bytes or StreamChunk"
        )

    def finish(self) -> str:
        """Decode what is left at the end of the stream (raises on a cut character)."""
        if self.error is not None:
            raise self.error
        if self._decoder is None:
            return ""
        text = self._decode(b"", final=True)
        if self.error is not None and not text:
            raise self.error
        return text

    def _decode(self, data: bytes, final: bool) -> str:
        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        pending = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            # exc.object is the decoder's pending bytes followed by ``data``: what comes
            # before exc.start is valid, and is handed on before the error.
            offset = self._consumed - pending + exc.start
            self.error = StreamDecodeError(offset, exc.reason)
            self._consumed += len(data)
            good = bytes(exc.object[: exc.start]).decode("utf-8", "strict")
            if not good:
                raise self.error from None
            return good
        self._consumed += len(data)
        return text


def iter_texts(chunks: Any) -> Iterator[str]:
    """Yield the text of each item (used by pure helpers that take any input)."""
    decode = Decoder()
    for item in chunks:
        value = decode(item)
        text = value if type(value) is str else value.content  # type: ignore[union-attr]
        if text:
            yield text
    rest = decode.finish()
    if rest:
        yield rest
