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
from typing import (
    Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Mapping, Optional, Tuple, Union,
)

from ._errors import ConfigError
from ._sentences import (
    WS,
    WS_CHARS,
    ABBREVIATION_KINDS,
    BLOCK_LINES,
    BULLETS,
    HEAD_MARKER,
    NOSPACE_TERMINATORS,
    QUOTE_REACH,
    SHARED_TERMINATORS,
    Spot,
    decide,
    glued_boundary,
    line_kind,
    load_language,
    maybe_longer,
    spot_end,
)
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
_WS = WS  # one definition, in _sentences
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
_SPACES = frozenset(WS_CHARS)
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

    def add(self, text: str) -> List[str]:
        # The hot path, in one frame: ASCII text whose only whitespace is at most one
        # space (most pieces of a token stream), after context that does not end with
        # a "\r" (the one character whose cut waits for the next). The rule is the
        # same as in ``_scan``: a word ends after the whitespace character that follows
        # it. Everything else goes the general way.
        ctx = self._ctx
        if (
            text.__class__ is str
            and text.isascii()
            and text.isprintable()  # ASCII: no whitespace but the space
            and ctx.isascii()
            and not ctx.endswith("\r")
        ):
            if not text:
                return []
            p = text.find(" ")
            if p < 0 or text.find(" ", p + 1) < 0:
                self._ctx = text[-2:] if len(text) > 1 else ctx[-1:] + text
                if p < 0 or not (text[p - 1] if p else ctx[-1:]).strip():
                    # no space, or one that follows whitespace (or nothing): no cut
                    self._cut_at_end = False
                    self._parts.append(text)
                    self._held += len(text)
                    return []
                cut = p + 1
                self._cut_at_end = cut == len(text)
                parts = self._parts
                unit = "".join(parts) + text[:cut] if parts else text[:cut]
                rest = text[cut:]
                self._parts = [rest] if rest else []
                self._held = len(rest)
                return [unit]
        return super().add(text)

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


_FENCE = re.compile(r"[ \t]*(?:```|~~~)")
_FENCE_PREFIX = re.compile(r"[ \t]*(?:`{0,2}|~{0,2})\Z")


class _Fences:
    """Follows fenced code blocks (lines starting with ```` ``` ```` or ``~~~``) through
    text arriving in pieces, for the paragraph buffer."""

    def __init__(self) -> None:
        self.inside = False
        self._head: Optional[str] = ""  # the current line so far, while it may be a fence

    def feed(self, text: str) -> List[Tuple[int, bool]]:
        """Where (offsets in ``text``; negative: a line that began earlier) a fence line
        starts, with the state after it."""
        head = self._head
        if head is None and "\n" not in text and "\r" not in text:
            return []  # the usual case: no line starts here
        out: List[Tuple[int, bool]] = []
        starts = [m.end() for m in _BREAKS.finditer(text)]
        self._head = None
        if head is not None:
            self._check(head + text[:16], -len(head), len(head) + len(text), out)
        for start in starts:
            self._check(text[start:start + 16], start, len(text) - start, out)
        return out

    def _check(self, line: str, start: int, available: int, out: List[Tuple[int, bool]]) -> None:
        if _FENCE.match(line):
            self.inside = not self.inside
            out.append((start, self.inside))
        elif available <= 16 and _FENCE_PREFIX.match(line):
            self._head = line  # "``" may become "```"

    @staticmethod
    def inside_before(at: int, toggles: List[Tuple[int, bool]], inside: bool) -> bool:
        """Was the text inside a code block just before offset ``at``?"""
        for start, state in toggles:
            if start < at:
                inside = state
        return inside


class ParagraphBuffer(Buffer):
    """Releases whole paragraphs: text up to and including a blank line.

    A paragraph ends after the last line break of a run of whitespace holding at least
    two line breaks; indentation after it goes with the next paragraph. The end is
    decided when the first non-whitespace character after the run arrives. A fenced
    code block (from a line starting with ```` ``` ```` or ``~~~`` to the next such
    line) is never split, whatever blank lines it holds.
    """

    buffer_type = BufferType.PARAGRAPH

    def __init__(self) -> None:
        super().__init__()
        self._after_reset()

    def _after_reset(self) -> None:
        self._fences = _Fences()
        self._seen_text = False  # any non-whitespace since the start
        self._in_run = False  # the text so far ends in whitespace
        self._run_has_text_before = False
        self._breaks = 0  # line breaks in the current run
        self._last_break = 0  # offset after the run's last break, relative to this text
        self._ends_cr = False  # the run so far ends with "\r"

    def _scan(self, text: str) -> List[int]:
        cuts: List[int] = []
        was_inside = self._fences.inside
        toggles = self._fences.feed(text)
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
                if not self._fences.inside_before(self._last_break, toggles, was_inside):
                    cuts.append(self._last_break)
            self._in_run = False
            self._seen_text = True
        self._prev_len = n
        return cuts

    _prev_len = 0


class _DefaultAbbreviations(Mapping[str, FrozenSet[str]]):
    """English's abbreviations by kind, read from its data file on first use."""

    def _sets(self) -> Dict[str, FrozenSet[str]]:
        lang = load_language("en")
        return {kind: getattr(lang, kind) for kind in ABBREVIATION_KINDS}

    def __getitem__(self, key: str) -> FrozenSet[str]:
        return self._sets()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(ABBREVIATION_KINDS)

    def __len__(self) -> int:
        return len(ABBREVIATION_KINDS)

    def __repr__(self) -> str:
        return f"DEFAULT_ABBREVIATIONS({self._sets()!r})"


#: The abbreviations the English sentence buffer knows, by kind (see
#: ``helixstream/data/sentence/en.yaml``).
DEFAULT_ABBREVIATIONS: Mapping[str, FrozenSet[str]] = _DefaultAbbreviations()


def _check_abbreviations(abbreviations: Any) -> Dict[str, List[str]]:
    if not isinstance(abbreviations, Mapping):
        raise TypeError("not a mapping")
    out: Dict[str, List[str]] = {}
    for kind in ABBREVIATION_KINDS:
        words = abbreviations.get(kind, ())
        if isinstance(words, str) or not all(isinstance(w, str) for w in words):
            raise TypeError(f"abbreviations[{kind!r}] must be a set of strings (got {words!r})")
        out[kind] = list(words)
    return out


_NON_WS = re.compile(f"[^{_WS}]")
_CAND_CHARS = frozenset("\r\n.!?)\u2026" + NOSPACE_TERMINATORS + SHARED_TERMINATORS + BULLETS)
_NOT_TEXT = frozenset(("code", "fence_open", "fence_close", "heading", "table"))


class SentenceBuffer(Buffer):
    """Releases whole sentences, each with the whitespace after it.

    A sentence ends at a terminator (``.``, ``!``, ``?``, ``…``, a run of them, and the
    terminators of other scripts such as ``。`` ``؟`` ``।``) with any closing quotes or
    brackets after it; at a blank line; and around markdown blocks: a heading, a list
    item, a table row, a block-quote line and a whole fenced code block are units of
    their own, and nothing inside a code fence ends one. Whether a terminator ends a
    sentence is decided by a table of named rules (``helixstream/_sentences.py``,
    described in ``docs/guide.md``) from the words around it: abbreviations, initials,
    acronyms, ordinals, lists, quotations, the case of the next word. The decision
    waits until the text it needs has arrived (usually the first letter of the next
    word), so it never guesses and never depends on how the input was cut.

    Args:
        abbreviations: replaces the language's abbreviations: a mapping with the keys
            ``"title"``, ``"continuing"``, ``"numeric"`` and ``"ending"``, each a set of
            abbreviations (case and a final period are ignored; missing keys are empty).
        language: ISO 639-1 code of the text's language (``"en"``); its abbreviations,
            terminators and sentence starters come from
            ``helixstream/data/sentence/<code>.yaml``. CJK terminators work in every
            language.

    Raises:
        ConfigError: an unknown language or malformed abbreviations.
    """

    buffer_type = BufferType.SENTENCE
    #: Characters of text kept before the first undecided candidate: every rule looks
    #: back at most this far (quotations: ``QUOTE_REACH``).
    _KEEP = QUOTE_REACH + 80

    def __init__(
        self,
        abbreviations: Optional[Mapping[str, Iterable[str]]] = None,
        language: str = "en",
    ) -> None:
        super().__init__()
        lang = load_language(language)
        if abbreviations is not None:
            try:
                lang = lang.with_abbreviations(_check_abbreviations(abbreviations))
            except (AttributeError, TypeError) as exc:
                raise ConfigError(
                    "'abbreviations' must be a mapping of 'title', 'continuing', 'numeric' "
                    f"and 'ending' to sets of strings (got {abbreviations!r}: {exc})"
                ) from None
        self.language: str = lang.code
        self._lang = lang
        #: When a list, every decision is appended to it as (offset, rule name, boundary)
        #: (for tests and for finding out why text was split where it was).
        self._trace: Optional[List[Tuple[int, str, bool]]] = None
        self._find = lang.candidates.search
        self._triggers = _CAND_CHARS | frozenset(lang.terminators)
        self._after_reset()

    def _after_flush(self) -> None:
        # Offsets are absolute (from the start of the stream, or the last flush). What
        # is known about the current line (markdown kind, code fence) is kept: a flush
        # by ``max_delay`` may come in the middle of a code block.
        self._win = ""  # the text from offset _base on
        self._base = 0
        self._total = 0  # characters seen
        self._scan_at = 0  # candidates before this offset are decided
        self._unit = 0  # where the current sentence starts
        self._head: Optional[Tuple[str, str, str]] = None  # its list marker, once trimmed
        self._head_known = False
        self._line = 0  # where the current line starts
        # Waiting for the first non-space character after a candidate: whitespace
        # arriving meanwhile cannot decide anything and is set aside in _ws_tail.
        self._wait_ws = False
        self._ws_tail: List[str] = []
        self._text_at = -1  # offset of the first non-space character (-1: none yet)

    def _after_reset(self) -> None:
        self._after_flush()
        self._kind: Optional[str] = None  # the current line's kind, None until known
        self._fence = False  # inside a fenced code block

    # scanning ------------------------------------------------------------------------
    def _scan(self, text: str) -> List[int]:
        start = self._total
        self._total = total = start + len(text)
        m = _NON_WS.search(text)
        if self._wait_ws:
            if m is None:
                # still waiting for the end of a run of whitespace: set it aside, so
                # that a long run costs linear time
                self._ws_tail.append(text)
                return []
            self._win += "".join(self._ws_tail)
            self._ws_tail = []
            self._wait_ws = False
        if self._text_at < 0 and m is not None:
            self._text_at = start + m.start()
        self._win += text
        if self._scan_at == start and self._kind is not None:
            if len(text) == 1:
                if text not in self._triggers:
                    self._scan_at = total
                    if len(self._win) > 3 * self._KEEP:
                        self._trim()
                    return []
        cuts: List[int] = []
        self._run(cuts)
        self._trim()
        return [c - start for c in cuts]

    def _run(self, cuts: List[int]) -> None:
        win = self._win
        base = self._base
        pos = self._scan_at - base
        find = self._find
        while True:
            if self._kind is None:
                kind = line_kind(win, max(self._line - base, 0))
                if kind is None:
                    break
                self._enter_line(kind)
            m = find(win, pos)
            if m is None:
                pos = len(win)
                break
            group = m.lastgroup
            if group == "nl":
                nxt = self._line_break(win, m.start(), cuts)
            elif self._kind in _NOT_TEXT:
                nxt = m.end()
            elif group == "term":
                nxt = self._terminator(win, m.start(), m.end(), cuts)
            else:
                nxt = self._list_item(win, m.start(), group == "bullet", cuts)
            if nxt is None:
                pos = m.start()
                break
            pos = nxt
        self._scan_at = base + pos

    def _trim(self) -> None:
        base = self._base
        keep_from = self._scan_at - self._KEEP
        if keep_from - base <= 2 * self._KEEP:
            return
        if self._unit < keep_from and not self._head_known:
            u = self._unit - base
            self._head = self._parse_head(self._win, u, u + 16)
            self._head_known = True
        self._win = self._win[keep_from - base:]
        self._base = keep_from

    def _add_cut(self, cut: int, cuts: List[int]) -> None:
        if cut > self._unit and cut <= self._total:
            cuts.append(cut)
            self._unit = cut
            self._head = None
            self._head_known = False

    # lines ---------------------------------------------------------------------------
    def _enter_line(self, kind: str) -> None:
        if self._fence:
            if kind == "fence":
                self._fence = False
                self._kind = "fence_close"
            else:
                self._kind = "code"
        elif kind == "fence":
            self._fence = True
            self._kind = "fence_open"
        else:
            self._kind = kind

    def _line_break(self, win: str, at: int, cuts: List[int]) -> Optional[int]:
        """A line ends at ``at``: a boundary after a blank line, a markdown block line or
        a code block, and before a block line or a code block."""
        m = _NON_WS.search(win, at)
        if m is None:
            self._wait_ws = True
            return None
        nxt = m.start()
        run = win[at:nxt]
        last = max(run.rfind("\n"), run.rfind("\r"))
        line = at + last + 1
        kind = line_kind(win, line)
        if kind is None:
            return None
        base = self._base
        cur = self._kind
        rule = ""
        if cur in ("code", "fence_open", "fence_close"):
            rule = "code-block" if cur == "fence_close" else ""  # nothing splits a block
        elif run.count("\n") + run.count("\r") - run.count("\r\n") >= 2:
            if 0 <= self._text_at < base + at:
                rule = "blank-line"
        elif cur in BLOCK_LINES or kind in BLOCK_LINES:
            rule = "markdown-block"
        elif kind == "fence":
            rule = "code-block"
        if rule:
            self._add_cut(base + nxt, cuts)
            if self._trace is not None:
                self._trace.append((base + nxt, rule, True))
        self._line = base + line
        self._enter_line(kind)
        return nxt

    # terminators ---------------------------------------------------------------------
    def _terminator(self, win: str, at: int, end: int, cuts: List[int]) -> Optional[int]:
        term = win[at:end]
        if term[-1] == "." and maybe_longer(win, end, term):
            return None  # ". ." may be the start of ". . ."
        close, next_at = spot_end(win, end)
        if next_at < 0:
            if _NON_WS.search(win, close) is None:
                self._wait_ws = True  # only whitespace (if anything) after the closers
            # else a no-break space at the very end ("! " may become "! »"): look again
            # when the next character arrives
            return None
        if next_at == close and term[0] not in NOSPACE_TERMINATORS:
            # "3.14", "example.com": the rule "no-whitespace", without building a Spot
            if not glued_boundary(win, at, term, close):
                if self._trace is not None:
                    self._trace.append((self._base + at, "no-whitespace", False))
                return close
        base = self._base
        unit = self._unit - base
        if term == "." and next_at > close:
            self._inline_list(win, at, end, close, cuts)
            unit = self._unit - base
        spot = Spot(
            win, at, end, close, next_at, max(unit, at - self._KEEP + 40, 0), self._lang,
            max(self._line - base, 0),
        )
        verdict, rule = decide(spot)
        if verdict is None:
            return None
        if self._trace is not None:
            self._trace.append((base + at, rule, verdict))
        if verdict:
            if " " in term and at > 0 and win[at - 1] not in _SPACES and term.count(".") >= 4:
                self._add_cut(base + at + 2, cuts)  # "word. . . . Next": after "word. "
            else:
                self._add_cut(base + next_at, cuts)
        return close

    # lists written on one line ---------------------------------------------------------
    def _parse_head(self, win: str, at: int, stop: int) -> Optional[Tuple[str, str, str]]:
        m = HEAD_MARKER.match(win, at, stop)
        if m is None:
            return None
        return ((m.group("bullet") or "")[:1], m.group("mark"), m.group("style"))

    def _unit_head(self, win: str, stop: int) -> Optional[Tuple[str, str, str]]:
        if self._head_known:
            return self._head
        u = self._unit - self._base
        return self._parse_head(win, max(u, 0), min(u + 16, stop)) if u >= 0 else None

    def _inline_list(self, win: str, at: int, end: int, close: int, cuts: List[int]) -> None:
        """``1. one 2. two``, ``a. one b. two``, ``1.) one 2.) two``: the next marker of
        a list the sentence started with starts a new unit."""
        head = self._unit_head(win, at)
        if head is None or head[0]:
            return
        _, mark, style = head
        if (style == ".)") != (win[end:close] == ")") or style == ")":
            return
        self._cut_before_successor(win, at, mark, cuts)

    def _cut_before_successor(self, win: str, at: int, mark: str, cuts: List[int]) -> None:
        succ = str(int(mark) + 1) if mark.isdigit() else chr(ord(mark) + 1)
        start = at - len(succ)
        if start > 0 and win.startswith(succ, start) and win[start - 1] in _SPACES:
            self._add_cut(self._base + start, cuts)
            if self._trace is not None:
                self._trace.append((self._base + start, "inline-list", True))

    def _list_item(self, win: str, at: int, bullet: bool, cuts: List[int]) -> Optional[int]:
        head = self._unit_head(win, at)
        if head is None:
            return at + 1
        if bullet:
            if head[0] == win[at] and at > 0 and win[at - 1] in _SPACES:
                self._add_cut(self._base + at, cuts)
                if self._trace is not None:
                    self._trace.append((self._base + at, "inline-list", True))
        elif head[2] == ")" and not head[0]:
            if at + 1 >= len(win):
                return None
            if win[at + 1] in _SPACES:
                self._cut_before_successor(win, at, head[1], cuts)
        return at + 1


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
            token buffers, ``language`` and ``abbreviations`` for sentence buffers).

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
    buffer_type: Union[BufferType, str],
    threshold: int,
    counter: Optional[TokenCounter] = None,
    language: Optional[str] = None,
) -> Buffer:
    """Create a buffer; for token buffers, with the given threshold.

    The threshold is ignored for the other buffer types, as in the guide; ``language``
    (an ISO 639-1 code) is used by sentence buffers only.
    """
    kind = BufferType.coerce(buffer_type)
    if kind is BufferType.TOKEN:
        return TokenBuffer(threshold, counter)
    if kind is BufferType.SENTENCE and language is not None:
        return SentenceBuffer(language=language)
    return new_buffer(kind)
