"""Being told, without polling, when a caller's ``threading.Event`` is set (private).

A ``threading.Event`` cannot notify anyone: the only way to learn it was set is to
wait on it, and a thread waiting on it can't be woken for any other reason short of
setting it. So a stream registers a callback here instead; the first registration on
an event wraps that one event's ``set`` method so that, after setting the flag, it runs
the callbacks (in the thread that called ``set``). Callbacks must be quick and must not
block: streams use them to push wake-up sentinels into their queues.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Callable, Dict, Optional

__all__ = ["nothing", "on_set"]

_lock = threading.Lock()
_callbacks: "weakref.WeakKeyDictionary[threading.Event, Dict[int, Callable[[], None]]]" = (
    weakref.WeakKeyDictionary()
)
_keys = itertools.count()


def _fire(ref: "weakref.ref[threading.Event]") -> None:
    event = ref()
    if event is None:  # pragma: no cover - the event is the caller of this function
        return
    with _lock:
        callbacks = list(_callbacks.get(event, {}).values())
    for callback in callbacks:
        callback()


def _hook(event: threading.Event) -> None:
    original = event.set
    ref = weakref.ref(event)

    def set_and_notify() -> None:
        original()
        _fire(ref)

    set_and_notify.__doc__ = original.__doc__
    try:
        event.set = set_and_notify  # type: ignore[method-assign]
    except AttributeError:
        raise TypeError(
            f"stop must be a threading.Event (or an object whose 'set' can be wrapped), "
            f"not {type(event).__name__}"
        ) from None


def on_set(event: Optional[threading.Event], callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` when ``event`` is set (at once if it already is).

    Returns a function that unregisters the callback; call it when no longer
    interested, so a long-lived event does not keep finished streams alive.
    """
    if event is None:
        return nothing
    if not callable(getattr(event, "is_set", None)) or not callable(getattr(event, "set", None)):
        raise TypeError(f"stop must be a threading.Event, not {type(event).__name__}")
    key = next(_keys)
    with _lock:
        table = _callbacks.get(event)
        if table is None:
            _hook(event)
            table = _callbacks[event] = {}
        table[key] = callback
    if event.is_set():
        callback()

    def unregister() -> None:
        with _lock:
            entries = _callbacks.get(event)
            if entries is not None:
                entries.pop(key, None)

    return unregister


def nothing() -> None:
    """An unregister function with nothing to undo."""
    return None
