"""Run a generated model module inside a real MicroPython interpreter, a batch of inputs at a time.

The default host is the npm WebAssembly port: 32-bit like the boards, so this is where "no big ints, no
allocation in run()" is measured: `run_batch(..., heap=True)` reports the heap bytes one `run()` call
allocates. host="unix" runs the x64 unix port instead, which has the native emitter: with tier="viper" the
model's layers run on the viper kernels (device/uquant_viper.py). host="circuitpython" runs CircuitPython's own
interpreter as a board has it (bytecode kernels), "circuitpython-native" its build with the native emitter.
"""
from __future__ import annotations

import numpy as np

from functools import partial

from ..runtime import DEVICE_DIR
from . import circuitpython, unix, wasm

# host -> (module with heap_delta_snippet/parse_heap_delta, its run_micropython, whether it has viper)
HOSTS = {
    "wasm": (wasm, wasm.run_micropython, False),
    "unix": (unix, unix.run_micropython, True),
    "circuitpython": (circuitpython, partial(circuitpython.run_micropython, native=False), False),
    "circuitpython-native": (circuitpython, partial(circuitpython.run_micropython, native=True), True),
}


def run_batch(source: str, module: str, codes: np.ndarray, *, heap: bool = False, timeout: float = 300,
              host: str = "wasm", tier: str | None = None, heap_size: int | None = None):
    """Input codes (batch, n_in) -> (output codes (batch, n_out), predictions (batch,), heap bytes or None).

    tier forces uquant_rt.TIER (the run fails if the model does not get that tier); heap_size sets the GC heap
    in bytes (a module of megabytes, e.g. a torchvision model, needs more than the ports' default).
    """
    hostmod, run_micropython, viper = HOSTS[host]
    codes = np.asarray(codes, np.int64)
    n_in = codes.shape[1]
    blob = bytes(codes.astype(np.uint8).ravel().tolist())
    if codes.min(initial=0) < 0 or codes.max(initial=0) > 255:
        raise ValueError("input codes must be in [0, 255]")
    force = "" if tier is None else f"import uquant_rt\nuquant_rt.TIER = {tier!r}\n"
    check = "" if tier is None else f"assert m.model.tier == {tier!r}, m.model.tier\n"
    run = (
        force + f"import {module} as m\n" + check +
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
        chunks.append(hostmod.heap_delta_snippet("m.run(x)"))
    kernels = ("uquant_rt", "uquant_viper") if viper else ("uquant_rt",)
    if "from uquant_units import" in source:  # converted with --input-unit/--output-unit/--labels
        kernels += ("uquant_units",)
    files = {f"/lib/{k}.py": (DEVICE_DIR / f"{k}.py").read_text() for k in kernels}
    out = run_micropython(chunks, {**files, f"/lib/{module}.py": source}, timeout=timeout, heap_size=heap_size)
    rows = [line.split() for line in out.splitlines() if line.startswith("Y ")]
    ys = np.array([list(bytes.fromhex(r[1])) for r in rows], np.int64)
    preds = np.array([int(r[2]) for r in rows], np.int64)
    return ys, preds, (hostmod.parse_heap_delta(out) if heap else None)
