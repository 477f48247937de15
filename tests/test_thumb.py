"""The asm_thumb kernel tier (device/uquant_thumb.py): its armv6m machine code, run by unicorn on the host,
gives the bytecode tier's bytes (uquant_rt.dense) and torch's bytes, and its speed is measured (not asserted)."""
from __future__ import annotations

from array import array

import numpy as np
import pytest
import torch

import uquant
from uquant import codegen
from conftest import torch_engine
from randmodels import random_chain, random_codes
from uquant.api import quantize_input
from uquant.engines import dequantize
from uquant.hosts import thumb
from uquant.plan import DenseStep
from uquant.runtime import load_source, rt


@pytest.fixture(scope="module")
def tier():
    return thumb.emulated_tier()


# ---------------------------------------------------------------------------------------------------
# the machine code

@pytest.mark.parametrize("arch", ["armv6m", "armv7emsp"])
def test_kernel_compiles(arch):
    funcs = thumb.asm_functions(thumb.compile_kernel(arch))
    assert {"_addr", "_kernel"} <= set(funcs)
    assert funcs["_kernel"].n_args == 3 and len(funcs["_kernel"].code) > 100


def test_machine_code_is_armv6m_only():
    # unicorn's Cortex-M0 model would run Thumb-2 code too, so every instruction is checked here (and by the
    # emulator's hook as it runs): data(2, ...) words must be Thumb-1 as well.
    for f in thumb.asm_functions(thumb.compile_kernel("armv6m")).values():
        code, i = f.code, 0
        while i < len(code):
            hw = code[i] | code[i + 1] << 8
            wide = thumb._is_32bit(hw)
            thumb.classify(hw, code[i + 2] | code[i + 3] << 8 if wide else 0)
            i += 4 if wide else 2
    for hw, hw2 in [(0xFB00, 0xF001), (0xB910, 0), (0xBF18, 0)]:  # mul.w, cbnz, it
        with pytest.raises(thumb.NotARMv6M):
            thumb.classify(hw, hw2)


def test_buffers_and_addresses(tier):
    a = bytearray(b"abc")
    p = tier._addr(a)
    assert p == tier._addr(a) and p == tier.machine.pin(a)  # an escaped address stays put
    assert tier._addr(None) == 0
    with pytest.raises(TypeError, match="object pointers"):
        tier._kernel([1, 2, 3], bytearray(1), array("i", [0] * 23))


def test_prepare_refuses_bad_layers(tier):
    W, P = bytes(6), [0, 0, 1, 1, 0, 0, 0] * 3
    with pytest.raises(ValueError, match="sorted by channel"):
        tier.prepare_dense(2, 3, 0, 255, W, P, [1, 0, 5, 0, 0, 5], None)
    with pytest.raises(ValueError, match="bad layer"):
        tier.prepare_dense(2, 3, 9, 8, W, P, [], None)
    with pytest.raises(ValueError, match="256"):
        tier.prepare_dense(2, 3, 0, 255, W, P, [], bytes(255))
    with pytest.raises(ValueError, match="16512 taps"):
        tier.prepare_dense(16513, 1, 0, 255, bytes(16513), P[:7], [], None)
    with pytest.raises(ValueError, match="limb words"):
        tier.prepare_dense(2, 1, 0, 255, W, [0, 0, 1, 1 << 29, 0, 0, 30], [], None)


@pytest.mark.parametrize("K,N", [(1, 1), (1, 6), (2, 7), (3, 4), (5, 10), (7, 13), (8, 12), (9, 17), (4, 5), (6, 23)])
def test_weights_layout(tier, K, N):
    # the order the kernel reads W in (K*N bytes): for even K blocks of six rows (per pair of taps: e e f f,
    # a b c d, a b c d), then blocks of four (a b c d per tap), then the last N % 4 rows as they are
    W = np.arange(K * N).reshape(N, K) % 251 + 1
    Wb = bytes(W.astype(np.uint8).ravel().tolist())
    got = rt.relay(Wb, K, N, None, "thumb")
    want, n = [], 0
    while K % 2 == 0 and N - n >= 6:
        for k in range(0, K, 2):
            want += [W[n + 4, k], W[n + 4, k + 1], W[n + 5, k], W[n + 5, k + 1]]
            want += [W[n + j, k] for j in range(4)] + [W[n + j, k + 1] for j in range(4)]
        n += 6
    while N - n >= 4:
        want += [W[n + j, k] for k in range(K) for j in range(4)]
        n += 4
    want += W[n:].ravel().tolist()
    assert list(got) == [int(v) for v in want]
    assert all(got[rt.thumb_index(K, N, n, k)] == W[n, k] for n in range(N) for k in range(K))
    assert rt.relay(got, K, N, "thumb", None) == Wb


# ---------------------------------------------------------------------------------------------------
# random layers against the bytecode tier

def random_layer(rng: np.random.Generator, K: int, N: int, xs: np.ndarray, c0: int | None = None):
    """Weights, words (direct and limb forms), exceptions (some on the a that xs[0] reaches), table, clip; c0: the
    same c in every channel."""
    W = rng.integers(0, 256, (N, K))
    c = rng.integers(0, 256, N)
    if c0 is not None:
        c[:] = c0
    acc = xs @ W.T - np.outer(xs.sum(1), c)  # (samples, N): what the device computes before c_lo
    P, E = [], []
    for n in range(N):
        lo_acc, hi_acc = int(acc[:, n].min()), int(acc[:, n].max())
        pad = int(rng.integers(0, 3)) * max(1, (hi_acc - lo_acc) // 4)  # 0: every input inside the window
        c_lo = lo_acc + pad - int(rng.integers(0, 3))
        Wn = max(1, hi_acc - pad - c_lo + int(rng.integers(0, 3)))
        if rng.random() < 0.5:  # direct form: Wn*A + |Dl| < 2**30
            S = int(rng.integers(0, 30))
            A = max(1, round(300 / Wn * 2 ** S))
            while S and Wn * A >= 2 ** 28:
                S -= 1
                A = max(1, round(300 / Wn * 2 ** S))
            D = round(-20 * 2 ** S) + int(rng.integers(-2 ** S, 2 ** S + 1))
            assert Wn * A + abs(D) < 2 ** 30
            Dh, Dl = 0, D
        else:  # limb form: Wn < 2**28, A < 2**29, |Dh| < 2**29
            Wn = max(Wn, 2 ** 12)
            S = int(rng.integers(30, 41))
            while 300 / Wn * 2 ** S >= 2 ** 29:
                S -= 1
            A = max(1, round(300 / Wn * 2 ** S))
            D = round(-20 * 2 ** S) + int(rng.integers(-2 ** (S - 2), 2 ** (S - 2)))
            Dh, Dl = D >> 30, D & (2 ** 30 - 1)
        P += [int(c[n]), c_lo, Wn, A, Dh, Dl, S]
        if rng.random() < 0.6:
            hit = min(max(int(acc[0, n]) - c_lo, 0), Wn)
            keys = {hit} | {int(a) for a in rng.integers(0, Wn + 1, int(rng.integers(0, 4)))}
            E += [v for a in sorted(keys) for v in (n, a, int(rng.integers(0, 256)))]
    lo = int(rng.integers(0, 60)) if rng.random() < 0.5 else 0
    hi = int(rng.integers(lo, 256)) if rng.random() < 0.5 else 255
    T = rng.integers(0, 256, 256).astype(np.uint8).tobytes() if rng.random() < 0.4 else None
    return W.astype(np.uint8).tobytes(), P, E, lo, hi, T


def test_random_layers_match_the_bytecode_tier(tier):
    rng = np.random.default_rng(4)
    shapes = [(1, 1), (1, 5), (2, 3), (3, 4), (5, 7), (4, 8), (7, 9), (13, 16), (31, 33), (64, 12), (100, 5),
              (257, 6)]
    # every N % 6 (blocks of six, then four, then single rows) with K odd and even, below and above the
    # kernel's eight-tap unrolling
    shapes += [(K, N) for K in (1, 2, 9, 16, 23) for N in (6, 10, 11, 12, 16, 17)]
    shapes += [(int(rng.integers(1, 80)), int(rng.integers(1, 20))) for _ in range(60)]
    exceptions_hit = limbs = 0
    for i, (K, N) in enumerate(shapes):
        xs = rng.integers(0, 256, (3, K))
        xs[1, : K // 2] = 0  # some sparse and saturated inputs
        xs[2, K // 3:] = 255
        W, P, E, lo, hi, T = random_layer(rng, K, N, xs)
        Wt = rt.relay(W, K, N, None, "thumb")  # the kernel's order
        if i % 2:  # the words and exceptions as a module holds them (int32 bytes), or as arrays
            h = tier.prepare_dense(K, N, lo, hi, bytes(Wt), rt.as_words(P), rt.as_words(E) or b"", T)
        else:
            h = tier.prepare_dense(K, N, lo, hi, Wt, array("i", P), array("i", E), T)
        for x in xs:
            xb = bytes(x.astype(np.uint8).tolist()) + b"\x07"  # x may be longer than K
            out = bytearray(b"\xaa" * (N + 2))
            want = bytearray(b"\xaa" * (N + 2))
            tier.dense(xb, out, h)  # the same handle for every input: the kernel resets its cursors
            rt.dense(xb, want, K, N, lo, hi, W, rt.as_words(P), rt._fixes(rt.as_words(E)), T)
            assert out == want, (K, N, lo, hi, T is not None)
        exceptions_hit += len(E) > 0
        limbs += sum(P[7 * n + 6] >= 30 for n in range(N))
    assert exceptions_hit > 20 and limbs > 100


def test_block_counts_equal_instruction_counts():
    # the fast block hook and the per-instruction hook agree on every counter
    fast, exact = thumb.emulated_tier(), thumb.emulated_tier(exact=True)
    rng = np.random.default_rng(5)
    for K, N in [(1, 1), (6, 7), (37, 9)]:
        xs = rng.integers(0, 256, (2, K))
        W, P, E, lo, hi, T = random_layer(rng, K, N, xs)
        for t in (fast, exact):
            h = t.prepare_dense(K, N, lo, hi, rt.relay(W, K, N, None, "thumb"), array("i", P), array("i", E), T)
            t.stats.reset()
            for x in xs:
                t.dense(bytes(x.astype(np.uint8).tolist()), bytearray(N), h)
        assert fast.stats == exact.stats and fast.stats.cycles > 0


# ---------------------------------------------------------------------------------------------------
# layers of torch-quantized models against torch

def emulated_layers(tier, steps: list[DenseStep], codes: np.ndarray, cycles: list | None = None) -> list[np.ndarray]:
    """Every dense step's output codes for each input row, each step run by the emulated kernel on the
    previous step's output (buffers hold code - qmin). `cycles`, if given, receives each step's total."""
    handles, sats = [], []
    for s in steps:
        P = bytearray(rt.as_words(s.words))  # with saturating pairs, satfix moves its c_lo words before each call
        S = codegen.sat_pairs_bytes(s.sat_pairs) if s.sat_pairs else None
        W = bytes(rt.relay(s.weights, s.K, s.N, None, "thumb"))  # as `convert --board pico` emits it
        sats.append(S and tier.prepare_satfix(W, s.K, P, S, rt.sat_channels(S, s.N, s.K, P), rt.thumb_index))
        handles.append(tier.prepare_dense(s.K, s.N, s.lo, s.hi, W, P, s.fixes, s.table))
    out = [np.zeros((len(codes), s.N), np.int64) for s in steps]
    spent = [0] * len(steps)
    for j, row in enumerate(codes):
        buf = bytes(int(v) for v in row)
        for i, (s, h, sat) in enumerate(zip(steps, handles, sats)):
            y = bytearray(s.N)
            if sat:
                tier.satfix(buf, sat)
            before = tier.stats.cycles
            tier.dense(buf, y, h)
            spent[i] += tier.stats.cycles - before
            out[i][j] = np.frombuffer(bytes(y), np.uint8).astype(np.int64) + s.out.qmin
            buf = bytes(y)
    if cycles is not None:
        cycles[:] = spent
    return out


@pytest.mark.parametrize("engine,seed", [("fbgemm", 4), ("fbgemm", 11), ("qnnpack", 33), ("qnnpack", 7)])
def test_torch_layers_match(tier, engine, seed):
    with torch_engine(engine):
        torch.manual_seed(seed)
        chain = random_chain(np.random.default_rng(seed), engine)
        conv = uquant.convert(chain, engine=engine)
        steps = conv.plan.steps
        assert all(isinstance(s, DenseStep) and s.kind == "dense" for s in steps)
        assert conv.plan.input.qmin == 0
        codes = random_codes(np.random.default_rng(100 + seed), 60, conv.plan.n_in)
        want = chain.layer_codes(codes)
    got = emulated_layers(tier, steps, codes)
    bytecode = conv.layer_codes(codes)
    for i in range(len(steps)):
        assert np.array_equal(got[i], want[i]), (engine, seed, i)
        assert np.array_equal(got[i], bytecode[i]), (engine, seed, i)


def test_mlp_through_the_runtime(monkeypatch, report):
    # The bench's 64-256-256-10 MLP, built by the device runtime with the thumb tier plugged in: every dense
    # layer runs as emulated Cortex-M0 code. Figures go to the report (speed belongs to the benchmark).
    from uquant.bench import mlp

    with torch_engine("fbgemm"):
        model, x = mlp(engine="fbgemm")
        conv = uquant.convert(model, engine="fbgemm")
        with torch.no_grad():
            want = np.concatenate([model(x[i:i + 1]).numpy() for i in range(8)])
    tier = thumb.emulated_tier()
    monkeypatch.setattr(rt, "TIER", "thumb")
    monkeypatch.setitem(rt._kernel_modules, "uquant_thumb", tier)
    monkeypatch.setitem(rt._kernel_modules, "uquant_viper", None)
    plain = load_source(conv.source, "mlp_rows")  # rows: the kernel gets a copy of W in its order
    module = load_source(conv.for_board("pico").source, "mlp_thumb")  # laid out for pico: W read in place
    assert module.model.tier == "thumb" and all(n.fast is not None for n in module.model.layers)
    assert all(type(n.handle[1]) is bytes for n in module.model.layers)  # the module's own constant
    assert all(type(n.handle[1]) is bytearray for n in plain.model.layers)
    codes = quantize_input(x[:8].numpy(), conv.plan.input)
    tier.stats.reset()
    got = np.array([list(module.run(bytes(int(v) for v in row))) for row in codes], np.int64)
    macs = sum(s.K * s.N for s in conv.plan.steps)
    whole = tier.stats.cycles / (8 * macs)
    out = conv.plan.output
    assert np.array_equal(dequantize(got, out.scale, out.zero_point), want)

    spent = []
    layers = emulated_layers(thumb.emulated_tier(), conv.plan.steps, codes, spent)
    assert np.array_equal(layers[-1], got)
    figures = [f"K={s.K},N={s.N} {c / (8 * s.K * s.N):.2f}" for s, c in zip(conv.plan.steps, spent)]
    report(f"asm_thumb on an emulated Cortex-M0+ (cycles/MAC, bench MLP inputs): {', '.join(figures)}; "
           f"64-256-256-10 MLP whole inference {whole:.2f}")


def test_satfix_equals_the_bytecode_one(tier, report):
    """The asm satfix moves the c_lo words exactly as uquant_rt.satfix, on pairs made to land on, just inside and
    beyond int16's ends, for every channel listed."""
    rng = np.random.default_rng(5)
    cycles = pairs = 0
    for trial in range(40):
        K, N = int(rng.integers(2, 70)), int(rng.integers(1, 9))
        W = bytes(rng.integers(0, 256, K * N).astype(np.uint8).tolist())
        words = [int(v) for v in rng.integers(-2 ** 29, 2 ** 29, 7 * N)]
        chans = sorted(set(rng.integers(0, N, int(rng.integers(1, N + 1))).tolist()))
        sat = tuple(v for n in chans for k in sorted(set(rng.integers(0, K - 1, 4).tolist())) for v in (n, k))
        S = codegen.sat_pairs_bytes(sat)
        for _ in range(6):
            x = bytes(rng.choice([0, 1, 127, 128, 254, 255], K).tolist() if trial % 2 else
                      rng.integers(0, 256, K).astype(np.uint8).tolist())
            want, got = bytearray(rt.as_words(words)), bytearray(rt.as_words(words))
            rt.satfix(x, W, K, want, S, rt.sat_channels(S, N, K, want))
            if trial % 3:
                h = tier.prepare_satfix(W, K, got, S, rt.sat_channels(S, N, K, got))
            else:  # W in the kernel's order
                h = tier.prepare_satfix(bytes(rt.relay(W, K, N, None, "thumb")), K, got, S,
                                        rt.sat_channels(S, N, K, got), rt.thumb_index)
            before = tier.stats.cycles
            tier.satfix(x, h)
            cycles += tier.stats.cycles - before
            pairs += len(sat) // 2
            assert got == want, (trial, K, N)
    report(f"asm_thumb satfix = uquant_rt.satfix on 240 inputs; {cycles / pairs:.1f} Cortex-M0+ cycles per listed pair "
           "(emulated, call included)")



def test_requantization_at_its_limits(tier):
    # One tap (x = w = 255: the dot product is 65025) and c = 0, so c_lo places a anywhere: at and beyond both ends
    # of [0, Wn], with words at the limits the host allows (limb form: Wn < 2**28, A < 2**29, 0 <= Dl < 2**30,
    # |Dh| < 2**29, S up to 60; direct form: Wn*A + |D| < 2**30), against the bytecode tier.
    rng = np.random.default_rng(9)
    for trial in range(30):
        N = int(rng.integers(1, 20))
        P, E = [], []
        for n in range(N):
            if rng.random() < 0.6:
                Wn = int(rng.choice([1, 2 ** 12, 2 ** 28 - 1, int(rng.integers(1, 2 ** 28))]))
                A = int(rng.choice([1, 2 ** 29 - 1, int(rng.integers(1, 2 ** 29))]))
                Dl = int(rng.choice([0, 2 ** 30 - 1, int(rng.integers(0, 2 ** 30))]))
                Dh = int(rng.choice([-(2 ** 29) + 1, 2 ** 29 - 1, 0, int(rng.integers(-(2 ** 29), 2 ** 29))]))
                S = int(rng.choice([30, 31, 32, 45, 60, int(rng.integers(30, 61))]))
            else:
                S = int(rng.integers(0, 30))
                Wn = int(rng.integers(1, 2 ** 15))
                A = int(rng.integers(-(2 ** 30) // Wn // 2, 2 ** 30 // Wn // 2))
                Dh, Dl = 0, int(rng.integers(-(2 ** 29), 2 ** 29))
            a = int(rng.choice([-5, 0, 1, Wn - 1, Wn, Wn + 7, int(rng.integers(0, Wn + 1))]))
            P += [0, 65025 - a, Wn, A, Dh, Dl, S]
            if rng.random() < 0.3:
                E += [n, min(max(a, 0), Wn), int(rng.integers(0, 256))]
        lo = int(rng.integers(0, 40))
        hi = int(rng.integers(lo, 256))
        T = rng.integers(0, 256, 256).astype(np.uint8).tobytes() if trial % 2 else None
        W = b"\xff" * N
        h = tier.prepare_dense(1, N, lo, hi, W, array("i", P), array("i", E), T)  # one tap: rows are the kernel's order
        out, want = bytearray(N), bytearray(N)
        tier.dense(b"\xff", out, h)
        rt.dense(b"\xff", want, 1, N, lo, hi, W, rt.as_words(P), rt._fixes(rt.as_words(E)), T)
        assert out == want, trial
