"""Command line: ``python -m helixstream demo``."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Iterator, List, Optional

from ._streamer import EnhancedStreamer, StreamConfig

SAMPLE = (
    "Streams from a language model arrive in ragged pieces: half a word here, a "
    "space and a comma there. helixstream gathers them into whole words, so what you "
    "print never stops mid-syllable. It works in plain scripts, in Flask or Django "
    "views, and in thread pools.\n"
)


def _fragments(text: str, size: int = 3, delay: float = 0.01) -> Iterator[str]:
    for i in range(0, len(text), size):
        time.sleep(delay)
        yield text[i : i + size]


def _demo(args: argparse.Namespace) -> int:
    streamer = EnhancedStreamer(StreamConfig(buffer_type=args.buffer))
    output, get_result = streamer.stream_buffered(_fragments(SAMPLE))
    with output:
        for chunk in output:
            sys.stdout.write(chunk.content)
            sys.stdout.flush()
    result = get_result()
    sys.stderr.write(
        f"\n{result.chunk_count} {args.buffer} chunks, {result.total_tokens} tokens "
        f"in {result.duration:.2f}s\n"
    )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="helixstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="stream a sample answer through a buffer")
    demo.add_argument("--buffer", default="word", choices=["character", "word", "sentence", "line", "paragraph", "token"])
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
