"""The command line: ``python -m helixstream demo | pipe | serve`` (also ``helixstream``)."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import sys
import threading
from types import FrameType
from typing import IO, Any, Callable, Iterator, NoReturn, Optional, Sequence

from ._buffers import BufferType
from ._durations import seconds_from_text
from ._errors import ConfigError, HelixStreamError
from ._progress import StreamProgress
from ._sentences import check_language
from ._simulate import SAMPLE_ANSWER, SimulatedLLM
from ._streamer import EnhancedStreamer, StreamConfig

__all__ = ["main"]

PROG = "helixstream"
DEFAULT_PROMPT = "In three short paragraphs, explain why streaming LLM answers helps users."


class UsageError(Exception):
    """A command line that cannot work (a flag missing, a port taken): one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class ProgressLine:
    """Draws a one-line progress bar on a terminal (stderr), below the streamed text."""

    def __init__(self, out: IO[str], enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.last: Optional[StreamProgress] = None
        self._lock = threading.Lock()
        self._drawn = False

    def __call__(self, progress: StreamProgress) -> None:
        with self._lock:
            self.last = progress
            if self.enabled:
                self._draw(progress)

    def _draw(self, p: StreamProgress) -> None:
        width = max(10, min(30, shutil.get_terminal_size((80, 20)).columns - 50))
        if p.percent is not None:
            filled = int(width * p.percent / 100)
            bar = "#" * filled + "." * (width - filled)
            head = f"[{bar}] {p.percent:5.1f}%"
        else:
            head = "[streaming]"
        eta = f" ETA {p.eta:4.1f}s" if p.eta is not None and not p.done else ""
        total = f"/{p.estimated_tokens}" if p.estimated_tokens else ""
        line = f"{head} {p.tokens_received}{total} tok {p.tokens_per_second:5.1f} tok/s{eta}"
        self.out.write("\r\033[K" + line)
        self.out.flush()
        self._drawn = True

    def clear(self) -> None:
        """Remove the bar (before writing text to the same terminal)."""
        with self._lock:
            if self.enabled and self._drawn:
                self.out.write("\r\033[K")
                self.out.flush()
                self._drawn = False

    def redraw(self) -> None:
        with self._lock:
            if self.enabled and self.last is not None:
                self._draw(self.last)


def _summary(result: Any, out: IO[str]) -> None:
    ttft = "n/a" if result.time_to_first_chunk is None else f"{result.time_to_first_chunk:.2f}s"
    state = " (stopped)" if result.cancelled else ""
    out.write(
        f"{result.total_tokens} tokens, {result.chunk_count} chunks in {result.duration:.2f}s"
        f"{state}; first chunk after {ttft}; {result.tokens_per_second:.1f} tokens/s\n"
    )
    out.flush()


def _openai_source(args: argparse.Namespace) -> Any:
    """A chat completion streamed from an OpenAI-compatible endpoint (stdlib HTTP only)."""
    import urllib.error
    import urllib.request

    from .sources import from_sse

    url = args.base_url.rstrip("/") + "/chat/completions"
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        response = urllib.request.urlopen(request, timeout=args.timeout)
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip()
        exc.close()
        raise HelixStreamError(f"{url}: HTTP {exc.code}: {detail or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HelixStreamError(f"cannot reach {url}: {reason}") from None
    return from_sse(response)


def _choose_source(args: argparse.Namespace) -> str | None:
    """Decide between the built-in simulated model and a real endpoint.

    A real endpoint is used only when the command line asks for one, with
    ``--base-url`` or ``--model``; the environment (``OPENAI_BASE_URL``,
    ``HELIXSTREAM_MODEL``) fills in the one left out. So ``demo`` works whatever the
    environment holds (``OPENAI_BASE_URL`` is often set for other tools).

    Sets ``args.base_url`` and ``args.model`` (``base_url`` None: the simulated
    model). Returns a note for stderr when an endpoint in the environment is not used.

    Raises:
        UsageError: an endpoint without a model, or a model without an endpoint.
    """
    env_url = os.environ.get("OPENAI_BASE_URL") or None
    env_model = os.environ.get("HELIXSTREAM_MODEL") or None
    if args.base_url is None and args.model is None:
        if env_url is None:
            return None
        return (
            f"{PROG}: using the built-in simulated model (OPENAI_BASE_URL is set; "
            "add --model NAME to stream from it instead)"
        )
    base_url = args.base_url or env_url
    model = args.model or env_model
    if not base_url:
        raise UsageError(
            "--model needs an endpoint: add --base-url URL (or set OPENAI_BASE_URL), "
            "e.g. --base-url http://127.0.0.1:11434/v1 for a local Ollama"
        )
    if not model:
        raise UsageError("--base-url needs a model: add --model NAME (or set HELIXSTREAM_MODEL)")
    args.base_url, args.model = base_url, model
    return None


def _source(args: argparse.Namespace) -> Any:
    if args.base_url:
        return _openai_source(args)
    return SimulatedLLM(
        SAMPLE_ANSWER,
        tokens_per_second=args.tps,
        first_token_delay=args.first_token_delay,
        seed=args.seed,
        chunks=True,
    )


def _demo(args: argparse.Namespace) -> int:
    source = _source(args)
    estimate = len(source) if isinstance(source, SimulatedLLM) else 0
    config = StreamConfig(
        buffer_type=args.buffer,
        progress_interval=0.05,
        estimated_tokens=estimate,
        rate_limit=args.rate,
        max_delay=args.max_delay,
        language=args.language,
    )
    err = sys.stderr
    bar = ProgressLine(err, enabled=err.isatty() and not args.no_progress)
    output, get_result = EnhancedStreamer(config).stream_enhanced(source, bar)
    out = sys.stdout
    with output:
        for chunk in output:
            bar.clear()
            # one unit per line, so the units the buffer released can be seen
            text = chunk.content.rstrip()
            if text:
                out.write(text + "\n")
            tail = chunk.content[len(text):]
            if tail.count("\n") >= 2 or (not text and "\n" in tail):
                out.write("\n")  # keep paragraph breaks
            out.flush()
            bar.redraw()
    bar.clear()
    _summary(get_result(), err)
    return 0


class _PipeInterrupt:
    """Ctrl-C for ``pipe``: the first one ends the input, a second one stops at once.

    The handler only wakes the reader of stdin (an event, and a byte on a pipe that
    :func:`_stdin_chunks` waits on with stdin); the stream then ends as it would at
    end of input, so every stage flushes what it holds and all of it is written.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self._wake()

    def _wake(self) -> None:
        self.event.set()
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # the pipe is full: the reader is awake already
            pass

    def close(self) -> None:
        """End the input (a reader still waiting in a worker thread returns), then
        close the pipe."""
        self._wake()
        os.close(self.wake_fd)
        os.close(self._wake_w)


@contextlib.contextmanager
def _pipe_interrupt() -> Iterator[_PipeInterrupt | None]:
    """A :class:`_PipeInterrupt` handling SIGINT for the duration of the block.

    None on Windows, where ``select`` takes sockets only: Ctrl-C keeps its usual
    meaning there (``KeyboardInterrupt``).
    """
    if os.name == "nt":
        yield None
        return
    interrupt = _PipeInterrupt()
    try:
        previous = signal.signal(signal.SIGINT, interrupt.handler)
    except ValueError:  # not the main thread: Ctrl-C keeps its usual meaning
        previous = None
    try:
        yield interrupt
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        interrupt.close()


def _stdin_chunks(
    stream: IO[bytes], interrupt: _PipeInterrupt | None = None, size: int = 4096
) -> Iterator[bytes]:
    """Whatever arrives on stdin, as soon as it arrives (not line by line), until the
    end of input or ``interrupt``."""
    fd = stream.fileno()
    wake = [] if interrupt is None else [interrupt.wake_fd]
    while interrupt is None or not interrupt.event.is_set():
        if wake:
            ready, _, _ = select.select([fd, *wake], [], [])
            if fd not in ready:
                continue  # woken: the loop's test ends the input
        data = os.read(fd, size)
        if not data:
            return
        yield data


def _pipe(args: argparse.Namespace) -> int:
    config = StreamConfig(
        buffer_type=args.buffer,
        rate_limit=args.rate,
        max_delay=args.max_delay,
        language=args.language,
        progress_interval=0.1,
    )
    err = sys.stderr
    bar = ProgressLine(err, enabled=args.progress and err.isatty())
    callback = bar if args.progress else None
    out = sys.stdout
    with _pipe_interrupt() as interrupt:
        output, get_result = EnhancedStreamer(config).stream_enhanced(
            _stdin_chunks(sys.stdin.buffer, interrupt), callback
        )
        with output:
            for chunk in output:
                out.write(chunk.content)
                out.flush()
        if args.progress:
            bar.clear()
            _summary(get_result(), err)
        if interrupt is not None and interrupt.event.is_set():
            err.write("\ninterrupted (the text read so far was written)\n")
            return 130
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ._serve import serve

    return serve(args, _source)


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", default=None,
                   help="stream from this OpenAI-compatible endpoint instead of the built-in "
                        "simulated model, e.g. http://127.0.0.1:11434/v1 for a local Ollama "
                        "(needs a model: --model or $HELIXSTREAM_MODEL)")
    p.add_argument("--model", default=None,
                   help="stream this model from an OpenAI-compatible endpoint (--base-url, "
                        "else $OPENAI_BASE_URL). Without --base-url or --model, the simulated "
                        "model runs, whatever the environment holds")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="what to ask the model")
    p.add_argument("--timeout", type=_positive_duration, default=30.0,
                   help="how long to wait for the endpoint (a duration, default 30s)")
    p.add_argument("--tps", type=_positive, default=40.0,
                   help="simulated model speed in tokens/s (default 40)")
    p.add_argument("--first-token-delay", type=_duration, default=0.6,
                   help="simulated model's pause before the first token (a duration, default 600ms)")
    p.add_argument("--seed", type=int, default=None, help="seed for the simulated model's pacing")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (got {text!r})")
    return value


def _duration(text: str) -> float:
    """A duration flag takes what the config takes: ``2``, ``0.5``, ``500ms``, ``1m30s``."""
    try:
        return seconds_from_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _above_zero(parse: Callable[[str], float]) -> Callable[[str], float]:
    """``parse``, refusing 0 as well."""

    def check(text: str) -> float:
        value = parse(text)
        if value == 0:
            raise argparse.ArgumentTypeError(f"must be > 0 (got {text!r})")
        return value

    check.__name__ = parse.__name__.lstrip("_")
    return check


_positive = _above_zero(_non_negative)
_positive_duration = _above_zero(_duration)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535 (got {text!r})")
    return value


def _language(text: str) -> str:
    try:
        return check_language(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _buffer_options(p: argparse.ArgumentParser, default: str) -> None:
    """--buffer, --rate, --max-delay and --language: how the text is cut and paced."""
    p.add_argument("--buffer", default=default, choices=[t.value for t in BufferType],
                   help=f"unit to release (default {default})")
    p.add_argument("--rate", type=_non_negative, default=0, help="tokens/s limit (0: none)")
    p.add_argument("--max-delay", type=_duration, default=None,
                   help="release held text after this long without a boundary "
                        "(a duration: 0.5, 500ms, 1m30s)")
    p.add_argument("--language", type=_language, default="en",
                   help="ISO 639-1 code of the text's language, for --buffer sentence "
                        "(default en)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Enhanced LLM streams: buffering, progress, rate limiting, SSE.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser("demo", help="stream a model's answer through sentence buffering",
                          description="Stream an answer (a simulated model, or a real "
                                      "OpenAI-compatible endpoint) through a buffer, with a "
                                      "progress bar on stderr and a summary at the end.")
    _buffer_options(demo, "sentence")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_source_options(demo)
    demo.set_defaults(run=_demo)

    pipe = sub.add_parser("pipe", help="stdin to stdout, buffered and paced",
                          description="Read text from stdin as it arrives and write it to "
                                      "stdout in whole units, e.g. "
                                      "'some-llm-cli | helixstream pipe --buffer sentence --rate 30'.")
    _buffer_options(pipe, "word")
    pipe.add_argument("--progress", action="store_true",
                      help="progress bar and summary on stderr")
    pipe.set_defaults(run=_pipe)

    serve = sub.add_parser("serve", help="a web page showing the stream live (SSE)",
                           description="Serve a page on 127.0.0.1 whose EventSource shows the "
                                       "enhanced stream live with a progress bar.")
    _buffer_options(serve, "word")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port)")
    _add_source_options(serve)
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "base_url"):
            note = _choose_source(args)
            if note:
                sys.stderr.write(note + "\n")
        return int(args.run(args))
    except UsageError as exc:
        sys.stderr.write(f"{PROG} {args.command}: error: {exc} (see '{PROG} {args.command} --help')\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except BrokenPipeError:
        # the reader of our stdout went away (e.g. `| head`)
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit flush
        except OSError:
            pass
        return 0
    except (HelixStreamError, ConfigError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
