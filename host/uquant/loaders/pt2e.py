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

from ..ir import ConversionError, Graph, Linear, QParams

_DTYPES = {torch.int8: "qint8", torch.uint8: "quint8"}


def is_pt2e(model) -> bool:
    gm = model.graph_module if isinstance(model, torch.export.ExportedProgram) else model
    g = getattr(gm, "graph", None)
    return g is not None and any("quantized_decomposed" in str(n.target) for n in g.nodes)


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
                w, ws, wzp, per_ch, bias, relu = pending
                graph.ops.append(Linear(f"fc{len(graph.ops)}", w, ws, wzp, per_ch, bias, _qp(n.args), relu=relu))
                pending = None
            else:
                raise ConversionError(f"PT2E: unsupported quantize of {src} (only linear/relu chains so far)")
        elif "aten.linear" in t:
            x, wdq = n.args[0], n.args[1]
            bias = n.args[2] if len(n.args) > 2 else None
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
            pending = [wq, scales, zps, per_ch, b, False]
        elif "aten.relu" in t and pending is not None:
            pending[5] = True
        elif "dequantize" in t or "flatten" in t or "view" in t or "_guards" in t:
            continue
        else:
            raise ConversionError(f"PT2E: op {t} ({n.name}) is not supported yet (linear and relu chains)")
    if graph is None or not graph.ops:
        raise ConversionError("PT2E: no quantized linear layer found")
    graph.in_features = int(graph.ops[0].weight.shape[1])
    return graph
