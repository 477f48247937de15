"""Shared test set-up: import paths, quiet torch, and a summary of measured figures at the end of the run."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*(quint8|qint8|qint32|TypedStorage).*")

# How much fuzzing: 1 in CI (the promised minimum counts), more with UQUANT_FUZZ_SCALE=10 for long runs.
FUZZ_SCALE = float(os.environ.get("UQUANT_FUZZ_SCALE", "1"))

from uquant.api import torch_engine  # noqa: E402,F401 - tests set torch's engine for a block
from uquant.platforms import here as platform_here  # noqa: E402,F401 - the platform torch runs on here

_REPORT: list[str] = []


@pytest.fixture(autouse=True)
def _restore_torch_engine():
    """Tests set torch's quantized engine freely; put it back so no test sees another's choice."""
    import torch

    old = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = old


@pytest.fixture
def report():
    """Tests call report("...") to put a line in the end-of-run summary (figures, not assertions)."""
    return _REPORT.append


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("uquant measurements")
        for line in _REPORT:
            terminalreporter.write_line(line)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`uquant ARGV` as a user types it, in this process -> (exit status, stdout, stderr)."""
    from uquant import cli

    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def source_lines(out: str) -> dict[str, str]:
    """uquant evaluate's per-source lines: 'float   97.5 % (387/397)' -> {'float': '97.5 % (387/397)'}."""
    import re

    got = {}
    for line in out.splitlines():
        m = re.match(r"(float|torch quantized|device \([^)]*\))\s{2,}(.*)$", line)
        if m:
            got[m.group(1)] = m.group(2)
    return got
