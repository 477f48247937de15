"""TorchScript modules (torch.jit.trace or torch.jit.script, in memory or from torch.jit.load) -> IR.

Both kinds are read from `module.inlined_graph`, where submodule calls are inlined into one flat list of
nodes. Traced graphs carry a layer's output scale/zero point as constants; scripted ones read them with
prim::GetAttr (through aten::Float / aten::Int for eager QuantStubs, aten::FloatImplicit / IntImplicit for
FX buffers). Either way such argument nodes only depend on the module itself, so they are evaluated here on
the real module ("static" values), while the nodes that carry the data must form a chain, as in fx.py:
quantize -> quantized layers -> dequantize, where `dequantize -> relu -> quantize_per_tensor` in the
middle becomes a code table.
"""
from __future__ import annotations

import torch

from ..ir import ConversionError, Graph, QParams, Reshape
from .modules import float_stretch_ops, linear_from_weight, qparams, relu_table

# Nodes that compute arguments (scales, zero points, packed weights, dims) from the module alone.
STATIC_KINDS = {"prim::Constant", "prim::GetAttr", "aten::Float", "aten::Int", "aten::FloatImplicit",
                "aten::IntImplicit", "prim::ListConstruct", "prim::TupleConstruct"}
LINEARS = {"quantized::linear": False, "quantized::linear_relu": True}
RELUS = {"aten::relu", "aten::relu_"}
PASS_KINDS = {"aten::contiguous", "aten::detach"}  # no effect on the codes
DROPOUTS = {"aten::dropout", "aten::dropout_", "aten::feature_dropout", "aten::alpha_dropout"}
SCALAR_TYPES = {12: torch.qint8, 13: torch.quint8}  # c10::ScalarType codes as traced graphs store dtypes
SUPPORTED = ("quantized::linear, quantized::linear_relu, aten::quantize_per_tensor, aten::dequantize, "
             "aten::relu / relu_, aten::flatten, aten::dropout in eval mode")
NOT_CONVERTED = ("the model is prepared (observers / fake-quantize) but not converted: run convert_fx (FX) or "
                 "torch.ao.quantization.convert (eager) before torch.jit.trace / torch.jit.script")
HINTS = {  # ops that say what kind of model this is
    "aten::linear": "a float (unquantized) Linear: the model is not quantized; run convert_fx (FX) or "
                    "torch.ao.quantization.convert (eager) before torch.jit.trace / torch.jit.script",
    "quantized::linear_dynamic": "a dynamically quantized Linear (activations stay float at run time); uquant "
                                 "needs static quantization (prepare/convert or prepare_fx/convert_fx)",
    "aten::fused_moving_avg_obs_fake_quant": NOT_CONVERTED,
    "aten::fake_quantize_per_tensor_affine": NOT_CONVERTED,
    "aten::fake_quantize_per_channel_affine": NOT_CONVERTED,
    "prim::If": "control flow (if/else) in forward() is not supported: trace the model with torch.jit.trace",
    "prim::Loop": "a loop in forward() is not supported: trace the model with torch.jit.trace",
    "prim::CallMethod": "a call to a submodule method that could not be inlined",
}


def _label(node) -> str:
    """A readable name for an op: its output's debug name, else the traced module scope, else the op."""
    outs = list(node.outputs())
    base = outs[0].debugName().split(".")[0] if outs else ""
    if base and not base.isdigit():
        return base
    scope = node.scopeName().split("/")[-1].replace("__module.", "")
    return scope or node.kind().split("::")[-1]


class _Walker:
    def __init__(self, module: torch.jit.ScriptModule, name: str):
        self.module = module
        self.g = module.inlined_graph
        self.graph = Graph(name, QParams(1.0, 0))
        self.have_input = False
        self.q = None  # QParams of the current quantized value
        self.float_fns = None  # float ops since the last dequantize, or None while quantized
        self.static: set[int] = set()  # Value.unique() of values computed from the module alone
        self.pos = 0  # index of the node being read in self.g, for messages

    def where(self, node) -> str:
        outs = [f"%{o.debugName()}" for o in node.outputs()]
        scope = node.scopeName().split("/")[-1].replace("__module.", "")
        return (f"TorchScript node {self.pos} {node.kind()}" + (f" -> {outs[0]}" if outs else "")
                + (f" in module '{scope}'" if scope else ""))

    # --- reading static arguments from the module --------------------------------------------------
    def value(self, v, node):
        src = v.node()
        kind = src.kind()
        if kind == "prim::Param" and v.unique() == self.self_value.unique():
            return self.module
        if kind == "prim::Constant":
            return v.toIValue()
        if kind == "prim::GetAttr":
            return getattr(self.value(src.input(), node), src.s("name"))
        if kind in ("aten::Float", "aten::FloatImplicit"):
            return float(self.value(src.input(), node))
        if kind in ("aten::Int", "aten::IntImplicit"):
            return int(self.value(src.input(), node))
        if kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            return [self.value(i, node) for i in src.inputs()]
        raise ConversionError(f"{self.where(node)}: cannot read an argument computed by {kind}")

    def module_path(self, v) -> str | None:
        """'fc1' for the value `fc1._packed_params._packed_params` read with prim::GetAttr from the root."""
        parts = []
        while v.node().kind() == "prim::GetAttr":
            parts.append(v.node().s("name"))
            v = v.node().input()
        if v.unique() != self.self_value.unique():
            return None
        parts.reverse()
        while parts and parts[-1] == "_packed_params":
            parts.pop()
        return ".".join(parts) or None

    # --- the chain ------------------------------------------------------------------------------------
    def quantize(self, node, args):
        where = self.where(node)
        dtype = self.value(args[3], node)
        q = qparams(self.value(args[1], node), self.value(args[2], node), SCALAR_TYPES.get(dtype, dtype), where)
        if not self.have_input:
            self.graph.input = q
            self.have_input = True
        elif self.float_fns is None:
            raise ConversionError(f"{where}: quantizing a tensor that is already quantized")
        else:
            self.graph.ops += float_stretch_ops(_label(node), self.q, self.float_fns, q)
        self.q = q
        self.float_fns = None

    def dequantize(self, node):
        if self.q is None or self.float_fns is not None:
            raise ConversionError(f"{self.where(node)}: dequantize of a tensor that is not quantized")
        self.float_fns = []

    def relu(self, node):
        if self.float_fns is not None:
            self.float_fns.append(("relu", torch.relu))
        elif self.q is None:
            raise ConversionError(f"{self.where(node)}: float op before the input is quantized is not supported")
        else:
            self.graph.ops.append(relu_table(_label(node), self.q))  # a ReLU on a quantized tensor

    def linear(self, node, args, relu: bool):
        where = self.where(node)
        if self.q is None or self.float_fns is not None:
            raise ConversionError(f"{where}: its input is not quantized")
        if self.q.dtype != "quint8":
            raise ConversionError(f"{where}: input must be quint8, found {self.q.dtype}")
        packed = self.value(args[1], node)
        try:
            weight, bias = torch.ops.quantized.linear_unpack(packed)
        except Exception as e:  # not a LinearPackedParams object
            raise ConversionError(f"{where}: cannot unpack the layer's weights ({type(e).__name__}: {e})") from None
        out = qparams(self.value(args[2], node), self.value(args[3], node), torch.quint8, where)
        op = linear_from_weight(self.module_path(args[1]) or _label(node), weight, bias, out, relu)
        if self.graph.in_features == 0:
            self.graph.in_features = op.in_features
        self.graph.ops.append(op)
        self.q = op.out

    def step(self, node, args):
        kind = node.kind()
        if kind == "aten::quantize_per_tensor":
            self.quantize(node, args)
        elif kind == "aten::dequantize":
            self.dequantize(node)
        elif kind in LINEARS:
            self.linear(node, args, LINEARS[kind])
        elif kind in RELUS:
            self.relu(node)
        elif kind in DROPOUTS:
            if self.value(args[2], node):
                raise ConversionError(f"{self.where(node)}: dropout in training mode: call model.eval() before "
                                      "torch.jit.trace / torch.jit.script")
        elif kind == "aten::flatten":
            start, end = self.value(args[1], node), self.value(args[2], node)
            if (start, end) != (1, -1):
                raise ConversionError(f"{self.where(node)}: only flatten(start_dim=1) is supported")
            reshape = Reshape(_label(node), (-1,), self.q)
            if self.float_fns is not None:  # inside dequantize ... quantize: applied when the stretch ends
                self.float_fns.append(("flatten", reshape))
            else:
                self.graph.ops.append(reshape)
        elif kind in PASS_KINDS:
            pass
        elif kind in HINTS:
            raise ConversionError(f"{self.where(node)}: {HINTS[kind]}")
        else:
            hint = "" if self.have_input else " (it comes before any quantize_per_tensor: is the model quantized?)"
            raise ConversionError(f"{self.where(node)}: not supported{hint} (supported: {SUPPORTED}); "
                                  "print(module.inlined_graph) shows the graph")

    def walk(self) -> Graph:
        inputs = list(self.g.inputs())
        if len(inputs) != 2:
            raise ConversionError(f"the model must take exactly one input tensor, it takes {len(inputs) - 1}")
        self.self_value, cur = inputs
        ret = self.g.return_node().input()
        wrapper = None  # a one-element tuple/list around the returned tensor
        if ret.node().kind() in ("prim::TupleConstruct", "prim::ListConstruct") and ret.node().inputsSize() == 1:
            wrapper, ret = ret.unique(), ret.node().input()
        self.static.add(self.self_value.unique())
        for pos, node in enumerate(self.g.nodes()):
            self.pos = pos
            ins = list(node.inputs())
            if node.kind() in STATIC_KINDS and all(v.unique() in self.static for v in ins):
                self.static.update(o.unique() for o in node.outputs())
                continue
            if node.outputsSize() == 1 and node.output().unique() == wrapper:
                continue
            data = [v for v in ins if v.unique() not in self.static]
            if not data or data[0].unique() != cur.unique():
                if node.kind() in HINTS:
                    raise ConversionError(f"{self.where(node)}: {HINTS[node.kind()]}")
                raise ConversionError(f"{self.where(node)}: only chains of layers are supported (this op does not "
                                      "take the previous op's output)")
            if len(data) > 1:
                raise ConversionError(f"{self.where(node)}: ops with several tensor inputs (e.g. a skip "
                                      "connection) are not supported yet")
            if node.outputsSize() != 1:
                raise ConversionError(f"{self.where(node)}: ops with {node.outputsSize()} outputs are not supported")
            self.step(node, ins)
            cur = node.output()
        if ret.unique() != cur.unique():
            raise ConversionError("the model must return the output of its last op")
        if self.float_fns:
            raise ConversionError(f"float op(s) {[w for w, _ in self.float_fns]} after the last dequantize: "
                                  "the device returns quantized codes; move them before dequantize")
        if not self.have_input:
            raise ConversionError("the model never quantizes its input: is it a quantized model? "
                                  "(expected aten::quantize_per_tensor)")
        if self.graph.in_features == 0:
            raise ConversionError("the model has no quantized Linear layer")
        return self.graph


def from_script_module(module: torch.jit.ScriptModule, name: str) -> Graph:
    """A traced or scripted quantized model (chain of quantized Linear layers)."""
    try:
        module.inlined_graph
    except Exception as e:
        raise ConversionError(f"cannot read the TorchScript module's forward() ({type(e).__name__}: {e})") from None
    for path, sub in module.named_modules():
        kind = getattr(sub, "original_name", "")
        if kind.endswith(("Observer", "FakeQuantize")):
            raise ConversionError(f"module '{path}' ({kind}): {NOT_CONVERTED}")
    return _Walker(module, name).walk()
