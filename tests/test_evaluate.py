"""`uquant evaluate`: accuracy and agreement of float, torch-quantized and device module, on a small MLP trained on
sklearn's bundled 8x8 digits, through the command (a subprocess, as a user runs it) and the Python API."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import uquant
from conftest import source_lines

pytest.importorskip("sklearn")
pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning")


def uquant_cmd(*args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uquant.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A float MLP 64 -> 32 -> 10 trained on the digits, FX-quantized (x86), both saved as TorchScript, the test
    samples and labels as .npy files, and the module `uquant convert` makes: (folder, expected figures)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    d = tmp_path_factory.mktemp("digits")
    data = load_digits()
    x = (data.images.reshape(-1, 64) / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, data.target, train_size=1400, random_state=0, stratify=data.target)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr.astype(np.int64))
    for _ in range(150):  # full batch: a second or two
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    torch.jit.save(torch.jit.trace(model, xt[:1]), str(d / "float.pt"))
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"
    try:
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (xt[:1],))
        with torch.no_grad():
            prepared(xt)
        q = convert_fx(prepared)
        torch.jit.save(torch.jit.trace(q, xt[:1]), str(d / "mlp.pt"))
        xe = torch.from_numpy(x_te)
        with torch.no_grad():
            float_pred = model(xe).argmax(1).numpy()
            last = q.get_submodule("2")  # FX ends with a dequantize: the last layer's scale gives the codes back
            out = torch.cat([q(xe[i:i + 1]) for i in range(len(xe))])
            q_codes = torch.quantize_per_tensor(out, float(last.scale), int(last.zero_point),
                                                torch.quint8).int_repr().numpy().astype(np.int64)
    finally:
        torch.backends.quantized.engine = old
    np.save(d / "x.npy", x_te)
    np.save(d / "y.npy", y_te.astype(np.int64))
    r = uquant_cmd("convert", "mlp.pt", "-o", "mlp_q.py", cwd=d)
    assert r.returncode == 0, r.stderr
    want = {"n": len(y_te), "float": float((float_pred == y_te).mean()), "codes": q_codes, "labels": y_te,
            "quant": float((q_codes.argmax(1) == y_te).mean()), "model": model, "x_train": xt}
    return d, want




def pct(text: str) -> float:
    return float(re.match(r"([\d.]+) %", text).group(1))


def test_cli_accuracy_agreement_confusion_and_html(digits):
    d, want = digits
    n = want["n"]
    r = uquant_cmd("evaluate", "mlp.pt", "mlp_q.py", "--data", "x.npy", "--labels", "y.npy", "--float", "float.pt",
                   "--html", "report.html", cwd=d)
    assert r.returncode == 0, r.stderr
    got = source_lines(r.stdout)
    assert list(got) == ["float", "torch quantized", "device (host)"], r.stdout
    assert pct(got["float"]) == round(100 * want["float"], 1) and f"/{n})" in got["float"]
    assert pct(got["torch quantized"]) == round(100 * want["quant"], 1)
    assert pct(got["device (host)"]) == round(100 * want["quant"], 1)
    assert f"codes identical to torch on {n}/{n} samples" in got["device (host)"]
    assert f"same class as torch on {n}/{n}" in got["device (host)"]
    assert want["quant"] > 0.85  # a trained model, not chance
    # the confusion matrix: 10 rows of 10 counts that add up to the samples, the diagonal the correct ones
    text = r.stdout.split("predicted class):\n", 1)[1].splitlines()
    rows = [list(map(int, t.split()[1:])) for t in text[1:11]]
    assert len(rows) == 10 and all(len(row) == 10 for row in rows)
    m = np.array(rows)
    assert m.sum() == n and np.trace(m) == round(want["quant"] * n)
    assert (m.sum(axis=1) == np.bincount(want["labels"], minlength=10)).all()
    page = (d / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "Confusion matrix of device (host)" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    assert r.stderr == ""  # no progress bar when stderr is not a terminal


def test_api_matches_direct_computation(digits):
    d, want = digits
    ev = uquant.evaluate(d / "mlp.pt", d / "x.npy", d / "y.npy", float_model=d / "float.pt")
    assert [s.name for s in ev.sources] == ["float", "torch quantized", "device (host)"]
    assert ev.accuracy("float") == pytest.approx(want["float"])
    assert ev.accuracy("torch quantized") == pytest.approx(want["quant"])
    assert ev.accuracy("device (host)") == pytest.approx(want["quant"])
    assert np.array_equal(ev.source("torch quantized").codes, want["codes"])
    assert np.array_equal(ev.source("device (host)").codes, want["codes"])
    assert ev.agreement("device (host)") == ("torch quantized", want["n"], want["n"])
    m = ev.confusion()
    assert m.shape == (10, 10) and m.sum() == want["n"]
    # the samples where float and quantized disagree are the ones listed
    fl, tq = ev.source("float").preds, ev.source("torch quantized").preds
    assert list(ev.disagreements()) == list(np.flatnonzero(fl != tq))
    assert "<svg" in ev.html() and "Samples where the sources disagree" in ev.html()
    # arrays in, the module alone: agreement with nothing to compare against, accuracy from the labels
    ev2 = uquant.evaluate.evaluate(module=d / "mlp_q.py", data=np.load(d / "x.npy"), labels=want["labels"])
    assert [s.name for s in ev2.sources] == ["device (host)"]
    assert ev2.accuracy("device (host)") == pytest.approx(want["quant"])


def test_without_labels_agreement_only(digits):
    d, want = digits
    r = uquant_cmd("evaluate", "mlp.pt", "--data", "x.npy", "--quiet", "--html", "a.html", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "no labels: agreement only" in r.stdout and "confusion" not in r.stdout
    got = source_lines(r.stdout)
    n = want["n"]
    assert got["torch quantized"] == "" and got["device (host)"] == (f"codes identical to torch on {n}/{n} samples, "
                                                                     f"same class as torch on {n}/{n}")
    assert "<svg" in (d / "a.html").read_text()


def test_pt2e_program(digits):
    """A .pt2 file (torchao's PT2E, XNNPACK int8): torch runs the program; the device agrees within one code."""
    pytest.importorskip("torchao")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    d, want = digits
    xt = want["x_train"]
    p = prepare_pt2e(torch.export.export(want["model"], (xt[:1],)).module(),
                     XNNPACKQuantizer().set_global(get_symmetric_quantization_config()))
    with torch.no_grad():
        for i in range(0, len(xt), 4):  # the program takes one sample (as the device does)
            p(xt[i:i + 1])
    c = convert_pt2e(p)
    torch.export.save(torch.export.export(c, (xt[:1],)), d / "mlp.pt2")
    xe = torch.from_numpy(np.load(d / "x.npy"))
    with torch.no_grad():
        torch_pred = np.array([int(c(xe[i:i + 1]).argmax()) for i in range(len(xe))])
    ev = uquant.evaluate(d / "mlp.pt2", d / "x.npy", d / "y.npy")
    n = want["n"]
    assert np.array_equal(ev.source("torch quantized").preds, torch_pred)
    assert ev.accuracy("torch quantized") == pytest.approx(float((torch_pred == want["labels"]).mean()))
    against, same_codes, same_class = ev.agreement("device (host)")
    assert against == "torch quantized" and same_class >= n - 4 and same_codes >= n * 0.9
    assert np.abs(ev.source("device (host)").codes - ev.source("torch quantized").codes).max() <= 1
    assert any("PT2E" in note for note in ev.notes) and "note: a PT2E program" in ev.text()


def test_errors(digits):
    d, _ = digits
    np.save(d / "y_short.npy", np.zeros(10, np.int64))
    r = uquant_cmd("evaluate", "mlp.pt", "--data", "x.npy", "--labels", "y_short.npy", cwd=d)
    assert r.returncode == 2 and "y_short.npy holds 10 labels for the 397 samples of x.npy" in r.stderr
    r = uquant_cmd("evaluate", "missing.pt", "--data", "x.npy", cwd=d)
    assert r.returncode == 2 and "missing.pt: no such file" in r.stderr
    r = uquant_cmd("evaluate", "mlp.pt", "--data", "nothing.npy", cwd=d)
    assert r.returncode == 2 and "nothing.npy: no such file" in r.stderr
    r = uquant_cmd("evaluate", "mlp.pt", "--data", "x.npy", "--labels", "no_labels.npy", cwd=d)
    assert r.returncode == 2 and "no_labels.npy: no such file" in r.stderr
    np.save(d / "x_bad.npy", np.zeros((5, 63), np.float32))
    r = uquant_cmd("evaluate", "mlp.pt", "--data", "x_bad.npy", cwd=d)
    assert r.returncode == 2 and "do not make samples of 64 values" in r.stderr
    np.save(d / "y_frac.npy", np.full(397, 0.5))
    with pytest.raises(ValueError, match="class indices"):
        uquant.evaluate(d / "mlp.pt", d / "x.npy", d / "y_frac.npy")
    with pytest.raises(ValueError, match="needs the quantized torch model or the generated module"):
        uquant.evaluate(data=d / "x.npy")


def test_progress_bar_only_on_a_terminal_for_long_runs(monkeypatch, capsys):
    from uquant import evaluate as ev

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert not ev.progress(400, "x").disable
    assert ev.progress(400, "x", quiet=True).disable and ev.progress(ev.PROGRESS_MIN, "x").disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert ev.progress(400, "x").disable


def test_on_the_sim_board(digits, tmp_path):
    from uquant.sim import Sim, missing_reason

    reason = missing_reason("unix")
    if reason:
        pytest.skip(reason)
    d, want = digits
    n = 120  # a quick board run: the first 120 test samples
    np.save(d / "x120.npy", np.load(d / "x.npy")[:n])
    np.save(d / "y120.npy", want["labels"][:n])
    with Sim("unix", tmp_path / "flash") as board:
        r = uquant_cmd("deploy", "mlp_q.py", "--board", "sim", "--port", board.device, cwd=d)
        assert r.returncode == 0, r.stderr
        r = uquant_cmd("evaluate", "mlp.pt", "--data", "x120.npy", "--labels", "y120.npy", "--port", board.device,
                       cwd=d)
        alone = uquant_cmd("evaluate", "mlp_q.py", "--data", "x120.npy", "--port", board.device, "--module", "mlp_q",
                           "--batch", "40", cwd=d)  # the module alone, no labels: the board against the host
    assert alone.returncode == 0, alone.stderr
    assert source_lines(alone.stdout) == {"device (host)": "", f"device (board {board.device})":
                                   f"codes identical to device (host) on {n}/{n} samples, same class as device "
                                   f"(host) on {n}/{n}"}, alone.stdout
    assert r.returncode == 0, r.stderr
    got = source_lines(r.stdout)
    board_line = got[f"device (board {board.device})"]
    acc = round(100 * float((want["codes"][:n].argmax(1) == want["labels"][:n]).mean()), 1)
    assert pct(board_line) == acc and f"codes identical to torch on {n}/{n} samples" in board_line
    assert f"confusion matrix of device (board {board.device})" in r.stdout


def test_progress_bar_on_a_pseudo_terminal(digits):
    """Run as on a terminal (a pty of 100 columns): tqdm draws on stderr for each source; the report follows."""
    import fcntl
    import pty
    import struct
    import termios

    d, want = digits
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the pty
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
            os.chdir(d)
            os.execv(sys.executable, [sys.executable, "-m", "uquant.cli", "evaluate", "mlp.pt", "--data", "x.npy",
                                      "--labels", "y.npy"])
        finally:
            os._exit(127)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert "torch quantized:" in text and "device (host):" in text and f"/{want['n']} [" in text, text[:2000]
    assert "sample/s" in text and "codes identical to torch" in text


def _chromium() -> str | None:
    import shutil

    return os.environ.get("UQUANT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (Debian package 'chromium')")
def test_html_renders_in_headless_chromium(digits, tmp_path):
    import tempfile

    from test_explain import _png_pixels
    from uquant.evaluate import BAR, GOOD

    d, _ = digits
    ev = uquant.evaluate(d / "mlp.pt", d / "x.npy", d / "y.npy", float_model=d / "float.pt")
    page = tmp_path / "report.html"
    page.write_text(ev.html())
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
                            "--window-size=1200,1400", f"--screenshot={shot}", page.as_uri()],
                           capture_output=True, text=True, timeout=90)
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    px = _png_pixels(shot.read_bytes())

    def count(hex_colour: str, tol: int = 12) -> int:
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(px - rgb).max(-1) <= tol).sum())

    assert count(BAR) > 3 * 400 * 15  # three accuracy bars, ~400 px long
    assert count(GOOD) > 10 * 30 * 30 * 0.8  # the confusion matrix's diagonal: ten full cells, digits written in


def test_report_of_differing_codes_without_pictures():
    """Figures and reports from given predictions: a device whose codes differ from torch's on two samples (one of
    them changing the class), 3 classes, samples of 5 values (not pictures: tables only)."""
    from uquant.evaluate import Evaluation, Source

    codes = np.array([[9, 1, 1], [1, 9, 1], [1, 1, 9], [9, 1, 1], [1, 9, 1], [1, 1, 9]])
    dev = codes.copy()
    dev[1, 0] = 2  # same class, one code off
    dev[4] = [1, 1, 9]  # another class
    labels = np.array([0, 1, 2, 0, 2, 2])
    ev = Evaluation(6, "samples", labels, 3, [Source("torch quantized", codes.argmax(1), codes),
                                              Source("device (host)", dev.argmax(1), dev, "torch quantized")],
                    np.zeros((6, 5), np.float32))
    assert ev.accuracy("torch quantized") == pytest.approx(5 / 6) and ev.accuracy("device (host)") == 1.0
    assert ev.agreement("device (host)") == ("torch quantized", 4, 5)
    assert list(ev.disagreements()) == [1, 4]
    assert ev.confusion().tolist() == [[2, 0, 0], [0, 1, 0], [0, 0, 3]]
    text = ev.text()
    assert "device (host)    100.0 % (6/6), codes identical to torch on 4/6 samples, same class as torch on 5/6" in text
    assert "the sources disagree (class or output codes) on 2 of 6 samples: #1, #4" in text
    page = ev.html()
    assert page.count("<svg") == 3 and "differ" in page  # two bar charts and the heat map; no sample pictures


def test_state_dict_model_and_csv_files(tmp_path):
    """The question's seed state_dict (--relu hidden) on its seven inputs from a .csv, labels from a .csv with a
    header: torch's classes are the expected ones, the device's codes torch's."""
    from uquant.examples import SEED_INPUTS, seed_expected, seed_state_dict
    from uquant.platforms import here

    torch.save(seed_state_dict(), tmp_path / "seed.pt")
    np.savetxt(tmp_path / "x.csv", SEED_INPUTS, delimiter=",", header="a,b", comments="")
    expected = seed_expected("x86", here())
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(map(str, expected)) + "\n")
    ev = uquant.evaluate(tmp_path / "seed.pt", tmp_path / "x.csv", tmp_path / "y.csv", relu="hidden")
    assert ev.source("torch quantized").preds.tolist() == expected and ev.accuracy("torch quantized") == 1.0
    assert ev.agreement("device (host)") == ("torch quantized", 7, 7) and ev.image_shape is None
    assert ev.confusion().sum() == 7 and ev.n_classes == 7  # the seed model has 7 outputs
    uquant.convert(tmp_path / "seed.pt", relu="hidden", engine="x86").save(tmp_path / "seed_q.py")
    sd = seed_state_dict()
    sd["out.scale"] = sd["out.scale"] * 2  # another output scale: not the model seed_q.py was made from
    torch.save(sd, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="seed_q.py was not converted from other.pt"):
        uquant.evaluate(tmp_path / "other.pt", tmp_path / "x.csv", module=tmp_path / "seed_q.py", relu="hidden")
