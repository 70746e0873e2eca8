"""The stream engine (private): one pipeline, where it runs, and how it stops.

- :mod:`.pipeline`: the stages and the one generator that runs them.
- :mod:`.stream`: a running stream (state, inline or pumped source) and its output.
- :mod:`.stop`: stop signals, and the janitor thread that hears them.
- :mod:`.pipe`: the one bounded queue between two threads.
"""
from .pipe import Pipe, PipeClosed, put_until_stopped
from .pipeline import IDLE, TICK, Pipeline
from .stop import StopSignal, check_stop
from .._inputs import check_source
from .stream import END, ChunkStream, give_texts, run_stages, set_lookahead

__all__ = [
    "END",
    "IDLE",
    "TICK",
    "ChunkStream",
    "Pipe",
    "PipeClosed",
    "Pipeline",
    "StopSignal",
    "check_source",
    "check_stop",
    "put_until_stopped",
    "run_stages",
    "set_lookahead",
    "give_texts",
]
