"""TorchScript files of quantized CNNs (torch.jit.trace and torch.jit.script, saved and loaded) convert to torch's
exact output, as the in-memory FX / eager models do.

Models: FX- and eager-converted 2-D CNNs with conv+relu, a residual add (`+` in FX, FloatFunctional.add in
eager), max pooling, torch.cat along channels, sigmoid / hardswish code tables, flatten and linear; an FX
Conv1d model; an FX model with average pooling; an FX model of activations with arguments (leaky_relu, elu,
relu6, hardsigmoid; x86). Each is traced and scripted, saved with torch.jit.save and converted from the file
path; the device runtime's outputs, dequantized, must equal the original model's floats.
torch rounds some element-wise ops and add by position in the tensor, so torch runs one sample per call, as
the device does.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.ao.nn.quantized as nnq
import torch.nn as nn
from torch.ao.quantization import DeQuantStub, QuantStub, get_default_qconfig, get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import uquant
from conftest import torch_engine
from uquant import engines
from uquant.ir import Add, Cat, Conv, ConversionError, Linear, MaxPool, Table
from uquant.loaders import load

pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
              pytest.mark.filterwarnings("ignore:.*(quant_min and quant_max|TorchScript type system).*:UserWarning")]

ENGINES = ["x86", "qnnpack"]


class FxCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(2, 6, 3, padding=1), nn.ReLU()
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.c3 = nn.Conv2d(6, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(10 * 4 * 4, 5)

    def forward(self, x):
        a = self.r1(self.c1(x))
        b = self.c2(a) + a
        b = self.pool(torch.cat([b, self.c3(b)], 1))
        return self.fc(torch.flatten(torch.sigmoid(b), 1))


class EagerCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.c1, self.r1 = nn.Conv2d(2, 6, 3, padding=1), nn.ReLU()
        self.c2 = nn.Conv2d(6, 6, 3, padding=1, groups=2)
        self.c3 = nn.Conv2d(6, 4, 1, stride=1)
        self.add, self.cat = nnq.FloatFunctional(), nnq.FloatFunctional()
        self.pool = nn.MaxPool2d(2, stride=2)
        self.hs = nn.Hardswish()
        self.fc = nn.Linear(10 * 4 * 4, 5)

    def forward(self, x):
        a = self.r1(self.c1(self.quant(x)))
        b = self.add.add(self.c2(a), a)
        b = self.pool(self.cat.cat([b, self.c3(b)], 1))
        return self.dequant(self.fc(torch.flatten(self.hs(b), 1)))


class FxCNN1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.r1 = nn.Conv1d(3, 6, 3, padding=1), nn.ReLU()
        self.pool = nn.MaxPool1d(2)
        self.c2 = nn.Conv1d(6, 8, 3, stride=2, dilation=2, groups=2)
        self.fc = nn.Linear(8 * 2, 4)

    def forward(self, x):
        y = self.c2(self.pool(self.r1(self.c1(x))))
        return self.fc(torch.flatten(torch.tanh(y), 1))


class FxAvgCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(2, 6, 3, padding=1), nn.ReLU()
        self.avg, self.gap = nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.gap(self.avg(self.r1(self.c1(x)))), 1))


SHAPES = {FxCNN: (2, 8, 8), EagerCNN: (2, 8, 8), FxCNN1d: (3, 16), FxAvgCNN: (2, 8, 8)}


def calibration(cls) -> torch.Tensor:
    torch.manual_seed(7)
    return torch.randn((64,) + SHAPES[cls])


@lru_cache(maxsize=None)
def quantized(cls, engine: str):
    torch.manual_seed(3)
    x = calibration(cls)
    with torch_engine(engine):
        if cls is EagerCNN:
            m = cls().eval()
            m.qconfig = get_default_qconfig(engine)
            m = torch.ao.quantization.fuse_modules(m, [["c1", "r1"]])
            prepared = torch.ao.quantization.prepare(m)
            prepared(x)
            return torch.ao.quantization.convert(prepared)
        prepared = prepare_fx(cls().eval(), get_default_qconfig_mapping(engine), (x,))
        prepared(x)
        return convert_fx(prepared)


def save(model, how: str, path, engine: str, x: torch.Tensor):
    with torch_engine(engine), torch.no_grad():
        script = torch.jit.trace(model, x[:2]) if how == "trace" else torch.jit.script(model)
    torch.jit.save(script, str(path))
    return path


def per_sample(model, x: torch.Tensor, engine: str) -> np.ndarray:
    """torch's output, one sample per call (as the device runs)."""
    with torch_engine(engine), torch.no_grad():
        return np.concatenate([model(x[i:i + 1]).numpy() for i in range(len(x))])


def assert_exact(converted, model, x: torch.Tensor, engine: str) -> None:
    want = per_sample(model, x, engine)
    out = converted.plan.output
    got = engines.dequantize(converted.run(x.reshape(len(x), -1).numpy()), out.scale, out.zero_point)
    assert got.shape == want.shape
    assert np.array_equal(got, want), f"{np.sum(got != want)} of {want.size} outputs differ"


def kinds(graph) -> list[str]:
    return [type(op).__name__ for op in graph.ops]


EXPECTED = {
    FxCNN: ["Conv", "Conv", "Add", "Conv", "Cat", "MaxPool", "Table", "Reshape", "Linear"],
    EagerCNN: ["Conv", "Conv", "Add", "Conv", "Cat", "MaxPool", "Table", "Reshape", "Linear"],
    FxCNN1d: ["Conv", "MaxPool", "Conv", "Table", "Reshape", "Linear"],
    FxAvgCNN: ["Conv", "AvgPool", "AvgPool", "Reshape", "Linear"],
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("how", ["trace", "script"])
@pytest.mark.parametrize("cls", [FxCNN, EagerCNN, FxCNN1d, FxAvgCNN], ids=lambda c: c.__name__)
def test_torchscript_cnn_file_runs_exact(cls, how, engine, tmp_path):
    model = quantized(cls, engine)
    x_cal = calibration(cls)
    path = save(model, how, tmp_path / "cnn.pt", engine, x_cal)
    torch.manual_seed(11)
    x = torch.randn((24,) + SHAPES[cls]) * 1.5
    with torch_engine(engine):
        # an example input gives the shape (torch.jit.save keeps no sizes), or input_shape= does
        conv = (uquant.convert(path, x[:2], engine=engine) if how == "trace"
                else uquant.convert(path, engine=engine, input_shape=SHAPES[cls]))
    assert kinds(conv.graph) == EXPECTED[cls], conv.graph.describe()
    assert conv.graph.ops[0].relu  # conv + relu fused (quantized::conv*_relu)
    assert_exact(conv, model, x, engine)
    with torch_engine(engine):
        loaded = torch.jit.load(str(path))
    assert_exact(conv, loaded, x, engine)


@pytest.mark.parametrize("cls", [FxCNN, EagerCNN], ids=lambda c: c.__name__)
def test_torchscript_reads_the_same_ir_as_the_module(cls, tmp_path):
    """Weights, scales, strides and tables read from the file equal what the module loader reads."""
    model = quantized(cls, "x86")
    a = load(save(model, "script", tmp_path / "m.pt", "x86", calibration(cls)))
    b = load(model)
    assert kinds(a) == kinds(b) and a.input == b.input
    for p, q in zip(a.ops, b.ops):
        assert p.out == q.out
        if isinstance(p, Conv):
            assert (p.stride, p.padding, p.dilation, p.groups, p.relu) == (q.stride, q.padding, q.dilation, q.groups,
                                                                            q.relu)
            for f in ("weight", "w_scale", "w_zero_point", "bias"):
                assert np.array_equal(getattr(p, f), getattr(q, f)), f
        elif isinstance(p, Table):
            assert np.array_equal(p.table, q.table)
        elif isinstance(p, MaxPool):
            assert (p.kernel, p.stride, p.padding) == (q.kernel, q.stride, q.padding)
        elif isinstance(p, (Add, Cat)):
            assert len(p.inputs) == len(q.inputs) == 2
        elif isinstance(p, Linear):
            assert np.array_equal(p.weight, q.weight)


class FxActCNN(nn.Module):
    """quantized::leaky_relu / elu (with constant arguments), relu6 as hardtanh, tanh, hardsigmoid, F.max_pool2d
    (scripted: `stride is None` decided as torch decides it), avg and adaptive avg pooling."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 4, 3)
        self.lrelu, self.r6, self.elu, self.hsig = nn.LeakyReLU(0.2), nn.ReLU6(), nn.ELU(0.7), nn.Hardsigmoid()
        self.avg, self.gap = nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.avg(self.elu(self.r6(self.lrelu(self.c(x)))))
        y = self.hsig(torch.tanh(torch.nn.functional.max_pool2d(y, 2, 1)))
        return self.fc(torch.flatten(self.gap(y), 1))


SHAPES[FxActCNN] = (2, 9, 9)


@pytest.mark.parametrize("how", ["trace", "script", "frozen"])
def test_torchscript_activations_with_arguments(how, tmp_path):
    """x86 only: on qnnpack torch computes hardtanh on channels-last tensors in the wrong order (refused)."""
    model = quantized(FxActCNN, "x86")
    x = calibration(FxActCNN)
    script = torch.jit.trace(model, x[:2]) if how == "trace" else torch.jit.script(model)
    if how == "frozen":
        script = torch.jit.freeze(script.eval())  # packed weights become constants
    torch.jit.save(script, str(tmp_path / "act.pt"))
    conv = uquant.convert(tmp_path / "act.pt", engine="x86", input_shape=SHAPES[FxActCNN])
    assert kinds(conv.graph) == ["Conv", "Table", "Table", "Table", "AvgPool", "MaxPool", "Table", "Table", "AvgPool",
                                 "Reshape", "Linear"]
    assert_exact(conv, model, x[:12] * 1.5, "x86")


def test_eager_cnn_in_memory_matches_its_torchscript_file(tmp_path):
    """The eager model itself (FloatFunctional add and cat) converts too, to the same outputs."""
    model = quantized(EagerCNN, "x86")
    x = calibration(EagerCNN)[:12] * 1.5
    conv = uquant.convert(model, x[:4], engine="x86")
    assert kinds(conv.graph) == EXPECTED[EagerCNN]
    assert_exact(conv, model, x, "x86")


def test_traced_module_in_memory_knows_its_input_shape():
    model = quantized(FxCNN, "x86")
    x = calibration(FxCNN)
    with torch.no_grad():
        traced = torch.jit.trace(model, x[:3])
    conv = uquant.convert(traced, engine="x86")  # no example input, no input_shape: the trace recorded (3, 2, 8, 8)
    assert conv.graph.input_shape == SHAPES[FxCNN]
    assert_exact(conv, model, x[:8], "x86")


@pytest.mark.parametrize("how", ["trace", "script"])
def test_flatten_then_linear_file_needs_no_shape(how, tmp_path):
    """As before graphs: a file whose first layer is a Linear (after a flatten) takes a flat input of its size."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    x = torch.randn(64, 1, 4, 4)
    with torch_engine("x86"):
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))
        prepared(x)
        qmodel = convert_fx(prepared)
    path = save(qmodel, how, tmp_path / "flat.pt", "x86", x)
    conv = uquant.convert(path, engine="x86")
    assert conv.graph.input_shape == (16,)
    assert_exact(conv, qmodel, x[:10], "x86")


class MeanNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.c1 = nn.Conv2d(2, 4, 3)

    def forward(self, x):
        return self.dequant(self.c1(self.quant(x)).mean((2, 3)))


class CatDim2Net(MeanNet):
    def forward(self, x):
        y = self.c1(self.quant(x))
        return self.dequant(torch.cat([y, y], 2))


@pytest.mark.parametrize("cls,match", [(CatDim2Net, ["cat along dim 2", "dim=1"])])
@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_refusals_are_named(cls, match, how):
    m = cls().eval()
    m.qconfig = get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(m)
    x = torch.randn(8, 2, 6, 6)
    prepared(x)
    model = torch.ao.quantization.convert(prepared)
    script = torch.jit.trace(model, x[:2]) if how == "trace" else torch.jit.script(model)
    with pytest.raises(ConversionError) as info:
        load(script)
    for s in match:
        assert s in str(info.value), str(info.value)


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("how", ["mul", "mul_relu"])
def test_traced_quantized_mul(engine, how, tmp_path):
    from test_cnn import AddNet

    rng = np.random.default_rng(1)
    torch.backends.quantized.engine = engine
    net = AddNet(rng, engine, 3, how).eval()
    x = torch.randn(4, 3, 5, 5)
    torch.jit.save(torch.jit.trace(net, x), tmp_path / "m.pt")
    converted = uquant.convert(tmp_path / "m.pt", engine=engine, input_shape=(3, 5, 5))
    with torch.no_grad():
        want = np.concatenate([net(x[i:i + 1]).numpy().reshape(1, -1) for i in range(4)])
    out = converted.plan.output
    got = uquant.engines.dequantize(converted.run(x.reshape(4, -1).numpy()), out.scale, out.zero_point)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_mean_matches_torch(engine, how, tmp_path):
    # a conv's 4x4 output averaged over 2x2 after a conv: x86 sums dequantized floats (uquant.fmean), qnnpack pools
    m = MeanNet().eval()
    m.qconfig = get_default_qconfig(engine)
    torch.backends.quantized.engine = engine
    prepared = torch.ao.quantization.prepare(m)
    x = torch.randn(64, 2, 4, 4)
    prepared(x)
    model = torch.ao.quantization.convert(prepared)
    script = torch.jit.trace(model, x[:2]) if how == "trace" else torch.jit.script(model)
    torch.jit.save(script, tmp_path / "m.pt")
    converted = uquant.convert(tmp_path / "m.pt", engine=engine, input_shape=(2, 4, 4))
    assert {"fmean" if engine == "x86" else "avgpool"} <= {s.kind for s in converted.plan.steps}
    with torch.no_grad():
        want = np.concatenate([model(x[i:i + 1]).numpy().reshape(1, -1) for i in range(len(x))])
    out = converted.plan.output
    got = uquant.engines.dequantize(converted.run(x.reshape(len(x), -1).numpy()), out.scale, out.zero_point)
    assert np.array_equal(got, want)


def test_torchscript_mean_over_an_order_uquant_does_not_model_is_refused(tmp_path):
    model = MeanNet().eval()  # 4 channels over 4x4 positions on x86
    model.qconfig = get_default_qconfig("x86")
    torch.backends.quantized.engine = "x86"
    prepared = torch.ao.quantization.prepare(model)
    x = torch.randn(8, 2, 6, 6)
    prepared(x)
    torch.jit.save(torch.jit.trace(torch.ao.quantization.convert(prepared), x[:2]), tmp_path / "m.pt")
    with pytest.raises(ConversionError, match=r"mean over H x W = 4x4 positions of 4 channels.*AdaptiveAvgPool2d"):
        uquant.convert(tmp_path / "m.pt", engine="x86", input_shape=(2, 6, 6))
