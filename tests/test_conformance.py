"""Conformance against torch: random quantized MLPs through torch's kernels and through the device runtime.

Every layer's output codes are compared, byte for byte, for every sample. Zero mismatches are allowed.
The final-layer counts alone reach the promised 100,000 outputs per engine.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import randmodels
import uquant
from conftest import FUZZ_SCALE, has_vnni

ENGINES = ["x86", "fbgemm", "qnnpack"]
MIN_FINAL_OUTPUTS = int(100_000 * FUZZ_SCALE)


def compare_chain(chain, converted, codes) -> tuple[int, int]:
    """Every sample through the device runtime, every layer compared; return (final outputs, all outputs)."""
    want = chain.layer_codes(codes)
    got = converted.layer_codes(codes)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        w = w.reshape(len(codes), -1)
        if not np.array_equal(g, w):
            j, k = np.argwhere(g != w)[0]
            pytest.fail(f"layer {i} sample {j} output {k}: device {g[j, k]}, torch {w[j, k]} (input {codes[j].tolist()})")
    return got[-1].size, sum(g.size for g in got)


@pytest.mark.parametrize("engine", ENGINES)
def test_random_mlps_match_torch(engine, report):
    rng = np.random.default_rng(1000 + ENGINES.index(engine))
    vnni = has_vnni() or engine == "qnnpack"
    final = total = models = exceptions = channels = 0
    while final < MIN_FINAL_OUTPUTS:
        chain = randmodels.random_chain(rng, engine)
        converted = uquant.convert(chain, engine=engine)
        codes = randmodels.random_codes(rng, 60, converted.plan.n_in)
        if not vnni:
            codes = codes % 128  # see README: without VNNI torch saturates int16 pair sums for codes > 127
        f, t = compare_chain(chain, converted, codes)
        final += f
        total += t
        models += 1
        exceptions += sum(len(s.fixes) // 3 for s in converted.plan.steps)
        channels += sum(s.N for s in converted.plan.steps)
    report(f"conformance {engine:<8}: {models} random MLPs, {final} final outputs ({total} outputs of all layers) "
           f"equal to torch, 0 mismatches; {exceptions} exception entries over {channels} channels"
           + ("; CPU has VNNI: torch's fbgemm sums int8 products exactly, as uquant does" if has_vnni() else
              "; CPU lacks VNNI: x86/fbgemm inputs limited to codes 0..127 (torch saturates int16 pairs above)"))


def single_layer(rng, engine, K, N, tie: bool):
    """One Linear whose multiplier is a power of two (tie=True) so many outputs land exactly on .5."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    torch.backends.quantized.engine = engine
    in_scale = float(2.0 ** -rng.integers(3, 9)) if tie else float(10 ** rng.uniform(-3, 0))
    w_scale = float(2.0 ** -rng.integers(3, 8)) if tie else float(10 ** rng.uniform(-3, -1))
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(rng.integers(-128, 128, (N, K)).astype(np.int8)),
                                                 w_scale, 0)
    ats = in_scale * w_scale
    if tie:
        bias = torch.from_numpy((rng.integers(-200, 200, N) + 0.5) * ats * 2.0 ** rng.integers(0, 4)).float()
        out_scale = ats * 2.0 ** int(rng.integers(0, 8))
    else:
        bias = torch.randn(N) * ats * 300
        out_scale = ats * float(10 ** rng.uniform(0, 3))
    relu = bool(rng.random() < 0.5)
    layer = (nniq.LinearReLU if relu else nnq.Linear)(K, N)
    layer.set_weight_bias(qw, bias)
    layer.scale = float(out_scale)
    layer.zero_point = int(rng.choice([0, 128, 255, int(rng.integers(0, 256))]))
    return randmodels.Chain(in_scale, int(rng.choice([0, 255, int(rng.integers(0, 256))])), [layer]).eval()


@pytest.mark.parametrize("engine", ENGINES)
def test_every_input_of_small_layers(engine, report):
    """K = 1 and K = 2 layers, every possible input (256 and 65,536 of them), tie-heavy scales."""
    rng = np.random.default_rng(7 + ENGINES.index(engine))
    compared = 0
    grid1 = np.arange(256)[:, None]
    grid2 = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1).reshape(-1, 2)
    if not (has_vnni() or engine == "qnnpack"):
        grid2 = grid2[(grid2 < 128).all(1)]
    for tie in (True, False):
        for K, grid, n_models in ((1, grid1, 6), (2, grid2, 1)):
            for _ in range(n_models):
                chain = single_layer(rng, engine, K, int(rng.integers(1, 5)), tie)
                converted = uquant.convert(chain, engine=engine)
                compared += compare_chain(chain, converted, grid)[0]
    report(f"exhaustive {engine:<8}: {compared} outputs of K=1/K=2 layers over every input code, 0 mismatches")


@pytest.mark.parametrize("engine", ENGINES)
def test_fx_calibrated_models(engine):
    """Models quantized the way users do it: prepare_fx, calibrate, convert_fx, with the engine's qconfig."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = engine
    torch.manual_seed(3)
    for width in (8, 32):
        float_model = torch.nn.Sequential(torch.nn.Linear(6, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                          torch.nn.ReLU(), torch.nn.Linear(width, 4)).eval()
        x = torch.randn(256, 6) * 2
        qconfig = get_default_qconfig_mapping("qnnpack" if engine == "qnnpack" else "x86")
        prepared = prepare_fx(float_model, qconfig, (x,))
        prepared(x)
        qmodel = convert_fx(prepared)
        converted = uquant.convert(qmodel, x[:64], engine=engine)  # example_input: torch vs runtime self-check
        xt = torch.randn(500, 6) * 4  # beyond the calibration range too: codes clip at 0 and 255
        with torch.no_grad():
            want = qmodel(xt).numpy()
        out = converted.plan.output
        got = uquant.engines.dequantize(converted.run(xt.numpy()), out.scale, out.zero_point)
        assert np.array_equal(got, want)
