"""Token counting: the built-in estimator and the exact bpe-openai counter."""
from __future__ import annotations

import builtins
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import helixstream._tokens as tokens
from helixstream._errors import ConfigError, HelixStreamError
from helixstream._tokens import bpe_counter, encoding_name_for, estimate_tokens

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "tokens.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("helixstream_benchmark_tokens", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the estimator, no reference needed ------------------------------------------------


def test_empty_text_is_zero_tokens() -> None:
    assert estimate_tokens("") == 0


@pytest.mark.parametrize(
    "text", [" ", "\n", "\t", "   \n\n  ", "a", ".", "7", "😀", "我", "\u200b", "\x00", "\r\n", "\ud800"], ids=repr
)
def test_any_non_empty_text_is_at_least_one_token(text: str) -> None:
    n = estimate_tokens(text)
    assert isinstance(n, int) and n >= 1


# (text, lowest, highest): cl100k_base's own count is in the comment; the bounds allow
# the estimator's known error (10% English and code, 25% CJK, at least one token).
FIXED = [
    ("Hello world", 2, 2),  # 2
    ("a b c d", 4, 4),  # 4
    (" world", 1, 1),  # 1: a typical streamed token
    ("Hello ", 2, 2),  # 2: the trailing space is a token of its own
    ("The quick brown fox jumps over the lazy dog.", 9, 11),  # 10
    ("Hello, world! 3.14", 7, 9),  # 8
    ("1234567", 3, 3),  # 3: digits go in groups of three
    ("2024-03-18", 5, 7),  # 6
    ("def add(a, b):\n    return a + b\n", 11, 13),  # 12
    ("    for i in range(10):\n        print(i)\n", 11, 13),  # 12
    ("x = {'key': [1, 2, 3]}", 13, 15),  # 14
    ("https://example.com/a/b?c=d", 8, 10),  # 9
    ("    ", 1, 1),  # 1
    ("\n\n", 1, 1),  # 1
    ("supercalifragilisticexpialidocious", 5, 14),  # 11: one word, many tokens
    ("我家附近有一家很小的书店。", 11, 19),  # 15: one "word", many tokens
    ("こんにちは、世界。", 5, 9),  # 6
    ("駅前の古い喫茶店", 9, 16),  # 13
]


@pytest.mark.parametrize("text,lo,hi", FIXED, ids=[repr(t[0][:30]) for t in FIXED])
def test_counts_of_fixed_strings_are_close_to_cl100k(text: str, lo: int, hi: int) -> None:
    assert lo <= estimate_tokens(text) <= hi


def test_the_estimate_is_not_a_word_count() -> None:
    # the guide's word count says 1 for each of these
    assert estimate_tokens("internationalization_configuration_manager") >= 4
    assert estimate_tokens("这是一个没有空格的中文句子") >= 10
    assert estimate_tokens("3.14159265358979") >= 5
    assert estimate_tokens("{[(<>)]}!?;:") >= 3


@pytest.mark.parametrize(
    "value,name", [(b"bytes", "bytes"), (None, "NoneType"), (42, "int"), (["a"], "list")], ids=repr
)
def test_a_non_str_is_a_type_error_naming_the_type(value: Any, name: str) -> None:
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        estimate_tokens(value)


def test_a_str_subclass_is_counted_like_a_str() -> None:
    class Text(str):
        pass

    assert estimate_tokens(Text("Hello world")) == estimate_tokens("Hello world") == 2


TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("abcXYZ _-.,:;()'\"\n\t 0123456789éß我们のテ한😀="))),
)


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT)
def test_counts_add_up_roughly(a: str, b: str) -> None:
    ea, eb, eab = estimate_tokens(a), estimate_tokens(b), estimate_tokens(a + b)
    # Joining two texts can merge or split a piece where they meet, nothing more.
    assert max(ea, eb) - 1 <= eab <= ea + eb + 2
    # A token is at least one UTF-8 byte.
    assert eab <= len((a + b).encode("utf-8", "surrogatepass"))


PIECE = st.text(alphabet=st.sampled_from(list("abcXYZ _-.,'0123456789\n\té\x0b\x0c\x1f")), max_size=8)


def test_a_running_estimate_ends_a_word_at_any_whitespace_the_fast_path_allows() -> None:
    for space in ("\x0b", "\x0c", "\x1c", "\x1f"):  # str.split() breaks words there too
        running = tokens.RunningEstimate()
        running.add("a" + space)
        assert running.add("b") == estimate_tokens("a" + space + "b"), repr(space)


def _on_the_fast_path(text: str) -> bool:
    return text.isascii() and not any(s in text for s in ("\n", "\t", "\r", "  "))


@settings(max_examples=500, deadline=None)
@given(st.lists(PIECE, max_size=12))
def test_a_running_estimate_is_the_estimate_of_the_whole_text(pieces: List[str]) -> None:
    # The progress of a stream counts its text as it comes; with the estimator, every
    # count is the whole text's so far, exactly, while the text stays on the fast path.
    running = tokens.RunningEstimate()
    for i in range(len(pieces)):
        n = running.add(pieces[i])
        whole = "".join(pieces[: i + 1])
        assert running.exact == _on_the_fast_path(whole)
        if running.exact:
            assert n == running.count() == estimate_tokens(whole), pieces[: i + 1]
        else:
            assert n == -1


def test_word_prices_are_on_a_grid_so_any_grouping_of_them_adds_up_the_same() -> None:
    words = [f"w{i}" for i in range(200)] + ["antidisestablishmentarianism", "Hello", "x"]
    prices = [tokens._WORDS[w] for w in words]  # noqa: SLF001
    assert all((p / tokens._GRAIN).is_integer() for p in prices)  # noqa: SLF001
    in_order = sum(prices)
    assert sum(reversed(prices)) == in_order
    assert sum(sum(prices[i : i + 7]) for i in range(0, len(prices), 7)) == in_order


def test_counts_of_growing_prefixes_never_drop_by_more_than_one() -> None:
    text = load_benchmark().load_corpus("english")[0][:3000]
    counts = [estimate_tokens(text[:i]) for i in range(len(text) + 1)]
    assert all(b >= a - 1 for a, b in zip(counts, counts[1:]))
    assert counts[-1] > counts[len(counts) // 2] > counts[len(counts) // 4]


def test_a_long_text_is_about_the_sum_of_its_lines() -> None:
    text = load_benchmark().load_corpus("python")[0] * 20
    lines = text.splitlines(keepends=True)
    whole, parts = estimate_tokens(text), sum(estimate_tokens(line) for line in lines)
    assert abs(whole - parts) <= 0.05 * whole


def test_memo_tables_stay_bounded_and_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"word{i} Word{i}x w_{i} 語{i}\n    {i}" for i in range(300)]
    tokens._clear_memos()
    expected = [estimate_tokens(t) for t in texts]
    monkeypatch.setattr(tokens, "_MEMO_SIZE", 8)
    tokens._clear_memos()
    assert [estimate_tokens(t) for t in texts] == expected
    assert [estimate_tokens(t) for t in reversed(texts)] == expected[::-1]
    assert all(len(memo) <= 8 for memo in tokens._MEMOS)


def test_the_estimator_can_be_shared_between_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_benchmark()
    samples = bench.slices(bench.load_corpus("python") + bench.load_corpus("cjk"), n=600)
    expected = [estimate_tokens(s) for s in samples]
    monkeypatch.setattr(tokens, "_MEMO_SIZE", 16)  # the tables fill and empty all the time
    results: List[List[int]] = [[] for _ in range(4)]

    def work(slot: int) -> None:
        results[slot] = [estimate_tokens(s) for s in samples]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r == expected for r in results)


# --- model names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,encoding",
    [
        ("cl100k_base", "cl100k_base"),
        ("o200k_base", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("GPT-4o", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-32k", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
    ],
)
def test_model_names_resolve_to_their_encoding(name: str, encoding: str) -> None:
    assert encoding_name_for(name) == encoding


@pytest.mark.parametrize("name", ["llama-3", "gpt-4x", "o200k", "", "gpt2"])
def test_an_unknown_name_is_a_config_error_naming_it(name: str) -> None:
    with pytest.raises(ConfigError, match=repr(name)) as info:
        encoding_name_for(name)
    assert isinstance(info.value, HelixStreamError) and "gpt-4o" in str(info.value)


def test_an_unknown_name_fails_even_without_bpe_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bpe_openai", None)
    with pytest.raises(ConfigError, match="llama"):
        bpe_counter("llama-3")


def test_a_non_str_name_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        encoding_name_for(4)  # type: ignore[arg-type]


# --- without bpe-openai -------------------------------------------------------------------


def _hide_with_sys_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bpe_openai", None)  # makes "import bpe_openai" fail


def _hide_with_import_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "bpe_openai" or name.startswith("bpe_openai."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "bpe_openai", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.mark.parametrize("hide", [_hide_with_sys_modules, _hide_with_import_hook])
def test_without_bpe_openai_bpe_counter_says_what_to_install(monkeypatch: pytest.MonkeyPatch, hide: Any) -> None:
    hide(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install 'helixstream\[tokens\]'") as info:
        bpe_counter("gpt-4o")  # fails when made, not at its first count
    assert info.value.name == "bpe_openai"
    assert estimate_tokens("still works") == 2


# --- against the reference (needs bpe-openai) ----------------------------------------------


@pytest.fixture(scope="module")
def cl100k() -> Any:
    pytest.importorskip("bpe_openai")
    return bpe_counter("cl100k_base")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark()


@pytest.mark.parametrize("kind", ["english", "python", "chinese", "japanese", "cjk", "markdown"])
def test_the_estimate_meets_its_target_on_the_benchmark_corpus(cl100k: Any, bench: ModuleType, kind: str) -> None:
    texts = bench.load_corpus(kind)
    est, ref = bench.totals(estimate_tokens, texts), bench.totals(cl100k, texts)
    err = bench.error_percent(est, ref)
    assert abs(err) <= bench.KINDS[kind].target, f"{kind}: estimate {est}, cl100k {ref}, {err:+.1f}%"


@pytest.mark.parametrize(
    "kind,limit", [("english", 8.0), ("python", 10.0), ("chinese", 12.0), ("japanese", 12.0), ("markdown", 15.0)]
)
def test_sentences_and_short_slices_are_close_too(cl100k: Any, bench: ModuleType, kind: str, limit: float) -> None:
    # mean |error| per sample, in percent; measured: 2-7% (English, code), 6-8% (CJK)
    texts = bench.load_corpus(kind)
    for samples in (bench.sentences(texts), bench.slices(texts)):
        err = bench.short_error(estimate_tokens, cl100k, samples)
        assert err.mean_rel <= limit, err


@pytest.mark.parametrize("kind", ["english", "python"])
def test_streamed_tokens_are_mostly_counted_as_one(cl100k: Any, bench: ModuleType, kind: str) -> None:
    # What an LLM stream delivers: the text of one token at a time.
    import bpe_openai

    enc = bpe_openai.get_encoding("cl100k_base")
    text = "\n".join(bench.load_corpus(kind))[:20000]
    pieces = [enc.decode([t]) for t in enc.encode_ordinary(text)]
    ones = sum(estimate_tokens(p) == 1 for p in pieces)
    assert ones >= 0.95 * len(pieces)


def test_bpe_counter_counts_exactly(cl100k: Any) -> None:
    assert cl100k.encoding == "cl100k_base" and repr(cl100k) == "bpe_counter('cl100k_base')"
    assert cl100k("") == 0
    assert cl100k("Hello world") == 2
    assert cl100k("The quick brown fox jumps over the lazy dog.") == 10
    assert cl100k("<|endoftext|>") == 7  # special-token text is ordinary text here
    with pytest.raises(TypeError, match="bytes"):
        cl100k(b"Hello")


def test_bpe_counter_takes_model_names(cl100k: Any) -> None:
    gpt4o, gpt4 = bpe_counter("gpt-4o"), bpe_counter("gpt-4")  # gpt-4: rejected by bpe_openai's own lookup
    assert gpt4o.encoding == "o200k_base" and gpt4.encoding == "cl100k_base"  # type: ignore[attr-defined]
    assert gpt4o("你好，世界！") == 4 and gpt4("你好，世界！") == cl100k("你好，世界！") == 7


def test_bpe_counter_counts_texts_past_the_tokenizers_limits(cl100k: Any) -> None:
    # bpe-openai refuses a million characters and results over 200,000 tokens.
    assert cl100k("Hello world. " * 100_000) == 300_001


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_long_texts_are_cut_where_the_count_does_not_change(cl100k: Any, bench: ModuleType, encoding: str) -> None:
    count = bpe_counter(encoding)
    text = "\n".join(bench.load_corpus("markdown") + bench.load_corpus("python")[:4] + bench.load_corpus("cjk"))
    text += " It's done, isn't it?\r\n\r\n  \n\tOK"
    parts = list(tokens._parts(text, 300))
    assert "".join(parts) == text and max(map(len, parts)) <= 300
    assert sum(count(p) for p in parts) == count(text)
    cjk = "我家附近有一家很小的书店" * 100  # nowhere to cut: cut anywhere, lose nothing
    assert "".join(tokens._parts(cjk, 256)) == cjk


def test_the_benchmark_script_runs_without_bpe_openai(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_benchmark()
    monkeypatch.setitem(sys.modules, "bpe_openai", None)
    monkeypatch.setattr(bench, "speed_samples", lambda: bench.slices(bench.load_corpus("english"), n=50))
    assert bench.main(["--check"]) == 0
    out = capsys.readouterr().out
    assert "bpe-openai is not installed" in out and "not compared" in out and "MISSES" not in out
    assert "len(text) // 4" in out


def test_the_benchmark_script_runs(cl100k: Any, bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--check"]) == 0
    out = capsys.readouterr().out
    for label in ("English prose", "Python code", "Chinese", "Japanese", "µs per call", "len(text) // 4"):
        assert label in out
