"""Lowering of element-wise ops on two tensors: quantized add, and concatenation.

Both are functions of at most two codes, so instead of a proof by thresholds the integer form is checked
against torch's arithmetic (engines.add) on all 65,536 pairs of codes; pairs where the integer line and
torch differ become exceptions. torch's add also rounds differently inside its 64-element SIMD blocks and in
the scalar tail, so positions [0, n_vec) and [n_vec, n) get their own parameters.
"""
from __future__ import annotations

import numpy as np

from . import engines, pt2e_ops
from . import requant as rq
from .ir import Add, Cat, ConversionError, Mul, QParams, f32_normal, sample_dim
from .plan import AddStep, CatStep, MulStep

GRAIN = 32768  # ATen splits larger tensors between threads, which moves the SIMD/tail boundaries
VEC_BLOCK = 64
SMALL = 1 << 30
INT32_SAFE = 2.0 ** 31 - 2.0 ** 10  # torch converts float results to int32 (as lower.INT32_SAFE)
MAX_EXCEPTIONS = 4096

QA, QB = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")  # every pair of codes


def fit_pairs(truth: np.ndarray, alpha: float, beta: float, za: int, zb: int, zy: float, lo: int, hi: int):
    """Integers (Aa, Ab, D, S) with clip((Aa*qa + Ab*qb + D) >> S) closest to `truth` (256 x 256), + exceptions."""
    S = 20
    while S > 0 and 255 * (alpha + beta) * 2 ** S + (abs(zy) + 512) * 2 ** S >= SMALL // 2:
        S -= 1
    Aa, Ab = int(round(alpha * 2 ** S)), int(round(beta * 2 ** S))
    D0 = int(round((zy - alpha * za - beta * zb + 0.5) * 2 ** S))
    best = None
    for k in range(-32, 33):
        D = D0 + k * max(1, 2 ** (S - 12))
        y = np.clip((Aa * QA + Ab * QB + D) >> S, lo, hi)
        bad = np.count_nonzero(y != truth)
        if best is None or bad < best[0]:
            best = (bad, D, y)
    bad, D, y = best
    if bad > MAX_EXCEPTIONS:
        raise ConversionError(f"add: no integer form within {MAX_EXCEPTIONS} exceptions (needs {bad})")
    wrong = np.flatnonzero((y != truth).ravel())
    fixes = [v for i in wrong for v in (int(i), int(truth.ravel()[i]))]
    return (Aa, Ab, D, S), fixes


def lower_add(op: Add, q_in: list[QParams], shape: tuple, engine: str) -> AddStep:
    (qa, qb), q = q_in, op.out
    n = int(np.prod(shape))
    if q.formula == "pt2e":
        return lower_add_pt2e(op, qa, qb, shape, n)
    if n > GRAIN:
        raise ConversionError(f"{op.name}: add of {n} elements: torch splits tensors over {GRAIN} elements between "
                              "threads, which changes its rounding; not supported")
    qnnpack = engine == "qnnpack" and qa.dtype == qb.dtype == q.dtype == "quint8"  # else ATen's kernel
    if qnnpack:  # what QNNPACK's add operator refuses to create (torch then raises): refuse it too
        for name, ratio in (("first", qa.scale / q.scale), ("second", qb.scale / q.scale)):
            if not 2.0 ** -14 <= np.float32(ratio) < 2.0 ** 8:
                raise ConversionError(f"{op.name}: the {name} input's scale / output scale = {ratio:.3g} is outside "
                                      "QNNPACK's range [2^-14, 2^8): torch cannot run this add on qnnpack")
        if op.relu and q.zero_point == q.qmax:
            raise ConversionError(f"{op.name}: add_relu with output zero point {q.qmax}: QNNPACK refuses it "
                                  "(torch cannot run it on qnnpack)")
    n_vec = n if qnnpack else n // VEC_BLOCK * VEC_BLOCK
    lo, hi, vec, vec_fixes, tail, tail_fixes = fit_add(op, qa, qb, "qnnpack" if qnnpack else "x86")
    return AddStep("add", op.name, list(op.inputs), op.name, q, shape, n, n_vec, lo, hi, vec, vec_fixes, tail,
                   tail_fixes, "qnnpack q8add" if qnnpack else "aten add (SIMD blocks + tail)")


def lower_broadcast_add(op: Add, big: str, small: str, qa: QParams, qb: QParams, shape: tuple,
                        channels_last: bool) -> AddStep:
    """add of a full (C, H, W) / (C, L) tensor `big` and a per-channel (C, 1, 1) / (C, 1) one `small` (the device
    reads them in that order; torch's arithmetic is symmetric in its two inputs). Every engine runs ATen's kernel
    here (QNNPACK's add takes only same shapes), and its SIMD blocks restart on each row it loops over: a
    channel's H*W positions in contiguous memory, a position's C channels in channels-last (measured, torch 2.13).
    `cuts[c]` is how many of channel c's positions fall in SIMD blocks."""
    q, n = op.out, int(np.prod(shape))
    C, HW = shape[0], n // shape[0]
    if q.formula == "pt2e":  # a float32 add: the same function of two codes at every position
        step = lower_add_pt2e(op, qa, qb, shape, n)
        step.srcs, step.cuts = [big, small], (HW,) * C
        return step
    if n > GRAIN:
        raise ConversionError(f"{op.name}: add of {n} elements: torch splits tensors over {GRAIN} elements between "
                              "threads, which changes its rounding; not supported")
    rows = [(HW // VEC_BLOCK * VEC_BLOCK,) * C, tuple(HW if c < C // VEC_BLOCK * VEC_BLOCK else 0 for c in range(C))]
    if len(shape) == 2 and rows[0] != rows[1]:  # uquant does not track the memory order of every 1-D tensor
        raise ConversionError(f"{op.name}: broadcasting add on a 1-D (C, L) = {shape} tensor with C or L >= "
                              f"{VEC_BLOCK}: torch's rounding then depends on a memory order uquant does not model")
    lo, hi, vec, vec_fixes, tail, tail_fixes = fit_add(op, qa, qb, "x86")
    step = AddStep("add", op.name, [big, small], op.name, q, shape, n, 0, lo, hi, vec, vec_fixes, tail, tail_fixes,
                   "aten add, broadcast per channel (SIMD blocks + tail per row)")
    step.cuts = rows[1] if channels_last else rows[0]
    return step


def fit_add(op: Add, qa: QParams, qb: QParams, kernel: str):
    """The integer forms of torch's add for its SIMD blocks and for its scalar tail (kernel "x86": ATen's,
    "qnnpack": QNNPACK's q8add, the same at every position): lo, hi, vec, vec_fixes, tail, tail_fixes."""
    q = op.out
    alpha, beta = float(np.float32(qa.scale) / np.float32(q.scale)), float(np.float32(qb.scale) / np.float32(q.scale))
    if not np.isfinite(alpha + beta) or 255 * (alpha + beta) + 255 >= INT32_SAFE:
        raise ConversionError(f"{op.name}: input scale / output scale ratios {alpha:.3g} and {beta:.3g} are so large "
                              "that torch's float -> int32 conversion overflows; refusing")
    params = []
    for vectorized in (True, False):
        # every pair of stored codes (code - qmin); the fit works in stored codes throughout
        truth = engines.add(kernel, QA + qa.qmin, qa.scale, qa.zero_point, QB + qb.qmin,
                            qb.scale, qb.zero_point, q.scale, q.zero_point, op.relu, vectorized, q.dtype) - q.qmin
        floor = q.zero_point - q.qmin if op.relu else 0  # a ReLU clips at the output zero point
        try:
            params.append((truth, *fit_pairs(truth, alpha, beta, qa.zero_point - qa.qmin, qb.zero_point - qb.qmin,
                                             q.zero_point - q.qmin, floor, 255)))
        except ConversionError as e:
            raise ConversionError(f"{op.name}: {e}") from None
        Aa, Ab, D, _ = params[-1][1]
        if 255 * (abs(Aa) + abs(Ab)) + abs(D) >= SMALL:
            raise ConversionError(f"{op.name}: the add's integer form ({Aa}, {Ab}, {D}) leaves 31-bit ints "
                                  f"(scale ratios {alpha:.3g}, {beta:.3g}); refusing")
    lo = int(min(p[0].min() for p in params))
    hi = int(max(p[0].max() for p in params))
    (_, vec, vec_fixes), (_, tail, tail_fixes) = params
    return lo, hi, vec, vec_fixes, tail, tail_fixes


def lower_add_pt2e(op: Add, qa: QParams, qb: QParams, shape: tuple, n: int) -> AddStep:
    """A PT2E program's float32 add (+relu) between dequantize and quantize: one element-wise function of two codes,
    the same at every position; torch's own ops on all 65,536 pairs are the truth to fit."""
    q = op.out
    relu = op.relu
    truth = pt2e_ops.pairs(qa, qb, lambda a, b: (a + b).relu() if relu else a + b, q)
    alpha, beta = qa.scale / q.scale, qb.scale / q.scale
    if not np.isfinite(alpha + beta) or 255 * (alpha + beta) + 255 >= INT32_SAFE:
        raise ConversionError(f"{op.name}: input scale / output scale ratios {alpha:.3g} and {beta:.3g} are too large")
    try:
        params, fixes = fit_pairs(truth, alpha, beta, qa.zero_point - qa.qmin, qb.zero_point - qb.qmin,
                                  q.zero_point - q.qmin, q.zero_point - q.qmin if relu else 0, 255)
    except ConversionError as e:
        raise ConversionError(f"{op.name}: {e}") from None
    Aa, Ab, D, _ = params
    if 255 * (abs(Aa) + abs(Ab)) + abs(D) >= SMALL:
        raise ConversionError(f"{op.name}: the add's integer form ({Aa}, {Ab}, {D}) leaves 31-bit ints; refusing")
    return AddStep("add", op.name, list(op.inputs), op.name, q, shape, n, n, int(truth.min()), int(truth.max()),
                   params, fixes, params, fixes, "PT2E float32 add")


def lower_cat(op: Cat, q_in: list[QParams], shapes: list[tuple], shape: tuple) -> CatStep:
    parts = []
    codes = np.arange(256)
    k = sample_dim(op.dim, len(shape), op.name)  # each input's block along the cat axis repeats over the axes before
    for q, sh in zip(q_in, shapes):
        table = None
        if q != op.out:  # torch requantizes: quantize(dequantize(x)), the same for every element
            real = codes + q.qmin  # buffers hold code - qmin
            if op.out.formula == "pt2e":
                t = pt2e_ops.requantize(q, op.out)
            else:
                t = engines.quantize(engines.dequantize(real, q.scale, q.zero_point), op.out.scale,
                                     op.out.zero_point, op.out.dtype)
            table = bytes((t - op.out.qmin).astype(np.uint8).tolist())
        if q != op.out and op.out.formula != "pt2e" and q.scale / op.out.scale * 255 + 255 >= INT32_SAFE:
            raise ConversionError(f"{op.name}: an input's scale is {q.scale / op.out.scale:.3g} times the output's: "
                                  "torch's requantization overflows int32 there; refusing")
        parts.append((int(np.prod(sh[k:])), table))
    return CatStep("cat", op.name, list(op.inputs), op.name, op.out, shape, parts, int(np.prod(shape[:k])))


def lower_mul(op: Mul, q_in: list[QParams], shape: tuple, srcs: list[str] | None = None,
              b_shape: tuple | None = None) -> MulStep:
    """c = (a - za)(b - zb) is exact; torch's output is a monotone function of c, fitted and proven like a layer,
    the same at every position (measured on every engine, broadcasting too). srcs: the inputs in the device's
    order, a per-channel (C, 1, 1) one second (broadcast over b_shape's H*W positions), torch's f32(s_a * s_b)
    being symmetric."""
    step = _lower_mul(op, q_in, shape)
    if srcs is not None:
        step.srcs = list(srcs)
    if b_shape is not None and b_shape != shape:
        step.hw = int(np.prod(shape[1:]))
    return step


def _lower_mul(op: Mul, q_in: list[QParams], shape: tuple) -> MulStep:
    (qa, qb), q = q_in, op.out
    za, zb = qa.zero_point - qa.qmin, qb.zero_point - qb.qmin  # stored codes
    if q.formula == "pt2e":
        return lower_mul_pt2e(op, qa, qb, shape, za, zb)
    corners = [(a - za) * (b - zb) for a in (0, 255) for b in (0, 255)]
    c_lo, c_hi = np.array([min(corners)]), np.array([max(corners)])
    lo = q.zero_point if op.relu else q.qmin

    def fn(c):  # stored output code as a function of c
        return engines.mul(c, qa.scale, qb.scale, q.scale, q.zero_point, lo, q.qmax) - q.qmin

    M = float(np.float32(np.float32(qa.scale) * np.float32(qb.scale)) / np.float32(q.scale))
    if not f32_normal(M) or M * 65025 >= INT32_SAFE:
        raise ConversionError(f"{op.name}: mul multiplier s_a * s_b / s_y = {M:.6g} is outside what torch's float32 "
                              "arithmetic computes reliably (zero, subnormal, or products beyond int32); refusing")
    ends = fn(np.stack([c_lo, c_hi]))
    try:
        (ch,) = rq.fit_layer(fn, np.array([M]), c_lo, c_hi, int(ends.min()), int(ends.max()))
    except rq.RequantError as e:
        raise ConversionError(f"{op.name}: {e}") from None
    fixes = [v for a, y in sorted(ch.exceptions.items()) for v in (a, y)]
    return MulStep("mul", op.name, list(op.inputs), op.name, q, shape, int(np.prod(shape)), za, zb,
                   int(ends.min()), int(ends.max()), ch.words, fixes)


def lower_mul_pt2e(op: Mul, qa: QParams, qb: QParams, shape: tuple, za: int, zb: int) -> MulStep:
    """A PT2E program's float32 mul (+relu): torch's result on all 65,536 code pairs, which must be a function of
    c = (a - za)(b - zb) (float32 rounds f32(dq(a)) * f32(dq(b)) per pair, so this is checked, not assumed);
    the device's requantization of c is fitted to it and then checked on every pair."""
    from .runtime import rt

    q, relu = op.out, op.relu
    truth = pt2e_ops.pairs(qa, qb, lambda a, b: (a * b).relu() if relu else a * b, q).ravel()
    c = ((np.arange(256)[:, None] - za) * (np.arange(256)[None, :] - zb)).ravel()
    values, first = np.unique(c, return_index=True)
    y_of = truth[first]
    split = np.count_nonzero(truth != y_of[np.searchsorted(values, c)])
    if split:
        raise ConversionError(f"{op.name}: torch's float32 mul gives different codes for {split} pairs of inputs "
                              "with the same integer product; no integer form reproduces it, refusing")

    zy, M_real = q.zero_point - q.qmin, float(np.float32(qa.scale)) * float(np.float32(qb.scale)) / q.scale

    def fn(acc):  # between realizable products any value works: the ideal one, kept between its neighbours'
        shape = np.shape(acc)
        acc = np.asarray(acc, np.int64).ravel()
        i = np.clip(np.searchsorted(values, acc, side="right") - 1, 0, values.size - 1)
        j = np.minimum(i + 1, values.size - 1)
        y = np.clip(np.rint(acc * M_real).astype(np.int64) + zy, y_of[i], np.maximum(y_of[i], y_of[j]))
        return np.where(values[i] == acc, y_of[i], y).reshape(shape)

    lo, hi = int(truth.min()), int(truth.max())
    M = np.array([qa.scale * qb.scale / q.scale])
    try:
        (ch,) = rq.fit_layer(fn, M, values[:1], values[-1:], lo, hi)
    except rq.RequantError as e:
        raise ConversionError(f"{op.name}: {e}") from None
    fixes = [v for a, y in sorted(ch.exceptions.items()) for v in (a, y)]
    bad = [int(v) for v, y in zip(values, y_of) if rt.requant_one(int(v), ch.words, ch.exceptions, lo, hi) != y]
    if bad:
        raise ConversionError(f"{op.name}: the integer form of torch's float32 mul differs at {len(bad)} products "
                              f"(first: {bad[0]}); refusing")
    return MulStep("mul", op.name, list(op.inputs), op.name, q, shape, int(np.prod(shape)), za, zb, lo, hi,
                   ch.words, fixes)
