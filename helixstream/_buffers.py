"""Buffers: turn ragged text fragments into whole units (words, sentences, lines...).

Buffers are pure and single-threaded: ``add(text)`` returns the units the text
completed, ``flush()`` returns whatever is held. Character, word, sentence, line and
paragraph buffers decide where a unit ends from the text alone, looking ahead only at
text that has arrived and holding back while they cannot yet tell, so the units do not
depend on how the input was cut into pieces. Time is linear in the input: held text is
kept as a list of pieces and only a short tail of it is ever scanned again.
"""
from __future__ import annotations

import enum
import re
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Union

from ._errors import ConfigError
from ._tokens import TokenCounter, estimate_tokens

__all__ = [
    "BufferType",
    "Buffer",
    "CharacterBuffer",
    "WordBuffer",
    "SentenceBuffer",
    "LineBuffer",
    "ParagraphBuffer",
    "TokenBuffer",
    "new_buffer",
    "new_buffer_with_token_threshold",
    "DEFAULT_ABBREVIATIONS",
]


class BufferType(str, enum.Enum):
    """The unit a buffer releases. Every API taking a ``BufferType`` also takes its value."""

    CHARACTER = "character"
    WORD = "word"
    SENTENCE = "sentence"
    LINE = "line"
    PARAGRAPH = "paragraph"
    TOKEN = "token"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def coerce(cls, value: Union["BufferType", str], field: str = "buffer_type") -> "BufferType":
        """Return the member for ``value`` (a member or its string value).

        Raises:
            ConfigError: ``value`` is not a buffer type; the message lists the allowed ones.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        allowed = ", ".join(repr(m.value) for m in cls)
        raise ConfigError(f"{field!r} must be one of {allowed} (got {value!r})")


# --- character classes -------------------------------------------------------------

# Whitespace that separates words. No-break spaces (U+00A0, U+2007, U+202F) are not in
# it: they exist to keep their neighbours together.
_WS = "\t\n\x0b\x0c\r\x1c-\x1f \x85\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000"
_WS_NOCR = _WS.replace("\r", "")
_WS_NOBR = "\t\x0b\x0c\x1c-\x1f \x85\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000"
# Scripts written without spaces (Han, kana, CJK punctuation and fullwidth forms): each
# character is a word of its own.
_CJK = (
    "\u2e80-\u2fdf\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff9f\U00020000-\U0003134f"
)
# Characters that stay attached to the character before them (closing punctuation,
# the prolonged sound mark), in CJK text and after it.
_CJK_ATTACH = (
    "\u3001\u3002\uff0c\uff0e\uff01\uff1f\uff1a\uff1b\u300d\u300f\uff09\u3011\u3015"
    "\u3009\u300b\u3017\u3019\u301b\u30fc\uff5e\u2026\u00b7"
    ".,!?:;)\\]}%'\"\u201d\u2019"
)
# Opening brackets of CJK text: they stay attached to the character after them.
_CJK_OPEN = "\u3008\u300a\u300c\u300e\u3010\u3014\u3016\u3018\u301a\u301d\uff08\uff3b\uff5b\uff5f\uff62"
# Opening punctuation of Western text (also kept with the word after it).
_OPEN_PUNCT = "\"'([{\u201c\u2018\u00ab\u2039\u00bf\u00a1*_`<"
_LINE_BREAK = r"(?:\r\n|\r|\n)"
# The same, where backtracking must not read "\r\n" as two breaks.
_ONE_BREAK = r"(?:\r\n|\r(?!\n)|\n)"

_WORD_CUT = re.compile(
    # before a CJK character that follows a word of another script ("English|中")
    rf"(?<=[^{_WS}{_CJK}{re.escape(_OPEN_PUNCT)}])(?=[{_CJK}])(?![{_CJK_ATTACH}])"
    # after the whitespace character that ends a word
    rf"|(?<=[^{_WS}])(?:\r\n|\r(?=[^\n])|[{_WS_NOCR}])"
    # after a CJK character, unless closing punctuation follows or it opens a bracket
    rf"|(?![{_CJK_OPEN}])[{_CJK}](?=[^{_WS}{_CJK_ATTACH}])"
)
_LINE_CUT = re.compile(r"\n|\r(?=[^\n])")
#: Every whitespace character of ``_WS``, for membership tests.
_SPACES = frozenset(c for c in map(chr, range(0x3001)) if re.fullmatch(f"[{_WS}]", c))
_WS_RUN = re.compile(rf"[{_WS}]+")
_BREAKS = re.compile(_LINE_BREAK)


class Buffer:
    """Base class of all buffers.

    Subclasses implement :meth:`_scan`, which sees each new piece of text once and
    returns where units end.
    """

    #: The buffer type this class implements.
    buffer_type: BufferType

    def __init__(self) -> None:
        self._parts: List[str] = []
        self._held = 0

    def add(self, text: str) -> List[str]:
        """Add text; return the units it completed, in order (``[]`` when none).

        Raises:
            TypeError: ``text`` is not a ``str``.
        """
        if type(text) is not str:
            if not isinstance(text, str):
                raise TypeError(f"buffer input must be str, not {type(text).__name__}")
        if not text:
            return []
        cuts = self._scan(text)
        if not cuts:
            self._parts.append(text)
            self._held += len(text)
            return []
        return self._cut(text, cuts)

    def _cut(self, text: str, cuts: List[int]) -> List[str]:
        # cuts are offsets into ``text``; negative ones fall inside the held text.
        held = self._held
        if len(cuts) == 1 and cuts[0] >= 0:  # the usual case
            cut = cuts[0]
            parts = self._parts
            unit = "".join(parts) + text[:cut] if parts else text[:cut]
            rest = text[cut:]
            self._parts = [rest] if rest else []
            self._held = len(rest)
            return [unit] if unit else []
        whole = "".join(self._parts) + text if self._parts else text
        out: List[str] = []
        start = 0
        for cut in cuts:
            end = cut + held
            if end > start:
                out.append(whole[start:end])
                start = end
        rest = whole[start:]
        self._parts = [rest] if rest else []
        self._held = len(rest)
        return out

    def flush(self) -> str:
        """Return everything held and empty the buffer."""
        text = "".join(self._parts)
        self._parts = []
        self._held = 0
        self._after_flush()
        return text

    def reset(self) -> None:
        """Drop everything held, and any memory of text seen before."""
        self._parts = []
        self._held = 0
        self._after_flush()
        self._after_reset()

    @property
    def pending(self) -> int:
        """How many characters are held."""
        return self._held

    # hooks -----------------------------------------------------------------------
    def _scan(self, text: str) -> List[int]:
        raise NotImplementedError

    def _after_flush(self) -> None:
        """The held text was released: the next text starts a new unit."""

    def _after_reset(self) -> None:
        """Forget all context."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} holding {self._held} chars>"


class CharacterBuffer(Buffer):
    """Releases every character (code point) at once."""

    buffer_type = BufferType.CHARACTER

    def add(self, text: str) -> List[str]:
        if not isinstance(text, str):
            raise TypeError(f"buffer input must be str, not {type(text).__name__}")
        return list(text)

    def _scan(self, text: str) -> List[int]:  # pragma: no cover - add() is overridden
        return list(range(1, len(text) + 1))


class _RegexBuffer(Buffer):
    """A buffer whose cuts are the ends of matches of a regex needing short context."""

    _pattern: "re.Pattern[str]"
    _context = 2  # characters of earlier text the pattern may need
    _ctx: str  # the last ``_context`` characters seen
    _cut_at_end: bool  # the last text ended with a cut

    def __init__(self) -> None:
        super().__init__()
        self._after_reset()

    #: Every match of ``_pattern`` starts at a character of this class: where there is
    #: none, there is nothing to find (a cheap test that skips most fragments).
    _trigger: "re.Pattern[str]"

    def _scan(self, text: str) -> List[int]:
        ctx = self._ctx
        n = len(ctx)
        window = ctx + text if ctx else text
        self._ctx = window[-self._context :]
        hit = self._trigger.search(window, n - 1 if n else 0)
        if hit is None:
            self._cut_at_end = False
            return []
        # A match ending exactly where the earlier text ended was either reported then
        # or was waiting for the character that has now arrived.
        first = n if self._cut_at_end else n - 1
        cuts = [m.end() - n for m in self._pattern.finditer(window, hit.start()) if m.end() > first]
        self._cut_at_end = bool(cuts) and cuts[-1] == len(text)
        return cuts

    def _after_reset(self) -> None:
        self._ctx = ""
        self._cut_at_end = False


class WordBuffer(_RegexBuffer):
    """Releases whole words, each with the whitespace character that ended it.

    A word ends at the first whitespace character after it (``\\r\\n`` counts as one),
    so ``"Hello world"`` is released as ``"Hello "`` then, at flush, ``"world"``; further
    whitespace goes with the next word. Characters of scripts written without spaces
    (Chinese, Japanese) are words of their own, keeping closing punctuation attached
    and opening brackets with the character after them (``"「你"``, ``"好」"``); a
    word of another script next to them is a word of its own (``"English"``, ``"中"``).
    No-break spaces do not end a word.
    """

    buffer_type = BufferType.WORD
    _pattern = _WORD_CUT
    _trigger = re.compile(f"[{_WS}{_CJK}]")
    _space = re.compile(f"[{_WS}]")
    _cjk = re.compile(f"[{_CJK}]")

    def _scan(self, text: str) -> List[int]:
        ctx = self._ctx
        n = len(ctx)
        start = n - 1 if n else 0
        window = ctx + text if ctx else text
        if not (text.isascii() and ctx.isascii()) and self._cjk.search(window, start):
            return super()._scan(text)  # the full rules
        # No CJK: a word ends after the whitespace character that follows it. This is
        # the same rule as the pattern's, done by hand because it is the hot path.
        self._ctx = window[-2:]
        space = self._space.search
        hit = space(window, start)
        if hit is None:
            self._cut_at_end = False
            return []
        first = n if self._cut_at_end else n - 1
        size = len(window)
        cuts: List[int] = []
        while hit is not None:
            p = hit.start()
            end = 0
            if p and window[p - 1] not in _SPACES:
                if window[p] != "\r":
                    end = p + 1
                elif p + 1 < size:
                    end = p + 2 if window[p + 1] == "\n" else p + 1
            if end > first:
                cuts.append(end - n)
            hit = space(window, max(p + 1, end))
        self._cut_at_end = bool(cuts) and cuts[-1] == len(text)
        return cuts


class LineBuffer(_RegexBuffer):
    """Releases whole lines, each with its line ending (``\\n``, ``\\r\\n`` or ``\\r``)."""

    buffer_type = BufferType.LINE
    _pattern = _LINE_CUT
    _trigger = re.compile("[\r\n]")
    _context = 1


class ParagraphBuffer(Buffer):
    """Releases whole paragraphs: text up to and including a blank line.

    A paragraph ends after the last line break of a run of whitespace holding at least
    two line breaks; indentation after it goes with the next paragraph. The end is
    decided when the first non-whitespace character after the run arrives.
    """

    buffer_type = BufferType.PARAGRAPH

    def __init__(self) -> None:
        super().__init__()
        self._after_reset()

    def _after_reset(self) -> None:
        self._seen_text = False  # any non-whitespace since the start
        self._in_run = False  # the text so far ends in whitespace
        self._run_has_text_before = False
        self._breaks = 0  # line breaks in the current run
        self._last_break = 0  # offset after the run's last break, relative to this text
        self._ends_cr = False  # the run so far ends with "\r"

    def _scan(self, text: str) -> List[int]:
        cuts: List[int] = []
        i = 0
        n = len(text)
        # offsets stored from earlier calls are relative to the previous text
        self._last_break -= self._prev_len if self._in_run else 0
        while i < n:
            if not self._in_run:
                m = _WS_RUN.search(text, i)
                if m is None:
                    self._seen_text = True
                    break
                if m.start() > i:
                    self._seen_text = True
                self._in_run = True
                self._run_has_text_before = self._seen_text
                self._breaks = 0
                self._ends_cr = False
                i = m.start()
            m = _WS_RUN.match(text, i)
            if m is not None:
                run = m.group()
                breaks = len(_BREAKS.findall(run))
                if self._ends_cr and run[0] == "\n":
                    breaks -= 1  # "\r" + "\n" split across two pieces is one break
                if breaks or (self._ends_cr and run[0] == "\n"):
                    last = max(run.rfind("\n"), run.rfind("\r"))
                    self._last_break = i + last + 1
                self._breaks += breaks
                self._ends_cr = run[-1] == "\r"
                i = m.end()
                if i == n:
                    break
            # a non-whitespace character ends the run
            if self._breaks >= 2 and self._run_has_text_before:
                cuts.append(self._last_break)
            self._in_run = False
            self._seen_text = True
        self._prev_len = n
        return cuts

    _prev_len = 0


_CLOSE_PUNCT = ")]}\"'\u201d\u2019\u00bb\u203a\u300d\u300f\u3011\u3015\u3009\u300b\uff09\uff1e*_`>"

#: Abbreviations the sentence buffer knows, by the rule that applies to them.
DEFAULT_ABBREVIATIONS: Dict[str, FrozenSet[str]] = {
    # Titles come before a name: never the end of a sentence.
    "title": frozenset(
        "mr mrs ms mx dr prof rev fr sr sra srta hon gen col capt cpt lt sgt maj cmdr adm "
        "gov sen rep pres supt insp messrs mme mlle mt st".split()
    ),
    # Latin and reference abbreviations that are followed by more of the sentence.
    "continuing": frozenset(
        "e.g eg i.e ie cf viz vs v approx ca incl esp resp w.r.t a.k.a aka".split()
    ),
    # Abbreviations that come before a number: months, units, references.
    "numeric": frozenset(
        "jan feb mar apr jun jul aug sep sept oct nov dec no nos nr fig figs vol vols "
        "p pp ch chap sec sect art arts eq eqs ref refs ed eds ver vers op pt pts par para "
        "approx ca est min max avg tel ph ext oz lb lbs ft in yd mi km cm mm kg mg hr hrs "
        "sec secs gal qt pt sq cu deg mo".split()
    ),
}

# Runs of terminators and of closing punctuation are matched in bounded pieces, so that
# re-reading a run that may still grow costs a bounded time (a longer run is read as
# several terminators, only the last of which can end a sentence).
_TERM = re.compile(
    r"(?P<term>\.{2,16}|\u2026{1,16}|[.!?\u203d][.!?\u203d\u2026]{0,15}"
    r"|[\u3002\uff01\uff1f\uff61][\u3002\uff01\uff1f\uff61!?]{0,15})"
    rf"(?P<close>[{re.escape(_CLOSE_PUNCT)}]{{0,16}})"
    rf"(?P<ws>[{_WS}]*)"
    rf"|(?P<para>{_ONE_BREAK}(?:[{_WS_NOBR}]*{_ONE_BREAK})+[{_WS}]*)"
)
_OPEN_BREAK = re.compile(rf"{_LINE_BREAK}[{_WS_NOBR}]*\Z")
_WORD_BEFORE = re.compile(rf"[^{_WS}]{{1,32}}\Z")
_WORD_AND_SPACE_BEFORE = re.compile(rf"([^{_WS}]{{1,32}})[{_WS}]+\Z")
# A list marker: a number, a letter, or a roman numeral up to 39 written in one case.
_LIST_MARKER = re.compile(
    r"(?:\d{1,3}|[A-Za-z]|x{0,3}(?:ix|iv|v?i{0,3})|X{0,3}(?:IX|IV|V?I{0,3}))\Z"
)
_INITIAL = re.compile(r"[A-Z]\Z")
_LEADING_WS = re.compile(rf"[{_WS}]*")
_NON_WS = re.compile(rf"[^{_WS}]")
_IS_WS = re.compile(rf"[{_WS}]")
# Opening quotes and brackets skipped to find the first letter of the next sentence
# (not "`" and "<": code after a sentence usually starts in lowercase).
_SKIP_OPEN = "\"'([{\u201c\u2018\u201e\u00ab\u2039\u00bf\u00a1*_" + _CJK_OPEN
_MAX_OPEN = 4  # at most this many are skipped
_LOOKAHEAD = _MAX_OPEN + 2  # characters after the spaces a decision may need


def _count_breaks(ws: str, after_cr: bool) -> int:
    n = len(_BREAKS.findall(ws))
    if after_cr and ws[:1] == "\n":
        n -= 1
    return n


def _abbreviation_set(abbreviations: Any, rule: str) -> FrozenSet[str]:
    words = abbreviations.get(rule, ())
    if isinstance(words, str) or not all(isinstance(w, str) for w in words):
        raise TypeError(f"abbreviations[{rule!r}] must be a set of strings (got {words!r})")
    return frozenset(w.strip().lower().rstrip(".") for w in words)


class SentenceBuffer(Buffer):
    """Releases whole sentences, each with the whitespace after it.

    A sentence ends at ``.``, ``!``, ``?``, ``…`` or a run of them, with any closing
    quotes or brackets after it, followed by whitespace; or at ``。``, ``！``, ``？``
    (no whitespace needed, closing brackets such as ``」`` stay with the sentence); or
    at a blank line, whatever comes before it. The decision waits for the first letter
    of the next word (opening quotes and brackets before it are skipped), so the buffer
    never guesses:

    * after ``!`` or ``?`` the sentence ends unless a lowercase letter comes next
      (``"Wow!" he said``); after ``...`` or ``…`` it ends only before a capital;
    * after ``.``, a lowercase letter next means the sentence goes on (``e.g. this``,
      ``U.S.A. today``, ``etc. are``);
    * a title (``Dr.``, ``Mr.``, ``St.``) and a Latin abbreviation (``e.g.``, ``i.e.``,
      ``cf.``, ``vs.``) never end a sentence, whatever follows; ``etc.`` is not one of
      them, so ``etc. Then`` ends a sentence;
    * an abbreviation that comes before a number (months, units, references:
      ``Jan. 5``, ``Fig. 3``, ``5 ft. 3 in.``, ``No. 7``) does not end a sentence before
      a digit on the same line, and does before a capital (``It was Jan. Then...``) or
      a numbered list on the next line (``It takes 5 min.\n2. Next``);
    * a list marker at the start of a line or sentence (``1.``, ``a.``, ``IV.``) does
      not end one;
    * a single capital letter is an initial, not an end, after a capitalised word or
      another initial (``John F. Kennedy``, ``Mr. J. R. R. Tolkien``) and when another
      initial follows (``by J. K. Rowling``); after a lowercase word and before a
      capitalised word it ends the sentence (``plan B. Then``, so also ``by J. Smith``);
    * any other word, dotted acronyms included, ends the sentence before a capital:
      ``the U.S. He left`` and also ``the U.S. Army`` (the text alone cannot tell them
      apart); a period with no whitespace after it never does (``3.14``,
      ``example.com``), nor does one followed by a no-break space.

    Args:
        abbreviations: replaces :data:`DEFAULT_ABBREVIATIONS` (a mapping with keys
            ``"title"``, ``"continuing"`` and ``"numeric"``, each a set of
            abbreviations; case and a final period are ignored).
    """

    buffer_type = BufferType.SENTENCE
    _CTX = 160  # characters of the current sentence kept for look-behind
    _LOOKBEHIND = 128  # at least what _describe reads before a terminator (99)

    def __init__(self, abbreviations: Optional[Mapping[str, Iterable[str]]] = None) -> None:
        super().__init__()
        abbr: Any = DEFAULT_ABBREVIATIONS if abbreviations is None else abbreviations
        try:
            self._titles = _abbreviation_set(abbr, "title")
            self._continuing = _abbreviation_set(abbr, "continuing")
            self._numeric = _abbreviation_set(abbr, "numeric")
        except (AttributeError, TypeError) as exc:
            raise ConfigError(
                "'abbreviations' must be a mapping of 'title', 'continuing' and 'numeric' "
                f"to sets of strings (got {abbreviations!r}: {exc})"
            ) from None
        self._after_reset()

    def _after_flush(self) -> None:
        self._ctx = ""  # tail of the current sentence
        self._unit_len = 0  # characters in the current sentence
        self._rescan = 0  # characters at the end of _ctx to scan again
        # a terminator (or blank line, or line break) waiting for the first non-space
        # character: (kind, word before it, at line start, the word before that is
        # lowercase); for a line break, the third is "there was text before it"
        self._waiting: Optional[Tuple[str, str, bool, bool]] = None
        self._breaks = 0  # line breaks after the waiting terminator
        self._ends_cr = False
        self._look = ""  # what arrived after those spaces, too little to decide

    def _after_reset(self) -> None:
        self._after_flush()
        self._seen_text = False  # any non-whitespace character since the start

    def _scan(self, text: str) -> List[int]:
        cuts: List[int] = []
        i = 0
        if self._waiting is not None:
            old = self._look
            j = 0
            if not old:
                m = _LEADING_WS.match(text)
                j = m.end() if m else 0
                if j:
                    self._breaks += _count_breaks(text[:j], self._ends_cr)
                    self._ends_cr = text[j - 1] == "\r"
                if j == len(text):
                    self._ctx = (self._ctx + text)[-self._CTX :]
                    self._unit_len += j
                    return cuts
            look = old + text[j : j + _LOOKAHEAD]
            verdict = self._decide(self._waiting, look, self._breaks)
            if verdict is None:
                # still too little to decide: all of ``text`` is in ``look``
                self._look = look
                self._ctx = (self._ctx + text)[-self._CTX :]
                self._unit_len += len(text)
                return cuts
            self._waiting = None
            self._look = ""
            if verdict:
                # the new sentence starts with what was looked at, some of it held
                cuts.append(j - len(old))
                ctx = old
                self._unit_len = len(old)
            else:
                ctx = self._ctx + text[:j]
                self._unit_len += j
            i = j
            start = len(ctx) - len(old)  # scan what was looked at like new text
        else:
            ctx = self._ctx
            start = len(ctx) - self._rescan
        window = ctx + text[i:] if ctx else text[i:] if i else text
        shift = i - len(ctx)  # window offset -> text offset
        unit_lo = len(ctx) - self._unit_len  # where the sentence starts in the window
        self._rescan = 0
        keep_from = len(window)
        n = len(window)
        for m in _TERM.finditer(window, start):
            end = m.end()
            if m.group("para") is not None:
                if end == n:
                    if self._seen_text or _NON_WS.search(window, 0, m.start()) is not None:
                        self._wait(("para", "", False, False), m.group("para"))
                        keep_from = m.start()
                        break
                    continue
                if not self._seen_text and _NON_WS.search(window, 0, m.start()) is None:
                    continue  # only whitespace so far: nothing to end
                cuts.append(end + shift)
                unit_lo = end
                continue
            term = m.group("term")
            ws = m.group("ws")
            if end == n:
                info = self._describe(window, m.start(), term, unit_lo)
                if ws:
                    self._wait(info, ws)
                    keep_from = m.start()
                else:
                    self._rescan = n - m.start()
                    keep_from = m.start()
                break
            if not ws and info_is_western(term):
                continue
            info = self._describe(window, m.start(), term, unit_lo)
            look = window[end : end + _LOOKAHEAD]
            verdict = self._decide(info, look, _count_breaks(ws, False))
            if verdict is None:
                # the rest of the window is too short to decide: wait for more
                self._wait(info, ws)
                self._look = look
                keep_from = m.start()
                break
            if verdict:
                cuts.append(end + shift)
                unit_lo = end
        else:
            m2 = _OPEN_BREAK.search(window, max(start, unit_lo, 0))
            if m2 is not None:
                # a line break at the end: a blank line if another one follows
                has_text = self._seen_text or _NON_WS.search(window, 0, m2.start()) is not None
                self._wait(("line", "", has_text, False), m2.group())
                keep_from = m2.start()
        if not self._seen_text and _NON_WS.search(window) is not None:
            self._seen_text = True
        lo = max(unit_lo, 0)
        ctx_from = max(lo, min(n - self._CTX, keep_from - self._LOOKBEHIND))
        self._ctx = window[ctx_from:]
        self._unit_len = n - unit_lo
        return cuts

    def _wait(self, info: Tuple[str, str, bool, bool], ws: str) -> None:
        self._waiting = info
        self._breaks = _count_breaks(ws, False)
        self._ends_cr = ws[-1:] == "\r"

    def _describe(
        self, window: str, term_at: int, term: str, unit_lo: int
    ) -> Tuple[str, str, bool, bool]:
        """Classify a terminator and capture the words before it."""
        first = term[0]
        if first in "\u3002\uff01\uff1f\uff61":
            return ("cjk", "", False, False)
        if "!" in term or "?" in term or "\u203d" in term:
            kind = "bang"
        elif term == ".":
            kind = "period"
        else:
            kind = "ellipsis"
        if kind != "period":
            return (kind, "", False, False)
        lo = max(unit_lo, 0, term_at - 33)
        m = _WORD_BEFORE.search(window, lo, term_at)
        if m is None:
            return (kind, "", False, False)
        word_at = m.start()
        word = m.group()
        # a list number starts a line or a sentence
        at_line_start = word_at == unit_lo or (word_at > 0 and window[word_at - 1] in "\n\r")
        before_lower = False
        if _INITIAL.search(word.strip(_OPEN_PUNCT)):
            m2 = _WORD_AND_SPACE_BEFORE.search(window, max(unit_lo, 0, word_at - 66), word_at)
            if m2 is not None:
                prev = m2.group(1).strip(_OPEN_PUNCT + _CLOSE_PUNCT + ",;:")
                before_lower = prev[:1].islower() and prev.lower() not in self._titles
        return (kind, word, at_line_start, before_lower)

    def _decide(self, info: Tuple[str, str, bool, bool], look: str, breaks: int) -> Optional[bool]:
        """Is there a sentence boundary, given what follows the spaces?

        ``look`` is the text after the spaces (at most ``_LOOKAHEAD`` characters, fewer
        when no more has arrived). Returns None when that is too little to tell.
        """
        kind, word, at_line_start, before_lower = info
        if kind == "line":  # no terminator: only a blank line ends the sentence
            return breaks >= 2 and at_line_start  # (there was text before it)
        if kind in ("cjk", "para") or breaks >= 2:
            return True
        # the first character of the next word, after any opening quotes or brackets
        k = 0
        limit = min(len(look), _MAX_OPEN)
        while k < limit and look[k] in _SKIP_OPEN:
            k += 1
        if k == len(look) and k < _MAX_OPEN:
            return None
        at = 0 if k == len(look) or k == _MAX_OPEN or _IS_WS.match(look, k) else k
        nxt = look[at]
        if kind == "bang":
            return not nxt.islower()
        if kind == "ellipsis":
            return nxt.isupper()
        if nxt.islower():
            return False
        core = word.strip(_OPEN_PUNCT).strip(_CLOSE_PUNCT + _OPEN_PUNCT)
        low = core.lower()
        if low in self._titles or low in self._continuing:
            return False
        if nxt.isdigit() and low in self._numeric and not breaks:
            return False  # "Fig. 3", but not "5 min.\n2. Next step"
        if at_line_start and core and _LIST_MARKER.match(core):
            return False
        if len(core) == 1 and _INITIAL.match(core):
            if not before_lower:
                return False  # John F. Kennedy, J. R. R. Tolkien
            if "A" <= nxt <= "Z":
                # another initial next ("by J. K. Rowling") goes on
                if at + 1 == len(look):
                    return None
                return look[at + 1] != "."
        return True


def info_is_western(term: str) -> bool:
    """A Western terminator needs whitespace after it to end a sentence."""
    return term[0] not in "\u3002\uff01\uff1f\uff61"


class TokenBuffer(Buffer):
    """Releases what it holds once it holds at least ``threshold`` tokens.

    Tokens are the counts a source reported (see :meth:`add`) or, for text without a
    reported count, the token counter's estimate.
    """

    buffer_type = BufferType.TOKEN

    def __init__(self, threshold: int = 5, counter: Optional[TokenCounter] = None) -> None:
        super().__init__()
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"'threshold' must be an int >= 1 (got {threshold!r})")
        self.threshold = threshold
        self._count: TokenCounter = counter or estimate_tokens
        self._reported = 0
        self._unreported: List[str] = []

    def add(self, text: str, tokens: Optional[int] = None) -> List[str]:
        """Add text, with its token count when the source reported one."""
        if not isinstance(text, str):
            raise TypeError(f"buffer input must be str, not {type(text).__name__}")
        if not text and not tokens:
            return []
        self._parts.append(text)
        self._held += len(text)
        if tokens is not None:
            self._reported += tokens
        else:
            self._unreported.append(text)
        held_tokens = self._reported
        if self._unreported:
            held_tokens += self._count("".join(self._unreported))
        if held_tokens >= self.threshold and self._held:
            return [self.flush()]
        return []

    def _after_flush(self) -> None:
        self._reported = 0
        self._unreported = []

    def _scan(self, text: str) -> List[int]:  # pragma: no cover - add() is overridden
        return []


_CLASSES = {
    BufferType.CHARACTER: CharacterBuffer,
    BufferType.WORD: WordBuffer,
    BufferType.SENTENCE: SentenceBuffer,
    BufferType.LINE: LineBuffer,
    BufferType.PARAGRAPH: ParagraphBuffer,
    BufferType.TOKEN: TokenBuffer,
}


def new_buffer(buffer_type: Union[BufferType, str], **options: object) -> Buffer:
    """Create a buffer of the given type.

    Args:
        buffer_type: a :class:`BufferType` or its value (``"word"``...).
        **options: passed to the buffer class (``threshold`` and ``counter`` for
            token buffers, ``abbreviations`` for sentence buffers).

    Raises:
        ConfigError: unknown buffer type, or an option the type does not take.
    """
    kind = BufferType.coerce(buffer_type)
    cls: Callable[..., Buffer] = _CLASSES[kind]
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"bad option for a {kind.value} buffer: {exc}") from None


def new_buffer_with_token_threshold(
    buffer_type: Union[BufferType, str], threshold: int, counter: Optional[TokenCounter] = None
) -> Buffer:
    """Create a buffer; for token buffers, with the given threshold.

    The threshold is ignored for the other buffer types, as in the guide.
    """
    kind = BufferType.coerce(buffer_type)
    if kind is BufferType.TOKEN:
        return TokenBuffer(threshold, counter)
    return new_buffer(kind)
