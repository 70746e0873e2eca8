"""StreamConfig and EnhancedStreamer: the guide's streamer, built on the stage engine."""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import attrs

from ._aggregate import AggregatedStream, aggregate
from ._buffers import BufferType, new_buffer_with_token_threshold
from ._durations import check_number, parse_duration, parse_seconds
from ._errors import ConfigError
from ._progress import ProgressCallback, ProgressStage
from ._ratelimit import BurstRateLimiter, RateLimiter, RateLimitStage
from ._engine import ChunkStream
from ._sentences import check_language
from ._stages import BufferStage, Stage
from ._tokens import RememberLast, TokenCounter, estimate_tokens

__all__ = ["StreamConfig", "EnhancedStreamer", "StreamResult"]

#: ``(output, get_result)`` as returned by every ``stream_*`` method.
StreamResult = Tuple[ChunkStream, Callable[[], AggregatedStream]]


def _progress_interval(value: Any) -> float:
    return parse_seconds(value, "progress_interval")


def _max_delay(value: Any) -> Optional[float]:
    return parse_duration(value, "max_delay", allow_none=True)


def _close_timeout(value: Any) -> float:
    return parse_seconds(value, "close_timeout")


def _validate(**rules: Any) -> Callable[[Any, Any, Any], None]:
    def check(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        check_number(value, attribute.name, **rules)

    return check


def _check_bool(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{attribute.name!r} must be true or false (got {value!r})")


def _check_telemetry(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and value != "otel":
        raise ConfigError(f"'telemetry' must be \"otel\" or none (got {value!r})")


def _check_limiter(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and not callable(getattr(value, "acquire", None)):
        raise ConfigError(
            f"'rate_limiter' must be a limiter with acquire(tokens, stop) (a "
            f"RateLimiter, BurstRateLimiter or RedisRateLimiter) or None (got {value!r})"
        )


def _check_counter(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and not callable(value):
        raise ConfigError(
            f"{attribute.name!r} must be a callable str -> int or None (got {value!r})"
        )


@attrs.define(slots=True)
class StreamConfig:
    """How a stream is enhanced. Every value is checked on construction.

    Attributes:
        buffer_type: the unit released (``BufferType`` or its value).
        progress_interval: at most one progress callback per this many seconds
            (a number or a string like ``"100ms"``).
        rate_limit: tokens per second delivered at most; 0 means unlimited.
        estimated_tokens: expected length of the answer, for percent and ETA; 0 if unknown.
        token_buffer_threshold: tokens a token buffer holds before releasing (>= 1).
        burst: tokens a rate limiter may deliver at once after a pause; 0 means pacing
            (:class:`RateLimiter`: the first token at once, then evenly at the rate).
        max_delay: release held text after this many seconds without a unit
            boundary (None: never).
        queue_size: chunks that may wait between two threads of a stream (>= 1).
        token_counter: counts the tokens of text whose count the source did not report
            (None: the built-in estimator).
        close_timeout: seconds ``close()`` waits for the stream's threads to end.
        language: ISO 639-1 code of the text's language, for the sentence buffer's
            abbreviations and terminators (``"en"``; see ``docs/guide.md``).
        prefetch: read the source ahead in a thread of its own (the pump) from the
            start, up to ``queue_size`` items. The stages always run in the thread that
            reads the output; by default it reads the source too (no hand-off between
            threads, which is what lets a process run a thousand streams at once), and
            a pump is started only when one is needed: for ``max_delay`` timers, or
            when the reader waits with a timeout (``next_within``, as Server-Sent
            Events keep-alives do).
        rate_limiter: a limiter to pace ``stream_enhanced`` and ``stream_with_rate_limit``
            with instead of one made from ``rate_limit`` and ``burst``: one shared by
            several streams, or a :class:`RedisRateLimiter` shared by every process.
        telemetry: ``"otel"`` to record OpenTelemetry metrics and a span per stream
            (``helixstream.integrations.otel``, extra ``otel``), or None.

    Assigning a field later is checked the same way.

    Raises:
        ConfigError: a value is out of range or of the wrong type; the message names
            the field, what is allowed and the value given.
    """

    buffer_type: BufferType = attrs.field(
        default=BufferType.WORD, converter=BufferType.coerce  # type: ignore[misc]
    )
    progress_interval: float = attrs.field(default=0.1, converter=_progress_interval)
    rate_limit: float = attrs.field(default=0, validator=_validate(what="tokens per second"))
    estimated_tokens: int = attrs.field(default=0, validator=_validate(integer=True))
    token_buffer_threshold: int = attrs.field(
        default=5, validator=_validate(integer=True, minimum=1)
    )
    burst: int = attrs.field(default=0, validator=_validate(integer=True))
    max_delay: Optional[float] = attrs.field(
        default=None, converter=_max_delay
    )
    queue_size: int = attrs.field(default=256, validator=_validate(integer=True, minimum=1))
    token_counter: Optional[TokenCounter] = attrs.field(
        default=None, validator=_check_counter, eq=False
    )
    close_timeout: float = attrs.field(default=1.0, converter=_close_timeout)
    prefetch: bool = attrs.field(default=False, validator=_check_bool)
    telemetry: Optional[str] = attrs.field(default=None, validator=_check_telemetry)
    rate_limiter: Any = attrs.field(default=None, validator=_check_limiter, eq=False)
    language: str = attrs.field(default="en", converter=check_language)


class EnhancedStreamer:
    """Enhances LLM streams: buffering, progress, rate limiting and aggregation.

    Every ``stream_*`` method takes an iterable of ``str``, ``bytes`` or
    :class:`StreamChunk` and an optional ``stop`` event, and returns
    ``(output, get_result)``. The stream runs as the output is read, in the reading
    thread, unless it needs a worker thread (``prefetch``, ``max_delay``, or a read with
    a timeout; see ``docs/architecture.md``).
    """

    def __init__(self, config: Optional[StreamConfig] = None) -> None:
        if config is None:
            config = StreamConfig()
        elif not isinstance(config, StreamConfig):
            raise ConfigError(f"config must be a StreamConfig, not {type(config).__name__}")
        self.config = config

    def _buffer_stage(self, buffer_type: Union[BufferType, str, None]) -> BufferStage:
        cfg = self.config
        kind = cfg.buffer_type if buffer_type is None else BufferType.coerce(buffer_type)
        buffer = new_buffer_with_token_threshold(
            kind, cfg.token_buffer_threshold, cfg.token_counter, language=cfg.language
        )
        return BufferStage(buffer, cfg.max_delay, counter=cfg.token_counter)

    def _whole_text_counter(self) -> TokenCounter:
        """The counter for a stream's progress and aggregate: both count the whole text
        at the end, and the second count is remembered from the first."""
        return RememberLast(self.config.token_counter or estimate_tokens)

    def _run(
        self,
        source: Iterable[Any],
        stages: List[Any],
        stop: Any,
        name: str,
        counter: Optional[TokenCounter] = None,
        telemetry: Any = None,
    ) -> StreamResult:
        cfg = self.config
        if telemetry is None:
            telemetry = cfg.telemetry
        if telemetry is not None:  # imported only when asked for: no cost when off
            from .integrations.otel import telemetry_from

            telemetry = telemetry_from(telemetry)
        return aggregate(
            source,
            stages,
            stop=stop,
            name=name,
            counter=counter or cfg.token_counter,
            queue_size=cfg.queue_size,
            close_timeout=cfg.close_timeout,
            prefetch=cfg.prefetch,
            telemetry=telemetry,
        )

    def stream_buffered(
        self,
        input: Iterable[Any],
        buffer_type: Union[BufferType, str, None] = None,
        stop: Optional[threading.Event] = None,
    ) -> StreamResult:
        """Buffer the stream into units (the config's buffer type unless given)."""
        return self._run(input, [self._buffer_stage(buffer_type)], stop, "buffered")

    def _progress_stage(
        self, callback: Optional[ProgressCallback], counter: TokenCounter
    ) -> Optional[ProgressStage]:
        if callback is None:
            return None
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        cfg = self.config
        return ProgressStage(
            callback,
            cfg.progress_interval,
            cfg.estimated_tokens,
            counter=counter,
        )

    def stream_with_progress(
        self,
        input: Iterable[Any],
        callback: ProgressCallback,
        stop: Optional[threading.Event] = None,
    ) -> StreamResult:
        """Pass the stream through, reporting :class:`StreamProgress` to ``callback``.

        The callback runs in the thread that runs the stream (the reader's, unless the
        stream has a worker thread), at most once per ``config.progress_interval``, and
        always once more with the final progress. A slow callback slows the stream.
        """
        counter = self._whole_text_counter()
        stage = self._progress_stage(callback, counter)
        if stage is None:
            raise TypeError("stream_with_progress needs a callback")
        return self._run(input, [stage], stop, "progress", counter)

    def stream_enhanced(
        self,
        input: Iterable[Any],
        callback: Optional[ProgressCallback] = None,
        stop: Optional[threading.Event] = None,
        *,
        stages: Sequence[Stage] = (),
        telemetry: Any = None,
    ) -> StreamResult:
        """Buffer, rate-limit and track the stream, as the config says.

        Stages, in order: buffer (``buffer_type``), your own ``stages`` (each a
        :class:`Stage`, given the buffer's units in order), rate limiter (when
        ``rate_limit`` > 0), progress (when a callback is given), aggregation, and
        telemetry (``"otel"`` or an ``OTelTelemetry``, default: the config's
        ``telemetry``; see ``helixstream.integrations.otel``).
        """
        extra = list(stages)
        for stage in extra:
            if not callable(stage) or not callable(getattr(stage, "flush", None)):
                raise TypeError(
                    f"each of stages must be a Stage (callable, with flush()), not "
                    f"{type(stage).__name__}"
                )
        chain: List[Any] = [self._buffer_stage(None), *extra]
        limiter = self._rate_stage(None)
        if limiter is not None:
            chain.append(limiter)
        counter = self._whole_text_counter()
        progress = self._progress_stage(callback, counter)
        if progress is not None:
            chain.append(progress)
        return self._run(input, chain, stop, "enhanced", counter, telemetry)

    def _rate_stage(self, tokens_per_second: Optional[float]) -> Optional[RateLimitStage]:
        cfg = self.config
        if tokens_per_second is None:
            rate = cfg.rate_limit
        else:
            rate = check_number(tokens_per_second, "tokens_per_second", what="tokens per second")
        if tokens_per_second is None and cfg.rate_limiter is not None:
            # a limiter given whole (one shared by several streams, or by several
            # processes through Redis) sets the rate itself
            return RateLimitStage(cfg.rate_limiter, counter=cfg.token_counter)
        if not rate:
            return None
        limiter = RateLimiter(rate) if cfg.burst == 0 else BurstRateLimiter(rate, cfg.burst)
        return RateLimitStage(limiter, counter=cfg.token_counter)

    def stream_with_rate_limit(
        self,
        input: Iterable[Any],
        tokens_per_second: Optional[float] = None,
        stop: Optional[threading.Event] = None,
    ) -> StreamResult:
        """Pass the stream through at most ``tokens_per_second`` (default: the config's).

        A chunk costs its token count. 0 means unlimited.
        """
        stage = self._rate_stage(tokens_per_second)
        return self._run(input, [] if stage is None else [stage], stop, "rate-limited")
