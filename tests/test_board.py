"""On the (virtual) board, end to end: deploy, re-deploy, predict, verify, a pulled cable, and the real clients.

The board is `uquant sim`: a pseudo-terminal speaking MicroPython's raw REPL, backed by the MicroPython unix port
with its flash in a host folder. `uquant deploy/predict/verify` run as the installed command; mpremote and ampy
as their own commands.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import uquant
from conftest import platform_here
from randmodels import fx_mlp_file
from uquant import boards
from uquant.deploy import deploy
from uquant.examples import SEED_INPUTS, SeedTorchModel, seed_expected, seed_state_dict
from uquant.link import Link, LinkError
from uquant.sim import Sim, missing_reason

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(missing_reason("unix") is not None, reason=str(missing_reason("unix")))


# importing torch fails under it; uquant comes from this checkout's host/
NO_TORCH = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).with_name("notorch")), str(Path(__file__).parents[1] / "host")])}


def uquant_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "uquant"), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("seed")
    torch.save(seed_state_dict(), d / "seed.pt")
    module = uquant.convert(d / "seed.pt", relu="hidden", engine="x86").save(d / "seed_q.py")
    return d / "seed.pt", module


@pytest.fixture(scope="module")
def seed_codes(seed_files):
    """The question's seven inputs, quantized as torch does."""
    plan = uquant.convert(seed_files[0], relu="hidden", engine="x86").plan
    return [list(map(int, row)) for row in uquant.quantize_input(SEED_INPUTS, plan.input)]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with Sim("unix", tmp_path_factory.mktemp("flash")) as sim:
        yield sim


def test_deploy_predict_verify_and_skip(board, seed_files, seed_codes, report):
    model, module = seed_files
    r = uquant_cli("deploy", module, "--board", "sim", "--port", board.device, env=NO_TORCH)  # no torch needed
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("copied, hash checked") == 3 and "imported on the board: seed viper 2 7" in r.stdout
    assert {p.name for p in board.flash_dir.iterdir()} >= {"uquant_rt.mpy", "uquant_viper.mpy", "seed_q.mpy"}

    again = uquant_cli("deploy", module, "--board", "sim", "--port", board.device)
    assert again.returncode == 0 and again.stdout.count("unchanged, skipped") == 3, again.stdout

    torch_model = SeedTorchModel("x86")
    for x in seed_codes:
        r = uquant_cli("predict", "--port", board.device, "--module", "seed_q", "--input", ",".join(map(str, x)),
                       "--raw", env=NO_TORCH)
        assert r.returncode == 0, r.stderr
        want = torch_model.layer_codes(torch_model.quant.scale * torch.tensor([x], dtype=torch.float32))[-1][0]
        assert f"output codes : {want.tolist()}" in r.stdout and f"class        : {int(want.argmax())}" in r.stdout

    codes_file = Path(module).with_name("seed_codes.csv")
    codes_file.write_text("\n".join(",".join(map(str, x)) for x in seed_codes))
    r = uquant_cli("predict", "--port", board.device, "--data", codes_file, "--codes", env=NO_TORCH)  # many at once
    assert r.returncode == 0, r.stderr
    classes = [int(line.split("class ")[1].split()[0]) for line in r.stdout.splitlines() if ": class " in line]
    want = torch_model.layer_codes(torch_model.quant.scale * torch.tensor(seed_codes, dtype=torch.float32))[-1]
    assert classes == want.argmax(1).tolist(), r.stdout

    r = uquant_cli("verify", model, "--relu", "hidden", "--port", board.device, "--module", "seed_q",
                   "--samples", 300)
    here = platform_here().name
    assert r.returncode == 0 and f"platform {here}) against torch (x86) on this machine" in r.stdout, r.stdout
    assert "300 random input codes 0..127 (the calibrated range" in r.stdout, r.stdout
    assert "2100 output bytes, 0 mismatches" in r.stdout, r.stdout + r.stderr
    r = uquant_cli("verify", model, "--relu", "hidden", "--port", board.device, "--module", "seed_q",
                   "--samples", 300, "--full-range")
    assert r.returncode == 0 and "300 random input codes 0..255, 2100 output bytes, 0 mismatches" in r.stdout, r.stdout
    report(f"board (uquant sim, unix port): deploy 3 files, re-deploy skips 3, predict = torch, verify 300 inputs "
           f"(codes 0..127, then 0..255) / 2100 output bytes against torch on platform {here}: 0 mismatches")


def test_verify_names_the_first_layer_that_differs(board, seed_files, tmp_path):
    model, module = seed_files
    assert uquant_cli("deploy", module, "--board", "sim", "--port", board.device).returncode == 0
    # a tampered copy of the model on the board: the second layer's weights negated, checksum redone
    converted = uquant.convert(model, relu="hidden", engine="x86")
    converted.plan.steps[1].weights = bytes(256 - v if v else 0 for v in converted.plan.steps[1].weights)
    tampered = converted.save(tmp_path / "seed_q.py")
    assert uquant_cli("deploy", tampered, "--board", "sim", "--port", board.device).returncode == 0
    r = uquant_cli("verify", model, "--relu", "hidden", "--port", board.device, "--module", "seed_q",
                   "--samples", 100)
    assert r.returncode == 1 and "first difference" in r.stdout and "step out " in r.stdout, r.stdout + r.stderr
    assert " 0 mismatches" not in r.stdout


def test_verify_a_users_fx_mlp_on_this_platform_and_another(board, tmp_path, report):
    model = fx_mlp_file(tmp_path / "mlp.pt")
    here = platform_here()
    other = "x86-avx2" if here.gemm == "exact" else "x86-vnni"
    mine = uquant.convert(model, engine="x86")
    assert mine.plan.platform_dependent, "the test model should be able to saturate"
    for platform in ("here", other):
        module = uquant.convert(model, engine="x86", platform=platform).save(tmp_path / "mlp_q.py")
        assert uquant_cli("deploy", module, "--board", "sim", "--port", board.device).returncode == 0
        r = uquant_cli("verify", model, "--port", board.device, "--module", "mlp_q", "--samples", 500, "--full-range")
        assert r.returncode == 0 and "500 random input codes 0..255, 2000 output bytes, 0 mismatches" in r.stdout, \
            r.stdout + r.stderr
        if platform == "here":
            assert f"against torch (x86) on this machine (platform {here.name})" in r.stdout
            np.save(tmp_path / "x.npy", np.random.default_rng(1).uniform(-1, 4, (120, 8)).astype(np.float32))
            r = uquant_cli("verify", model, "--port", board.device, "--module", "mlp_q", "--data", tmp_path / "x.npy")
            assert r.returncode == 0 and "120 samples from x.npy, 480 output bytes, 0 mismatches" in r.stdout, \
                r.stdout + r.stderr
            r = uquant_cli("convert", model, "-o", tmp_path / "m_q.py", "--data", tmp_path / "x.npy")
            assert r.returncode == 0 and " of 120 samples from x.npy (" in r.stdout, r.stdout + r.stderr
        else:
            assert f"against uquant's emulation of platform {other}, which the board's module was made for (this " \
                   f"machine's torch is {here.name}, and this model's bytes differ between the two)" in r.stdout
    report(f"verify (uquant sim): a user's FX MLP (x86 default qconfig) converted here ({here.name}): 0 of 2000 "
           f"output bytes differ from torch; converted for {other}: 0 differ from uquant's emulation of it, labelled")


class PulledCable(Exception):
    pass


def test_a_pulled_cable_leaves_the_previous_model_working(board, seed_files, seed_codes, tmp_path):
    model, module = seed_files
    assert uquant_cli("deploy", module, "--board", "sim", "--port", board.device).returncode == 0
    # a different model under the same name (other weights), whose copy dies half way
    sd = seed_state_dict()
    w, b = sd["out._packed_params._packed_params"]
    sd["out._packed_params._packed_params"] = (torch.quantize_per_tensor(-w.dequantize(), w.q_scale(), 0, torch.qint8), b)
    torch.save(sd, tmp_path / "other.pt")
    other = uquant.convert(tmp_path / "other.pt", relu="hidden", engine="x86").save(tmp_path / "seed_q.py")
    with Link(board.device) as link:
        write = link.transport.fs_writefile

        def dies_half_way(name, data, chunk_size=256, progress_callback=None):
            if name.startswith("seed_q"):
                write(name, data[: len(data) // 2], chunk_size)
                raise PulledCable(name)
            return write(name, data, chunk_size)

        link.transport.fs_writefile = dies_half_way
        with pytest.raises(PulledCable):
            deploy(link, other, boards.get("sim"), log=lambda *a: None)
    assert (board.flash_dir / "seed_q.mpy.part").exists()
    with Link(board.device) as link:  # a fresh session (soft reset): the old model imports and answers
        assert link.eval(f"[__import__('seed_q').predict(x) for x in {seed_codes!r}]") == seed_expected(
            "x86", platform_here())
    r = uquant_cli("deploy", other, "--board", "sim", "--port", board.device)  # plugged back in: completes
    assert r.returncode == 0 and "seed_q.mpy" in r.stdout and not (board.flash_dir / "seed_q.mpy.part").exists()


def test_the_real_clients_run_the_deployed_model(board, seed_files, seed_codes, tmp_path):
    model, module = seed_files
    assert uquant_cli("deploy", module, "--board", "sim", "--port", board.device).returncode == 0
    code = f"import seed_q; print([seed_q.predict(x) for x in {seed_codes!r}])"
    r = subprocess.run([str(BIN / "mpremote"), "connect", board.device, "exec", code], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.strip() == str(seed_expected("x86", platform_here())), r.stdout + r.stderr
    script = tmp_path / "infer.py"
    script.write_text(code + "\n")
    r = subprocess.run([str(BIN / "ampy"), "--port", board.device, "run", str(script)], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.strip() == str(seed_expected("x86", platform_here())), r.stdout + r.stderr


def test_mip_installs_the_runtime_from_device_package_json(board):
    from uquant.runtime import DEVICE_DIR

    r = subprocess.run([str(BIN / "mpremote"), "connect", board.device, "mip", "install", "--target", "piplib",
                        str(DEVICE_DIR / "package.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (board.flash_dir / "piplib" / "uquant_rt.py").read_bytes() == (DEVICE_DIR / "uquant_rt.py").read_bytes()


def test_deploy_refuses_the_wrong_board_profile(board, seed_files):
    r = uquant_cli("deploy", seed_files[1], "--board", "pico", "--port", board.device)
    assert r.returncode == 2 and "for x64, but profile pico is micropython for armv6m" in r.stderr, r.stderr


def test_no_board_on_the_port_is_a_clear_error(tmp_path):
    with pytest.raises(LinkError, match="no MicroPython raw REPL there"):
        Link(str(tmp_path / "no-such-tty"))


def test_predict_raw_sensor_integers_on_the_board(board, seed_files, tmp_path):
    # a units model: predict --input-raw runs the board's run_raw and prints what `uquant run` prints on the host
    model, _ = seed_files
    units_q = uquant.convert(model, relu="hidden", engine="x86", input_unit="0.000244", output_unit="0.001",
                             labels="a,b,c,d,e,f,g").save(tmp_path / "units_q.py")
    plain_q = uquant.convert(model, relu="hidden", engine="x86").save(tmp_path / "plain_q.py")
    for m in (units_q, plain_q):
        r = uquant_cli("deploy", m, "--board", "sim", "--port", board.device)
        assert r.returncode == 0, r.stderr
    assert (board.flash_dir / "uquant_units.mpy").is_file()
    r = uquant_cli("predict", "--port", board.device, "--module", "units_q", "--input-raw", "-35,1843")
    host = uquant_cli("run", units_q, "--input-raw", "-35,1843")  # tests/test_units_cli.py: run = run_raw = torch
    assert r.returncode == 0 and host.returncode == 0, r.stderr + host.stderr
    assert r.stdout.splitlines()[1:] == host.stdout.splitlines()[1:], r.stdout + host.stdout
    assert "raw inputs   : [-35, 1843]" in r.stdout and " x 0.001" in r.stdout and "label        : " in r.stdout
    r = uquant_cli("predict", "--port", board.device, "--module", "units_q", "--input-raw", "1,600000000")
    assert r.returncode == 2 and "raw value 600000000 is outside" in r.stderr and "Traceback" not in r.stderr
    r = uquant_cli("predict", "--port", board.device, "--module", "plain_q", "--input-raw", "1,2")
    assert r.returncode == 2 and "plain_q has no run_raw" in r.stderr and "--input-unit" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_port_auto_finds_the_running_sim_and_the_board_remembers_its_model(seed_files, tmp_path, report):
    """A `uquant sim` started from the command line advertises its pty: deploy --board sim, predict and verify find
    it without --port, and predict and verify use the module deploy put there without --module."""
    import signal

    model, module = seed_files
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}  # this test's sims only
    sim = subprocess.Popen([str(BIN / "uquant"), "sim"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
    try:
        device = sim.stdout.readline().strip()
        assert device.startswith("/dev/"), sim.stderr.read()

        def cli(*args):
            return subprocess.run([str(BIN / "uquant"), *map(str, args)], capture_output=True, text=True,
                                  timeout=300, env=env)

        r = cli("predict", "--input", "1,0.75")
        assert r.returncode == 2 and "no model deployed by uquant there" in r.stderr, r.stderr
        r = cli("deploy", module, "--board", "sim")
        assert r.returncode == 0 and device in r.stdout, r.stdout + r.stderr
        r = cli("predict", "--input", "0,0.75")
        assert r.returncode == 0 and f"board        : {device}" in r.stdout and "class        : 5" in r.stdout, \
            r.stdout + r.stderr
        r = cli("verify", model, "--relu", "hidden", "--samples", 50)
        assert r.returncode == 0 and "verify seed_q on " + device in r.stdout and " 0 mismatches" in r.stdout, \
            r.stdout + r.stderr
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=30)
    assert not list(tmp_path.glob("uquant-sims-*/sim-*.json"))  # the advertisement goes with the sim
    r = subprocess.run([str(BIN / "uquant"), "deploy", module, "--board", "sim"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2 and "no `uquant sim` is running: start one" in r.stderr and "Plug" not in r.stderr
    report("board: `uquant sim` found by --port auto; predict and verify use the deployed module (uquant.json)")
