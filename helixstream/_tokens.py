"""Token counting: a counter is any callable ``str -> int``.

Two counters come with helixstream:

- :func:`estimate_tokens`, the default: a fast estimate of what a byte-level BPE
  tokenizer such as OpenAI's ``cl100k_base`` makes of a text. It needs nothing beyond
  the standard library and is meant for hot paths (it is called once per chunk).
- :func:`bpe_counter`, exact counts for ``cl100k_base`` and ``o200k_base`` (or a model
  name such as ``"gpt-4o"``), from the optional ``bpe-openai`` package
  (``pip install 'helixstream[tokens]'``).

How the estimate works
----------------------
A BPE tokenizer first cuts text into *pieces* with a regular expression (letter runs
with one leading space or punctuation mark, digit groups of up to three, punctuation
runs, whitespace), then encodes each piece on its own. Most pieces of English prose and
code become exactly one token; long or unusual words, ALL-CAPS and camelCase identifiers,
punctuation runs and non-Latin scripts become more. The estimator makes the same cut
and prices each piece with a few rules about its length, letter case and script, fitted
against ``cl100k_base`` on English prose, Python code and Chinese and Japanese text
(``benchmarks/tokens.py`` prints the error for each). Words, pieces and characters seen
before are priced from bounded memo tables, so a typical chunk costs about one
``str.split`` or one regex scan plus a dictionary lookup per word.
"""
from __future__ import annotations

import re
import threading
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ._errors import ConfigError

__all__ = [
    "TokenCounter",
    "estimate_tokens",
    "bpe_counter",
    "encoding_name_for",
    "ENCODINGS",
]

#: A token counter: takes text, returns its token count.
TokenCounter = Callable[[str], int]


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------

# One BPE piece. Close in spirit to cl100k_base's pre-tokenizer, written for Python's
# ``re``: ``[^\W\d_]`` is a letter, ``(?:[^\s\w]|_)`` is "neither letter, digit nor
# whitespace". Apostrophe contractions come out as a letter run with a leading "'".
_PIECE = re.compile(
    r"""
      (?:[^\r\n\w]|_)?+[^\W\d_]+      # letters, with at most one leading non-letter
    | \d{1,3}                         # digits, in groups of up to three
    | \ ?(?:[^\s\w]|_)+[\r\n]*        # punctuation run, with its trailing newlines
    | \s+(?!\S) | \s                  # whitespace
    """,
    re.VERBOSE,
)
# Humps of an ASCII identifier: "HTTPServer" -> "HTTP", "Server"; "getX" -> "get", "X".
_HUMP = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
# A segment: a word (no whitespace), with the single space before it if there is one, and
# the whitespace after it except a single space that belongs to the next word.
_SEGMENT = re.compile(r" ?\S+(?:\s*(?= \S)|\s*)")

# Price of a run of n ASCII letters of one case shape, by what comes before it: a space,
# another mark (punctuation, "_") or nothing (start of text, after a digit or newline).
# (base, knee1, slope1, knee2, slope2): base + slope1 * max(0, n - knee1) + slope2 *
# max(0, n - knee2). Common words behind a space stay single tokens well past the knee;
# runs glued to punctuation ("_count", ".append") and ALL-CAPS split sooner. Fitted by
# weighted least squares against cl100k_base on prose and Python, then rounded.
_LETTER_PRICES: Dict[Tuple[str, str], Tuple[float, int, float, int, float]] = {
    ("lower", " "): (1.0, 6, 0.06, 12, 0.25),
    ("lower", "."): (1.07, 4, 0.08, 6, 0.09),
    ("lower", ""): (1.02, 4, 0.06, 7, 0.14),
    ("title", " "): (1.0, 3, 0.02, 8, 0.16),
    ("title", "."): (1.07, 4, 0.1, 9, 0.3),
    ("title", ""): (1.0, 4, 0.05, 10, 0.2),
    ("upper", " "): (1.0, 2, 0.17, 14, 0.3),
    ("upper", "."): (1.2, 2, 0.1, 8, 0.1),
    ("upper", ""): (1.0, 2, 0.2, 8, 0.05),
}
# A run of mixed punctuation marks ("\"\"\"),"): one token for two marks, then more per
# mark; a leading space adds a little. A run of one repeated mark ("=====") is one token
# up to eight, then about two.
_PUNCT_KNEE1, _PUNCT_SLOPE1, _PUNCT_KNEE2, _PUNCT_SLOPE2, _PUNCT_SPACE = 2, 0.15, 3, 0.35, 0.15
# Per character, inside a run that is not plain ASCII.
_RATE_HAN = 1.2  # CJK ideographs in Chinese text
_RATE_HAN_JA = 1.4  # kanji, in a run that also has kana (Japanese): rarer ones, on average
_RATE_KANA = 0.95  # hiragana, katakana
_RATE_HANGUL = 1.35  # Hangul syllables
_RATE_LATIN_EXT = 0.6  # an accented Latin letter on its own
_RATE_ACCENT = 0.6  # what an accented letter adds to the price of its word
_RATE_CYRILLIC = 0.55
_RATE_GREEK = 1.0
_RATE_ARABIC_HEBREW = 0.8

_MEMO_SIZE = 1 << 15  # entries per memo table before it is emptied
_MEMO_KEY_MAX = 32  # longer keys are priced every time, never stored


class _Memo(Dict[str, float]):
    """A bounded memo table ``key -> price``, filled on a miss by ``fn``.

    Lookups go through ``dict.__getitem__`` (fast, C); a miss calls ``__missing__``.
    When the table is full it is emptied, which bounds its memory without any per-hit
    bookkeeping. Safe to share between threads: the worst a race can do is price a key
    twice.
    """

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[str], float]) -> None:
        super().__init__()
        self._fn = fn

    def __missing__(self, key: str) -> float:
        value = self._fn(key)
        if len(key) <= _MEMO_KEY_MAX:
            if len(self) >= _MEMO_SIZE:
                self.clear()
            self[key] = value
        return value


def _char_price(ch: str) -> float:
    """Price of one character outside a Latin word (CJK, other scripts, symbols)."""
    o = ord(ch)
    if o < 0x80:
        return 1.0
    if 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
        return _RATE_HAN
    if 0x3040 <= o <= 0x30FF:
        return _RATE_KANA
    if 0xAC00 <= o <= 0xD7AF:
        return _RATE_HANGUL
    if 0x3400 <= o <= 0x4DBF:  # rare ideographs: several byte-level tokens each
        return 2.5
    if 0x3000 <= o <= 0x303F or 0xFF00 <= o <= 0xFFEF:  # CJK and full-width punctuation
        return 1.0
    if ch.isalpha():
        if o < 0x250:
            return _RATE_LATIN_EXT
        if 0x370 <= o < 0x400:
            return _RATE_GREEK
        if 0x400 <= o < 0x530:
            return _RATE_CYRILLIC
        if 0x590 <= o < 0x700:
            return _RATE_ARABIC_HEBREW
    # Anything else by its UTF-8 length: a 4-byte character (emoji) is rarely one token.
    if o >= 0x10000:
        return 2.0
    return 1.3 if o >= 0x800 else 1.0


_CHARS = _Memo(_char_price)


def _char_price_ja(ch: str) -> float:
    o = ord(ch)
    if 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
        return _RATE_HAN_JA
    return _CHARS[ch]


_CHARS_JA = _Memo(_char_price_ja)
_KANA = re.compile(r"[\u3040-\u30ff]")
# Runs of Latin letters (accented ones included) and runs of anything else.
_LATIN_RUN = re.compile(r"[A-Za-z\u00c0-\u024f]+|[^A-Za-z\u00c0-\u024f]+")


def _letters_price(n: int, shape: str, lead: str) -> float:
    base, knee1, slope1, knee2, slope2 = _LETTER_PRICES[shape, lead]
    price = base
    if n > knee1:
        price += slope1 * (n - knee1)
        if n > knee2:
            price += slope2 * (n - knee2)
    return price


def _ascii_letters_price(word: str, lead: str) -> float:
    """Price of a run of ASCII letters after ``lead`` (" ", another mark or nothing)."""
    if lead and lead != " ":
        lead = "."
    n = len(word)
    if word.islower():
        return _letters_price(n, "lower", lead)
    if n == 1 or word[1:].islower():  # Capitalised
        return _letters_price(n, "title", lead)
    if word.isupper():
        return _letters_price(n, "upper", lead)
    humps = _HUMP.findall(word)
    total = 0.0
    for hump in humps:  # camelCase, HTTPServer: each hump after the first is glued on
        n = len(hump)
        if hump.islower():
            total += _letters_price(n, "lower", lead)
        elif n == 1 or hump[1:].islower():
            # A capitalised hump starts a new word, as if a space were before it.
            total += _letters_price(n, "title", lead if total == 0.0 else " ")
        else:
            total += _letters_price(n, "upper", lead)
        lead = ""
    return total


def _marks_price(n: int, spaced: bool) -> float:
    """Price of a run of ``n`` mixed ASCII punctuation marks (after a space if ``spaced``)."""
    price = 1.0
    if n > _PUNCT_KNEE1:
        price += (_PUNCT_SLOPE1 + (_PUNCT_SPACE if spaced else 0.0)) * (n - _PUNCT_KNEE1)
        if n > _PUNCT_KNEE2:
            price += _PUNCT_SLOPE2 * (n - _PUNCT_KNEE2)
    return price


def _piece_price(piece: str) -> float:
    """Price of one piece as cut by ``_PIECE``."""
    first = piece[0]
    if first.isdigit() and piece.isdigit():
        return 1.0
    lead = ""
    letters = piece
    if not first.isalpha():
        if len(piece) > 1 and piece[1].isalpha():
            lead, letters = first, piece[1:]
        elif piece.isspace():
            return 1.0
        else:  # punctuation run
            core = piece.strip()
            n = len(core)
            if core.isascii():
                if n <= 1:
                    return 1.0
                if core.count(core[0]) == n:  # "=====", "----"
                    return 1.0 if n <= 8 else 1.8 + n / 64
                return _marks_price(n, first == " ")
            # Non-ASCII marks ("—", "“", "。", emoji) by their own price, ASCII ones as a run.
            price = 0.0
            ascii_marks = 0
            for ch in core:
                if ch < "\x80":
                    ascii_marks += 1
                else:
                    price += _CHARS[ch]
            if ascii_marks:
                price += _marks_price(ascii_marks, first == " ")
            return max(1.0, price)
    if letters.isascii():
        if lead > "\x7f":  # "“Hello", "¿Qué": the mark is a token of its own
            return _CHARS[lead] + _ascii_letters_price(letters, "")
        return _ascii_letters_price(letters, lead)
    return _mixed_letters_price(letters, lead)


def _latin_price(run: str, lead: str) -> float:
    """Price of a run of Latin letters with accents ("Straße", "café") after ``lead``."""
    if lead and lead != " ":
        lead = "."
    n = len(run)
    if run.islower():
        shape = "lower"
    elif n == 1 or run[1:].islower():
        shape = "title"
    else:
        shape = "upper" if run.isupper() else "title"
    accents = sum(1 for ch in run if ch > "\x7f")
    return _letters_price(n, shape, lead) + _RATE_ACCENT * accents


def _mixed_letters_price(letters: str, lead: str) -> float:
    """Price of a run of letters that are not all ASCII, after ``lead``."""
    chars = _CHARS_JA if _KANA.search(letters) else _CHARS
    price = 0.0
    if lead > "\x7f":
        price += _CHARS[lead]
        lead = ""
    for run in _LATIN_RUN.findall(letters):
        first = run[0]
        if first < "\u0250" and first.isalpha():  # Latin: priced as a word
            if run.isascii():  # "API" in "APIを使う"
                price += _ascii_letters_price(run, lead)
            else:
                price += _latin_price(run, lead)
        else:
            price += sum(map(chars.__getitem__, run))
            if lead and lead != " ":
                price += _CHARS[lead]
        lead = ""
    return max(1.0, price)


_PIECES = _Memo(_piece_price)


#: The fast path's prices are whole multiples of this (2**-20): a sum of them is exact in
#: any order or grouping (below 2**33 tokens), so a text counted piece by piece
#: (:class:`RunningEstimate`) gets the very count :func:`estimate_tokens` gives the whole.
_GRAIN = 2.0**-20


def _on_grain(price: float) -> float:
    return round(price / _GRAIN) * _GRAIN


def _word_price(word: str) -> float:
    """Price of a word (no whitespace in it) that follows a single space."""
    return _on_grain(sum(map(_PIECES.__getitem__, _PIECE.findall(" " + word))))


_WORDS = _Memo(_word_price)


def _head_delta(word: str) -> float:
    """Correction when ``word`` opens the text, with no space before it."""
    return _on_grain(sum(map(_PIECES.__getitem__, _PIECE.findall(word)))) - _WORDS[word]


_HEADS = _Memo(_head_delta)


def _space_price(run: str, after_punct: bool = False) -> float:
    """Price of whitespace ``run`` between two words (the next word's own leading space,
    if any, not included).

    Newlines right after punctuation are free (part of the punctuation's piece); what
    is left costs a token for the newlines and a token for the spaces or tabs after them
    (indentation), a little more for very long runs.
    """
    if after_punct:
        run = run.lstrip("\r\n")
        if not run:
            return 0.0
    cut = max(run.rfind("\n"), run.rfind("\r"))
    if cut < 0:
        return 1.0 + len(run) // 80
    price = 1.0 + cut // 24
    if cut < len(run) - 1:
        price += 1.0 + (len(run) - cut) // 80
    return price


def _tail_price(run: str, after_punct: bool = False) -> float:
    """Price of whitespace ``run`` that ends the text (one piece, usually one token)."""
    if after_punct:
        run = run.lstrip("\r\n")
    return 1.0 + len(run) // 80 if run else 0.0


_LEADS = _Memo(_space_price)


def _split_segment(segment: str) -> Tuple[str, str, bool]:
    """``segment`` as (word with its leading space, whitespace after it, whether the
    word ends in a punctuation mark)."""
    word = segment.rstrip()
    return word, segment[len(word) :], not word[-1].isalnum()


def _segment_price(segment: str) -> float:
    """Price of a segment (``_SEGMENT``) inside the text."""
    word, run, after_punct = _split_segment(segment)
    if word[0] == " ":
        price = _WORDS[word[1:]]
    else:
        price = sum(map(_PIECES.__getitem__, _PIECE.findall(word)))
    return price + _space_price(run, after_punct) if run else price


_SEGMENTS = _Memo(_segment_price)


def _tail_delta(segment: str) -> float:
    """Correction when ``segment``'s whitespace ends the text."""
    word, run, after_punct = _split_segment(segment)
    if not run:
        return 0.0
    return _tail_price(run, after_punct) - _space_price(run, after_punct)


_TAILS = _Memo(_tail_delta)
_MEMOS = (_CHARS, _CHARS_JA, _PIECES, _WORDS, _HEADS, _LEADS, _SEGMENTS, _TAILS)


def _clear_memos() -> None:
    """Empty the estimator's memo tables (for benchmarks and tests)."""
    for memo in _MEMOS:
        memo.clear()


def estimate_tokens(text: str) -> int:
    """Estimate how many tokens an LLM BPE tokenizer would make of ``text``.

    Approximates OpenAI's ``cl100k_base`` (GPT-4, GPT-3.5): in total over a text, within
    a few percent on English prose and Python code and within about 10% on Chinese and
    Japanese (``benchmarks/tokens.py`` measures it); a short English or code string is
    usually right to within a token, a single streamed token of it almost always
    counts 1. Other languages are rougher: Latin-script languages other than English
    tend to come out 10-25% low. Returns 0 for ``""`` and at least 1 for any other
    string.

    Raises:
        TypeError: ``text`` is not a ``str`` (decode bytes first).
    """
    if text.__class__ is not str and not isinstance(text, str):
        raise TypeError(f"estimate_tokens() needs a str, not {type(text).__name__}")
    if not text:
        return 0
    if text.isascii() and "\n" not in text and "  " not in text and "\t" not in text and "\r" not in text:
        # Fast path: ASCII with single spaces only (most prose chunks).
        words = text.split()
        if not words:
            return 1
        total = sum(map(_WORDS.__getitem__, words))
        if text[0] != " ":
            total += _HEADS[words[0]]
        if text[-1] == " ":
            total += 1.0
    else:
        segments = _SEGMENT.findall(text)
        if not segments:  # whitespace only
            return max(1, int(_tail_price(text) + 0.5))
        total = sum(map(_SEGMENTS.__getitem__, segments))
        if text[0].isspace():
            # The whitespace before the first segment, if any.
            lead = text[: len(text) - len(text.lstrip())]
            if lead[-1] == " ":
                lead = lead[:-1]
            if lead:
                total += _LEADS[lead]
        if text[-1].isspace():
            total += _TAILS[segments[-1]]
    n = int(total + 0.5)
    return n if n > 0 else 1


# --------------------------------------------------------------------------------------
# Exact counts with bpe-openai
# --------------------------------------------------------------------------------------

#: The encodings :func:`bpe_counter` can load (both ship with ``bpe-openai``).
ENCODINGS = ("cl100k_base", "o200k_base")

# Model name (or the prefix of a dated/suffixed one) -> encoding. Longest prefix wins.
_MODEL_ENCODINGS: Dict[str, str] = {
    "gpt-4o": "o200k_base",
    "chatgpt-4o": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-5": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "gpt-35-turbo": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-3-large": "cl100k_base",
}
_MODEL_PREFIXES = sorted(_MODEL_ENCODINGS, key=len, reverse=True)

_INSTALL_HINT = "pip install 'helixstream[tokens]'"


def encoding_name_for(name: str) -> str:
    """Resolve an encoding name or an OpenAI model name to an encoding name.

    ``"cl100k_base"`` and ``"o200k_base"`` are returned as they are. A model name maps
    to its encoding, also with a date or variant suffix (``"gpt-4o-2024-08-06"``,
    ``"gpt-4-0613"``), a provider prefix (``"openai/gpt-4o"``) or as a fine-tune
    (``"ft:gpt-4o-mini:acme::abc123"``).

    Raises:
        ConfigError: the name is neither a known encoding nor a known model.
        TypeError: ``name`` is not a ``str``.
    """
    if not isinstance(name, str):
        raise TypeError(f"encoding or model name must be a str, not {type(name).__name__}")
    key = name.strip().lower()
    if key in ENCODINGS:
        return key
    if key.startswith("ft:"):
        key = key[3:].split(":", 1)[0]
    key = key.rsplit("/", 1)[-1]
    for prefix in _MODEL_PREFIXES:
        if key == prefix or key.startswith(prefix + "-"):
            return _MODEL_ENCODINGS[prefix]
    raise ConfigError(
        f"encoding: unknown encoding or model name {name!r}; expected one of "
        f"{', '.join(ENCODINGS)} or an OpenAI model name such as 'gpt-4o', 'gpt-4' "
        "or 'gpt-3.5-turbo'"
    )


_LOAD_LOCK = threading.Lock()
_LOADED: Dict[str, Any] = {}


def _load_encoding(encoding: str) -> Any:
    try:
        with warnings.catch_warnings():
            # bpe-openai 0.1.4 uses a deprecated importlib.resources call on import
            warnings.simplefilter("ignore", DeprecationWarning)
            import bpe_openai  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise ImportError(
            f"exact token counts need the bpe-openai package: {_INSTALL_HINT}",
            name="bpe_openai",
        ) from exc
    with _LOAD_LOCK:
        enc = _LOADED.get(encoding)
        if enc is None:
            # get_encoding by name: encoding_for_model rejects some models it lists.
            enc = _LOADED[encoding] = bpe_openai.get_encoding(encoding)
    return enc


# Longest text handed to the tokenizer at once. bpe-openai refuses inputs of a million
# characters or more, and results over 200,000 tokens; 40,000 characters are at most
# 160,000 UTF-8 bytes, so at most that many tokens.
_PART_CHARS = 40_000
# Places where cl100k_base's and o200k_base's pre-tokenizers always end a piece, so that
# cutting there leaves the count unchanged: after the last newline of a whitespace run
# that a non-space follows; before a single space between two non-spaces; between a
# letter and a punctuation mark other than an apostrophe.
_CUTS = (
    re.compile(r"(?<=[\r\n])(?=[^\S\r\n]*\S)"),
    re.compile(r"(?<=\S)(?= \S)"),
    re.compile(r"(?<=[^\W\d_])(?=[^\s\w'])"),  # not before "'": o200k keeps "it's" whole
)


def _parts(text: str, size: int = _PART_CHARS) -> Iterator[str]:
    """Cut ``text`` into parts of at most ``size`` characters, at places where the
    tokenizer would cut anyway (``_CUTS``, the last one in the second half of the part),
    so the counts of the parts add up to the count of the text. Only a text with no
    such place for ``size // 2`` characters is cut anywhere.
    """
    start = 0
    end = len(text)
    while end - start > size:
        limit = start + size
        cut = -1
        for pattern in _CUTS:
            for m in pattern.finditer(text, limit - size // 2, limit):
                cut = m.start()
            if cut > start:
                break
        if cut <= start:
            cut = limit
        yield text[start:cut]
        start = cut
    yield text[start:]


class _BpeCounter:
    """A :data:`TokenCounter` that counts exactly with a ``bpe-openai`` encoding."""

    __slots__ = ("encoding", "_encode")

    def __init__(self, encoding: str, enc: Any) -> None:
        self.encoding = encoding
        self._encode: Callable[[str], List[int]] = enc.encode_ordinary

    def __call__(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"token counter needs a str, not {type(text).__name__}")
        if len(text) <= _PART_CHARS:
            return len(self._encode(text))
        return sum(len(self._encode(part)) for part in _parts(text))

    def __repr__(self) -> str:
        return f"bpe_counter({self.encoding!r})"


def bpe_counter(encoding: str = "cl100k_base") -> TokenCounter:
    """An exact token counter for an OpenAI encoding, from the ``bpe-openai`` package.

    Args:
        encoding: ``"cl100k_base"`` (GPT-4, GPT-3.5), ``"o200k_base"`` (GPT-4o, o1 and
            later) or a model name that resolves to one (see :func:`encoding_name_for`).

    Returns:
        A callable ``str -> int``. Special-token text such as ``"<|endoftext|>"`` is
        counted as ordinary text; texts of any length are accepted.

    Raises:
        ImportError: ``bpe-openai`` is not installed (``pip install
            'helixstream[tokens]'``).
        ConfigError: ``encoding`` is not a known encoding or model name.
    """
    name = encoding_name_for(encoding)
    return _BpeCounter(name, _load_encoding(name))


class RunningEstimate:
    """:func:`estimate_tokens` of a text that arrives piece by piece (private).

    :meth:`count` is ``estimate_tokens("".join(pieces))`` without counting the text
    again: each piece's complete words are priced as it is added (the last word waits,
    since the next piece may continue it), and the fast path's prices add up exactly
    in any grouping (see ``_GRAIN``). That holds while the whole text stays on the fast
    path (ASCII, single spaces, no line breaks or tabs); once it leaves it, ``exact``
    turns False for good and the text must be counted whole.
    """

    __slots__ = ("exact", "_sum", "_carry", "_first", "_last", "_head")

    def __init__(self) -> None:
        self.exact = True
        self._sum = 0.0  # the prices of the words known to be complete
        self._carry = ""  # the last word, which the next piece may continue
        self._first = ""  # the text's first character ("": no text yet)
        self._last = ""  # its last character
        self._head: Optional[float] = None  # the first word's correction, once known

    def add(self, piece: str) -> int:
        """Append ``piece`` to the text; return :meth:`count` (-1 once not ``exact``)."""
        if not self.exact:
            return -1
        if piece:
            # (estimate_tokens' fast-path test, written out there too: a call costs
            # more than the test on its hot path)
            if not (
                piece.isascii()
                and "\n" not in piece
                and "  " not in piece
                and "\t" not in piece
                and "\r" not in piece
            ) or (piece[0] == " " and self._last == " "):
                self.exact = False  # the whole text is off the fast path now
                return -1
            if not self._first:
                self._first = piece[0]
            text = self._carry + piece
            words = text.split()
            last = self._last = piece[-1]
            # the last word is whole when the piece ends in whitespace (a space, or the
            # other ASCII whitespace the fast path lets through: \x0b, \x0c, \x1c-\x1f)
            self._carry = "" if last.isspace() or not words else words.pop()
            if words:
                if self._head is None:
                    self._head = _HEADS[words[0]] if self._first != " " else 0.0
                self._sum += sum(map(_WORDS.__getitem__, words))
        return self.count()

    def count(self) -> int:
        """``estimate_tokens`` of the text so far (only meaningful while ``exact``)."""
        if not self._first:
            return 0
        total = self._sum
        head = self._head
        carry = self._carry
        if carry:
            total += _WORDS[carry]
            if head is None:
                head = _HEADS[carry] if self._first != " " else 0.0
        elif head is None:
            return 1  # spaces only
        total += head
        if self._last == " ":
            total += 1.0
        n = int(total + 0.5)
        return n if n > 0 else 1


def is_estimator(counter: Any) -> bool:
    """Is ``counter`` :func:`estimate_tokens` (itself, or remembered by a
    :class:`RememberLast`)? Such a counter can be run piece by piece."""
    if counter.__class__ is RememberLast:
        counter = counter._count  # noqa: SLF001 - same module
    return counter is estimate_tokens


class RememberLast:
    """A token counter that remembers its last answer (private).

    A stream's progress stage and its aggregate both count the stream's whole text once
    it ends, so that the final progress equals the result; sharing one of these makes
    the second count free. Safe to share between threads: the remembered pair is
    replaced in one assignment.
    """

    __slots__ = ("_count", "_last")

    def __init__(self, count: TokenCounter) -> None:
        self._count = count
        self._last: Optional[Tuple[str, int]] = None

    def __call__(self, text: str) -> int:
        last = self._last
        if last is not None and text == last[0]:
            return last[1]
        n = self._count(text)
        self._last = (text, n)
        return n

    def remember(self, text: str, n: int) -> None:
        """Take ``n`` as the count of ``text`` (counted another way, by the caller)."""
        self._last = (text, n)
