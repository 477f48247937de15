"""The device contract, exercised through the very file that goes to the board (device/uquant_rt.py).

Under CPython (uquant.runtime.load_source / rt) and under the real 32-bit MicroPython interpreter
(WebAssembly port, via node): output codes equal torch's int_repr(), predict() is torch.argmax
(first maximum on ties), bad inputs raise ValueError naming the model and what was expected, a
corrupted module refuses to import (CorruptModel, checksum), run() allocates nothing on the heap,
and the pure-Python crc32 fallback equals zlib's.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import zlib
from array import array

import numpy as np
import pytest
import torch

import uquant
from uquant import codegen
from uquant.examples import SEED_INPUTS, SeedTorchModel, seed_state_dict
from uquant.hosts import wasm
from uquant.hosts.mpmodule import run_batch
from uquant.runtime import RUNTIME_FILE, load_source, rt

from conftest import torch_engine
from randmodels import random_chain, random_codes

ENGINES = ("x86", "fbgemm", "qnnpack")
# (engine, seed) for random_chain with torch.manual_seed(seed): the first two have requantization
# exceptions in their first layer (13 and 9), the third one in a hidden layer and S > 30 there.
RANDOM_MODELS = [("x86", 4), ("qnnpack", 33), ("fbgemm", 4)]  # seeds whose first layer has several exceptions
def require_micropython():
    reason = wasm.missing_reason()
    if reason is None:
        return
    if os.environ.get("UQUANT_ALLOW_SKIP") == "1":
        pytest.skip(f"MicroPython wasm host unavailable: {reason}")
    pytest.fail(f"MicroPython wasm host unavailable: {reason} (set UQUANT_ALLOW_SKIP=1 to skip these tests instead)",
                pytrace=False)


# ---------------------------------------------------------------------------------------------------
# models

class Case:
    """A converted model, its module under CPython, and torch's codes for a batch of input codes."""

    def __init__(self, name, converted, codes, torch_layers):
        self.name = name
        self.converted = converted
        self.module = load_source(converted.source, name)
        self.codes = np.asarray(codes, np.int64)
        self.torch_layers = torch_layers  # int_repr() after each layer, for self.codes
        self.expected = torch_layers[-1]


def seed_torch_layers(engine: str, codes: np.ndarray) -> list[np.ndarray]:
    with torch_engine(engine):
        tm = SeedTorchModel(engine)
        q = torch._make_per_tensor_quantized_tensor(torch.from_numpy(codes.astype(np.uint8)),
                                                    float(tm.quant.scale), int(tm.quant.zero_point))
        out = []
        for layer in (tm.input_layer, tm.out):
            q = layer(q)
            out.append(q.int_repr().numpy().astype(np.int64))
        return out


ALL_PAIRS = np.array([(a, b) for a in range(256) for b in range(256)], np.int64)


@pytest.fixture(scope="module")
def seed_cases() -> dict[str, Case]:
    """The seed model on every engine, with torch's codes for all 65536 possible inputs."""
    cases = {}
    for e in ENGINES:
        codes = ALL_PAIRS
        conv = uquant.convert(seed_state_dict(), engine=e, relu="hidden", name="seedling")
        cases[e] = Case(f"seed_{e}", conv, codes, seed_torch_layers(e, codes))
    return cases


def solve_dot(v: np.ndarray, target: int, rng: np.random.Generator, hi: int = 255) -> np.ndarray | None:
    """Codes x in [0, hi] with x @ v == target (greedy, then an exact search over one pair), or None."""
    K = len(v)
    nz = np.flatnonzero(v)
    if len(nz) < 2:
        return None
    for _ in range(50):
        x = rng.integers(0, hi + 1, K)
        for _ in range(4):  # greedy: move single codes toward the target
            for k in rng.permutation(nz):
                d = target - int(x @ v)
                x[k] = int(np.clip(x[k] + round(d / v[k]), 0, hi))
        for _ in range(40):  # exact: re-choose two codes so the sum hits the target
            i, j = rng.choice(nz, 2, replace=False)
            rest = target - int(x @ v) + x[i] * v[i] + x[j] * v[j]
            xi = np.arange(hi + 1)
            rem = rest - xi * v[i]
            ok = (rem % v[j] == 0) & (rem // v[j] >= 0) & (rem // v[j] <= hi)
            if ok.any():
                t = int(rng.choice(np.flatnonzero(ok)))
                x[i], x[j] = t, rem[t] // v[j]
                assert int(x @ v) == target
                return x
    return None


def exception_inputs(converted, rng, hi: int = 255) -> np.ndarray:
    """Inputs whose first-layer accumulator lands exactly on each of that layer's exceptions."""
    s = converted.plan.steps[0]
    w = np.frombuffer(s.weights, np.uint8).astype(np.int64).reshape(s.N, s.K)
    P = np.array(s.words, np.int64).reshape(s.N, 7)
    rows = []
    for n, a, _ in np.array(s.fixes, np.int64).reshape(-1, 3):
        v = w[n] - P[n, 0]  # the device's acc = x @ (w_stored - c)
        x = solve_dot(v, int(P[n, 1] + a), rng, hi)
        if x is not None:
            rows.append(x)
    return np.array(rows, np.int64).reshape(-1, s.K)


@pytest.fixture(scope="module")
def random_cases() -> list[Case]:
    cases = []
    for engine, seed in RANDOM_MODELS:
        with torch_engine(engine):
            torch.manual_seed(seed)
            chain = random_chain(np.random.default_rng(seed), engine)
            conv = uquant.convert(chain, engine=engine, name=f"rand_{engine}_{seed}")
            rng = np.random.default_rng(1000 + seed)
            codes = np.concatenate([random_codes(rng, 150, conv.plan.n_in), exception_inputs(conv, rng, 255)])
            layers = chain.layer_codes(codes)
        cases.append(Case(f"rand_{engine}_{seed}", conv, codes, layers))
    return cases


def device_layers(case: Case) -> list[np.ndarray]:
    """Every step's output codes, for each row of case.codes (CPython runtime). Buffers are reused between
    steps, so each step's output is read right after that step runs (Converted.layer_codes)."""
    got = case.converted.layer_codes(case.codes)
    # and the last step's codes are what run() returns
    last = np.array([list(case.module.run(bytes(r))) for r in case.codes.astype(np.uint8)], np.int64)
    assert np.array_equal(got[-1], last), case.name
    return got


# ---------------------------------------------------------------------------------------------------
# run() and predict() under CPython

@pytest.mark.parametrize("engine", ENGINES)
def test_seed_matches_torch_on_every_input(seed_cases, engine):
    case = seed_cases[engine]
    got = np.array([list(case.module.run(bytes(r))) for r in case.codes.astype(np.uint8)], np.int64)
    assert np.array_equal(got, case.expected)
    # predict == torch.argmax, and the seed model has plenty of ties to make that meaningful
    want = torch.argmax(torch.from_numpy(case.expected), dim=1).numpy()
    preds = np.array([case.module.predict(bytes(r)) for r in case.codes.astype(np.uint8)])
    assert np.array_equal(preds, want)
    ties = (case.expected == case.expected.max(1, keepdims=True)).sum(1) > 1
    assert ties.sum() > 100 and len(set(want[ties])) > 1


@pytest.mark.parametrize("engine", ENGINES)
def test_seed_inputs(seed_cases, engine):
    case = seed_cases[engine]
    with torch_engine(engine):
        torch_codes = SeedTorchModel(engine).layer_codes(SEED_INPUTS)
    inputs, want = torch_codes[0], torch_codes[-1]
    # the host quantizes float inputs exactly as torch does
    assert np.array_equal(uquant.quantize_input(SEED_INPUTS, case.converted.plan.input), inputs)
    for x, y in zip(inputs, want):
        forms = [bytes(x.tolist()), bytearray(x.tolist()), [int(v) for v in x], tuple(int(v) for v in x),
                 array("B", x.tolist())]
        results = [bytes(case.module.run(f)) for f in forms]
        assert results == [bytes(y.tolist())] * len(forms)
    preds = [case.module.predict([int(v) for v in x]) for x in inputs]
    assert preds == torch.argmax(torch.from_numpy(want), 1).tolist()
    assert np.array_equal(case.converted.run(SEED_INPUTS), want)


def test_run_returns_the_models_own_buffer(seed_cases):
    m = seed_cases["x86"].module
    y1 = m.run([0, 0])
    first = bytes(y1)
    y2 = m.run([0, 255])
    assert type(y1) is bytearray and len(y1) == m.model.n_out == 7
    assert y2 is y1 and bytes(y1) != first  # documented: overwritten by the next call


def test_random_models_match_torch_in_every_layer(random_cases):
    for case in random_cases:
        got = device_layers(case)
        assert len(got) == len(case.torch_layers)
        for i, (g, t) in enumerate(zip(got, case.torch_layers)):
            assert np.array_equal(g, t), f"{case.name}: layer {i} differs"


def test_a_module_laid_out_for_another_board_runs_the_same(random_cases):
    # dense weights in uquant_thumb's order (convert --board pico) or uquant_dsp's (--board pico2: a permutation
    # and odd taps' bytes XOR 0x80) on the bytecode kernels: copied back into rows when the model is built, same
    # bytes on every input; the layout is part of the checksum
    for layout in ("thumb", "dsp"):
        for case in random_cases:
            src = codegen.generate(case.converted.plan, "laid_q", layout=layout)
            assert src.count(f"'{layout}',") == sum(s.kind == "dense" for s in case.converted.plan.steps)
            module = load_source(src, "laid_q")
            got = np.array([list(module.run(bytes(r))) for r in case.codes.astype(np.uint8)], np.int64)
            assert np.array_equal(got, case.torch_layers[-1]), (layout, case.name)
            with pytest.raises(rt.CorruptModel, match="checksum"):
                load_source(src.replace(f"'{layout}',", "None,", 1), "laid_q")
    with pytest.raises(ValueError, match="unknown weight layout"):
        codegen.generate(random_cases[0].converted.plan, "laid_q", layout="rows")
    for K, N in ((7, 13), (8, 6), (3, 1), (13, 7)):
        W = bytes((i * 37 + 11) % 256 for i in range(K * N))
        d = rt.relay(W, K, N, None, "dsp")
        assert sorted(rt.dsp_index(K, N, n, k) for n in range(N) for k in range(K)) == list(range(K * N))
        assert all(d[rt.dsp_index(K, N, n, k)] == W[n * K + k] ^ rt.dsp_flip(k) for n in range(N) for k in range(K))
        assert rt.relay(d, K, N, "dsp", None) == W
        t = rt.relay(W, K, N, None, "thumb")  # a module laid out for one board, built on another
        assert rt.relay(t, K, N, "thumb", "dsp") == d and rt.relay(d, K, N, "dsp", "thumb") == t
    from uquant.bench import small_cnn  # convs keep their order: only dense weights are laid out
    with torch_engine("fbgemm"):
        c = uquant.convert(small_cnn()[0], engine="fbgemm", input_shape=(1, 8, 8))
    codes = random_codes(np.random.default_rng(0), 50, c.plan.n_in).astype(np.uint8)
    for layout in ("thumb", "dsp"):
        laid = load_source(codegen.generate(c.plan, "cnn_q", layout=layout), "cnn_q")
        assert [list(laid.run(bytes(r))) for r in codes] == [list(c.device_module.run(bytes(r))) for r in codes]


def test_version_4_modules_still_load(seed_cases):
    src = seed_cases["x86"].converted.source.replace(f"\n    version={rt.VERSION},\n", "\n    version=4,\n")
    assert bytes(load_source(src).run([0, 192])) == bytes(seed_cases["x86"].module.run([0, 192]))


def test_exception_inputs_hit_the_exceptions(random_cases):
    """The constructed inputs really take the exception path: the plain formula would be wrong there."""
    hit = 0
    for case in random_cases:
        s = case.converted.plan.steps[0]
        if not s.fixes:
            continue
        fixes = {(n, a): y for n, a, y in np.array(s.fixes).reshape(-1, 3).tolist()}
        P = np.array(s.words, np.int64).reshape(s.N, 7)
        w = np.frombuffer(s.weights, np.uint8).astype(np.int64).reshape(s.N, s.K)
        acc = case.codes @ w.T - case.codes.sum(1, keepdims=True) * P[:, 0]
        for r in range(len(case.codes)):
            for n in range(s.N):
                a = int(acc[r, n] - P[n, 1])
                if (n, a) in fixes and 0 < a < P[n, 2]:
                    y = fixes[(n, a)]
                    assert case.torch_layers[0][r, n] == y
                    assert rt.requant(int(acc[r, n]), *[int(v) for v in P[n, 1:]]) != y
                    hit += 1
    assert hit >= 9, f"only {hit} exception inputs constructed"


# ---------------------------------------------------------------------------------------------------
# predict(): first maximum on ties

def constant_model(outputs: list[int], name="ties"):
    """A real runtime Model (with a valid checksum) whose output is `outputs` whatever the input.

    All weights are 0 (stored as 128 with c = 128), and each channel's requantization is
    a = clamp(acc - 0, 0, 0) = 0, y = (0 * 0 + code) >> 0 = code.
    """
    N = len(outputs)
    P = tuple(v for code in outputs for v in (128, 0, 0, 0, 0, code, 0))
    inp, bufs, out = (2, 0, 255), (N,), (0, N, 0)
    nodes = (("dense", -1, 0, 2, N, 0, 255, bytes([128]) * (2 * N), P, None, None),)
    crc = rt.spec_crc(name, inp, bufs, nodes, out)
    return rt.Model(name, crc, inp, bufs, nodes, out)


@pytest.mark.parametrize("outputs, best", [
    ([7, 7, 7], 0),
    ([1, 7, 3, 7], 1),
    ([0, 0, 0, 5, 5], 3),
    ([9], 0),
    ([255, 255], 0),
    ([0, 255, 254, 255], 1),
    ([3, 2, 1, 0], 0),
    ([0, 1, 2, 3, 3], 3),
])
def test_predict_returns_first_maximum(outputs, best):
    m = constant_model(outputs)
    for x in ([0, 0], [255, 255], b"\x10\x20"):
        assert list(m.run(x)) == outputs
        assert m.predict(x) == best == int(torch.argmax(torch.tensor(outputs)))


# ---------------------------------------------------------------------------------------------------
# input validation

@pytest.mark.parametrize("x, expected_in_message", [
    ([1], "expected 2 input values, got 1"),
    ([1, 2, 3], "expected 2 input values, got 3"),
    ([], "expected 2 input values, got 0"),
    (b"\x01\x02\x03", "expected 2 input values, got 3"),
    (bytearray(1), "expected 2 input values, got 1"),
    ([0, 256], "inputs must be ints in [0, 255], got 256"),
    ([-1, 0], "inputs must be ints in [0, 255], got -1"),
    ([1.5, 0], "inputs must be ints in [0, 255], got 1.5"),
    ([0, 1.0], "got 1.0"),
    (["3", 0], "got '3'"),
    ("ab", "got str"),  # a str is not a sequence of ints (before: refused at its first character)
    ([None, 0], "got None"),
    ([True, 0], "got True"),  # bool is an int subclass in CPython; the runtime insists on exact int
    ([np.int64(3), 0], "got"),  # numpy ints are not ints either: convert with int() (Converted.run_codes does)
])
def test_run_rejects_bad_input(seed_cases, x, expected_in_message):
    m = seed_cases["x86"].module
    for f in (m.run, m.predict):
        with pytest.raises(ValueError) as info:
            f(x)
        msg = str(info.value)
        assert msg.startswith("seedling: "), msg
        assert expected_in_message in msg


def test_run_accepts_the_range_ends(seed_cases):
    m = seed_cases["x86"].module
    for x in ([0, 0], [255, 255], [0, 255]):
        assert bytes(m.run(x)) == bytes(m.run(bytes(x)))


# ---------------------------------------------------------------------------------------------------
# checksum: a corrupted module refuses to import

def _offsets(source: str):
    assert source.isascii()  # ast columns are UTF-8 byte offsets; equal to str offsets for ASCII
    starts = np.cumsum([0] + [len(line) for line in source.splitlines(keepends=True)])
    return lambda line, col: int(starts[line - 1]) + col


# Model(name, crc, inp, bufs, nodes, out): positions in the call, and in a dense/conv node tuple
NAME, CRC, INP, BUFS, NODES, OUT = range(6)
D_SRC, D_DST, D_K, D_N, D_LO, D_HI, D_W, D_P, D_F, D_T = range(1, 11)


def model_spec_nodes(source: str):
    """(Model call node, list of node Tuple nodes) of a generated module."""
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == "Model"]
    assert len(calls) == 1
    call = calls[0]
    assert len(call.args) == 6
    return call, call.args[NODES].elts


def replace_node(source: str, node, text: str) -> str:
    off = _offsets(source)
    a, b = off(node.lineno, node.col_offset), off(node.end_lineno, node.end_col_offset)
    return source[:a] + text + source[b:]


def delete_lines(source: str, first: int, last: int) -> str:
    lines = source.splitlines(keepends=True)
    return "".join(lines[:first - 1] + lines[last:])


def spec_value(source: str):
    call, _ = model_spec_nodes(source)
    return ast.literal_eval(call.args[NODES])


def flip_weight_byte(source: str, layer: int, rng, index: int = D_W) -> str:
    """Change one character inside the node's weight (or code table) bytes literal so exactly one byte changes."""
    _, layers = model_spec_nodes(source)
    node = layers[layer].elts[index]
    off = _offsets(source)
    a, b = off(node.lineno, node.col_offset), off(node.end_lineno, node.end_col_offset)
    old = spec_value(source)[layer][index]
    for i in rng.permutation(np.arange(a, b)):
        for c in "0123456789abcdefABCDEFxyz{}~!":
            if c == source[i]:
                continue
            cand = source[:i] + c + source[i + 1:]
            try:
                new = spec_value(cand)[layer][index]
            except (SyntaxError, ValueError):
                continue
            if len(new) == len(old) and sum(p != q for p, q in zip(new, old)) == 1:
                return cand
    raise AssertionError("could not flip a byte")


def replace_words(source: str, node, fn) -> str:
    """Replace the int32 little-endian words bytes literal `node` by fn(list of its ints)."""
    words = np.frombuffer(ast.literal_eval(node), "<i4").tolist()
    return replace_node(source, node, repr(np.asarray(fn(words), "<i4").tobytes()))


def corrupt_param(source: str, layer: int, index: int) -> str:
    _, layers = model_spec_nodes(source)

    def bump(words):
        words[index] += 1 if words[index] < 2**29 else -1
        return words
    return replace_words(source, layers[layer].elts[D_P], bump)


def other_index(node, n_bufs: int) -> str:
    """A different buffer index (-1: the input) than the int literal `node`, still in range if possible."""
    v = ast.literal_eval(node)
    return str(v + 1 if v + 1 < n_bufs else v - 1)


def corruptions(source: str, rng) -> dict[str, str]:
    """name -> corrupted source (each still parses and still calls Model)."""
    call, layers = model_spec_nodes(source)
    out = {}
    out["weight byte, first layer"] = flip_weight_byte(source, 0, rng)
    out["weight byte, last layer"] = flip_weight_byte(source, len(layers) - 1, rng)
    for i, what in enumerate(("c", "c_lo", "W", "A", "D_hi", "D_lo", "S")):
        out[f"parameter {what}"] = corrupt_param(source, 0, 7 * int(rng.integers(layers[0].elts[D_N].value)) + i)
    for i, what in zip((D_K, D_N, D_LO, D_HI), ("K", "N", "lo", "hi")):
        node = layers[-1].elts[i]
        out[f"layer {what}"] = replace_node(source, node, str(node.value + (1 if node.value < 255 else -1)))
    bufs = call.args[BUFS].elts
    for i, node in enumerate(bufs):
        out[f"buffer {i} size grown"] = replace_node(source, node, str(node.value + 1))
        out[f"buffer {i} size shrunk"] = replace_node(source, node, str(node.value - 1))
    for which, L in (("first", layers[0]), ("last", layers[-1])):
        for i, what in ((D_SRC, "src"), (D_DST, "dst")):
            out[f"{which} node {what} buffer"] = replace_node(source, L.elts[i], other_index(L.elts[i], len(bufs)))
    out_buf, out_n = call.args[OUT].elts[:2]
    out["output buffer"] = replace_node(source, out_buf, other_index(out_buf, len(bufs)))
    out["output size"] = replace_node(source, out_n, str(out_n.value - 1))
    out["model name"] = replace_node(source, call.args[NAME], repr(call.args[NAME].value + "x"))
    out["stored checksum"] = replace_node(source, call.args[CRC], hex(call.args[CRC].value ^ 1))
    if len(layers) > 1:
        last = layers[-1]
        out["last layer dropped"] = delete_lines(source, last.lineno, last.end_lineno)
        first = layers[0]
        out["first layer dropped"] = delete_lines(source, first.lineno, first.end_lineno)
    fixed = [L for L in layers if isinstance(getattr(L.elts[D_F], "value", None), bytes)]
    if fixed:
        F = fixed[0].elts[D_F]
        out["last exception dropped"] = replace_words(source, F, lambda w: w[:-3])
        out["exceptions dropped"] = replace_node(source, F, "None")
        out["exception code changed"] = replace_words(source, F, lambda w: w[:2] + [(w[2] + 1) % 256] + w[3:])
    tabled = [i for i, L in enumerate(layers)
              if len(L.elts) > D_T and isinstance(getattr(L.elts[D_T], "value", None), bytes)]
    if tabled:
        T = layers[tabled[0]].elts[D_T]
        out["code table byte"] = flip_weight_byte(source, tabled[0], rng, D_T)
        out["code table dropped"] = replace_node(source, T, "None")
    W = layers[0].elts[D_W]
    if W.end_lineno > W.lineno:
        out["weight line dropped (truncated)"] = delete_lines(source, W.lineno, W.lineno)
    return out


def with_code_table(converted) -> str:
    """The converted model's module with a code table on its first step (as a float op after it would add):
    a valid module, so that corrupting the table can be tested."""
    plan = converted.plan
    s = plan.steps[0]
    table = bytes(255 - v for v in range(256))
    steps = [dataclasses.replace(s, table=table), *plan.steps[1:]]
    return codegen.generate(dataclasses.replace(plan, steps=steps), plan.name)


def test_corrupted_modules_refuse_to_import(seed_cases, random_cases):
    rng = np.random.default_rng(5)
    seen = set()
    sources = [c.converted.source for c in [seed_cases["x86"], *random_cases]]
    sources.append(with_code_table(seed_cases["x86"].converted))
    for src in sources:
        load_source(src)  # the untouched module imports fine
        for what, bad in corruptions(src, rng).items():
            assert bad != src
            compile(bad, what, "exec")  # still valid Python: only the checksum can catch it
            with pytest.raises(rt.CorruptModel, match="checksum mismatch") as info:
                load_source(bad)
            assert "re-deploy" in str(info.value)
            seen.add(what)
    for what in ("last exception dropped", "weight line dropped (truncated)", "last layer dropped",
                 "exceptions dropped", "code table byte", "code table dropped", "buffer 1 size shrunk",
                 "first node src buffer", "last node dst buffer", "output buffer", "output size"):
        assert what in seen


def test_version_mismatch_is_refused(seed_cases):
    src = seed_cases["x86"].converted.source
    assert src.count(f"\n    version={rt.VERSION},\n") == 1
    src = src.replace(f"\n    version={rt.VERSION},\n", f"\n    version={rt.VERSION + 1},\n")
    with pytest.raises(rt.CorruptModel, match="made for runtime version"):
        load_source(src)


@pytest.mark.parametrize("index, delta", [(0, 1), (2, -1)])
def test_corrupted_input_tuple_refuses_to_import(seed_cases, index, delta):
    src = seed_cases["x86"].converted.source
    call, _ = model_spec_nodes(src)
    node = call.args[INP].elts[index]
    bad = replace_node(src, node, str(node.value + delta))
    with pytest.raises(rt.CorruptModel):
        load_source(bad)


# ---------------------------------------------------------------------------------------------------
# crc32: the pure-Python fallback equals zlib.crc32

def test_crc32_fallback_equals_zlib(monkeypatch):
    rng = np.random.default_rng(0)
    data = [b"", b"\x00", b"\xff", b"123456789"] + [rng.bytes(int(n)) for n in (1, 2, 3, 4, 31, 256, 1000, 4099)]
    fast = [rt.crc32(d, c) for d in data for c in (0, 1, 0xFFFFFFFF)]
    monkeypatch.setattr(rt, "_crc32", None)
    for d in data:
        for c in (0, 1, 0xFFFFFFFF, int(rng.integers(0, 2**32))):
            assert rt.crc32(d, c) == zlib.crc32(d, c), (len(d), c)
        assert rt.crc32(bytearray(d)) == zlib.crc32(d)
    assert rt.crc32(b"123456789") == 0xCBF43926  # the standard CRC-32 check value
    assert [rt.crc32(d, c) for d in data for c in (0, 1, 0xFFFFFFFF)] == fast


def test_checksum_with_fallback_crc32(monkeypatch, seed_cases, random_cases):
    fast = [rt.spec_crc(*codegen.model_args(c.converted.plan)) for c in [seed_cases["x86"], *random_cases]]
    monkeypatch.setattr(rt, "_crc32", None)
    slow = [rt.spec_crc(*codegen.model_args(c.converted.plan)) for c in [seed_cases["x86"], *random_cases]]
    assert slow == fast
    for c, crc in zip([seed_cases["x86"], *random_cases], slow):
        call, _ = model_spec_nodes(c.converted.source)
        assert call.args[CRC].value == crc  # the checksum written into the module
    src = seed_cases["x86"].converted.source
    assert bytes(load_source(src).run([0, 192])) == bytes(seed_cases["x86"].module.run([0, 192]))
    with pytest.raises(rt.CorruptModel):
        load_source(flip_weight_byte(src, 1, np.random.default_rng(0)))


# ---------------------------------------------------------------------------------------------------
# the real MicroPython (32-bit, WebAssembly)

def mp_cases(seed_cases, random_cases):
    return [seed_cases[e] for e in ENGINES] + random_cases


def test_micropython_matches_torch_and_run_allocates_nothing(seed_cases, random_cases):
    require_micropython()
    for case in mp_cases(seed_cases, random_cases):
        codes = case.codes
        if len(codes) > 2000:  # the seed: every input is a lot for the wasm interpreter; take a spread
            codes = codes[::37]
        want = case.expected if codes is case.codes else case.expected[::37]
        ys, preds, heap = run_batch(case.converted.source, case.name, codes, heap=True)
        assert np.array_equal(ys, want), case.name
        assert np.array_equal(preds, torch.argmax(torch.from_numpy(want), 1).numpy()), case.name
        assert heap == 0, f"{case.name}: run() allocated {heap} bytes"
    assert any(s.fixes for c in random_cases for s in c.converted.plan.steps)


def test_micropython_no_allocation_on_any_input(random_cases):
    """Heap delta over every test input (bytes and lists, run and predict), exception inputs included."""
    require_micropython()
    for case in random_cases:
        rows = [bytes(r) for r in case.codes.astype(np.uint8).tolist()]
        lists = [list(r) for r in case.codes.tolist()]
        setup = f"import {case.name} as m\nXS = {rows!r}\nLS = {lists!r}\n"
        out = wasm.run_micropython(
            [setup, "for x in XS[:3]:\n    m.run(x)\n    m.predict(x)\n",  # warm-up
             wasm.heap_delta_snippet("for x in XS:\n    m.run(x)\n    m.predict(x)"),
             wasm.heap_delta_snippet("for x in LS:\n    m.run(x)\n    m.predict(x)")],
            {"/lib/uquant_rt.py": RUNTIME_FILE.read_text(), f"/lib/{case.name}.py": case.converted.source})
        deltas = [int(line.split()[1]) for line in out.splitlines() if line.startswith("HEAPDELTA")]
        assert deltas == [0, 0], f"{case.name}: heap deltas {deltas}"


def test_micropython_refuses_corrupted_module_and_crc_fallback(random_cases):
    require_micropython()
    case = random_cases[0]
    src = case.converted.source
    bad = flip_weight_byte(src, 0, np.random.default_rng(1))
    files = {"/lib/uquant_rt.py": RUNTIME_FILE.read_text(), "/lib/good.py": src, "/lib/bad.py": bad}
    rng = np.random.default_rng(2)
    blobs = [rng.bytes(n) for n in (0, 1, 7, 300)]
    code = (
        "import uquant_rt\n"
        "try:\n    import bad\nexcept uquant_rt.CorruptModel as e:\n    print('CORRUPT', e)\n"
        "uquant_rt._crc32 = None  # the pure-Python fallback, as on ports without binascii.crc32\n"
        f"for d in {blobs!r}:\n    print('CRC', uquant_rt.crc32(d), uquant_rt.crc32(d, 12345))\n"
        "import good\n"  # imports (checksum verified) with the fallback
        f"print('Y', bytes(good.run({bytes(case.codes[0].astype(np.uint8))!r})).hex())\n"
    )
    out = wasm.run_micropython(code, files).splitlines()
    assert any(line.startswith("CORRUPT") and "checksum mismatch" in line for line in out), out
    crcs = [tuple(map(int, line.split()[1:])) for line in out if line.startswith("CRC")]
    assert crcs == [(zlib.crc32(d), zlib.crc32(d, 12345)) for d in blobs]
    ys = [line.split()[1] for line in out if line.startswith("Y")]
    assert ys == [bytes(case.expected[0].tolist()).hex()]


def test_a_forced_tier_imports_only_its_own_modules():
    """TIER = "bytecode" must not import the faster tiers' modules (they would hold heap for nothing)."""
    from uquant.runtime import rt

    imported = []

    class Spy:
        pass

    saved = dict(rt._kernel_modules)
    rt._kernel_modules.clear()
    try:
        import builtins
        real = builtins.__import__

        def spy(name, *a, **k):
            if name.startswith("uquant_"):
                imported.append(name)
            return real(name, *a, **k)

        builtins.__import__ = spy
        rt.TIER = "bytecode"
        assert rt.tier() == ("bytecode", ())
    finally:
        builtins.__import__ = real
        rt.TIER = None
        rt._kernel_modules.clear()
        rt._kernel_modules.update(saved)
    assert imported == []


def test_the_checksum_is_read_in_buffers():
    """crc_of gives the CRC-32 of the spec's serialisation (ints as 4 little-endian bytes, "N", "(", ")"), read
    256 bytes at a time: not one crc32 call (and one big int on a 32-bit port) per number."""
    import binascii
    import struct

    from uquant.runtime import rt

    spec = ("m", (1, -2, None, (2 ** 31 - 1, -2 ** 31)), b"xy", tuple(range(-300, 300)))
    flat = (b"(" + b"m" + b"(" + struct.pack("<ii", 1, -2) + b"N(" + struct.pack("<ii", 2 ** 31 - 1, -2 ** 31)
            + b"))" + b"xy" + b"(" + struct.pack("<600i", *range(-300, 300)) + b"))")
    assert rt.crc_of(spec) == binascii.crc32(flat)
    calls = []
    real = rt.crc32
    rt.crc32 = lambda data, crc=0: calls.append(len(data)) or real(data, crc)
    try:
        rt.crc_of(spec)
    finally:
        rt.crc32 = real
    assert calls.count(256) >= 8 and len(calls) <= 15, calls  # 600 ints in ~9 buffers, not 600 crc32 calls
