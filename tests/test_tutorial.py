"""The whole path a tutorial user takes (issue 15's acceptance), with the commands a user types.

Train a float MLP and a small CNN on sklearn's digits, `uquant quantize --convert` them, `uquant evaluate` on the host
and on a board (accuracy printed), `uquant deploy`, `uquant predict` without --module, `uquant verify --data`.
Every board command runs with `--port auto` against a `uquant sim` started from the command line, as a user starts
it. The CLI runs in this process (as tests/test_cli.py does: no torch import per command); the sim runs as its own
process, found through the file it advertises its pty in.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli, source_lines
from uquant.sim import missing_reason

pytestmark = pytest.mark.skipif(missing_reason("unix") is not None, reason=str(missing_reason("unix")))

BIN = Path(sys.executable).parent
N_BOARD = 60  # test samples run on the board by evaluate and verify (the host evaluates all of them)

CNN_SOURCE = '''import torch.nn as nn


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(96, 10)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))
'''




def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    """A few full-batch Adam steps: a second or two, well above chance on the digits."""
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    """The user's folder: digits as .npy (train / test split), a trained float MLP saved as TorchScript, a trained
    CNN saved as a state_dict with its class in cnn.py (and traced, cnn.pt, for evaluate --float)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = tmp_path_factory.mktemp("tutorial")
    digits = load_digits()
    x = (digits.data / 16).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, digits.target.astype(np.int64), train_size=1400, random_state=0,
                                              stratify=digits.target)
    np.save(d / "x_train.npy", x_tr)
    np.save(d / "y_train.npy", y_tr)
    np.save(d / "x_test.npy", x_te)
    np.save(d / "y_test.npy", y_te)
    np.save(d / "x_board.npy", x_te[:N_BOARD])
    np.save(d / "y_board.npy", y_te[:N_BOARD])
    np.savetxt(d / "sample.txt", x_te[:1].reshape(8, 8), fmt="%.4f")  # one 8x8 digit, for --input @sample.txt
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    torch.manual_seed(0)
    mlp = train(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), xt, yt, 120)
    torch.jit.save(torch.jit.trace(mlp, xt[:1]), str(d / "mlp.pt"))
    (d / "cnn.py").write_text(CNN_SOURCE)
    namespace: dict = {}
    exec(CNN_SOURCE, namespace)
    torch.manual_seed(1)
    cnn = train(namespace["CNN"](), xt.reshape(-1, 1, 8, 8), yt, 60)
    torch.save(cnn.state_dict(), d / "cnn_sd.pt")
    torch.jit.save(torch.jit.trace(cnn, xt[:1].reshape(1, 1, 8, 8)), str(d / "cnn.pt"))  # for evaluate --float
    return d


@pytest.fixture(scope="module")
def sim_running(tmp_path_factory):
    """`uquant sim` started as a user starts it (its own process); --port auto finds it through its runtime file."""
    run_dir = tmp_path_factory.mktemp("xdg")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run_dir)}
    sim = subprocess.Popen([str(BIN / "uquant"), "sim"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
    try:
        device = sim.stdout.readline().strip()
        assert device.startswith("/dev/"), sim.stderr.read()
        yield run_dir, device
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()


def accuracy(line: str) -> float:
    return float(re.search(r"([\d.]+) %", line).group(1))




@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_tutorial(tutorial, sim_running, which, capsys, monkeypatch, report):
    d = tutorial
    run_dir, device = sim_running
    monkeypatch.chdir(d)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run_dir))  # where the sim advertised its pty
    model = "mlp.pt" if which == "mlp" else "cnn_sd.pt"
    extra = [] if which == "mlp" else ["--class", "cnn.py:CNN", "--input-shape", "1,8,8"]
    shape = [] if which == "mlp" else ["--input-shape", "1,8,8"]

    # 1. quantize with torch's own PTQ and convert, in one go
    rc, out, err = run_cli(capsys, "quantize", model, *extra, "--data", "x_train.npy", "--labels", "y_train.npy",
                          "-o", f"build/{which}_q.pt", "--convert")
    assert rc == 0, err
    acc_line = next(line for line in out.splitlines() if "accuracy: float" in line)
    assert f"build/{which}_q.py: " in out and "portable: the same bytes on every platform" in out, out
    assert Path(f"build/{which}_q.pt").is_file() and Path(f"build/{which}_q.py").is_file()
    if which == "cnn":  # the pooling step is named for what it is, not for a TorchScript variable (`x`)
        assert "  max_pool2d: maxpool -> 6x4x4" in out and "\n  x: " not in out, out

    # 2. evaluate on the host: float, torch quantized and the device module, every test sample
    rc, out, err = run_cli(capsys, "evaluate", f"build/{which}_q.pt", f"build/{which}_q.py", "--data", "x_test.npy",
                          "--labels", "y_test.npy", "--float", f"{which}.pt",
                          *shape, "--quiet")
    assert rc == 0, err
    got = source_lines(out)
    n = len(np.load(d / "y_test.npy"))
    host_acc = accuracy(got["device (host)"])
    assert accuracy(got["torch quantized"]) == host_acc > 85, out
    assert f"codes identical to torch on {n}/{n} samples" in got["device (host)"], out

    # 3. deploy to the running sim: --port auto finds it
    rc, out, err = run_cli(capsys, "deploy", f"build/{which}_q.py", "--board", "sim", "--port", "auto")
    assert rc == 0, err
    assert f"deploying to {device}" in out and f"imported on the board: {which}_q" in out, out

    # 4. evaluate on the board (the deployed module, found through the board's manifest)
    rc, out, err = run_cli(capsys, "evaluate", f"build/{which}_q.pt", "--data", "x_board.npy", "--labels",
                          "y_board.npy", "--port", "auto", *shape, "--quiet")
    assert rc == 0, err
    board_line = source_lines(out)[f"device (board {device})"]
    assert f"codes identical to torch on {N_BOARD}/{N_BOARD} samples" in board_line, out
    board_acc = accuracy(board_line)
    assert board_acc > 80, out

    # 5. predict one sample from a file, without --module: the board remembers what deploy put there
    rc, out, err = run_cli(capsys, "predict", "--port", "auto", "--input", "@sample.txt")
    assert rc == 0, err
    assert f"board        : {device}" in out, out
    cls = int(re.search(r"^class        : (\d+)$", out, re.M).group(1))
    rc, host, err = run_cli(capsys, "run", f"build/{which}_q.py", "--input", "@sample.txt")
    assert rc == 0, err
    assert host.splitlines()[2:] == out.splitlines()[2:], host + out  # codes, outputs and class as on the host
    assert cls == int(np.load(d / "y_test.npy")[0]) or which == "cnn"  # the MLP gets the first digit right

    # 6. verify every output byte against torch, on the user's own samples
    rc, out, err = run_cli(capsys, "verify", f"build/{which}_q.pt", "--port", "auto", "--data", "x_board.npy",
                          *shape)
    assert rc == 0, out + err
    assert f"verify {which}_q on {device}" in out and f"{N_BOARD} samples from x_board.npy" in out, out
    assert out.rstrip().endswith(" 0 mismatches"), out

    report(f"tutorial ({which}, digits, uquant sim via --port auto): {acc_line.strip()}; evaluate host "
           f"{host_acc} % ({n} samples), board {board_acc} % ({N_BOARD}), verify 0 mismatches")
