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

    Args:
        bar: an existing tqdm bar to drive (its ``total`` is set from the estimate when
            it has none).
        **tqdm_options: passed to ``tqdm(...)`` when the bar is created here (for example
            ``desc="answer"``, ``file=sys.stderr``, ``leave=False``).
    """

    def __init__(self, bar: Optional[Any] = None, **tqdm_options: Any) -> None:
        self._tqdm = _tqdm() if bar is None else None
        self.bar = bar
        self._options = {"unit": "tok", "dynamic_ncols": True, **tqdm_options}
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
            if progress.tokens_per_second:
                bar.set_postfix_str(f"{progress.tokens_per_second:.1f} tok/s", refresh=False)
            if progress.done:
                if bar.total and progress.tokens_received < bar.total:
                    bar.total = progress.tokens_received  # ended early: a full bar
                    bar.refresh()
                bar.close()


def tqdm_progress(bar: Optional[Any] = None, **tqdm_options: Any) -> TqdmProgress:
    """A progress callback driving a tqdm bar (see :class:`TqdmProgress`)."""
    return TqdmProgress(bar, **tqdm_options)
