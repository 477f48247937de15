"""Static check: the code that runs on the board is integer-only and imports only what MicroPython has.

Checked on the parsed source (ast), so comments -- where the generated header shows scales as floats
for the reader -- do not count, and a float hidden in an expression cannot slip through a regex.
Covered: every device/*.py file, and generated modules for the seed model on every engine plus
random torch models (some with requantization exceptions, some with S >= 30 limb arithmetic).
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import uquant
from uquant.examples import seed_state_dict
from uquant.runtime import DEVICE_DIR

from randmodels import random_chain

DEVICE_FILES = sorted(DEVICE_DIR.glob("*.py"))
ENGINES = ("x86", "fbgemm", "qnnpack")
# Modules a device file may import: all exist on MicroPython ports (binascii.crc32 may not: the
# runtime falls back to its own crc32).
DEVICE_IMPORTS = {"array", "binascii", "micropython", "gc", "sys", "time", "struct", "os"}
# A generated module only talks to the device runtime.
GENERATED_IMPORTS = {"uquant_rt"}
FLOAT_MODULES = {"math", "cmath"}
# (engine, seed) of random models: (x86, 7) and (qnnpack, 4) have exceptions, (x86, 3) has S > 30.
RANDOM_MODELS = [("x86", 7), ("qnnpack", 4), ("x86", 3), ("fbgemm", 2)]


def float_violations(source: str, filename: str = "<source>") -> list[str]:
    """Every float-producing or float-using construct in `source`, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    found = []

    def bad(node, what):
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (float, complex)):
            bad(node, f"{type(node.value).__name__} literal {node.value!r}")
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Div):
            bad(node, "true division '/'")
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Pow):
            # int ** negative int is a float; a literal negative exponent is the only case we can see statically
            e = node.right if isinstance(node, ast.BinOp) else node.value
            if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
                bad(node, "power with a negative exponent")
        elif isinstance(node, ast.Name) and node.id == "float":
            bad(node, "name 'float'")
        elif isinstance(node, ast.Attribute) and node.attr == "float":
            bad(node, "attribute '.float'")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in FLOAT_MODULES:
                    bad(node, f"import {a.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.module and node.module.split(".")[0] in FLOAT_MODULES:
                bad(node, f"from {node.module} import ...")
    # a call to float(...) is also reported as such, so the message says what was meant
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float":
            bad(node, "call to float()")
    return found


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, full module name) of every import; relative imports are reported as '.<module>'."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, "." * node.level + (node.module or "")))
    return out


def import_violations(source: str, allowed: set[str], filename: str = "<source>") -> list[str]:
    return [f"{filename}:{line}: imports {mod!r} (allowed: {sorted(allowed)})"
            for line, mod in imported_modules(source) if mod not in allowed]


# ---------------------------------------------------------------------------------------------------
# the modules under test

def _random_converted(engine: str, seed: int):
    old = torch.backends.quantized.engine
    try:
        torch.manual_seed(seed)
        chain = random_chain(np.random.default_rng(seed), engine)
        return uquant.convert(chain, engine=engine, name=f"rand_{engine}_{seed}")
    finally:
        torch.backends.quantized.engine = old


@pytest.fixture(scope="module")
def generated():
    """name -> Converted for the seed model on each engine and a few random models."""
    out = {f"seed_{e}": uquant.convert(seed_state_dict(), engine=e, relu="hidden") for e in ENGINES}
    for engine, seed in RANDOM_MODELS:
        out[f"rand_{engine}_{seed}"] = _random_converted(engine, seed)
    return out


def test_device_dir_has_the_runtime():
    assert DEVICE_DIR / "uquant_rt.py" in DEVICE_FILES


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.name)
def test_device_file_is_integer_only(path: Path):
    assert float_violations(path.read_text(), path.name) == []


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.name)
def test_device_file_imports_only_micropython_modules(path: Path):
    assert import_violations(path.read_text(), DEVICE_IMPORTS, path.name) == []


def test_generated_modules_are_integer_only(generated):
    problems = []
    for name, conv in generated.items():
        problems += float_violations(conv.source, f"{name}.py")
        problems += import_violations(conv.source, GENERATED_IMPORTS, f"{name}.py")
    assert problems == []


def test_generated_modules_cover_exceptions_and_limb_arithmetic(generated):
    # The check above is only meaningful if the modules exercise every code path the codegen has.
    steps = [s for conv in generated.values() for s in conv.plan.steps]
    assert any(s.fixes for s in steps), "no generated module in this test has an exceptions tuple"
    assert any(w >= 30 for s in steps for w in s.words[6::7]), "no channel with S >= 30"
    assert any(w < 30 for s in steps for w in s.words[6::7]), "no channel with S < 30"
    # and the exceptions really are in the source that was checked, as int32 (channel, a, code) triples
    with_fixes = [c for c in generated.values() if any(s.fixes for s in c.plan.steps)]
    assert any("# exceptions: int32 (channel, a, code) triples" in c.source for c in with_fixes)


def test_generated_header_floats_live_only_in_comments(generated):
    # The header shows the scales as floats; make sure the checker is not passing because they are absent.
    src = generated["seed_x86"].source
    assert "scale 0.0038999998942017555" in src
    assert float_violations(src) == []


# ---------------------------------------------------------------------------------------------------
# the checker itself catches every forbidden construct

@pytest.mark.parametrize("snippet", [
    "x = 1.5",
    "x = 1e3",
    "x = 2j",
    "x = a / b",
    "x = (a + 1) / 2",
    "x /= 2",
    "y = float(3)",
    "y = float",
    "ok = isinstance(x, float)",
    "def f(x=float): pass",
    "import math",
    "import math as m",
    "import cmath",
    "from math import floor",
    "from cmath import sqrt",
    "from math.x import y",
    "y = 2 ** -1",
    "y **= -3",
    "y = x.float()",
    "def f():\n    if a:\n        return [v * 0.5 for v in b]\n",
])
def test_checker_catches(snippet):
    assert float_violations(snippet), f"checker missed a float in: {snippet!r}"


@pytest.mark.parametrize("snippet", [
    "x = a // b", "x //= 2", "x = a >> 3", "x = 2 ** 30", "x = 'float 1.5 / 2'", "# 1.5 / float\nx = 1",
    "x = b'\\x00'", "from array import array", "floaty = 1", "x = obj.floaty",
])
def test_checker_accepts(snippet):
    assert float_violations(snippet) == []


@pytest.mark.parametrize("snippet", [
    "import numpy", "import math", "from collections import OrderedDict", "import os.path",
    "from . import helper", "from .x import y", "import ustruct, array", "from uarray import array",
    "try:\n    import ujson\nexcept ImportError:\n    pass\n",
])
def test_import_checker_catches(snippet):
    assert import_violations(snippet, DEVICE_IMPORTS)


def test_import_checker_accepts():
    src = "from array import array\nimport gc, sys\ntry:\n    from binascii import crc32\nexcept ImportError:\n    pass\n"
    assert import_violations(src, DEVICE_IMPORTS) == []
