"""The `uquant` command, run as a user runs it: a subprocess in a scratch directory.

Error cases must exit with status 2 and one `uquant: error: ...` line, never a Python traceback.
Cheap variations (many inputs, more error messages) call uquant.cli.main() in-process, where an
escaping exception fails the test just as a traceback would.
"""
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
from conftest import platform_here
from uquant import cli
from uquant.examples import SEED_INPUTS, SeedTorchModel, seed_expected, seed_state_dict
from uquant.hosts import wasm


SCRIPT = Path(sys.executable).with_name("uquant")  # the installed console script, next to this python


# importing torch fails under it; uquant itself still comes from this checkout (the one under test), not from
# wherever the installed console script points
NO_TORCH = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).with_name("notorch")),
                                           str(Path(cli.__file__).parents[1])])}


def uquant_cmd(*args: str, cwd: Path, script: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [str(SCRIPT)] if script else [sys.executable, "-m", "uquant.cli"]
    return subprocess.run(cmd + list(args), cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def parse_report(out: str) -> dict[str, str]:
    """`uquant run` output lines 'name : value' -> {name: value}."""
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def torch_codes(engine: str, x) -> list[int]:
    old = torch.backends.quantized.engine
    try:
        return SeedTorchModel(engine).layer_codes(np.array([x], np.float32))[-1][0].tolist()
    finally:
        torch.backends.quantized.engine = old


def torch_codes_raw(engine: str, codes) -> list[int]:
    old = torch.backends.quantized.engine
    try:
        tm = SeedTorchModel(engine)
        q = torch._make_per_tensor_quantized_tensor(torch.tensor([codes], dtype=torch.uint8),
                                                    float(tm.quant.scale), int(tm.quant.zero_point))
        return tm.out(tm.input_layer(q)).int_repr()[0].tolist()
    finally:
        torch.backends.quantized.engine = old


def assert_clean_error(proc_or_pair, *fragments: str):
    """Exit status 2, exactly one stderr line `uquant: error: ...` containing the fragments, no traceback."""
    rc, out, err = proc_or_pair
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uquant: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def triple(p: subprocess.CompletedProcess):
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A scratch directory holding seed_sd.pt (torch.save of the seed state_dict)."""
    d = tmp_path_factory.mktemp("cli")
    torch.save(seed_state_dict(), d / "seed_sd.pt")
    return d


@pytest.fixture(scope="module")
def converts(work) -> dict[str, tuple[int, str, str]]:
    """`uquant convert` of seed_sd.pt to build/seed_q.py (x86) and build/seed_qnn.py (qnnpack), run
    concurrently: engine -> (exit status, stdout, stderr)."""
    base = [sys.executable, "-m", "uquant.cli", "convert", "seed_sd.pt", "--relu", "hidden"]
    extra = {"x86": ["-o", "build/seed_q.py"], "qnnpack": ["--engine", "qnnpack", "-o", "build/seed_qnn.py"]}
    procs = {e: subprocess.Popen(base + a, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for e, a in extra.items()}
    results = {}
    for e, p in procs.items():
        out, err = p.communicate(timeout=120)
        results[e] = (p.returncode, out, err)
    return results


@pytest.fixture(scope="module")
def built(work, converts) -> Path:
    """The scratch directory once both modules exist."""
    for e, (rc, out, err) in converts.items():
        assert rc == 0, f"uquant convert --engine {e} failed:\n{err}"
    return work


def main_inproc(capsys, *argv: str):
    """Run uquant.cli.main in this process -> (exit status, stdout, stderr)."""
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:  # argparse (usage errors, --version)
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------------------
# convert

def test_convert_prints_the_proof_summary(work, converts):
    rc, out, err = converts["x86"]
    assert rc == 0, err
    assert "Traceback" not in err and "Warning" not in err, err
    lines = out.splitlines()
    assert lines[0] == "build/seed_q.py: seed_sd, engine x86, 2 inputs -> 7 outputs"
    # the file written is exactly what the library generates for the same file and options
    lib = uquant.convert(str(work / "seed_sd.pt"), relu="hidden", module_name="seed_q")
    hi = lib.plan.steps[1].hi  # 255; 250 where int16 saturation bounds the first layer's sums (no VNNI)
    assert "input_layer: Linear 2 -> 3 + ReLU, 6 MACs, codes [0, 255]" in out
    assert f"out: Linear 3 -> 7, 21 MACs, codes [0, {hi}]" in out and hi == (250 if platform_here().saturates else 255)
    assert "requantization proven for all 10 output channels" in out
    assert "board memory: weights 27 B" in out
    assert "import seed_q; seed_q.predict(codes)" in out
    assert f"  platform: {platform_here().name} (this machine)" in lines
    assert "  platform-dependent: input_layer (1 of 3 channels can saturate int16 pair sums on platforms without VNNI " \
           "(x86-avx2, x86-avx512))." in out
    assert "  hint: for a model with the same bytes everywhere, quantize for qnnpack" in out
    assert (work / "build" / "seed_q.py").read_text() == lib.source


def test_convert_engine_qnnpack(work, converts):
    rc, out, err = converts["qnnpack"]
    assert rc == 0, err
    assert out.splitlines()[0] == "build/seed_qnn.py: seed_sd, engine qnnpack, 2 inputs -> 7 outputs"
    assert "exception(s)" in out  # qnnpack's requantization needs one for the seed model
    assert "Engine: qnnpack" in (work / "build" / "seed_qnn.py").read_text()


def test_convert_without_relu_is_a_clean_error(work):
    p = uquant_cmd("convert", "seed_sd.pt", "-o", "build/norelu_q.py", cwd=work)
    assert_clean_error(triple(p), "relu", "--relu hidden")
    assert p.stdout == ""
    assert not (work / "build" / "norelu_q.py").exists()


def test_convert_missing_file(work):
    p = uquant_cmd("convert", "nothere.pt", "--relu", "hidden", cwd=work)
    assert_clean_error(triple(p), "nothere.pt", "no such file")


# ---------------------------------------------------------------------------------------------------
# run

def test_run_float_input(built):
    p = uquant_cmd("run", "build/seed_q.py", "--input", "0,0.75", cwd=built)
    assert p.returncode == 0, p.stderr
    r = parse_report(p.stdout)
    assert r["runtime"] == "device runtime under CPython"
    assert r["input codes"] == "[0, 192]"
    assert r["output codes"] == str(torch_codes("x86", [0, 0.75]))
    assert r["class"] == "5"
    assert "class        : 5" in p.stdout.splitlines()


def test_run_raw_input(built):
    p = uquant_cmd("run", "build/seed_q.py", "--raw", "--input", "0,192", cwd=built, env=NO_TORCH)
    assert p.returncode == 0, p.stderr
    r = parse_report(p.stdout)
    assert r["output codes"] == str(torch_codes("x86", [0, 0.75]))
    assert "class        : 5" in p.stdout.splitlines()


def test_run_codes_from_a_file_and_many_samples(built, tmp_path, capsys):
    """--input @FILE (text or .npy), --codes (and its old name --raw), --data with one sample per row."""
    module = str(built / "build" / "seed_q.py")
    (tmp_path / "one.txt").write_text("0\n0.75\n")
    np.save(tmp_path / "one.npy", np.array([[0.0, 0.75]], np.float32))
    (tmp_path / "codes.txt").write_text("0 192")
    want = str(torch_codes("x86", [0, 0.75]))
    for args in (["--input", f"@{tmp_path / 'one.txt'}"], ["--input", f"@{tmp_path / 'one.npy'}"],
                 ["--codes", "--input", f"@{tmp_path / 'codes.txt'}"], ["--raw", "--input", "0,192"]):
        rc, out, err = main_inproc(capsys, "run", module, *args)
        assert rc == 0, err
        assert parse_report(out)["output codes"] == want, args
    x = SEED_INPUTS.numpy() if hasattr(SEED_INPUTS, "numpy") else np.asarray(SEED_INPUTS)
    np.save(tmp_path / "many.npy", x.astype(np.float32))
    rc, out, err = main_inproc(capsys, "run", module, "--data", str(tmp_path / "many.npy"))
    assert rc == 0, err
    lines = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == len(x) and f"samples      : {len(x)} from many.npy" in out
    assert [int(line.split("class ")[1].split()[0]) for line in lines] == seed_expected("x86", platform_here())
    assert lines[0].split("codes ")[1] == str(torch_codes("x86", x[0].tolist()))
    assert_clean_error(main_inproc(capsys, "run", module, "--input", f"@{tmp_path / 'nothere.txt'}"),
                       "nothere.txt: no such file", "@FILE")
    assert_clean_error(main_inproc(capsys, "run", module, "--codes", "--data", str(tmp_path / "many.npy")),
                       "--codes takes integer codes")


def test_run_micropython(built):
    reason = wasm.missing_reason()
    if reason is not None:
        if os.environ.get("UQUANT_ALLOW_SKIP") == "1":
            pytest.skip(reason)
        pytest.fail(f"MicroPython wasm host unavailable: {reason}", pytrace=False)
    p = uquant_cmd("run", "build/seed_q.py", "--micropython", "--input", "0,0.75", cwd=built)
    assert p.returncode == 0, p.stderr
    r = parse_report(p.stdout)
    assert r["runtime"] == "device runtime under MicroPython (wasm)"
    assert r["output codes"] == str(torch_codes("x86", [0, 0.75]))
    assert "class        : 5" in p.stdout.splitlines()


def test_run_wrong_input_count(built):
    p = uquant_cmd("run", "build/seed_q.py", "--input", "0,0.75,1", cwd=built)
    assert_clean_error(triple(p), "seed_q.py takes 2 input values, got 3")


def test_run_missing_module(work):
    p = uquant_cmd("run", "build/nothere_q.py", "--input", "0,1", cwd=work)
    assert_clean_error(triple(p), "nothere_q.py", "no such file")


def test_version(work):
    assert SCRIPT.is_file(), f"console script not installed at {SCRIPT}"
    p = uquant_cmd("--version", cwd=work, script=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"uquant {uquant.__version__}"


# ---------------------------------------------------------------------------------------------------
# in-process: the seven seed inputs, engines, and more error messages

def test_seed_inputs_through_run(built, capsys):
    classes = []
    for x in SEED_INPUTS.tolist():
        rc, out, err = main_inproc(capsys, "run", str(built / "build" / "seed_q.py"), "--input", ",".join(map(str, x)))
        assert rc == 0, err
        r = parse_report(out)
        assert r["output codes"] == str(torch_codes("x86", x))
        classes.append(int(r["class"]))
    assert classes == seed_expected("x86", platform_here())


def test_engines_give_their_own_torch_codes(built, capsys):
    # (0, 24) is an input where torch's x86 and qnnpack kernels disagree; each module follows its engine.
    assert torch_codes_raw("x86", [0, 24]) != torch_codes_raw("qnnpack", [0, 24])
    for module, engine in (("seed_q.py", "x86"), ("seed_qnn.py", "qnnpack")):
        rc, out, err = main_inproc(capsys, "run", str(built / "build" / module), "--raw", "--input", "0,24")
        assert rc == 0, err
        assert parse_report(out)["output codes"] == str(torch_codes_raw(engine, [0, 24]))


@pytest.mark.parametrize("args, fragments", [
    (["--raw", "--input", "0,300"], ["inputs must be ints in [0, 255], got 300"]),
    (["--raw", "--input", "0,-1"], ["got -1"]),
    (["--raw", "--input", "0,1.5"], ["--codes takes integer codes", "'0,1.5'"]),
    (["--input", "0,abc"], ["--input takes comma-separated numbers", "'0,abc'"]),
    (["--input", "1"], ["takes 2 input values, got 1"]),
    (["--input", ""], ["takes 2 input values, got 0"]),
    (["--raw", "--input", "1,2,3"], ["takes 2 input values, got 3"]),
])
def test_run_input_errors(built, capsys, args, fragments):
    assert_clean_error(main_inproc(capsys, "run", str(built / "build" / "seed_q.py"), *args), *fragments)


def test_usage_errors_exit_2(built, capsys):
    rc, out, err = main_inproc(capsys, "run", str(built / "build" / "seed_q.py"))  # --input is required
    assert rc == 2 and "--input" in err and "Traceback" not in err
    rc, out, err = main_inproc(capsys, "convert", str(built / "seed_sd.pt"), "--engine", "arm")
    assert rc == 2 and "invalid choice" in err
    rc, out, err = main_inproc(capsys)
    assert rc == 2


def test_convert_bad_relu_names(work, capsys):
    assert_clean_error(main_inproc(capsys, "convert", str(work / "seed_sd.pt"), "--relu", "nope",
                                   "-o", str(work / "build" / "bad_q.py")), "relu", "nope")


def test_run_corrupted_module_is_a_clean_error(built, capsys):
    src = (built / "build" / "seed_q.py").read_text()
    bad = built / "build" / "corrupt_q.py"
    bad.write_text(src.replace("'seed_sd', 0x", "'seed_sd', 0x1", 1))
    assert_clean_error(main_inproc(capsys, "run", str(bad), "--input", "0,1"), "checksum")


def test_help_needs_no_torch(tmp_path, report):
    """`uquant --help` (and each verb's) starts without importing torch, which takes a second or two."""
    for argv in (["--help"], ["predict", "--help"], ["deploy", "--help"], ["sim", "--help"], ["explain", "--help"]):
        p = uquant_cmd(*argv, cwd=tmp_path, script=True, env=NO_TORCH)
        assert p.returncode == 0 and "usage: uquant" in p.stdout, p.stderr
    best = min(_timed(lambda: uquant_cmd("--help", cwd=tmp_path, script=True)) for _ in range(3))
    report(f"uquant --help: {best:.2f} s (best of 3, without importing torch)")


def _timed(fn) -> float:
    import time

    t = time.perf_counter()
    fn()
    return time.perf_counter() - t



def test_python_api_takes_what_users_pass():
    """quantize_input takes the converted model itself; run() of a wrong-sized tensor says what the model takes."""
    m = uquant.convert(seed_state_dict(), relu="hidden", name="seed")
    assert np.array_equal(uquant.quantize_input(SEED_INPUTS, m), uquant.quantize_input(SEED_INPUTS, m.plan.input))
    assert np.array_equal(m.run(torch.from_numpy(SEED_INPUTS)), m.run(SEED_INPUTS))
    with pytest.raises(ValueError, match=r"seed: expected samples of 2 input values, got an array of shape \(7,\) "
                                         r"\(the model takes 2 ints in \[0, 255\]"):
        m.run(torch.randn(7))


def test_torchscript_commands_print_no_torch_warnings(tmp_path):
    """torch's C++ deprecation warning (Quantizer.cpp) used to reach stderr on every TorchScript file."""
    from randmodels import fx_mlp_file

    model = fx_mlp_file(tmp_path / "mlp.pt")
    for argv in (["info", str(model)], ["convert", str(model), "-o", str(tmp_path / "m_q.py")]):
        p = uquant_cmd(*argv, cwd=tmp_path, script=True)
        assert p.returncode == 0 and p.stderr == "", p.stderr


def test_wrong_kinds_of_file_get_their_own_reasons(tmp_path, built):
    """A directory, a Python file, a generated module, a torch file given to `run`, and a whole model pickled from
    a script whose class is not importable here: each is named for what it is."""
    module = built / "build" / "seed_q.py"
    script = tmp_path / "make_mlp.py"
    script.write_text("import torch\nprint('hello')\n")
    cases = [
        (["convert", str(tmp_path)], "is a directory; pass the model file"),
        (["convert", str(script)], "is a text file (Python source?), not a saved model"),
        (["convert", str(module)], "is a module uquant generated (the board's side), not a torch model"),
        (["run", str(built / "seed_sd.pt"), "--input", "1,2"], "is a binary file (a torch model?), not a module uquant "
                                                              "generated: convert it first"),
        (["run", str(tmp_path), "--input", "1,2"], "is a directory; pass a module uquant generated"),
        (["run", str(script), "--input", "1,2"], "is not a module uquant generated"),
    ]
    pickled = tmp_path / "whole.pt"
    subprocess.run([sys.executable, "-c", "import torch\nclass CNN(torch.nn.Module):\n    pass\n"
                    f"torch.save(CNN(), {str(pickled)!r})\n"], check=True)
    cases += [(["convert", str(pickled), "--allow-pickle"], "it holds a pickled __main__.CNN, a class defined in the "
                                                            "script that saved it, which is not importable here")]
    for argv, words in cases:
        p = uquant_cmd(*argv, cwd=tmp_path, script=True)
        assert p.returncode == 2 and p.stderr.startswith("uquant: error: ") and words in p.stderr, (argv, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1


def test_info_on_a_generated_module(built):
    """`uquant info build/m_q.py --board pico`: the module's header and whether it fits, not a pickle message."""
    p = uquant_cmd("info", "build/seed_q.py", "--board", "pico", cwd=built, script=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("seed_q.py -- generated by uquant") and "board pico: Raspberry Pi Pico" in p.stdout
    assert "  RAM    ~" in p.stdout and "fits" in p.stdout


@pytest.mark.skipif(wasm.missing_reason() is not None, reason=str(wasm.missing_reason()))
def test_info_measures_the_heap_on_the_32_bit_port(built, capsys):
    """`uquant info --board pico --measure`: the heap the model and the runtime hold, measured on the wasm port
    (issue 14: what the board will really hold), beside the estimate."""
    rc, out, err = main_inproc(capsys, "info", str(built / "build" / "seed_q.py"), "--board", "pico", "--measure")
    assert rc == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("  measured  on the 32-bit MicroPython"))
    model, runtime = (int(v) for v in re.search(r"the model holds (\d+) B after import, uquant_rt (\d+) B",
                                                 line).groups())
    assert 27 < model < 8000 and 5000 < runtime < 40000, line


def test_freeze_prints_the_boards_own_build_command(built, tmp_path, capsys):
    """`freeze --board pico` names the firmware board of the profile (issue 15: it printed `make BOARD=<your board>`);
    a profile without one says so instead of leaving a placeholder unexplained."""
    rc, out, err = main_inproc(capsys, "freeze", str(built / "build" / "seed_q.py"), "--board", "pico", "-o",
                               str(tmp_path / "frozen"))
    assert rc == 0, err
    assert "in MicroPython's ports/rp2 directory run:\n  make BOARD=RPI_PICO FROZEN_MANIFEST=" in out, out
    assert "<your board>" not in out and "<board>" not in out


def test_run_help_says_how_to_get_micropython(capsys):
    """`run --help` names the make targets the README explains (`make demo`, `make test`), not an unexplained one."""
    rc, out, _ = main_inproc(capsys, "run", "--help")
    assert rc == 0
    text = " ".join(out.split())
    assert "the WebAssembly port in node_modules, which `make demo` and `make test` install" in text, text
    assert "make setup" not in text
