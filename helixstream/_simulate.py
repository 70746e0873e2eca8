"""A simulated LLM: streams a text as model-like tokens with realistic pacing.

Used by the command line's demo and serve commands, and handy in tests and examples::

    from helixstream import SimulatedLLM
    for piece in SimulatedLLM("Hello there. How are you?", tokens_per_second=200):
        ...
"""
from __future__ import annotations

import random
import re
import threading
import time
from typing import Callable, List, Optional

from ._chunk import StreamChunk
from ._errors import ConfigError

__all__ = ["SimulatedLLM", "SAMPLE_ANSWER", "split_tokens"]

SAMPLE_ANSWER = (
    "Streaming an answer from a language model is a little like listening to someone "
    "think out loud. The words arrive in ragged pieces: half a word, a space and a "
    "comma, then three words at once. A reader wants whole sentences, delivered "
    "promptly, with nothing lost on the way.\n\n"
    "helixstream sits between the model and your code. It gathers the fragments into "
    "words, sentences, lines or paragraphs; it reports progress with an estimate of the "
    "time left; it can pace the output to a steady rate; and it keeps a tally of tokens, "
    "characters and timings for when the answer is complete. Dr. Smith's favourite "
    "number, 3.14, survives intact, and so do abbreviations such as e.g. this one.\n\n"
    "Best of all, the stream is an ordinary Python iterator. Leave the loop early, and "
    "the request to the model is closed at once, so it stops costing money. That is all "
    "there is to it!\n"
)

# Model-like tokens: a word with the space before it, digits in groups of up to three,
# punctuation runs, and line breaks on their own.
_TOKEN = re.compile(r" ?[A-Za-z]{1,7}|[A-Za-z]{1,7}| ?\d{1,3}| ?[^\sA-Za-z\d]+|\n+| +")


def split_tokens(text: str) -> List[str]:
    """Cut text into model-like tokens (long words become several tokens)."""
    return _TOKEN.findall(text)


class SimulatedLLM:
    """An iterable that yields the tokens of ``text`` like a streaming model would.

    It waits ``first_token_delay`` seconds before the first token (the model reading the
    prompt), then yields ``tokens_per_second`` on average, each gap varied by
    ``jitter`` (a fraction). Waits use ``wait`` (default: a stop event's ``wait``), so
    :meth:`close` ends a wait at once, the way closing a real response does.

    Args:
        text: what the model "says".
        tokens_per_second: average speed.
        first_token_delay: seconds before the first token.
        jitter: each gap is the mean gap times a random factor in ``1 ± jitter``.
        seed: for a repeatable run.
        chunks: yield :class:`StreamChunk` objects carrying ``tokens=1`` instead of ``str``.
    """

    def __init__(
        self,
        text: str = SAMPLE_ANSWER,
        tokens_per_second: float = 40.0,
        first_token_delay: float = 0.5,
        jitter: float = 0.5,
        seed: Optional[int] = None,
        chunks: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tokens_per_second <= 0:
            raise ConfigError(f"tokens_per_second must be > 0 (got {tokens_per_second!r})")
        if not 0 <= jitter < 1:
            raise ConfigError(f"jitter must be in [0, 1) (got {jitter!r})")
        self.tokens = split_tokens(text)
        self.tokens_per_second = tokens_per_second
        self.first_token_delay = max(0.0, first_token_delay)
        self.jitter = jitter
        self.chunks = chunks
        self._random = random.Random(seed)
        self._clock = clock
        self._closed = threading.Event()
        self.closed_at: Optional[float] = None

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self) -> "_Tokens":
        return _Tokens(self)

    def close(self) -> None:
        """Stop: a wait in progress ends at once and no more tokens come."""
        if not self._closed.is_set():
            self.closed_at = self._clock()
            self._closed.set()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()


class _Tokens:
    """One run of a :class:`SimulatedLLM`: its tokens at their due times. It can wait
    for the next one with a timeout (``wait_ready``), so a stream's ``next_within``
    reads it without a thread of its own."""

    def __init__(self, model: SimulatedLLM) -> None:
        self._model = model
        self._gap = 1.0 / model.tokens_per_second
        self._due = model._clock() + model.first_token_delay
        self._index = 0

    def __iter__(self) -> "_Tokens":
        return self

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the next token is due, the model is closed, or ``timeout``
        seconds pass; True unless the timeout came first."""
        model = self._model
        if self._index >= len(model.tokens) or model._closed.is_set():
            return True
        left = self._due - model._clock()
        if left <= 0:
            return True
        if timeout < left:
            model._closed.wait(max(0.0, timeout))
            return model._closed.is_set()
        model._closed.wait(left)
        return True

    def __next__(self) -> object:
        model = self._model
        if self._index >= len(model.tokens):
            raise StopIteration
        left = self._due - model._clock()
        if left > 0 and model._closed.wait(left):
            raise StopIteration
        if model._closed.is_set():
            raise StopIteration
        token = model.tokens[self._index]
        self._index += 1
        self._due += self._gap * (1 + model.jitter * (2 * model._random.random() - 1))
        return StreamChunk(token, tokens=1) if model.chunks else token

    def close(self) -> None:
        self._model.close()
