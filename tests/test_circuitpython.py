"""The device runtime under CircuitPython's own interpreter, byte for byte against torch on this machine's platform.

`circuitpython` is built like a CircuitPython board (no native emitter: uquant_rt runs its bytecode kernels);
`circuitpython-native` keeps the emitter, so the viper tier runs too (uquant.hosts.circuitpython). Where the
interpreters are absent (a clone outside this workplace) these tests skip, saying so; CI (UQUANT_CI=1) must run
them (.ci/run finds the folder, and says loudly when a machine has none).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import uquant
from conftest import FUZZ_SCALE, platform_here
from randmodels import random_models
from uquant.examples import SEED_INPUTS, SeedTorchModel, seed_state_dict
from uquant.hosts import circuitpython
from uquant.hosts.mpmodule import run_batch
from uquant.runtime import DEVICE_DIR

ENGINES = ["x86", "qnnpack"]
MIN_OUTPUTS = int(20_000 * FUZZ_SCALE)


def require(native: bool = False) -> None:
    reason = circuitpython.missing_reason(native)
    if reason is None:
        return
    if os.environ.get("UQUANT_CI") == "1" and os.environ.get("UQUANT_CIRCUITPYTHON_OPTIONAL") != "1":
        pytest.fail(f"CircuitPython unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def run(code: str, files: dict, native: bool = False) -> str:
    return circuitpython.run_micropython(code, files, native=native)


def runtime_files(*extra: str) -> dict:
    return {f"/lib/{n}.py": (DEVICE_DIR / f"{n}.py").read_text() for n in ("uquant_rt", *extra)}


def test_the_board_build_has_no_native_emitter():
    require()
    out = run("import sys\nprint(sys.implementation.name)\n"
              "try:\n    exec('@micropython.viper\\ndef f(x: int) -> int:\\n    return x')\n"
              "except SyntaxError as e:\n    print('SyntaxError', e)\n"
              "import uquant_rt\nprint(uquant_rt.tier()[0])\n", runtime_files("uquant_viper"))
    assert out.split("\n")[:3] == ["circuitpython", "SyntaxError invalid micropython decorator", "bytecode"], out


def test_seed_on_circuitpython(report):
    require()
    seen = {}
    for engine in ENGINES:
        c = uquant.convert(seed_state_dict(), relu="hidden", engine=engine)
        codes = uquant.quantize_input(SEED_INPUTS, c.plan.input)
        want = SeedTorchModel(engine).layer_codes(SEED_INPUTS)[-1]
        got, preds, heap = run_batch(c.source, "seed_q", codes, host="circuitpython", heap=True)
        assert np.array_equal(got, want) and heap == 0
        assert preds.tolist() == want.argmax(1).tolist()
        seen[engine] = preds.tolist()
    report(f"CircuitPython seed (platform {platform_here().name}): {seen}, every byte = torch, run() allocates 0 B")


@pytest.mark.parametrize("engine", ENGINES)
def test_random_models_on_circuitpython(engine, report):
    """Random MLPs and conv(+pool) models on the board-like build (bytecode kernels): torch's bytes."""
    require()
    rng = np.random.default_rng(1700 + ENGINES.index(engine))
    outputs = models = 0
    for want, converted, codes in random_models(rng, engine):
        got, _, _ = run_batch(converted.source, converted.module_name, codes, host="circuitpython")
        assert np.array_equal(got, want), f"model {models}: CircuitPython differs from torch"
        outputs += want.size
        models += 1
        if outputs >= MIN_OUTPUTS and models >= 10:
            break
    report(f"CircuitPython {engine:<8}: {outputs} outputs of {models} random models (MLPs, conv+pool) equal torch "
           f"(platform {platform_here().name}), 0 mismatches, board-like build (bytecode kernels)")


@pytest.mark.parametrize("engine", ENGINES)
def test_viper_tier_on_circuitpython_native(engine, report):
    require(native=True)
    rng = np.random.default_rng(1800 + ENGINES.index(engine))
    outputs = models = 0
    for want, converted, codes in random_models(rng, engine):
        got, _, _ = run_batch(converted.source, converted.module_name, codes, host="circuitpython-native",
                              tier="viper")
        assert np.array_equal(got, want), f"model {models}: CircuitPython's viper tier differs from torch"
        outputs += want.size
        models += 1
        if outputs >= MIN_OUTPUTS // 2 and models >= 10:
            break
    report(f"CircuitPython viper {engine:<8}: {outputs} outputs of {models} random models equal torch "
           "(circuitpython-native, the build with the native emitter)")


def test_no_allocation_per_inference_under_heap_lock():
    """micropython.heap_lock() works here: any allocation inside run() would raise MemoryError."""
    require()
    c = uquant.convert(seed_state_dict(), relu="hidden", engine="x86")
    out = run("import micropython\nimport seed_q as m\nx = bytes([255, 255])\nm.run(x)\n"
              "micropython.heap_lock()\ntry:\n    for _ in range(20):\n        m.run(x)\n        m.predict(x)\n"
              "finally:\n    micropython.heap_unlock()\nprint('locked runs ok')\n",
              {**runtime_files(), "/lib/seed_q.py": c.source})
    assert "locked runs ok" in out


def test_units_on_circuitpython():
    """run_raw, dequantize and label_raw (device/uquant_units.py) give CPython's results."""
    require()
    c = uquant.convert(seed_state_dict(), relu="hidden", engine="x86", input_unit="0.000244", output_unit="0.001",
                       labels="a,b,c,d,e,f,g")
    raws = [[0, 0], [1200, 1843], [1000, -5], [-35, 2000], [4095, 4095]]
    host = c.device_module
    want = [(list(host.run_raw(r)), list(host.dequantize(host.run_raw(r))), host.label_raw(r)) for r in raws]
    out = run(f"import units_q as m\nfor r in {raws!r}:\n    print(list(m.run_raw(r)), list(m.dequantize(m.run_raw(r))), "
              "repr(m.label_raw(r)))\n", {**runtime_files("uquant_units"), "/lib/units_q.py": c.source})
    assert out.strip().splitlines() == [f"{a} {b} {c_!r}" for a, b, c_ in want]


def test_errors_on_circuitpython():
    """Bad input and a corrupted module give the same clear errors as on CPython and MicroPython."""
    require()
    c = uquant.convert(seed_state_dict(), relu="hidden", engine="x86", name="seed_q")
    files = {**runtime_files(), "/lib/seed_q.py": c.source,
             "/lib/bad_q.py": c.source.replace(r"\x80\x00\x00\x00", r"\x81\x00\x00\x00", 1)}  # a word c: 128 -> 129
    out = run("import seed_q as m\nfor x in (b'\\x00', [0, 256], 'ab', None):\n    try:\n        m.run(x)\n"
              "    except ValueError as e:\n        print('ValueError', e)\n"
              "try:\n    import bad_q\nexcept ValueError as e:\n    print(type(e).__name__, e)\n", files)
    lines = out.strip().splitlines()
    assert lines[0] == ("ValueError seed_q: expected 2 input values, got 1 (the model takes 2 ints in [0, 255]: one "
                        "sample of shape 2, flattened)")
    assert lines[1].startswith("ValueError seed_q: inputs must be ints in [0, 255], got 256")
    assert lines[2].startswith("ValueError seed_q: input must be bytes, bytearray or a list, tuple or array of ints, "
                               "got str")
    assert lines[3].startswith("ValueError seed_q: input must be bytes") and "got NoneType" in lines[3]
    assert lines[4] == ("CorruptModel seed_q: checksum mismatch (file corrupted or truncated?): re-deploy the model")


def test_saturating_platform_on_circuitpython():
    """Modules made for a platform without VNNI (satfix, im2col-order conv windows) under CircuitPython give
    uquant_rt's bytes under CPython, which tests/test_platforms.py holds to such a torch."""
    require()
    other = "x86-avx2" if platform_here().gemm == "exact" else "x86-avx512"
    rng = np.random.default_rng(1900)
    saturating = 0
    for models, (_, converted, codes) in enumerate(random_models(rng, "x86", other)):
        got, _, _ = run_batch(converted.source, converted.module_name, codes, host="circuitpython")
        assert np.array_equal(got, converted.run_codes(codes).reshape(len(codes), -1) % 256), f"model {models}"
        saturating += any(s.platform_saturation for s in converted.plan.compute_steps)
        if models >= 12 and saturating >= 5:
            break


def test_uquant_run_circuitpython(tmp_path, capsys):
    """`uquant run --circuitpython` runs the module there and prints what `uquant run` prints under CPython."""
    require()
    from uquant.cli import main

    path = uquant.convert(seed_state_dict(), relu="hidden", engine="x86").save(tmp_path / "seed_q.py")
    outs = []
    for extra in ([], ["--circuitpython"]):
        assert main(["run", str(path), "--input", "1,0.75", *extra]) == 0
        outs.append(capsys.readouterr().out.splitlines())
    assert outs[1][0] == "runtime      : device runtime under CircuitPython (its unix port, built like a board)"
    assert outs[0][1:] == outs[1][1:]
