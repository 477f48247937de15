"""`uquant quantize` / uquant.quantize: torch's own post-training quantization, driven for the user.

A float MLP and a small CNN (trained a few steps on sklearn's digits, or synthetic data without sklearn) are
quantized through the command (a subprocess, as a user runs it) and the Python API, for x86 and qnnpack. The
quantized TorchScript file must convert, the module `--convert` writes must give torch's bytes (also on inputs
beyond the calibrated range), the qconfig must make the model portable (no platform-dependent step), and user
errors must be one `uquant: error: ...` line.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import uquant
from uquant import cli, engines, runtime
from uquant.api import quantize_input, torch_engine

CNN_SOURCE = '''import torch.nn as nn


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))
'''


def digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # synthetic: 10 noisy prototypes
        r = np.random.default_rng(0)
        protos = r.random((10, 64))
        y = r.integers(0, 10, 600)
        return np.clip(protos[y] + r.normal(0, 0.1, (600, 64)), 0, 1).astype(np.float32), y
    d = load_digits()
    return (d.data / 16).astype(np.float32), d.target.astype(np.int64)


def train(model, x, y, steps=60):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.as_tensor(y)).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Trained float models and their files: mlp_ts.pt (traced), mlp_pickle.pt (torch.save(model)), cnn_sd.pt (a
    state_dict) with cnnclass.py, and the digits as x.npy / y.npy and the first 300 as x.csv / y.csv."""
    d = tmp_path_factory.mktemp("quantize")
    x, y = digits()
    xt = torch.from_numpy(x)
    torch.manual_seed(0)
    mlp = train(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), xt, y)
    (d / "cnnclass.py").write_text(CNN_SOURCE)
    from uquant.quantize import build_class

    torch.manual_seed(1)
    cnn = train(build_class(f"{d / 'cnnclass.py'}:CNN"), xt.reshape(-1, 1, 8, 8), y)  # (a file: torch.jit.script)
    torch.jit.save(torch.jit.trace(mlp, xt[:1]), str(d / "mlp_ts.pt"))
    torch.save(mlp, d / "mlp_pickle.pt")
    torch.save(cnn.state_dict(), d / "cnn_sd.pt")
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.savetxt(d / "x.csv", x[:300], delimiter=",", fmt="%.6g")
    np.savetxt(d / "y.csv", y[:300], fmt="%d")
    return {"dir": d, "x": x, "y": y, "mlp": mlp, "cnn": cnn}


def uquant_cmd(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(uquant.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "uquant.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def probe_inputs(x: np.ndarray) -> np.ndarray:
    """Calibration-like samples and samples far beyond the calibrated range (every input code reached)."""
    r = np.random.default_rng(0)
    return np.concatenate([x[:100], r.uniform(-2, 3, (100, x.shape[1])).astype(np.float32)])


def torch_out(model_path: Path, engine: str, x: np.ndarray, shape) -> np.ndarray:
    """The quantized TorchScript model's float outputs, one sample per call (as the device runs)."""
    with torch_engine(engine), torch.no_grad():
        m = torch.jit.load(str(model_path))
        xs = torch.from_numpy(x).reshape((-1,) + shape)
        return np.concatenate([m(xs[i:i + 1]).numpy().reshape(1, -1) for i in range(len(xs))])


def assert_module_is_torch(module_path: Path, model_path: Path, engine: str, x: np.ndarray, shape):
    """The written module's outputs, dequantized, equal torch's quantized model's on every sample (same bytes)."""
    conv = uquant.convert(model_path, engine=engine, input_shape=shape if len(shape) > 1 else None)
    assert conv.plan.platform_dependent == [], conv.plan.platform_dependent
    mod = runtime.load_file(module_path)
    codes = quantize_input(x, conv.plan.input)
    got = np.array([list(mod.run([int(v) for v in row])) for row in codes])
    assert got.min() >= conv.plan.output.qmin
    want = torch_out(model_path, engine, x, shape)
    assert np.array_equal(engines.dequantize(got, conv.plan.output.scale, conv.plan.output.zero_point), want)
    assert np.array_equal(got, conv.run(x))  # the module on disk is the conversion's


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_cli_quantize_convert(work, which, engine, report):
    d = work["dir"]
    if which == "mlp":
        args, shape, data, labels = ["mlp_ts.pt"], (64,), "x.npy", "y.npy"
    else:
        args, shape, data, labels = ["cnn_sd.pt", "--class", "cnnclass.py:CNN", "--input-shape", "1,8,8"], \
            (1, 8, 8), "x.csv", "y.csv"
    out = f"build/{which}_{engine}_q.pt"
    p = uquant_cmd("quantize", *args, "--data", data, "--labels", labels, "--engine", engine, "-o", out,
                   "--convert", cwd=d)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr  # no torch warnings, no noise
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"{out}: ") and f"engine {engine}" in lines[0]
    assert lines[1].strip().startswith("qconfig: ")
    acc = next(line for line in lines if "accuracy: float" in line)
    assert "quantized" in acc and "agree" in acc
    assert any("portable: uquant's proof finds no step" in line for line in lines)
    assert any(line.startswith(f"build/{which}_{engine}_q.py: ") for line in lines)  # convert's own summary
    assert any("portable: the same bytes on every platform" in line for line in lines)
    report(f"uquant quantize {which} ({engine}): {acc.strip()}")
    assert_module_is_torch(d / out.replace(".pt", ".py"), d / out, engine, probe_inputs(work["x"]), shape)


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
def test_api_quantize(work, engine):
    x, y = work["x"], work["y"]
    for name, model, shape in (("mlp", work["mlp"], None), ("cnn", work["cnn"], (1, 8, 8))):
        q = uquant.quantize(model, torch.from_numpy(x[:400]), engine=engine, labels=y[:400], input_shape=shape)
        assert q.engine == engine and q.flow == "fx"
        assert q.portability == []
        assert 0.8 < q.quant_acc and abs(q.quant_acc - q.float_acc) < 0.05 and q.agreement > 0.9
        conv = q.convert()  # checked against torch on 64 calibration samples by uquant.convert itself
        assert conv.plan.platform_dependent == []
        xs = probe_inputs(x)
        with torch_engine(engine), torch.no_grad():
            xt = torch.from_numpy(xs).reshape((-1,) + (shape or (64,)))
            want = np.concatenate([q.model(xt[i:i + 1]).numpy().reshape(1, -1) for i in range(len(xt))])
        got = engines.dequantize(conv.run(xs), conv.plan.output.scale, conv.plan.output.zero_point)
        assert np.array_equal(got, want), name


def test_api_inputs(work, tmp_path):
    """A path (with its options), a TorchScript module in memory, ndarray data; the float model is left alone."""
    x, y = work["x"], work["y"]
    before = {k: v.clone() for k, v in work["mlp"].state_dict().items()}
    q1 = uquant.quantize(work["mlp"], x[:300], engine="qnnpack")
    assert all(torch.equal(v, work["mlp"].state_dict()[k]) for k, v in before.items())
    q2 = uquant.quantize(torch.jit.load(str(work["dir"] / "mlp_ts.pt")), x[:300], engine="qnnpack")
    q3 = uquant.quantize(work["dir"] / "mlp_pickle.pt", work["dir"] / "x.npy", engine="qnnpack", allow_pickle=True,
                         labels=work["dir"] / "y.npy")
    assert q3.n_labelled == len(y)
    path = q2.save(tmp_path / "m_q.pt")
    xs = probe_inputs(x)  # the same quantized model from a module and from its traced TorchScript
    assert np.array_equal(q1.convert().run(xs), uquant.convert(path, engine="qnnpack").run(xs))
    # a traced custom CNN (read from its graph) quantizes nearly as the module does: FX fuses the traced graph's
    # conv + relu (the module's `.relu()` method call it leaves apart), so a few outputs move by a code
    xc = x[:300].reshape(-1, 1, 8, 8)
    traced = torch.jit.trace(work["cnn"], torch.from_numpy(xc[:1]))
    a, b = (uquant.quantize(m, xc, engine="x86").convert() for m in (work["cnn"], traced))
    assert np.abs(a.run(probe_inputs(x)) - b.run(probe_inputs(x))).max() <= 2
    # a scripted Sequential is rebuilt as the very same modules
    seq = nn.Sequential(*work["mlp"])
    s1, s2 = (uquant.quantize(m, x[:300], engine="x86").convert() for m in (seq, torch.jit.script(seq)))
    assert np.array_equal(s1.run(xs), s2.run(xs))
    c = uquant.quantize(torch.jit.script(work["cnn"]), xc, engine="x86").convert()  # scripted: read as traced
    assert np.array_equal(b.run(probe_inputs(x)), c.run(probe_inputs(x)))

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            if bool(x.sum() > 0):
                return self.fc(x)
            return self.fc(-x)

    with pytest.raises(uquant.ConversionError, match="torch.jit.trace"):
        uquant.quantize(torch.jit.script(Branchy()), x[:10])
    import uquant.quantize as submodule  # importing the submodule binds its name on the package

    assert uquant.quantize is submodule or callable(uquant.quantize)
    assert uquant.quantize(work["mlp"], x[:50], engine="qnnpack").engine == "qnnpack"


def test_qconfig_choice():
    """x86/fbgemm: 7-bit weights (no int16 pair can saturate); x86: affine weights (convs stay on fbgemm)."""
    from uquant.quantize import PORTABLE_WEIGHTS, qconfig_mapping

    lo, hi = PORTABLE_WEIGHTS
    assert 2 * 255 * max(-lo, hi) <= 32767
    for engine in ("x86", "fbgemm"):
        mapping, why = qconfig_mapping(engine)
        w = mapping.global_qconfig.weight()
        assert (w.quant_min, w.quant_max) == (lo, hi) and why.startswith("qconfig: ") and "\n" not in why
        assert w.qscheme == (torch.per_channel_affine if engine == "x86" else torch.per_channel_symmetric)
        assert not mapping.global_qconfig.activation().reduce_range
    _, why = qconfig_mapping("qnnpack")
    assert "qnnpack" in why


def test_torch_default_x86_is_not_portable(work):
    """Why the qconfig changes: torch's default x86 qconfig (reduce_range activations) leaves saturating pairs."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    xt = torch.from_numpy(work["x"][:300])
    with torch_engine("x86"), torch.no_grad():
        p = prepare_fx(__import__("copy").deepcopy(work["mlp"]), get_default_qconfig_mapping("x86"), (xt[:1],))
        p(xt)
        conv = uquant.convert(convert_fx(p), xt[:8], engine="x86")
    assert conv.plan.platform_dependent  # while uquant.quantize's qconfig gives none (tests above)


def test_pt2e(work, tmp_path):
    pytest.importorskip("torchao")
    d = work["dir"]
    p = uquant_cmd("quantize", "mlp_ts.pt", "--data", "x.csv", "--labels", "y.csv", "--pt2e", "-o",
                   str(tmp_path / "m_q.pt2"), "--convert", cwd=d)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert "XNNPACKQuantizer" in p.stdout and "accuracy: float" in p.stdout
    conv = uquant.convert(tmp_path / "m_q.pt2")
    assert conv.plan.input.formula == "pt2e"
    q = uquant.quantize(work["mlp"], work["x"][:200], pt2e=True)
    xs = work["x"][:200]
    with torch.no_grad():
        want = np.concatenate([q.model(torch.from_numpy(xs[i:i + 1])).numpy() for i in range(len(xs))])
    got = engines.dequantize(conv.run(xs), conv.plan.output.scale, conv.plan.output.zero_point)
    assert got.shape == want.shape  # within one code of torch's float32 program (README, PT2E)
    assert np.abs(got - want).max() <= conv.plan.output.scale * 1.0001 + 1e-6
    p = uquant_cmd("quantize", "mlp_ts.pt", "--data", "x.csv", "--pt2e", "-o", "m_q.pt", cwd=d)
    assert p.returncode == 2 and "*.pt2" in p.stderr


def run_cli(*args, capsys) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error(res, *fragments):
    rc, out, err = res
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uquant: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_errors(work, tmp_path, capsys, monkeypatch):
    d = work["dir"]
    monkeypatch.chdir(d)
    q = ["quantize", "mlp_ts.pt", "-o", str(tmp_path / "q.pt")]
    assert_error(run_cli(*q, "--data", "missing.npy", capsys=capsys), "missing.npy: no such file")
    (tmp_path / "bad.npy").write_bytes(b"not an npy file at all")
    assert_error(run_cli(*q, "--data", str(tmp_path / "bad.npy"), capsys=capsys), "not a numeric .npy file")
    (tmp_path / "bad.csv").write_text("a,b\n1,oops\n")
    assert_error(run_cli(*q, "--data", str(tmp_path / "bad.csv"), capsys=capsys), "bad.csv")
    (tmp_path / "x.txt.json").write_text("{}")
    assert_error(run_cli(*q, "--data", str(tmp_path / "x.txt.json"), capsys=capsys), "takes a .npy or .csv")
    np.save(tmp_path / "nan.npy", np.full((3, 64), np.nan, np.float32))
    assert_error(run_cli(*q, "--data", str(tmp_path / "nan.npy"), capsys=capsys), "NaN")
    np.save(tmp_path / "short.npy", np.zeros((3, 10), np.float32))
    assert_error(run_cli(*q, "--data", str(tmp_path / "short.npy"), capsys=capsys), "do not run through the float")
    assert_error(run_cli(*q, "--data", "x.npy", "--labels", "y.csv", capsys=capsys), "300 labels for 1797 samples")
    # the CNN's rows need --input-shape
    assert_error(run_cli("quantize", "cnn_sd.pt", "--class", "cnnclass.py:CNN", "--data", "x.csv", "-o",
                         str(tmp_path / "c.pt"), capsys=capsys), "--input-shape")
    # a state_dict without its class; a class that is not there
    assert_error(run_cli("quantize", "cnn_sd.pt", "--data", "x.csv", capsys=capsys), "--class")
    assert_error(run_cli("quantize", "cnn_sd.pt", "--class", "cnnclass.py:Nope", "--data", "x.csv", capsys=capsys),
                 "no nn.Module class 'Nope'")
    # an already quantized model: a TorchScript file, and an object
    qpath = uquant.quantize(work["mlp"], work["x"][:100], engine="qnnpack").save(tmp_path / "already.pt")
    assert_error(run_cli("quantize", str(qpath), "--data", "x.npy", capsys=capsys), "already quantized",
                 "uquant convert")
    with pytest.raises(uquant.ConversionError, match="already quantized"):
        uquant.quantize(torch.jit.load(str(qpath)), work["x"][:10])
    with torch_engine("qnnpack"):
        qmodel = uquant.quantize(work["mlp"], work["x"][:100], engine="qnnpack").model
    with pytest.raises(uquant.ConversionError, match="already quantized"):
        uquant.quantize(qmodel, work["x"][:10], engine="qnnpack")
    torch.save(qmodel.state_dict(), tmp_path / "q_sd.pt")  # a quantized state_dict
    assert_error(run_cli("quantize", str(tmp_path / "q_sd.pt"), "--class", "cnnclass.py:CNN", "--data", "x.npy",
                         capsys=capsys), "already quantized")
    with pytest.raises(uquant.ConversionError, match="engine 'arm'"):
        uquant.quantize(work["mlp"], work["x"][:10], engine="arm")


def test_pickle_needs_allow_pickle(work, tmp_path):
    """As a user runs it: a whole pickled model is refused without --allow-pickle (one line), taken with it."""
    d = work["dir"]
    p = uquant_cmd("quantize", "mlp_pickle.pt", "--data", "x.csv", "-o", str(tmp_path / "p.pt"), cwd=d)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith("uquant: error: mlp_pickle.pt: it holds a pickled Python object")
    assert len(p.stderr.strip().splitlines()) == 1
    p = uquant_cmd("quantize", "mlp_pickle.pt", "--allow-pickle", "--data", "x.csv", "--engine", "fbgemm", "-o",
                   str(tmp_path / "p.pt"), cwd=d)
    assert p.returncode == 0, p.stderr
    assert "next: uquant convert" in p.stdout
    assert uquant.convert(tmp_path / "p.pt", engine="fbgemm").plan.platform_dependent == []
