"""Every ```python example in README.md and docs/*.md runs, so the docs cannot rot.

Each fenced ``python`` block is one test, named by its file and the line of its opening
fence (``docs/guide.md:120``). A block runs on its own, in a fresh namespace (as
``__main__``, like a script), with a temporary directory as the working directory, and
must finish quickly and leave no thread behind (the autouse fixture in ``conftest.py``
checks helixstream's threads; this module checks all the others, except the monitor
thread tqdm keeps for the whole process).

Examples that talk to an LLM service run against ``tests/llm_server.py``: the same
environment variables a reader would set point them at it (``OPENAI_BASE_URL``,
``ANTHROPIC_BASE_URL``, ``LLM_BASE_URL`` and their keys).

A block is skipped only when the line just before its fence starts with
``<!-- not run`` (followed by the reason). ``docs/sources.md``'s examples are run by
``tests/test_sources_sdk.py`` (against the same server); a test here checks that it
runs every one of them.
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, List, NamedTuple

import pytest

from .conftest import wait_for
from .llm_server import LLMServer

ROOT = Path(__file__).resolve().parent.parent
NOT_RUN = "<!-- not run"
#: Files whose examples another test module runs.
RUN_ELSEWHERE = {"docs/sources.md": "tests/test_sources_sdk.py"}
#: Seconds an example may take: examples use fast simulated models.
SLOW = 10.0
#: Threads a library keeps for the life of the process, not the example's to end.
PROCESS_THREADS = {"tqdm_monitor"}

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


class Block(NamedTuple):
    file: str  # relative to the repository root
    line: int  # the line of the opening fence, from 1
    code: str
    skip_reason: str  # "" when the block runs


def doc_files() -> List[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks_of(path: Path) -> List[Block]:
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(ROOT).as_posix()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        reason = before if before.startswith(NOT_RUN) else ""
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(name, line, match.group(1), reason))
    return found


def all_blocks() -> List[Block]:
    return [block for path in doc_files() for block in blocks_of(path)]


def examples() -> List[Any]:
    params = []
    for block in all_blocks():
        if block.file in RUN_ELSEWHERE:
            continue
        marks = [pytest.mark.skip(reason=block.skip_reason)] if block.skip_reason else []
        params.append(pytest.param(block, id=f"{block.file}:{block.line}", marks=marks))
    return params


#: Libraries the examples import, imported once up front so that an example's time is
#: its own work (importing an SDK takes seconds on a busy machine).
LIBRARIES = ("openai", "anthropic", "httpx", "requests", "flask", "django.http", "tqdm", "bpe_openai")


@pytest.fixture(scope="module")
def libraries() -> None:
    for name in LIBRARIES:
        try:
            with warnings.catch_warnings():  # bpe-openai warns while it loads
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except ImportError:  # pragma: no cover - the test extra installs them all
            pass


@pytest.fixture(scope="module")
def llm_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server
    assert server.lingering == [], "an example left a connection to the LLM server open"


def run_block(
    block: Block, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Run one example as a reader would, against the test LLM server."""
    llm_server.reset()
    threads_before = set(threading.enumerate())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("LLM_BASE_URL", llm_server.url + "/v1")
    if "signal.SIGINT" in block.code:
        # It interrupts its own process: a SIGINT landing while a garbage-collection
        # callback runs is swallowed there by Python ("Exception ignored"), which pytest
        # reports as a failure of whatever test runs. In a process of its own, it is
        # what a reader runs.
        run_in_a_process(block, tmp_path)
        return
    # blank lines first, so a traceback names the line of the Markdown file
    code = compile("\n" * block.line + block.code, str(ROOT / block.file), "exec")
    switch_interval = sys.getswitchinterval()  # a recipe sets it for its process
    start = time.monotonic()
    try:
        exec(code, {"__name__": "__main__"})  # noqa: S102 - our own documentation
    except SystemExit as exc:  # a script ending with sys.exit(main())
        assert exc.code in (0, None), f"the example exited with {exc.code!r}"
    finally:
        sys.setswitchinterval(switch_interval)
    seconds = time.monotonic() - start
    assert seconds < SLOW, f"the example took {seconds:.1f} s; examples must be quick"

    def left() -> List[str]:
        return [
            t.name for t in threading.enumerate()
            if t not in threads_before and t.is_alive() and t.name not in PROCESS_THREADS
        ]

    assert wait_for(lambda: not left()), f"the example left threads running: {left()}"


def run_in_a_process(block: Block, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", "\n" * block.line + block.code],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SLOW,
    )
    assert done.returncode == 0, done.stderr[-3000:]


#: The SDKs warn when a model an example names gets old (the example still works), and
#: bpe-openai (the ``tokens`` extra) loads its data with a deprecated importlib call.
IGNORE_MODEL_AGE = "ignore:The model .* is deprecated:DeprecationWarning"
IGNORE_OPEN_BINARY = "ignore:open_binary is deprecated:DeprecationWarning"


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings(IGNORE_MODEL_AGE)
@pytest.mark.filterwarnings(IGNORE_OPEN_BINARY)
@pytest.mark.parametrize("block", examples())
def test_example_runs(
    block: Block,
    libraries: None,
    llm_server: LLMServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    run_block(block, llm_server, monkeypatch, tmp_path)


def the_block(file: str, containing: str) -> Block:
    found = [b for b in blocks_of(ROOT / file) if containing in b.code and not b.skip_reason]
    assert len(found) == 1, f"{file}: {len(found)} runnable examples contain {containing!r}"
    return found[0]


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings(IGNORE_MODEL_AGE)
def test_the_anthropic_recipe_prints_its_count_on_a_line_of_its_own(
    libraries: None,
    llm_server: LLMServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_block(the_block("docs/recipes.md", "from_anthropic("), llm_server, monkeypatch, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\d+ tokens \(the service's own count\)", lines[-1]), lines
    progress = re.compile(r"\[\d+ tokens, \d+/s\]")
    text = [line for line in lines[:-1] if not progress.fullmatch(line)]
    assert text and not any("tokens" in line for line in text), lines  # nothing glued together


def test_configuration_md_documents_every_key() -> None:
    import attrs

    import helixstream as hs
    from helixstream._config import FILE_KEYS

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(\w+)` \|", text, re.MULTILINE))
    fields = {f.name for f in attrs.fields(hs.StreamConfig)} - {"token_counter"}  # code only
    missing = sorted((set(FILE_KEYS) | fields) - rows)
    assert not missing, f"docs/configuration.md's table lacks {missing}"
    assert "`token_counter`" in text


def test_every_doc_has_runnable_examples() -> None:
    for name in ("README.md", "docs/guide.md", "docs/api.md", "docs/recipes.md"):
        runnable = [b for b in blocks_of(ROOT / name) if not b.skip_reason]
        assert runnable, f"{name} has no runnable python example"


def test_examples_are_skipped_only_with_a_reason() -> None:
    for block in all_blocks():
        if block.skip_reason:
            reason = block.skip_reason[len(NOT_RUN):].lstrip(":").strip()
            assert reason, f"{block.file}:{block.line}: say why the example is not run"


def test_sources_md_examples_are_run_by_test_sources_sdk() -> None:
    # docs/sources.md needs the SDKs and a server: tests/test_sources_sdk.py runs its
    # examples; make sure it runs every one that is not marked "not run"
    try:
        from . import test_sources_sdk
    except ImportError as exc:  # pragma: no cover - the test extra installs the SDKs
        pytest.skip(f"tests/test_sources_sdk.py cannot run here: {exc}")
    ours = [b.code for b in blocks_of(ROOT / "docs" / "sources.md") if not b.skip_reason]
    theirs = [param.values[0] for param in test_sources_sdk.doc_examples()]
    assert ours and ours == theirs


@pytest.mark.parametrize(
    "module",
    [
        "helixstream",
        "helixstream.sources",
        "helixstream.integrations.flask",
        "helixstream.integrations.django",
        "helixstream.integrations.tqdm",
    ],
)
def test_the_api_reference_covers_every_public_name(module: str) -> None:
    names = importlib.import_module(module).__all__
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(?:[\w.]+\.)?(\w+)[`(]", text))
    missing = [name for name in names if name not in documented]
    assert not missing, f"docs/api.md does not document {module}: {missing}"
