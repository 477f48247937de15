"""Torch's quantized arithmetic, written once in numpy, bit for bit.

Every formula here was established by fuzzing torch 2.13 (see shared/reference/torch-quantized-semantics.md)
and is re-checked against torch by the tests. The rest of uquant treats these functions as the truth:
lowering proves the device's integer parameters against them, channel by channel.

Notation: f32(.) rounds to float32 (round to nearest even), rint rounds to an integer (ties to even),
fma32(a, b, c) is a*b+c rounded once to float32.
"""
from __future__ import annotations

import numpy as np

f32 = np.float32
f64 = np.float64

ENGINES = ("x86", "fbgemm", "qnnpack")
# Which requantization formula each engine uses for Linear (and, on fbgemm/qnnpack, Conv).
REQUANT_FAMILY = {"x86": "fbgemm", "fbgemm": "fbgemm", "qnnpack": "qnnpack"}

DTYPE_RANGE = {"quint8": (0, 255), "qint8": (-128, 127)}


def fma32(a, b, c):
    """Correctly rounded float32 fused multiply-add (a*b is exact in float64; the sum is rounded once)."""
    a, b, c = np.broadcast_arrays(np.asarray(a, f32), np.asarray(b, f32), np.asarray(c, f32))
    shape = a.shape
    a = a.astype(f64).ravel()
    b = b.astype(f64).ravel()
    c = c.astype(f64).ravel()
    p = a * b  # exact: 24-bit x 24-bit mantissas fit in 53 bits
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)  # two-sum: s + err == p + c exactly
    r = s.astype(f32)
    r64 = r.astype(f64)
    up = np.nextafter(r, f32(np.inf)).astype(f64)
    dn = np.nextafter(r, f32(-np.inf)).astype(f64)
    # s sits exactly halfway between two floats but the true sum lies beyond it: round away from the tie.
    m_up = (s == (r64 + up) / 2) & (err > 0)
    m_dn = (s == (r64 + dn) / 2) & (err < 0)
    r[m_up] = np.nextafter(r[m_up], f32(np.inf))
    r[m_dn] = np.nextafter(r[m_dn], f32(-np.inf))
    return r.reshape(shape)


def quantize(x, scale: float, zero_point: int, dtype: str = "quint8") -> np.ndarray:
    """torch.quantize_per_tensor on x86: clip(rint(fma(x, f32(1/f32(s)), zp))) -- zp added before the one rounding."""
    qmin, qmax = DTYPE_RANGE[dtype]
    inv = f32(f32(1) / f32(scale))
    return np.clip(np.rint(fma32(np.asarray(x, f32), inv, f32(zero_point))), qmin, qmax).astype(np.int64)


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    """Tensor.dequantize(): f32(s * (q - zp)), with the double scale cast to float first."""
    return f32(f32(scale) * f32(np.asarray(q, np.int64) - zero_point))


def channel_sum(v) -> np.ndarray:
    """ATen's float32 sum of v (..., n) over its last axis in multi_row_sum's cascade order (SumKernel.cpp), the
    order of a channel of a channels-last tensor summed over H, W in one of its 4-vector blocks: chunks of
    2**level_power rows summed in turn, the chunk sums carried up through 4 levels, then the levels added.
    Up to 16 rows this is the plain running sum. (Channels outside those blocks sum 4 interleaved partial sums
    instead, row_sum; the orders agree up to 4 rows: see uquant.fmean.)"""
    v = np.asarray(v, f32)
    n = v.shape[-1]
    lp = max(4, (1 if n <= 2 else (n - 1).bit_length()) // 4)
    step, mask = 1 << lp, (1 << lp) - 1
    acc = [np.zeros(v.shape[:-1], f32) for _ in range(4)]
    i = 0
    while i + step <= n:
        for _ in range(step):
            acc[0] = f32(acc[0] + v[..., i])
            i += 1
        for j in range(1, 4):
            acc[j] = f32(acc[j] + acc[j - 1])
            acc[j - 1] = np.zeros_like(acc[0])
            if i & (mask << (j * lp)):
                break
    while i < n:
        acc[0] = f32(acc[0] + v[..., i])
        i += 1
    for j in range(1, 4):
        acc[0] = f32(acc[0] + acc[j])
    return acc[0]


def fbgemm_acc(x, x_zp: int, w, w_zp, saturate: bool) -> np.ndarray:
    """fbgemm's int8 GEMM accumulator for raw u8 codes x (..., K) and raw int8 weights w (N, K), zero points per
    tensor or per row of w. Without VNNI (saturate=True) consecutive pairs of raw products are added in int16 by
    vpmaddubsw, saturating; the zero points' terms are exact: sum_pairs sat16(.) - x_zp*sum(w) - w_zp*sum(x) +
    K*x_zp*w_zp. With VNNI it is the exact sum of (x - x_zp)(w - w_zp). (Conv: the same along im2col's axis.)"""
    x = np.asarray(x, np.int64)
    w = np.asarray(w, np.int64)
    w_zp = np.broadcast_to(np.asarray(w_zp, np.int64), (w.shape[0],))
    K = w.shape[1]
    if not saturate:
        return (x - x_zp) @ (w - w_zp[:, None]).T
    prod = x[..., None, :] * w  # (..., N, K)
    if K % 2:
        prod = np.concatenate([prod, np.zeros(prod.shape[:-1] + (1,), np.int64)], -1)
    pairs = np.clip(prod[..., 0::2] + prod[..., 1::2], -32768, 32767).sum(-1)
    return pairs - x_zp * w.sum(1) - w_zp * x.sum(-1, keepdims=True) + K * x_zp * w_zp


class Requant:
    """One layer's requantization: accumulator (exact int) -> output code, per output channel.

    `acc` may have any shape whose last axis is the channel axis (length N).
    """

    def __init__(self, engine: str, x_scale: float, w_scales, bias, y_scale: float, y_zp: int,
                 lo: int, hi: int, per_channel: bool, family: str | None = None):
        self.engine = engine
        self.family = family or REQUANT_FAMILY[engine]
        self.per_channel = per_channel
        self.y_zp = int(y_zp)
        self.lo, self.hi = int(lo), int(hi)
        ws = np.asarray(w_scales, f64).reshape(-1)
        self.n = ws.size
        b = None if bias is None else np.asarray(bias, f32).reshape(-1)
        if self.family == "onednn":
            # oneDNN (engine x86 Conv with symmetric weights on VNNI CPUs): torch hands ideep 1/scale, ideep
            # inverts it back, the bias stays float. The best model known, not proven (see README).
            xe = f32(f32(1) / f32(1 / float(x_scale)))
            we = f32(f32(1) / (1 / ws).astype(f32))
            self.yinv = f32(f32(1) / f32(f32(1) / f32(1 / float(y_scale))))
            self.sc = f32(xe * we)
            self.b = np.zeros(self.n, f32) if b is None else b
            self.M = f32(self.sc * self.yinv)
        elif self.family == "pt2e":
            # a PT2E program: dequantize, float32 aten.linear/conv, then quantize_per_tensor's rint(v * f32(1/s_y)).
            # The float32 sum's order is unknown, so this is the exact real value instead; it agrees with torch
            # except where float32 rounding moves the value across a rounding boundary (one code; measured).
            self.real = f64(f32(x_scale)) * ws.astype(f32).astype(f64)
            self.b64 = np.zeros(self.n, f64) if b is None else b.astype(f64)
            self.yinv = f64(f32(1.0 / float(y_scale)))
            self.M = self.real * self.yinv
        elif self.family == "fbgemm":
            ats = f32(f32(x_scale) * ws.astype(f32))
            self.M = f32(ats / f32(y_scale))
            if b is None:
                self.mode = "nobias"
            elif per_channel:
                self.mode = "div"  # t = f32(f32(acc) + f32(b / ats))
                self.b_term = f32(b / ats)
            else:
                self.mode = "fma"  # t = fma(b, f32(1/(double)ats), f32(acc))
                self.b = b
                self.rcp = (1.0 / ats.astype(f64)).astype(f32)
        else:
            self.M = f32(f32(ws.astype(f32) * f32(x_scale)) * f32(f32(1) / f32(y_scale)))
            if b is None:
                self.bq = np.zeros(self.n, np.int64)
            else:
                bs = f32(ws * float(x_scale))  # product of the double scales, then float
                bq = np.rint(f32(b * f32(f32(1) / bs))).astype(f64)
                self.bq = np.clip(bq, -2.0 ** 31, 2.0 ** 31 - 1).astype(np.int64)  # qint32 saturates

    def pre_bias_ok(self, acc_lo, acc_hi) -> np.ndarray:
        """qnnpack adds the int32 bias with wrap-around; report channels where that cannot happen."""
        if self.family != "qnnpack":
            return np.ones(self.n, bool)
        lo = np.asarray(acc_lo, np.int64) + self.bq
        hi = np.asarray(acc_hi, np.int64) + self.bq
        return (lo >= -2 ** 31) & (hi < 2 ** 31)

    def scaled(self, acc) -> np.ndarray:
        """torch's float32 value for `acc` just before it is rounded (and, but for oneDNN, the zero point added).

        Torch converts it to int32: where |value| reaches 2**31 the conversion overflows (to INT_MIN, which the
        clip then turns into the lowest code), so the result stops being monotone; lowering refuses such layers.
        """
        acc = np.asarray(acc, np.int64)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.family == "onednn":
                return f32(f32(f32(acc.astype(f32) * self.sc) + self.b) * self.yinv)
            return self._scaled(acc)

    def __call__(self, acc) -> np.ndarray:
        acc = np.asarray(acc, np.int64)
        if self.family == "onednn":
            v = f32(f32(f32(acc.astype(f32) * self.sc) + self.b) * self.yinv)
            v = np.clip(v, -2.0 ** 40, 2.0 ** 40)
            y = np.rint(f32(v + f32(self.y_zp))).astype(np.int64)  # a ReLU is the clip at lo = zp
            return np.clip(y, self.lo, self.hi)
        v = np.clip(self._scaled(acc), -2.0 ** 40, 2.0 ** 40)  # far beyond any clip bound; keeps int64 safe
        return np.clip(np.rint(v).astype(np.int64) + self.y_zp, self.lo, self.hi)

    def _scaled(self, acc) -> np.ndarray:
        if self.family == "pt2e":
            return (acc * self.real + self.b64) * self.yinv
        if self.family == "fbgemm":
            accf = acc.astype(f32)
            if self.mode == "nobias":
                t = accf
            elif self.mode == "div":
                t = f32(accf + self.b_term)
            else:
                t = fma32(np.broadcast_to(self.b, acc.shape), np.broadcast_to(self.rcp, acc.shape), accf)
        else:
            tot = acc + self.bq
            tot = ((tot + 2 ** 31) % 2 ** 32) - 2 ** 31  # the int32 accumulator wraps
            t = tot.astype(f32)
        return f32(t * self.M)


def add(engine: str, qa, sa: float, za: int, qb, sb: float, zb: int, sy: float, zy: int, relu: bool,
        vectorized: bool, dtype: str = "quint8") -> np.ndarray:
    """quantized::add / add_relu of two same-shape quint8 tensors, per element.

    x86/fbgemm: ATen's kernel, whose SIMD blocks (vectorized=True) dequantize with an fma and round before
    adding the zero point, while its scalar tail does neither. qnnpack: QNNPACK's pure integer q8add, which
    rounds half away from zero (the same at every position).
    """
    qa = np.asarray(qa, np.int64)
    qb = np.asarray(qb, np.int64)
    if engine == "qnnpack":
        a_os, b_os = f32(f32(sa) / f32(sy)), f32(f32(sb) / f32(sy))
        shift = 21 - (int(np.array(max(a_os, b_os), f32).view(np.uint32) >> 23) - 127)

        def mult(v):
            bits = np.array(v, f32).view(np.uint32) + np.uint32(shift << 23)  # v * 2**shift, exactly
            return int(np.rint(bits.view(f32)))

        am, bm = mult(a_os), mult(b_os)
        acc = qa * am + qb * bm - (am * za + bm * zb)
        mask = (1 << shift) - 1
        r = (acc >> shift) + (((acc & mask) - (acc < 0)) > (mask >> 1))
        return np.clip(r + zy, zy if relu else 0, 255)
    sa32, sb32 = f32(sa), f32(sb)
    inv = f32(f32(1) / f32(sy))
    if vectorized:
        c = f32(fma32(sa32, f32(qa), f32(sa32 * f32(-za))) + fma32(sb32, f32(qb), f32(sb32 * f32(-zb))))
    else:
        c = f32(f32(sa32 * f32(qa - za)) + f32(sb32 * f32(qb - zb)))
    if relu:
        c = np.maximum(c, f32(0))
    qmin, qmax = DTYPE_RANGE[dtype]
    if vectorized:
        return np.clip(np.rint(f32(c * inv)).astype(np.int64) + zy, qmin, qmax)
    return np.clip(np.rint(f32(f32(c * inv) + f32(zy))).astype(np.int64), qmin, qmax)


# ---------------------------------------------------------------------------------------------------------
# Average pooling (shared reference, "Pooling": P1..P5). The output keeps the input's qparams, so torch's
# scale ratio s_x / s_y is exactly 1. Each formula is a monotone function of one window's integer sum:
#   acc = sum over the window's valid taps of (q - zp)   (P1, P2, P3, P5);   raw = sum of q   (P4).
# `div`, `size`, `kh`, `kw` broadcast against acc.
# ---------------------------------------------------------------------------------------------------------
def _clip8(y):
    return np.clip(y, 0, 255).astype(np.int64)


def avgpool_p1(acc, div, zp: int) -> np.ndarray:
    """P1: ATen's NCHW avg_pool2d kernel (x86/fbgemm; qnnpack with ceil_mode=True on NCHW input).

    m = f32((s_x/s_y) / div) computed in double; y = clip(rint(f32(f32(f32(acc) * m) + zp))).
    """
    m = (1.0 / np.asarray(div, f64)).astype(f32)
    return _clip8(np.rint(f32(f32(np.asarray(acc, np.int64).astype(f32) * m) + f32(zp))))


def avgpool_p2(acc, div, zp: int, block: bool) -> np.ndarray:
    """P2: ATen's NHWC avg_pool2d kernel (channels_last-contiguous input, which includes every C == 1 tensor).

    m = f32(f32(s_x/s_y) / div). Channels inside the full SIMD blocks (block=True): rint(f32(acc * m)) + zp;
    the remaining channels: rint(f32(f32(acc * f32(1/f32(1/m))) + zp)).
    """
    m = f32(f32(1) / np.asarray(div, np.int64).astype(f32))
    accf = np.asarray(acc, np.int64).astype(f32)
    if block:
        return _clip8(np.rint(f32(accf * m)).astype(np.int64) + zp)
    inv = f32(f32(1) / f32(f32(1) / m))
    return _clip8(np.rint(f32(f32(accf * inv) + f32(zp))))


def avgpool_p3(acc, kk, scale: float, zp: int) -> np.ndarray:
    """P3: QNNPACK's average pooling (engine qnnpack, ceil_mode=False); the divisor is always kh*kw = kk.

    y = clip(rint(f32(f32(acc) * f32(s_x / f32(s_y * kk)))) + zp).
    """
    sc = f32(f32(scale) / f32(f32(scale) * np.asarray(kk, np.int64).astype(f32)))
    return _clip8(np.rint(f32(np.asarray(acc, np.int64).astype(f32) * sc)).astype(np.int64) + zp)


def avgpool_pt2e(acc, div, x_scale: float, y_scale: float, y_zp: int) -> np.ndarray:
    """A PT2E program's float32 avg_pool2d / adaptive_avg_pool2d / mean between dequantize and quantize, from the
    window's integer sum: f32(f32(acc * s_x) / div), then PT2E's quantize. torch sums the dequantized floats in an
    unknown order, so this agrees except by one code near a rounding boundary (measured: 99.88 % here against
    99.77 % for the exact real mean, whose ties torch's float32 rounding breaks both ways)."""
    v = f32(f32(np.asarray(acc, np.int64).astype(f32) * f32(x_scale)) / np.asarray(div, f32))
    return _clip8(np.rint(f32(v * f32(1.0 / float(y_scale)))).astype(np.int64) + y_zp)


def adaptive_p4(raw, kh, kw) -> np.ndarray:
    """P4: ATen's NCHW adaptive_avg_pool2d on raw code sums (no zero point, no clamp):

    y = rint(f32(f32(raw) * f32(f32(1/kh) / kw))). (Clipped here only to keep the type; it never binds.)
    """
    r = f32(f32(f32(1) / np.asarray(kh, np.int64).astype(f32)) / np.asarray(kw, np.int64).astype(f32))
    return _clip8(np.rint(f32(np.asarray(raw, np.int64).astype(f32) * r)))


def adaptive_p5(acc, size, zp: int, block: bool = False) -> np.ndarray:
    """P5: ATen's NHWC adaptive_avg_pool2d. m = f32(f32(s_x/s_y) / size), inv = f32(1/f32(1/m)).

    Remaining (scalar) channels: rint(f32(f32(acc * inv) + zp)). Channels inside full blocks of 8 (block=True,
    see uquant.platforms.simd_channel_block) round once: rint(fma(acc, inv, zp)) -- established for this project by fuzzing
    channels_last inputs with C in 8..47 (the shared reference leaves C >= 8 uncharacterised).
    """
    m = f32(f32(1) / np.asarray(size, np.int64).astype(f32))
    inv = f32(f32(1) / f32(f32(1) / m))
    accf = np.asarray(acc, np.int64).astype(f32)
    if block:
        return _clip8(np.rint(fma32(accf, inv, f32(zp))))
    return _clip8(np.rint(f32(f32(accf * inv) + f32(zp))))


def mul(c, sa: float, sb: float, sy: float, zy: int, lo: int, hi: int) -> np.ndarray:
    """quantized::mul / mul_relu, as a function of c = (qa - za) * (qb - zb): clip(rint(f32(f32(c) * M)) + zy).

    M = f32(f32(sa * sb) * f32(1 / sy)); every engine, every position (the SIMD and tail paths agree).
    """
    M = f32(f32(f32(sa) * f32(sb)) * f32(f32(1) / f32(sy)))
    v = np.clip(f32(np.asarray(c, np.int64).astype(f32) * M), -2.0 ** 40, 2.0 ** 40)
    return np.clip(np.rint(v).astype(np.int64) + zy, lo, hi)
