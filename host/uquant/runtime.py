"""Run the device runtime (device/uquant_rt.py) and generated modules inside this CPython process.

The host imports the very file that goes to the board, so the requantization proof and the CPython
conformance tests exercise the device's own code, not a copy of it.
"""
from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

DEVICE_DIR = Path(__file__).resolve().parents[2] / "device"
RUNTIME_FILE = DEVICE_DIR / "uquant_rt.py"
_counter = itertools.count()


def _load_runtime():
    if not RUNTIME_FILE.exists():
        raise FileNotFoundError(f"device runtime not found at {RUNTIME_FILE}")
    spec = importlib.util.spec_from_file_location("uquant_rt", RUNTIME_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rt = _load_runtime()
_units = None


def units_module():
    """device/uquant_units.py, imported against the device runtime (what `from uquant_units import Units` finds)."""
    global _units
    if _units is None:
        previous = sys.modules.get("uquant_rt")
        sys.modules["uquant_rt"] = rt
        try:
            spec = importlib.util.spec_from_file_location("uquant_units", DEVICE_DIR / "uquant_units.py")
            _units = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(_units)
        finally:
            if previous is None:
                sys.modules.pop("uquant_rt", None)
            else:
                sys.modules["uquant_rt"] = previous
    return _units


def load_source(source: str, name: str = "model_q", path: str | Path | None = None):
    """Execute a generated module's source against the device runtime; return the module namespace. path: the
    module's file (its __file__: a streamed module finds its weights file next to it)."""
    previous = sys.modules.get("uquant_rt")
    sys.modules["uquant_rt"] = rt  # what `from uquant_rt import Model` finds
    previous_units = sys.modules.get("uquant_units")
    if "uquant_units" in source:
        sys.modules["uquant_units"] = units_module()
    try:
        module = type(sys)(f"{name}_{next(_counter)}")
        module.__file__ = str(path) if path is not None else f"{name}.py"
        exec(compile(source, f"<{name}.py>", "exec"), module.__dict__)
    finally:
        if previous is None:
            sys.modules.pop("uquant_rt", None)
        else:
            sys.modules["uquant_rt"] = previous
        if previous_units is None:
            sys.modules.pop("uquant_units", None)
        else:
            sys.modules["uquant_units"] = previous_units
    return module


def load_file(path: str | Path):
    path = Path(path)
    return load_source(path.read_text(), path.stem, path)
