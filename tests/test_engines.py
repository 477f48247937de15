"""engines.py against torch itself, on cases built to land on rounding ties (the hard part)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import platform_here
from uquant import engines

f32 = np.float32


def qtensor(codes, scale, zp):
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.asarray(codes).astype(np.uint8)), scale, zp)


def test_quantize_matches_torch_on_ties():
    rng = np.random.default_rng(0)
    for t in range(300):
        scale = float(10 ** rng.uniform(-6, 2))
        zp = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
        inv = f32(1) / f32(scale)
        k = rng.integers(-300, 300, 200) + 0.5
        x = (k / inv).astype(f32)  # exactly between two codes before rounding
        if t % 2:
            x = np.nextafter(x, (rng.integers(0, 2, x.size) * 2 - 1) * np.inf).astype(f32)
        want = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, torch.quint8).int_repr().numpy()
        assert np.array_equal(engines.quantize(x, scale, zp), want)


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_requant_matches_torch(engine, per_channel):
    torch.backends.quantized.engine = engine
    rng = np.random.default_rng(hash((engine, per_channel)) % 2**32)
    for t in range(150):
        K, N = int(rng.choice([1, 3, 17, 64, 300])), int(rng.integers(1, 24))
        xs = float(10 ** rng.uniform(-4, 0))
        xzp = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
        xq = rng.integers(0, 256, (8, K))
        xq[0] = xzp
        wq = rng.integers(-128, 128, (N, K))
        ws = 10 ** rng.uniform(-4, -1, N) if per_channel else np.full(N, 10 ** rng.uniform(-4, -1))
        ats = f32(f32(xs) * ws.astype(f32))
        if t % 3 == 0:  # power-of-two multipliers and biases on .5: exact ties everywhere
            ys = float(ats.max() * 2.0 ** int(rng.integers(-3, 6)))
            bias = ((rng.integers(-300, 300, N) + 0.5) * ats * 2.0 ** rng.integers(-2, 3)).astype(f32)
        else:
            ys = float(10 ** rng.uniform(np.log10(ats.max()), np.log10(ats.max()) + 3))
            bias = (rng.standard_normal(N) * ats * 1000).astype(f32) if t % 3 == 1 else None
        yzp = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
        relu = bool(t % 2)
        if per_channel:
            w = torch._make_per_channel_quantized_tensor(torch.from_numpy(wq.astype(np.int8)), torch.tensor(ws),
                                                         torch.zeros(N, dtype=torch.long), 0)
        else:
            w = torch._make_per_tensor_quantized_tensor(torch.from_numpy(wq.astype(np.int8)), float(ws[0]), 0)
        packed = torch.ops.quantized.linear_prepack(w, None if bias is None else torch.from_numpy(bias))
        op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
        want = op(qtensor(xq, xs, xzp), packed, ys, yzp).int_repr().numpy()
        acc = engines.fbgemm_acc(xq, xzp, wq, 0, engine != "qnnpack" and platform_here().saturates)
        fn = engines.Requant(engine, xs, ws, bias, ys, yzp, yzp if relu else 0, 255, per_channel)
        assert np.array_equal(fn(acc), want), (t, K, N)
