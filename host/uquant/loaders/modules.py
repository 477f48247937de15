"""Turn torch's quantized modules and functions into IR ops (shared by the FX, eager and state_dict loaders)."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from ..ir import AvgPool, Conv, ConversionError, Linear, MaxPool, Permute, QParams, Reshape, Slice, Table

DTYPES = {torch.quint8: "quint8", torch.qint8: "qint8"}
TORCH_DTYPES = {v: k for k, v in DTYPES.items()}


def qparams(scale, zero_point, dtype, where: str) -> QParams:
    """QParams from torch values (tensors, floats or ints), refusing what cannot be a quantizer."""
    s, z = _one_number(scale, where, "scale"), _one_number(zero_point, where, "zero point")
    if not float(z).is_integer():
        raise ConversionError(f"{where}: zero point must be an integer, got {z!r}")
    z = int(z)
    if dtype not in DTYPES:
        raise ConversionError(f"{where}: activation dtype {dtype} is not supported (quint8 or qint8)")
    return QParams(s, z, DTYPES[dtype])


def _one_number(value, where: str, what: str) -> float:
    """A scale or zero point: one real number (a Python number or a one-element tensor), as a float."""
    if isinstance(value, bool) or value is None:
        raise ConversionError(f"{where}: {what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        t = torch.as_tensor(value)
    except Exception as e:  # a string, an object, ...
        raise ConversionError(f"{where}: cannot read the {what} ({type(value).__name__}: {e})") from None
    if t.numel() != 1 or t.is_complex() or t.dtype == torch.bool or t.is_quantized:
        raise ConversionError(f"{where}: {what} must be one real number, found a {t.dtype} tensor of shape "
                              f"{tuple(t.shape)}")
    return float(t.reshape(-1)[0])


def _float_bias(name: str, bias, n: int):
    """A layer's bias as float32 numbers (None: no bias), refusing what cannot be one."""
    if bias is None:
        return None
    if not isinstance(bias, torch.Tensor) or bias.is_quantized or not bias.is_floating_point():
        what = f"a {bias.dtype} tensor" if isinstance(bias, torch.Tensor) else f"{type(bias).__name__} {bias!r:.40}"
        raise ConversionError(f"{name}: the bias must be a float tensor (or None), found {what}")
    if tuple(bias.shape) != (n,):
        raise ConversionError(f"{name}: bias has shape {tuple(bias.shape)}, expected ({n},) for {n} output channels")
    return bias.detach().float().numpy().copy()


def _check_weight_shape(name: str, weight: torch.Tensor) -> None:
    if weight.numel() == 0:
        raise ConversionError(f"{name}: weight has an empty shape {tuple(weight.shape)}")


def linear_from_weight(name: str, weight: torch.Tensor, bias, out: QParams, relu: bool) -> Linear:
    """IR Linear from a quantized weight tensor (per-tensor or per-channel along axis 0) and a float bias."""
    if not isinstance(weight, torch.Tensor) or not weight.is_quantized:
        raise ConversionError(f"{name}: weight is not a quantized tensor")
    if weight.dtype != torch.qint8:
        raise ConversionError(f"{name}: weights must be qint8, found {weight.dtype}")
    if weight.dim() != 2:
        raise ConversionError(f"{name}: Linear weight must be 2-D, found shape {tuple(weight.shape)}")
    _check_weight_shape(name, weight)
    n = weight.shape[0]
    scheme = weight.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        scales = np.full(n, weight.q_scale(), np.float64)
        zps = np.full(n, weight.q_zero_point(), np.int64)
        per_channel = False
    elif scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        if weight.q_per_channel_axis() != 0:
            raise ConversionError(f"{name}: per-channel weights must be quantized along axis 0")
        scales = weight.q_per_channel_scales().double().numpy().copy()
        zps = weight.q_per_channel_zero_points().long().numpy().copy()
        per_channel = True
    else:
        raise ConversionError(f"{name}: unsupported weight quantization scheme {scheme}")
    b = _float_bias(name, bias, n)
    return Linear(name, weight.int_repr().numpy().astype(np.int64), scales, zps, per_channel, b, out, relu)


def _weight_qparams(name: str, weight: torch.Tensor):
    """Per-output-channel scales and zero points of a qint8 weight (per-tensor ones repeated)."""
    if not isinstance(weight, torch.Tensor) or not weight.is_quantized:
        raise ConversionError(f"{name}: weight is not a quantized tensor")
    if weight.dtype != torch.qint8:
        raise ConversionError(f"{name}: weights must be qint8, found {weight.dtype}")
    n = weight.shape[0]
    scheme = weight.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return np.full(n, weight.q_scale(), np.float64), np.full(n, weight.q_zero_point(), np.int64), False
    if scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        if weight.q_per_channel_axis() != 0:
            raise ConversionError(f"{name}: per-channel weights must be quantized along axis 0")
        return (weight.q_per_channel_scales().double().numpy().copy(),
                weight.q_per_channel_zero_points().long().numpy().copy(), True)
    raise ConversionError(f"{name}: unsupported weight quantization scheme {scheme}")


def conv_from_weight(name: str, dim: int, weight: torch.Tensor, bias, stride, padding, dilation, groups: int,
                     out: QParams, relu: bool) -> Conv:
    """IR Conv from a quantized weight (O, I/groups, k) or (O, I/groups, kh, kw), a float bias and torch's
    per-axis stride / padding / dilation (`dim` numbers each, as a Conv1d/Conv2d module holds them)."""
    if isinstance(weight, torch.Tensor) and weight.dim() != dim + 2:
        raise ConversionError(f"{name}: Conv{dim}d weight must be {dim + 2}-D, found shape {tuple(weight.shape)}")
    scales, zps, per_channel = _weight_qparams(name, weight)
    _check_weight_shape(name, weight)
    codes = weight.int_repr().numpy().astype(np.int64)

    def pair(t, fill):  # Conv1d runs as a 2-D conv of height 1
        t = tuple(int(v) for v in t)
        if len(t) != dim:
            raise ConversionError(f"{name}: expected {dim} numbers per conv argument, found {t}")
        return (fill, t[0]) if dim == 1 else t

    if dim == 1:
        codes = codes[:, :, None, :]
    b = _float_bias(name, bias, int(weight.shape[0]))
    return Conv(name, dim, codes, scales, zps, per_channel, b, out, pair(stride, 1), pair(padding, 0),
                pair(dilation, 1), int(groups), relu=relu)


def conv_from_module(name: str, mod) -> Conv:
    """IR Conv from torch's quantized Conv1d/Conv2d or fused ConvReLU1d/2d."""
    import torch.ao.nn.intrinsic.quantized as nniq

    dim = 1 if isinstance(mod, (torch.ao.nn.quantized.Conv1d, nniq.ConvReLU1d)) else 2
    if getattr(mod, "padding_mode", "zeros") != "zeros":
        raise ConversionError(f"{name}: padding_mode={mod.padding_mode!r} is not supported (only zero padding, "
                              "which torch pads with the input zero point)")
    if isinstance(mod.padding, str):
        raise ConversionError(f"{name}: padding={mod.padding!r} is not supported; give the padding as numbers")
    out = QParams(float(mod.scale), int(mod.zero_point), "quint8")
    return conv_from_weight(name, dim, mod.weight(), mod.bias(), mod.stride, mod.padding, mod.dilation, mod.groups,
                            out, relu=isinstance(mod, (nniq.ConvReLU1d, nniq.ConvReLU2d)))


def maxpool_from_module(name: str, mod, q: QParams) -> MaxPool:
    dim = 1 if isinstance(mod, torch.nn.MaxPool1d) else 2
    if mod.return_indices:
        raise ConversionError(f"{name}: MaxPool with return_indices is not supported")

    def pair(v):
        v = (v,) * dim if isinstance(v, int) else tuple(v)
        return (1, int(v[0])) if dim == 1 else (int(v[0]), int(v[1]))

    stride = mod.stride if mod.stride is not None else mod.kernel_size
    k = pair(mod.kernel_size)
    return MaxPool(name, dim, k, pair(stride), (0, pair(mod.padding)[1]) if dim == 1 else pair(mod.padding),
                   pair(mod.dilation), bool(mod.ceil_mode), q)


AVGPOOL_MODULES = (torch.nn.AvgPool1d, torch.nn.AvgPool2d, torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d)


def avgpool_from_module(name: str, mod, q: QParams) -> AvgPool:
    """nn.AvgPool1d/2d or nn.AdaptiveAvgPool1d/2d applied to a quantized tensor (output qparams = input's)."""
    dim = 1 if isinstance(mod, (torch.nn.AvgPool1d, torch.nn.AdaptiveAvgPool1d)) else 2

    def pair(v, fill=1):
        v = (v,) * dim if v is None or isinstance(v, int) else tuple(v)
        return (fill, v[0]) if dim == 1 else (v[0], v[1])

    if isinstance(mod, (torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d)):
        size = tuple(None if v is None else int(v) for v in pair(mod.output_size, 1))
        return AvgPool(name, dim, q, output_size=size)
    if getattr(mod, "divisor_override", None) is not None:
        raise ConversionError(f"{name}: AvgPool{dim}d with divisor_override is not supported (torch's quantized "
                              "kernels for it are not characterised); supported: kernel, stride, padding, "
                              "ceil_mode, count_include_pad")
    stride = mod.stride if mod.stride not in (None, (), []) else mod.kernel_size
    return AvgPool(name, dim, q, tuple(int(v) for v in pair(mod.kernel_size)), tuple(int(v) for v in pair(stride)),
                   tuple(int(v) for v in pair(mod.padding, 0)), bool(mod.ceil_mode), bool(mod.count_include_pad))


def linear_from_module(name: str, mod) -> Linear:
    import torch.ao.nn.intrinsic.quantized as nniq

    w, b = mod._weight_bias()
    out = QParams(float(mod.scale), int(mod.zero_point), "quint8")
    return linear_from_weight(name, w, b, out, relu=isinstance(mod, nniq.LinearReLU))


def code_table(name: str, what: str, q_in: QParams, fn, q_out: QParams | None) -> Table:
    """Run torch on every input code at once (SIMD blocks) and one at a time (the scalar tail)."""
    codes = torch.arange(q_in.qmin, q_in.qmax + 1)
    store = torch.int8 if q_in.dtype == "qint8" else torch.uint8

    def apply(c):
        y = fn(torch._make_per_tensor_quantized_tensor(c.to(store), q_in.scale, q_in.zero_point))
        if not y.is_quantized:  # a float chain: quantize it the way the model does next
            y = torch.quantize_per_tensor(y, q_out.scale, q_out.zero_point, TORCH_DTYPES[q_out.dtype])
        return y

    # torch warns (deprecation) at every quantized tensor it makes; Python's warning machinery then costs more
    # than the op itself, 257 times
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y_all = apply(codes)  # 256 codes: four whole SIMD blocks
        table = y_all.int_repr().long().numpy()
        single = np.array([int(apply(codes[i:i + 1]).int_repr()[0]) for i in range(codes.numel())])  # scalar tail
    out = q_out or QParams(float(y_all.q_scale()), int(y_all.q_zero_point()), DTYPES[y_all.dtype])
    tail = None if np.array_equal(table, single) else single.astype(np.int64)
    return Table(name, what, table.astype(np.int64), out, tail_table=tail)


def float_stretch_ops(name: str, q_in: QParams, fns, q_out: QParams) -> list:
    """The ops for a `dequantize -> float ops -> quantize_per_tensor` stretch.

    fns: (label, function-or-Reshape) pairs. Element-wise functions become one code table (none if it is the
    identity with unchanged qparams); reshapes (a flatten inside the stretch) follow it, since the two commute.
    """
    moves = [f for _, f in fns if isinstance(f, (Reshape, Permute, Slice))]
    table = float_chain_table(name, q_in, [(label, f) for label, f in fns if not isinstance(f, (Reshape, Permute,
                                                                                                Slice))], q_out)
    ops = []
    if q_out != q_in or np.any(table.table != np.arange(q_out.qmin, q_out.qmax + 1)):
        ops.append(table)
    if any(not isinstance(m, Reshape) for m in moves):  # copies first: the table then reads fewer codes
        return [dataclasses.replace(m, out=q_in) for m in moves] + ops
    return ops + [Reshape(r.name, r.shape, q_out) for r in moves]


def relu_table(name: str, q: QParams) -> Table:
    return code_table(name, "relu", q, torch.relu, None)


def float_chain_table(name: str, q_in: QParams, fns, q_out: QParams) -> Table:
    """A `dequantize -> element-wise float ops -> quantize_per_tensor` stretch as one code table.

    fns: (label, function) pairs applied in order to the dequantized tensor (may be empty: a requantize).
    """
    what = " -> ".join(["dequantize", *[label for label, _ in fns], "quantize"])

    def chain(x):
        v = x.dequantize()
        for _, f in fns:
            v = f(v)
        return v

    return code_table(name, what, q_in, chain, q_out)
