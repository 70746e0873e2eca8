"""How close ``estimate_tokens`` comes to OpenAI's cl100k_base, and how fast it is.

For each kind of text it prints the estimator's total over the corpus, the exact total
(``bpe_counter("cl100k_base")``, from the optional ``bpe-openai`` package), the error in
percent and whether it meets the target:

=====================  ==========================================================  ======
kind                   corpus                                                      target
=====================  ==========================================================  ======
English prose          ``benchmarks/data/english.txt``                             10%
Python code            helixstream's own source files, read at run time            10%
Chinese                ``benchmarks/data/chinese.txt``                             25%
Japanese               ``benchmarks/data/japanese.txt``                            25%
CJK (both)             Chinese and Japanese together                               25%
Markdown (mixed)       ``benchmarks/data/markdown.md``: prose, tables, code, links 15%
=====================  ==========================================================  ======

Then, per kind, the error on short pieces, where a token either way is a large part of
the count: sentences (and lines), and random slices of 5-50 characters. Last, the speed
on 20-character strings against ``len(text) // 4``: warm (the words seen before, as in a
running stream) and at first sight (the estimator's memo tables emptied before every
call).

Without bpe-openai (``pip install 'helixstream[tokens]'``) there is no reference: the
accuracy part says so and prints the estimates only; speed is measured either way.

Run: python benchmarks/tokens.py [--check]
     (--check: exit with status 1 when a kind misses its target)
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import helixstream._tokens as _tokens
from helixstream._tokens import TokenCounter, bpe_counter, estimate_tokens

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PACKAGE = HERE.parent / "helixstream"


class Kind(NamedTuple):
    label: str
    files: Callable[[], List[Path]]
    target: float  # percent


def _data(*names: str) -> Callable[[], List[Path]]:
    return lambda: [DATA / name for name in names]


def _package_sources() -> List[Path]:
    return sorted(PACKAGE.rglob("*.py"))


KINDS: Dict[str, Kind] = {
    "english": Kind("English prose", _data("english.txt"), 10.0),
    "python": Kind("Python code", _package_sources, 10.0),
    "chinese": Kind("Chinese", _data("chinese.txt"), 25.0),
    "japanese": Kind("Japanese", _data("japanese.txt"), 25.0),
    "cjk": Kind("CJK (both)", _data("chinese.txt", "japanese.txt"), 25.0),
    "markdown": Kind("Markdown (mixed)", _data("markdown.md"), 15.0),
}


def load_corpus(kind: str) -> List[str]:
    """The texts of one kind, one string per file."""
    return [path.read_text(encoding="utf-8") for path in KINDS[kind].files()]


def reference_counter() -> Optional[TokenCounter]:
    """Exact cl100k_base counts, or None when bpe-openai is not installed."""
    try:
        return bpe_counter("cl100k_base")
    except ImportError:
        return None


def totals(counter: TokenCounter, texts: Sequence[str]) -> int:
    return sum(counter(text) for text in texts)


def error_percent(estimate: int, reference: int) -> float:
    return 100.0 * (estimate - reference) / reference


_UNIT_END = re.compile(r"(?<=[.!?。！？])\s*|\n+")


def sentences(texts: Sequence[str], limit: int = 400) -> List[str]:
    """Sentences and lines of the texts (each at most 300 characters), in order."""
    units = [u.strip() for text in texts for u in _UNIT_END.split(text)]
    return [u for u in units if u and len(u) <= 300][:limit]


def slices(texts: Sequence[str], n: int = 400, lo: int = 5, hi: int = 50, seed: int = 7) -> List[str]:
    """``n`` random slices of ``lo``-``hi`` characters, cut anywhere (mid-word too)."""
    rng = random.Random(seed)
    joined = "\n".join(texts)
    out = []
    for _ in range(n):
        size = rng.randint(lo, hi)
        start = rng.randrange(0, max(1, len(joined) - size))
        out.append(joined[start : start + size])
    return out


class ShortError(NamedTuple):
    mean_abs: float  # tokens
    mean_rel: float  # percent
    within_one: float  # percent of samples off by at most one token


def short_error(counter: TokenCounter, reference: TokenCounter, samples: Sequence[str]) -> ShortError:
    diffs = [(counter(s), reference(s)) for s in samples]
    return ShortError(
        statistics.mean(abs(e - r) for e, r in diffs),
        100.0 * statistics.mean(abs(e - r) / max(1, r) for e, r in diffs),
        100.0 * sum(abs(e - r) <= 1 for e, r in diffs) / len(diffs),
    )


def per_call_us(fn: Callable[[str], object], samples: Sequence[str], repeat: int = 7) -> float:
    """Best-of-``repeat`` microseconds per call, the loop's own cost taken off."""

    def run(f: Callable[[str], object]) -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for s in samples:
                f(s)
            best = min(best, time.perf_counter() - t0)
        return best

    empty = run(lambda s: None)
    return max(0.0, run(fn) - empty) * 1e6 / len(samples)


def _first_sight(text: str) -> int:
    _tokens._clear_memos()
    return estimate_tokens(text)


def speed_samples(n: int = 2000, size: int = 20, seed: int = 3) -> List[str]:
    rng = random.Random(seed)
    texts = [t for kind in ("english", "python", "cjk", "markdown") for t in load_corpus(kind)]
    joined = "\n".join(texts)
    return [joined[i : i + size] for i in (rng.randrange(len(joined) - size) for _ in range(n))]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a kind misses its target")
    args = parser.parse_args(argv)

    reference = reference_counter()
    missed: List[str] = []
    print("Token estimate vs OpenAI cl100k_base")
    if reference is None:
        print(
            "  bpe-openai is not installed, so there is no reference count and no comparison\n"
            "  (pip install 'helixstream[tokens]'). Estimates only:"
        )
    print(f"\n  {'kind':18s} {'chars':>8s} {'estimate':>9s} {'cl100k':>9s} {'error':>8s} {'target':>7s}  result")
    for key, kind in KINDS.items():
        texts = load_corpus(key)
        chars = sum(map(len, texts))
        est = totals(estimate_tokens, texts)
        if reference is None:
            print(f"  {kind.label:18s} {chars:8d} {est:9d} {'-':>9s} {'-':>8s} {kind.target:6.0f}%  not compared")
            continue
        ref = totals(reference, texts)
        err = error_percent(est, ref)
        ok = abs(err) <= kind.target
        if not ok:
            missed.append(kind.label)
        print(
            f"  {kind.label:18s} {chars:8d} {est:9d} {ref:9d} {err:+7.1f}% {kind.target:6.0f}%  "
            f"{'meets target' if ok else 'MISSES TARGET'}"
        )

    if reference is not None:
        print("\nShort pieces (mean |error| in tokens, mean |error| in percent, share within 1 token)")
        print(f"  {'kind':18s} {'sentences and lines':>30s}   {'slices of 5-50 chars':>30s}")
        for key, kind in KINDS.items():
            if key == "cjk":
                continue
            texts = load_corpus(key)
            cells = []
            for samples in (sentences(texts), slices(texts)):
                e = short_error(estimate_tokens, reference, samples)
                cells.append(f"{e.mean_abs:5.2f} tok {e.mean_rel:5.1f}% {e.within_one:5.1f}% ±1")
            print(f"  {kind.label:18s} {cells[0]:>30s}   {cells[1]:>30s}")

    samples = speed_samples()
    for s in samples:  # warm the memo tables, as a running stream would
        estimate_tokens(s)
    warm = per_call_us(estimate_tokens, samples)
    cold = per_call_us(_first_sight, samples[:300], repeat=3)
    clear_only = per_call_us(lambda s: _tokens._clear_memos(), samples[:300], repeat=3)
    quarter = per_call_us(lambda s: len(s) // 4, samples)
    print(f"\nSpeed on {len(samples)} strings of 20 characters (µs per call)")
    print(f"  estimate_tokens, warm        {warm:6.2f}")
    print(f"  estimate_tokens, first sight {max(0.0, cold - clear_only):6.2f}")
    print(f"  len(text) // 4 (baseline)    {quarter:6.2f}")
    if reference is not None:
        print(f"  bpe_counter('cl100k_base')   {per_call_us(reference, samples):6.2f}")

    if missed:
        print(f"\nMissed the target: {', '.join(missed)}")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
