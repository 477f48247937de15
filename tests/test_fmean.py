"""x.mean([2, 3]) on x86/fbgemm: torch dequantizes a conv's channels-last output, sums the floats and quantizes the
mean (uquant.fmean); the device repeats that float32 arithmetic in small ints and must give torch's bytes, ties
included (about one tie in ten lands on the other side of the exact mean)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import uquant
from conftest import torch_engine
from uquant import fmean
from uquant.ir import QParams
from uquant.runtime import rt

f32 = np.float32


def test_float32_add_and_divide_round_as_float32():
    rng = np.random.default_rng(0)
    for t in range(40_000):
        a = f32(rng.uniform(-1, 1) * 2.0 ** int(rng.integers(-30, 30)))
        b = [f32(rng.uniform(-1, 1) * 2.0 ** int(rng.integers(-30, 30))),  # anything
             f32(-a * f32(1 + int(rng.integers(-40, 40)) * 2.0 ** -23)),  # cancellation
             f32(a * f32(rng.uniform(-1, 1)) * f32(2.0 ** -int(rng.integers(20, 30)))),  # far below a
             f32(int(rng.integers(-300, 300)) * 2.0 ** -24)][t % 4]
        st = list(fmean.split(a))
        rt.fadd(st, 0, *fmean.split(b))
        assert tuple(st) == fmean.split(f32(a + b)), (a, b)
        n = int(rng.integers(2, 100))
        st = list(fmean.split(a))
        rt.fdiv(st, 0, n)
        assert tuple(st) == fmean.split(f32(a / f32(n))), (a, n)


def torch_mean(q: np.ndarray, s: float, zp: int) -> np.ndarray:
    x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(q.astype(np.uint8)), s, zp)
    return x.contiguous(memory_format=torch.channels_last).mean([2, 3]).int_repr().numpy()


@pytest.mark.parametrize("engine", ["x86", "fbgemm"])
def test_numpy_reference_is_torchs_mean(engine):
    # the order of ATen's cascade sum (engines.channel_sum), checked on tie-rich codes, batches and thread splits
    rng = np.random.default_rng(1)
    n_out = 0
    with torch_engine(engine):
        for t in range(60):
            H, W = [(2, 2), (1, 3), (1, 4), (2, 1), (3, 3), (4, 4), (7, 7), (5, 6), (1, 40), (16, 20)][t % 10]
            C = int(rng.integers(2, 70)) if H * W <= 4 else 32 * int(rng.integers(1, 4))
            s = float(rng.uniform(1e-3, 1)) * 10.0 ** float(rng.integers(-3, 2))
            zp = int(rng.integers(0, 256))
            q = rng.integers(0, 256, (int(rng.integers(1, 40)), C, H, W))
            if t % 2:  # codes near the zero point: many exact ties
                q = rng.integers(zp - 3, zp + 4, q.shape).clip(0, 255)
            x = QParams(s, zp, "quint8")
            assert np.array_equal(fmean.reference(q.reshape(len(q), C, H * W), x, H * W), torch_mean(q, s, zp))
            n_out += q.shape[0] * C
    assert n_out > 10_000


class ConvMean(nn.Module):
    def __init__(self, c_in: int, c: int, keepdim: bool):
        super().__init__()
        self.c, self.keepdim = nn.Conv2d(c_in, c, 1), keepdim

    def forward(self, x):
        return self.c(x).mean([2, 3], keepdim=self.keepdim)


def mean_model(engine: str, H: int, W: int, C: int, seed: int, keepdim: bool = False):
    torch.manual_seed(seed)
    x = torch.randn(64, 3, H, W)
    with torch_engine(engine):
        p = prepare_fx(ConvMean(3, C, keepdim).eval(), get_default_qconfig_mapping(engine), (x[:1],))
        p(x)
        return convert_fx(p), x


SHAPES = [(2, 2, 24), (1, 3, 5), (2, 1, 40), (1, 4, 9), (3, 3, 32), (4, 4, 64), (5, 7, 32), (2, 2, 1024)]


@pytest.mark.parametrize("engine", ["x86", "fbgemm"])
def test_conv_then_mean_matches_torch(engine, report):
    compared = ties = 0
    for k, (H, W, C) in enumerate(SHAPES):
        q, x = mean_model(engine, H, W, C, k, keepdim=bool(k % 2))
        with torch_engine(engine):
            converted = uquant.convert(q, x[:2], engine=engine, quiet=True)
            xt = torch.randn(120 if C < 1000 else 12, 3, H, W, generator=torch.Generator().manual_seed(k)) * 2
            with torch.no_grad():
                want = np.concatenate([q(xt[i:i + 1]).numpy().reshape(1, -1) for i in range(len(xt))])
        assert [s.kind for s in converted.plan.steps] == ["conv", "fmean"]
        got = converted.run(xt)
        out = converted.plan.output
        assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want), (H, W, C)
        conv_codes = converted.layer_codes(uquant.quantize_input(xt.reshape(len(xt), -1).numpy(),
                                                                  converted.plan.input))[0]
        sums = conv_codes.reshape(len(xt), C, H * W).sum(-1)
        ties += int(np.sum(sums % (H * W) * 2 == H * W))
        compared += want.size
    assert compared > 20_000 and ties > 2_000
    report(f"mean([2, 3]) {engine}: {compared} outputs of {len(SHAPES)} models equal torch ({ties} exact ties)")


@pytest.mark.parametrize("H, W, C, match", [(3, 3, 12, r"mean over H x W = 3x3 positions of 12 channels"),
                                            (2, 2, 1, r"single channel")])
def test_orders_uquant_does_not_model_are_refused(H, W, C, match):
    q, x = mean_model("x86", H, W, C, 0)
    with torch_engine("x86"), pytest.raises(uquant.ConversionError, match=match):
        uquant.convert(q, engine="x86", input_shape=(3, H, W), quiet=True)


def test_micropython_float_mean_exact_and_allocation_free():
    """The same on the real 32-bit MicroPython: torch's codes, and run() allocates nothing."""
    from uquant.hosts import wasm

    reason = wasm.missing_reason()
    if reason is not None:
        pytest.skip(f"MicroPython wasm host unavailable: {reason}")
    runtime = (Path(__file__).resolve().parents[1] / "device" / "uquant_rt.py").read_text()
    for k, (H, W, C) in enumerate([(2, 2, 24), (4, 4, 32)]):
        q, x = mean_model("x86", H, W, C, 10 + k)
        with torch_engine("x86"):
            converted = uquant.convert(q, x[:2], engine="x86", quiet=True)
            xt = torch.randn(30, 3, H, W, generator=torch.Generator().manual_seed(k)) * 2
            with torch.no_grad():
                want = q(xt).numpy()
        codes = uquant.quantize_input(xt.reshape(len(xt), -1).numpy(), converted.plan.input)
        rows = [bytes(r) for r in codes.astype(np.uint8).tolist()]
        out = wasm.run_micropython(
            [f"import pm as m\nXS = {rows!r}\n", "for x in XS:\n    print('Y', bytes(m.run(x)).hex())\n",
             wasm.heap_delta_snippet("for x in XS:\n    m.run(x)")],
            {"/lib/uquant_rt.py": runtime, "/lib/pm.py": converted.source})
        got = np.array([list(bytes.fromhex(line.split()[1])) for line in out.splitlines() if line.startswith("Y")])
        o = converted.plan.output
        assert np.array_equal(uquant.engines.dequantize(got, o.scale, o.zero_point), want)
        assert [int(line.split()[1]) for line in out.splitlines() if line.startswith("HEAPDELTA")] == [0]
