"""PT2E (torchao prepare_pt2e / convert_pt2e) programs: linear (+relu) chains, in memory and as .pt2 files.

torch computes a PT2E linear in float32 (dequantize, aten.linear, quantize_per_tensor), so the device's integer
requantization can only agree within one code there. This measures and prints the agreement (exact-match
fraction, maximum difference) per quantizer config and engine; the device gets torch's own input codes.
Skipped without torchao (install: pip install --no-deps torchao==0.18.0; it imports with torch 2.13.0).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

torchao = pytest.importorskip("torchao")
warnings.filterwarnings("ignore")

from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: E402
from torchao.testing.pt2e._xnnpack_quantizer import (  # noqa: E402
    XNNPACKQuantizer, get_symmetric_quantization_config)

import uquant  # noqa: E402
from uquant.api import Converted  # noqa: E402
from uquant.loaders.pt2e import from_pt2e  # noqa: E402
from uquant.lower import lower  # noqa: E402

B = 64


def _pt2e(m, k, per_channel, seed):
    torch.manual_seed(seed)
    x = torch.randn(B, k)
    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    p = prepare_pt2e(torch.export.export(m, (x,)).module(), q)
    p(x)
    return convert_pt2e(p), x


def _torch_codes(c, g, xt):
    with torch.no_grad():
        y = np.concatenate([c(xt[i:i + B]).numpy() for i in range(0, len(xt), B)])
    o = g.ops[-1].out
    return np.rint(y / np.float32(o.scale)).astype(np.int64) + o.zero_point  # int8 codes + 128, as the IR


def _input_codes(g, xt):
    i = g.input  # the IR holds int8 activations as uint8 with zero point + 128
    q = torch.ops.quantized_decomposed.quantize_per_tensor.default(xt, i.scale, i.zero_point - 128, -128, 127,
                                                                   torch.int8)
    return q.numpy().astype(np.int64) + 128


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_pt2e_linear_agreement(per_channel, record_property):
    stats = {e: [0, 0, 0] for e in ("x86", "qnnpack")}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        k, h, n = (int(v) for v in rng.integers(1, 65, 3))
        torch.manual_seed(seed)
        m = torch.nn.Sequential(torch.nn.Linear(k, h), torch.nn.ReLU(), torch.nn.Linear(h, n)).eval()
        c, _ = _pt2e(m, k, per_channel, seed)
        g = from_pt2e(c)
        assert [op.relu for op in g.ops] == [True, False]
        xt = torch.randn(B * 8, k) * 1.5
        want = _torch_codes(c, g, xt)
        codes = _input_codes(g, xt)
        for eng, s in stats.items():
            d = np.abs(Converted(g, lower(g, eng)).run_codes(codes) - want)
            s[0] += int((d == 0).sum()); s[1] += d.size; s[2] = max(s[2], int(d.max()))
    for eng, (same, total, worst) in stats.items():
        print(f"\nPT2E linear ({'per-channel' if per_channel else 'per-tensor'}), engine {eng}: "
              f"{same}/{total} = {same / total:.5f} exact, max diff {worst}")
        assert worst <= 1
    assert stats["x86"][0] / stats["x86"][1] >= 0.999


def test_pt2e_saved_program(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    c, x = _pt2e(m, 8, True, 0)
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(c, (x,)), path)
    a = uquant.convert(c, engine="x86", name="m")
    b = uquant.convert(path, engine="x86", name="m")
    assert a.source.split("from uquant_rt")[1] == b.source.split("from uquant_rt")[1]


def test_pt2e_unsupported_op_is_named():
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.sigmoid(self.l(x))

    c, _ = _pt2e(M().eval(), 4, False, 0)
    with pytest.raises(uquant.ConversionError if hasattr(uquant, "ConversionError") else Exception,
                       match="not supported"):
        uquant.convert(c)


class _CNN(torch.nn.Module):
    def __init__(self, c1, c2, n):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, c1, 3, padding=1)
        self.c2 = torch.nn.Conv2d(c1, c2, 3)
        self.fc = torch.nn.Linear(c2 * 2 * 2, n)

    def forward(self, x):
        y = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        y = torch.relu(self.c2(y))
        return self.fc(torch.flatten(y, 1))


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_pt2e_cnn_agreement(per_channel):
    """conv2d+relu -> max_pool2d -> conv2d+relu -> flatten -> linear, on 8x8 inputs."""
    stats = {e: [0, 0, 0] for e in ("x86", "qnnpack")}
    for seed in range(4):
        rng = np.random.default_rng(seed)
        c1, c2, n = (int(v) for v in rng.integers(1, 17, 3))
        torch.manual_seed(seed)
        m = _CNN(c1, c2, n).eval()
        x = torch.randn(B, 1, 8, 8)
        q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
        p = prepare_pt2e(torch.export.export(m, (x,)).module(), q)
        p(x)
        c = convert_pt2e(p)
        g = from_pt2e(c)
        assert g.input_shape == (1, 8, 8)
        xt = torch.randn(B * 4, 1, 8, 8) * 1.5
        want = _torch_codes(c, g, xt)
        codes = _input_codes(g, xt).reshape(len(xt), -1)
        for eng, s in stats.items():
            d = np.abs(Converted(g, lower(g, eng)).run_codes(codes) - want)
            s[0] += int((d == 0).sum()); s[1] += d.size; s[2] = max(s[2], int(d.max()))
    for eng, (same, total, worst) in stats.items():
        print(f"\nPT2E CNN ({'per-channel' if per_channel else 'per-tensor'}), engine {eng}: "
              f"{same}/{total} = {same / total:.5f} exact, max diff {worst}")
        assert worst <= 1


def test_pt2e_x86_inductor_float_output_is_refused():
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).eval()
    x = torch.randn(B, 16)
    q = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    p = prepare_pt2e(torch.export.export(m, (x,)).module(), q)
    p(x)
    with pytest.raises(Exception, match="not quantized"):
        from_pt2e(convert_pt2e(p))


def test_pt2e_convert_with_example_input():
    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    c, x = _pt2e(m, 8, True, 1)
    conv = uquant.convert(c, x[:3], engine="x86")  # no exact self-check for PT2E (float32 linear)
    assert conv.plan.n_in == 8 and conv.plan.n_out == 4
