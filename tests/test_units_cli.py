"""Integer units from the command line: `uquant run --input-raw`, the printed label and fixed-point values, the
refusals, and `uquant freeze` / deploy shipping device/uquant_units.py with a units model (and only then).

Oracles: the module's own run_raw called in-process, and torch quantizing float32(raw) * float32(unit) and running
torch's quantized seed model (SeedTorchModel).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from uquant import boards, cli, units
from uquant.deploy import device_files, plan_files, write_manifest
from uquant.examples import SeedTorchModel, seed_state_dict
from uquant.hosts import wasm
from uquant.runtime import DEVICE_DIR, load_file

from test_cli import assert_clean_error, main_inproc, parse_report

UNIT = "0.000244"
LABELS = "a,b,c,d,e,f,g"
# raw pairs, the ends of the range among them
RAWS = [[0, 0], [1200, 1843], [1000, -5], [-35, 2000], [2047, 1]]


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    d = tmp_path_factory.mktemp("units_cli")
    torch.save(seed_state_dict(), d / "seed.pt")
    assert cli.main(["convert", str(d / "seed.pt"), "-o", str(d / "seed_u.py"), "--relu", "hidden",
                     "--input-unit", UNIT, "--output-unit", "0.001", "--labels", LABELS, "--raw-range",
                     "-4096,4095"]) == 0
    assert cli.main(["convert", str(d / "seed.pt"), "-o", str(d / "seed_l.py"), "--relu", "hidden",
                     "--labels", LABELS]) == 0  # labels only: no run_raw
    assert cli.main(["convert", str(d / "seed.pt"), "-o", str(d / "seed_p.py"), "--relu", "hidden"]) == 0
    return d


def torch_raw_codes(raws) -> tuple[list[int], list[int]]:
    """torch: float32(raw) * float32(unit), quantized by the model's QuantStub, through the quantized model."""
    old = torch.backends.quantized.engine
    try:
        codes = SeedTorchModel("x86").layer_codes(torch.tensor([raws]).float() * float(UNIT))
        return codes[0][0].tolist(), codes[-1][0].tolist()
    finally:
        torch.backends.quantized.engine = old


@pytest.mark.parametrize("raws", RAWS)
def test_run_input_raw_matches_run_raw_and_torch(modules, capsys, raws):
    path = modules / "seed_u.py"
    rc, out, err = main_inproc(capsys, "run", str(path), "--input-raw", ",".join(map(str, raws)))
    assert rc == 0, err
    r = parse_report(out)
    mod = load_file(path)
    y = list(mod.run_raw(raws))
    assert r["raw inputs"] == str(raws)
    assert r["output codes"] == str(y)
    want_in = units.torch_codes_raw(raws, Fraction(UNIT), QP(mod)).tolist()
    assert r["input codes"] == str(want_in)
    t_in, t_out = torch_raw_codes(raws)
    assert t_in == want_in
    assert y == t_out
    assert r["fixed point"] == f"{list(mod.dequantize(y))} x 0.001"
    assert r["class"] == str(mod.predict(want_in)) and r["label"] == mod.label_raw(raws)


def QP(mod):
    from uquant.ir import QParams
    from uquant.codegen import bits_f32

    return QParams(float(bits_f32(mod.INPUT_SCALE_BITS)), mod.INPUT_ZERO_POINT, "quint8")


def test_run_float_input_prints_label_and_fixed_point_too(modules, capsys):
    rc, out, err = main_inproc(capsys, "run", str(modules / "seed_u.py"), "--input", "0,0.75")
    assert rc == 0, err
    r = parse_report(out)
    mod = load_file(modules / "seed_u.py")
    y = [int(v) for v in r["output codes"].strip("[]").split(",")]
    assert r["fixed point"] == f"{list(mod.dequantize(y))} x 0.001" and r["label"] == "abcdefg"[int(r["class"])]
    rc, out, err = main_inproc(capsys, "run", str(modules / "seed_p.py"), "--input", "0,0.75")
    assert rc == 0 and "fixed point" not in out and "label" not in out  # a plain module: as before


def test_output_unit_text_finds_the_unit_from_the_spec():
    from uquant.ir import QParams

    # the unit is not stored in a module (only A, S or a table): the shortest decimal giving the same ints for
    # every output code stands for it (1/4096 = 0.000244140625 and 0.000244141 are the same unit for this model)
    for scale, zp, dtype, unit, text in [(1.5963, 243, "quint8", "0.001", "0.001"),
                                         (0.1, -3, "qint8", "1/4096", "0.000244141"),
                                         (0.0297, 0, "quint8", "0.001", "0.001"),
                                         (0.0078125, 128, "quint8", "0.5", "0.5")]:
        q = QParams(float(np.float32(scale)), zp, dtype)
        u = units.parse_unit(unit)
        got = cli.output_unit_text(units.output_spec(q, u), q.scale)
        assert got == text
        assert units.fixed_point_targets(q, Fraction(got)) == units.fixed_point_targets(q, u)


def test_negative_raw_values_need_no_equals_sign(modules, capsys):
    rc, out, err = main_inproc(capsys, "run", str(modules / "seed_u.py"), "--input-raw", "-35,1200")
    assert rc == 0, err
    assert parse_report(out)["raw inputs"] == "[-35, 1200]"


@pytest.mark.parametrize("module, args, fragments", [
    ("seed_p.py", ["--input-raw", "1,2"], ["seed_p.py has no run_raw", "--input-unit"]),
    ("seed_l.py", ["--input-raw", "1,2"], ["seed_l.py has no run_raw", "--input-unit"]),
    ("seed_u.py", ["--input-raw", "1.5,2"], ["--input-raw takes comma-separated integers", "'1.5,2'"]),
    ("seed_u.py", ["--input-raw", "1,abc"], ["--input-raw takes comma-separated integers"]),
    ("seed_u.py", ["--input-raw", "1,4096"], ["raw value 4096 is outside", "[-4096, 4095]"]),
    ("seed_u.py", ["--input-raw", "-4097,0"], ["raw value -4097 is outside"]),
    ("seed_u.py", ["--input-raw", "1,2,3"], ["takes 2 input values, got 3"]),
    ("seed_u.py", ["--input-raw", "1,2", "--raw"], ["--codes marks --input as codes"]),
])
def test_run_input_raw_errors(modules, capsys, module, args, fragments):
    assert_clean_error(main_inproc(capsys, "run", str(modules / module), *args), *fragments)


def test_input_and_input_raw_are_exclusive(modules, capsys):
    rc, out, err = main_inproc(capsys, "run", str(modules / "seed_u.py"), "--input", "0,1", "--input-raw", "0,1")
    assert rc == 2 and "not allowed with" in err and "Traceback" not in err


@pytest.mark.skipif(wasm.missing_reason() is not None, reason=str(wasm.missing_reason()))
def test_run_input_raw_under_micropython(modules, capsys):
    path = str(modules / "seed_u.py")
    rc, out, err = main_inproc(capsys, "run", path, "--input-raw", "1200,1843", "--micropython")
    assert rc == 0, err
    rc2, out2, _ = main_inproc(capsys, "run", path, "--input-raw", "1200,1843")
    assert out.splitlines()[1:] == out2.splitlines()[1:]  # all but the `runtime` line


def test_freeze_and_deploy_ship_uquant_units_only_for_a_units_model(modules, capsys):
    esp32 = boards.get("esp32")
    for module, with_units in (("seed_u.py", True), ("seed_l.py", True), ("seed_p.py", False)):
        out_dir = modules / f"frozen_{module[:-3]}"
        assert main_inproc(capsys, "freeze", str(modules / module), "--board", "esp32", "-o", str(out_dir))[0] == 0
        frozen = [line for line in (out_dir / "manifest.py").read_text().splitlines() if line.startswith("module(")]
        want = [*esp32.device_files, *(("uquant_units.py",) if with_units else ()), module]
        assert frozen == [f'module("{n}")' for n in want]
        assert ((out_dir / "uquant_units.py").is_file()) == with_units
        # deploy decides the same way (one function for both)
        assert device_files(modules / module, esp32.device_files) == tuple(want[:-1])
        impl = {"name": "circuitpython", "mpy_version": None, "mpy_arch": None}
        assert [f.name for f in plan_files(modules / module, esp32.device_files, impl)] == want
    assert (modules / "frozen_seed_u" / "uquant_units.py").read_text() == (DEVICE_DIR / "uquant_units.py").read_text()
    path = write_manifest(modules / "seed_p.py", esp32, modules / "frozen_again")
    assert "uquant_units" not in path.read_text()
