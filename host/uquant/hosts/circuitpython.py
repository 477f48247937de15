"""Run code under CircuitPython's own interpreter: its unix port, built as a board and as the port ships.

Two builds (see their README in shared/tools/circuitpython): ``circuitpython`` is like a CircuitPython board,
with no native emitter (``@micropython.viper`` is a SyntaxError, so uquant_rt falls back to its bytecode
kernels, as on every board without ``CIRCUITPY_ENABLE_MPY_NATIVE``); ``circuitpython-native`` keeps the x64
emitter, so the viper tier runs too. The API is :mod:`uquant.hosts.unix`'s (the same port underneath):
files under ``/lib`` on MICROPYPATH, stdout back, tracebacks as MicroPythonError.

Facts worth knowing: CircuitPython 10.3 (alpha), a 64-bit build (small ints are 63-bit, so big-int costs a
32-bit board would pay are hidden here, as on the MicroPython unix port); ``gc.mem_alloc()`` and
``micropython.heap_lock()`` work; it runs uquant_rt.py unchanged.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import unix
from .unix import MicroPythonError, heap_delta_snippet, parse_heap_delta

__all__ = ["MicroPythonError", "binary", "heap_delta_snippet", "missing_reason", "parse_heap_delta",
           "run_micropython", "TOOLS"]

# The interpreters live beside the project (shared/tools/circuitpython), or where $UQUANT_CIRCUITPYTHON points.
TOOLS = Path(os.environ.get("UQUANT_CIRCUITPYTHON") or
             Path(__file__).resolve().parents[4] / "shared" / "tools" / "circuitpython")


def binary(native: bool = False) -> Path | None:
    """The board-like build, or with native=True the one with the native emitter; None if absent."""
    path = TOOLS / ("circuitpython-native" if native else "circuitpython")
    return path if path.is_file() and os.access(path, os.X_OK) else None


def missing_reason(native: bool = False) -> str | None:
    """None if that build can be run; otherwise what is missing."""
    if binary(native) is None:
        return (f"CircuitPython's unix port ({'circuitpython-native' if native else 'circuitpython'}) is not in "
                f"{TOOLS} (set UQUANT_CIRCUITPYTHON to the folder holding it)")
    return None


def run_micropython(code: str | Sequence[str], files: Mapping[str, str | bytes] | None = None, timeout: float = 120,
                    *, native: bool = False, heap_size: int | None = None) -> str:
    """As uquant.hosts.unix.run_micropython, under CircuitPython (native=True: the build with the native emitter)."""
    path = binary(native)
    if path is None:
        raise RuntimeError(missing_reason(native))
    return unix.run_micropython(code, files, timeout, binary=path, heap_size=heap_size)
