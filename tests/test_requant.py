"""The integer requantization and its proof: brute force over whole accumulator ranges, 31-bit safety, refusals."""
from __future__ import annotations

import numpy as np
import pytest

import randmodels
import uquant
from uquant import engines, requant
from uquant.ir import ConversionError, Graph, Linear, QParams
from uquant.lower import lower
from uquant.runtime import rt

SMALL = 1 << 30


class Small(int):
    """An int that fails the test the moment any arithmetic result leaves MicroPython's 31-bit small ints.

    Running the device runtime's own functions on Small values shows that a 32-bit board never builds a
    big int (a heap allocation) during inference, independently of the 64-bit host.
    """

    def _wrap(self, v):
        if not -SMALL <= v < SMALL:
            raise OverflowError(f"intermediate {v} leaves the 31-bit small-int range")
        return Small(v)

    def __add__(self, o): return self._wrap(int(self) + int(o))
    def __radd__(self, o): return self._wrap(int(o) + int(self))
    def __sub__(self, o): return self._wrap(int(self) - int(o))
    def __rsub__(self, o): return self._wrap(int(o) - int(self))
    def __mul__(self, o): return self._wrap(int(self) * int(o))
    def __rmul__(self, o): return self._wrap(int(o) * int(self))
    def __rshift__(self, o): return self._wrap(int(self) >> int(o))
    def __lshift__(self, o): return self._wrap(int(self) << int(o))
    def __and__(self, o): return self._wrap(int(self) & int(o))
    def __rand__(self, o): return self._wrap(int(o) & int(self))


def random_requant(rng, engine):
    N = int(rng.integers(1, 6))
    xs = float(10 ** rng.uniform(-3, 0))
    per_channel = bool(rng.random() < 0.5)
    ws = 10 ** rng.uniform(-3, -1, N) if per_channel else np.full(N, 10 ** rng.uniform(-3, -1))
    ats = np.float32(xs) * ws.astype(np.float32)
    if rng.random() < 0.4:  # ties: power-of-two multipliers, biases on .5
        ys = float(ats.max() * 2.0 ** int(rng.integers(-2, 9)))
        bias = ((rng.integers(-300, 300, N) + 0.5) * ats).astype(np.float32)
    else:
        ys = float(ats.max() * 10 ** rng.uniform(-0.5, 3))
        bias = (rng.standard_normal(N) * ats * 2000).astype(np.float32)
    zp = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    lo = zp if rng.random() < 0.5 else 0
    return engines.Requant(engine, xs, ws, bias, ys, zp, lo, 255, per_channel), lo


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_device_equals_torch_on_every_accumulator(engine):
    """The proof checks only step boundaries; here every single accumulator of the range is checked."""
    rng = np.random.default_rng(11 if engine == "fbgemm" else 12)
    checked = exceptions = 0
    for _ in range(40):
        fn, lo = random_requant(rng, engine)
        span = int(rng.choice([300, 5000, 60000]))
        acc_lo = np.full(fn.n, -int(rng.integers(0, span)), np.int64)
        acc_hi = acc_lo + span
        chans = requant.fit_layer(fn, fn.M.astype(float), acc_lo, acc_hi, lo, 255)
        acc = np.arange(acc_lo[0], acc_hi[0] + 1)
        want = fn(np.repeat(acc[:, None], fn.n, 1))
        for n, ch in enumerate(chans):
            got = np.array([requant.device_requant(int(a), ch, lo, 255) for a in acc])
            assert np.array_equal(got, want[:, n])
            exceptions += len(ch.exceptions)
        checked += acc.size * fn.n
    assert checked > 1_000_000


def test_exceptions_are_exercised_and_exact():
    """Some channels need exceptions; the device must use them (a line alone would be wrong there)."""
    rng = np.random.default_rng(5)
    seen = 0
    while seen < 5:
        fn, lo = random_requant(rng, "fbgemm")
        acc_lo, acc_hi = np.full(fn.n, -200_000), np.full(fn.n, 200_000)
        for n, ch in enumerate(requant.fit_layer(fn, fn.M.astype(float), acc_lo, acc_hi, lo, 255)):
            for a, code in ch.exceptions.items():
                acc = np.zeros((1, fn.n), np.int64)
                acc[0, n] = ch.c_lo + a
                assert fn(acc)[0, n] == code == requant.device_requant(ch.c_lo + a, ch, lo, 255)
                no_fix = requant.ChannelRequant(ch.c_lo, ch.W, ch.A, ch.D, ch.S)
                assert requant.device_requant(ch.c_lo + a, no_fix, lo, 255) != code
                seen += 1


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_device_arithmetic_stays_in_31_bits(engine):
    """Run the device's dense kernel with Small ints on extreme inputs of random models."""
    rng = np.random.default_rng(21)
    for _ in range(25):
        chain = randmodels.random_chain(rng, engine)
        plan = uquant.convert(chain, engine=engine).plan
        for step in plan.steps:
            P = rt.as_words(step.words)  # int32 bytes, decoded by the runtime in small-int pieces
            W = [Small(b) for b in step.weights]
            out = bytearray(step.N)
            F = rt._fixes(rt.as_words(step.fixes))  # as Node builds it
            for x in (np.full(step.K, 0), np.full(step.K, 255), rng.integers(0, 256, step.K),
                      np.where(rng.random(step.K) < 0.5, 0, 255)):
                rt.dense([Small(v) for v in x], out, Small(step.K), step.N, step.lo, step.hi, W, P, F, None)


def ir_linear(K, N, x_scale=0.01, w_scale=0.01, out_scale=0.05, rng=None):
    rng = rng or np.random.default_rng(0)
    return Linear("fc", rng.integers(-128, 128, (N, K)), np.full(N, w_scale), np.zeros(N, np.int64), False,
                  np.zeros(N, np.float32), QParams(out_scale, 128))


def test_too_many_inputs_is_refused_with_the_layer_named():
    graph = Graph("big", QParams(0.01, 0), (20000,), [ir_linear(20000, 2)])
    with pytest.raises(ConversionError, match="fc: 20000 inputs per output is too many"):
        lower(graph, "x86")


def test_qnnpack_int32_wraparound_is_refused():
    layer = ir_linear(4, 2)
    layer.bias = np.array([3e9 * 1e-4, 0], np.float32)  # quantized bias near 2^31
    graph = Graph("wrap", QParams(0.01, 0), (4,), [layer])
    with pytest.raises(ConversionError, match="overflow int32"):
        lower(graph, "qnnpack")


def test_large_multipliers_work():
    """Output scale far below input x weight scale (multiplier >> 1): the one-multiply form handles it."""
    layer = ir_linear(3, 4, x_scale=0.5, w_scale=0.5, out_scale=0.01)
    graph = Graph("steep", QParams(0.5, 7), (3,), [layer])
    plan = lower(graph, "fbgemm")
    assert all(ch.S < 30 for ch in plan.steps[0].channels)


@pytest.mark.parametrize("zp", [0, 128, 249])
def test_large_multipliers_near_the_top_code(zp):
    """M ~ 1.56 over a 5-accumulator window ending near code 255: the one-multiply form must leave room for
    D ~ 255 * 2**S (a fuzz found this refused before)."""
    def fn(acc):
        return np.clip(np.rint(np.asarray(acc, np.float64) * 1.5558).astype(np.int64) + zp, 0, 255)

    chans = requant.fit_layer(fn, np.array([1.5558]), np.array([-2]), np.array([4]), 0, 255)
    assert chans[0].fits_small_ints()
    for a in range(-2, 5):
        assert requant.device_requant(a, chans[0], 0, 255) == fn(a)
