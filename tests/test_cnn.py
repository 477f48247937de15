"""Convolutional layers against torch: random Conv1d/Conv2d (+ReLU, + MaxPool) layers, every output compared."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import randmodels
import uquant
from conftest import FUZZ_SCALE

MIN_OUTPUTS = int(20_000 * FUZZ_SCALE)


def conv_fuzz(engine: str, dim: int, seed: int):
    """Returns (outputs compared, mismatching outputs, models, families seen)."""
    rng = np.random.default_rng(seed)
    compared = bad = models = 0
    families = set()
    while compared < MIN_OUTPUTS:
        chain, shape = randmodels.random_conv(rng, engine, dim)
        x = torch.randn((4,) + shape)
        converted = uquant.convert(chain, x, engine=engine)  # the example input self-checks against torch
        codes = randmodels.random_codes(rng, 12, int(np.prod(shape)))
        want = chain.layer_codes(codes.reshape((-1,) + shape))
        got = converted.layer_codes(codes)
        for g, w in zip(got, want):
            w = w.reshape(len(codes), -1)
            compared += w.size
            bad += int((g != w).sum())
        families |= {s.family for s in converted.plan.compute_steps}
        models += 1
    return compared, bad, models, families


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_conv_layers_match_torch_exactly(engine, dim, report):
    compared, bad, models, families = conv_fuzz(engine, dim, 100 + dim)
    report(f"conv{dim}d {engine:<8}: {compared} outputs of {models} random conv(+pool) layers, {bad} mismatches")
    assert bad == 0


@pytest.mark.parametrize("dim", [1, 2])
def test_conv_layers_on_x86(dim, report):
    """x86 runs conv on oneDNN for symmetric weights (VNNI CPUs): formula D, the best model known, not proven."""
    compared, bad, models, families = conv_fuzz("x86", dim, 200 + dim)
    report(f"conv{dim}d x86     : {compared} outputs of {models} random conv(+pool) layers, {bad} mismatches "
           f"({100 * bad / compared:.4f} %), formulas {sorted(families)}")
    assert bad <= compared * 1e-3


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
def test_small_cnn_matches_torch(engine):
    """conv -> relu -> conv -> maxpool -> flatten -> linear, quantized with prepare_fx/convert_fx."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(1)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, groups=2),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 5)).eval()
    x = torch.randn(128, 1, 9, 9)
    torch.backends.quantized.engine = engine
    prepared = prepare_fx(model, get_default_qconfig_mapping("qnnpack" if engine == "qnnpack" else "x86"), (x,))
    prepared(x)
    qmodel = convert_fx(prepared)
    converted = uquant.convert(qmodel, x[:4], engine=engine)
    xt = torch.randn(200, 1, 9, 9) * 2
    with torch.no_grad():
        want = qmodel(xt).numpy()
    out = converted.plan.output
    got = uquant.engines.dequantize(converted.run(xt.reshape(200, -1).numpy()), out.scale, out.zero_point)
    assert np.array_equal(got, want)
