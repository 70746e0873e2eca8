"""The tqdm progress callback."""
from __future__ import annotations

import builtins
import io
import importlib
import re

import pytest

import helixstream as hs

tqdm = pytest.importorskip("tqdm")


def run(callback, estimated=0, words=("a ", "b ", "c ", "d")):
    streamer = hs.EnhancedStreamer(hs.StreamConfig(estimated_tokens=estimated, progress_interval=0))
    chunks = [hs.StreamChunk(w, tokens=1) for w in words]
    output, get_result = streamer.stream_enhanced(chunks, callback)
    assert "".join(c.content for c in output) == "".join(words)
    return get_result()


def test_bar_total_comes_from_the_estimate_and_ends_full():
    from helixstream.integrations.tqdm import tqdm_progress

    out = io.StringIO()
    callback = tqdm_progress(file=out, desc="answer")
    run(callback, estimated=10)
    bar = callback.bar
    assert bar.n == 4 and bar.total == 4  # ended early: the bar is full
    assert bar.disable or "answer" in out.getvalue()
    assert "4/4" in out.getvalue()


def test_bar_without_an_estimate_is_a_counter():
    from helixstream.integrations.tqdm import tqdm_progress

    out = io.StringIO()
    callback = tqdm_progress(file=out)
    run(callback)
    assert callback.bar.total is None and callback.bar.n == 4
    assert "4tok" in out.getvalue().replace(" ", "")


def test_an_existing_bar_can_be_driven():
    from helixstream.integrations.tqdm import tqdm_progress

    bar = tqdm.tqdm(file=io.StringIO())
    run(tqdm_progress(bar), estimated=3, words=("x ", "y ", "z"))
    assert bar.n == 3 and bar.total == 3


def test_missing_tqdm_gives_a_clear_error(monkeypatch):
    import helixstream.integrations.tqdm as module

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError("No module named 'tqdm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    importlib.reload(module)  # importing the module itself needs no tqdm
    with pytest.raises(ImportError, match=r"pip install 'helixstream\[tqdm\]'"):
        module.tqdm_progress()


@pytest.mark.parametrize("estimated", [0, 10])
def test_the_bar_shows_one_tokens_per_second_figure(estimated):
    from helixstream.integrations.tqdm import tqdm_progress

    out = io.StringIO()
    callback = tqdm_progress(file=out, mininterval=0)
    run(callback, estimated=estimated, words=tuple(f"w{i} " for i in range(20)))
    lines = [line for line in out.getvalue().replace("\n", "\r").split("\r") if line.strip()]
    assert lines
    for line in lines:
        assert len(re.findall(r"tok/s", line)) == 1, line
