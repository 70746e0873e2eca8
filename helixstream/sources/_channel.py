"""``Channel``: a bounded, thread-safe pipe from a producer that pushes text."""
from __future__ import annotations

import collections
import queue
from typing import (
    Any,
    Callable,
    Deque,
    Union,
)

from .._chunk import StreamChunk
from .._engine.pipe import Pipe, PipeClosed
from .._errors import ConfigError, StreamClosedError


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

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for something to read (an item, the end, or a
        failure); True when the next ``next()`` will not block. A stream's
        ``next_within`` uses it, so that a channel needs no thread to be read with a
        timeout."""
        if self._batch:
            return True
        try:
            self._batch.extend(self._pipe.get_all(max(0.0, timeout)))
        except queue.Empty:
            return False
        except PipeClosed:
            return True
        return True

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
