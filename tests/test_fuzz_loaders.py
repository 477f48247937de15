"""Fuzzing the loaders: damaged and crafted model files, and state_dicts with random values.

The property, for every mutated input: `uquant.convert` either refuses it with ConversionError (the documented
clean error, which the CLI prints as one line and exit status 2) or converts it -- and then the result is still
right: a zip archive (torch.save, torch.jit.save) whose bytes were damaged converts only to the very module the
undamaged file gives (every record's CRC-32 is checked), and a state_dict with random values converts only to a
module that gives torch's own codes. Any other exception is a bug.

Bounded for CI: 500-1000 examples per fuzzer (about 12 s), derandomized (the same examples every run). For a longer,
randomized run: UQUANT_FUZZ_SCALE=20 .venv/bin/python -m pytest -q tests/test_fuzz_loaders.py
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch.ao.quantization import DeQuantStub, QuantStub, get_default_qconfig, get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import uquant
from conftest import FUZZ_SCALE, torch_engine
from uquant.examples import seed_state_dict
from uquant.ir import ConversionError
from uquant.oracle import state_dict_chain

pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]


def fuzz_settings(examples: int):
    """`examples` at the default scale, derandomized; UQUANT_FUZZ_SCALE > 1 runs more, with fresh randomness."""
    return settings(max_examples=max(1, int(examples * FUZZ_SCALE)), deadline=None, database=None,
                    derandomize=FUZZ_SCALE <= 1, suppress_health_check=list(HealthCheck), print_blob=True)


# --- the files the fuzzers start from ------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.fc1, self.relu, self.fc2 = nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x):
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.relu, self.pool = nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)
        self.flat, self.fc = nn.Flatten(), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.conv(x)))))


CNN_SHAPE = (1, 6, 6)


def eager_mlp() -> nn.Module:
    torch.manual_seed(0)
    m = MLP().eval()
    m.qconfig = get_default_qconfig("x86")
    torch.ao.quantization.fuse_modules(m, [["fc1", "relu"]], inplace=True)
    p = torch.ao.quantization.prepare(m)
    p(torch.randn(64, 4))
    return torch.ao.quantization.convert(p)


def fx_cnn() -> nn.Module:
    torch.manual_seed(1)
    x = torch.randn(32, *CNN_SHAPE)
    p = prepare_fx(CNN().eval(), get_default_qconfig_mapping("x86"), example_inputs=(x[:1],))
    p(x)
    return convert_fx(p)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, tuple[bytes, dict, str | None]]:
    """name -> (file bytes, convert() keyword arguments, module text after the header, or None if it must not
    convert at all)."""
    d = tmp_path_factory.mktemp("fuzz_src")
    with torch_engine("x86"):
        mlp, cnn = eager_mlp(), fx_cnn()
        torch.save(seed_state_dict(), d / "sd.pt")
        torch.save(seed_state_dict(), d / "sd_legacy.pt", _use_new_zipfile_serialization=False)
        torch.jit.save(torch.jit.trace(mlp, torch.randn(2, 4)), d / "mlp_trace.pt")
        torch.jit.save(torch.jit.script(mlp), d / "mlp_script.pt")
        torch.jit.save(torch.jit.trace(cnn, torch.randn(1, *CNN_SHAPE)), d / "cnn_trace.pt")
        torch.save(mlp, d / "whole.pt")  # a pickled module: refused without allow_pickle, whatever its bytes
    kwargs = {"sd.pt": {"relu": "hidden"}, "sd_legacy.pt": {"relu": "hidden"}, "cnn_trace.pt": {"input_shape": CNN_SHAPE}}
    out = {}
    for p in sorted(d.iterdir()):
        kw = kwargs.get(p.name, {})
        body = None if p.name == "whole.pt" else body_of(uquant.convert(p, engine="x86", name="m", **kw))
        out[p.name] = (p.read_bytes(), kw, body)
    return out


def body_of(converted) -> str:
    return converted.source.split("from uquant_rt import Model", 1)[1]  # the header names the source file


def convert_or_refuse(path: Path, kw: dict):
    """The converted model, or None when refused with ConversionError; anything else propagates (a failure)."""
    try:
        return uquant.convert(path, engine="x86", name="m", **kw)
    except ConversionError as e:
        assert str(e), "an empty message"
        return None


def mutate(data: bytes, draw, positions: int = 8) -> bytes:
    """Flip bits, overwrite, insert or delete a few bytes, or cut the data short."""
    b = bytearray(data)
    kind = draw(st.sampled_from(["flip", "byte", "insert", "delete", "truncate"]))
    for _ in range(draw(st.integers(1, positions))):
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        if kind == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            b[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            b[i:i] = bytes([draw(st.integers(0, 255))])
        elif kind == "delete":
            del b[i]
        else:
            del b[i:]
            break
    return bytes(b)


# --- damaged files -------------------------------------------------------------------------------------------
@fuzz_settings(1000)
@given(data=st.data())
def test_damaged_files_are_refused_or_unchanged(originals, tmp_path_factory, data):
    name = data.draw(st.sampled_from(sorted(originals)))
    raw, kw, body = originals[name]
    bad = mutate(raw, data.draw)
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(bad)
    converted = convert_or_refuse(path, kw)
    if converted is None:
        return
    assert body is not None, f"{name}: a pickled module converted without allow_pickle"
    if raw.startswith(b"PK\x03\x04"):  # an archive: only changes outside every record's data may go unnoticed
        assert body_of(converted) == body, f"{name}: damaged archive converted to a different model"
    # a legacy (non-zip) torch.save file carries no checksum: a changed number in it is a different, valid model


# --- crafted archives: records changed and the zip rewritten with correct CRCs --------------------------------
@fuzz_settings(500)
@given(data=st.data())
def test_crafted_archives_raise_only_conversion_errors(originals, tmp_path_factory, data):
    name = data.draw(st.sampled_from([n for n, (raw, _, _) in sorted(originals.items()) if raw.startswith(b"PK")]))
    raw, kw, _ = originals[name]
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        records = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    j = data.draw(st.integers(0, len(records) - 1))
    records[j] = (records[j][0], mutate(records[j][1], data.draw, 4))
    path = tmp_path_factory.mktemp("crafted") / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for n, content in records:
            z.writestr(n, content)
    convert_or_refuse(path, kw)  # a valid archive of another model may convert; nothing else may escape


# --- state_dicts with random values: refused, or exact ----------------------------------------------------------
def mostly(sane, wild, odds: int = 7):
    """`sane` values most of the time, `wild` ones now and then: a state_dict has many numbers, and a model
    with one bad number is the interesting case (all bad is refused at the first one)."""
    return st.integers(0, odds).flatmap(lambda i: wild if i == odds // 2 else sane)  # one_of would be 50/50


SCALES = mostly(st.floats(1e-4, 10), st.one_of(st.floats(1e-45, 3e38), st.floats(allow_nan=True, allow_infinity=True),
                                               st.sampled_from([0.0, -0.0, -1.0, 1e-39, 1.5e-38, 3.4e38, 2e36])))
ZERO_POINTS = mostly(st.integers(0, 255), st.one_of(st.integers(-1000, 1000), st.sampled_from([0.5, 3.7, -1.5])))
BIASES = mostly(st.floats(-10, 10, width=32), st.one_of(st.floats(-1e30, 1e30), st.floats(allow_nan=True)))


def number(value, dtype=torch.float64):
    return torch.tensor(value, dtype=dtype)


@st.composite
def chain_state_dicts(draw):
    """A state_dict of a chain of quantized Linear layers whose every number is drawn: mostly sane, often not."""
    widths = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
    sd = {"fc0_input_scale_0": number(draw(SCALES)), "fc0_input_zero_point_0": number(draw(ZERO_POINTS))}
    for i, (k, n) in enumerate(zip(widths, widths[1:])):
        codes = torch.tensor(draw(st.lists(st.integers(-128, 127), min_size=k * n, max_size=k * n)),
                             dtype=torch.int8).reshape(n, k)
        wzp = draw(st.sampled_from([0, 0, 0, 5, -128, 127]))
        try:
            if draw(st.booleans()):
                w = torch._make_per_channel_quantized_tensor(codes, number([draw(SCALES) for _ in range(n)]),
                                                             torch.full((n,), wzp, dtype=torch.long), 0)
            else:
                w = torch._make_per_tensor_quantized_tensor(codes, draw(SCALES), wzp)
        except RuntimeError:  # torch refuses to make it (e.g. a NaN scale): use a plain one
            w = torch._make_per_tensor_quantized_tensor(codes, 0.01, 0)
        bias = draw(mostly(st.one_of(st.none(), st.lists(BIASES, min_size=n, max_size=n).map(
            lambda b: number(b, torch.float32))), st.just(number([0.0] * (n + 1), torch.float32))))
        sd[f"fc{i}.scale"] = number(draw(SCALES))
        sd[f"fc{i}.zero_point"] = number(draw(ZERO_POINTS))
        sd[f"fc{i}._packed_params.dtype"] = torch.qint8
        sd[f"fc{i}._packed_params._packed_params"] = (w, bias)
    extra = draw(mostly(st.none(), st.sampled_from(["drop", "add"]), 3))
    if extra == "drop":
        del sd[draw(st.sampled_from(sorted(k for k in sd if not k.endswith("dtype"))))]
    elif extra == "add":
        sd["head.temperature"] = number(2.0)
    return sd


def torch_layers_codes(sd, relu, codes: np.ndarray) -> np.ndarray:
    """torch's output codes for input codes, through the state_dict's own quantized modules."""
    chain = state_dict_chain(sd, relu)
    q = chain[0]
    rows = []
    with torch.no_grad():
        for row in codes:
            x = torch._make_per_tensor_quantized_tensor(torch.tensor([row], dtype=torch.uint8), float(q.scale),
                                                        int(q.zero_point))
            rows.append(chain[1:](x).int_repr()[0].numpy().astype(np.int64))
    return np.array(rows)


@fuzz_settings(600)
@given(sd=chain_state_dicts(), engine=st.sampled_from(["x86", "fbgemm", "qnnpack"]),
       relu=st.sampled_from(["none", "hidden", "all"]))
def test_random_state_dicts_are_refused_or_exact(sd, engine, relu):
    with torch_engine(engine):
        try:
            converted = uquant.convert(sd, engine=engine, relu=relu)
        except ConversionError:
            event("refused")
            return
        event("converted, compared with torch")
        hi = 255
        codes = np.random.default_rng(0).integers(0, hi + 1, (48, converted.plan.n_in))
        codes[:2] = [[0], [hi]]
        assert np.array_equal(converted.run_codes(codes), torch_layers_codes(sd, relu, codes))
