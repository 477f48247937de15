"""Element-wise activations on quantized tensors against torch: code tables, two where torch's SIMD blocks and
scalar tail round differently (the device picks the table by position, as torch does)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
import torch.ao.nn.quantized as nnq

import randmodels
import uquant
from conftest import FUZZ_SCALE

MIN_OUTPUTS = int(20_000 * FUZZ_SCALE)


def make_act(name: str, rng):
    scale, zp = float(10 ** rng.uniform(-2.5, -0.5)), int(rng.integers(0, 256))
    if name == "hardswish":
        return nnq.Hardswish(scale, zp)
    if name == "elu":
        return nnq.ELU(scale, zp, float(rng.uniform(0.5, 2)))
    if name == "leaky_relu":
        return torch.nn.LeakyReLU(float(rng.uniform(0.01, 0.3)))  # keeps the input's qparams
    return {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "hardsigmoid": torch.nn.Hardsigmoid,
            "relu6": torch.nn.ReLU6, "relu": torch.nn.ReLU}[name]()


ACTS = ["sigmoid", "tanh", "hardsigmoid", "hardswish", "leaky_relu", "elu", "relu6", "relu"]


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("act", ACTS)
def test_activation_matches_torch(act, engine, report):
    if act == "relu6" and engine == "qnnpack":
        pytest.skip("torch bug, refused by uquant: see test_qnnpack_relu6_after_conv2d_is_refused")
    rng = np.random.default_rng(zlib.crc32(f"{act}/{engine}".encode()))
    compared = bad = models = two_tables = 0
    while compared < MIN_OUTPUTS:
        torch.backends.quantized.engine = engine
        C = int(rng.integers(1, 5))
        shape = (C, int(rng.integers(1, 20)), int(rng.integers(1, 20)))
        conv = nnq.Conv2d(C, C, 1)
        w = torch.randn(C, C, 1, 1)
        conv.set_weight_bias(torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8), torch.randn(C))
        conv.scale, conv.zero_point = float(10 ** rng.uniform(-2, 0)), int(rng.integers(0, 256))
        chain = randmodels.Chain(float(10 ** rng.uniform(-2, 0)), int(rng.integers(0, 256)),
                                 [conv, make_act(act, rng)]).eval()
        converted = uquant.convert(chain, torch.randn((2,) + shape), engine=engine)
        codes = randmodels.random_codes(rng, 8, int(np.prod(shape)))
        # one sample per call, as on the device: in a batch, torch's SIMD blocks would straddle samples
        want = np.concatenate([chain.layer_codes(c.reshape((1,) + shape))[-1].reshape(1, -1) for c in codes])
        got = converted.layer_codes(codes)[-1]
        compared += want.size
        bad += int((got != want).sum())
        models += 1
        two_tables += any(getattr(s, "tail", None) for s in converted.plan.steps)
    report(f"{act:<11} {engine:<8}: {compared} outputs of {models} random layers, {bad} mismatches "
           f"({two_tables} needed separate SIMD/tail tables)")
    assert bad == 0


def test_qnnpack_relu6_after_conv2d_is_refused():
    """qnnpack's Conv2d returns channels-last tensors, and torch's quantized relu6/hardtanh then writes its results
    in the wrong order (checked here, so the refusal goes away if torch fixes it)."""
    torch.backends.quantized.engine = "qnnpack"
    x = torch._make_per_tensor_quantized_tensor(torch.randint(0, 256, (2, 3, 4, 5)).to(torch.uint8), 0.05, 100)
    wrong = torch.nn.ReLU6()(x.contiguous(memory_format=torch.channels_last)).int_repr()
    assert not torch.equal(wrong, torch.nn.ReLU6()(x).int_repr())  # the torch bug is still there
    rng = np.random.default_rng(0)
    conv = nnq.Conv2d(3, 3, 1)
    conv.set_weight_bias(torch.quantize_per_tensor(torch.randn(3, 3, 1, 1), 0.02, 0, torch.qint8), None)
    chain = randmodels.Chain(0.05, 100, [conv, make_act("relu6", rng)]).eval()
    with pytest.raises(uquant.ConversionError, match="wrong element order"):
        uquant.convert(chain, engine="qnnpack", input_shape=(3, 4, 5))


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_simd_and_tail_tables(engine):
    """leaky_relu at these qparams rounds differently in torch's SIMD blocks and in its scalar tail."""
    torch.backends.quantized.engine = engine
    act = torch.nn.LeakyReLU(0.1)
    codes = torch.arange(256).to(torch.uint8)
    q = torch._make_per_tensor_quantized_tensor(codes, 0.05, 100)
    simd = act(q).int_repr()
    tail = torch.stack([act(q[i:i + 1]).int_repr()[0] for i in range(256)])
    if torch.equal(simd, tail):
        pytest.skip(f"on {engine} this torch build computes leaky_relu alike in both paths")
    pool = torch.nn.MaxPool2d(2, stride=1)  # a step the table cannot fold into; 2x6x8 = 64 + a 32-element tail
    conv = nnq.Conv2d(2, 2, 1)
    conv.set_weight_bias(torch.quantize_per_tensor(torch.eye(2).reshape(2, 2, 1, 1), 1 / 127, 0, torch.qint8), None)
    conv.scale, conv.zero_point = 0.05, 100
    chain = randmodels.Chain(0.05, 100, [conv, pool, act]).eval()
    shape = (2, 7, 9)
    converted = uquant.convert(chain, engine=engine, input_shape=shape)
    assert any(getattr(s, "tail", None) for s in converted.plan.steps)
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (30, 126))
    diff = np.flatnonzero((simd != tail).numpy())
    codes[:len(diff)] = diff[:, None]  # constant inputs at the codes where the two paths differ
    # one sample per call, as on the device: in a batch, torch's SIMD blocks would straddle samples
    want = np.concatenate([chain.layer_codes(c.reshape((1,) + shape))[-1].reshape(1, -1) for c in codes])
    got = converted.layer_codes(codes)[-1]
    assert np.array_equal(got, want)
    # the conv's channels-last output puts the tail at the last positions of *every* channel, not in the last
    # channel: the constant rows show both tables in use
    assert len(set(want[0].tolist())) == 2
