"""Sentence segmentation: accuracy on pySBD's golden sets, release latency and speed.

Scores helixstream's sentence buffer on pySBD's test cases (``tests/data/pysbd``: the
48 English golden rules and the cases of 22 other languages), each text fed whole and
one character at a time (a cut-independent buffer gives the same units both ways; the
script checks random cuts too), and, side by side, the offline splitters that are
installed (never a dependency): pysbd, sentencex, stream2sentence.

For each language: exact match (every sentence of a case right, as pySBD's own tests
ask: sentences compared with surrounding whitespace stripped) and boundary F1 (a
boundary is the offset in the text where a sentence ends). pySBD is also scored
"streamed": re-segmenting the text received so far after every character and
releasing every sentence but the last, as a streaming wrapper around an offline
splitter would.

Then: release latency (how many characters after a sentence's last non-space
character the buffer released it, fed one character at a time; median over the
golden sets and the LLM-style passages) and speed (CPU seconds per MB, on the mixed
text of ``benchmarks/buffers.py``, fed one character at a time and whole).

Run: python benchmarks/segmentation.py [--lang CODE ...] [--others] [--speed-kb N]
(``--others`` adds the installed third-party splitters, which is slow for streamed
pysbd). Run it under an old checkout (``PYTHONPATH=/path/to/checkout``) to measure
"before": a buffer without ``language=`` is then used as it is.
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import helixstream as hs

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "pysbd"
LLM_DATA = ROOT / "tests" / "data" / "llm_passages.json"

Case = Tuple[str, List[str]]
Splitter = Callable[[str], List[str]]


def load_cases(code: str) -> List[Case]:
    with open(DATA / f"{code}.json", encoding="utf-8") as fh:
        return [(c["text"], c["expected"]) for c in json.load(fh)]


def languages() -> List[str]:
    return sorted(p.stem for p in DATA.glob("*.json"))


def make_buffer(lang: str) -> hs.Buffer:
    try:
        return hs.new_buffer("sentence", language=lang)
    except hs.ConfigError:
        return hs.new_buffer("sentence")  # a buffer from before ``language=``


def stream_units(lang: str, pieces: Iterable[str]) -> List[str]:
    buf = make_buffer(lang)
    out: List[str] = []
    for piece in pieces:
        out.extend(buf.add(piece))
    rest = buf.flush()
    if rest:
        out.append(rest)
    return out


def clean(units: Iterable[str]) -> List[str]:
    return [u.strip() for u in units if u.strip()]


def random_cuts(text: str, seed: int) -> List[str]:
    rng = random.Random(seed)
    bounds = [0] + [i for i in range(1, len(text)) if rng.random() < 0.3] + [len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def boundaries(text: str, sentences: Sequence[str]) -> Optional[set[int]]:
    """Offsets in ``text`` where each sentence but the last ends (None: not found)."""
    out: set[int] = set()
    at = 0
    for s in sentences:
        i = text.find(s, at)
        if i < 0:
            return None
        at = i + len(s)
        out.add(at)
    out.discard(at)
    return out


class Score:
    def __init__(self) -> None:
        self.cases = 0
        self.exact = 0
        self.tp = self.fp = self.fn = 0

    def add(self, text: str, got: List[str], expected: List[str]) -> bool:
        self.cases += 1
        ok = got == expected
        self.exact += ok
        want = boundaries(text, expected)
        have = boundaries(text, got)
        if want is not None and have is not None:
            self.tp += len(want & have)
            self.fp += len(have - want)
            self.fn += len(want - have)
        elif not ok:
            self.fn += max(1, len(expected) - 1)
        return ok

    @property
    def pct(self) -> float:
        return 100.0 * self.exact / self.cases if self.cases else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 100.0 * 2 * self.tp / denom if denom else 100.0


# --- third-party splitters (optional) ---------------------------------------------


def third_party(lang: str) -> Dict[str, Splitter]:
    out: Dict[str, Splitter] = {}
    try:
        import pysbd  # type: ignore[import-not-found]

        try:
            seg = pysbd.Segmenter(language=lang, clean=False)
            out["pysbd"] = lambda t: clean(seg.segment(t))
            out["pysbd streamed"] = lambda t: clean(pysbd_streamed(seg, t))
        except (ValueError, KeyError):
            pass
    except ImportError:
        pass
    try:
        from sentencex import segment  # type: ignore[import-not-found]

        out["sentencex"] = lambda t: clean(segment(lang, t))
    except ImportError:
        pass
    try:
        import stream2sentence  # type: ignore[import-not-found]

        def s2s(t: str) -> List[str]:
            return clean(stream2sentence.generate_sentences(
                iter(t), minimum_sentence_length=1, minimum_first_fragment_length=1,
                quick_yield_single_sentence_fragment=False, cleanup_text_links=False,
                cleanup_text_emojis=False, language=lang,
            ))

        out["stream2sentence"] = s2s
    except ImportError:
        pass
    return out


def pysbd_streamed(seg: object, text: str) -> List[str]:
    """pySBD re-run on the text received so far; every sentence but the last released."""
    done: List[str] = []
    start = 0
    for end in range(1, len(text) + 1):
        if not text[end - 1].isspace() and end < len(text):
            continue  # re-segment when a space arrives (and at the end)
        sents = seg.segment(text[start:end])  # type: ignore[attr-defined]
        if end == len(text):
            done.extend(sents)
            break
        if len(sents) > 1:
            for s in sents[:-1]:
                done.append(s)
                start = text.find(s, start) + len(s)
    return done


# --- latency and speed --------------------------------------------------------------


def release_latencies(lang: str, text: str) -> List[int]:
    """Characters between each released sentence's last non-space character and its release."""
    buf = make_buffer(lang)
    out: List[int] = []
    released = 0
    for i, ch in enumerate(text):
        for unit in buf.add(ch):
            released += len(unit)
            end = released - (len(unit) - len(unit.rstrip()))
            out.append(i + 1 - end)
    return out


def speed(text: str, repeat: int = 3) -> Tuple[float, float]:
    """CPU seconds per MB fed one character at a time, and fed whole (best of ``repeat``)."""
    mb = len(text.encode("utf-8")) / 1e6
    by_char = whole = float("inf")
    for _ in range(repeat):
        gc.collect()
        buf = make_buffer("en")
        add = buf.add
        t = time.process_time()
        for ch in text:
            add(ch)
        buf.flush()
        by_char = min(by_char, time.process_time() - t)
        buf = make_buffer("en")
        t = time.process_time()
        buf.add(text)
        buf.flush()
        whole = min(whole, time.process_time() - t)
    return by_char / mb, whole / mb


def score_set(
    cases: List[Tuple[str, str, List[str]]], others: bool, failures: bool, tag: str
) -> Tuple[Dict[str, Score], List[int], int]:
    """Score ``(language, text, expected)`` cases; returns the scores by splitter, the
    release latencies and how many results depended on the cuts."""
    scores: Dict[str, Score] = {}
    latencies: List[int] = []
    cut_dependent = 0
    splitters: Dict[str, Dict[str, Splitter]] = {}
    for lang, text, expected in cases:
        expected = clean(expected)
        whole = clean(stream_units(lang, [text]))
        chars = clean(stream_units(lang, text))
        for seed in range(3):
            if clean(stream_units(lang, random_cuts(text, seed))) != chars:
                cut_dependent += 1
        ok = scores.setdefault(NAMES[0], Score()).add(text, whole, expected)
        scores.setdefault(NAMES[1], Score()).add(text, chars, expected)
        latencies.extend(release_latencies(lang, text))
        if failures and not ok:
            print(f"[{tag}/{lang}] MISS {text!r}\n   want {expected!r}\n   got  {whole!r}")
        if others:
            if lang not in splitters:
                splitters[lang] = third_party(lang)
            for name, split in splitters[lang].items():
                try:
                    got = split(text)
                except Exception:  # noqa: BLE001 - a third-party failure scores as a miss
                    got = []
                scores.setdefault(name, Score()).add(text, got, expected)
    return scores, latencies, cut_dependent


NAMES = ["helixstream whole", "helixstream streamed"]


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", action="append", help="only these languages")
    parser.add_argument("--others", action="store_true", help="score installed splitters too")
    parser.add_argument("--speed-kb", type=int, default=1000, help="speed input size, KB")
    parser.add_argument("--failures", action="store_true", help="print the cases missed")
    args = parser.parse_args(argv)
    langs = args.lang or languages()

    names = list(NAMES)
    totals: Dict[str, Score] = {}
    rows: List[Tuple[str, int, Dict[str, Score]]] = []
    latencies: List[int] = []
    cut_dependent = 0
    sets: List[Tuple[str, List[Tuple[str, str, List[str]]]]] = [
        (lang, [(lang, t, e) for t, e in load_cases(lang)]) for lang in langs
    ]
    if LLM_DATA.exists() and not args.lang:
        with open(LLM_DATA, encoding="utf-8") as fh:
            passages = json.load(fh)
        sets.append(("llm", [(p["language"], p["text"], p["expected"]) for p in passages]))
    for tag, cases in sets:
        scores, lat, dep = score_set(cases, args.others, args.failures, tag)
        latencies.extend(lat)
        cut_dependent += dep
        rows.append((tag, len(cases), scores))
        group = {"en": "English golden rules", "llm": "LLM-style passages"}.get(
            tag, "22 other languages"
        )
        for name, score in scores.items():
            if name not in names:
                names.append(name)
            total = totals.setdefault(f"{group}: {name}", Score())
            total.cases += score.cases
            total.exact += score.exact
            total.tp += score.tp
            total.fp += score.fp
            total.fn += score.fn

    header = f"{'set':<5} {'cases':>5} " + " ".join(f"{n[:22]:>22}" for n in names)
    print("exact match (cases, %) and boundary F1, per language")
    print(header)
    print("-" * len(header))
    for tag, n, scores in rows:
        cells = []
        for name in names:
            s = scores.get(name)
            cells.append(f"{s.exact:>3}/{s.cases:<3} {s.pct:5.1f} {s.f1:5.1f}" if s else " " * 22)
        print(f"{tag:<5} {n:>5} " + " ".join(f"{c:>22}" for c in cells))
    print()
    for name, s in sorted(totals.items()):
        print(f"{name:<58} exact {s.exact:>3}/{s.cases:<3} = {s.pct:5.1f}%  "
              f"boundary F1 {s.f1:5.1f}")
    macro = [sc[NAMES[1]].pct for tag, _, sc in rows if tag not in ("en", "llm")]
    if macro:
        print(f"helixstream streamed, mean of the per-language % (22 other languages): "
              f"{statistics.mean(macro):.1f}%")
    print(f"cut-dependent results (3 random cuttings per case): {cut_dependent}")
    if latencies:
        print(f"release latency, characters after the sentence: median "
              f"{statistics.median(latencies):g}, 90th percentile "
              f"{sorted(latencies)[int(0.9 * len(latencies))]}, n={len(latencies)}")
    if args.speed_kb:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from buffers import mixed_text  # noqa: E402 - the benchmark's shared input

        by_char, whole = speed(mixed_text(args.speed_kb * 1000))
        print(f"speed (mixed text, {args.speed_kb} KB): {by_char:.2f} s/MB one character "
              f"at a time, {whole:.3f} s/MB whole")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
