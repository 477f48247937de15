"""The intermediate representation: a short, printable list of quantized ops with their scales and zero points.

Every loader (FX, eager, TorchScript, state_dict) produces a `Graph`; lowering turns a Graph into integer
parameters for the device. Floats live here (they are torch's numbers); none survive past lowering.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .engines import DTYPE_RANGE


class ConversionError(ValueError):
    """An expected problem with the user's model or file: the message says what, where and what to do."""


@dataclass(frozen=True)
class QParams:
    """How one tensor is quantized: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int
    dtype: str = "quint8"

    @property
    def qmin(self) -> int:
        return DTYPE_RANGE[self.dtype][0]

    @property
    def qmax(self) -> int:
        return DTYPE_RANGE[self.dtype][1]

    def __str__(self) -> str:
        return f"{self.dtype}(scale={self.scale:.6g}, zero_point={self.zero_point})"


@dataclass
class Linear:
    """A quantized Linear (optionally with a fused ReLU): y = requant(sum (x - x_zp)(w - w_zp) + bias)."""

    name: str
    weight: np.ndarray  # int8 codes, shape (out_features, in_features)
    w_scale: np.ndarray  # float64, one per output channel (repeated for per-tensor weights)
    w_zero_point: np.ndarray  # int64, one per output channel
    per_channel: bool
    bias: np.ndarray | None  # float32, shape (out_features,), or None
    out: QParams
    relu: bool = False

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def describe(self) -> str:
        kind = "per-channel" if self.per_channel else "per-tensor"
        relu = " + ReLU" if self.relu else ""
        return f"{self.name}: Linear {self.in_features}->{self.out_features}{relu}, {kind} qint8 weights, out {self.out}"


@dataclass
class Table:
    """An element-wise map from each input code to an output code, computed on the host by torch itself.

    Covers a ReLU on a quantized tensor (max(q, zero_point)) and FX's `dequantize -> float ReLU ->
    quantize_per_tensor` chains: any per-element function of one code is a 256-entry table.
    """

    name: str
    what: str  # e.g. "relu", "dequantize -> relu -> quantize"
    table: np.ndarray  # int64, indexed by input code - qmin of the input dtype
    out: QParams

    def describe(self) -> str:
        return f"{self.name}: {self.what} (code table), out {self.out}"


Op = Linear | Table


@dataclass
class Graph:
    """A chain of quantized ops: quantize(input) -> ops... -> dequantize."""

    name: str
    input: QParams
    in_features: int
    ops: list[Op] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"model {self.name}: input {self.in_features} x {self.input}"]
        lines += ["  " + op.describe() for op in self.ops]
        return "\n".join(lines)

    def output_qparams(self) -> QParams:
        return self.ops[-1].out if self.ops else self.input

    def validate(self) -> None:
        """Check shapes and quantization parameters; raise ConversionError naming the op at fault."""
        _check_qparams(self.input, "the model input")
        width = self.in_features
        for op in self.ops:
            if isinstance(op, Linear):
                if op.in_features != width:
                    raise ConversionError(f"{op.name}: expects {op.in_features} inputs but receives {width}")
                n = op.out_features
                if op.w_scale.shape != (n,) or op.w_zero_point.shape != (n,):
                    raise ConversionError(f"{op.name}: weight scales/zero points do not match {n} output channels")
                if op.bias is not None and op.bias.shape != (n,):
                    raise ConversionError(f"{op.name}: bias has shape {tuple(op.bias.shape)}, expected ({n},)")
                if not np.all(np.isfinite(op.w_scale)) or np.any(op.w_scale <= 0):
                    raise ConversionError(f"{op.name}: weight scales must be finite and positive")
                if np.any(op.w_zero_point < -128) or np.any(op.w_zero_point > 127):
                    raise ConversionError(f"{op.name}: weight zero points must be in [-128, 127]")
                if op.bias is not None and not np.all(np.isfinite(op.bias)):
                    raise ConversionError(f"{op.name}: bias contains NaN or infinity")
                _check_qparams(op.out, op.name)
                width = n
            elif isinstance(op, Table):
                _check_qparams(op.out, op.name)
                if op.table.shape != (256,) or op.table.min() < op.out.qmin or op.table.max() > op.out.qmax:
                    raise ConversionError(f"{op.name}: code table is not 256 codes within the output dtype")
        if not any(isinstance(op, Linear) for op in self.ops):
            raise ConversionError("the model has no quantized Linear layer")


def _check_qparams(q: QParams, where: str) -> None:
    if q.dtype not in DTYPE_RANGE:
        raise ConversionError(f"{where}: unsupported activation dtype {q.dtype}")
    if not np.isfinite(q.scale) or q.scale <= 0:
        raise ConversionError(f"{where}: scale must be finite and positive, got {q.scale}")
    if not q.qmin <= q.zero_point <= q.qmax:
        raise ConversionError(f"{where}: zero point {q.zero_point} is outside [{q.qmin}, {q.qmax}] for {q.dtype}")
