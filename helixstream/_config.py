"""Configuration files and the optimization service (the guide's YAML layout).

The layout::

    optimization:
      streaming:
        enabled: true
        buffer_type: "word"         # character, word, sentence, line, paragraph, token
        progress_interval: "100ms"  # or a number of seconds
        rate_limit: 0               # tokens per second, 0 = unlimited

plus the other fields of :class:`StreamConfig` (``estimated_tokens``,
``token_buffer_threshold``, ``burst``, ``max_delay``, ``queue_size``,
``close_timeout``, ``prefetch``, ``language``). helixstream owns ``optimization.streaming`` and
nothing else: the file may hold an application's whole configuration (a top-level
``server:``, ``optimization.caching``...), and those sections are left alone. Inside
``optimization.streaming`` every key must be known, and a section under
``optimization`` whose name is close to ``streaming`` (``streeming``, ``Streaming``) is
an error too: a misspelling is never a silent default. A key given twice in one YAML
mapping is an error (YAML itself would keep the last one).
"""
from __future__ import annotations

import difflib
import os
import threading
from typing import Any, Dict, Iterable, Mapping, Optional, Union

import attrs
import yaml

from ._aggregate import aggregate
from ._errors import ConfigError
from ._progress import ProgressCallback
from ._redis_rate import RedisRateLimiter
from ._streamer import EnhancedStreamer, StreamConfig, StreamResult

__all__ = ["StreamingSettings", "load_config", "OptimizationService", "FILE_KEYS"]

#: The keys ``optimization.streaming`` may hold.
FILE_KEYS = (
    "enabled",
    "buffer_type",
    "progress_interval",
    "rate_limit",
    "estimated_tokens",
    "token_buffer_threshold",
    "burst",
    "max_delay",
    "queue_size",
    "close_timeout",
    "prefetch",
    "language",
    "telemetry",
    "rate_limiter",
)

#: The keys of ``rate_limiter`` (a limiter shared through Redis); ``redis``, ``key``
#: and ``tokens_per_second`` are required.
LIMITER_KEYS = ("redis", "key", "tokens_per_second", "burst", "on_error", "timeout", "prefix")


def _check_enabled(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"'enabled' must be true or false (got {value!r})")


@attrs.frozen(slots=True)
class StreamingSettings:
    """The ``optimization.streaming`` section: on/off, and the stream configuration."""

    enabled: bool = attrs.field(default=True, validator=_check_enabled)
    stream: StreamConfig = attrs.field(factory=StreamConfig)

    @property
    def config(self) -> StreamConfig:
        """The :class:`StreamConfig` (same as ``stream``)."""
        return self.stream


def _unknown(keys: Iterable[str], known: Iterable[str], where: str) -> str:
    known = list(known)
    parts = []
    for key in keys:
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        parts.append(f"{key!r}{hint}")
    return f"unknown key(s) in {where}: {', '.join(parts)}; known keys: {', '.join(known)}"


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DuplicateKey(yaml.YAMLError):
    """A key appears twice in one mapping."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    Keys brought in by a merge (``<<: *defaults``) may be overridden: that is what a
    merge is for.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if first is not None:
                    where = f"twice on line {line}" if first == line else f"on lines {first} and {line}"
                    raise _DuplicateKey(
                        f"duplicate key {key!r} {where} (YAML would keep only the last; remove one)"
                    )
                seen[key] = line
        return super().construct_mapping(node, deep)


def _read(path: Union[str, "os.PathLike[str]"]) -> Any:
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {name!r} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {name!r} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {name!r} cannot be read: {exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"config file {name!r}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"config file {name!r}{where}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {name!r}: malformed YAML: {exc}") from None


def load_config(
    path_or_mapping: Union[str, "os.PathLike[str]", Mapping[str, Any]]
) -> StreamingSettings:
    """Read the guide's YAML layout from a file, or take it as a mapping.

    Returns:
        The validated :class:`StreamingSettings`.

    Raises:
        ConfigError: missing or unreadable file, malformed YAML (with its line), a
            missing section, a value of the wrong type or range, or unknown keys (named,
            with the nearest known key). Messages start with the file name when there
            is one.
    """
    if isinstance(path_or_mapping, Mapping):
        data: Any = path_or_mapping
        origin = ""
    elif isinstance(path_or_mapping, (str, os.PathLike)):
        data = _read(path_or_mapping)
        origin = f"{os.fspath(path_or_mapping)}: "
    else:
        raise ConfigError(
            "load_config takes a file path or a mapping, "
            f"not {type(path_or_mapping).__name__}"
        )
    try:
        return _settings(data)
    except ConfigError as exc:
        raise ConfigError(f"{origin}{exc}") from None


def _section(data: Any, key: str, where: str) -> Dict[str, Any]:
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError(f"{where or 'the configuration'} must be a mapping (got {kind})")
    if key not in data:
        path = f"{where}.{key}" if where else key
        raise ConfigError(
            f"missing section {path!r}; expected the layout {LAYOUT}"
        )
    return data[key]  # type: ignore[no-any-return]


#: What ``optimization.streaming`` looks like, for error messages.
LAYOUT = "optimization: streaming: {enabled, buffer_type, progress_interval, rate_limit, ...}"


def _misspelt_streaming(optimization: Mapping[Any, Any]) -> None:
    """Refuse a section of ``optimization`` whose name looks like ``streaming``.

    The other sections belong to other parts of the application, but one called
    ``streeming`` or ``Streaming`` is meant for us, and ignoring it would silently run
    with defaults.
    """
    for key in optimization:
        if key == "streaming" or not isinstance(key, str):
            continue
        if difflib.get_close_matches(key.lower(), ["streaming"], n=1, cutoff=0.8):
            raise ConfigError(
                f"optimization: unknown section {key!r} (did you mean 'streaming'?); "
                f"helixstream reads optimization.streaming, as in {LAYOUT}"
            )


def _settings(data: Any) -> StreamingSettings:
    optimization = _section(data, "optimization", "")
    if isinstance(optimization, Mapping):
        _misspelt_streaming(optimization)
    streaming = _section(optimization, "streaming", "optimization")
    if streaming is None:
        streaming = {}
    if not isinstance(streaming, Mapping):
        raise ConfigError(
            f"optimization.streaming must be a mapping (got {type(streaming).__name__})"
        )
    unknown = [k for k in streaming if k not in FILE_KEYS]
    if unknown:
        raise ConfigError(_unknown(unknown, FILE_KEYS, "optimization.streaming"))
    values = dict(streaming)
    enabled = values.pop("enabled", True)
    if values.get("rate_limiter") is not None:
        values["rate_limiter"] = _redis_limiter(values["rate_limiter"])
    try:
        return StreamingSettings(enabled=enabled, stream=StreamConfig(**values))
    except ConfigError as exc:
        raise ConfigError(f"optimization.streaming: {exc}") from None


def _redis_limiter(spec: Any) -> Any:
    """``rate_limiter: {redis: URL, key: ..., tokens_per_second: ..., burst: ...}``: a
    :class:`RedisRateLimiter` (made without connecting: Redis is reached on the first
    stream)."""
    where = "optimization.streaming.rate_limiter"
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where} must be a mapping such as {{redis: 'redis://host:6379/0', key: 'api', "
            f"tokens_per_second: 40}} (got {type(spec).__name__})"
        )
    unknown = [k for k in spec if k not in LIMITER_KEYS]
    if unknown:
        raise ConfigError(_unknown(unknown, LIMITER_KEYS, where))
    missing = [k for k in ("redis", "key", "tokens_per_second") if k not in spec]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}")
    url = spec["redis"]
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{where}.redis must be a redis:// URL (got {url!r})")
    options = {k: spec[k] for k in ("burst", "on_error", "timeout", "prefix") if k in spec}
    try:
        return RedisRateLimiter(url, spec["key"], spec["tokens_per_second"], **options)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


class OptimizationService:
    """Enhances LLM streams as a :class:`StreamingSettings` says.

    Args:
        config: settings from :func:`load_config`, a :class:`StreamConfig` (enabled),
            a path or mapping (read with :func:`load_config`), or None for defaults.
    """

    def __init__(
        self,
        config: Union[StreamingSettings, StreamConfig, str, "os.PathLike[str]", Mapping[str, Any], None] = None,
    ) -> None:
        if config is None:
            settings = StreamingSettings()
        elif isinstance(config, StreamingSettings):
            settings = config
        elif isinstance(config, StreamConfig):
            settings = StreamingSettings(stream=config)
        else:
            settings = load_config(config)
        self.settings = settings
        self.streamer = EnhancedStreamer(settings.stream)

    @property
    def enabled(self) -> bool:
        """Whether streams are enhanced (when False they pass through untouched)."""
        return self.settings.enabled

    def stream_enhanced(
        self,
        stream: Iterable[Any],
        callback: Optional[ProgressCallback] = None,
        stop: Optional[threading.Event] = None,
    ) -> StreamResult:
        """Enhance ``stream``; returns ``(output, get_result)``.

        With ``enabled: false`` the chunks pass through untouched (strings still become
        chunks) and no progress is reported.
        """
        if not self.settings.enabled:
            cfg = self.settings.stream
            return aggregate(
                stream,
                [],
                stop=stop,
                name="passthrough",
                counter=cfg.token_counter,
                queue_size=cfg.queue_size,
                close_timeout=cfg.close_timeout,
                prefetch=cfg.prefetch,
            )
        return self.streamer.stream_enhanced(stream, callback, stop)
