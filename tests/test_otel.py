"""helixstream.integrations.otel against the OpenTelemetry SDK's in-memory reader and
exporter: the recorded values are the stream's own AggregatedStream figures."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any, Dict, Iterator, List

import pytest

import helixstream as hs

metrics_sdk = pytest.importorskip("opentelemetry.sdk.metrics", reason="needs opentelemetry-sdk")
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from helixstream.integrations.otel import (  # noqa: E402
    LATENCY_BUCKETS,
    PER_CHUNK_BUCKETS,
    TOKEN_BUCKETS,
    OTelTelemetry,
)


class Setup:
    def __init__(self, **options: Any) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.telemetry = OTelTelemetry(
            meter_provider=metrics_sdk.MeterProvider(metric_readers=[self.reader]),
            tracer_provider=tracer_provider,
            **options,
        )

    def points(self) -> Dict[str, List[Any]]:
        data = self.reader.get_metrics_data()
        out: Dict[str, List[Any]] = {}
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out[metric.name] = list(metric.data.data_points)
        return out


def test_the_recorded_values_are_the_streams_own_figures():
    s = Setup(provider="openai", model="gpt-4o-mini")
    chunks = [hs.StreamChunk("Hello "), hs.StreamChunk("big "), hs.StreamChunk("world. ")]
    output, get_result = hs.EnhancedStreamer().stream_enhanced(chunks, telemetry=s.telemetry)
    list(output)
    result = get_result()
    points = s.points()
    (ttfc,) = points["gen_ai.client.operation.time_to_first_chunk"]
    assert ttfc.sum == pytest.approx(result.time_to_first_chunk)
    assert tuple(ttfc.explicit_bounds) == LATENCY_BUCKETS
    (per_chunk,) = points["gen_ai.client.operation.time_per_output_chunk"]
    assert per_chunk.count == result.chunk_count - 1
    assert 0 <= per_chunk.sum <= result.duration
    assert tuple(per_chunk.explicit_bounds) == PER_CHUNK_BUCKETS
    (tokens,) = points["gen_ai.client.token.usage"]
    assert tokens.sum == result.total_tokens and tokens.count == 1
    assert tokens.attributes["gen_ai.token.type"] == "output"
    assert tuple(tokens.explicit_bounds) == TOKEN_BUCKETS
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.sum == pytest.approx(result.duration)
    assert "error.type" not in duration.attributes
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.token.usage"):
        attributes = points[name][0].attributes
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    (span,) = s.exporter.get_finished_spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes["helixstream.outcome"] == "ended"
    assert span.attributes["gen_ai.usage.output_tokens"] == result.total_tokens


def test_the_services_usage_count_is_the_token_usage():
    s = Setup()
    chunks = [hs.StreamChunk("Fine, "), hs.StreamChunk("thanks.", metadata={"usage": {"completion_tokens": 4}})]
    output, get_result = hs.EnhancedStreamer().stream_enhanced(chunks, telemetry=s.telemetry)
    list(output)
    (tokens,) = s.points()["gen_ai.client.token.usage"]
    assert tokens.sum == get_result().total_tokens == 4


def test_a_failed_stream_records_error_type_and_a_failed_span():
    s = Setup()

    def failing() -> Iterator[str]:
        yield "one two "
        raise TimeoutError("upstream went quiet")

    output, get_result = hs.EnhancedStreamer().stream_enhanced(failing(), telemetry=s.telemetry)
    with pytest.raises(TimeoutError):
        list(output)
    (duration,) = s.points()["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "TimeoutError"
    assert duration.sum == pytest.approx(get_result().duration)
    (span,) = s.exporter.get_finished_spans()
    assert span.attributes["helixstream.outcome"] == "failed"
    assert span.status.status_code.name == "ERROR"


def test_a_stopped_stream_says_cancelled():
    s = Setup()
    output, get_result = hs.EnhancedStreamer().stream_enhanced(["a b c d e "], telemetry=s.telemetry)
    next(output)
    output.close()
    (span,) = s.exporter.get_finished_spans()
    assert span.attributes["helixstream.outcome"] == "cancelled"
    assert span.attributes["helixstream.chunks"] == get_result().chunk_count == 1
    (duration,) = s.points()["gen_ai.client.operation.duration"]
    assert "error.type" not in duration.attributes


def test_telemetry_otel_in_the_config_uses_the_global_providers(monkeypatch):
    from helixstream.integrations import otel

    s = Setup()
    monkeypatch.setattr(otel, "_default", s.telemetry)  # what "otel" resolves to
    settings = hs.load_config({"optimization": {"streaming": {"telemetry": "otel"}}})
    assert settings.stream.telemetry == "otel"
    output, _ = hs.EnhancedStreamer(settings.stream).stream_enhanced(["x y "])
    list(output)
    assert "gen_ai.client.operation.duration" in s.points()


def test_bad_telemetry_values_are_config_errors():
    with pytest.raises(hs.ConfigError, match="telemetry"):
        hs.StreamConfig(telemetry="prometheus")
    with pytest.raises(hs.ConfigError, match="telemetry"):
        hs.EnhancedStreamer().stream_enhanced(["x"], telemetry=5)
    with pytest.raises(hs.ConfigError, match="provider"):
        OTelTelemetry(provider="")


def test_no_cost_when_off_the_integration_is_not_even_imported():
    code = textwrap.dedent("""
        import sys
        import helixstream as hs
        out, _ = hs.EnhancedStreamer().stream_enhanced(["a b "])
        list(out)
        print("helixstream.integrations.otel" in sys.modules, "opentelemetry" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_without_the_api_the_error_says_what_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        from helixstream.integrations.otel import OTelTelemetry
        try:
            OTelTelemetry()
        except ImportError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'helixstream[otel]'" in done.stdout, done.stderr
