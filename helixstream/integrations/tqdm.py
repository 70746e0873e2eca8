"""A ready progress callback that drives a tqdm bar (extra ``tqdm``).

::

    from helixstream.integrations.tqdm import tqdm_progress

    streamer = hs.EnhancedStreamer(hs.StreamConfig(estimated_tokens=500))
    output, get_result = streamer.stream_enhanced(llm_stream, tqdm_progress())
"""
from __future__ import annotations

import threading
from typing import Any, Optional

from .._progress import StreamProgress

__all__ = ["tqdm_progress", "TqdmProgress"]


def _tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - exercised with the module hidden
        raise ImportError(
            "helixstream.integrations.tqdm needs tqdm: pip install 'helixstream[tqdm]'"
        ) from None
    return tqdm


class TqdmProgress:
    """A progress callback that shows tokens received on a tqdm bar.

    The bar is created at the first report, with ``total`` set from the stream's token
    estimate when there is one (else an open-ended counter), and closed with the final
    report. A bar you made yourself can be passed instead.

    The bar shows one rate, tqdm's own (``12.3tok/s``), from which its ETA is computed
    too. A bar made here averages it over the bar's life (``smoothing=0``), which is
    steadier than a moving average for a stream that arrives in bursts; pass
    ``smoothing=0.3`` for tqdm's moving average. The stream's own figure is in the
    final result (``get_result().tokens_per_second``).

    Args:
        bar: an existing tqdm bar to drive (its ``total`` is set from the estimate when
            it has none).
        **tqdm_options: passed to ``tqdm(...)`` when the bar is created here (for example
            ``desc="answer"``, ``file=sys.stderr``, ``leave=False``).
    """

    def __init__(self, bar: Optional[Any] = None, **tqdm_options: Any) -> None:
        self._tqdm = _tqdm() if bar is None else None
        self.bar = bar
        self._options = {"unit": "tok", "dynamic_ncols": True, "smoothing": 0, **tqdm_options}
        self._lock = threading.Lock()

    def __call__(self, progress: StreamProgress) -> None:
        with self._lock:
            total = progress.estimated_tokens or None
            if self.bar is None:
                self.bar = self._tqdm(total=total, **self._options)  # type: ignore[misc]
            bar = self.bar
            if total and not bar.total:
                bar.total = total
            if progress.done and bar.total and progress.tokens_received > bar.total:
                bar.total = progress.tokens_received
            step = progress.tokens_received - bar.n
            if step > 0:
                bar.update(step)
            if progress.done:
                if bar.total and progress.tokens_received < bar.total:
                    bar.total = progress.tokens_received  # ended early: a full bar
                    bar.refresh()
                bar.close()


def tqdm_progress(bar: Optional[Any] = None, **tqdm_options: Any) -> TqdmProgress:
    """A progress callback driving a tqdm bar (see :class:`TqdmProgress`)."""
    return TqdmProgress(bar, **tqdm_options)
