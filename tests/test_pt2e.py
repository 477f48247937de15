"""PT2E (torchao prepare_pt2e / convert_pt2e) programs, in memory and as .pt2 files: agreement with torch, per op.

torch runs a PT2E program's linear, conv and average pooling as float32 sums in an unknown order, so the device can
only agree within one code there; every other step (quantize, dequantize, element-wise tables, add, mul, cat, max
pooling) must be exact. The fuzz below compares every quantized value of random programs with torch's own (captured
at its quantize nodes), each op on the samples where its inputs already equal torch's, and prints the exact-match
fraction and maximum difference per op and quantizer (the README publishes them).
Skipped without torchao (install: pip install --no-deps torchao==0.18.0; it imports with torch 2.13.0).
"""
from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

torchao = pytest.importorskip("torchao")
warnings.filterwarnings("ignore")

from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: E402
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (  # noqa: E402
    X86InductorQuantizer, get_default_x86_inductor_quantization_config)
from torchao.testing.pt2e._xnnpack_quantizer import (  # noqa: E402
    XNNPACKQuantizer, get_symmetric_quantization_config)

import uquant  # noqa: E402
from uquant import pt2e_ops  # noqa: E402
from uquant.api import Converted  # noqa: E402
from uquant.ir import ConversionError, Reshape  # noqa: E402
from uquant.loaders.pt2e import from_pt2e  # noqa: E402
from uquant.lower import lower  # noqa: E402

B = 64
EXACT = {"add", "mul", "cat", "table", "maxpool"}  # must equal torch on every element
ROUNDED = {"dense", "conv", "avgpool"}  # float32 sums in torch: within one code


# ---- random models covering the op set ----------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, r):
        super().__init__()
        k, h, n = (int(v) for v in r.integers(1, 65, 3))
        self.shape = (k,)
        self.a, self.b = nn.Linear(k, h), nn.Linear(h, n)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class CNN(nn.Module):
    def __init__(self, r):
        super().__init__()
        c1, c2, n = (int(v) for v in r.integers(1, 17, 3))
        self.shape = (1, 8, 8)
        self.c1, self.c2 = nn.Conv2d(1, c1, 3, padding=1), nn.Conv2d(c1, c2, 3)
        self.fc = nn.Linear(c2 * 4, n)

    def forward(self, x):
        y = F.max_pool2d(torch.relu(self.c1(x)), 2)
        return self.fc(torch.flatten(torch.relu(self.c2(y)), 1))


class Residual(nn.Module):
    """conv -> relu -> conv -> add(+relu) with the skip -> global average -> linear."""

    def __init__(self, r):
        super().__init__()
        c, n = (int(v) for v in r.integers(2, 13, 2))
        self.shape = (2, 6, 6)
        self.c1, self.c2 = nn.Conv2d(2, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.fc = nn.Linear(c, n)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.relu(self.c2(y) + y)
        return self.fc(y.mean((2, 3)))


class Gate(nn.Module):
    """Two linear branches multiplied (a gated unit), then added, then hardtanh and a float sigmoid stretch."""

    def __init__(self, r):
        super().__init__()
        k, h, n = (int(v) for v in r.integers(2, 33, 3))
        self.shape = (k,)
        self.a, self.b, self.c, self.o = nn.Linear(k, h), nn.Linear(k, h), nn.Linear(k, h), nn.Linear(h, n)

    def forward(self, x):
        y = self.a(x) * self.b(x)
        y = F.hardtanh(y + self.c(x))
        return self.o(torch.sigmoid(y))


class Branches(nn.Module):
    """conv1d branches concatenated along channels, conv1d, average then max pooling in float, linear."""

    def __init__(self, r):
        super().__init__()
        c1, c2, n = (int(v) for v in r.integers(1, 9, 3))
        self.shape = (3, 16)
        self.a, self.b = nn.Conv1d(3, c1, 3, padding=1), nn.Conv1d(3, c2, 5, padding=2)
        self.c = nn.Conv1d(c1 + c2, 6, 3)
        self.fc = nn.Linear(6 * 6, n)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), self.b(x)], 1)
        y = F.max_pool1d(F.avg_pool1d(torch.relu(self.c(y)), 2), 2, 1)
        return self.fc(torch.flatten(y, 1))


MODELS = [MLP, CNN, Residual, Gate, Branches]


def uint8_config(per_channel=True):
    """XNNPACK's annotation with uint8 (asymmetric, [0, 255]) activations, as X86Inductor quantizes them."""
    c = get_symmetric_quantization_config(is_per_channel=per_channel)
    act = dataclasses.replace(c.input_activation, dtype=torch.uint8, quant_min=0, quant_max=255)
    return dataclasses.replace(c, input_activation=act, output_activation=act)


QUANTIZERS = {
    "xnnpack int8, per-tensor": lambda: XNNPACKQuantizer().set_global(get_symmetric_quantization_config()),
    "xnnpack int8, per-channel": lambda: XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)),
    "xnnpack-annotated uint8": lambda: XNNPACKQuantizer().set_global(uint8_config()),
}


def convert_program(m, shape, quantizer, seed):
    torch.manual_seed(seed)
    x = torch.randn(B, *shape)
    p = prepare_pt2e(torch.export.export(m, (x,)).module(), quantizer)
    p(x)
    return convert_pt2e(p)


# ---- torch's values at every quantize node, and the device's --------------------------------------------------------
def torch_codes_at_quantize_nodes(c, xt) -> dict[str, np.ndarray]:
    """Run the program; every quantize_per_tensor node's output as IR codes (int8 + 128), (samples, elements)."""
    out = defaultdict(list)

    class Capture(torch.fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and "dequant" not in str(n.target):
                v = r.reshape(len(r), -1).numpy().astype(np.int64)
                out[n.name].append((v + 128 if r.dtype == torch.int8 else v)[:self.keep])
            return r

    with torch.no_grad():  # in batches of B, the last one padded (the exported program is specialised to B)
        for i in range(0, len(xt), B):
            x = xt[i:i + B]
            cap = Capture(c)
            cap.keep = len(x)
            cap.run(torch.cat([x, x.new_zeros((B - len(x),) + x.shape[1:])]))
    return {k: np.concatenate(v) for k, v in out.items()}


def agreement_per_op(c, g, conv: Converted, xt, stats) -> None:
    """Add (equal, total, max diff) per op kind to `stats`: each step whose value torch also has, on the samples
    where every input it reads (traced back to values torch has) equals torch's."""
    want = torch_codes_at_quantize_nodes(c, xt)
    codes = want[g.origins["input"]]
    steps = conv.plan.steps
    got = dict(zip((s.dst for s in steps), conv.layer_codes(codes)))
    got["input"] = codes
    ops = {op.name: op for op in g.ops}
    producer = {s.dst: s for s in steps}

    def resolve(v):  # a reshape keeps the codes: the value it reshapes
        while v in ops and isinstance(ops[v], Reshape):
            v = ops[v].inputs[0]
        return v

    torch_of = {resolve(v): want[n] for v, n in g.origins.items()}

    def roots(s, seen=()):
        out = []
        for v in s.srcs:
            v = resolve(v)
            out += [v] if v in torch_of else roots(producer[v])
        return out

    def first_kind(s):
        ups = [producer[resolve(v)] for v in s.srcs if resolve(v) not in torch_of]
        return first_kind(ups[0]) if ups else s.kind

    for s in steps:
        if s.dst not in torch_of or s.dst == "input":
            continue
        ok = np.ones(len(codes), bool)
        for r in roots(s):
            ok &= (got[r] == torch_of[r]).all(1)
        d = np.abs(got[s.dst][ok] - torch_of[s.dst][ok])
        st = stats[first_kind(s)]
        st[0] += int((d == 0).sum()); st[1] += d.size; st[2] = max(st[2], int(d.max()) if d.size else 0)


def publish(report, title, stats):
    """One line per op kind in the end-of-run "uquant measurements" (and in -s output)."""
    for kind in sorted(stats):
        same, total, worst = stats[kind]
        line = f"PT2E {title}, {kind}: {same}/{total} = {same / max(total, 1):.5f} exact, max diff {worst}"
        print("\n" + line)
        report(line)


def check(stats):
    for kind, (same, total, worst) in stats.items():
        assert total > 0
        if kind in EXACT:
            assert same == total, f"{kind}: {total - same} of {total} codes differ from torch"
        else:
            assert worst <= 1, f"{kind}: differs from torch by {worst} codes"


@pytest.mark.parametrize("qname", list(QUANTIZERS))
def test_pt2e_agreement_per_op(qname, report):
    stats = defaultdict(lambda: [0, 0, 0])
    for seed in range(3):
        for M in MODELS:
            r = np.random.default_rng(seed)
            torch.manual_seed(seed)
            m = M(r).eval()
            c = convert_program(m, m.shape, QUANTIZERS[qname](), seed)
            g = from_pt2e(c)
            assert g.input_shape == m.shape
            xt = torch.randn(B * 2, *m.shape) * 1.5
            agreement_per_op(c, g, Converted(g, lower(g, "x86")), xt, stats)
    publish(report, qname, stats)
    check(stats)
    assert set(stats) == ROUNDED | EXACT  # every op kind measured


def quantize_output(c, xt):
    """X86InductorQuantizer leaves a program's output in float; quantize it the PT2E way (uint8, scale from the
    output's range on xt), so its uint8 layers can be compared with the device's."""
    with torch.no_grad():  # (the exported program is specialised to batches of B)
        y = torch.cat([c(xt[i:i + B]) for i in range(0, len(xt), B)])
    lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
    scale, zp = (hi - lo) / 255 or 1.0, int(round(-lo / ((hi - lo) / 255 or 1.0)))
    g = c.graph
    out = next(n for n in g.nodes if n.op == "output")
    last = out.args[0][0] if isinstance(out.args[0], (tuple, list)) else out.args[0]
    qd = torch.ops.quantized_decomposed
    with g.inserting_before(out):
        q = g.call_function(qd.quantize_per_tensor.default, (last, scale, zp, 0, 255, torch.uint8))
        dq = g.call_function(qd.dequantize_per_tensor.default, (q, scale, zp, 0, 255, torch.uint8))
    out.args = ((dq,),) if isinstance(out.args[0], (tuple, list)) else (dq,)
    c.recompile()
    return c


def test_pt2e_x86_inductor_uint8_agreement(report):
    stats = defaultdict(lambda: [0, 0, 0])
    for seed in range(3):
        for M in (MLP, CNN):
            r = np.random.default_rng(seed)
            torch.manual_seed(seed)
            m = M(r).eval()
            q = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
            c = convert_program(m, m.shape, q, seed)
            xt = torch.randn(B * 2, *m.shape) * 1.5
            with pytest.raises(ConversionError, match="not quantized"):
                from_pt2e(c)  # as X86InductorQuantizer leaves it: the last layer in float
            c = quantize_output(c, xt)
            g = from_pt2e(c)
            assert g.input.zero_point >= 0 and any(op.out.dtype == "quint8" for op in g.ops)
            agreement_per_op(c, g, Converted(g, lower(g, "x86")), xt, stats)
    publish(report, "x86inductor uint8", stats)
    check(stats)


def test_pt2e_engine_does_not_matter():
    """A PT2E program runs in float32, not with an engine's kernels: every engine lowers it to the same module."""
    r = np.random.default_rng(4)
    m = Residual(r).eval()
    c = convert_program(m, m.shape, QUANTIZERS["xnnpack int8, per-channel"](), 4)
    src = {e: uquant.convert(c, engine=e, name="m").source.split("from uquant_rt")[1] for e in ("x86", "qnnpack")}
    assert src["x86"] == src["qnnpack"]


def test_pt2e_quantize_and_dequantize_are_torchs():
    """The host quantizes float inputs with PT2E's own formula (not torch.quantize_per_tensor's): every code of a
    dense sweep, including ties, equals the program's first quantize node."""
    r = np.random.default_rng(1)
    m = MLP(r).eval()
    c = convert_program(m, m.shape, QUANTIZERS["xnnpack int8, per-tensor"](), 1)
    conv = uquant.convert(c, engine="x86")
    q = conv.plan.input
    assert q.formula == "pt2e"
    s = np.float32(q.scale)
    x = np.concatenate([np.arange(-300, 300) * s, (np.arange(-300, 300) + 0.5) * s,
                        np.random.default_rng(0).normal(0, 3, 4000)]).astype(np.float32)
    want = torch_codes_at_quantize_nodes(c, torch.from_numpy(x[: len(x) // m.shape[0] * m.shape[0]].reshape(
        -1, *m.shape)))[conv.graph.origins["input"]].ravel()
    assert np.array_equal(uquant.quantize_input(x[: want.size], q), want)
    codes = np.arange(256)
    torch_dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default(
        torch.arange(-128, 128, dtype=torch.int8), q.scale, q.zero_point - 128, -128, 127, torch.int8)
    assert np.array_equal(pt2e_ops.dequantize(codes, q).numpy(), torch_dq.numpy())


def test_pt2e_saved_program(tmp_path):
    r = np.random.default_rng(0)
    m = Residual(r).eval()
    c = convert_program(m, m.shape, QUANTIZERS["xnnpack int8, per-channel"](), 0)
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(c, (torch.randn(B, *m.shape),)), path)
    a = uquant.convert(c, engine="x86", name="m")
    b = uquant.convert(path, engine="x86", name="m")
    assert a.source.split("from uquant_rt")[1] == b.source.split("from uquant_rt")[1]


def test_pt2e_unsupported_op_is_named():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 4)

        def forward(self, x):
            return torch.sigmoid(self.l(x))

    torch.manual_seed(0)
    c = convert_program(M().eval(), (4,), QUANTIZERS["xnnpack int8, per-tensor"](), 0)
    with pytest.raises(ConversionError, match="sigmoid.*not supported"):
        uquant.convert(c)

    class Sub(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 4)

        def forward(self, x):
            y = self.l(x)
            return self.l(y - torch.sin(y))

    c = convert_program(Sub().eval(), (4,), QUANTIZERS["xnnpack int8, per-tensor"](), 0)
    with pytest.raises(ConversionError, match=r"aten\.(sin|sub)\S* \((sin|sub)\w*\) is not supported"):
        uquant.convert(c)


def test_pt2e_x86_inductor_conv_add_fusion_is_refused():
    """X86InductorQuantizer fuses conv + add: the conv's float output is never quantized on its own."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            y = F.max_pool2d(torch.relu(self.a(x)), 2)
            return self.c(torch.relu(self.b(y) + y))

    torch.manual_seed(0)
    q = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    c = convert_program(M().eval(), (1, 8, 8), q, 0)
    with pytest.raises(ConversionError, match="never quantizes on its own"):
        from_pt2e(c)


def test_pt2e_convert_with_example_input():
    r = np.random.default_rng(1)
    m = MLP(r).eval()
    c = convert_program(m, m.shape, QUANTIZERS["xnnpack int8, per-channel"](), 1)
    x = torch.randn(3, *m.shape)
    conv = uquant.convert(c, x, engine="x86")  # no exact self-check for PT2E (float32 linear)
    assert conv.plan.n_in == m.shape[0] and conv.plan.n_out == m.b.out_features


def test_pt2e_raw_units_and_cli_float_input(tmp_path, capsys):
    """Raw integer inputs (--input-unit) and the CLI's float inputs are quantized with the program's own formula."""
    from uquant.cli import main

    r = np.random.default_rng(2)
    m = MLP(r).eval()
    c = convert_program(m, m.shape, QUANTIZERS["xnnpack int8, per-channel"](), 2)
    unit = 0.000244
    conv = uquant.convert(c, engine="x86", input_unit=str(unit), raw_range=(-20000, 20000))
    raws = np.arange(-20000, 20000, 7)
    raws = raws[: len(raws) // (B * m.shape[0]) * B * m.shape[0]]
    x = torch.from_numpy(raws).to(torch.float32) * torch.tensor(np.float32(unit))
    want = torch_codes_at_quantize_nodes(c, x.reshape(-1, *m.shape))[conv.graph.origins["input"]].ravel()
    q_raw = conv.device_module.units.quantize_raw
    got = np.concatenate([list(q_raw([int(v) for v in row])) for row in raws.reshape(-1, m.shape[0])])
    assert np.array_equal(got, want)
    path = conv.save(tmp_path / "pt2e_q.py")
    assert 'INPUT_QUANTIZE = "pt2e"' in path.read_text()
    xs = np.float32(conv.plan.input.scale) * (np.arange(m.shape[0]) - 40.5)  # ties: the two formulas differ here
    assert main(["run", str(path), "--input", ",".join(repr(float(v)) for v in xs)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("input codes"))
    assert line.split(":", 1)[1].strip() == str(uquant.quantize_input(xs, conv.plan.input).tolist())


def test_pt2e_verify_and_explain_refuse_cleanly(tmp_path, capsys):
    """Byte-for-byte verify and explain are for torch's quantized kernels: a .pt2 gets one clear line each."""
    from uquant.cli import main

    r = np.random.default_rng(3)
    m = MLP(r).eval()
    c = convert_program(m, m.shape, QUANTIZERS["xnnpack int8, per-channel"](), 3)
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(c, (torch.randn(B, *m.shape),)), path)
    for argv, words in ((["verify", str(path), "--port", "/dev/null", "--module", "m_q"], "within one code"),
                        (["explain", str(path)], "PT2E")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("uquant: error: ") and words in err[0], err
