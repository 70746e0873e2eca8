"""Test sources that behave like real LLM streams."""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, List

_END = object()
_CLOSED = object()


class BlockingSource:
    """An iterator like an HTTP response: ``__next__`` blocks until the test feeds it.

    ``close()``, from any thread, unblocks a read in progress the way closing a socket
    does: the read fails with ``ConnectionResetError``.
    """

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._q: "queue.Queue[Any]" = queue.Queue()
        self.closed = threading.Event()
        self.waiting = threading.Event()  # a read is blocked waiting for data
        self.produced: List[Any] = []
        for item in items:
            self._q.put(item)

    def feed(self, *items: Any) -> None:
        for item in items:
            self._q.put(item)

    def end(self) -> None:
        self._q.put(_END)

    def fail(self, exc: BaseException) -> None:
        self._q.put(exc)

    def __iter__(self) -> "BlockingSource":
        return self

    def __next__(self) -> Any:
        if self.closed.is_set():
            raise ConnectionResetError("read on a closed source")
        if self._q.empty():
            self.waiting.set()
        item = self._q.get()
        self.waiting.clear()
        if item is _CLOSED:
            raise ConnectionResetError("source closed while reading")
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        self.produced.append(item)
        return item

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._q.put(_CLOSED)


class CountingGenerator:
    """Wraps a generator of items, recording how far it got and whether it was closed."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = list(items)
        self.produced = 0
        self.closed = threading.Event()
        self.finished = threading.Event()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return self._gen()

    def _gen(self):  # type: ignore[no-untyped-def]
        try:
            for item in self.items:
                self.produced += 1
                yield item
            self.finished.set()
        finally:
            self.closed.set()
