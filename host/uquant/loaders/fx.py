"""FX graph-mode (convert_fx) and eager-mode (convert) quantized models -> IR.

Eager models are traced with torch.fx.symbolic_trace first (quantized modules are leaves), so one walker
reads both. The graph must be a chain: quantize -> quantized layers -> dequantize, where a stretch of
`dequantize -> element-wise float ops -> quantize_per_tensor` in the middle becomes a code table.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ir import Conv, ConversionError, Graph, Linear, QParams, Reshape, Table
from .modules import conv_from_module, float_stretch_ops, linear_from_module, maxpool_from_module, qparams, relu_table

# Float element-wise ops allowed between a dequantize and the next quantize (they become code tables).
FLOAT_FUNCTIONS = {torch.relu: torch.relu, F.relu: F.relu}
FLOAT_METHODS = {"relu": torch.relu}
FLOAT_MODULES = (nn.ReLU,)
PASS_MODULES = (nn.Identity, nn.Dropout)  # no effect in eval
SUPPORTED = ("quantized Linear / LinearReLU, Conv1d/Conv2d (+ReLU), MaxPool1d/2d, ReLU, Identity, Dropout, "
             "Flatten, QuantStub/DeQuantStub, quantize_per_tensor and dequantize")


def describe(node: torch.fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"node '{node.name}' ({node.op} {target})"


class _Walker:
    def __init__(self, gm: torch.fx.GraphModule, name: str):
        self.gm = gm
        self.mods = dict(gm.named_modules())
        self.graph = Graph(name, QParams(1.0, 0))
        self.have_input = False
        self.q = None  # QParams of the current quantized value
        self.float_fns = None  # float ops since the last dequantize, or None while quantized
        self.cur = None  # the node holding the current value

    def attr(self, value):
        if isinstance(value, torch.fx.Node) and value.op == "get_attr":
            obj = self.gm
            for part in value.target.split("."):
                obj = getattr(obj, part)
            return obj
        return value

    def follow(self, node: torch.fx.Node) -> None:
        args = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op != "get_attr"]
        if self.cur is not None and (not args or args[0] is not self.cur):
            raise ConversionError(f"{describe(node)}: only chains of layers are supported (this op does not take "
                                  "the previous op's output)")
        if len(args) > 1:
            raise ConversionError(f"{describe(node)}: ops with several tensor inputs are not supported yet")
        self.cur = node

    def quantize(self, node, scale, zero_point, dtype):
        q = qparams(self.attr(scale), self.attr(zero_point), self.attr(dtype), describe(node))
        if not self.have_input:
            self.graph.input = q
            self.have_input = True
        elif self.float_fns is None:
            raise ConversionError(f"{describe(node)}: quantizing a tensor that is already quantized")
        else:
            self.graph.ops += float_stretch_ops(node.name, self.q, self.float_fns, q)
        self.q = q
        self.float_fns = None

    def flatten(self, node, start_dim=1, end_dim=-1):
        if (start_dim, end_dim) != (1, -1):
            raise ConversionError(f"{describe(node)}: only flatten(start_dim=1) is supported, got "
                                  f"start_dim={start_dim}, end_dim={end_dim}")
        if self.float_fns is not None:  # inside dequantize ... quantize: applied when the stretch ends
            self.float_fns.append(("flatten", Reshape(node.name, (-1,), self.q)))
        else:
            self.graph.ops.append(Reshape(node.name, (-1,), self.q))

    def dequantize(self, node):
        if self.q is None or self.float_fns is not None:
            raise ConversionError(f"{describe(node)}: dequantize of a tensor that is not quantized")
        self.float_fns = []

    def float_op(self, node, label, fn):
        if self.float_fns is None:
            if self.q is None:
                raise ConversionError(f"{describe(node)}: float op before the input is quantized is not supported")
            self.graph.ops.append(relu_table(node.name, self.q))  # a ReLU on a quantized tensor
        else:
            self.float_fns.append((label, fn))

    def module(self, node):
        import torch.ao.nn.intrinsic.quantized as nniq
        import torch.ao.nn.quantized as nnq
        import torch.ao.nn.quantized.dynamic as nnqd

        mod = self.mods[node.target]
        where = f"module '{node.target}' ({type(mod).__name__})"
        if isinstance(mod, nnq.Quantize):
            self.quantize(node, mod.scale, mod.zero_point, mod.dtype)
        elif isinstance(mod, nnq.DeQuantize):
            self.dequantize(node)
        elif isinstance(mod, (nnq.Linear, nniq.LinearReLU)) and not isinstance(mod, nnqd.Linear):
            if self.q is None or self.float_fns is not None:
                raise ConversionError(f"{where}: its input is not quantized")
            op = linear_from_module(node.target, mod)
            if self.q.dtype != "quint8":
                raise ConversionError(f"{where}: input must be quint8, found {self.q.dtype}")
            if not any(not isinstance(o, Table) for o in self.graph.ops):  # the first layer: input is flat
                self.graph.in_features = op.in_features
            self.graph.ops.append(op)
            self.q = op.out
        elif isinstance(mod, (nnq.Conv1d, nnq.Conv2d, nniq.ConvReLU1d, nniq.ConvReLU2d)):
            if self.q is None or self.float_fns is not None:
                raise ConversionError(f"{where}: its input is not quantized")
            op = conv_from_module(node.target, mod)
            self.graph.ops.append(op)
            self.q = op.out
        elif isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
            if self.q is None or self.float_fns is not None:
                raise ConversionError(f"{where}: MaxPool on a float tensor inside the model is not supported")
            self.graph.ops.append(maxpool_from_module(node.target, mod, self.q))
        elif isinstance(mod, nn.Flatten):
            self.flatten(node, mod.start_dim, mod.end_dim)
        elif isinstance(mod, nnqd.Linear):
            raise ConversionError(f"{where}: dynamically quantized Linear (activations stay float at run time); "
                                  "uquant needs static quantization (prepare/convert or prepare_fx/convert_fx)")
        elif isinstance(mod, FLOAT_MODULES):
            self.float_op(node, type(mod).__name__.lower(), mod)
        elif isinstance(mod, PASS_MODULES):
            pass
        elif isinstance(mod, (torch.ao.quantization.ObserverBase, torch.ao.quantization.FakeQuantizeBase)):
            raise ConversionError(f"{where}: the model is prepared (observers / fake-quantize) but not converted; "
                                  "run convert_fx (FX) or torch.ao.quantization.convert (eager) before uquant")
        elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            raise ConversionError(f"{where}: a float (unquantized) layer: the model is not quantized; run "
                                  "convert_fx (FX) or torch.ao.quantization.convert (eager) before uquant")
        else:
            raise ConversionError(f"{where}: not supported (supported: {SUPPORTED})")

    def walk(self) -> Graph:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ConversionError(f"the model must take exactly one input tensor, it takes {len(placeholders)}")
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.cur = node
            elif node.op == "get_attr":
                continue
            elif node.op == "output":
                out = node.args[0]
                if isinstance(out, (tuple, list)) and len(out) == 1:
                    out = out[0]
                if out is not self.cur:
                    raise ConversionError("the model must return the output of its last op")
                if self.float_fns:
                    raise ConversionError(f"float op(s) {[w for w, _ in self.float_fns]} after the last dequantize: "
                                          "the device returns quantized codes; move them before dequantize")
            else:
                self.follow(node)
                if node.op == "call_module":
                    self.module(node)
                elif node.op == "call_function" and node.target is torch.quantize_per_tensor:
                    self.quantize(node, *node.args[1:4])
                elif node.op == "call_method" and node.target == "dequantize":
                    self.dequantize(node)
                elif node.op == "call_function" and node.target in FLOAT_FUNCTIONS:
                    self.float_op(node, node.target.__name__, FLOAT_FUNCTIONS[node.target])
                elif node.op == "call_method" and node.target in FLOAT_METHODS:
                    self.float_op(node, node.target, FLOAT_METHODS[node.target])
                elif node.op == "call_function" and node.target is torch.flatten:
                    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
                    self.flatten(node, start, end)
                else:
                    raise ConversionError(f"{describe(node)}: not supported (supported: {SUPPORTED})")
        if not self.have_input:
            raise ConversionError("the model never quantizes its input: is it a quantized model? "
                                  "(expected quantize_per_tensor or QuantStub)")
        if not any(isinstance(op, (Linear, Conv)) for op in self.graph.ops):
            raise ConversionError("the model has no quantized Linear or Conv layer")
        return self.graph


def from_graph_module(gm: torch.fx.GraphModule, name: str) -> Graph:
    return _Walker(gm, name).walk()


def from_module(module: nn.Module, name: str) -> Graph:
    """A converted eager-mode or FX model (any nn.Module whose forward traces with torch.fx)."""
    if isinstance(module, torch.fx.GraphModule):
        return from_graph_module(module, name)
    for path, sub in module.named_modules():  # eager prepare/prepare_qat: observers would fail to trace
        if isinstance(sub, (torch.ao.quantization.ObserverBase, torch.ao.quantization.FakeQuantizeBase)):
            raise ConversionError(f"module '{path}' ({type(sub).__name__}): the model is prepared (observers / "
                                  "fake-quantize) but not converted; run torch.ao.quantization.convert before uquant")
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as e:  # tracing runs user code: any failure means we cannot read the structure
        raise ConversionError(f"cannot trace the model's forward() with torch.fx ({type(e).__name__}: {e}); "
                              "export it with torch.jit.trace and convert that file instead") from None
    return from_graph_module(gm, name)
