"""PT2E (torchao.quantization.pt2e convert_pt2e) programs -> IR: chains of linear (+relu) between
quantized_decomposed.quantize_per_tensor / dequantize_per_tensor / dequantize_per_channel.

torch runs a PT2E linear in float32 (dequantize, aten.linear, quantize), not with an integer kernel, so the device's
integer requantization (that of the engine chosen, per-channel proven against torch's quantized kernels) agrees
with it except where float32 summation order moves a value across a rounding boundary: at most one code apart.
tests/test_pt2e.py measures the exact-match fraction and maximum difference; the quantize step itself is exact.
"""
from __future__ import annotations

import numpy as np
import torch

from ..ir import ConversionError, Graph, Linear, MaxPool, QParams, Reshape

_DTYPES = {torch.int8: "qint8", torch.uint8: "quint8"}


def is_pt2e(model) -> bool:
    gm = model.graph_module if isinstance(model, torch.export.ExportedProgram) else model
    if not isinstance(gm, torch.fx.GraphModule):  # (a TorchScript module has a .graph too)
        return False
    g = gm.graph
    return any("quantized_decomposed" in str(n.target) for n in g.nodes)


def _qp(args) -> QParams:
    scale, zp, qmin, qmax, dtype = args[1:6]
    if dtype not in _DTYPES:
        raise ConversionError(f"PT2E: activation dtype {dtype} is not supported (int8 or uint8)")
    if dtype == torch.int8:  # the same codes + 128: round(x / s) + zp is shifted exactly (integer zp)
        return QParams(float(np.float32(scale)), int(zp) + 128, "quint8")
    return QParams(float(np.float32(scale)), int(zp), _DTYPES[dtype])


def from_pt2e(model, name: str = "model") -> Graph:
    if isinstance(model, torch.export.ExportedProgram):
        ep = model
        gm = ep.graph_module
        consts = {**dict(ep.named_parameters()), **dict(ep.named_buffers()), **ep.constants}
        sig = ep.graph_signature
        lookup = {**sig.inputs_to_parameters, **sig.inputs_to_buffers,
                  **getattr(sig, "inputs_to_lifted_tensor_constants", {})}

        def tensor(n):
            key = lookup.get(n.name)
            if key is None:
                raise ConversionError(f"PT2E: {n.name} is not a stored tensor")
            return consts[key]
    else:
        gm = model

        def tensor(n):
            if n.op != "get_attr":
                raise ConversionError(f"PT2E: {n.name} is not a stored tensor")
            t = gm
            for part in n.target.split("."):
                t = getattr(t, part)
            return t

    graph = None
    pending = None  # (Linear args) waiting for its quantize
    for n in gm.graph.nodes:
        t = str(n.target)
        if n.op != "call_function":
            continue
        if "quantize_per_tensor" in t and "dequantize" not in t:
            src = n.args[0]
            if graph is None:
                graph = Graph(name, _qp(n.args))
            elif pending is not None:
                graph.ops.append(pending[0](f"{pending[2]}{len(graph.ops)}", _qp(n.args), pending[1][0]))
                pending = None
            else:
                raise ConversionError(f"PT2E: unsupported quantize of {src} (only linear/relu chains so far)")
        elif "aten.linear" in t:
            x, wdq = n.args[0], n.args[1]
            bias = n.args[2] if len(n.args) > 2 else None
            if not (isinstance(wdq, torch.fx.Node) and "dequantize" in str(wdq.target)):
                raise ConversionError(f"PT2E: node '{n.name}' (aten.linear) has a float weight: the program is not "
                                      "quantized; run prepare_pt2e, calibrate and convert_pt2e before uquant")
            wq = tensor(wdq.args[0]).detach().numpy().astype(np.int64)
            if "dequantize_per_channel" in str(wdq.target):
                scales = tensor(wdq.args[1]).detach().double().numpy()
                zps = tensor(wdq.args[2]).detach().numpy().astype(np.int64)
                if int(wdq.args[3]) != 0:
                    raise ConversionError("PT2E: per-channel weights must be quantized along the output axis")
                per_ch = True
            else:
                scales = np.full(wq.shape[0], float(np.float32(wdq.args[1])))
                zps = np.full(wq.shape[0], int(wdq.args[2]), np.int64)
                per_ch = False
            b = None if bias is None else tensor(bias).detach().float().numpy()
            pending = [lambda nm, q, relu, a=(wq, scales, zps, per_ch, b): Linear(nm, *a, q, relu=relu), [False], "fc"]
        elif "aten.conv1d" in t or "aten.conv2d" in t:
            dim = 1 if "conv1d" in t else 2
            wdq = n.args[1]
            w = _qweight(tensor(wdq.args[0]), wdq, tensor)
            bias = n.args[2] if len(n.args) > 2 else None
            b = None if bias is None else tensor(bias).detach().float()
            rest = list(n.args[3:]) + [None] * 4
            stride, padding, dilation, groups = rest[0] or [1] * dim, rest[1] or [0] * dim, rest[2] or [1] * dim, \
                rest[3] or 1
            if isinstance(padding, str):
                raise ConversionError(f"PT2E: {n.name}: padding={padding!r} is not supported; give numbers")

            def conv(nm, q, relu, a=(dim, w, b, stride, padding, dilation, groups)):
                from .modules import conv_from_weight
                return conv_from_weight(nm, a[0], a[1], a[2], a[3], a[4], a[5], a[6], q, relu)
            pending = [conv, [False], "conv"]
            if graph is not None and not graph.input_shape:
                graph.input_shape = _shape(n.args[0])
        elif "aten.max_pool" in t:
            dim = 1 if "max_pool1d" in t else 2
            a = list(n.args[1:]) + [None] * 5
            k = tuple(a[0])
            stride = tuple(a[1]) if a[1] else k
            pad = tuple(a[2]) if a[2] else (0,) * dim
            dil = tuple(a[3]) if a[3] else (1,) * dim
            ceil = bool(a[4])
            if dim == 1:
                k, stride, pad, dil = (1, k[0]), (1, stride[0]), (0, pad[0]), (1, dil[0])
            pending = [lambda nm, q, relu, a=(dim, k, stride, pad, dil, ceil): MaxPool(nm, *a, q), [False], "pool"]
        elif "aten.flatten" in t:
            pending = [lambda nm, q, relu: Reshape(nm, (-1,), q), [False], "flatten"]
        elif "aten.relu" in t and pending is not None:
            pending[1][0] = True
        elif "dequantize" in t or "_guards" in t:
            continue
        else:
            raise ConversionError(f"PT2E: op {t} ({n.name}) is not supported yet (chains of linear, conv1d/2d, "
                                  "relu, max_pool1d/2d, flatten)")
    if pending is not None:
        raise ConversionError(f"PT2E: the output of the last {pending[2]} is not quantized (X86InductorQuantizer, for "
                              "one, leaves a final linear/conv in float): the device needs every layer's output "
                              "quantized; end the model with a quantized op")
    if graph is None or not graph.ops:
        raise ConversionError("PT2E: no quantized layer found")
    if not graph.input_shape:
        graph.in_features = int(graph.ops[0].weight.shape[1])
    return graph


def _shape(node) -> tuple[int, ...]:
    """One sample's shape from the export metadata of a value (through its dequantize/quantize)."""
    while node is not None:
        v = node.meta.get("val") if hasattr(node, "meta") else None
        if v is not None and hasattr(v, "shape"):
            return tuple(int(d) for d in v.shape[1:])
        node = node.args[0] if getattr(node, "args", None) else None
    return ()


def _qweight(codes: torch.Tensor, dq, tensor) -> torch.Tensor:
    """The int8 weight codes and their dequantize node -> a torch quantized tensor (what conv_from_weight reads)."""
    codes = codes.detach().to(torch.int8)
    if "dequantize_per_channel" in str(dq.target):
        if int(dq.args[3]) != 0:
            raise ConversionError("PT2E: per-channel weights must be quantized along the output axis")
        return torch._make_per_channel_quantized_tensor(codes, tensor(dq.args[1]).double(),
                                                         tensor(dq.args[2]).long(), 0)
    return torch._make_per_tensor_quantized_tensor(codes, float(dq.args[1]), int(dq.args[2]))
