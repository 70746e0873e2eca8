"""OpenTelemetry metrics and a span per stream, by the GenAI semantic conventions.

Extra ``otel`` (``pip install 'helixstream[otel]'``: ``opentelemetry-api`` only; the SDK,
its exporters and their configuration are the application's)::

    import helixstream as hs
    from helixstream.integrations.otel import OTelTelemetry

    telemetry = OTelTelemetry(provider="openai", model="gpt-4o-mini")
    output, get_result = hs.EnhancedStreamer().stream_enhanced(source, telemetry=telemetry)

or ``telemetry="otel"`` (``telemetry: otel`` in a config file) for the defaults. Per
stream it records, from the stream's own figures (the same numbers as its
:class:`~helixstream.AggregatedStream`):

- ``gen_ai.client.operation.time_to_first_chunk`` (s): from the reader's first request
  to the first chunk;
- ``gen_ai.client.operation.time_per_output_chunk`` (s): for every chunk after the
  first, the time since the one before;
- ``gen_ai.client.token.usage`` (``{token}``, ``gen_ai.token.type=output``): the
  stream's ``total_tokens`` (the service's own count when it sent one);
- ``gen_ai.client.operation.duration`` (s), with ``error.type`` when the stream failed;

each with ``gen_ai.operation.name``, ``gen_ai.provider.name`` and, when known,
``gen_ai.request.model``, and the conventions' bucket boundaries; and one span per
stream (``"{operation} {model}"``, kind CLIENT) whose ``helixstream.outcome`` attribute
is ``ended``, ``cancelled`` or ``failed``.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Mapping, Optional

from .._aggregate import AggregateStage
from .._errors import ConfigError

__all__ = ["OTelTelemetry", "TelemetryStage", "telemetry_from"]

#: Bucket boundaries the GenAI semantic conventions give for each histogram.
LATENCY_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                   20.48, 40.96, 81.92)
PER_CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                     1.0, 2.5)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576,
                 4194304, 16777216, 67108864)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(
            "helixstream's OpenTelemetry integration needs the OpenTelemetry API: "
            "pip install 'helixstream[otel]' (or opentelemetry-api)"
        ) from None


class OTelTelemetry:
    """Where a stream's metrics and span go, and what describes the operation.

    Args:
        meter_provider: an OpenTelemetry ``MeterProvider`` (default: the global one).
        tracer_provider: a ``TracerProvider`` (default: the global one).
        operation: ``gen_ai.operation.name`` (default ``"chat"``).
        provider: ``gen_ai.provider.name`` (default ``"unknown"``; ``"openai"``,
            ``"anthropic"``, ... as the conventions name them).
        model: ``gen_ai.request.model``, when known.
        attributes: more attributes for every metric point and the span.

    Make one and share it between streams: the instruments are created once.
    """

    def __init__(
        self,
        *,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        operation: str = "chat",
        provider: str = "unknown",
        model: Optional[str] = None,
        attributes: Optional[Mapping[str, Any]] = None,
    ) -> None:
        for name, value in (("operation", operation), ("provider", provider)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name!r} must be a non-empty string (got {value!r})")
        if model is not None and not isinstance(model, str):
            raise ConfigError(f"'model' must be a string or None (got {model!r})")
        metrics = _import("opentelemetry.metrics")
        trace = _import("opentelemetry.trace")
        self._trace = trace
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("helixstream")
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("helixstream")
        self.attributes: Dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
        }
        if model is not None:
            self.attributes["gen_ai.request.model"] = model
        self.attributes.update(attributes or {})
        self.span_name = f"{operation} {model}" if model else operation
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk of the stream.",
            explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS),
        )
        self.per_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk", unit="s",
            description="Time per output chunk after the first.",
            explicit_bucket_boundaries_advisory=list(PER_CHUNK_BUCKETS),
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of output tokens of the stream.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="Duration of the stream.",
            explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS),
        )

    def stage(self, aggregate: AggregateStage) -> "TelemetryStage":
        """The stage that records one stream; it goes right after ``aggregate``."""
        return TelemetryStage(self, aggregate)


class TelemetryStage:
    """Records one stream (see :class:`OTelTelemetry`). It passes chunks on unchanged,
    reads its figures from the stream's aggregate, and is told the end after it."""

    name = "otel"
    flush_on_failure = False

    def __init__(self, telemetry: OTelTelemetry, aggregate: AggregateStage) -> None:
        self._t = telemetry
        self._aggregate = aggregate
        self._clock = aggregate._clock  # noqa: SLF001 - the aggregate's own clock
        self._last: Optional[float] = None
        self._span: Any = None
        self._done = False

    def start(self) -> None:
        t = self._t
        self._span = t._tracer.start_span(
            t.span_name, kind=t._trace.SpanKind.CLIENT, attributes=t.attributes
        )

    def __call__(self, chunk: Any) -> List[Any]:
        now = self._clock()
        if self._last is not None:
            self._t.per_chunk.record(now - self._last, self._t.attributes)
        self._last = now
        return [chunk]

    def flush(self) -> List[Any]:
        self._end("ended", None)
        return []

    def abort(self, error: Optional[BaseException]) -> None:
        self._end("failed" if error is not None else "cancelled", error)

    def _end(self, outcome: str, error: Optional[BaseException]) -> None:
        if self._done:
            return
        self._done = True
        t = self._t
        result = self._aggregate.result()
        attributes = dict(t.attributes)
        if result.time_to_first_chunk is not None:
            t.first_chunk.record(result.time_to_first_chunk, attributes)
        if result.total_tokens:
            t.tokens.record(result.total_tokens, {**attributes, "gen_ai.token.type": "output"})
        if error is not None:
            attributes["error.type"] = type(error).__qualname__
        t.duration.record(result.duration, attributes)
        span = self._span
        if span is None:  # never read: nothing to describe but the end
            return
        span.set_attribute("helixstream.outcome", outcome)
        span.set_attribute("helixstream.chunks", result.chunk_count)
        span.set_attribute("gen_ai.usage.output_tokens", result.total_tokens)
        if error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
            span.record_exception(error)
            span.set_status(t._trace.Status(t._trace.StatusCode.ERROR, str(error)))
        span.end()


_default: Optional[OTelTelemetry] = None


def telemetry_from(value: Any) -> Optional[OTelTelemetry]:
    """``None``, ``"otel"`` (an :class:`OTelTelemetry` with the global providers, made
    once) or an object with a ``stage(aggregate)`` method."""
    global _default
    if value is None:
        return None
    if value == "otel":
        if _default is None:
            _default = OTelTelemetry()
        return _default
    if callable(getattr(value, "stage", None)):
        return value  # type: ignore[no-any-return]
    raise ConfigError(
        f"'telemetry' must be None, \"otel\" or an OTelTelemetry (got {value!r})"
    )
