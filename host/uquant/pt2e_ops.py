"""PT2E's quantize and dequantize (torch.ops.quantized_decomposed, what a convert_pt2e program runs), on IR codes.

A PT2E program computes every op in float32 between `dequantize_per_tensor` and `quantize_per_tensor`, whose
formulas differ from torch.quantize_per_tensor (round(x * (1/s)) + zp, the reciprocal taken in double). Element-wise
stretches (a requantize, relu, sigmoid, add, mul, cat) are functions of one or two codes, so uquant tabulates
torch's own ops on every code (pair) -- exact, not emulated. The IR holds int8 activations as uint8 codes with zero
point + 128; PT2E's quantize rounds first and adds the zero point after, so running its ops in the uint8 domain is
the same computation shifted by 128.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)

from .ir import QParams

_QD = torch.ops.quantized_decomposed


def dequantize(codes, q: QParams) -> torch.Tensor:
    """IR codes -> the float32 values PT2E's dequantize_per_tensor gives them."""
    c = torch.as_tensor(np.asarray(codes, np.int64) - q.qmin, dtype=torch.uint8)
    return _QD.dequantize_per_tensor.default(c, q.scale, q.zero_point - q.qmin, 0, 255, torch.uint8)


def quantize(x, q: QParams) -> np.ndarray:
    """float32 values -> IR codes, as PT2E's quantize_per_tensor computes them."""
    x = torch.as_tensor(np.asarray(x, np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    c = _QD.quantize_per_tensor.default(x, q.scale, q.zero_point - q.qmin, 0, 255, torch.uint8)
    return c.numpy().astype(np.int64) + q.qmin


def codes(q: QParams) -> np.ndarray:
    return np.arange(q.qmin, q.qmax + 1)


def table(q_in: QParams, fn, q_out: QParams, one_at_a_time: bool = False) -> np.ndarray:
    """quantize(fn(dequantize(code))) for every input code; one_at_a_time: each code as its own tensor (the
    scalar path of torch's element-wise kernels, which may round differently from their SIMD blocks)."""
    c = codes(q_in)
    if one_at_a_time:
        return np.array([int(quantize(fn(dequantize(c[i:i + 1], q_in)), q_out)[0]) for i in range(c.size)])
    return quantize(fn(dequantize(c, q_in)), q_out)


def pairs(qa: QParams, qb: QParams, fn, q_out: QParams) -> np.ndarray:
    """quantize(fn(dequantize(a), dequantize(b))) for every pair of codes, as a 256 x 256 array of stored codes
    (code - qmin), indexed [a - qmin_a, b - qmin_b]."""
    a, b = np.meshgrid(codes(qa), codes(qb), indexing="ij")
    y = quantize(fn(dequantize(a.ravel(), qa), dequantize(b.ravel(), qb)), q_out)
    return (y - q_out.qmin).reshape(256, 256)


def requantize(q_in: QParams, q_out: QParams) -> np.ndarray:
    """A PT2E `dequantize -> quantize` with other qparams: the code each input code becomes."""
    return table(q_in, lambda v: v, q_out)
