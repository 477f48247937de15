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
from conftest import FUZZ_SCALE, platform_here

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
    final = total = models = exceptions = channels = 0
    while final < MIN_FINAL_OUTPUTS:
        chain = randmodels.random_chain(rng, engine)
        converted = uquant.convert(chain, engine=engine)
        codes = randmodels.random_codes(rng, 60, converted.plan.n_in)
        f, t = compare_chain(chain, converted, codes)
        final += f
        total += t
        models += 1
        exceptions += sum(len(s.fixes) // 3 for s in converted.plan.steps)
        channels += sum(s.N for s in converted.plan.steps)
    report(f"conformance {engine:<8}: {models} random MLPs, {final} final outputs ({total} outputs of all layers) "
           f"equal to torch, 0 mismatches; {exceptions} exception entries over {channels} channels"
           + f"; platform {platform_here().name}, input codes 0..255")


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


def full_range_qconfig(engine: str):
    """The engine's default qconfig with full-range activations (reduce_range=False): codes up to 255 inside the
    calibrated range, where fbgemm without VNNI can saturate its int16 pair sums."""
    from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig
    from torch.ao.quantization.observer import HistogramObserver

    base = get_default_qconfig("qnnpack" if engine == "qnnpack" else "x86")
    act = HistogramObserver.with_args(reduce_range=False)
    return QConfigMapping().set_global(QConfig(activation=act, weight=base.weight))


def fx_full_range_model(rng, engine: str, cnn: bool):
    """A random FX MLP (6-W-W-O) or CNN (conv-relu-pool-conv-relu-flatten-linear on 1x8x8), calibrated on data
    of scale 1; its inputs are then drawn up to 10x the calibration range."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    nn = torch.nn
    torch.manual_seed(int(rng.integers(2 ** 31)))
    if cnn:
        c1, c2 = int(rng.choice([4, 8])), int(rng.choice([8, 16]))
        model = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c1, c2, 3),
                              nn.ReLU(), nn.Flatten(), nn.Linear(c2 * 4, 16))
        shape = (1, 8, 8)
    else:
        w = int(rng.choice([16, 32, 64]))
        model = nn.Sequential(nn.Linear(6, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 32))
        shape = (6,)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(float(rng.uniform(1, 4)))  # larger weights than the default init: more pairs can saturate
    model.eval()
    torch.backends.quantized.engine = engine
    x = torch.rand((256,) + shape) * 2 - 0.5
    prepared = prepare_fx(model, full_range_qconfig(engine), (x[:1],))
    prepared(x)
    return convert_fx(prepared), shape


@pytest.mark.parametrize("engine", ENGINES)
def test_fx_full_range_models_match_torch(engine, report):
    """Issue 13's acceptance: random FX MLPs and CNNs with full-range activations, inputs up to 10x the calibration
    range, converted for this machine's platform: every output byte equals torch's here."""
    rng = np.random.default_rng(77 + ENGINES.index(engine))
    outputs = models = saturating = 0
    cnns = 0
    while outputs < MIN_FINAL_OUTPUTS or cnns < 2:
        cnn = models % 3 == 2
        qmodel, shape = fx_full_range_model(rng, engine, cnn)
        converted = uquant.convert(qmodel, torch.rand((4,) + shape), engine=engine)
        saturating += any(s.platform_saturation for s in converted.plan.compute_steps)
        n = 400 if cnn else 600
        cnns += cnn
        xt = (torch.rand((n,) + shape) * 2 - 0.5) * torch.from_numpy(10 ** rng.uniform(0, 1, (n,) + (1,) * len(shape)))
        with torch.no_grad():
            want = qmodel(xt.float()).numpy().reshape(n, -1)
        out = converted.plan.output
        got = uquant.engines.dequantize(converted.run(xt.numpy().reshape(n, -1)), out.scale, out.zero_point)
        assert np.array_equal(got, want), f"model {models} ({'CNN' if cnn else 'MLP'})"
        outputs += got.size
        models += 1
    report(f"FX full range {engine:<8}: {models} models ({cnns} CNNs, reduce_range=False, inputs up to 10x the "
           f"calibration range), {outputs} outputs equal to torch's, 0 mismatches; platform "
           f"{platform_here().name}, {saturating} models with saturating pairs")
