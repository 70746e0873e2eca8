"""Stages and the one pipeline that runs them (private).

A stage is a callable object (see :class:`helixstream.Stage`)::

    stage(item)   -> list of items released (or None, or an iterable, read lazily)
    stage.flush() -> list of items         # the input ended
    stage.abort(error)                     # optional: failed (error) or stopped (None)
    stage.time_left() -> seconds or None   # optional, with tick(): a timer
    stage.tick() -> list of items
    stage.bind(stop)                       # optional: the stream's internal stop event
    stage.start()                          # optional: the reader asked for the first item
    stage.flush_on_failure = False         # optional: not flushed when the stream fails

The stream's generator (``_Core._run`` in :mod:`.stream`) passes each decoded source
item through the stages depth first and yields every item the last stage releases at
once, one by one, so a unit released with nine others still reaches the reader at its
own (paced) time; it does so in one frame, for speed. This class holds the rest of
the logic: the flush at the end (:meth:`Pipeline.finish`), the failure handling
(:meth:`Pipeline.fault`, :meth:`Pipeline.after_failure`, :meth:`Pipeline.abort`) and
the timers (:meth:`Pipeline.time_left`; due ticks run through ``_down``).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

from .._errors import PipelineError

__all__ = ["Pipeline", "TICK", "IDLE", "Stopped", "stage_name"]


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: From the source side: a timed stage's deadline has come.
TICK = _Marker("TICK")
#: From the source side and out to the reader: nothing within the reader's timeout.
IDLE = _Marker("IDLE")


class Stopped(Exception):
    """The stream was stopped: the pipeline winds up and delivers nothing more."""


def stage_name(stage: Any) -> str:
    return str(getattr(stage, "name", None) or type(stage).__name__)


def unexpected(exc: BaseException, what: str) -> BaseException:
    """Exceptions that cannot travel through iteration as themselves."""
    if isinstance(exc, StopIteration):
        err = PipelineError(
            f"{what} raised StopIteration; a stage or callback must not (it would end the "
            f"stream as if it were complete)"
        )
    elif isinstance(exc, GeneratorExit):
        err = PipelineError(f"{what} raised GeneratorExit (it would look like a closed stream)")
    else:
        return exc
    err.__cause__ = exc
    return err


class Pipeline:
    """The stages of one stream and the generator that runs them.

    ``stopped()`` says whether the stream was stopped (checked before every item is
    passed on); ``on_end(state, error)`` is called once, in the thread running the
    pipeline, when it is over.
    """

    def __init__(self, stages: Sequence[Any]) -> None:
        self.stages = list(stages)
        self.timed = [
            (i, s) for i, s in enumerate(self.stages) if callable(getattr(s, "time_left", None))
        ]
        self.at = -1  # the stage that failed; -1: the source
        self.started = False
        self._stopped: Callable[[], bool] = always_false

    # --- timers ------------------------------------------------------------------------
    def time_left(self) -> Optional[float]:
        """Seconds until the nearest timer of a stage is due, or None."""
        best: Optional[float] = None
        for _, stage in self.timed:
            left = stage.time_left()
            if left is not None and (best is None or left < best):
                best = left
        return best

    def _ticks(self, stopped: Callable[[], bool]) -> Iterator[Any]:
        for i, stage in self.timed:
            left = stage.time_left()
            if left is not None and left <= 0:
                try:
                    out = stage.tick()
                except BaseException as exc:
                    raise self.fault(i, exc)  # noqa: B904 - the same, or a PipelineError
                if out:
                    yield from self._down(out, i + 1, stopped)

    # --- running -----------------------------------------------------------------------
    def _down(
        self, items: Iterable[Any], start: int, stopped: Optional[Callable[[], bool]]
    ) -> Iterator[Any]:
        """Each of ``items`` through the stages from ``start``, depth first, yielding
        what the last stage releases. From the source (``start`` 0), ``items`` may hold
        TICK and IDLE markers, and due timers are run after every item; ``stopped`` is
        checked before each item (None: the caller's iterator checks)."""
        stages = self.stages
        n = len(stages)
        timed = self.timed if start == 0 else None
        for item in items:
            if stopped is not None and stopped():
                raise Stopped
            if item.__class__ is _Marker:
                if item is IDLE:
                    yield item
                else:
                    yield from self._ticks(self._stopped)
                continue
            i = start
            while i < n:
                try:
                    out = stages[i](item)
                except BaseException as exc:
                    raise self.fault(i, exc)  # noqa: B904 - the same, or a PipelineError
                i += 1
                if out.__class__ is list:
                    if not out:
                        break
                    if len(out) == 1:
                        item = out[0]
                        continue
                elif out is None:
                    break
                yield from self._down(out, i, stopped or self._stopped)
                break
            else:
                yield item
            if timed:
                yield from self._ticks(self._stopped)

    def begin(self, stopped: Callable[[], bool]) -> None:
        """The reader asked for the first item: tell the stages (``start``).
        ``stopped`` says whether the stream was stopped."""
        for stage in self.stages:
            start = getattr(stage, "start", None)
            if start is not None:
                start()
        self.started = True
        self._stopped = stopped

    def finish(self) -> Iterator[Any]:
        """The source ended: flush every stage in order, each through the later ones."""
        stages = self.stages
        for i in range(len(stages)):
            try:
                out = stages[i].flush()
            except BaseException as exc:
                raise self.fault(i, exc)  # noqa: B904 - the same, or a PipelineError
            if out:
                yield from self._down(out, i + 1, always_false)

    def after_failure(self, exc: BaseException) -> Iterator[Any]:
        """What the stages after the failed one still hold (their flush), through the
        stages after them. Stages marked ``flush_on_failure = False`` are not flushed."""
        stages = self.stages
        for i in range(self.at + 1, len(stages)):
            stage = stages[i]
            if not getattr(stage, "flush_on_failure", True):
                continue
            try:
                out = stage.flush()
                if out:
                    yield from self._down(out, i + 1, always_false)
            except BaseException:  # noqa: BLE001 - the first error wins
                return

    def abort(self, error: Optional[BaseException]) -> None:
        """Tell every stage the stream is over early (error None: stopped)."""
        for stage in self.stages:
            abort = getattr(stage, "abort", None)
            if abort is not None:
                try:
                    abort(error)
                except Exception:  # noqa: BLE001 - already failing or stopped
                    pass

    def fault(self, i: int, exc: BaseException) -> BaseException:
        """Stage ``i`` raised ``exc``: remember where, and return what to raise (``exc``
        itself, or a :class:`PipelineError` for StopIteration and GeneratorExit)."""
        self.at = i
        return self.describe_failure(exc)

    def describe_failure(self, exc: BaseException) -> BaseException:
        """The error the reader gets for ``exc`` (raised where ``self.at`` says)."""
        if self.at < 0:
            return unexpected(exc, "the source")
        return unexpected(exc, f"stage {stage_name(self.stages[self.at])!r}")


def always_false() -> bool:
    return False


def release_list(out: Any) -> List[Any]:
    """A stage's return value as a list (for callers that need one)."""
    if out is None:
        return []
    if out.__class__ is list:
        return out
    return list(out)
