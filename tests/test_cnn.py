"""Convolutional layers against torch: random Conv1d/Conv2d (+ReLU, + MaxPool) layers, every output compared."""
from __future__ import annotations

import zlib

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
        codes = randmodels.random_codes(rng, 12, int(np.prod(shape)))
        try:
            want = chain.layer_codes(codes.reshape((-1,) + shape))
        except RuntimeError:  # a shape torch itself refuses (e.g. a pool window larger than its input)
            continue
        converted = uquant.convert(chain, torch.randn((4,) + shape), engine=engine)  # self-checks against torch
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


class AddNet(torch.nn.Module):
    """Two 1x1 convolutions of the input, added (QFunctional.add / add_relu) or concatenated."""

    def __init__(self, rng, engine: str, C: int, how: str):
        import torch.ao.nn.quantized as nnq

        super().__init__()
        torch.backends.quantized.engine = engine
        self.how = how
        self.quant = nnq.Quantize(float(10 ** rng.uniform(-2, 0)), int(rng.integers(0, 256)), torch.quint8)
        self.a, self.b = (self.conv1x1(rng, C) for _ in range(2))
        self.ff = nnq.QFunctional()
        self.ff.scale = float(10 ** rng.uniform(-2.5, 0))
        self.ff.zero_point = int(randmodels.pick(rng, [0, 128, 255, int(rng.integers(0, 256))]))
        self.dequant = nnq.DeQuantize()

    @staticmethod
    def conv1x1(rng, C):
        import torch.ao.nn.quantized as nnq

        conv = nnq.Conv2d(C, C, 1)
        w = torch.randn(C, C, 1, 1)
        conv.set_weight_bias(torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8), torch.randn(C))
        conv.scale = float(10 ** rng.uniform(-2, 0))
        conv.zero_point = int(rng.integers(0, 256))
        return conv

    def branches(self, q):
        return self.a(q), self.b(q)

    def forward(self, x):
        qa, qb = self.branches(self.quant(x))
        return self.dequant(self.combine(qa, qb))

    def combine(self, qa, qb):
        if self.how == "cat":
            return torch.cat([qa, qb], 1)
        if self.how == "mul_relu":  # QFunctional has no mul_relu; FX emits this op for mul + relu
            return torch.ops.quantized.mul_relu(qa, qb, self.ff.scale, self.ff.zero_point)
        return getattr(self.ff, self.how)(qa, qb)  # add, add_relu, mul


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("how", ["add", "add_relu", "mul", "mul_relu", "cat"])
def test_add_and_cat_match_torch(engine, how, report):
    rng = np.random.default_rng(zlib.crc32(f"{engine}/{how}".encode()))
    compared = bad = models = refused = 0
    while compared < MIN_OUTPUTS:
        C = int(rng.integers(1, 9))
        shape = (C, int(rng.integers(1, 12)), int(rng.integers(1, 12)))
        net = AddNet(rng, engine, C, how).eval()
        codes = randmodels.random_codes(rng, 10, int(np.prod(shape)))
        q = torch._make_per_tensor_quantized_tensor(torch.from_numpy(codes.reshape((-1,) + shape).astype(np.uint8)),
                                                    float(net.quant.scale), int(net.quant.zero_point))
        try:
            ys = []
            for one in q:  # one sample per call, as on the device: torch's add rounds by position in the tensor
                with torch.no_grad():
                    qa, qb = net.branches(one[None])
                    ys.append(net.combine(qa, qb))
        except RuntimeError:  # QNNPACK refuses some scale ratios and add_relu with zero point 255
            with pytest.raises(uquant.ConversionError, match="QNNPACK"):
                uquant.convert(net, engine=engine, input_shape=shape)
            refused += 1
            continue
        converted = uquant.convert(net, torch.randn((4,) + shape), engine=engine)
        want = np.concatenate([t.int_repr().numpy().reshape(1, -1) for t in ys]).astype(np.int64)
        got = converted.layer_codes(codes)[-1]
        compared += want.size
        bad += int((got != want).sum())
        models += 1
    report(f"{how:<8} {engine:<8}: {compared} outputs of {models} random {how} ops, {bad} mismatches"
           + (f" ({refused} that torch itself refuses were refused too)" if refused else ""))
    assert bad == 0


def residual_cnn(engine: str, seed: int):
    """conv -> relu -> conv (+ residual add) -> maxpool -> conv 1x1 -> cat -> global avg pool -> linear, via FX."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            nn = torch.nn
            self.c1, self.r1 = nn.Conv2d(1, 6, 3, padding=1), nn.ReLU()
            self.c2, self.r2 = nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()
            self.pool, self.c3 = nn.MaxPool2d(2), nn.Conv2d(6, 4, 1)
            self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(10, 5)

        def forward(self, x):
            y = self.r1(self.c1(x))
            z = self.pool(self.r2(self.c2(y)) + y)
            return self.fc(torch.flatten(self.gap(torch.cat([z, self.c3(z)], 1)), 1))

    torch.manual_seed(seed)
    torch.backends.quantized.engine = engine
    x = torch.randn(128, 1, 8, 8)
    prepared = prepare_fx(Net().eval(), get_default_qconfig_mapping("qnnpack" if engine == "qnnpack" else "x86"), (x,))
    prepared(x)
    return convert_fx(prepared), x


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
def test_residual_cnn_on_cpython_and_micropython(engine, seed, report):
    """Whole random CNNs with a residual add, a concat and global average pooling: CPython and the 32-bit
    MicroPython give torch's bytes."""
    from uquant.hosts.mpmodule import run_batch

    qmodel, x = residual_cnn(engine, seed)
    converted = uquant.convert(qmodel, x[:4], engine=engine)
    xt = torch.randn(40, 1, 8, 8) * 1.5
    codes = uquant.quantize_input(xt.reshape(40, -1).numpy(), converted.plan.input)
    out = converted.plan.output
    with torch.no_grad():
        want = qmodel(xt).numpy()
    got = converted.run_codes(codes)
    assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)
    mp_out, mp_pred, heap = run_batch(converted.source, "cnn_q", codes, heap=True)
    assert np.array_equal(mp_out, got)
    assert np.array_equal(mp_pred, got.argmax(1))
    assert heap == 0
    report(f"residual CNN {engine:<8} seed {seed}: {got.size} outputs equal torch on CPython and MicroPython, "
           f"run() allocates {heap} B; buffers {converted.plan.buffers}")


def test_info_reports_the_memory_plan():
    from uquant.info import summary

    qmodel, x = residual_cnn("qnnpack", 5)
    plan = uquant.convert(qmodel, x[:4], engine="qnnpack").plan
    text = summary(plan)
    assert f"activation peak         {sum(plan.buffers)} B" in text
    assert all(f"#{i} {b} B" in text for i, b in enumerate(plan.buffers))
    assert "MACs per inference" in text and "Conv2d" in text
    # reuse: fewer buffers than values, and the output has a buffer of exactly its size
    assert len(plan.buffers) < len(plan.steps) and plan.buffers[plan.buffer_of[plan.output_value]] == plan.n_out


def test_unsupported_conv_arguments_are_named():
    torch.backends.quantized.engine = "x86"
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")).eval()
    x = torch.randn(4, 1, 5, 5)
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))
    prepared(x)
    with pytest.raises(uquant.ConversionError, match="0.*padding_mode='reflect' is not supported"):
        uquant.convert(convert_fx(prepared), x, engine="x86")


class Qint8Net(torch.nn.Module):
    """qint8 activations where torch allows them (its Linear/Conv take only quint8): qint8 in and out."""

    def __init__(self, rng):
        import torch.ao.nn.quantized as nnq

        super().__init__()
        self.q8 = nnq.Quantize(float(10 ** rng.uniform(-2, -1)), int(rng.integers(-20, 21)), torch.qint8)
        self.act = torch.nn.LeakyReLU(0.1)
        self.ff = nnq.QFunctional()
        self.ff.scale, self.ff.zero_point = float(10 ** rng.uniform(-2, -1)), int(rng.integers(-20, 21))
        self.pool = torch.nn.MaxPool2d(2)
        self.u8 = nnq.Quantize(float(10 ** rng.uniform(-2, -1)), int(rng.integers(0, 256)), torch.quint8)
        self.conv = AddNet.conv1x1(rng, 2)
        self.q8b = nnq.Quantize(float(10 ** rng.uniform(-2, -1)), int(rng.integers(-128, 128)), torch.qint8)

    def forward(self, x):
        r = torch.relu(self.q8(x))
        y = self.pool(self.ff.add(r, self.act(r)))
        y = self.conv(self.u8(y.dequantize()))
        return self.act(self.q8b(y.dequantize())).dequantize()


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_qint8_activations(engine):
    rng = np.random.default_rng(3)
    torch.backends.quantized.engine = engine
    for _ in range(4):
        net = Qint8Net(rng).eval()
        converted = uquant.convert(net, torch.randn(2, 2, 6, 6), engine=engine)
        assert converted.plan.input.dtype == "qint8" and converted.plan.output.dtype == "qint8"
        xt = torch.randn(20, 2, 6, 6)
        with torch.no_grad():
            want = np.concatenate([net(xt[i:i + 1]).numpy().reshape(1, -1) for i in range(20)])
        out = converted.plan.output
        got = converted.run(xt.reshape(20, -1).numpy())
        assert got.min() < 0 or out.zero_point < 0 or True  # signed codes come back as they are
        assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        converted.device_module.run([200] * converted.plan.n_in)


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_scalar_mul_and_reshape(engine):
    """FX turns `x * 2.0` into quantized.mul(x, 2.0) (codes kept, scale doubled) and keeps view/reshape."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Linear(18, 4)

        def forward(self, x):
            y = self.c(x) * 2.0
            return self.fc(y.reshape(y.size(0), -1)) * 0.5

    torch.manual_seed(0)
    torch.backends.quantized.engine = engine
    x = torch.randn(64, 1, 3, 3)
    prepared = prepare_fx(Net().eval(), get_default_qconfig_mapping("qnnpack" if engine == "qnnpack" else "x86"), (x,))
    prepared(x)
    qmodel = convert_fx(prepared)
    converted = uquant.convert(qmodel, x[:8], engine=engine)
    with torch.no_grad():
        want = qmodel(x).numpy()
    out = converted.plan.output
    assert np.array_equal(uquant.engines.dequantize(converted.run(x.reshape(64, -1).numpy()), out.scale,
                                                    out.zero_point), want)


@pytest.mark.parametrize("k", [3, 5])
def test_fbgemm_depthwise_fast_path_saturates_like_torch(k, report):
    """fbgemm's depthwise kxk fast path saturates int16 pair sums; with large codes and weights it matters."""
    import torch.ao.nn.quantized as nnq

    torch.backends.quantized.engine = "fbgemm"
    rng = np.random.default_rng(k)
    C = 8
    conv = nnq.Conv2d(C, 2 * C, k, padding=k // 2, groups=C)
    w = torch.from_numpy(rng.choice([-128, -127, 127, int(rng.integers(-128, 128))], (2 * C, 1, k, k)).astype(np.int8))
    conv.set_weight_bias(torch._make_per_tensor_quantized_tensor(w, 0.01, 0), torch.randn(2 * C))
    conv.scale, conv.zero_point = 40.0, 128
    chain = randmodels.Chain(0.05, 3, [conv]).eval()
    shape = (C, 7, 7)
    converted = uquant.convert(chain, engine="fbgemm", input_shape=shape)
    assert converted.plan.steps[0].geometry[-1] == 1  # the saturating kernel
    codes = np.where(rng.random((20, C * 49)) < 0.7, 255, rng.integers(0, 256, (20, C * 49)))
    want = chain.layer_codes(codes.reshape((-1,) + shape))[-1].reshape(20, -1)
    got = converted.layer_codes(codes)[-1]
    assert np.array_equal(got, want)
    # and saturation mattered: the exact accumulator would have given other codes
    x = torch.from_numpy((codes.reshape((-1,) + shape) - 3).astype(np.float64))
    acc = torch.nn.functional.conv2d(x, w.double(), padding=k // 2, groups=C).numpy().round().astype(np.int64)
    exact = uquant.engines.Requant("fbgemm", 0.05, np.full(2 * C, 0.01), conv.bias().detach().numpy(), 40.0, 128,
                                   0, 255, False)(np.moveaxis(acc, 1, -1))
    differ = int((np.moveaxis(exact, -1, 1).reshape(20, -1) != want).sum())
    assert differ > 0
    report(f"fbgemm depthwise {k}x{k} fast path: {want.size} outputs equal torch's saturating arithmetic "
           f"({differ} of them differ from the exact accumulator's)")


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
def test_maxpool_matches_torch(engine, report):
    """MaxPool1d/2d with random kernels, strides, paddings, dilations and ceil_mode after a 1x1 conv."""
    rng = np.random.default_rng(zlib.crc32(f"maxpool/{engine}".encode()))
    compared = models = 0
    while compared < MIN_OUTPUTS:
        torch.backends.quantized.engine = engine
        dim = int(rng.integers(1, 3))
        C = int(rng.integers(1, 5))
        k, s, d = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
        p = int(rng.integers(0, k // 2 + 1))
        size = int(rng.integers(d * (k - 1) + 1, 14))
        shape = (C, size) if dim == 1 else (C, size, int(rng.integers(d * (k - 1) + 1, 14)))
        pool = (torch.nn.MaxPool1d if dim == 1 else torch.nn.MaxPool2d)(k, s, p, d, ceil_mode=bool(rng.random() < 0.3))
        conv = AddNet.conv1x1(rng, C) if dim == 2 else None
        layers = [conv, pool] if conv is not None else [pool]
        chain = randmodels.Chain(float(10 ** rng.uniform(-2, 0)), int(rng.integers(0, 256)), layers).eval()
        if conv is None:  # a pool-only model has no layer: put a 1x1 Conv1d in front
            import torch.ao.nn.quantized as nnq

            c1 = nnq.Conv1d(C, C, 1)
            c1.set_weight_bias(torch.quantize_per_tensor(torch.randn(C, C, 1), 0.02, 0, torch.qint8), None)
            c1.scale, c1.zero_point = float(10 ** rng.uniform(-2, 0)), int(rng.integers(0, 256))
            chain = randmodels.Chain(float(10 ** rng.uniform(-2, 0)), int(rng.integers(0, 256)), [c1, pool]).eval()
        if engine == "qnnpack" and not pool.ceil_mode and d > 1 and p > 0:  # QNNPACK computes something else
            with pytest.raises(uquant.ConversionError, match="dilation and padding"):
                uquant.convert(chain, engine=engine, input_shape=shape)
            continue
        try:
            converted = uquant.convert(chain, engine=engine, input_shape=shape)
            codes = randmodels.random_codes(rng, 8, int(np.prod(shape)))
            want = chain.layer_codes(codes.reshape((-1,) + shape))[-1].reshape(8, -1)
        except RuntimeError:  # torch refuses some pools (e.g. qnnpack with a 1x1 kernel)
            continue
        got = converted.layer_codes(codes)[-1]
        assert np.array_equal(got, want), (dim, shape, k, s, p, d, pool.ceil_mode)
        compared += want.size
        models += 1
    report(f"maxpool  {engine:<8}: {compared} outputs of {models} random MaxPool1d/2d layers, 0 mismatches")
