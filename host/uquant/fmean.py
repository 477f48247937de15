"""torch's x86/fbgemm quantized mean over H, W, reproduced with float32 arithmetic emulated in small integers.

On x86 and fbgemm, `x.mean([2, 3])` of a channels-last quint8 tensor (what a quantized conv returns) is not an
integer kernel: torch dequantizes every code to float32, sums each channel's positions in float32 (ATen's cascade
sum, engines.channel_sum), divides by the count and quantizes with the input's own qparams. About one output in
ten where the exact mean is a tie lands on the other side of it, so no integer formula of the code sum gives
torch's bytes.

The device (device/uquant_rt.py: fmean) repeats that arithmetic on floats held as (m, e), value m * 2**e with
|m| in [2**23, 2**24), rounding every sum and the division to nearest-even exactly as float32 does, in small ints:
the dequantized codes come from a 256-entry table, and the final quantization, a monotone function of the mean,
from the 255 thresholds computed here (requant.thresholds) on an integer key that orders the means.

Which order torch sums in depends on the channel's place among ATen's vector blocks and on how threads split the
channels; it is the same for every channel where H * W <= 4 (any order of up to 4 positions here is the same chain)
or where the channel count is a multiple of 32 (every channel then sums in multi_row_sum's cascade order, whatever
the split). Other shapes are refused.
"""
from __future__ import annotations

import numpy as np

from . import requant as rq
from .engines import channel_sum, fma32
from .ir import ConversionError, Mean, QParams
from .plan import FloatMeanStep

f32 = np.float32
E_BIAS = 160  # dequantized codes' exponents are stored as e + E_BIAS in a byte
BLOCK = 32  # channels in one of ATen's 4-vector blocks (AVX2 kernels: also what runs on AVX512 CPUs)
MAX_POSITIONS = 1 << 16


def split(v) -> tuple[int, int]:
    """A float32 as (m, e): v == m * 2**e, |m| in [2**23, 2**24), or (0, 0)."""
    v = float(f32(v))
    if v == 0:
        return 0, 0
    fr, ex = np.frexp(v)  # v = fr * 2**ex, |fr| in [0.5, 1)
    return int(fr * (1 << 24)), int(ex) - 24


def key_of(m: int, e: int, e_key: int) -> int:
    """An integer that orders the floats (m, e) (the device's fmean_key), e >= e_key."""
    if m == 0:
        return 0
    k = ((e - e_key + 1) << 23) + abs(m) - (1 << 23)
    return k if m > 0 else -k


def _value_of_keys(keys: np.ndarray, e_key: int) -> np.ndarray:
    mag = np.abs(keys)
    e = (mag >> 23) - 1 + e_key
    m = (mag & ((1 << 23) - 1)) + (1 << 23)
    v = np.ldexp(m.astype(np.float64), e.astype(np.int64)).astype(f32)
    return np.where(keys == 0, f32(0), np.where(keys < 0, -v, v))


def check_scope(name: str, shape: tuple, x: QParams) -> None:
    C, H, W = shape
    n = H * W
    if x.dtype != "quint8" or x.formula == "pt2e":
        raise ConversionError(f"{name}: mean of a {x.dtype} tensor on x86/fbgemm: only torch's quint8 channels-last "
                              "kernel path is reproduced; use nn.AdaptiveAvgPool2d(1) (+ flatten)")
    if C < 2:
        raise ConversionError(f"{name}: mean over H x W of a single channel: torch then takes its contiguous integer "
                              "path, which uquant does not model; use nn.AdaptiveAvgPool2d(1) (+ flatten)")
    if n > 4 and C % BLOCK:
        raise ConversionError(
            f"{name}: mean over H x W = {H}x{W} positions of {C} channels: torch sums the dequantized floats in an "
            f"order that depends on the channel's place in ATen's vector blocks and on how threads split the "
            f"channels; uquant reproduces it over at most 4 positions or for a multiple of {BLOCK} channels. Use "
            "nn.AdaptiveAvgPool2d(1) (+ flatten), which is exact for any shape")
    if n > MAX_POSITIONS:
        raise ConversionError(f"{name}: mean over {n} positions: at most {MAX_POSITIONS} are supported")
    s = float(f32(x.scale))
    if s * 2.0 ** -24 / n < 2.0 ** -126 or s * 255 * n > 2.0 ** 120:
        raise ConversionError(f"{name}: scale {x.scale:.6g} puts torch's float sums outside float32's normal "
                              "range, which uquant does not emulate")


def lower_float_mean(op: Mean, src: str, x: QParams, in_shape: tuple, out_shape: tuple) -> FloatMeanStep:
    """The device step for torch's channels-last quint8 mean over H, W on x86/fbgemm (see the module docstring)."""
    check_scope(op.name, in_shape, x)
    C, H, W = in_shape
    n = H * W
    codes = np.arange(256)
    vals = f32(f32(x.scale) * f32(codes - x.zero_point))  # engines.dequantize
    ms, es = zip(*(split(v) for v in vals))
    if not all(0 <= e + E_BIAS < 256 for m, e in zip(ms, es) if m):
        raise ConversionError(f"{op.name}: scale {x.scale:.6g} is outside the range uquant's float mean handles")
    # Every sum is a multiple of 2**e_min, so a nonzero mean is at least 2**(e_min - 23) * 2**23 / n: its exponent
    # stays above e_key, and no mean exceeds twice the largest |value|.
    e_min = min(e for m, e in zip(ms, es) if m)
    e_key = e_min - 23 - n.bit_length() - 1
    inv = f32(f32(1) / f32(x.scale))
    top = key_of(*split(2 * float(np.abs(vals).max())), e_key)

    def code(keys):  # torch's quantize of the mean whose key is `keys`
        return np.clip(np.rint(fma32(_value_of_keys(keys, e_key), inv, f32(x.zero_point))), 0, 255).astype(np.int64)

    T = rq.thresholds(code, np.array([-top]), np.array([top]), 0, 255)[0]
    level_power = max(4, (1 if n <= 2 else (n - 1).bit_length()) // 4)
    return FloatMeanStep("fmean", op.name, [src], op.name, op.out, out_shape, C=C, n=n, level_power=level_power,
                         mantissas=list(ms), exponents=bytes(e + E_BIAS for e in es), e_key=e_key,
                         thresholds=[int(t) for t in T])


def reference(codes: np.ndarray, x: QParams, n: int) -> np.ndarray:
    """torch's bytes for codes (..., C, n) (numpy, engines.channel_sum)."""
    v = f32(f32(x.scale) * f32(np.asarray(codes, np.int64) - x.zero_point))
    m = f32(channel_sum(v) / f32(n))
    return np.clip(np.rint(fma32(m, f32(f32(1) / f32(x.scale)), f32(x.zero_point))), 0, 255).astype(np.int64)
