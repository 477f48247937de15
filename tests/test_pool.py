"""Average pooling (AvgPool1d/2d, AdaptiveAvgPool1d/2d) against torch's own quantized kernels, per engine.

Each random case builds a Chain with torch's modules, converts it with uquant (which decides which of torch's
pooling formulas applies: the engine, ceil_mode and the input's memory order all matter), then feeds many
random code tensors straight into the pool and compares the device runtime's codes with torch's int_repr().
A pool placed first sees a contiguous tensor; a pool after a Conv sees channels_last memory (quantized convs
write it), so both of torch's kernel families are exercised. A few samples also run through the whole chain.
"""
from __future__ import annotations

import math
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import uquant
from conftest import FUZZ_SCALE, torch_engine
from randmodels import Chain, pick
from uquant.ir import ConversionError

warnings.filterwarnings("ignore")
import torch.ao.nn.quantized as nnq  # noqa: E402

ENGINES = ("x86", "fbgemm", "qnnpack")
OPS = ("AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d")
TARGET = int(20000 * FUZZ_SCALE)  # compared output codes per op and engine


def conv1x1(C: int, dim: int, scale: float, zp: int):
    conv = (nnq.Conv1d if dim == 1 else nnq.Conv2d)(C, C, 1)
    w = torch.randn((C, C, 1) if dim == 1 else (C, C, 1, 1))
    conv.set_weight_bias(torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8), None)
    conv.scale, conv.zero_point = float(scale), int(zp)
    return conv


def random_pool(rng, op: str, shape: tuple):
    """A random pooling module of kind `op` for a per-sample input shape (C, L) or (C, H, W)."""
    dims = shape[1:]
    if op.startswith("Adaptive"):
        size = []
        for n in dims:
            r = rng.random()
            if r < 0.35:
                size.append(1)  # global
            elif r < 0.75:
                size.append(int(pick(rng, [d for d in range(1, n + 1) if n % d == 0])))  # divides evenly
            else:
                size.append(int(rng.integers(1, n + 1)))  # uneven windows
        return (torch.nn.AdaptiveAvgPool1d if len(dims) == 1 else torch.nn.AdaptiveAvgPool2d)(
            size[0] if len(dims) == 1 else tuple(size))
    k = tuple(int(rng.integers(1, min(n, 4) + 1)) if rng.random() < 0.8 else int(rng.integers(1, 5)) for n in dims)
    s = tuple(int(rng.integers(1, 4)) for _ in dims)
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    ceil, cip = bool(rng.random() < 0.4), bool(rng.random() < 0.5)
    if len(dims) == 1:
        return torch.nn.AvgPool1d(k[0], s[0], p[0], ceil, cip)
    return torch.nn.AvgPool2d(k, s, p, ceil, cip)


def random_case(rng, engine: str, op: str):
    dim = 1 if op.endswith("1d") else 2
    C = int(pick(rng, [1, 1, 2, 3, 5, 8, 16, 17, 24]))
    dims = (int(rng.integers(1, 17)),) if dim == 1 else (int(rng.integers(1, 11)), int(rng.integers(1, 11)))
    shape = (C,) + dims
    scale = float(10 ** rng.uniform(-3, 1))
    zp = int(pick(rng, [0, 128, 255, int(rng.integers(0, 256))]))
    pool = random_pool(rng, op, shape)
    first = bool(rng.random() < 0.5)  # contiguous input; else after a conv: channels_last memory
    layers = [pool, conv1x1(C, dim, scale, zp)] if first else [conv1x1(C, dim, scale, zp), pool]
    return Chain(scale, zp, layers).eval(), shape, 0 if first else 1, scale, zp


def torch_pool_codes(pool, codes: np.ndarray, scale: float, zp: int, channels_last: bool) -> np.ndarray:
    """torch's pool on quantized inputs (batch, *shape) laid out as a conv would leave them."""
    x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(codes.astype(np.uint8)), scale, zp)
    if channels_last:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        else:  # a Conv1d output: (N, C, L) with channel stride 1
            x = x.permute(0, 2, 1).contiguous().permute(0, 2, 1)
    return pool(x).int_repr().numpy().astype(np.int64).reshape(len(codes), -1)


def run_case(rng, engine: str, op: str) -> tuple[int, int, int, str]:
    """One random case; returns (compared codes, mismatches, torch-refused cases, formula)."""
    with torch_engine(engine):
        model, shape, at, scale, zp = random_case(rng, engine, op)
        pool = model.layers[at]
        probe = rng.integers(0, 256, (2,) + shape)
        try:
            if torch_pool_codes(pool, probe, scale, zp, at == 1).size == 0:
                return 0, 0, 1, ""  # torch returns an empty tensor; uquant refuses an empty output
        except RuntimeError:  # torch itself refuses this configuration on this engine (e.g. qnnpack 1x1)
            return 0, 0, 1, ""
        try:
            conv = uquant.convert(model, torch.randn((3,) + shape), engine=engine)
        except ConversionError as e:
            assert "1x1 input" in str(e), e  # the only refusal the generator can reach (see test_refusals)
            return 0, 0, 1, ""
        step = conv.plan.steps[at]
        assert step.kind == "avgpool"
        node = conv.device_module.model.layers[at]
        n_in, n_out = int(np.prod(shape)), int(np.prod(step.out_shape))
        n = max(4, math.ceil(700 / n_out))
        codes = rng.integers(0, 256, (n,) + shape)
        near = rng.random(n) < 0.3  # windows near one code: exercises the rounding of small sums
        codes[near] = np.clip(zp + rng.integers(-3, 4, (int(near.sum()),) + shape), 0, 255)
        codes[0] = 0
        codes[1] = 255
        want = torch_pool_codes(pool, codes, scale, zp, at == 1)
        got = np.zeros_like(want)
        for j, row in enumerate(codes.reshape(n, -1)):
            data = bytes(row.astype(np.uint8))
            if node.src is None:
                out = node.run(data)
            else:
                node.src[:n_in] = data
                out = node.run(None)
            got[j] = np.frombuffer(bytes(out[:n_out]), np.uint8)
        bad = int((got != want).sum())
        # end to end: the whole chain, device vs torch, for a few float inputs
        x = rng.integers(0, 256, (3,) + shape)
        full_want = model.layer_codes(x)
        full_got = conv.layer_codes(x.reshape(3, -1))
        for w, g in zip(full_want, full_got):
            bad += int((w.reshape(3, -1) != g).sum())
        return want.size, bad, 0, step.formula.split(",")[0]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("op", OPS)
def test_pool_vs_torch(engine, op, report):
    rng = np.random.default_rng(zlib.crc32(f"{engine} {op}".encode()))
    t0 = time.perf_counter()
    total = bad = refused = cases = 0
    formulas: dict[str, int] = {}
    while total < TARGET:
        n, b, r, formula = run_case(rng, engine, op)
        total, bad, refused, cases = total + n, bad + b, refused + r, cases + 1
        if formula:
            formulas[formula] = formulas.get(formula, 0) + n
    report(f"pool {op:<17} {engine:<7}: {total} codes in {cases} random cases, {bad} mismatches "
           f"({', '.join(f'{k} {v}' for k, v in sorted(formulas.items()))}; {refused} refused by torch/uquant), "
           f"{time.perf_counter() - t0:.1f}s")
    assert bad == 0


def small_cnn(engine: str, pool_last: bool):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    class CNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 12, 3, padding=1)
            self.r1 = torch.nn.ReLU()
            self.c2 = torch.nn.Conv2d(12, 20, 3, stride=2)
            self.pool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = torch.nn.Linear(20, 5)

        def forward(self, x):
            x = torch.flatten(self.pool(self.c2(self.r1(self.c1(x)))), 1)
            return x if pool_last else self.fc(x)

    torch.manual_seed(0)
    with torch_engine(engine):
        x = torch.randn(64, 3, 9, 11)
        prepared = prepare_fx(CNN().eval(), get_default_qconfig_mapping(engine), (x[:1],))
        prepared(x)
        return convert_fx(prepared), x


@pytest.mark.parametrize("engine", ENGINES)
def test_cnn_with_global_average_pool(engine, report):
    """conv -> relu -> conv -> global average pool -> flatten (-> linear), quantized with FX, exact vs torch."""
    n = 0
    for pool_last in (True, False):
        model, x = small_cnn(engine, pool_last)
        with torch_engine(engine):
            conv = uquant.convert(model, x[:2], engine=engine)
            want = model(x).numpy()
        out = conv.plan.output
        got = uquant.engines.dequantize(conv.run(x.reshape(len(x), -1).numpy()), out.scale, out.zero_point)
        assert np.array_equal(got, want.reshape(len(x), -1))
        formula = next(s.formula for s in conv.plan.steps if s.kind == "avgpool")
        n += got.size
    report(f"pool CNN (conv-relu-conv-global avg pool-flatten[-linear]) {engine:<7}: {n} outputs exact ({formula})")


def test_functional_pools_in_fx():
    """F.avg_pool2d / F.adaptive_avg_pool2d as FX records them (functions applied to quantized tensors)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(2, 4, 3)

        def forward(self, x):
            x = F.avg_pool2d(self.c(x), 2, ceil_mode=True, count_include_pad=False)
            return F.adaptive_avg_pool2d(x, (2, 1))

    with torch_engine("x86"):
        x = torch.randn(32, 2, 10, 9)
        p = prepare_fx(Net().eval(), get_default_qconfig_mapping("x86"), (x[:1],))
        p(x)
        q = convert_fx(p)
        conv = uquant.convert(q, x, engine="x86")  # the example input is checked against torch
    assert [s.kind for s in conv.plan.steps] == ["conv", "avgpool", "avgpool"]


def test_refusals():
    with torch_engine("x86"):
        for pool, msg in [(torch.nn.AvgPool2d(2, divisor_override=3), "divisor_override"),
                          (torch.nn.AvgPool2d(1, 1, 0, ceil_mode=True), None)]:
            model = Chain(0.1, 3, [conv1x1(4, 2, 0.1, 3), pool]).eval()
            if msg is None:
                uquant.convert(model, torch.randn(1, 4, 3, 3), engine="x86")
                continue
            with pytest.raises(ConversionError, match=msg):
                uquant.convert(model, torch.randn(1, 4, 3, 3), engine="x86")
        # a 1x1 input padded to several outputs: torch writes them in the wrong memory order
        model = Chain(0.1, 3, [torch.nn.AvgPool2d(2, 1, 1), conv1x1(4, 2, 0.1, 3)]).eval()
        with pytest.raises(ConversionError, match="1x1 input"):
            uquant.convert(model, torch.randn(1, 4, 1, 1), engine="x86")

        class Mean(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.q = torch.ao.nn.quantized.Quantize(0.1, 3, torch.quint8)
                self.c = conv1x1(4, 2, 0.1, 3)

            def forward(self, x):
                return self.c(self.q(x)).mean((2, 3)).dequantize()

        with pytest.raises(ConversionError, match="mean over H x W = 3x3 positions of 4 channels: torch sums"):
            uquant.convert(Mean().eval(), torch.randn(1, 4, 3, 3), engine="x86")


def test_micropython_pool_exact_and_allocation_free():
    """Pool models inside the real 32-bit MicroPython: torch's codes, and run() allocates nothing."""
    from uquant.hosts import wasm

    reason = wasm.missing_reason()
    if reason is not None:
        pytest.skip(f"MicroPython wasm host unavailable: {reason}")
    from pathlib import Path

    runtime = (Path(__file__).resolve().parents[1] / "device" / "uquant_rt.py").read_text()
    rng = np.random.default_rng(5)
    for engine, first in (("x86", True), ("x86", False), ("qnnpack", False)):
        with torch_engine(engine):
            C, shape = 17, (17, 7, 6)
            pools = [torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
                     torch.nn.AdaptiveAvgPool2d((2, 1))]
            layers = pools + [conv1x1(C, 2, 0.05, 7)] if first else [conv1x1(C, 2, 0.05, 7)] + pools
            model = Chain(0.05, 7, layers).eval()
            conv = uquant.convert(model, torch.randn((2,) + shape), engine=engine)
            codes = rng.integers(0, 256, (6,) + shape)
            want = model.layer_codes(codes)[-1].reshape(len(codes), -1)
        rows = [bytes(r) for r in codes.reshape(len(codes), -1).astype(np.uint8).tolist()]
        setup = f"import pm as m\nXS = {rows!r}\n"
        out = wasm.run_micropython(
            [setup, "for x in XS:\n    print('Y', bytes(m.run(x)).hex())\n",
             wasm.heap_delta_snippet("for x in XS:\n    m.run(x)")],
            {"/lib/uquant_rt.py": runtime, "/lib/pm.py": conv.source})
        ys = [bytes.fromhex(line.split()[1]) for line in out.splitlines() if line.startswith("Y")]
        assert [list(y) for y in ys] == want.tolist(), (engine, first)
        deltas = [int(line.split()[1]) for line in out.splitlines() if line.startswith("HEAPDELTA")]
        assert deltas == [0], deltas
