"""Where sentences end: per-language data and the named rules of the sentence buffer.

The sentence buffer (``_buffers.SentenceBuffer``) finds *candidates* in the text (a
run of terminators such as ``.`` or ``?!``, a line break, a bullet) and asks this
module whether a sentence ends there. Each question sees only a bounded stretch of
text before the candidate and a few characters after it; when those have not arrived
yet the answer is "wait" (``None``), never a guess, so the units do not depend on how
the input was cut.

The rules are a table (:data:`PERIOD_RULES` and friends): named functions tried in
order, each answering True (a boundary), False (none) or ``None`` (wait), or passing
(:data:`PASS`) to the next rule. Each rule is tested by the cases that need it
(``tests/test_sentences.py``).

Language data (abbreviations, sentence starters, terminators, ordinals) lives in
``helixstream/data/sentence/<code>.yaml``, one file per ISO 639-1 code, read once
when a buffer for that language is first made.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Union

import yaml

from ._errors import ConfigError

__all__ = [
    "Language",
    "available_languages",
    "load_language",
    "check_language",
    "ABBREVIATION_KINDS",
]

#: The kinds of abbreviation a language file (or ``abbreviations=``) may list.
ABBREVIATION_KINDS = ("title", "continuing", "numeric", "ending")

# --- characters ----------------------------------------------------------------------

#: Whitespace, as a regular expression character class body (shared with ``_buffers``).
WS = "\t\n\x0b\x0c\r\x1c-\x1f \x85\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000"
_WS = WS
#: Terminators that end a sentence with no whitespace after them (CJK, Devanagari,
#: Burmese, Ethiopic), in every language.
NOSPACE_TERMINATORS = "\u3002\uff01\uff1f\uff61\u0964\u0965\u104a\u104b\u1362\u1367\u1368"
#: Terminators of other scripts that need whitespace after them, in every language:
#: ! ? … ‼ ⁇ ⁈ ⁉ ‽, Arabic ؟ and ۔ (Urdu), Armenian ։.
SHARED_TERMINATORS = "!?\u2026\u203c\u2047\u2048\u2049\u203d\u061f\u06d4\u0589"
_DEFAULT_TERMINATORS = ".!?\u2026"
# Closing punctuation that stays with the sentence before it ("…end.» Next"): quotes
# of every script, brackets, markdown emphasis, bidi formatting marks.
CLOSERS = (
    ")]}\"'\u201d\u2019\u201c\u00bb\u203a\u300d\u300f\u3011\u3015\u3009\u300b\u3017\u3019"
    "\u301b\u301e\u301f\uff09\uff3d\uff5d\uff63\uff02\uff07*_`>\u202a-\u202e\u200e\u200f"
    "\u2066-\u2069"
)
# Opening quotes and brackets skipped to find the first letter of the next sentence
# (not "`" and "<": code after a sentence usually starts in lowercase).
OPENERS = (
    "\"'([{\u201c\u2018\u201e\u201a\u00ab\u2039\u00bf\u00a1*_\u300c\u300e\u3010\u3014"
    "\u3008\u300a\u3016\u3018\u301a\u301d\uff08\uff3b\uff5b\uff62"
)
_CLOSING_QUOTES = "\"')]}\u201d\u2019\u00bb\u203a\u201c"
#: Every character of ``_WS`` (one scan of the code points it can hold).
WS_CHARS = "".join(re.findall(f"[{_WS}]", "".join(map(chr, range(0x3001)))))
_WS_CHARS = WS_CHARS
_DASHES = "-\u2013\u2014\u2012\u2015"
#: Bullets that start the items of a list written on one line ("• 9. one • 10. two").
BULLETS = "\u2022\u2043"
_BULLET_LIKE = "\u2022\u2043\u2023\u25aa\u25e6\u00b7-*+#>|"
# CJK: the scripts written without spaces.
_CJK = (
    "\u2e80-\u2fdf\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff9f\U00020000-\U0003134f"
)
IS_CJK = re.compile(f"[{_CJK}]")
# Japanese particles that quote what comes before them: 「行こう！」と言った.
_QUOTE_PARTICLES = ("\u3068", "\u3063\u3066", "\u3001", "\uff0c", ",")
# Quotes whose balance is tracked: opener -> closers.
_PAIRS: Dict[str, str] = {
    "\u00ab": "\u00bb",  # « »
    "\u201e": "\u201c\u201d",  # „ “ (German) and „ ” (Polish)
    "\u201c": "\u201d",  # “ ”
    "\u300c": "\u300d",  # 「 」
    "\u300e": "\u300f",  # 『 』
    "\u300a": "\u300b",  # 《 》
    "\u3008": "\u3009",  # 〈 〉
    "\u3010": "\u3011",  # 【 】
    "\uff08": "\uff09",  # （ ）
    '"': '"',
}
_OPENS_QUOTE = frozenset(_WS_CHARS + "([{\u2014\u2013-/:")
_QUOTE_CHARS = re.compile("[" + re.escape("".join(_PAIRS) + "".join(_PAIRS.values())) + "]")
#: How far back (characters, within the sentence) an open quote keeps a terminator
#: inside it from ending the sentence.
QUOTE_REACH = 240

_WORD_BEFORE = re.compile(rf"[^{_WS}]{{1,40}}\Z")
_TOKENS_BEFORE = re.compile(rf"(?:[^{_WS}]{{1,8}}[{_WS}]){{1,2}}\Z")
_WORD_AFTER = re.compile(r"[^\W_]{1,24}")
_ROMAN = re.compile(r"(?=[MDCLXVI]{2})M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
_ACRONYM = re.compile(r"(?:[^\W\d_]{1,2}\.)+[^\W\d_]{1,2}")
# A list marker: a number, a letter, or a roman numeral up to 39 written in one case.
_LIST_MARKER = re.compile(
    r"(?:\d{1,3}|[^\W\d_]|x{0,3}(?:ix|iv|v?i{0,3})|X{0,3}(?:IX|IV|V?I{0,3}))\Z"
)
#: A list written on one line starts with one of these markers: "1.", "1.)", "1)",
#: "a.", optionally after a bullet.
HEAD_MARKER = re.compile(
    rf"[{_WS}]*(?P<bullet>[{BULLETS}][ \t]?)?(?P<mark>\d{{1,3}}|[a-z])(?P<style>\.\)|\.|\))[ \t]"
)


# --- language data -------------------------------------------------------------------


class Language:
    """The data the rules need for one language (read from its data file)."""

    __slots__ = (
        "code", "name", "terminators", "title", "continuing", "numeric", "ending",
        "starters", "months", "ordinals", "all_abbreviations", "candidates", "suffixes",
    )

    def __init__(
        self,
        code: str,
        name: str = "",
        terminators: str = _DEFAULT_TERMINATORS,
        abbreviations: Optional[Mapping[str, Iterable[str]]] = None,
        starters: Iterable[str] = (),
        months: Iterable[str] = (),
        ordinals: bool = False,
    ) -> None:
        self.code = code
        self.name = name or code
        self.terminators = "".join(sorted(set(terminators) | set(SHARED_TERMINATORS)))
        abbreviations = abbreviations or {}
        self.title = _words(abbreviations.get("title", ()))
        self.continuing = _words(abbreviations.get("continuing", ()))
        self.numeric = _words(abbreviations.get("numeric", ()))
        self.ending = _words(abbreviations.get("ending", ()))
        self.all_abbreviations = self.title | self.continuing | self.numeric | self.ending
        # "-str" in a list stands for every word ending in "str" ("Hauptstr. 5")
        self.suffixes: Dict[str, Tuple[str, ...]] = {
            kind: tuple(w[1:] for w in getattr(self, kind) if w.startswith("-"))
            for kind in ABBREVIATION_KINDS
        }
        self.starters = _words(starters)
        self.months = _words(months)
        self.ordinals = bool(ordinals)
        self.candidates = _candidate_pattern(self.terminators)

    def with_abbreviations(self, abbreviations: Mapping[str, Iterable[str]]) -> "Language":
        """A copy whose abbreviations are replaced by ``abbreviations``."""
        return Language(
            self.code, self.name, self.terminators, abbreviations, self.starters,
            self.months, self.ordinals,
        )

    def __repr__(self) -> str:
        return f"<Language {self.code} ({self.name})>"


def _words(words: Union[str, Iterable[str]]) -> FrozenSet[str]:
    if isinstance(words, str):
        words = words.split()
    return frozenset(normalize(w) for w in words)


def normalize(word: str) -> str:
    """The form words are compared in: lowercase, no spaces, no final period."""
    return "".join(word.split()).lower().rstrip(".")


def _data_dir() -> Any:
    import importlib.resources

    return importlib.resources.files("helixstream") / "data" / "sentence"


@functools.lru_cache(maxsize=None)
def available_languages() -> Tuple[str, ...]:
    """The ISO 639-1 codes that have sentence data, sorted."""
    return tuple(sorted(
        p.name[:-5] for p in _data_dir().iterdir() if p.name.endswith(".yaml")
    ))


@functools.lru_cache(maxsize=None)
def _english_starters() -> FrozenSet[str]:
    return load_language("en").starters if "en" in available_languages() else frozenset()


@functools.lru_cache(maxsize=None)
def load_language(code: str) -> Language:
    """The data for language ``code`` (read once, then cached).

    Raises:
        ConfigError: no data for ``code``.
    """
    code = check_language(code)
    raw = yaml.safe_load((_data_dir() / f"{code}.yaml").read_text(encoding="utf-8")) or {}
    starters = _words(raw.get("starters", ""))
    if code != "en":
        starters |= _english_starters()  # English mixed into any text is common
    abbreviations: Dict[str, FrozenSet[str]] = {
        kind: _words((raw.get("abbreviations") or {}).get(kind, ""))
        for kind in ABBREVIATION_KINDS
    }
    for other in str(raw.get("include", "")).split():
        included = load_language(other)
        for kind in ABBREVIATION_KINDS:
            abbreviations[kind] |= getattr(included, kind)
    return Language(
        code,
        name=str(raw.get("name", code)),
        terminators=str(raw.get("terminators", _DEFAULT_TERMINATORS)),
        abbreviations=abbreviations,
        starters=starters,
        months=raw.get("months", ""),
        ordinals=bool(raw.get("ordinals", False)),
    )


def check_language(value: Any, field: str = "language") -> str:
    """Return ``value`` when it is the ISO 639-1 code of a language with data.

    Raises:
        ConfigError: anything else; the message names the field and the codes known.
    """
    if isinstance(value, str):
        code = value.strip().lower()
        if re.fullmatch("[a-z]{2}", code) and code in available_languages():
            return code
    known = ", ".join(available_languages())
    raise ConfigError(
        f"{field!r} must be the ISO 639-1 code of a language with sentence data "
        f"({known}) (got {value!r})"
    )


# --- candidates ----------------------------------------------------------------------


def _candidate_pattern(terminators: str) -> "re.Pattern[str]":
    western = re.escape(terminators)
    nospace = re.escape(NOSPACE_TERMINATORS)
    dots = r"\.(?:[ ]\.){2,3}|\.{2,16}|" if "." in terminators else ""
    return re.compile(
        r"(?P<nl>\r\n|\r|\n)"
        rf"|(?P<term>{dots}\u2026{{1,16}}|[{western}][{western}]{{0,15}}"
        rf"|[{nospace}][{nospace}!?]{{0,15}})"
        rf"|(?P<bullet>[{BULLETS}])"
        r"|(?P<paren>\))"
    )


_CLOSE_RUN = re.compile(
    rf"(?:[{re.escape(CLOSERS)}]|[ \u00a0\u202f](?=[\u00bb\u203a])){{0,16}}"
)
_NON_WS = re.compile(f"[^{_WS}]")
_WS_SET = frozenset(_WS_CHARS)
_MAYBE_SPACED = re.compile(r"(?:[ ]\.){0,3}[ ]?\Z")


class Spot:
    """A terminator run and what surrounds it, as the rules see it.

    Attributes are offsets into ``text`` (the buffer's window): the run is
    ``text[at:end]``, closing punctuation ``text[end:close]``, whitespace
    ``text[close:next_at]``; ``unit`` is where the current sentence starts (0 or more).
    """

    __slots__ = (
        "text", "at", "end", "close", "next_at", "unit", "term", "lang", "line_start",
        "_word", "_next", "_key",
    )

    def __init__(
        self, text: str, at: int, end: int, close: int, next_at: int, unit: int,
        lang: Language, line_start: int,
    ) -> None:
        self.text = text
        self.at = at
        self.end = end
        self.close = close
        self.next_at = next_at
        self.unit = unit
        self.term = text[at:end]
        self.lang = lang
        self.line_start = line_start
        self._word: Optional[str] = None
        self._next: Optional[int] = None
        self._key: Optional[str] = None

    # what comes before ------------------------------------------------------------
    @property
    def word(self) -> str:
        """The word before the terminator, without opening punctuation or bullets."""
        if self._word is None:
            m = _WORD_BEFORE.search(self.text, max(self.unit, self.at - 40), self.at)
            w = m.group() if m else ""
            w = w.lstrip(OPENERS + _BULLET_LIKE)
            for apostrophe in "'\u2019":  # l'Avv. -> Avv
                if apostrophe in w[:3]:
                    w = w[w.index(apostrophe) + 1:]
            self._word = w.rstrip("\u202a\u202b\u202c\u202d\u202e\u200e\u200f")
        return self._word

    @property
    def key(self) -> str:
        """The word as the abbreviation lists hold it."""
        if self._key is None:
            self._key = normalize(self.word)
        return self._key

    def is_a(self, kind: str) -> bool:
        """The word is an abbreviation of this kind (a word or a suffix in the list)."""
        key = self.key
        if key in getattr(self.lang, kind):
            return True
        suffixes = self.lang.suffixes[kind]
        return bool(suffixes) and key.endswith(suffixes)

    def word_start(self) -> int:
        return self.at - len(self.word)

    def compound_keys(self) -> List[str]:
        """The word joined with the short abbreviations before it: "z. B" -> "z.b"."""
        start = self.word_start()
        lo = max(self.unit, start - 20)
        if "." not in self.text[lo:start]:
            return []
        m = _TOKENS_BEFORE.search(self.text, lo, start)
        if m is None:
            return []
        parts = m.group().split()
        out = []
        joined = self.word
        for part in reversed(parts):
            if not part.endswith("."):
                break
            joined = part + joined
            out.append(normalize(joined.lstrip(OPENERS)))
        return out

    def previous_is_number(self) -> bool:
        """The word before this one ends with a digit ("5 ft", "3.5 in")."""
        start = self.word_start()
        k = start - 1
        while k > max(self.unit, start - 4) and self.text[k] in _WS_SET:
            k -= 1
        return k < start - 1 and self.text[k].isdigit()

    def previous_is_numeric(self) -> bool:
        """The word before this one is an abbreviation that comes before numbers."""
        start = self.word_start()
        m = _WORD_BEFORE.search(self.text, max(self.unit, start - 41), max(start - 1, 0))
        if m is None or start == 0 or self.text[start - 1] not in _WS_SET:
            return False
        key = normalize(m.group())
        suffixes = self.lang.suffixes["numeric"]
        return key in self.lang.numeric or bool(suffixes) and key.endswith(suffixes)

    def at_unit_start(self) -> bool:
        """Only bullets or markdown marks come before the word in its sentence or line
        (looking back at most 12 characters)."""
        lo = max(self.unit, self.line_start)
        start = self.word_start()
        if lo < start - 12:
            return False
        return not self.text[lo:start].strip(_WS_CHARS + _BULLET_LIKE)

    def inside_quote(self) -> bool:
        """An open quote (within :data:`QUOTE_REACH`, in this sentence) that the closing
        punctuation after the terminator does not close."""
        lo = max(self.unit, self.at - QUOTE_REACH)
        stack: List[str] = []
        text = self.text
        for m in _QUOTE_CHARS.finditer(text, lo, self.at):
            q = m.group()
            if q == '"':
                # straight quotes: one that starts a word opens, any other closes
                # (so the inch mark of 15" opens nothing)
                i = m.start()
                if i == 0 or text[i - 1] in _OPENS_QUOTE:
                    stack.append(q)
                elif stack and stack[-1] == q:
                    stack.pop()
            elif stack and q in _PAIRS[stack[-1]]:
                stack.pop()
            elif q in _PAIRS:
                stack.append(q)
        if not stack:
            return False
        for q in self.text[self.end:self.close]:
            if stack and q in _PAIRS[stack[-1]]:
                stack.pop()
        return bool(stack)

    # what comes after -------------------------------------------------------------
    @property
    def ws(self) -> str:
        return self.text[self.close:self.next_at]

    @property
    def breaks(self) -> int:
        ws = self.ws
        return ws.count("\n") + ws.count("\r") - ws.count("\r\n")

    def first(self) -> Optional[int]:
        """Offset of the first character of the next word, after opening quotes and
        brackets (at most 4), or None when it has not arrived."""
        if self._next is None:
            text = self.text
            k = j = self.next_at
            n = len(text)
            while j < n and j - k < 4 and text[j] in OPENERS:
                j += 1
            if j == n:
                return None
            if j - k == 4 and text[j] in OPENERS or text[j] in _WS_SET:
                j = k
            self._next = j
        return self._next

    def next_char(self) -> Optional[str]:
        k = self.first()
        return None if k is None else self.text[k]

    def next_word(self) -> Optional[str]:
        """The next word (letters and digits), or None while it may still grow."""
        k = self.first()
        if k is None:
            return None
        m = _WORD_AFTER.match(self.text, k)
        if m is None:
            return ""
        if m.end() == len(self.text) and len(m.group()) < 24:
            return None
        return m.group()

    def next_is_initial(self) -> Optional[bool]:
        """The next word is a single capital letter with a period ("J. K. Rowling")."""
        k = self.first()
        if k is None:
            return None
        if k + 1 >= len(self.text):
            return None
        return self.text[k].isupper() and self.text[k + 1] == "."


#: A rule's answer when it does not apply: the next rule decides.
PASS: Any = object()
Rule = Callable[[Spot], Any]


def _starts_sentence(s: Spot, titles: bool = False) -> Optional[bool]:
    """Is the next word one that begins sentences ("The", "How") (or, with ``titles``,
    a title)?"""
    word = s.next_word()
    if word is None:
        return None
    key = word.lower()
    if key in s.lang.starters:
        return True
    if titles and key in s.lang.title and word[:1].isupper():
        # a title next: "6 P.M. Mr. Smith" (needs its period to have arrived)
        end = s.first() + len(word)  # type: ignore[operator]
        if end >= len(s.text):
            return None
        return s.text[end] == "."
    return False


# --- rules for all terminators -----------------------------------------------------


def bracketed_ellipsis(s: Spot) -> Any:
    """``[...]`` marks an omission, not an end: ``"Bohr [...] used"``."""
    if s.at > 0 and s.text[s.at - 1] == "[" and s.text[s.end:s.end + 1] == "]":
        return False
    return PASS


def inside_quotation(s: Spot) -> Any:
    """A terminator inside a quotation that goes on does not end the sentence:
    ``„Prieskumy beriem na ľahkú váhu. V podstate…“``, ``《摔跤吧！爸爸》``."""
    return False if s.inside_quote() else PASS


def blank_line(s: Spot) -> Any:
    """A blank line after a terminator always ends the sentence."""
    return True if s.breaks >= 2 else PASS


# --- rules for terminators that need no space (CJK and others) ----------------------


def quote_particle(s: Spot) -> Any:
    """``「準備できた？」と彼は聞いた``: a particle after the closing quote goes on."""
    if s.close > s.end and s.next_at == s.close:
        after = s.text[s.close:s.close + 2]
        for particle in _QUOTE_PARTICLES:
            if after.startswith(particle):
                return False
            if len(after) < len(particle) and particle.startswith(after):
                return None  # "っ" may be "って"
    return PASS


def nospace_ends(s: Spot) -> Any:
    """``。`` ``！`` ``？`` (and ``।`` ``။`` ``።``) end a sentence, no space needed."""
    return True


NOSPACE_RULES: List[Tuple[str, Rule]] = [
    ("inside-quotation", inside_quotation),
    ("quote-particle", quote_particle),
    ("nospace-terminator", nospace_ends),
]


# --- rules for terminators that need whitespace --------------------------------------


def no_whitespace(s: Spot) -> Any:
    """No whitespace after the terminator: no end (``3.14``, ``example.com``), except a
    half-width ``!`` or ``?`` between CJK characters (``好!我``)."""
    if s.next_at > s.close:
        return PASS
    return glued_boundary(s.text, s.at, s.term, s.close)


def glued_boundary(text: str, at: int, term: str, close: int) -> Optional[bool]:
    """The rule ``no-whitespace`` on its own, for a terminator followed by a
    non-space character (the buffer asks it first: it is the common case)."""
    if term[-1] in "!?" and at > 0 and IS_CJK.match(text, at - 1):
        return bool(IS_CJK.match(text, close))
    return False


def spaced_ellipsis(s: Spot) -> Any:
    """``. . .`` is one mark. After a space it is an omission (no end); written as four
    (``. . . .``) or right after a word (``word. . . .``, a period and an omission) it
    ends the sentence before a capital."""
    if " " not in s.term:
        return PASS
    nxt = s.next_char()
    if nxt is None:
        return None
    attached = s.at > 0 and s.text[s.at - 1] not in _WS_SET
    dots = s.term.count(".")
    if not attached and dots < 4:
        return False
    return nxt.isupper()


def ellipsis(s: Spot) -> Any:
    """After ``...`` or ``…`` a sentence ends only before a capital (``Wait... what``)."""
    if s.term[0] not in ".\u2026" or s.term == ".":
        return PASS
    nxt = s.next_char()
    if nxt is None:
        return None
    return nxt.isupper()


def exclamation_or_question(s: Spot) -> Any:
    """After ``!`` or ``?`` a sentence ends unless a lowercase word comes next, also
    after a dash (``"Wow!" he said``, ``Yahoo! in``, ``бар? — деді``)."""
    if not s.term.strip("."):
        return PASS
    nxt = s.next_char()
    if nxt is None:
        return None
    if nxt in _DASHES:
        after = _NON_WS.search(s.text, s.first() + 1)  # type: ignore[operator]
        if after is None:
            return None
        nxt = after.group()
    return not nxt.islower()


EARLY_RULES: List[Tuple[str, Rule]] = [
    ("no-whitespace", no_whitespace),
    ("bracketed-ellipsis", bracketed_ellipsis),
    ("inside-quotation", inside_quotation),
    ("blank-line", blank_line),
    ("spaced-ellipsis", spaced_ellipsis),
    ("ellipsis", ellipsis),
    ("exclamation-or-question", exclamation_or_question),
]


# --- rules for a period ---------------------------------------------------------------


def title(s: Spot) -> Any:
    """A title never ends a sentence: ``Dr. Smith``, ``l'Avv. Cassioni``, ``проф. Семенов``.
    A lowercase word that is also a unit is the unit: ``100 ms. Beyond`` ends."""
    key = s.key
    if key in s.lang.title and (s.word[:1].isupper() or key not in s.lang.numeric):
        return False
    return PASS


def continuing(s: Spot) -> Any:
    """Abbreviations followed by more of the sentence: ``e.g.``, ``z. B.``, ``EE. UU.``."""
    if s.key in s.lang.continuing:
        return False
    for key in s.compound_keys():
        if key in s.lang.continuing or key in s.lang.title:
            return False
    if len(s.word) == 1 and s.word.isalpha():
        # the first part of one: "z. B." ("z.b")
        nxt = s.next_is_initial()
        if nxt is None:
            return None
        if nxt and normalize(f"{s.word}.{s.next_char()}") in s.lang.continuing:
            return False
    return PASS


def lowercase_next(s: Spot) -> Any:
    """Before a lowercase (or uncased) letter a sentence goes on after an abbreviation
    (a lowercase unit only after a number), an acronym, a number, a single letter or a closing
    quote or bracket (``etc. are``, ``U.S.A. today``, ``5 ft. tall``, ``"Great." she
    said``), and ends after a plain word (``that should work. let me know``)."""
    nxt = s.next_char()
    if nxt is None:
        return None
    if not nxt.isalpha() or nxt.isupper():
        return PASS
    if any(c in _CLOSING_QUOTES for c in s.text[s.end:s.close]):
        return False  # '"This is great." she said', '(… an engineer.) at the'
    word = s.word.strip(CLOSERS + OPENERS)
    if len(word) < 2 or not is_plain_word(word) or s.is_a("title") or s.is_a("continuing"):
        return False
    if s.is_a("ending") or any(k in s.lang.all_abbreviations for k in s.compound_keys()):
        return False
    if s.is_a("numeric") and (word[0].isupper() or s.previous_is_number()):
        return False  # "Nov. de 2014", "5 ft. tall"; but "I logged in. then it crashed"
    return True


def is_plain_word(word: str) -> bool:
    """Letters (and the marks that go with them) only, in a script with spaces."""
    return not IS_CJK.match(word) and all(
        c.isalpha() or c in "'\u2019" or unicodedata.category(c)[0] == "M" for c in word
    )


def numeric_before_number(s: Spot) -> Any:
    """``Fig. 3``, ``p. 55``, ``N°. 1026``, ``Hauptstr. 5``: no end before a number on
    the same line (``It takes 5 min.\\n2. Next`` does end)."""
    nxt = s.next_char()
    if nxt is None:
        return None
    if (nxt.isdigit() or nxt in "\u2116#") and s.is_a("numeric") and not s.breaks:
        return False
    return PASS


def list_marker(s: Spot) -> Any:
    """A list marker at the start of a line or sentence (``1.``, ``a.``, ``IV.``,
    ``• 9.``) does not end one."""
    word = s.word
    if word and _LIST_MARKER.match(word) and s.at_unit_start():
        return False
    return PASS


def ordinal(s: Spot) -> Any:
    """Where ``5.`` is an ordinal (``am 31. Dezember``, ``XII. Pluku``), a number ends a
    sentence only before a word that starts one; not after ``Nr.`` or ``Hauptstr.``
    (``Hauptstr. 12. Fragen Sie``), where it is a plain number."""
    if not s.lang.ordinals:
        return PASS
    word = s.word
    if not (word.isdigit() and len(word) <= 3 or _ROMAN.fullmatch(word)):
        return PASS
    if s.previous_is_numeric():
        return PASS  # "Hauptstr. 12. Fragen": a number after "Nr.", "S.", "Str." counts
    nxt_word = s.next_word()
    if nxt_word is None:
        return None
    if nxt_word.lower() in s.lang.months:
        return False
    if nxt_word[:1].isupper():
        return _starts_sentence(s)
    return PASS


def initial(s: Spot) -> Any:
    """A single capital letter is an initial (``Jonas E. Smith``, ``Л. Н. Толстой``):
    it ends a sentence only before a word that starts one (``plan B. Then``)."""
    word = s.word
    if len(word) != 1 or not word.isupper():
        return PASS
    nxt = s.next_is_initial()
    if nxt is None:
        return None
    if nxt:
        return False
    return _starts_sentence(s)


def acronym(s: Spot) -> Any:
    """A dotted acronym or time (``U.S.``, ``a.m.``, ``Л.Н.``) ends a sentence only
    before a word that starts one, or (written in capitals) a title: ``the U.S. How``,
    ``6 P.M. Mr. Smith``, but ``the U.S. Government``, ``5 a.m. Mr. Smith``."""
    word = s.word.strip(OPENERS + CLOSERS)
    if not _ACRONYM.fullmatch(word):
        return PASS
    return _starts_sentence(s, titles=word.isupper())


def ending_abbreviation(s: Spot) -> Any:
    """Abbreviations that may end a sentence (``etc.``, ``Inc.``, ``Co.``) end one only
    before a word that starts one: ``Apple Inc. CEO``, but ``& Co. It closed``."""
    if s.key in s.lang.ending:
        return _starts_sentence(s)
    return PASS


def period_ends(s: Spot) -> Any:
    """Any other period followed by whitespace ends the sentence."""
    return True


PERIOD_RULES: List[Tuple[str, Rule]] = [
    ("title", title),
    ("continuing", continuing),
    ("lowercase-next", lowercase_next),
    ("numeric-before-number", numeric_before_number),
    ("list-marker", list_marker),
    ("ordinal", ordinal),
    ("initial", initial),
    ("acronym", acronym),
    ("ending-abbreviation", ending_abbreviation),
    ("period", period_ends),
]

#: Rules about lines, applied by the buffer at each line break and list marker:
#: ``blank-line`` (a blank line ends a sentence), ``markdown-block`` (a heading, list
#: item, table row, block quote or horizontal rule is a unit of its own),
#: ``code-block`` (a fenced code block is one unit, never split inside) and
#: ``inline-list`` (``1. one 2. two``: the next marker of a list that began the
#: sentence starts a new one).
LINE_RULES = ("blank-line", "markdown-block", "code-block", "inline-list")

#: Every rule applied to a terminator, by name (for tests and docs).
RULES: Dict[str, Rule] = dict(EARLY_RULES + NOSPACE_RULES + PERIOD_RULES)


def decide(s: Spot) -> Tuple[Optional[bool], str]:
    """Run the rule table on ``s``; returns (answer, name of the rule that gave it)."""
    if s.term[0] in NOSPACE_TERMINATORS:
        table = NOSPACE_RULES
    else:
        table = EARLY_RULES
    for name, rule in table:
        answer = rule(s)
        if answer is not PASS:
            return answer, name
    for name, rule in PERIOD_RULES:
        answer = rule(s)
        if answer is not PASS:
            return answer, name
    return True, "period"  # pragma: no cover - the last rule always answers


def spot_end(text: str, end: int) -> Tuple[int, int]:
    """Where the closing punctuation after a run ends, and the next non-space
    character (``-1`` when it has not arrived)."""
    close = _CLOSE_RUN.match(text, end).end()  # type: ignore[union-attr]
    if close + 1 == len(text) and text[close] in " \u00a0\u202f":
        return close, -1  # "! " may become "! »"
    m = _NON_WS.search(text, close)
    return close, (m.start() if m else -1)


def maybe_longer(text: str, end: int, term: str) -> bool:
    """A ``.`` or spaced-ellipsis run at the end of what arrived may still grow."""
    return term[-1] == "." and _MAYBE_SPACED.match(text, end) is not None


# --- markdown lines --------------------------------------------------------------------

_LINE_KIND = re.compile(
    r"[ \t]*(?:"
    r"(?P<fence>```|~~~)"
    r"|(?P<heading>#{1,6})(?:[ \t]|(?=[\r\n]))"
    r"|(?P<table>\|)"
    r"|(?P<quote>>)"
    r"|(?P<rule>(?:[-*_][ \t]*){3,}(?=[\r\n]))"
    rf"|(?P<list>(?:[-*+{BULLETS}\u2023\u25aa\u25e6]|\d{{1,9}}[.)]|[A-Za-z][.)]"
    r"|[ivxIVX]{1,4}[.)])[ \t])"
    r")"
)
# What may still become one of those once more of the line arrives.
_LINE_PREFIX = re.compile(
    rf"[ \t]*(?:#{{0,6}}|[-*+{BULLETS}\u2023\u25aa\u25e6>|]|\d{{1,9}}[.)]?|[A-Za-z][.)]?"
    r"|[ivxIVX]{1,4}[.)]?|`{1,2}|~{1,2}|(?:[-*_][ \t]*)+)\Z"
)
_LINE_END = re.compile(r"[\r\n]")
#: Kinds of line that are units of their own (and end the text before them).
BLOCK_LINES = frozenset({"heading", "table", "quote", "rule", "list"})


def line_kind(text: str, start: int) -> Optional[str]:
    """What the line starting at ``start`` is: ``"fence"``, ``"heading"``, ``"table"``,
    ``"quote"``, ``"rule"``, ``"list"`` or ``""`` (text); None while too little of it
    has arrived to tell."""
    nl = _LINE_END.search(text, start, start + 16)
    stop = nl.end() if nl else min(len(text), start + 16)
    m = _LINE_KIND.match(text, start, stop)
    if m is not None:
        return m.lastgroup
    if nl is None and stop == len(text) and _LINE_PREFIX.match(text, start, stop):
        return None  # "1" may become "1. ", "`" may become "```"
    return ""
