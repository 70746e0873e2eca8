"""The benchmark scripts run (benchmarks/README.md gives their commands): a tiny run of
``scale.py`` in each mode, so that an option documented there still works. Nothing here
measures speed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "options",
    [[], ["--no-progress"], ["--plain", "--burn", "5"], ["--plain-buffer"], ["--prefetch"]],
    ids=["engine", "no-progress", "plain-burn", "plain-buffer", "prefetch"],
)
def test_scale_runs_in_every_mode(options: list) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--streams", "4",
         "--seconds", "0.3", "--rate", "20", *options],
        capture_output=True, text=True, env=env, timeout=50,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().startswith("4 ")]
    assert len(rows) == 1, done.stdout
    assert rows[0][3] == "24/24", done.stdout  # every token delivered: 4 streams x 6
    assert "still alive" not in done.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "command",
    [
        ["throughput.py", "--chunks", "2000", "--latency-chunks", "50"],
        ["stop.py", "--trials", "3"],
        ["sse_memory.py", "--k", "5", "--events", "10"],
        ["rate.py", "--seconds", "0.5", "--rates", "50"],
    ],
    ids=lambda command: command[0] if isinstance(command, list) else command,
)
def test_a_benchmark_script_runs(command: list) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / command[0]), *command[1:]],
        capture_output=True, text=True, env=env, timeout=50,
    )
    # rate.py exits 1 when its rate target (a timing) is missed: not this test's
    # business, which is that the script runs to its end
    assert done.returncode in ((0, 1) if command[0] == "rate.py" else (0,)), done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stdout.strip()


@pytest.mark.slow  # 12 s: a gunicorn per variant
@pytest.mark.timeout(120)
def test_sse_scale_runs_against_a_real_gunicorn() -> None:
    pytest.importorskip("gunicorn")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sse_scale.py"), "--n", "5", "--seconds", "1",
         "--grace", "0", "--variants", "plain", "hs-wait"],
        capture_output=True, text=True, env=env, timeout=110,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| gthread | 5 | hs-wait | ")]
    assert len(rows) == 2, done.stdout  # its line of the table and its ratios to plain
    # what the clients checked (not timing): every event's text right, every connection
    # made, none closed early by the server, in both variants
    summaries = [line for line in done.stdout.splitlines() if "text errors" in line]
    assert len(summaries) == 2, done.stdout
    for line in summaries:
        assert "text errors 0, connect errors 0, closed by server 0" in line, line
