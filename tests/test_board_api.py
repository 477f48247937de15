"""The Python board API (`uquant.board`) against `uquant sim`: connect, deploy, predict/run/infer, verify, exec, and
the same checks and messages as the CLI verbs built on it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import uquant
import uquant.board
from conftest import platform_here
from uquant.examples import SEED_INPUTS, SeedTorchModel, seed_expected, seed_state_dict
from uquant.link import LinkError
from uquant.sim import Sim, advertised, missing_reason

pytestmark = pytest.mark.skipif(missing_reason("unix") is not None, reason=str(missing_reason("unix")))

HOST = Path(uquant.__file__).parents[1]
NOTORCH = Path(__file__).with_name("notorch")  # importing torch fails under it


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    d = tmp_path_factory.mktemp("seed")
    torch.save(seed_state_dict(), d / "seed.pt")
    conv = uquant.convert(d / "seed.pt", relu="hidden", engine="x86")
    module = conv.save(d / "seed_q.py")
    codes = [list(map(int, row)) for row in uquant.quantize_input(SEED_INPUTS, conv.plan.input)]
    return d / "seed.pt", Path(module), codes


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with Sim("unix", tmp_path_factory.mktemp("flash")) as s:
        yield s


def torch_codes(codes) -> np.ndarray:
    m = SeedTorchModel("x86")
    return m.layer_codes(m.quant.scale * torch.tensor(codes, dtype=torch.float32))[-1]


def test_deploy_predict_run_infer(sim, seed):
    model, module, codes = seed
    want_classes = seed_expected("x86", platform_here())
    with uquant.board.connect(sim.device, board="sim") as b:
        assert repr(b) == f"<uquant board on {sim.device} (sim)>"
        done = b.deploy(module)
        assert set(done["files"]) == {"uquant_rt.mpy", "uquant_viper.mpy", "seed_q.mpy"}
        assert b.deploy(module)["copied"] == []  # the same files: hash-checked, skipped
        assert b.deployed() == "seed_q"  # the manifest: predict and verify default to it
        info = b.model_info()
        assert (info["n_in"], info["n_out"], info["tier"]) == (2, 7, "viper")
        assert [b.predict(codes=c) for c in codes] == want_classes
        assert [b.predict(x) for x in SEED_INPUTS] == want_classes  # floats quantized as torch does
        assert [b.run(codes=c) for c in codes] == torch_codes(codes).tolist()
        assert b.predict(codes=np.array(codes)).tolist() == want_classes  # a batch: one class per row
        assert np.array_equal(b.run(SEED_INPUTS), torch_codes(codes))
        assert b.predict(SEED_INPUTS[5:6]) == want_classes[5]  # one sample's values in any shape: one sample
        p = b.infer(SEED_INPUTS[1])
        assert (p.port, p.module, p.tier, p.inputs, p.cls) == (sim.device, "seed_q", "viper", codes[1], want_classes[1])
        assert p.platform == platform_here().name and p.label is None and p.fixed is None
        out = uquant.convert(model, relu="hidden", engine="x86").plan.output
        assert p.values == pytest.approx([out.scale * (v - out.zero_point) for v in p.outputs], rel=1e-6)
        assert b.exec("print(6 * 7)") == "42\n" and b.eval("[1, 2][1]") == 2


def test_data_files_and_batches(sim, seed, tmp_path):
    model, module, codes = seed
    np.save(tmp_path / "x.npy", SEED_INPUTS)
    (tmp_path / "codes.csv").write_text("\n".join(",".join(map(str, c)) for c in codes))
    with uquant.board.connect(sim.device, board="sim") as b:
        b.deploy(module)
        batch = b.infer_batch(tmp_path / "x.npy", batch=3)  # three exchanges of at most 3 samples
        assert batch.source == "from x.npy" and batch.inputs.tolist() == codes
        assert np.array_equal(batch.outputs, torch_codes(codes))
        assert b.predict(str(tmp_path / "x.npy")).tolist() == seed_expected("x86", platform_here())
        assert np.array_equal(b.run(codes=tmp_path / "codes.csv"), torch_codes(codes))


def test_verify_against_torch(sim, seed):
    model, module, codes = seed
    with uquant.board.connect(sim.device, board="sim") as b:
        b.deploy(module)
        v = b.verify(model, relu="hidden", samples=120)
        assert v.ok and v.mismatches == 0 and v.n_bytes == 120 * 7 and v.first is None, v.text()
        assert v.line() == (f"verify seed_q on {sim.device} (viper kernels, platform {platform_here().name}) against "
                            f"torch (x86) on this machine (platform {platform_here().name}): 120 random input codes "
                            "0..127 (the calibrated range of x86's default qconfig, reduce_range; --full-range for "
                            "every code), 840 output bytes, 0 mismatches")
        v = b.verify(model, SEED_INPUTS, relu="hidden")  # an array of float samples
        assert v.ok and v.source == "7 given samples", v.text()
        # a torch model in memory works too
        v = b.verify(SeedTorchModel("x86"), SEED_INPUTS)
        assert v.ok and "against torch (x86)" in v.line(), v.text()


def test_the_same_checks_and_messages_as_the_cli(sim, seed, tmp_path, capsys):
    model, module, codes = seed
    with uquant.board.connect(sim.device) as b:  # no profile: it can predict, not deploy
        with pytest.raises(ValueError, match=r"^deploy needs the board's profile: connect\(port, board='pico'\)"):
            b.deploy(module)
    with uquant.board.connect(sim.device, board="sim") as b:
        with pytest.raises(ValueError, match=r"nope\.py: no such file \(make one with `uquant convert`\)"):
            b.deploy(tmp_path / "nope.py")
        b.deploy(module)
        with pytest.raises(ValueError, match=r"^seed_q takes 2 inputs, got 3$"):
            b.predict([1.0, 0.5, 0.25])
        with pytest.raises(ValueError, match=r"^input code 300 is outside seed_q's input codes \[0, 255\]$"):
            b.predict(codes=[300, 1])
        with pytest.raises(ValueError, match=r"^codes must be integers"):
            b.predict(codes=[1.5, 2])
        with pytest.raises(ValueError, match=r"^inputs must be finite numbers"):
            b.predict([float("nan"), 1.0])
        with pytest.raises(ValueError, match=r"^seed_q has no run_raw \(converted without --input-unit\)"):
            b.predict(raw=[1, 2])
        with pytest.raises(ValueError, match=r"^give one of x \(float inputs\), codes or raw$"):
            b.predict()
        with pytest.raises(LinkError, match=r"no module named 'nosuch'"):
            b.predict(codes=[1, 2], module="nosuch")
    # the CLI says the same, after `uquant: error:`
    from uquant import cli

    assert cli.main(["predict", "--port", sim.device, "--input", "1,0.5,0.25"]) == 2
    assert capsys.readouterr().err == "uquant: error: seed_q takes 2 inputs, got 3\n"
    assert cli.main(["predict", "--port", sim.device, "--input", "300,1", "--codes"]) == 2
    assert capsys.readouterr().err == "uquant: error: input code 300 is outside seed_q's input codes [0, 255]\n"


def test_port_auto_finds_the_running_sim(sim, seed, tmp_path, monkeypatch):
    model, module, _ = seed
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # this test's advertisements only
    with pytest.raises(LinkError, match="no `uquant sim` is running: start one"):
        uquant.board.connect("auto", board="sim")
    with advertised(sim, "unix"):
        with uquant.board.connect(board="sim") as b:  # port="auto" is the default
            assert b.port == sim.device
        done = uquant.board.deploy(module, "sim")  # the module-level deploy: connect, check, copy, close
        assert done["files"][-1] == "seed_q.mpy"
        with uquant.board.connect() as b:  # no profile: the one board or sim
            assert b.port == sim.device and b.predict(SEED_INPUTS[5]) == 5


def test_import_and_float_predict_need_no_torch(sim, seed):
    """`import uquant.board`, and predicting float inputs on a deployed board, run without torch."""
    _, module, _ = seed
    with uquant.board.connect(sim.device, board="sim") as b:
        b.deploy(module)
    code = ("import sys, uquant, uquant.board\n"
            f"with uquant.board.connect({sim.device!r}) as b:\n"
            "    print(b.predict([0.0, 0.75]), b.run(codes=[0, 191])[:2], 'torch' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(NOTORCH), str(HOST)])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "5" and r.stdout.strip().endswith("False"), r.stdout
