"""Run a generated model module inside the real MicroPython interpreter (the npm WebAssembly port).

The interpreter is 32-bit like the boards, so this is where "no big ints, no allocation in run()" is
measured: `run_batch(..., heap=True)` reports the heap bytes one `run()` call allocates.
"""
from __future__ import annotations

import numpy as np

from ..runtime import RUNTIME_FILE
from .wasm import parse_heap_delta, run_micropython, heap_delta_snippet


def run_batch(source: str, module: str, codes: np.ndarray, *, heap: bool = False, timeout: float = 300):
    """Input codes (batch, n_in) -> (output codes (batch, n_out), predictions (batch,), heap bytes or None)."""
    codes = np.asarray(codes, np.int64)
    n_in = codes.shape[1]
    blob = bytes(codes.astype(np.uint8).ravel().tolist())
    if codes.min(initial=0) < 0 or codes.max(initial=0) > 255:
        raise ValueError("input codes must be in [0, 255]")
    run = (
        f"import {module} as m\n"
        "from binascii import hexlify\n"
        f"X = {blob!r}\n"
        f"for i in range({len(codes)}):\n"
        f"    x = X[i * {n_in}:(i + 1) * {n_in}]\n"
        "    y = m.run(x)\n"
        "    print('Y', hexlify(y).decode(), m.predict(x))\n"
    )
    chunks = [run]
    if heap:
        chunks.append(f"x = X[:{n_in}]\nm.run(x)\n")  # warm up, then measure one call
        chunks.append(heap_delta_snippet("m.run(x)"))
    out = run_micropython(chunks, {"/lib/uquant_rt.py": RUNTIME_FILE.read_text(), f"/lib/{module}.py": source},
                          timeout=timeout)
    rows = [line.split() for line in out.splitlines() if line.startswith("Y ")]
    ys = np.array([list(bytes.fromhex(r[1])) for r in rows], np.int64)
    preds = np.array([int(r[2]) for r in rows], np.int64)
    return ys, preds, (parse_heap_delta(out) if heap else None)
