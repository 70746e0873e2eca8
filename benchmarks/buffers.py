"""Buffers are linear in their input: feeding 10x the text costs about 10x the time.

For each buffer type and two inputs, feeds 100 KB and then 1 MB one character at a time
(the worst case: one ``add()`` call per character) and prints both times (CPU seconds,
best of a few runs, as other processes make single runs noisy), the ratio of the two
(target: at most about 10, i.e. linear) and characters per second. It also prints the
"drift": how much slower the last 100 KB of the 1 MB run went than its first 100 KB,
which is ~1 when the cost per character does not grow with what came before (and ~19
if it grew linearly, i.e. quadratic time), and is less sensitive to a busy machine.

Inputs:
- ``mixed``: realistic text: English prose with abbreviations, initials, decimals,
  version numbers, quotes, ellipses and lists; a Python code block; Chinese and
  Japanese with their own punctuation; blank lines between paragraphs.
- ``no-boundary``: one blob of letters and digits without whitespace or punctuation,
  so that nothing completes a unit and everything is held until the end.

Run: python benchmarks/buffers.py [--small KB] [--large KB] [--type TYPE ...] [--repeat N]
Exit status 1 when a ratio is over the limit (--limit, default 12).
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import string
import sys
import time
from typing import Callable, Dict, List, Tuple

import helixstream as hs

PROSE = [
    "Dr. Smith met Mr. J. R. R. Tolkien at 5 p.m. on Jan. 5, and they talked for 2.5 hours. "
    "The U.S.A. today is big, e.g. in area. Prices rose 3.14% vs. last year; see Fig. 3.",
    'He said "Hi." Then he left... What now? Nothing! Really?! Version 2.0.1 is out, '
    "i.e. the one with the fix (see https://example.com/a.b/c.html or mail a.b@c.org).",
    "Steps:\n1. Open the file.\n2. Edit it.\n3. Save it.\n- Note: it is 5 ft. 3 in. tall.",
    "**Note.** This is important. _Also_ this. “Quoted.” ‘Single.’ (Parenthesised.) "
    "Wait… maybe not. The answer is 42. That is all, etc. And more text follows here.",
]
CODE = (
    "```python\n"
    "def parse(text: str) -> list[str]:\n"
    "    parts = text.split('.')\n"
    "    for i, part in enumerate(parts):\n"
    "        if not part.strip():\n"
    "            continue\n"
    "        yield f\"{i}: {part!r}\"\n"
    "\n"
    "print(list(parse('a.b.c')))  # 3.14 == math.pi? no.\n"
    "```"
)
CJK = [
    "你好。我很好！你呢？他说：「好。」然后走了。今天天气很好，我们去公园吧。",
    "日本語の文です。本当？『はい。』（注意！）次へ。東京は大きい都市です。",
]


def mixed_text(size: int, seed: int = 1) -> str:
    """Realistic mixed text of exactly ``size`` characters (paragraphs in random order)."""
    rng = random.Random(seed)
    blocks = PROSE + [CODE] + CJK
    out: List[str] = []
    total = 0
    while total < size:
        block = rng.choice(blocks)
        sep = rng.choice(["\n\n", "\r\n\r\n", " ", "\n"])
        out.append(block + sep)
        total += len(block) + len(sep)
    return "".join(out)[:size]


def blob(size: int, seed: int = 2) -> str:
    """Letters and digits with no whitespace or punctuation: no unit ever completes."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    chunk = "".join(rng.choice(alphabet) for _ in range(4096))
    return (chunk * (size // len(chunk) + 1))[:size]


INPUTS: Dict[str, Callable[[int], str]] = {"mixed": mixed_text, "no-boundary": blob}


def feed_by_character(kind: str, text: str, segments: int = 1) -> Tuple[List[float], int]:
    """Feed ``text`` one character at a time; CPU seconds of each of ``segments`` equal
    parts (the last one includes the final flush), and the number of units.

    CPU time of this process, not wall-clock time, so that other busy processes on the
    machine distort the figures less.
    """
    buf = hs.new_buffer(kind)
    add = buf.add
    units = 0
    size = -(-len(text) // segments)
    times: List[float] = []
    gc.collect()
    for s in range(segments):
        part = text[s * size:(s + 1) * size]
        start = time.process_time()
        for ch in part:
            units += len(add(ch))
        if s == segments - 1:
            units += 1 if buf.flush() else 0
        times.append(time.process_time() - start)
    return times, units


def best_total(kind: str, text: str, repeat: int, segments: int = 1) -> Tuple[float, List[float], int]:
    """The best total time of ``repeat`` runs, with that run's segment times and units."""
    best: Tuple[float, List[float], int] = (float("inf"), [], 0)
    for _ in range(repeat):
        times, units = feed_by_character(kind, text, segments)
        if sum(times) < best[0]:
            best = (sum(times), times, units)
    return best


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100, help="small input, KB (100)")
    parser.add_argument("--large", type=int, default=1000, help="large input, KB (1000)")
    parser.add_argument("--type", action="append", choices=[t.value for t in hs.BufferType])
    parser.add_argument("--limit", type=float, default=12.0, help="fail over this ratio (12)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="best of N runs for the large input, 2N+1 for the small one (2)")
    args = parser.parse_args(argv)
    kinds = args.type or [t.value for t in hs.BufferType]
    small, large = args.small * 1000, args.large * 1000
    expected = large / small
    segments = max(1, round(expected))

    print(f"Feeding {args.small} KB and {args.large} KB one character per add() call "
          f"(linear: ratio ~{expected:g}); CPU seconds, best of {2 * args.repeat + 1} "
          f"and {args.repeat} runs.")
    print(f"drift: the large run's last {args.small} KB against its first {args.small} KB "
          f"(median of 3 parts each; ~1 when linear, ~{2 * expected - 1:g} when quadratic).")
    header = (f"{'buffer':<10} {'input':<12} {'small s':>8} {'large s':>8} {'ratio':>6} "
              f"{'drift':>6} {'chars/s (large)':>16} {'units (large)':>14}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    worst_drift = 0.0
    for name, make in INPUTS.items():
        texts = (make(small), make(large))
        for kind in kinds:
            t_small, _, _ = best_total(kind, texts[0], 2 * args.repeat + 1)
            t_large, parts, units = best_total(kind, texts[1], args.repeat, segments)
            ratio = t_large / t_small
            k = min(3, len(parts))
            drift = statistics.median(parts[-k:]) / statistics.median(parts[:k])
            worst = max(worst, ratio)
            worst_drift = max(worst_drift, drift)
            flag = "" if ratio <= args.limit else "  <-- over the limit"
            print(f"{kind:<10} {name:<12} {t_small:>8.3f} {t_large:>8.3f} {ratio:>6.1f} "
                  f"{drift:>6.2f} {len(texts[1]) / t_large:>16,.0f} {units:>14,}{flag}")
    print(f"worst ratio: {worst:.1f} (target: at most about {expected:g}, limit {args.limit:g}); "
          f"worst drift: {worst_drift:.2f}")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
