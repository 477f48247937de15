"""Loaders: every accepted input converts to torch's exact output, every rejected one says why.

Models are real torch models quantized with prepare_fx/convert_fx or eager prepare/convert and calibrated
on random data. "Exact" means the device runtime's output codes, dequantized, equal model(x) bit for bit.
Independently of lowering, every loaded IR is also replayed with torch's own quantized kernels
(`torch_run_ir`), which proves the loader read the right weights, scales and tables.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.nn as nn
from torch.ao.quantization import (DeQuantStub, HistogramObserver, QConfig, QConfigMapping,
                                   QuantStub, default_per_channel_weight_observer, default_weight_observer,
                                   get_default_qat_qconfig_mapping, get_default_qconfig,
                                   get_default_qconfig_mapping)
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

import uquant
from conftest import torch_engine
from randmodels import Chain
from uquant import engines
from uquant.examples import seed_state_dict
from uquant.ir import ConversionError, Linear, Reshape, Table
from uquant.loaders import load
from uquant.loaders.fx import from_module

pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
              pytest.mark.filterwarnings("ignore:.*(quant_min and quant_max|TorchScript type system).*:UserWarning")]

torch.manual_seed(0)
X_CAL = torch.randn(256, 5) * 1.5
X_TEST = torch.cat([torch.randn(48, 5) * 2.5, torch.randn(16, 5) * 8])  # some beyond the calibrated range


# --- models -----------------------------------------------------------------------------------------------
class FuncNet(nn.Module):
    """torch.relu between layers: FX (x86 / qnnpack qconfigs) leaves dequantize -> relu -> quantize."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(5, 16), nn.Linear(16, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class ModNet(nn.Module):
    """nn.ReLU modules: FX fuses them into LinearReLU; also Dropout / Flatten / Identity pass-throughs."""

    def __init__(self):
        super().__init__()
        self.fc1, self.r1 = nn.Linear(5, 16), nn.ReLU()
        self.drop, self.flat, self.ident = nn.Dropout(0.2), nn.Flatten(), nn.Identity()
        self.fc2, self.r2 = nn.Linear(16, 8), nn.ReLU()
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc3(self.r2(self.fc2(self.ident(self.flat(self.drop(self.r1(self.fc1(x))))))))


class PlainNet(nn.Module):
    """Only Linear and nn.ReLU (fused by FX): its state_dict is a plain chain of layers."""

    def __init__(self):
        super().__init__()
        self.fc1, self.r1, self.fc2, self.r2 = nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU()
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc3(self.r2(self.fc2(self.r1(self.fc1(x)))))


class EagerNet(nn.Module):
    """Eager mode: QuantStub / DeQuantStub, nested Sequential, nn.ReLU modules (fusable) and a standalone ReLU."""

    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.body = nn.Sequential(OrderedDict(fc1=nn.Linear(5, 16), r1=nn.ReLU(), fc2=nn.Linear(16, 8),
                                              r2=nn.ReLU()))
        self.drop = nn.Dropout(0.1)
        self.fc3 = nn.Linear(8, 3)
        self.relu_out = nn.ReLU()  # standalone (never fused): a ReLU on a quantized tensor
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.relu_out(self.fc3(self.drop(self.body(self.quant(x))))))


class SigmoidNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.sigmoid(self.fc1(x)))


class ExpNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.exp(self.fc1(x)))


class SkipNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(self.fc1(x) + x)


def qconfig_mapping(engine: str, per_channel: bool) -> QConfigMapping:
    if per_channel == (engine == "x86"):
        return get_default_qconfig_mapping(engine)  # x86: per-channel, qnnpack: per-tensor weights
    weight = default_per_channel_weight_observer if per_channel else default_weight_observer
    return QConfigMapping().set_global(QConfig(activation=HistogramObserver.with_args(reduce_range=engine == "x86"),
                                               weight=weight))


@lru_cache(maxsize=None)
def fx_model(cls, engine: str, per_channel: bool | None = None):
    per_channel = engine == "x86" if per_channel is None else per_channel
    with torch_engine(engine):
        prepared = prepare_fx(cls().eval(), qconfig_mapping(engine, per_channel), example_inputs=(X_CAL,))
        prepared(X_CAL)
        return convert_fx(prepared)


@lru_cache(maxsize=None)
def eager_model(engine: str, fuse: bool):
    with torch_engine(engine):
        m = EagerNet().eval()
        m.qconfig = get_default_qconfig(engine)
        if fuse:
            m = torch.ao.quantization.fuse_modules(m, [["body.fc1", "body.r1"], ["body.fc2", "body.r2"]])
        prepared = torch.ao.quantization.prepare(m)
        prepared(X_CAL)
        return torch.ao.quantization.convert(prepared)


MODELS = {
    "fx_func": lambda engine: fx_model(FuncNet, engine),
    "fx_mod": lambda engine: fx_model(ModNet, engine),
    "eager_fused": lambda engine: eager_model(engine, True),
    "eager_unfused": lambda engine: eager_model(engine, False),
}
def model_param(kind):
    return kind


# --- checks -----------------------------------------------------------------------------------------------
def reference(model, x: torch.Tensor, engine: str) -> np.ndarray:
    with torch_engine(engine), torch.no_grad():
        return model(x).numpy()


def assert_exact(converted, model, x: torch.Tensor, engine: str) -> None:
    """The device runtime's codes, dequantized, equal torch's float output bit for bit."""
    want = reference(model, x, engine)
    out = converted.plan.output
    got = engines.dequantize(converted.run(x), out.scale, out.zero_point)
    assert got.shape == want.shape
    assert np.array_equal(got, want), f"{np.sum(got != want)} of {want.size} outputs differ"


def torch_run_ir(graph, x: torch.Tensor, engine: str) -> np.ndarray:
    """Replay an IR graph with torch's own quantized kernels (no lowering involved)."""
    with torch_engine(engine):
        q = torch.quantize_per_tensor(x, graph.input.scale, graph.input.zero_point, torch.quint8)
        for op in graph.ops:
            if isinstance(op, Linear):
                codes = torch.from_numpy(op.weight.astype(np.int8))
                if op.per_channel:
                    w = torch._make_per_channel_quantized_tensor(codes, torch.from_numpy(op.w_scale),
                                                                 torch.from_numpy(op.w_zero_point), 0)
                else:
                    w = torch._make_per_tensor_quantized_tensor(codes, float(op.w_scale[0]),
                                                                int(op.w_zero_point[0]))
                bias = None if op.bias is None else torch.from_numpy(op.bias)
                packed = torch.ops.quantized.linear_prepack(w, bias)
                fn = torch.ops.quantized.linear_relu if op.relu else torch.ops.quantized.linear
                q = fn(q, packed, op.out.scale, op.out.zero_point)
            elif isinstance(op, Reshape):
                q = q.flatten(1)
            else:
                codes = torch.from_numpy(op.table[q.int_repr().long().numpy()]).to(torch.uint8)  # quint8: qmin 0
                q = torch._make_per_tensor_quantized_tensor(codes, op.out.scale, op.out.zero_point)
        return q.dequantize().numpy()


def assert_same_ir(a, b) -> None:
    """Same numbers (op names may differ between loaders)."""
    assert (a.input, a.in_features, len(a.ops)) == (b.input, b.in_features, len(b.ops)), (a.describe(), b.describe())
    for p, q in zip(a.ops, b.ops):
        assert type(p) is type(q) and p.out == q.out
        if isinstance(p, Linear):
            assert (p.relu, p.per_channel) == (q.relu, q.per_channel)
            for f in ("weight", "w_scale", "w_zero_point", "bias"):
                assert np.array_equal(getattr(p, f), getattr(q, f)), f
        elif isinstance(p, Reshape):
            assert p.shape == q.shape
        else:
            assert np.array_equal(p.table, q.table)


def expect_error(match: list[str], fn, *args, **kwargs) -> str:
    with pytest.raises(ConversionError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for m in match:
        assert m in msg, f"{m!r} not in {msg!r}"
    return msg


# --- FX and eager models in memory -----------------------------------------------------------------------
@pytest.mark.parametrize("engine,per_channel", [("x86", True), ("x86", False), ("qnnpack", False),
                                                ("qnnpack", True)])
def test_fx_in_memory_fused_relu(engine, per_channel):
    model = fx_model(ModNet, engine, per_channel)
    conv = uquant.convert(model, engine=engine)
    linears = [op for op in conv.graph.ops if isinstance(op, Linear)]
    assert [op.relu for op in linears] == [True, True, False]
    assert all(op.per_channel == per_channel for op in linears)
    assert_exact(conv, model, X_TEST, engine)


@pytest.mark.parametrize("engine,per_channel", [("x86", True), ("x86", False), ("qnnpack", False)])
def test_fx_in_memory_float_relu_becomes_code_table(engine, per_channel):
    model = fx_model(FuncNet, engine, per_channel)
    graph = load(model)
    assert [type(op).__name__ for op in graph.ops] == ["Linear", "Table", "Linear", "Table", "Linear"]
    assert all(op.what == "dequantize -> relu -> quantize" for op in graph.ops if isinstance(op, Table))
    assert np.array_equal(torch_run_ir(graph, X_TEST, engine), reference(model, X_TEST, engine))


def test_fx_in_memory_float_relu_runs_exact():
    model = fx_model(FuncNet, "x86")
    assert_exact(uquant.convert(model, engine="x86"), model, X_TEST, "x86")


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("fuse", [True, False])
def test_eager_in_memory(engine, fuse):
    model = eager_model(engine, fuse)
    conv = uquant.convert(model, X_TEST, engine=engine)  # also runs the built-in self-check
    kinds = [f"{type(op).__name__}{'+relu' if getattr(op, 'relu', False) else ''}" for op in conv.graph.ops]
    body = ["Linear+relu", "Linear+relu"] if fuse else ["Linear", "Table", "Linear", "Table"]
    assert kinds == body + ["Linear", "Table"]  # the last Table: the standalone relu_out
    assert_exact(conv, model, X_TEST, engine)


# --- TorchScript --------------------------------------------------------------------------------------------
def save_script(model, how: str, path, engine: str):
    with torch_engine(engine), torch.no_grad():
        script = torch.jit.trace(model, X_CAL[:4]) if how == "trace" else torch.jit.script(model)
    torch.jit.save(script, str(path))
    with torch_engine(engine):
        return torch.jit.load(str(path))


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("how", ["trace", "script"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_torchscript_file_reads_same_ir(kind, how, engine, tmp_path):
    model = MODELS[kind](engine)
    loaded = save_script(model, how, tmp_path / "m.pt", engine)
    with torch_engine(engine):
        graph = load(tmp_path / "m.pt")
    assert graph.name == "m"
    assert_same_ir(graph, from_module(model, "m"))
    assert np.array_equal(torch_run_ir(graph, X_TEST, engine), reference(loaded, X_TEST, engine))


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("how", ["trace", "script"])
@pytest.mark.parametrize("kind", [model_param(k) for k in MODELS])
def test_torchscript_file_runs_exact(kind, how, engine, tmp_path):
    model = MODELS[kind](engine)
    loaded = save_script(model, how, tmp_path / "m.pt", engine)
    with torch_engine(engine):
        conv = uquant.convert(tmp_path / "m.pt", engine=engine)
    assert_exact(conv, loaded, X_TEST, engine)
    assert_exact(conv, model, X_TEST, engine)


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_module_in_memory(how):
    model = eager_model("x86", True)
    script = torch.jit.trace(model, X_CAL[:4]) if how == "trace" else torch.jit.script(model)
    conv = uquant.convert(script, X_TEST, engine="x86")
    assert [op.name for op in conv.graph.ops] == ["body.fc1", "body.fc2", "fc3", conv.graph.ops[-1].name]
    assert_exact(conv, script, X_TEST, "x86")


def test_torchscript_tuple_output_and_frozen(tmp_path):
    class TupleOut(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return (self.inner(x),)

    model = eager_model("x86", False)
    frozen = torch.jit.freeze(torch.jit.script(TupleOut(model).eval()))  # packed weights become constants
    assert_same_ir(load(frozen), from_module(model, "model"))


# --- state_dict files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("relu", ["hidden", ["fc1", "fc2"], "fc1,fc2"])
def test_fx_state_dict_file(engine, relu, tmp_path):
    model = fx_model(PlainNet, engine)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    conv = uquant.convert(tmp_path / "weights.pt", engine=engine, relu=relu)
    assert [op.name for op in conv.graph.ops] == ["fc1", "fc2", "fc3"]
    assert_exact(conv, model, X_TEST, engine)


def test_eager_state_dict_file(tmp_path):
    eager = eager_model("x86", True)
    sd = eager.state_dict()
    assert "quant.scale" in sd  # a QuantStub's quantizer
    torch.save(sd, tmp_path / "eager.pt")
    graph = load(tmp_path / "eager.pt", relu="hidden")
    assert [op.name for op in graph.ops] == ["body.fc1", "body.fc2", "fc3"]
    # the eager model ends in a standalone ReLU the state_dict cannot record: compare without it
    graph_full = from_module(eager, "m")
    assert_same_ir(graph, type(graph_full)(graph_full.name, graph_full.input, graph_full.in_features,
                                           graph_full.ops[:-1]))


def seed_reference_model(relu_first: bool):
    sd = seed_state_dict()
    (qw1, b1), (qw2, b2) = sd["input_layer._packed_params._packed_params"], sd["out._packed_params._packed_params"]
    l1 = (nniq.LinearReLU if relu_first else nnq.Linear)(2, 3)
    l1.set_weight_bias(qw1, b1)
    l1.scale, l1.zero_point = 0.0297, 0
    l2 = nnq.Linear(3, 7)
    l2.set_weight_bias(qw2, b2)
    l2.scale, l2.zero_point = 1.5963, 243
    return Chain(0.0039, 0, [l1, l2]).eval()


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_seed_state_dict(engine, tmp_path):
    path = tmp_path / "seed.pt"
    torch.save(seed_state_dict(), path)
    msg = expect_error(["relu", "relu='hidden'"], uquant.convert, path, engine=engine)
    assert "out (output zero point 243)" in msg and "input_layer" not in msg
    x = torch.cat([torch.rand(96, 2), torch.rand(32, 2) * 1.2 - 0.1])
    conv = uquant.convert(path, engine=engine, relu="hidden")
    assert [op.relu for op in conv.graph.ops] == [True, False]
    with torch_engine(engine):
        model = seed_reference_model(relu_first=True)
    assert_exact(conv, model, x, engine)
    conv_none = uquant.convert(path, engine=engine, relu="none")
    with torch_engine(engine):
        model_none = seed_reference_model(relu_first=False)
    assert_exact(conv_none, model_none, x, engine)


def test_state_dict_relu_names_checked(tmp_path):
    torch.save(seed_state_dict(), tmp_path / "seed.pt")
    expect_error(["['fc1']", "not layers", "input_layer"], load, tmp_path / "seed.pt", relu=["fc1"])


def test_state_dict_missing_keys(tmp_path):
    sd = seed_state_dict()
    del sd["out.scale"]
    torch.save(sd, tmp_path / "a.pt")
    expect_error(["lacks out.scale"], load, tmp_path / "a.pt", relu="hidden")
    sd = seed_state_dict()
    del sd["input_layer_input_zero_point_0"]
    torch.save(sd, tmp_path / "b.pt")
    expect_error(["input_layer_input_scale_0", "no input_layer_input_zero_point_0"], load, tmp_path / "b.pt",
                 relu="hidden")
    sd = seed_state_dict()
    del sd["input_layer_input_scale_0"], sd["input_layer_input_zero_point_0"]
    expect_error(["no input quantizer", "input_layer_input_scale_0"], load, sd, relu="hidden")


def test_state_dict_extra_key(tmp_path):
    sd = seed_state_dict()
    sd["head.temperature"] = torch.tensor(2.0)
    torch.save(sd, tmp_path / "extra.pt")
    expect_error(["head.temperature", "cannot place"], load, tmp_path / "extra.pt", relu="hidden")


@pytest.mark.parametrize("cls,key", [(FuncNet, "_scale_0"), (ModNet, "flat_scale_0")])
def test_state_dict_of_model_with_code_tables_refused(cls, key, tmp_path):
    torch.save(fx_model(cls, "x86").state_dict(), tmp_path / "sd.pt")  # a requantization between layers
    expect_error([f"'{key}'", "cannot place", "TorchScript"], load, tmp_path / "sd.pt", relu="hidden")


def test_state_dict_without_layers_refused():
    expect_error(["no quantized Linear layers"], load, {"weight": torch.zeros(3, 2)})


# --- whole pickled models -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fuse", [True, False])
def test_pickled_model_needs_allow_pickle(fuse, tmp_path):
    model = eager_model("x86", fuse)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    expect_error(["allow-pickle", "allow_pickle=True", "state_dict"], uquant.convert, path, engine="x86")
    conv = uquant.convert(path, engine="x86", allow_pickle=True)
    assert_exact(conv, model, X_TEST, "x86")


def test_file_of_other_object_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    expect_error(["holds a list"], load, tmp_path / "list.pt")


# --- damaged and missing files ----------------------------------------------------------------------------
def test_missing_file(tmp_path):
    expect_error(["no such file", "nope.pt"], uquant.convert, tmp_path / "nope.pt")


@pytest.mark.parametrize("what", ["state_dict", "torchscript"])
def test_truncated_file(what, tmp_path):
    path = tmp_path / "full.pt"
    if what == "state_dict":
        torch.save(seed_state_dict(), path)
    else:
        save_script(eager_model("x86", True), "trace", path, "x86")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    expect_error(["cut.pt", "not a readable"], load, tmp_path / "cut.pt")


def test_corrupted_torchscript_file(tmp_path):
    path = tmp_path / "m.pt"
    save_script(eager_model("x86", True), "trace", path, "x86")
    data = bytearray(path.read_bytes())
    start = data.index(b"PK\x01\x02")  # keep the zip directory so it still looks like TorchScript
    for i in range(64, start - 64, 97):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    expect_error(["m.pt", "not a readable TorchScript file"], load, path)


@pytest.mark.parametrize("content, words", [(b"", "is empty (0 bytes): not a readable torch file"),
                                            (b"hello, I am not a model\n" * 10, "is a text file"),
                                            (bytes(range(256)) * 4, "not a readable torch file")])
def test_garbage_file(content, words, tmp_path):
    (tmp_path / "junk.pt").write_bytes(content)
    expect_error(["junk.pt", words], load, tmp_path / "junk.pt")


# --- models that are not (statically) quantized chains ------------------------------------------------------
def test_float_model_refused():
    expect_error(["module 'fc1' (Linear)", "not quantized", "convert_fx"], load, ModNet().eval())
    traced = torch.jit.trace(ModNet().eval(), X_CAL[:4])
    expect_error(["aten::linear", "in module 'fc1'", "not quantized"], load, traced)


def test_dynamic_quantized_model_refused():
    model = torch.ao.quantization.quantize_dynamic(ModNet().eval(), {nn.Linear}, dtype=torch.qint8)
    expect_error(["module 'fc1'", "dynamically quantized", "static quantization"], load, model)
    expect_error(["quantized::linear_dynamic", "dynamically quantized"], load, torch.jit.trace(model, X_CAL[:4]))


def test_qat_prepared_not_converted_refused():
    with torch_engine("x86"):
        prepared = prepare_qat_fx(ModNet().train(), get_default_qat_qconfig_mapping("x86"), example_inputs=(X_CAL,))
        expect_error(["activation_post_process_0", "prepared", "not converted", "convert_fx"], load, prepared)
        traced = torch.jit.trace(prepared, X_CAL[:4], check_trace=False)
        expect_error(["'activation_post_process_0' (FusedMovingAvgObsFakeQuantize)", "prepared", "not converted"],
                     load, traced)


@pytest.mark.parametrize("form", ["eager", "trace"])
def test_eager_prepared_not_converted_refused(form):
    m = EagerNet().eval()
    m.qconfig = get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(m)
    prepared(X_CAL)
    if form == "trace":
        prepared = torch.jit.trace(prepared, X_CAL[:4])
    expect_error(["module 'quant.activation_post_process' (HistogramObserver)", "prepared", "not converted"],
                 load, prepared)


@pytest.mark.parametrize("form", ["trace", "script"])
def test_unsupported_op_named(form):
    model = fx_model(ExpNet, "x86")  # (sigmoid is supported from TorchScript too now: see test_torchscript_cnn)
    if form != "fx":
        model = torch.jit.trace(model, X_CAL[:4]) if form == "trace" else torch.jit.script(model)
    expect_error(["exp", "not supported", "linear_relu" if form != "fx" else "LinearReLU"], load, model)


def test_unsupported_float_op_named_fx():
    expect_error(["exp", "not supported", "LinearReLU"], load, fx_model(ExpNet, "x86"))


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_sigmoid_converts_from_fx(engine):
    model = fx_model(SigmoidNet, engine)
    with torch_engine(engine):
        assert_exact(uquant.convert(model, engine=engine), model, X_TEST, engine)


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_skip_connection_converts_from_fx(engine):
    model = fx_model(SkipNet, engine)
    with torch_engine(engine):
        assert_exact(uquant.convert(model, engine=engine), model, X_TEST, engine)


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("form", ["trace", "script"])
def test_skip_connection_converts_from_torchscript(form, engine, tmp_path):
    model = fx_model(SkipNet, engine)
    loaded = save_script(model, form, tmp_path / "skip.pt", engine)
    with torch_engine(engine):
        conv = uquant.convert(tmp_path / "skip.pt", engine=engine)
    assert [type(op).__name__ for op in conv.graph.ops] == ["Linear", "Add", "Linear"]
    assert_exact(conv, loaded, X_TEST, engine)
    assert_exact(conv, model, X_TEST, engine)


def test_torchscript_two_inputs_refused():
    class TwoIn(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, y):
            return self.inner(x)

    expect_error(["exactly one input", "takes 2"], load, torch.jit.script(TwoIn(eager_model("x86", True))))


def test_torchscript_float_op_after_dequantize_refused():
    class ReluAfter(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return torch.relu(self.inner(x))

    expect_error(["['relu']", "after the last dequantize"], load, torch.jit.script(ReluAfter(eager_model("x86", True))))


# --- a final softmax, recurrent layers, names and the supported-op lists ---------------------------------------
class SoftmaxNet(nn.Module):
    """softmax / log_softmax as the model's last op, as a function, a method or a module."""

    def __init__(self, how: str = "function"):
        super().__init__()
        self.how = how
        self.fc1, self.fc2 = nn.Linear(5, 8), nn.Linear(8, 3)
        self.sm = nn.LogSoftmax(dim=1)

    def forward(self, x):
        y = self.fc2(torch.relu(self.fc1(x)))
        if self.how == "function":
            return torch.softmax(y, dim=1)
        if self.how == "method":
            return y.log_softmax(1)
        if self.how == "module":
            return self.sm(y)
        return self.fc2(torch.softmax(self.fc1(x), dim=1))  # "inside": not element-wise, refused


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("how", ["function", "method", "module", "torchscript"])
def test_final_softmax_dropped_with_a_note(how, engine, tmp_path):
    with torch_engine(engine):
        model = fx_model(lambda: SoftmaxNet("module" if how == "torchscript" else how), engine)
        if how == "torchscript":
            model = save_script(model, "trace", tmp_path / "sm.pt", engine)
        # the self-check applies the dropped op to the device's dequantized codes: torch's floats, bit for bit
        c = uquant.convert(model, X_TEST, engine=engine)
        want = model(X_TEST).argmax(1).numpy()
    assert len(c.graph.notes) == 1 and "is dropped: the device returns the codes of the layer before it" in \
        c.graph.notes[0] and "argmax and class unchanged" in c.graph.notes[0]
    assert [type(op).__name__ for op in c.graph.ops][-1] == "Linear"
    assert (np.argmax(c.run(X_TEST), 1) == want).all()


def test_softmax_inside_the_model_refused():
    expect_error(["softmax inside the model is not supported", "not element-wise", "last op it is dropped"], load,
                 fx_model(lambda: SoftmaxNet("inside"), "x86"))


def test_convert_prints_the_softmax_note(tmp_path, capsys):
    from uquant.cli import main

    save_script(fx_model(lambda: SoftmaxNet("function"), "qnnpack"), "trace", tmp_path / "sm.pt", "qnnpack")
    assert main(["convert", str(tmp_path / "sm.pt"), "--engine", "qnnpack", "-o", str(tmp_path / "sm_q.py")]) == 0
    assert "  note: the final softmax is dropped" in capsys.readouterr().out


class RecurrentNet(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn, self.fc = cell(4, 8, batch_first=True), nn.Linear(8, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("form", ["script", "file"])
def test_recurrent_layers_named(cell, form, tmp_path):
    model = torch.jit.script(RecurrentNet(cell).eval())
    if form == "file":
        torch.jit.save(model, str(tmp_path / "rnn.pt"))
        model = tmp_path / "rnn.pt"
    advice = ("recurrent layers are not supported in TorchScript files" if cell is nn.LSTM else
              "GRU is not supported: torch has no static quantized GRU; use nn.LSTM with torch.ao.nn.quantizable.LSTM")
    expect_error([f"module 'rnn' ({cell.__name__})", advice], load, model)


def test_recurrent_layer_named_fx():
    class Quantized(nn.Module):  # FX quantizes the Linear; the LSTM stays float between dequantize/quantize
        def __init__(self):
            super().__init__()
            self.fc, self.rnn = nn.Linear(4, 4), nn.LSTM(4, 4, batch_first=True)

        def forward(self, x):
            return self.rnn(self.fc(x))[0]

    x = torch.randn(8, 3, 4)
    with torch_engine("x86"):
        prepared = prepare_fx(Quantized().eval(), get_default_qconfig_mapping("x86"), example_inputs=(x,))
        prepared(x)
        model = convert_fx(prepared)
    expect_error(["(LSTM)", "a float LSTM", "set_float_to_observed_mapping(nn.LSTM, torch.ao.nn.quantizable.LSTM)"],
                 load, model)


def test_functional_ops_named_by_their_kind(tmp_path):
    class PoolNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(32, 3)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
            return self.fc(torch.flatten(x, 1))

    x = torch.rand(8, 1, 8, 8)
    with torch_engine("qnnpack"):
        prepared = prepare_fx(PoolNet().eval(), get_default_qconfig_mapping("qnnpack"), example_inputs=(x,))
        prepared(x)
        torch.jit.save(torch.jit.trace(convert_fx(prepared), x), str(tmp_path / "pool.pt"))
        graph = load(tmp_path / "pool.pt")
    assert "max_pool2d" in [op.name for op in graph.ops]  # not `x`, the variable torch.jit.save leaves


def test_supported_op_lists_read_off_the_dispatch_tables():
    from uquant.loaders import fx, torchscript

    for name in ("mul", "softmax", "max_pool2d", "hardswish", "cat", "linear_relu"):
        assert name in torchscript.SUPPORTED.split(", ") or name in torchscript.SUPPORTED
    for name in ("mul", "Softmax", "Hardswish", "AdaptiveAvgPool2d", "Dropout"):
        assert name in fx.SUPPORTED
