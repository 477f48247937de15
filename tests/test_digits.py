"""The shipped example, examples/digits.py: a CNN trained on sklearn's 8x8 digits, quantized per engine,
converted, and compared with torch on every test sample (accuracies and board memory go to the summary)."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

import uquant
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("digits_example", ROOT / "examples" / "digits.py")
digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits)

# x86 runs conv on oneDNN, whose requantization uquant models with the best formula known, not a proven one:
# there a few differing output codes are reported rather than fatal (predictions must still agree).
X86_MAX_CODE_DIFFS = 3

pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning")


@pytest.fixture(scope="module")
def trained():
    """(float model, x_train, y_train, x_test, y_test): trained once, the example's own settings."""
    x_train, y_train, x_test, y_test = digits.load_digits_data()
    model = digits.train(digits.build_model(), x_train, y_train)
    return model, x_train, y_train, x_test, y_test


def test_split_and_scaling():
    x_train, y_train, x_test, y_test = digits.load_digits_data()
    assert x_train.shape == (1400, 1, 8, 8) and x_test.shape == (397, 1, 8, 8)
    assert x_train.dtype == torch.float32 and float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    assert sorted(set(y_test.tolist())) == list(range(10))
    again = digits.load_digits_data()
    assert torch.equal(again[0], x_train) and torch.equal(again[3], y_test)  # the split is fixed


def check_readme_figures(engine: str, r: dict, mem: dict) -> None:
    """The README's digits figures are this run's: x86 and fbgemm on an x86-vnni machine (where they were
    measured; other platforms change the exception counts), qnnpack everywhere."""
    import re

    from conftest import ROOT, platform_here

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## A real example: digits"):text.index("## Speed: ")]
    if engine == "qnnpack":
        m = re.search(r"with `qnnpack`\s+torch's quantized accuracy is ([\d.]+) and the parameters take (\d+) bytes "
                      r"\(no exceptions\)", section)
        assert m and float(m.group(1)) == round(r["quant_acc"], 4) and int(m.group(2)) == mem["params"]
        assert mem["exceptions"] == 0
        return
    if platform_here().name != "x86-vnni":
        return
    if engine == "x86":
        assert f"  parameters           {mem['params']} bytes ({mem['exceptions']} exception-table entries)" in section
        assert f"  weights              {mem['weights']} bytes" in section
        assert f"  torch quantized       {r['quant_acc']:.4f}" in section and f"  float                 " \
            f"{r['float_acc']:.4f}" in section
    else:
        assert f"With `--engine fbgemm` the figures are the same but for {mem['params']} parameter bytes " \
               f"({mem['exceptions']} exceptions)" in section


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
def test_digits_matches_torch(engine, trained, report):
    model, x_train, _, x_test, y_test = trained
    qmodel = digits.quantize(model, x_train, engine)
    converted = digits.convert(qmodel, x_train[:8], engine)  # raises if torch and uquant disagree on these
    r = digits.evaluate(model, qmodel, converted, x_test, y_test, engine)
    mem = digits.memory_report(converted)
    report(f"digits {engine:<8}: accuracy float {r['float_acc']:.4f}, torch quantized {r['quant_acc']:.4f}, "
           f"uquant {r['uquant_acc']:.4f} on {r['n']} test samples; {r['codes_differ']} of {r['codes']} output "
           f"codes differ from torch; board: weights {mem['weights']} B, params {mem['params']} B "
           f"({mem['exceptions']} exceptions), buffers {mem['buffers']} B {mem['buffer_list']}, "
           f"scratch {mem['scratch']} B; {1e3 * r['run_seconds'] / r['n']:.1f} ms/sample in CPython")

    check_readme_figures(engine, r, mem)
    assert r["float_acc"] > 0.9
    assert r["quant_acc"] > 0.9
    got, want = r["uquant_codes"], r["torch_codes"]
    assert got.shape == want.shape == (len(x_test), 10)
    assert np.array_equal(got.argmax(-1), want.argmax(-1)), "uquant and torch predict differently"
    assert r["pred_differ"] == 0 and r["uquant_acc"] == r["quant_acc"]
    if engine == "x86":
        assert r["codes_differ"] <= X86_MAX_CODE_DIFFS
    else:
        assert r["codes_differ"] == 0
        # the same thing as floats: torch's dequantized output, bit for bit
        out = converted.plan.output
        with digits._torch_state(engine=engine), torch.no_grad():
            want_f = qmodel(x_test).numpy()
        assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want_f)


def test_digits_in_micropython(trained, report):
    """The generated module inside the real 32-bit MicroPython interpreter: same bytes, nothing allocated."""
    from uquant.hosts import wasm

    reason = wasm.missing_reason()
    if reason is not None:
        if os.environ.get("UQUANT_ALLOW_SKIP") == "1":
            pytest.skip(f"MicroPython wasm host unavailable: {reason}")
        pytest.fail(f"MicroPython wasm host unavailable: {reason} (set UQUANT_ALLOW_SKIP=1 to skip)", pytrace=False)
    model, x_train, _, x_test, y_test = trained
    engine = "qnnpack"
    qmodel = digits.quantize(model, x_train, engine)
    converted = digits.convert(qmodel, x_train[:8], engine)
    x = x_test[:100]
    codes, preds, heap = digits.run_micropython(converted, x)
    want = digits.torch_codes(qmodel, x, converted, engine)
    report(f"digits {engine} in MicroPython (wasm): {int((codes != want).sum())} of {want.size} codes differ "
           f"from torch on {len(x)} samples; run() allocates {heap} bytes")
    assert np.array_equal(codes, want)
    assert np.array_equal(preds, want.argmax(-1))
    assert heap == 0


def test_digits_script(tmp_path, capsys):
    """main() end to end: writes the module, prints the figures, exits 0."""
    out = tmp_path / "digits_q.py"
    assert digits.main(["--engine", "qnnpack", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "output codes differing from torch's int_repr(): 0 of 3970" in text
    assert "mpremote cp" in text and "import digits_q" in text
    source = out.read_text()
    assert source.startswith("# digits_q.py -- generated by uquant")
    # the REPL snippet it prints gives the answer it prints, with the module it wrote
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith(">>> x = bytes("))
    x = eval(lines[at].split("=", 1)[1].split("#")[0])  # noqa: S307 - our own output: bytes([...])
    assert lines[at + 1].strip() == ">>> digits_q.predict(x)"
    module = uquant.runtime.load_source(source, "digits_q")
    assert len(x) == 64 and module.predict(x) == int(lines[at + 2])
