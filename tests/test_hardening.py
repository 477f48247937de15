"""Bad input gets a clear error, never a wrong answer (issue 7): one test per case, as the user meets it.

Converter: models that are not statically quantized and converted, unsupported ops, unknown input shapes,
damaged and crafted files, inconsistent state_dicts, impossible scales and zero points, layers whose
arithmetic would overflow, pickles. The CLI prints each as one `uquant: error: ...` line, exit status 2, no
traceback. Runtime: run() checks its input; a changed or cut generated module never imports as a different
model; a model too big for a board fails at `uquant info --board` with the numbers.
The fuzzers are in test_fuzz_loaders.py.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from array import array
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

import uquant
from conftest import run_cli, torch_engine
from uquant import cli
from uquant.elementwise import lower_add, lower_mul
from uquant.examples import seed_state_dict
from uquant.hosts import wasm
from uquant.ir import Add, ConversionError, Mul, QParams
from uquant.runtime import RUNTIME_FILE, load_source, rt

pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]

X = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
CNN_SHAPE = (1, 6, 6)


# --- helpers ------------------------------------------------------------------------------------------------


def clean_error(result, *fragments: str) -> str:
    """Exit status 2, one `uquant: error: ...` line holding every fragment, no traceback; returns the message."""
    rc, out, err = result
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uquant: error: "), err
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


def refused(fn, *args, fragments=(), **kwargs) -> str:
    with pytest.raises(ConversionError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class ExpNet(MLP):
    def forward(self, x):
        return self.fc2(torch.exp(self.fc1(x)))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.relu, self.pool = nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)
        self.flat, self.fc = nn.Flatten(), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.conv(x)))))


def fx_quantized(model: nn.Module, x: torch.Tensor) -> nn.Module:
    with torch_engine("x86"):
        torch.manual_seed(0)
        prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), example_inputs=(x[:1],))
        prepared(x)
        return convert_fx(prepared)


@lru_cache(maxsize=None)
def quantized_cnn() -> tuple[nn.Module, torch.Tensor]:
    x = torch.randn(16, *CNN_SHAPE, generator=torch.Generator().manual_seed(1))
    return fx_quantized(CNN(), x), x


@lru_cache(maxsize=None)
def cnn_source() -> str:
    model, x = quantized_cnn()
    return uquant.convert(model, x[:1], engine="x86", name="cnn").source


def trace_file(model, x, path: Path) -> Path:
    with torch_engine("x86"), torch.no_grad():
        torch.jit.save(torch.jit.trace(model, x, check_trace=False), str(path))
    return path


def save(obj, path: Path, **kw) -> Path:
    torch.save(obj, path, **kw)
    return path


# --- models that are not statically quantized and converted ----------------------------------------------------
def test_float_model(tmp_path, capsys):
    float_model = MLP().eval()
    refused(uquant.convert, float_model, fragments=["module 'fc1' (Linear)", "not quantized", "convert_fx"])
    clean_error(run_cli(capsys, "convert", trace_file(float_model, X[:2], tmp_path / "float_ts.pt"), "-o",
                        tmp_path / "a.py"), "aten::linear", "(reads 'fc1.weight', 'fc1.bias')", "not quantized", "convert_fx")
    clean_error(run_cli(capsys, "convert", save(float_model.state_dict(), tmp_path / "float_sd.pt"), "-o",
                        tmp_path / "b.py"), "float (unquantized) model", "'fc1.weight'", "convert_fx")
    clean_error(run_cli(capsys, "convert", save(float_model, tmp_path / "float_whole.pt"), "--allow-pickle",
                        "-o", tmp_path / "c.py"), "module 'fc1' (Linear)", "not quantized")


def test_dynamically_quantized_model(tmp_path, capsys):
    dyn = torch.ao.quantization.quantize_dynamic(MLP().eval(), {nn.Linear}, dtype=torch.qint8)
    refused(uquant.convert, dyn, fragments=["module 'fc1'", "dynamically quantized", "static quantization"])
    clean_error(run_cli(capsys, "convert", save(dyn.state_dict(), tmp_path / "dyn_sd.pt"), "-o", tmp_path / "a.py"),
                "dynamically quantized", "quantize_dynamic", "layer 'fc1'", "static quantization")
    clean_error(run_cli(capsys, "convert", trace_file(dyn, X[:2], tmp_path / "dyn_ts.pt"), "-o", tmp_path / "b.py"),
                "quantized::linear_dynamic", "(reads 'fc1._packed_params._packed_params')", "dynamically quantized",
                "static quantization")


def test_qat_model_not_converted(tmp_path, capsys):
    with torch_engine("x86"):
        qat = prepare_qat_fx(MLP().train(), get_default_qat_qconfig_mapping("x86"), example_inputs=(X,))
        qat(X)
    refused(uquant.convert, qat, fragments=["activation_post_process_0", "prepared", "not converted", "convert_fx"])
    clean_error(run_cli(capsys, "convert", save(qat.state_dict(), tmp_path / "qat_sd.pt"), "-o", tmp_path / "a.py"),
                "prepared but not converted", "'activation_post_process_0", "convert_fx")
    clean_error(run_cli(capsys, "convert", trace_file(qat, X[:2], tmp_path / "qat_ts.pt"), "-o", tmp_path / "b.py"),
                "'activation_post_process_0' (FusedMovingAvgObsFakeQuantize)", "not converted", "convert_fx")


def test_unsupported_op_named_with_its_place(tmp_path, capsys):
    model = fx_quantized(ExpNet(), X)
    refused(uquant.convert, model, fragments=["node 'exp'", "not supported", "supported:"])
    msg = clean_error(run_cli(capsys, "convert", trace_file(model, X[:2], tmp_path / "exp.pt"), "-o",
                              tmp_path / "a.py"), "TorchScript node", "aten::exp", "not supported",
                      "print(module.inlined_graph)")
    assert "linear_relu" in msg and "mul" in msg  # the message lists what is supported (read off the code)


def test_shape_that_cannot_be_inferred(tmp_path, capsys):
    model, x = quantized_cnn()
    path = trace_file(model, x[:1], tmp_path / "cnn.pt")  # a saved file records no input size
    clean_error(run_cli(capsys, "convert", path, "-o", tmp_path / "a.py"),
                "input shape is unknown", "first layer 'conv'", "Conv2d with 1 input channel", "--input-shape 1,H,W")
    clean_error(run_cli(capsys, "info", path, "--input-shape", "1,2,2"), "output would be empty", "(1, 2, 2)")
    clean_error(run_cli(capsys, "info", path, "--input-shape", "3,6,6"), "conv", "expects 1 input channels")
    clean_error(run_cli(capsys, "info", path, "--input-shape", "1,0,6"), "--input-shape", "not a sensible")
    assert run_cli(capsys, "convert", path, "--input-shape", "1,6,6", "-o", tmp_path / "cnn_q.py")[0] == 0


def test_example_input_of_the_wrong_shape():
    model = fx_quantized(MLP(), X)
    refused(uquant.convert, model, torch.randn(3, 4), fragments=["example input does not run through the model",
                                                                 "samples of shape (5,)"])
    cnn, _ = quantized_cnn()
    refused(uquant.convert, cnn, torch.randn(2, 2, 6, 6), fragments=["conv: Conv2d expects 1 input channels"])


def test_float_or_damaged_pt2_file(tmp_path, capsys):
    """torch.export.save files: a float program is named as such; a damaged archive gets the CRC check too."""
    torch.export.save(torch.export.export(MLP().eval(), (X[:1],)), tmp_path / "float.pt2")
    clean_error(run_cli(capsys, "convert", tmp_path / "float.pt2", "-o", tmp_path / "a.py"),
                "PT2E: node 'linear' (aten.linear) has a float weight", "not quantized", "convert_pt2e")
    data = bytearray((tmp_path / "float.pt2").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        name = max(z.namelist(), key=lambda n: z.getinfo(n).file_size)  # the largest record
    data[zip_record_offset(bytes(data), name) + 3] ^= 0x10
    (tmp_path / "flip.pt2").write_bytes(data)
    refused(uquant.convert, tmp_path / "flip.pt2", fragments=["flip.pt2", "CRC-32"])
    (tmp_path / "cut.pt2").write_bytes(data[:len(data) // 3])
    refused(uquant.convert, tmp_path / "cut.pt2", fragments=["cut.pt2", "damaged or truncated"])
    refused(uquant.convert, tmp_path / "none.pt2", fragments=["no such file"])


def test_cli_errors_in_a_real_process(tmp_path):
    """The console entry point itself: exit status 2 and one line on stderr, nothing else."""
    path = save(MLP().state_dict(), tmp_path / "float_sd.pt")
    p = subprocess.run([sys.executable, "-m", "uquant.cli", "convert", str(path), "-o", str(tmp_path / "a.py")],
                       capture_output=True, text=True, timeout=120)
    clean_error((p.returncode, p.stdout, p.stderr), "float (unquantized) model")


# --- damaged and crafted files --------------------------------------------------------------------------------
def zip_record_offset(data: bytes, suffix: str) -> int:
    """Where the bytes of the archive's record ending in `suffix` start."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(suffix))
        content = z.read(info.filename)
    start = info.header_offset + 30 + len(info.filename)
    return data.index(content, start)


def test_flipped_bit_in_a_tensor_is_refused(tmp_path, capsys):
    """torch.load itself reads a flipped bit in a tensor as another number; uquant checks every record's CRC."""
    data = bytearray(save(seed_state_dict(), tmp_path / "sd.pt").read_bytes())
    data[zip_record_offset(bytes(data), "data/0")] ^= 0x01  # the input scale's first byte
    (tmp_path / "flip.pt").write_bytes(data)
    assert not torch.equal(torch.load(tmp_path / "flip.pt")["input_layer_input_scale_0"],
                           seed_state_dict()["input_layer_input_scale_0"])  # what torch alone would use
    clean_error(run_cli(capsys, "convert", tmp_path / "flip.pt", "--relu", "hidden", "-o", tmp_path / "a.py"),
                "flip.pt", "not a readable torch file", "CRC-32", "data/0", "again")
    ts = bytearray(trace_file(fx_quantized(MLP(), X), X[:2], tmp_path / "ts.pt").read_bytes())
    ts[zip_record_offset(bytes(ts), "data/1") + 1] ^= 0x40
    (tmp_path / "ts_flip.pt").write_bytes(ts)
    refused(uquant.convert, tmp_path / "ts_flip.pt", fragments=["not a readable TorchScript file", "CRC-32"])


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file_is_refused(tmp_path, fraction, legacy):
    data = save(seed_state_dict(), tmp_path / "sd.pt", _use_new_zipfile_serialization=not legacy).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:int(len(data) * fraction)])
    refused(uquant.convert, tmp_path / "cut.pt", relu="hidden", fragments=["cut.pt", "not a readable torch file"])


def test_crafted_archive_with_a_short_tensor_record(tmp_path):
    """Consistent CRCs but a tensor record shorter than its tensor: torch.jit.load crashes the whole process on
    such a file (segmentation fault, found by test_fuzz_loaders); uquant refuses it before torch reads it."""
    model, x = quantized_cnn()
    src = trace_file(model, x[:1], tmp_path / "cnn.pt")
    with zipfile.ZipFile(src) as z:
        records = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    i = next(i for i, (n, c) in enumerate(records) if "/data/" in n and len(c) > 8)
    records[i] = (records[i][0], b"")
    with zipfile.ZipFile(tmp_path / "short.pt", "w") as z:
        for n, c in records:
            z.writestr(n, c)
    refused(uquant.convert, tmp_path / "short.pt", input_shape=CNN_SHAPE,
            fragments=["not a readable TorchScript file", records[i][0], "holds 0 bytes, its tensor needs"])


def seed_with(**changes) -> dict:
    sd = seed_state_dict()
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            del sd[k]
        else:
            sd[k] = v
    return sd


W_OUT, B_OUT = seed_state_dict()["out._packed_params._packed_params"]
PACKED = "out._packed_params._packed_params"


@pytest.mark.parametrize("change, fragments", [
    ({"out.zero_point": None}, ["lacks out.zero_point"]),
    ({"input_layer_input_zero_point_0": None}, ["no input_layer_input_zero_point_0"]),
    ({"head.temperature": torch.tensor(2.0)}, ["'head.temperature'", "cannot place"]),
    ({PACKED: (torch.quantize_per_tensor(torch.zeros(7, 5), 0.1, 0, torch.qint8), B_OUT)},
     ["out: expects 5 inputs but receives 3"]),
    ({PACKED: (W_OUT, torch.zeros(5))}, ["out: bias has shape (5,), expected (7,)"]),
    ({PACKED: (W_OUT, torch.zeros(7, dtype=torch.int32))}, ["out: the bias must be a float tensor", "int32"]),
    ({PACKED: (W_OUT, 3)}, ["out: the bias must be a float tensor", "int 3"]),
    ({PACKED: (W_OUT.dequantize(), B_OUT)}, ["out: weight is not a quantized tensor"]),
    ({PACKED: (torch.quantize_per_tensor(torch.zeros(7, 3, 1), 0.1, 0, torch.qint8), B_OUT)},
     ["out: Linear weight must be 2-D, found shape (7, 3, 1)"]),
    ({PACKED: W_OUT}, [PACKED, "expected (quantized weight, bias)"]),
])
def test_inconsistent_state_dict(tmp_path, capsys, change, fragments):
    path = save(seed_with(**change), tmp_path / "sd.pt")
    clean_error(run_cli(capsys, "convert", path, "--relu", "hidden", "-o", tmp_path / "a.py"), *fragments)


@pytest.mark.parametrize("where, label", [("input_layer_input_scale_0", "the model input"),
                                          ("out.scale", "out")])
@pytest.mark.parametrize("value, fragment", [
    (0.0, "must be finite and positive"), (-0.1, "must be finite and positive"), (float("nan"), "got nan"),
    (float("inf"), "got inf"), (1e-40, "outside float32's normal range"), (1e-50, "outside float32's normal range"),
    (2e36, "dequantize to infinity"),
])
def test_bad_scales(where, label, value, fragment):
    sd = seed_with(**{where: torch.tensor(value, dtype=torch.float64)})
    refused(uquant.convert, sd, relu="hidden", fragments=[f"{label}: ", fragment])


@pytest.mark.parametrize("value", [0.0, -0.05, float("inf"), 1e-42])
def test_bad_weight_scale_names_the_channel(value):
    scales = torch.full((7,), 0.05, dtype=torch.float64)
    scales[4] = value
    try:
        w = torch._make_per_channel_quantized_tensor(W_OUT.int_repr(), scales, torch.zeros(7, dtype=torch.long), 0)
    except RuntimeError:  # torch refuses to build some of these itself
        pytest.skip(f"torch cannot make a weight with scale {value}")
    refused(uquant.convert, seed_with(**{PACKED: (w, B_OUT)}), relu="hidden", fragments=["out: ", "channel 4"])


@pytest.mark.parametrize("value, fragment", [
    (-1, "zero point -1 is outside [0, 255] for quint8"), (256, "zero point 256 is outside [0, 255]"),
    (3.5, "zero point must be an integer, got 3.5"), (torch.tensor([1, 2]), "zero point must be one real number"),
    ("abc", "cannot read the zero point"),
])
def test_bad_zero_points(value, fragment):
    sd = seed_with(**{"out.zero_point": value if isinstance(value, (torch.Tensor, str)) else torch.tensor(value)})
    refused(uquant.convert, sd, relu="hidden", fragments=["out: ", fragment])


def test_scale_with_several_numbers():
    refused(uquant.convert, seed_with(**{"out.scale": torch.tensor([0.1, 0.2])}), relu="hidden",
            fragments=["out: scale must be one real number", "shape (2,)"])


# --- arithmetic that would leave int32, multipliers that cannot be represented: refused before codegen -----------
def test_accumulator_that_could_exceed_int32():
    k = 16513  # 16513 * 255 * 255 >= 2**30: the device's running sum could leave its small ints
    w = torch.quantize_per_tensor(torch.zeros(2, k), 0.05, 0, torch.qint8)
    sd = {"fc_input_scale_0": torch.tensor(0.01), "fc_input_zero_point_0": torch.tensor(0),
          "fc.scale": torch.tensor(0.1), "fc.zero_point": torch.tensor(0), "fc._packed_params.dtype": torch.qint8,
          "fc._packed_params._packed_params": (w, torch.zeros(2))}
    refused(uquant.convert, sd, relu="none", fragments=["fc: 16513 inputs per output", "32-bit accumulator",
                                                         "at most 16512"])


@pytest.mark.parametrize("engine", ["x86", "fbgemm"])
def test_bias_beyond_int32_is_refused(engine):
    """Measured: with a bias of 1e20, torch's float -> int32 conversion overflows and gives code 0 where a plain
    emulation says 255; uquant refuses the layer instead of either."""
    bias = B_OUT.clone()
    bias[2] = 1e20
    with torch_engine(engine):
        refused(uquant.convert, seed_with(**{PACKED: (W_OUT, bias)}), relu="hidden", engine=engine,
                fragments=["out: output channel 2", "bias 1e+20", "beyond int32"])


def test_qnnpack_bias_wrapping_int32_is_refused():
    bias = torch.full((7,), -3e38)  # saturates to -2**31 in torch's int32 bias; any negative sum then wraps
    with torch_engine("qnnpack"):
        refused(uquant.convert, seed_with(**{PACKED: (W_OUT, bias)}), relu="hidden", engine="qnnpack",
                fragments=["out: channel ", "overflow int32 on qnnpack"])


def test_multiplier_zero_in_float32_is_refused():
    sd = seed_with(input_layer_input_scale_0=torch.tensor(1e-20, dtype=torch.float64),
                   **{"input_layer.scale": torch.tensor(1e30, dtype=torch.float64)})
    w, b = sd["input_layer._packed_params._packed_params"]
    sd["input_layer._packed_params._packed_params"] = (torch._make_per_tensor_quantized_tensor(
        w.int_repr(), 1e-20, 0), b)
    refused(uquant.convert, sd, relu="hidden", fragments=["input_layer: output channel 0",
                                                          "requantization multiplier", "zero, subnormal or infinite"])


def test_add_and_mul_whose_scales_overflow_are_refused():
    big, small = QParams(1e5, 0), QParams(1e-3, 0)
    refused(lower_add, Add("skip_add", small), [big, big], (4,), "x86",
            fragments=["skip_add: ", "scale ratios", "overflows"])
    refused(lower_mul, Mul("gate_mul", QParams(1e-6, 0)), [QParams(10.0, 0), QParams(10.0, 0)], (4,),
            fragments=["gate_mul: ", "multiplier"])


# --- pickles ----------------------------------------------------------------------------------------------------
class SideEffect:
    """Unpickling this writes a file: a stand-in for whatever code a malicious model file would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",)


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_file_is_never_unpickled_without_the_opt_in(tmp_path, capsys, legacy):
    marker = tmp_path / "unpickled.txt"
    path = save({"model": SideEffect(marker)}, tmp_path / "evil.pt", _use_new_zipfile_serialization=not legacy)
    clean_error(run_cli(capsys, "convert", path, "-o", tmp_path / "a.py"), "pickled Python object",
                "--allow-pickle", "state_dict()")
    clean_error(run_cli(capsys, "info", path), "--allow-pickle")
    refused(uquant.convert, path, fragments=["allow_pickle=True"])
    assert not marker.exists()
    # dressed up as TorchScript (a code/ record), it goes to torch.jit.load, which only builds TorchScript types
    if not legacy:
        with zipfile.ZipFile(path) as z:
            records = [(i.filename, z.read(i.filename)) for i in z.infolist()]
        top = records[0][0].split("/")[0]
        with zipfile.ZipFile(tmp_path / "evil_ts.pt", "w") as z:
            for n, c in records + [(f"{top}/code/__torch__.py", b""), (f"{top}/constants.pkl", records[0][1])]:
                z.writestr(n, c)
        refused(uquant.convert, tmp_path / "evil_ts.pt", fragments=["not a readable TorchScript file"])
        assert not marker.exists()
    # the opt-in does unpickle it: the payload above is live, the refusals are what kept it from running
    refused(uquant.convert, path, allow_pickle=True)
    assert marker.read_text() == "unpickled"


# --- the device runtime -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn_module():
    return load_source(cnn_source(), "cnn")


SHAPE_NOTE = "36 ints in [0, 255]: one sample of shape 1x6x6, flattened"


@pytest.mark.parametrize("x, fragment", [
    ([0] * 35, "expected 36 input values, got 35"),
    (bytes(37), "expected 36 input values, got 37"),
    ([[0] * 36], "expected 36 input values, got 1"),  # a batch of one: run() takes one flat sample
    ([0] * 35 + [256], "inputs must be ints in [0, 255], got 256"),
    ([0] * 35 + [-1], "got -1"),
    ([0.5] * 36, "got 0.5"),
    ([np.int64(1)] * 36, "int64"),  # numpy ints: convert with int()
    (np.zeros(36, np.int64), "got ndarray"),
    ({i: 0 for i in range(36)}, "got dict"),
    ("x" * 36, "got str"),
    (None, "got NoneType"),
    (7, "got int"),
    (iter(range(36)), "got range_iterator"),
])
def test_run_checks_its_input(cnn_module, x, fragment):
    for f in (cnn_module.run, cnn_module.predict):
        with pytest.raises(ValueError) as info:
            f(x)
        msg = str(info.value)
        assert msg.startswith("cnn: ") and fragment in msg and SHAPE_NOTE in msg, msg


def test_run_accepts_every_sequence_of_codes(cnn_module):
    codes = list(range(0, 252, 7))
    want = bytes(cnn_module.run(codes))
    for x in (bytes(codes), bytearray(codes), tuple(codes), array("B", codes), memoryview(bytes(codes))):
        assert bytes(cnn_module.run(x)) == want


def test_run_checks_a_qint8_input_range():
    """A qint8 input takes signed codes; bytes (0..255) are no way to give them."""
    inp, bufs, out = (4, -128, 127, (4,)), (4,), (0, 4, -128)
    nodes = (("table", -1, 0, 4, bytes(range(256)), 4, None, 0, 0),)
    model = rt.Model("signed", rt.spec_crc("signed", inp, bufs, nodes, out), inp, bufs, nodes, out)
    assert list(model.run([-128, -1, 0, 127])) == [-128, -1, 0, 127]
    for x, fragment in (([-129, 0, 0, 0], "got -129"), ([128, 0, 0, 0], "got 128"), (bytes([200, 0, 0, 0]), "got 200")):
        with pytest.raises(ValueError, match="inputs must be ints in \\[-128, 127\\]") as info:
            model.run(x)
        assert fragment in str(info.value) and "shape 4" in str(info.value)


def test_run_checks_its_input_under_micropython():
    if wasm.missing_reason() is not None:
        if os.environ.get("UQUANT_ALLOW_SKIP") == "1":
            pytest.skip(f"MicroPython wasm host unavailable: {wasm.missing_reason()}")
        pytest.fail(f"MicroPython wasm host unavailable: {wasm.missing_reason()}", pytrace=False)
    src = cnn_source()
    code = ("import cnn\nfrom array import array\n"
            "for x in ([0] * 35, [0] * 35 + [256], [0.5] * 36, {1: 2}, None, 'ab', array('B', bytes(36))):\n"
            "    try:\n        cnn.run(x)\n        print('OK')\n"
            "    except ValueError as e:\n        print('ERR', e)\n")
    out = wasm.run_micropython(code, {"/lib/uquant_rt.py": RUNTIME_FILE.read_text(), "/lib/cnn.py": src}).splitlines()
    assert out[-1] == "OK", out  # an array of 36 codes is accepted
    errors = out[:-1]
    assert len(errors) == 6 and all(line.startswith("ERR cnn: ") and SHAPE_NOTE in line for line in errors), out
    for line, fragment in zip(errors, ("got 35", "got 256", "got 0.5", "got dict", "got NoneType", "got str")):
        assert fragment in line, (line, fragment)


PUBLIC = ("model", "run", "predict", "INPUT_SCALE_BITS", "INPUT_ZERO_POINT", "OUTPUT_SCALE_BITS", "OUTPUT_ZERO_POINT",
          "PLATFORM")


def mutations(src: str, positions, rng):
    """At each position: cut the file there, delete the character, or replace it."""
    for i in positions:
        c = src[i]
        other = chr(ord(c) + 1) if c.isalnum() else str(rng.choice(list("0123456789abcdefx_ ,()'#\n")))
        yield i, "cut", src[:i]
        yield i, "delete", src[:i] + src[i + 1:]
        yield i, "replace", src[:i] + other + src[i + 1:]


def test_changed_or_cut_module_never_imports_as_another_model(monkeypatch):
    """Every position of the seed module (and 600 of a CNN's), each cut, deleted and replaced: the module either
    fails to import (CorruptModel from the checksum, or a Python error), or holds exactly the original model and
    constants; a cut that ends the file before its last line leaves names undefined (AttributeError when used),
    never defined differently."""
    calls = []

    class Recording(rt.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            calls.append((args, kwargs))

    monkeypatch.setattr(rt, "Model", Recording)
    rng = np.random.default_rng(0)
    sources = [uquant.convert(seed_state_dict(), relu="hidden", name="seed").source, cnn_source()]
    outcomes = {}
    for k, src in enumerate(sources):
        calls.clear()
        ref = load_source(src)
        ref_call, ref_values = calls[-1], {n: getattr(ref, n) for n in PUBLIC[3:]}
        positions = range(len(src)) if k == 0 else rng.choice(len(src), 600, replace=False)
        for i, how, bad in mutations(src, positions, rng):
            calls.clear()
            try:
                m = load_source(bad)
            except rt.CorruptModel:
                outcomes["CorruptModel"] = outcomes.get("CorruptModel", 0) + 1
                continue
            except Exception as e:  # SyntaxError, NameError, ...: the import fails
                outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
                continue
            where = f"{how} at {i}: {src[max(0, i - 30):i + 10]!r}"
            if not calls:  # no model was built: nothing the model defines may be there
                assert not isinstance(getattr(m, "model", None), rt.Model), where
                assert not any(hasattr(m, n) for n in PUBLIC[1:]), where
                outcomes["no model"] = outcomes.get("no model", 0) + 1
                continue
            assert calls[-1] == ref_call, where
            assert m.model.scales == ref_call[1]["scales"], where
            for n in PUBLIC[1:]:
                if hasattr(m, n):
                    assert getattr(m, n) == (getattr(m.model, n) if n in ("run", "predict") else ref_values[n]), where
            outcomes["same model"] = outcomes.get("same model", 0) + 1
    assert outcomes["CorruptModel"] > 500 and outcomes["SyntaxError"] > 1000, outcomes


def test_scale_constants_are_covered_by_the_checksum():
    src = uquant.convert(seed_state_dict(), relu="hidden", name="seed").source
    bits = load_source(src).INPUT_SCALE_BITS
    bad = src.replace(f"scales=({bits:#010x},", f"scales=({bits + 1:#010x},", 1)
    assert bad != src
    with pytest.raises(rt.CorruptModel, match="checksum mismatch"):
        load_source(bad)


def test_cut_module_is_a_clean_cli_error(tmp_path, capsys):
    src = uquant.convert(seed_state_dict(), relu="hidden", name="seed").source
    cut = src[:src.index("\n# run(codes)") + 1]  # everything but the last statement
    (tmp_path / "cut_q.py").write_text(cut)
    clean_error(run_cli(capsys, "run", tmp_path / "cut_q.py", "--input", "0,1"), "cut_q.py",
                "not a complete generated module", "truncated?")
    (tmp_path / "half_q.py").write_text(src[:len(src) // 2])
    clean_error(run_cli(capsys, "run", tmp_path / "half_q.py", "--input", "0,1"), "not a valid generated module")


# --- a model too big for the board -----------------------------------------------------------------------------
def test_model_too_big_for_the_board_fails_at_info_time(tmp_path, capsys):
    torch.manual_seed(0)

    def layer(k, n):
        return torch.quantize_per_tensor(torch.randn(n, k) * 0.05, 0.002, 0, torch.qint8), torch.zeros(n)

    sd = {"fc1_input_scale_0": torch.tensor(0.02), "fc1_input_zero_point_0": torch.tensor(0),
          "fc1.scale": torch.tensor(0.5), "fc1.zero_point": torch.tensor(0), "fc1._packed_params.dtype": torch.qint8,
          "fc1._packed_params._packed_params": layer(720, 256),
          "fc2.scale": torch.tensor(0.5), "fc2.zero_point": torch.tensor(0), "fc2._packed_params.dtype": torch.qint8,
          "fc2._packed_params._packed_params": layer(256, 4)}
    rc, out, err = run_cli(capsys, "info", save(sd, tmp_path / "big.pt"), "--relu", "none", "--board", "pico")
    assert rc == 1 and "Traceback" not in out + err, (rc, err)
    line = next(line for line in out.splitlines() if line.strip().startswith("RAM"))
    assert "of 190000 B heap: DOES NOT FIT" in line and " B over" in line, line
    need, over = int(line.split("~")[1].split()[0]), int(line.split("FIT, ")[1].split()[0])
    assert need > 184320 and over == need - 190000  # the weights alone are 184,320 bytes


def test_a_layer_qnnpack_cannot_create_is_refused():
    """torch pads qnnpack's weight scales with channels of scale 1.0 and refuses to run a layer whose padding
    requantization scale s_x / s_y is subnormal, whatever the real weight scale: uquant refuses it too (found by
    the state_dict fuzzer), and converts the same layer where s_x / s_y is normal."""
    def state_dict(sx, sw, sy):
        w = torch.quantize_per_tensor(torch.zeros(1, 1), sw, 0, torch.qint8)
        return {"fc0_input_scale_0": torch.tensor(sx, dtype=torch.float64),
                "fc0_input_zero_point_0": torch.tensor(0.0), "fc0.scale": torch.tensor(sy, dtype=torch.float64),
                "fc0.zero_point": torch.tensor(0.0), "fc0._packed_params.dtype": torch.qint8,
                "fc0._packed_params._packed_params": (w, None)}

    with torch_engine("qnnpack"):
        refused(uquant.convert, state_dict(1.5e-38, 2.0, 2.0), engine="qnnpack",
                fragments=("fc0: torch's qnnpack cannot run this layer", "7.5e-39"))
        assert uquant.convert(state_dict(3e-38, 1.0, 2.0), engine="qnnpack").run_codes([[5]]).tolist() == [[0]]
