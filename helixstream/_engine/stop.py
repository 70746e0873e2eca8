"""Stop signals: learning that a ``threading.Event`` was set, however it was set (private).

A ``threading.Event`` cannot notify anyone, and patching ``set`` on the instance misses
every caller that took the method earlier (``threading.Timer(t, stop.set)``,
``atexit.register(stop.set)``) or calls ``threading.Event.set(stop)``. All of them end
in one place: ``Event.set`` notifies the event's own condition with ``notify_all()``.
So the first watch on an event turns that condition object into a
:class:`_NotifyingCondition` (its class is changed; the object, its lock and its
waiters stay), whose ``notify_all`` also puts the event's id into a
``queue.SimpleQueue``.

``SimpleQueue.put`` is the one operation here that may run anywhere: in a signal
handler, in a garbage-collection finalizer, inside ``set()`` with the event's lock
held. Nothing else runs there. The queue is read by one process-wide thread, the
*janitor*, which runs the callbacks of the streams watching that event (they only wake
their own threads: a stream's clean-up, its stages' ``abort``, progress callbacks and
``source.close()`` run in the stream's own reader or pump thread). Finalizers post
their work to the same queue.

The janitor runs while any stream is open and ends when the last one is over, so a
process with no open stream has no helixstream thread.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

__all__ = ["StopSignal", "watch", "post", "hold", "let_go", "nothing", "check_stop"]

_log = logging.getLogger("helixstream")

#: Requests for the janitor: an event's id (it was set), a callable, or _QUIT.
_requests: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
_QUIT = object()
# The lock below is taken only by ordinary code (registering, unregistering, the
# janitor): never inside set(), a signal handler or a finalizer.
_lock = threading.Lock()
_watches: Dict[int, Tuple["weakref.ref[threading.Event]", Dict[int, Callable[[], None]]]] = {}
_keys = itertools.count()
_users = 0
_janitor: Optional[threading.Thread] = None


def nothing() -> None:
    """An unwatch function with nothing to undo."""
    return None


class _NotifyingCondition(threading.Condition):
    """The condition of a watched event: ``notify_all`` (called by ``Event.set``) also
    tells the janitor. Only a ``SimpleQueue.put`` is added, which is safe anywhere."""

    _hs_event_id: int

    def notify_all(self) -> None:
        super().notify_all()
        _requests.put(self._hs_event_id)


def _make_notifying(event: threading.Event) -> None:
    cond = event._cond  # type: ignore[attr-defined]
    if type(cond) is _NotifyingCondition:
        return
    if type(cond) is not threading.Condition:
        raise TypeError(
            f"stop must be a threading.Event or helixstream.StopSignal; this "
            f"{type(event).__name__} has a condition of type {type(cond).__name__}"
        )
    cond.__class__ = _NotifyingCondition
    cond._hs_event_id = id(event)  # type: ignore[attr-defined]


class StopSignal(threading.Event):
    """A ``threading.Event`` that stops the streams registered on it when it is set.

    Any ``threading.Event`` works as a stream's ``stop`` argument, however it is set
    (a bound ``set`` taken earlier, ``threading.Event.set(ev)``, a signal handler, an
    ``atexit`` hook); a ``StopSignal`` is the same thing, ready from its creation.
    Setting it only wakes threads: each stream winds itself up in its own thread.
    """

    def __init__(self) -> None:
        super().__init__()
        _make_notifying(self)

    def __repr__(self) -> str:
        return f"<StopSignal {'set' if self.is_set() else 'unset'}>"


StopSignal.__module__ = "helixstream"


def check_stop(stop: Any, name: str = "stop") -> Optional[threading.Event]:
    """``stop`` itself if it is None or a ``threading.Event``; else a TypeError."""
    if stop is None or isinstance(stop, threading.Event):
        return stop
    raise TypeError(
        f"{name} must be a threading.Event (or helixstream.StopSignal) or None, "
        f"not {type(stop).__name__}"
    )


# --- the janitor ---------------------------------------------------------------------------
def _janitor_main() -> None:
    global _janitor
    while True:
        request = _requests.get()
        if request is _QUIT:
            with _lock:
                if _users == 0:
                    if _janitor is threading.current_thread():
                        _janitor = None
                    return
            continue
        if request.__class__ is int:
            with _lock:
                entry = _watches.get(request)
                callbacks = list(entry[1].values()) if entry is not None else []
            entry = None
            for callback in callbacks:
                _run(callback)
            callbacks = callback = None  # type: ignore[assignment]  # hold no stream
        else:
            _run(request)
        request = None  # idle, the janitor keeps no stream alive


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except BaseException:  # noqa: BLE001 - one failing callback must not stop the others
        # a stream's own callbacks are its methods: the record names the stream
        stream_id = getattr(getattr(callback, "__self__", None), "id", None)
        _log.exception(
            "helixstream: a stop callback failed (stream %s)", stream_id,
            extra={"stream_id": stream_id},
        )


def hold() -> None:
    """A stream opens: keep the janitor running until the matching :func:`let_go`."""
    global _users, _janitor
    with _lock:
        _users += 1
        if _janitor is None:
            t = threading.Thread(target=_janitor_main, name="helixstream-janitor", daemon=True)
            _janitor = t
            t.start()


def let_go() -> None:
    """A stream is over; the janitor ends once no stream is left."""
    global _users
    with _lock:
        _users -= 1
        last = _users == 0
    if last:
        _requests.put(_QUIT)


def post(callback: Callable[[], None]) -> None:
    """Run ``callback`` in the janitor. Safe in a finalizer or a signal handler, provided
    a stream holds the janitor (:func:`hold`)."""
    _requests.put(callback)


def watch(event: Optional[threading.Event], callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` in the janitor thread whenever ``event`` is set (soon, if it is
    set already). Returns the function that stops watching. The caller must
    :func:`hold` the janitor while it watches."""
    if event is None:
        return nothing
    check_stop(event)
    key = next(_keys)
    eid = id(event)
    with _lock:
        entry = _watches.get(eid)
        if entry is None or entry[0]() is not event:
            _make_notifying(event)
            entry = (weakref.ref(event), {})
            _watches[eid] = entry
        entry[1][key] = callback
    if event.is_set():
        _requests.put(eid)

    def unwatch() -> None:
        with _lock:
            found = _watches.get(eid)
            if found is not None and found[1].pop(key, None) is not None and not found[1]:
                del _watches[eid]

    return unwatch


def _after_fork_in_child() -> None:
    """A forked child (a pre-forking server's worker) has none of its parent's threads:
    it starts with no janitor, no open stream and a fresh queue and lock."""
    global _requests, _lock, _users, _janitor
    _requests = queue.SimpleQueue()
    _lock = threading.Lock()
    _watches.clear()
    _users = 0
    _janitor = None


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def watched(event: threading.Event) -> int:
    """How many callbacks watch ``event`` (for tests and diagnostics)."""
    with _lock:
        entry = _watches.get(id(event))
        return 0 if entry is None or entry[0]() is not event else len(entry[1])
