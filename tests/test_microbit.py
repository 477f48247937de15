"""Real firmware in the loop: the BBC micro:bit's MicroPython 1.9.2 (nRF51, Cortex-M0, about 9 KB of heap) under qemu.

The board is Debian's firmware-microbit-micropython booted by qemu-system-arm -M microbit (uquant.hosts.microbit),
reached through uquant's own raw-REPL Link (mpremote's serial transport, as `uquant deploy` uses). The full
uquant_rt.py does not fit this heap, so device/uquant_micro.py goes there as uquant_rt.py; the generated
modules are the ordinary ones. Every output byte is compared with torch's int_repr().
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time

import numpy as np
import pytest
import torch

import uquant
from uquant import codegen
from uquant.examples import SEED_INPUTS, SEED_SATURATED, SeedTorchModel, seed_expected, seed_state_dict
from uquant.hosts import microbit
from uquant.link import LinkError
from uquant.runtime import DEVICE_DIR, load_source

from conftest import platform_here, torch_engine
from randmodels import Chain, nnq, nniq, random_chain, random_codes

MICRO = DEVICE_DIR / "uquant_micro.py"
# The largest MLP of the family below that imports and runs on the emulated micro:bit next to uquant_micro,
# found by trying hidden widths on the board (HIDDEN_LIMIT + 1 fails with MemoryError while the board compiles
# the module: its parse of the Model(...) call, not the resident model, is what runs out).
IN, OUT = 16, 10
HIDDEN_LIMIT = 3  # 6 until the runtime learnt the saturating pairs of CPUs without VNNI (400 B more of it); 3 since
# parameter words are bytes (version 4)


@pytest.fixture
def needs_board():
    reason = microbit.missing_reason()
    if reason is None:
        return
    # .ci/run installs qemu and the firmware and sets UQUANT_CI=1: there these tests must run. Elsewhere a
    # missing system package is a skip with the reason, not a failure of `make test`.
    if os.environ.get("UQUANT_CI") == "1":
        pytest.fail(f"emulated micro:bit unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"emulated micro:bit unavailable: {reason} (apt-get install qemu-system-arm "
                "firmware-microbit-micropython to run these tests)")


def mlp(hidden: int, seed: int = 0) -> Chain:
    """quantize -> LinearReLU(IN, hidden) -> Linear(hidden, OUT), per-tensor weights, packed for qnnpack (whose bytes,
    and so whose module, are the same on every CPU: the limit found must not depend on the host's)."""
    torch.backends.quantized.engine = "qnnpack"
    g = torch.Generator().manual_seed(seed)
    layers, x_std = [], 0.5
    for i, (K, N) in enumerate(((IN, hidden), (hidden, OUT))):
        w = torch.randn(N, K, generator=g) * 0.3
        qw = torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8)
        layer = (nniq.LinearReLU if i == 0 else nnq.Linear)(K, N)
        layer.set_weight_bias(qw, torch.randn(N, generator=g) * 0.1)
        y_std = x_std * 0.3 * K ** 0.5
        layer.scale, layer.zero_point = float(y_std * 6 / 255), 0 if i == 0 else 128
        layers.append(layer)
        x_std = y_std
    return Chain(1 / 255, 0, layers).eval()


def test_seed_on_the_microbit(needs_board, report):
    c = uquant.convert(seed_state_dict(), relu="hidden", engine="x86")
    codes = [list(map(int, row)) for row in uquant.quantize_input(SEED_INPUTS, c.plan.input)]
    torch_model = SeedTorchModel("x86")
    want = [torch_model.layer_codes(SEED_INPUTS[i:i + 1])[-1][0].tolist() for i in range(len(SEED_INPUTS))]
    t = time.monotonic()
    r = microbit.run_model(MICRO.read_text(), codegen.generate(c.plan, "seed_q"), "seed_q", codes)
    assert r["predictions"] == seed_expected("x86", platform_here())
    assert r["outputs"] == want
    report(f"micro:bit (MicroPython 1.9.2 under qemu): seed {r['predictions']}, every byte = torch; heap "
           f"{r['heap_free']} B free at boot, runtime (uquant_micro) {r['runtime_heap']} B, seed model "
           f"{r['model_heap']} B ({time.monotonic() - t:.1f} s)")


def test_saturating_seed_on_the_microbit(needs_board):
    """The seed made for a CPU without VNNI, on any host: the board saturates 255*-56 + 255*-128 to int16 like
    fbgemm there (class 2 for [1, 1]) and gives uquant_rt's bytes (which test_platforms holds to such a torch)."""
    c = uquant.convert(seed_state_dict(), relu="hidden", engine="x86", platform="x86-avx2")
    assert c.plan.steps[0].sat_pairs
    codes = [list(map(int, row)) for row in uquant.quantize_input(SEED_INPUTS, c.plan.input)]
    r = microbit.run_model(MICRO.read_text(), codegen.generate(c.plan, "seed_q"), "seed_q", codes)
    assert r["predictions"] == SEED_SATURATED
    assert r["outputs"] == c.run_codes(np.array(codes)).tolist()


@pytest.mark.parametrize("engine,seed", [("x86", 7), ("fbgemm", 2), ("x86", 11)])
def test_micro_runtime_saturates_as_uquant_rt(engine, seed):
    """Models made for a saturating platform: uquant_micro gives uquant_rt's bytes on every input (uquant_rt is
    held to torch on such platforms by test_platforms and, on such a CPU, by every test)."""
    with torch_engine(engine):
        torch.manual_seed(seed)
        chain = random_chain(np.random.default_rng(seed), engine)
    c = uquant.convert(chain, engine=engine, platform="x86-avx2")
    assert any(s.sat_pairs for s in c.plan.steps)
    module = load_micro(codegen.generate(c.plan, "model_q"))
    codes = random_codes(np.random.default_rng(seed), 200, c.plan.n_in)
    got = np.array([list(module.run(bytes(map(int, x)))) for x in codes])
    assert np.array_equal(got, c.run_codes(codes))


def test_micro_runtime_refuses_weights_laid_out_for_another_board():
    c = uquant.convert(seed_state_dict(), relu="hidden", engine="x86")
    with pytest.raises(Exception, match="sizes do not match"):
        load_micro(codegen.generate(c.plan, "seed_q", layout="thumb"))


def load_micro(source: str):
    """A generated module under CPython with device/uquant_micro.py as its uquant_rt."""
    spec = importlib.util.spec_from_file_location("uquant_micro", MICRO)
    micro = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(micro)
    saved = sys.modules.get("uquant_rt")
    sys.modules["uquant_rt"] = micro
    try:
        module = type(sys)("model_q")
        exec(compile(source, "<model_q.py>", "exec"), module.__dict__)
        return module
    finally:
        if saved is None:
            sys.modules.pop("uquant_rt", None)
        else:
            sys.modules["uquant_rt"] = saved


# (engine, seed): (x86, 7) and (qnnpack, 4) have requantization exceptions, (x86, 3) has S > 30 (limb arithmetic)
@pytest.mark.parametrize("engine,seed", [("x86", 7), ("qnnpack", 4), ("x86", 3), ("fbgemm", 2)])
def test_micro_runtime_equals_torch_on_cpython(engine, seed):
    # No board needed: uquant_micro's arithmetic against torch on random MLPs, every byte.
    with torch_engine(engine):
        torch.manual_seed(seed)
        chain = random_chain(np.random.default_rng(seed), engine)
        c = uquant.convert(chain, engine=engine, name=f"rand_{engine}_{seed}")
        module = load_micro(codegen.generate(c.plan, "model_q"))
        codes = random_codes(np.random.default_rng(seed), 200, c.plan.n_in)
        want = chain.layer_codes(codes)[-1]
    got = np.array([list(module.run(bytes(map(int, x)))) for x in codes])
    assert (got == want).all()
    assert [module.predict(bytes(map(int, x))) for x in codes[:20]] == [int(np.argmax(w)) for w in want[:20]]


def test_micro_runtime_refuses_what_it_cannot_run():
    source = codegen.generate(uquant.convert(seed_state_dict(), relu="hidden", engine="x86").plan, "seed_q")
    with pytest.raises(ValueError, match="checksum"):
        load_micro(source.replace(r"\x80\x00\x00\x00", r"\x81\x00\x00\x00", 1))  # a word c = 128 becomes 129
    seed = load_micro(source)
    with pytest.raises(ValueError, match="expected 2 input values"):
        seed.run(b"\x00")
    with pytest.raises(ValueError, match=r"inputs must be ints in \[0, 255\]"):
        seed.run([0, 256])


def _on_board(hidden: int, codes: np.ndarray):
    """(torch's codes, the board's result or the LinkError it raised) for the MLP with `hidden` units."""
    model = mlp(hidden)
    c = uquant.convert(model, engine="qnnpack", name=f"mlp{hidden}")
    want = model.layer_codes(codes)[-1].tolist()
    source = codegen.generate(c.plan, "big_q")
    host = load_source(source)  # the same module under CPython with uquant_rt: the same bytes
    assert [list(host.run(bytes(map(int, x)))) for x in codes] == want
    try:
        return want, microbit.run_model(MICRO.read_text(), source, "big_q", [list(map(int, x)) for x in codes])
    except LinkError as e:
        assert "MemoryError" in str(e), e
        return want, None


def test_largest_mlp_that_fits(needs_board, report):
    # Start at the recorded limit and step until the edge: H fits and H + 1 does not. A drift of up to two units
    # (the generated module changed a little) is tolerated and reported; more fails, so the README stays true.
    codes = np.random.default_rng(0).integers(0, 128, (4, IN))
    t = time.monotonic()
    results = {}
    h = HIDDEN_LIMIT
    while True:
        results[h] = _on_board(h, codes)
        if results[h][1] is not None and (h + 1) in results:
            break
        if results[h][1] is None and (h - 1) in results:
            h -= 1
            break
        h = h + 1 if results[h][1] is not None else h - 1
        assert abs(h - HIDDEN_LIMIT) <= 2, f"the limit moved: {IN}-{h}-{OUT} (recorded: {IN}-{HIDDEN_LIMIT}-{OUT})"
    want, r = results[h]
    assert r["outputs"] == want
    weights = IN * h + h * OUT
    report(f"micro:bit: largest MLP {IN}-{h}-{OUT} ({weights} weights; {IN}-{h + 1}-{OUT} runs out of heap while the "
           f"board compiles the module): model {r['model_heap']} B of heap after import, "
           f"{r['heap_free'] - r['runtime_heap'] - r['model_heap']} B left; 4 inputs = torch "
           f"({time.monotonic() - t:.1f} s)")
