"""Channel-wise broadcasting mul / add (squeeze-and-excitation), against torch's own quantized kernels.

A per-channel (N, C, 1, 1) tensor (a 1x1 conv of the globally pooled input) meets a full (N, C, H, W) one (the
quantized input itself, contiguous, or a 1x1 conv of it, which torch writes channels_last), in either argument
order; 1-D nets do the same with (N, C, 1) and (N, C, L). torch's mul is the same function of the exact product
at every position; its add rounds differently in the 64-element SIMD blocks of each row it loops over (a
channel's H*W positions, or a position's C channels in channels_last) and in the row's scalar tail, on every
engine (QNNPACK's own add takes only same shapes). Scales are drawn often as small multiples of powers of two,
where those two roundings differ most.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

import randmodels
import uquant
from conftest import FUZZ_SCALE
from test_viper import _require_unix_port  # noqa: F401 - autouse: the unix port must be there (or skip, see it)
from test_tiers import thumb_tier  # noqa: F401 - fixture: uquant_thumb on emulated armv6m code

import torch.ao.nn.quantized as nnq  # noqa: E402  (after randmodels: it silences the quint8 deprecation warnings)

MIN_OUTPUTS = int(20_000 * FUZZ_SCALE)
HOWS = ("add", "add_relu", "mul", "mul_relu")


def tie_scale(rng, lo: float, hi: float) -> float:
    """A random scale: four times in five a small multiple of a power of two (exact ratios, where torch's
    roundings differ most), else any in [10**lo, 10**hi]."""
    if rng.random() < 0.2:
        return float(10 ** rng.uniform(lo, hi))
    return float(2.0 ** int(rng.integers(-8, -2)) * int(rng.integers(1, 8)))


class SENet(torch.nn.Module):
    """quantize -> (full, per-channel) -> mul / add (either order) -> dequantize; per-channel = 1x1 conv of the
    globally average-pooled input, full = the input or a 1x1 conv of it."""

    def __init__(self, rng, engine: str, C: int, dim: int, how: str, conv_full: bool, small_first: bool):
        super().__init__()
        torch.backends.quantized.engine = engine
        self.how, self.small_first = how, small_first
        self.quant = nnq.Quantize(tie_scale(rng, -2, 0), int(rng.integers(0, 256)), torch.quint8)
        self.full = self.conv1x1(rng, C, dim) if conv_full else torch.nn.Identity()
        self.pool = torch.nn.AdaptiveAvgPool1d(1) if dim == 1 else torch.nn.AdaptiveAvgPool2d(1)
        self.per_channel = self.conv1x1(rng, C, dim)
        self.ff = nnq.QFunctional()
        self.ff.scale = tie_scale(rng, -2.5, 0)
        self.ff.zero_point = int(randmodels.pick(rng, [0, 128, 255, int(rng.integers(0, 256))]))
        self.dequant = nnq.DeQuantize()

    @staticmethod
    def conv1x1(rng, C, dim):
        conv = (nnq.Conv1d if dim == 1 else nnq.Conv2d)(C, C, 1)
        w = torch.randn((C, C, 1) if dim == 1 else (C, C, 1, 1))
        conv.set_weight_bias(torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8), torch.randn(C))
        conv.scale = tie_scale(rng, -2, 0)
        conv.zero_point = int(rng.integers(0, 256))
        return conv

    def branches(self, q):
        return self.full(q), self.per_channel(self.pool(q))

    def forward(self, x):
        return self.dequant(self.combine(*self.branches(self.quant(x))))

    def combine(self, full, small):
        a, b = (small, full) if self.small_first else (full, small)
        if self.how == "mul_relu":  # QFunctional has no mul_relu; FX emits this op for mul + relu
            return torch.ops.quantized.mul_relu(a, b, self.ff.scale, self.ff.zero_point)
        return getattr(self.ff, self.how)(a, b)


def random_net(rng, engine: str, how: str):
    dim = 1 if rng.random() < 0.3 else 2
    if dim == 1:
        C, L = int(rng.integers(1, 64 if "add" in how else 100)), int(rng.integers(2, 64 if "add" in how else 100))
        shape = (C, L)
    else:
        C = int(randmodels.pick(rng, [1, 3, 8, 16, 63, 64, 65, 70, 130]))
        H = int(rng.integers(1, 13))  # H*W around torch's 64-element blocks; C*H*W within about 3,000
        shape = (C, H, int(rng.integers(2 if H == 1 else 1, max(2, min(13, 3000 // (C * H))) + 1)))
    net = SENet(rng, engine, C, dim, how, bool(rng.random() < 0.6), bool(rng.random() < 0.5)).eval()
    if "add" in how and rng.random() < 0.7:
        aim_at_ties(rng, net)
    return net, shape


def aim_at_ties(rng, net, tries: int = 40) -> None:
    """Redraw the add's output qparams until torch's SIMD-block and scalar-tail roundings differ on over 2 % of
    all code pairs (they rarely do for arbitrary scales), so that every position's choice is tested."""
    full = net.full if isinstance(net.full, torch.nn.Module) and hasattr(net.full, "scale") else net.quant
    qa, qb = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    for _ in range(tries):
        args = (qa, float(full.scale), int(full.zero_point), qb, net.per_channel.scale, net.per_channel.zero_point,
                net.ff.scale, net.ff.zero_point, net.how == "add_relu")
        if np.mean(uquant.engines.add("x86", *args, True) != uquant.engines.add("x86", *args, False)) > 0.02:
            return
        net.ff.scale = tie_scale(rng, -2.5, 0)
        net.ff.zero_point = int(rng.integers(0, 256))


def torch_codes(net, codes: np.ndarray, shape: tuple) -> np.ndarray:
    """torch's output codes of the broadcasting op, one sample per call (as the device runs it)."""
    q = torch._make_per_tensor_quantized_tensor(torch.from_numpy(codes.reshape((-1,) + shape).astype(np.uint8)),
                                                float(net.quant.scale), int(net.quant.zero_point))
    with torch.no_grad():
        return np.concatenate([net.combine(*net.branches(one[None])).int_repr().numpy().reshape(1, -1)
                               for one in q]).astype(np.int64)


def convert_or_refuse(net, shape: tuple, engine: str):
    """uquant.convert with an example input (self-check), or None where it refuses the add because its integer
    form would need too many exceptions (scales aimed at ties can do that; the refusal names the op)."""
    try:
        return uquant.convert(net, torch.randn((2,) + shape), engine=engine)
    except uquant.ConversionError as e:
        assert "no integer form" in str(e) and net.how.startswith("add"), e
        return None


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("how", HOWS)
def test_broadcast_matches_torch(engine, how, report):
    rng = np.random.default_rng(zlib.crc32(f"broadcast {engine}/{how}".encode()))
    compared = bad = models = refused = 0
    kinds = set()
    while compared < MIN_OUTPUTS or models < 24:
        net, shape = random_net(rng, engine, how)
        codes = randmodels.random_codes(rng, 4, int(np.prod(shape)))
        want = torch_codes(net, codes, shape)
        converted = convert_or_refuse(net, shape, engine)
        if converted is None:
            refused += 1
            continue
        step = converted.plan.steps[-1]
        kinds.add(converted.device_module.model.layers[-1].kind)
        got = converted.layer_codes(codes)[-1]
        compared += want.size
        bad += int((got != want).sum())
        models += 1
        assert step.kind == how.split("_")[0]
    report(f"broadcast {how:<8} {engine:<8}: {compared} outputs of {models} random SE-style nets, {bad} mismatches "
           f"(nodes {sorted(kinds)}; {refused} refused: no integer form)")
    assert bad == 0 and kinds == {"b" + how.split("_")[0]} and refused <= models // 4


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_broadcast_on_micropython(engine, report):
    """The same nets whole (quantize -> ... -> dequantize) in the 32-bit MicroPython: the wasm port on the
    bytecode runtime and the unix port on the viper tier (which declines these nodes: the bytecode node runs)."""
    from uquant.hosts.mpmodule import run_batch

    rng = np.random.default_rng(zlib.crc32(f"broadcast mp {engine}".encode()))
    compared = 0
    for how in HOWS * 2:
        net, shape = random_net(rng, engine, how)
        codes = randmodels.random_codes(rng, 4, int(np.prod(shape)))
        converted = convert_or_refuse(net, shape, engine)
        if converted is None:
            continue
        want = torch_codes(net, codes, shape)
        for host, tier in (("wasm", None), ("unix", "viper")):
            got, _, _ = run_batch(converted.source, converted.module_name, codes, host=host, tier=tier)
            assert np.array_equal(got, want), f"{how} on {host}"
            compared += want.size
    assert compared > 0
    report(f"broadcast on MicroPython {engine:<8}: {compared} outputs (wasm bytecode, unix viper) equal torch")


def test_broadcast_refusals():
    """Broadcasting other than per channel is named, with both shapes."""
    from uquant.ir import Binary, Graph, Mul, QParams

    q = QParams(0.1, 0)
    g = Graph("g", q, (4, 3, 3), [Mul("m", q, inputs=["input", "input"])])
    assert g.shapes()["m"] == (4, 3, 3)
    for a, b in (((4, 3, 3), (1, 3, 3)), ((4, 3, 3), (4, 3, 1)), ((4, 3), (4, 1, 1))):
        with pytest.raises(uquant.ConversionError, match=r"m: mul needs two inputs .*per-channel"):
            Binary.out_shape(Mul("m", q), [a, b])


def test_broadcast_on_the_thumb_tier(thumb_tier, report):
    """On a board whose kernels are uquant_thumb (emulated armv6m code here) the broadcasting nodes are declined by
    the fast tier and run as bytecode nodes beside the tier's kernels, with torch's bytes."""
    from uquant.runtime import load_source

    rng = np.random.default_rng(zlib.crc32(b"broadcast thumb"))
    compared = 0
    for engine, how in zip(("x86", "qnnpack", "fbgemm", "qnnpack"), HOWS):
        net, shape = random_net(rng, engine, how)
        converted = convert_or_refuse(net, shape, engine)
        if converted is None:
            continue
        codes = randmodels.random_codes(rng, 3, int(np.prod(shape)))
        want = torch_codes(net, codes, shape)
        module = load_source(converted.source, converted.module_name)
        assert module.model.tier == "thumb"
        assert module.model.layers[-1].kind in ("bmul", "badd") and module.model.layers[-1].fast is None
        got = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes]) + converted.plan.output.qmin
        assert np.array_equal(got, want), f"{how} on the thumb tier"
        compared += want.size
    assert compared > 0
    report(f"broadcast on the thumb tier (emulated): {compared} outputs equal torch")
