"""Stages: the callable objects a stream is made of (they know nothing of threads).

A stage is called with one item (a ``str`` or a :class:`StreamChunk`) and returns the
items it releases; ``flush()`` is called once at the end of the input. The
:class:`Stage` protocol lists the optional methods too.
"""
from __future__ import annotations

import collections
import time
from typing import (
    Any,
    Callable,
    Deque,
    Iterable,
    Iterator,
    List,
    Optional,
    Protocol,
    Tuple,
    runtime_checkable,
)

from ._buffers import Buffer, TokenBuffer
from ._chunk import StreamChunk
from ._durations import parse_duration
from ._tokens import TokenCounter, estimate_tokens

__all__ = ["BufferStage", "Stage", "check_delay"]


@runtime_checkable
class Stage(Protocol):
    """What a stage of a stream is: a callable object that knows nothing of threads.

    Required:

    - ``stage(item) -> list``: called with each item (a ``str`` or a
      :class:`StreamChunk`) in order; returns the items it releases (an empty list to
      hold the item back; ``None`` means none). It may return any iterable, read lazily:
      each released item reaches the reader before the next one is asked for.
    - ``flush() -> list``: the input ended; release what is held.

    Optional (the engine looks for them with ``getattr``):

    - ``abort(error)``: the stream ended early: ``error`` is the exception that failed
      it, or None when it was stopped. Release resources; nothing more is delivered.
    - ``time_left() -> float | None`` and ``tick() -> list``: a timer. The engine calls
      ``tick()`` once ``time_left()`` is <= 0, even while the source is silent (it then
      reads the source in a thread of its own).
    - ``bind(stop)``: called once before the stream starts with the stream's internal
      ``threading.Event``, set when the stream is stopped; a stage that waits (a rate
      limiter) waits on it.
    - ``start()``: the reader asked for the first item (timings count from here).
    - ``flush_on_failure = False``: when a stage before it fails, this stage is not
      flushed (it gets ``abort(error)`` only).
    - ``name``: shown in thread names and error messages.
    - ``note_text(text)``: a fast path for a stage that passes a ``str`` on unchanged:
      the engine calls it instead of ``stage(text)`` and passes the text on itself. It
      must do what the call would do.

    Every method runs in the thread that reads the stream's output, one call at a
    time, so a stage needs no lock. A stage that raises fails the stream: the reader
    gets what the later stages still held, then the exception itself.
    """

    def __call__(self, item: Any) -> Optional[Iterable[Any]]:
        ...  # pragma: no cover

    def flush(self) -> Optional[Iterable[Any]]:
        ...  # pragma: no cover


Stage.__module__ = "helixstream"


def check_delay(value: Any, field: str = "max_delay") -> Optional[float]:
    """Validate an optional duration (seconds, or a string such as ``"250ms"``)."""
    return parse_duration(value, field, allow_none=True)


class _Ledger:
    """Token counts reported by the source, allotted to the units cut from its text.

    Text is consumed in order; a reported count spread over ``n`` characters is handed
    out in proportion to the characters each unit takes, and the totals stay exact.
    """

    __slots__ = ("_segments", "active")

    def __init__(self) -> None:
        # [characters, tokens or None] in arrival order
        self._segments: Deque[List[Any]] = collections.deque()
        self.active = False  # a count was ever reported

    def add(self, chars: int, tokens: Optional[int]) -> None:
        if tokens is not None:
            self.active = True
        segs = self._segments
        if segs and (segs[-1][1] is None) == (tokens is None):
            last = segs[-1]
            last[0] += chars
            if tokens is not None:
                last[1] += tokens
        else:
            segs.append([chars, tokens])

    def take(self, chars: int) -> Tuple[int, int]:
        """Consume ``chars`` characters; return (reported tokens, unreported characters)."""
        reported = 0
        unreported = 0
        segs = self._segments
        while segs and (chars > 0 or segs[0][0] == 0):
            seg = segs[0]
            n, t = seg
            if n <= chars:
                segs.popleft()
                chars -= n
                if t is None:
                    unreported += n
                else:
                    reported += t
                continue
            share = chars
            if t is None:
                unreported += share
            else:
                part = (2 * t * share + n) // (2 * n)  # nearest; the remainder stays
                reported += part
                seg[1] = t - part
            seg[0] = n - share
            chars = 0
        return reported, unreported

    def clear(self) -> None:
        self._segments.clear()


#: Items longer than this are fed to the buffer in slices of this size, lazily.
_SLICE = 1 << 16


class BufferStage:
    """Runs a :class:`Buffer` over the stream.

    Args:
        buffer: the buffer.
        max_delay: seconds after which held text is released even though no unit
            completed (None: wait for a unit boundary or the end).
        clock: the time source for ``max_delay`` (default ``time.monotonic``).
        counter: the token counter for units whose text mixes reported and
            unreported counts.

    Chunks with a reported ``tokens`` count give the units cut from their text a share
    of it (so totals stay exact); chunks with no text but with metadata or tokens are
    passed on after the unit that was being built when they arrived.
    """

    def __init__(
        self,
        buffer: Buffer,
        max_delay: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        counter: Optional[TokenCounter] = None,
    ) -> None:
        self.buffer = buffer
        self.name = buffer.buffer_type.value
        self.max_delay = check_delay(max_delay)
        self._clock = clock
        self._count = counter or estimate_tokens
        self._ledger = _Ledger()
        self._held_since: Optional[float] = None
        self._extras: List[StreamChunk] = []  # text-less chunks waiting for the next unit
        self._token_buffer = isinstance(buffer, TokenBuffer)
        if self.max_delay is None:
            # no timer: the runner need not give the source a thread of its own
            self.time_left = None  # type: ignore[assignment]
        self._add = buffer.add
        # text can go straight to the buffer: no timer, not a token buffer (updated
        # when a reported count makes the ledger active)
        self._plain = self.max_delay is None and not self._token_buffer

    def __call__(self, item: Any) -> List[Any]:
        if item.__class__ is str and self._plain and len(item) <= _SLICE:
            # the common case: text, no reported counts, no timer, no waiting extras
            units = self._add(item)
            if units and self._extras:
                return self._release(units)
            return units
        if item.__class__ is str or isinstance(item, str):
            text = item
            tokens = None
        else:
            text = item.content
            tokens = item.tokens
            if not text:
                if tokens or item.metadata:
                    if self.buffer.pending:
                        self._extras.append(item)
                        return []
                    return [item]
                return []
        ledger = self._ledger
        if tokens is not None or ledger.active:
            ledger.add(len(text), tokens)
            self._plain = False
        if len(text) > _SLICE and not self._token_buffer:
            return self._lazily(text)  # type: ignore[return-value]
        if self._token_buffer:
            units = self.buffer.add(text, tokens)  # type: ignore[call-arg]
        else:
            units = self.buffer.add(text)
        if self.max_delay is not None:
            self._note_time(bool(units))
        if not units:
            return units
        return self._release(units)

    def text_path(self) -> Optional[Tuple[Callable[[str], List[Any]], int]]:
        """For the engine: ``(buffer.add, longest text)`` while calling the stage with a
        ``str`` up to that length is just that (no timer, no reported counts, no
        waiting extras, not a token buffer); None otherwise."""
        if self._plain and not self._extras:
            return self._add, _SLICE
        return None

    def _lazily(self, text: str) -> Iterator[Any]:
        """A huge item is fed to the buffer a slice at a time, its units released as
        they are read: the first unit comes at once and memory stays near the item's
        size, whatever it is."""
        add = self.buffer.add
        for start in range(0, len(text), _SLICE):
            units = add(text[start : start + _SLICE])
            if self.max_delay is not None:
                self._note_time(bool(units))
            if units:
                yield from self._release(units)

    def _note_time(self, released: bool) -> None:
        if not self.buffer.pending:
            self._held_since = None
        elif released or self._held_since is None:
            self._held_since = self._clock()

    def _release(self, units: List[str]) -> List[Any]:
        ledger = self._ledger
        out: List[Any]
        if ledger.active:
            out = []
            for unit in units:
                reported, unreported = ledger.take(len(unit))
                if unreported:
                    share = self._count(unit) * unreported / len(unit) if unit else 0
                    tokens = reported + round(share)
                else:
                    tokens = reported
                out.append(StreamChunk(unit, tokens=tokens))
        else:
            out = list(units)
        if self._extras:
            # they were waiting for the unit being built when they arrived: the first one
            out = [out[0], *self._extras, *out[1:]]
            self._extras = []
        return out

    def flush(self) -> List[Any]:
        rest = self.buffer.flush()
        self._held_since = None
        if rest:
            return self._release([rest])
        if self._extras:
            extras, self._extras = self._extras, []
            if self._ledger.active:
                reported, _ = self._ledger.take(0)
                if reported and extras[-1].tokens is not None:
                    extras[-1].tokens += reported
            return list(extras)
        return []

    def abort(self, error: Optional[BaseException]) -> None:
        self._ledger.clear()

    # timer (only when max_delay is set) ------------------------------------------
    def time_left(self) -> Optional[float]:
        """Seconds until the held text must be released, or None."""
        if self._held_since is None:
            return None
        return self._held_since + self.max_delay - self._clock()  # type: ignore[operator]

    def tick(self) -> List[Any]:
        """Release what is held if it has waited ``max_delay``."""
        left = self.time_left()
        if left is None or left > 0:
            return []
        return self.flush()
