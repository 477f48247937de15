"""Integer units at the model's edges (issue 8): raw sensor integers in, fixed-point integers and names out.

- raw input: the device's integer step gives torch's code for float32(float32(raw) * float32(unit)) for every raw
  value in a range (and at both ends of the accepted range), for quint8 and qint8 inputs;
- fixed-point output: dequantize() against numpy's float32 dequantization, rounded half away from zero exactly,
  for every possible output byte;
- labels, the CLI, refusals, no floats, and 0 bytes per call in the 32-bit MicroPython.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import uquant
from uquant import cli, units
from uquant.ir import ConversionError, QParams
from uquant.examples import seed_state_dict
from uquant.hosts import wasm
from uquant.runtime import DEVICE_DIR, units_module

from randmodels import random_chain
from test_no_floats import float_violations, import_violations

INPUT_CASES = [  # (scale, zero point, dtype, unit)
    (0.0039, 0, "quint8", "0.000244"),
    (0.0123, 128, "quint8", "0.000244"),
    (0.00098, 37, "quint8", "0.00098"),   # unit == scale: one code per raw step
    (0.05, 0, "qint8", "0.061"),         # unit > scale: codes skipped
    (0.0002, -5, "qint8", "1/4096"),
    (3.7e-6, 255, "quint8", "raw*0.0000001"),
]


class _FakeModel:
    def __init__(self, n_in, qmin, n_out=1):
        self.name, self.n_in, self.qmin, self.n_out = "fake", n_in, qmin, n_out


def _device_codes(q: QParams, spec, raws: np.ndarray, chunk=4096) -> np.ndarray:
    """The device's own quantize_raw (device/uquant_units.py) over every raw value."""
    mod = units_module()
    inp = spec
    u = mod.Units.__new__(mod.Units)
    u.model = _FakeModel(chunk, q.qmin)
    u.r_lo, u.r_hi, u.T = inp
    u.has_inp = True
    u.codes = bytearray(chunk) if q.qmin == 0 else __import__("array").array("b", bytes(chunk))
    out = []
    raws = [int(v) for v in raws]
    raws += [raws[-1]] * (-len(raws) % chunk)
    for i in range(0, len(raws), chunk):
        out.append(np.array(list(u.quantize_raw(raws[i:i + chunk])), np.int64))
    return np.concatenate(out)


@pytest.mark.parametrize("scale,zp,dtype,unit", INPUT_CASES)
def test_raw_input_exact_for_every_raw_value(scale, zp, dtype, unit):
    q = QParams(float(np.float32(scale)), zp, dtype)
    u = units.parse_unit(unit)
    thresholds = units.input_thresholds(q, u)
    spec = (-units.RAW_LIMIT, units.RAW_LIMIT, thresholds)
    raws = np.arange(-70000, 70001, dtype=np.int64)  # every raw value in [-70000, 70000]
    want = units.torch_codes_raw(raws, u, q)
    assert np.array_equal(units.raw_to_codes(thresholds, raws, q.qmin), want)
    got = _device_codes(q, spec, raws)[:len(raws)]
    assert np.array_equal(got, want), f"{int((got != want).sum())} raw values differ"
    # around every threshold, and across the whole accepted range (ends included)
    rng = np.random.default_rng(0)
    near = np.clip(np.concatenate([np.asarray(thresholds) + d for d in (-2, -1, 0, 1)]),
                   -units.RAW_LIMIT, units.RAW_LIMIT)
    wide = np.concatenate([near, rng.integers(-units.RAW_LIMIT, units.RAW_LIMIT + 1, 20000),
                           [-units.RAW_LIMIT, units.RAW_LIMIT, 0, 1, -1]])
    assert np.array_equal(_device_codes(q, spec, wide)[:len(wide)], units.torch_codes_raw(wide, u, q))


def test_the_float32_product_is_what_torch_computes_for_a_python_float_unit():
    # `torch.tensor(raws).float() * 0.000244` rounds the unit to float32 and multiplies in float32
    raws = torch.arange(-100000, 100000)
    a = raws.float() * 0.000244
    b = torch.from_numpy(raws.numpy().astype(np.float32) * np.float32(0.000244))
    assert torch.equal(a, b)


OUTPUT_CASES = [  # (scale, zero point, dtype, unit)
    (0.0297, 0, "quint8", "0.001"),
    (1.5963, 243, "quint8", "0.001"),
    (0.0625, 128, "quint8", "0.001"),   # ties: 0.0625 = 62.5 thousandths -> 63, -62.5 -> -63
    (0.1, -3, "qint8", "0.01"),
    (0.00390625, 0, "qint8", "0.0001"),
    (123.4, 10, "quint8", "1"),
    (0.0078125, 128, "quint8", "0.5"),   # ties at every odd code
]


def _numpy_fixed_point(q: QParams, unit: str) -> list[int]:
    codes = np.arange(q.qmin, q.qmax + 1)
    v = np.float32(codes - q.zero_point) * np.float32(q.scale)  # torch's dequantize, in numpy
    u = Fraction(unit)
    out = []
    for x in v.astype(np.float64):
        r = Fraction(float(x)) / u
        n = int(abs(r) + Fraction(1, 2))  # floor(|r| + 1/2): half away from zero
        out.append(n if r >= 0 else -n)
    return out


@pytest.mark.parametrize("scale,zp,dtype,unit", OUTPUT_CASES)
def test_fixed_point_output_for_every_output_byte(scale, zp, dtype, unit):
    q = QParams(float(np.float32(scale)), zp, dtype)
    v = np.float32(np.arange(q.qmin, q.qmax + 1) - zp) * np.float32(q.scale)
    assert np.array_equal(units.torch_dequantized(q), v)  # numpy's float32 product is torch's dequantize
    spec = units.output_spec(q, units.parse_unit(unit))
    mod = units_module()
    u = mod.Units.__new__(mod.Units)
    n = q.qmax - q.qmin + 1
    u.model = _FakeModel(1, 0, n)
    u.out = spec
    u.vals = __import__("array").array("i", [0] * n)
    got = list(u.dequantize(list(range(q.qmin, q.qmax + 1))))
    assert got == _numpy_fixed_point(q, unit)
    if scale == 0.0625:  # the ties, by hand
        assert got[129] == 63 and got[127] == -63 and got[130] == 125


def test_fixed_point_table_fallback_is_exact():
    q = QParams(0.0297, 0, "quint8")
    zp, lo, hi, A, S, _ = units.output_spec(q, Fraction("0.001"))
    want = units.fixed_point_targets(q, Fraction("0.001"))
    mod = units_module()
    u = mod.Units.__new__(mod.Units)
    u.model = _FakeModel(1, 0, 256)
    u.out = (zp, lo, hi, 0, 1, tuple(want))
    u.vals = __import__("array").array("i", [0] * 256)
    assert list(u.dequantize(list(range(256)))) == want


@pytest.fixture(scope="module")
def seed_units():
    conv = uquant.convert(seed_state_dict(), engine="x86", relu="hidden", input_unit="raw*0.000244",
                          output_unit="0.001", labels="a,b,c,d,e,f,g")
    return conv


def test_module_run_raw_dequantize_label(seed_units):
    mod = seed_units.device_module
    q = seed_units.plan.input
    u = Fraction("0.000244")
    raw = [0, 3074]
    codes = units.torch_codes_raw(raw, u, q).tolist()
    assert list(mod.run_raw(raw)) == list(mod.run(codes))
    out = list(mod.run(codes))
    assert list(mod.dequantize(out)) == [units.fixed_point_targets(seed_units.plan.output, Fraction("0.001"))[c]
                                         for c in out]
    assert mod.label(codes) == "abcdefg"[mod.predict(codes)]
    assert mod.label_raw(raw) == mod.label(codes)
    with pytest.raises(ValueError, match="proven range"):
        mod.run_raw([0, units.RAW_LIMIT + 1])
    assert float_violations(seed_units.source, "seed_units.py") == []
    assert import_violations(seed_units.source, {"uquant_rt", "uquant_units"}, "seed_units.py") == []


def test_refusals():
    with pytest.raises(ConversionError, match="names for 7 outputs"):
        uquant.convert(seed_state_dict(), engine="x86", relu="hidden", labels="a,b")
    with pytest.raises(ConversionError, match="positive"):
        uquant.convert(seed_state_dict(), engine="x86", relu="hidden", input_unit="-0.1")
    with pytest.raises(ConversionError, match="too fine"):
        units.output_spec(QParams(100.0, 0, "quint8"), Fraction("1e-9"))


def test_cli_convert_with_units(tmp_path, capsys):
    sd = tmp_path / "seed.pt"
    torch.save(seed_state_dict(), sd)
    out = tmp_path / "seed_q.py"
    rc = cli.main(["convert", str(sd), "-o", str(out), "--relu", "hidden", "--input-units", "raw*0.000244",
                   "--output-unit", "0.001", "--labels", "a,b,c,d,e,f,g"])
    assert rc in (0, None)
    from uquant.runtime import load_file
    mod = load_file(out)
    with pytest.raises(Exception, match="checksum"):  # a changed units line is caught on import
        uquant.runtime.load_source(out.read_text().replace("'a', 'b'", "'b', 'a'"), "bad")
    assert mod.label_raw([0, 3074]) in "abcdefg"
    rc = cli.main(["convert", str(sd), "-o", str(tmp_path / "s2.py"), "--relu", "hidden",
                   "--input-unit", "0.000244", "--raw-range", "0,4095"])
    assert rc in (0, None)
    assert load_file(tmp_path / "s2.py").units.r_hi == 4095


@pytest.mark.skipif(wasm.missing_reason() is not None, reason=str(wasm.missing_reason()))
def test_micropython_same_values_and_no_allocation(seed_units):
    src = seed_units.source
    files = {"/lib/uquant_rt.py": (DEVICE_DIR / "uquant_rt.py").read_text(),
             "/lib/uquant_units.py": (DEVICE_DIR / "uquant_units.py").read_text(),
             "/lib/seed_q.py": src}
    raws = [[0, 3074], [1000, -5], [4095, 4095]]
    code = ["import seed_q\nR = %r\n" % raws
            + "for r in R:\n    print(list(seed_q.dequantize(seed_q.run_raw(r))), seed_q.label_raw(r))\n",
            wasm.heap_delta_snippet("for r in R:\n    seed_q.dequantize(seed_q.run_raw(r))\n"
                                    "    seed_q.label_raw(r)")]
    out = wasm.run_micropython(code, files)
    mod = seed_units.device_module
    want = [f"{list(mod.dequantize(mod.run_raw(r)))} {mod.label_raw(r)}" for r in raws]
    assert out.splitlines()[:3] == want
    assert wasm.parse_heap_delta(out) == 0


def test_deploy_plans_the_units_runtime(tmp_path, seed_units):
    from uquant.deploy import plan_files
    path = seed_units.save(tmp_path / "seed_q.py")
    impl = {"name": "circuitpython", "mpy_version": None, "mpy_arch": None}
    names = [f.name for f in plan_files(path, ("uquant_rt.py",), impl)]
    assert names == ["uquant_rt.py", "uquant_units.py", "seed_q.py"]
