"""helixstream: LLM token streams made pleasant and safe for blocking Python code.

Everything public is importable from here (``import helixstream as hs``).
"""
from ._aggregate import AggregatedStream, ChunkAggregator, StreamAggregator, TextStream
from ._buffers import (
    Buffer,
    BufferType,
    CharacterBuffer,
    LineBuffer,
    ParagraphBuffer,
    SentenceBuffer,
    TokenBuffer,
    WordBuffer,
    new_buffer,
    new_buffer_with_token_threshold,
)
from ._chunk import StreamChunk
from ._config import OptimizationService, StreamingSettings, load_config
from ._errors import (
    ConfigError,
    HelixStreamError,
    PipelineError,
    StreamClosedError,
    StreamDecodeError,
    UpstreamError,
)
from ._progress import (
    ProgressCallback,
    ProgressStage,
    ProgressTracker,
    StreamProgress,
    ThrottledCallback,
    throttled_callback,
)
from ._ratelimit import BurstRateLimiter, RateLimiter, RateLimitStage, item_cost
from ._redis_rate import RedisRateLimiter
from ._engine import ChunkStream, StopSignal
from ._simulate import SimulatedLLM
from ._stages import BufferStage, Stage
from .sse import (
    SSE_HEADERS,
    EventLog,
    RedisReplay,
    SSEBody,
    SSEReplay,
    SSEWriter,
    format_sse_comment,
    format_sse_event,
    sse_stream,
    stream_chunks_to_sse,
)
from ._streamer import EnhancedStreamer, StreamConfig
from ._tokens import TokenCounter, bpe_counter, encoding_name_for, estimate_tokens

__version__ = "0.1.0"

__all__ = [
    "SSE_HEADERS",
    "AggregatedStream",
    "Buffer",
    "BufferStage",
    "BufferType",
    "BurstRateLimiter",
    "CharacterBuffer",
    "ChunkAggregator",
    "ChunkStream",
    "ConfigError",
    "EventLog",
    "EnhancedStreamer",
    "HelixStreamError",
    "LineBuffer",
    "OptimizationService",
    "PipelineError",
    "ParagraphBuffer",
    "ProgressCallback",
    "ProgressStage",
    "ProgressTracker",
    "RateLimitStage",
    "RateLimiter",
    "RedisRateLimiter",
    "RedisReplay",
    "SSEBody",
    "SSEReplay",
    "SSEWriter",
    "SentenceBuffer",
    "Stage",
    "StopSignal",
    "SimulatedLLM",
    "StreamAggregator",
    "StreamChunk",
    "StreamClosedError",
    "StreamConfig",
    "StreamDecodeError",
    "StreamProgress",
    "StreamingSettings",
    "TextStream",
    "ThrottledCallback",
    "TokenBuffer",
    "TokenCounter",
    "UpstreamError",
    "WordBuffer",
    "bpe_counter",
    "encoding_name_for",
    "estimate_tokens",
    "format_sse_comment",
    "format_sse_event",
    "item_cost",
    "load_config",
    "new_buffer",
    "new_buffer_with_token_threshold",
    "sse_stream",
    "stream_chunks_to_sse",
    "throttled_callback",
]


def _publish() -> None:
    """Public names report the package as their home (``hs.ChunkStream.__module__ ==
    "helixstream"``), wherever they are defined inside it."""
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__code__"):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover - a built-in
                pass


_publish()
