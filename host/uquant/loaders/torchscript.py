"""TorchScript modules (torch.jit.trace or torch.jit.script, in memory or from torch.jit.load) -> IR.

Both kinds are read from `module.inlined_graph`, where submodule calls are inlined into one flat list of
nodes. Traced graphs carry a layer's output scale/zero point as constants; scripted ones read them with
prim::GetAttr (through aten::Float / aten::Int for eager QuantStubs, aten::FloatImplicit / IntImplicit for
FX buffers). Either way such argument nodes only depend on the module itself, so they are evaluated here on
the real module ("static" values). The nodes that carry data form a graph, read as fx.py reads FX graphs:
every TorchScript Value maps to a Val (an IR value name and its qparams, or a dequantized value plus the
float ops applied since); `dequantize -> element-wise ops -> quantize_per_tensor` becomes a code table.
Scripted modules keep the `if` statements of torch's own forward()s: those on the module's attributes
(Conv's padding_mode, F.max_pool2d's stride=None) are decided here as torch decides them, and
`if <input rank / is_quantized check>: raise` ones are skipped.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..ir import Add, Cat, Conv, ConversionError, Graph, Linear, Mean, Mul, QParams, Reshape, Table, unique_name
from .fx import Val
from .modules import (TORCH_DTYPES, avgpool_from_module, code_table, conv_from_weight, float_stretch_ops, linear_from_weight,
                      maxpool_from_module, qparams)

# Nodes that compute arguments (scales, zero points, packed weights, dims) from the module alone.
STATIC_KINDS = {"prim::Constant", "prim::GetAttr", "aten::Float", "aten::Int", "aten::FloatImplicit",
                "aten::IntImplicit", "prim::ListConstruct", "prim::TupleConstruct", "prim::unchecked_cast",
                "aten::__is__", "aten::__isnot__", "aten::eq", "aten::ne", "aten::__not__"}
# Nodes that only inspect a tensor (its rank, size, quantization) for scripted argument checks, whose result
# feeds nothing but an `if ...: raise` -- torch checks them when it runs; the device's shapes are fixed.
CHECK_KINDS = {"aten::size", "aten::dim", "aten::len", "prim::is_quantized", "aten::eq", "aten::ne", "aten::lt",
               "aten::le", "aten::gt", "aten::ge", "aten::__not__", "aten::__getitem__", "aten::__and__",
               "aten::__or__", "aten::__is__", "aten::__isnot__"}
LINEARS = {"quantized::linear": False, "quantized::linear_relu": True}
CONVS = {"quantized::conv2d": (2, False), "quantized::conv2d_relu": (2, True), "quantized::conv1d": (1, False),
         "quantized::conv1d_relu": (1, True)}
MAXPOOLS = {"aten::max_pool1d": 1, "aten::max_pool2d": 2, "quantized::max_pool2d": 2}
_AVG = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
AVGPOOLS = {"aten::avg_pool1d": (nn.AvgPool1d, _AVG), "aten::avg_pool2d": (nn.AvgPool2d, _AVG + ("divisor_override",)),
            "aten::adaptive_avg_pool1d": (nn.AdaptiveAvgPool1d, ("output_size",)),
            "aten::adaptive_avg_pool2d": (nn.AdaptiveAvgPool2d, ("output_size",))}
ADDS = {"quantized::add": False, "quantized::add_relu": True}
MULS = {"quantized::mul": False, "quantized::mul_relu": True}
# Element-wise ops: on a quantized tensor torch runs them per code (a code table computed by calling the same op
# with the node's constant arguments); after a dequantize they are float ops folded into the next quantize.
ELEMENTWISE = {f"aten::{n}{s}" for n in ("relu", "relu6", "sigmoid", "tanh", "hardsigmoid", "hardtanh", "leaky_relu",
                                          "elu", "hardswish", "celu", "selu", "silu", "gelu", "mish")
               for s in ("", "_")} | {f"quantized::{n}" for n in ("hardswish", "elu", "leaky_relu", "relu6",
                                                                 "sigmoid", "celu", "threshold")}
PASS_KINDS = {"aten::contiguous", "aten::detach"}  # no effect on the codes
DROPOUTS = {"aten::dropout", "aten::dropout_", "aten::feature_dropout", "aten::alpha_dropout"}
SCALAR_TYPES = {12: torch.qint8, 13: torch.quint8}  # c10::ScalarType codes as traced graphs store dtypes
SOFTMAXES = {"aten::softmax", "aten::log_softmax", "aten::_softmax", "aten::_log_softmax"}
# Recurrent layers, named when met (their TorchScript form otherwise fails on a list of weights)
RECURRENT = {"aten::lstm": "an LSTM", "aten::gru": "a GRU", "aten::rnn_tanh": "an RNN", "aten::rnn_relu": "an RNN",
             "aten::quantized_lstm": "a dynamically quantized LSTM", "aten::quantized_gru": "a dynamically quantized GRU",
             "quantized::quantized_lstm": "a quantized LSTM", "quantized::quantized_gru": "a quantized GRU"}
RECURRENT_ADVICE = ("recurrent layers are not supported in TorchScript files; uquant converts a quantized LSTM "
                    "(torch.ao.nn.quantized.LSTM from FX's custom-module flow) given as the model in memory: "
                    "uquant.convert(model, example_input)")


def recurrent_advice(what: str) -> str:
    """What to do about a recurrent layer met in a TorchScript model (what: 'a GRU', 'GRU', 'an LSTM', ...)."""
    from .lstm import GRU_ADVICE

    for kind in ("GRU", "RNN"):
        if kind in what:
            return f"{kind} is not supported: {GRU_ADVICE.format(kind=kind)}"
    return RECURRENT_ADVICE
# What the message for an unsupported op lists: the kinds step() handles, read off its tables
SUPPORTED = ", ".join(sorted({k.split("::")[-1].strip("_") for k in (
    *LINEARS, *CONVS, *MAXPOOLS, *AVGPOOLS, *ADDS, *MULS, *ELEMENTWISE, *DROPOUTS, *PASS_KINDS, *SOFTMAXES,
    "aten::cat", "aten::flatten", "aten::mean", "aten::quantize_per_tensor", "aten::dequantize")})) + " (dropout in " \
    "eval mode; cat along channels; flatten from dim 1; mean over H, W; softmax/log_softmax only as the last op, " \
    "dropped)"
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
    """A readable name for an op: the traced module scope (lost by torch.jit.save), else the op's kind (a
    variable name such as `x` says nothing about the op)."""
    scope = node.scopeName().split("/")[-1].replace("__module.", "")
    return scope or node.kind().split("::")[-1].strip("_")


def _raises(block) -> bool:
    return any(n.kind() == "prim::RaiseException" for n in block.nodes())


class _Walker:
    """Walks `inlined_graph`; every TorchScript Value that carries data maps to a Val (as in fx.py)."""

    def __init__(self, module: torch.jit.ScriptModule, name: str):
        self.module = module
        self.g = module.inlined_graph
        self.graph = Graph(name, QParams(1.0, 0))
        self.env: dict[int, Val | list] = {}  # Value.unique() -> the data it carries (a list for tensor lists)
        self.static: set[int] = set()  # Value.unique() of values computed from the module alone
        self.checks: set[int] = set()  # values computed from a tensor's rank/size, for argument checks only
        self.alias: dict[int, object] = {}  # outputs of a statically decided prim::If -> the chosen block's Value
        self.names: set[str] = {"input"}
        self.have_input = False  # the model's input has been quantized
        self.pos = 0  # index of the top-level node being read, for messages

    def where(self, node) -> str:
        outs = [f"%{o.debugName()}" for o in node.outputs()]
        scope = node.scopeName().split("/")[-1].replace("__module.", "")
        reads = [] if scope else self.attributes_read(node)  # a saved file keeps no scopes: name what it reads
        return (f"TorchScript node {self.pos} {node.kind()}" + (f" -> {outs[0]}" if outs else "")
                + (f" in module '{scope}'" if scope else "")
                + (f" (reads {', '.join(repr(r) for r in reads)})" if reads else ""))

    def attributes_read(self, node) -> list[str]:
        """The module attributes (e.g. 'fc1.weight') a node takes as arguments."""
        if not hasattr(self, "self_value"):
            return []
        paths = []
        for v in node.inputs():
            parts, v = [], self.resolve(v)
            while v.node().kind() == "prim::GetAttr":
                parts.append(v.node().s("name"))
                v = v.node().input()
            if parts and v.unique() == self.self_value.unique():
                paths.append(".".join(reversed(parts)))
        return paths

    # --- reading static arguments from the module --------------------------------------------------
    def resolve(self, v):
        while v.unique() in self.alias:
            v = self.alias[v.unique()]
        return v

    def is_static(self, v) -> bool:
        return self.resolve(v).unique() in self.static

    def value(self, v, node):
        try:
            return self._value(v, node)
        except ConversionError:
            raise
        except (RuntimeError, TypeError, ValueError, AttributeError, IndexError) as e:  # a damaged module
            raise ConversionError(f"{self.where(node)}: cannot read an argument from the module "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None

    def _value(self, v, node):
        v = self.resolve(v)
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
        if kind == "prim::unchecked_cast":
            return self.value(src.input(), node)
        if kind in ("aten::__is__", "aten::__isnot__", "aten::eq", "aten::ne"):
            a, b = (self.value(i, node) for i in src.inputs())
            same = a is b if kind in ("aten::__is__", "aten::__isnot__") else bool(a == b)
            return same if kind in ("aten::__is__", "aten::eq") else not same
        if kind == "aten::__not__":
            return not self.value(src.input(), node)
        raise ConversionError(f"{self.where(node)}: cannot read an argument computed by {kind}")

    def module_path(self, v) -> str | None:
        """'fc1' for the value `fc1._packed_params._packed_params` read with prim::GetAttr from the root."""
        parts = []
        v = self.resolve(v)
        while v.node().kind() == "prim::GetAttr":
            parts.append(v.node().s("name"))
            v = v.node().input()
        if v.unique() != self.self_value.unique():
            return None
        parts.reverse()
        while parts and parts[-1] == "_packed_params":
            parts.pop()
        return ".".join(parts) or None

    # --- values and ops --------------------------------------------------------------------------------
    def data(self, v):
        return self.env.get(self.resolve(v).unique())

    def arg(self, node, ins, i=0) -> Val:
        d = self.data(ins[i]) if i < len(ins) else None
        if not isinstance(d, Val):
            raise ConversionError(f"{self.where(node)}: argument {i} is not a tensor computed by the model")
        return d

    def quantized_arg(self, node, ins, i=0) -> Val:
        v = self.arg(node, ins, i)
        if v.value is None:
            raise ConversionError(f"{self.where(node)}: its input is not quantized (the model's float input; is "
                                  "the model quantized?)")
        if not v.quantized:
            raise ConversionError(f"{self.where(node)}: its input is not quantized (a float op inside the model "
                                  f"that uquant cannot place; supported: {SUPPORTED})")
        return v

    def op_name(self, base: str) -> str:
        return unique_name(self.names, base)

    def add(self, op, inputs: list[str]) -> Val:
        op.inputs = list(inputs)
        self.graph.ops.append(op)
        return Val(op.name, op.out)

    def quantize(self, node, ins) -> Val:
        where = self.where(node)
        dtype = self.value(ins[3], node)
        q = qparams(self.value(ins[1], node), self.value(ins[2], node), SCALAR_TYPES.get(dtype, dtype), where)
        v = self.arg(node, ins)
        if v.value is None:  # the model's input
            if self.have_input:
                raise ConversionError(f"{where}: the model quantizes its input twice")
            self.graph.input, self.have_input = q, True
            x = Val("input", q)
            for _, reshape in v.fns:  # flattens of the float input (the only float ops allowed on it)
                x = self.add(Reshape(reshape.name, reshape.shape, q), [x.value])
            return x
        if v.fns is None:
            raise ConversionError(f"{where}: quantizing a tensor that is already quantized")
        try:
            ops = float_stretch_ops(self.op_name(_label(node)), v.q, v.fns, q)
        except ConversionError:
            raise
        except Exception as e:  # torch refuses a float op of the stretch
            raise ConversionError(f"{where}: torch cannot run {[w for w, _ in v.fns]} here "
                                  f"({type(e).__name__}: {e})") from None
        value, used = v.value, {op.name for op in self.graph.ops}
        for op in ops:
            if op.name in used:  # a flatten inside a stretch that is quantized twice
                op.name = self.op_name(op.name)
            value = self.add(op, [value]).value
        return Val(value, q)

    def dequantize(self, node, ins) -> Val:
        v = self.arg(node, ins)
        if not v.quantized:
            raise ConversionError(f"{self.where(node)}: dequantize of a tensor that is not quantized")
        return Val(v.value, v.q, [])

    def elementwise(self, node, ins) -> Val:
        """An element-wise op: a float op inside a dequantize ... quantize stretch, else torch's op on codes."""
        kind = node.kind()
        v = self.arg(node, ins)
        if v.value is None:
            raise ConversionError(f"{self.where(node)}: float op before the input is quantized is not supported")
        ns, op_name = kind.split("::")
        label = op_name.rstrip("_")
        fn_op = getattr(getattr(torch.ops, ns), op_name)
        consts = []
        for a in ins[1:]:
            if not self.is_static(a):
                raise ConversionError(f"{self.where(node)}: arguments computed by the model are not supported")
            consts.append(self.value(a, node))

        def fn(x):
            return fn_op(x, *consts)

        if v.fns is not None:
            return Val(v.value, v.q, v.fns + [(label, fn)])
        try:
            op = code_table(self.op_name(_label(node)), label, v.q, fn, None)
        except ConversionError:
            raise
        except Exception as e:  # torch refuses some ops on quantized tensors
            raise ConversionError(f"{self.where(node)}: torch cannot run {label} on a quantized tensor "
                                  f"({type(e).__name__}: {e})") from None
        return self.add(op, [v.value])

    def linear(self, node, ins, relu: bool) -> Val:
        where = self.where(node)
        v = self.quantized_arg(node, ins)
        if v.q.dtype != "quint8":
            raise ConversionError(f"{where}: input must be quint8, found {v.q.dtype}")
        packed = self.value(ins[1], node)
        try:
            weight, bias = torch.ops.quantized.linear_unpack(packed)
        except Exception as e:  # not a LinearPackedParams object
            raise ConversionError(f"{where}: cannot unpack the layer's weights ({type(e).__name__}: {e})") from None
        out = qparams(self.value(ins[2], node), self.value(ins[3], node), torch.quint8, where)
        name = self.op_name(self.module_path(ins[1]) or _label(node))
        op = linear_from_weight(name, weight, bias, out, relu)
        if v.value == "input":
            self.graph.in_features = op.in_features
        return self.add(op, [v.value])

    def conv(self, node, ins, dim: int, relu: bool) -> Val:
        where = self.where(node)
        v = self.quantized_arg(node, ins)
        if v.q.dtype != "quint8":
            raise ConversionError(f"{where}: input must be quint8, found {v.q.dtype}")
        packed = self.value(ins[1], node)
        unpack = torch.ops.quantized.conv1d_unpack if dim == 1 else torch.ops.quantized.conv2d_unpack
        try:
            weight, bias = unpack(packed)
            stride, padding, dilation = packed.stride(), packed.padding(), packed.dilation()
            groups, transposed = packed.groups(), packed.transpose()
        except Exception as e:  # not a ConvPackedParams object
            raise ConversionError(f"{where}: cannot unpack the layer's weights ({type(e).__name__}: {e})") from None
        if transposed:
            raise ConversionError(f"{where}: transposed convolution is not supported")
        out = qparams(self.value(ins[-2], node), self.value(ins[-1], node), torch.quint8, where)
        name = self.op_name(self.module_path(ins[1]) or _label(node))
        # the packed params hold 2-D stride / padding / dilation for Conv1d too (height 1 first)
        op = conv_from_weight(name, dim, weight, bias, list(stride)[-dim:], list(padding)[-dim:],
                              list(dilation)[-dim:], groups, out, relu)
        return self.add(op, [v.value])

    def static_args(self, node, ins, names) -> dict:
        kw = {}
        for n, a in zip(names, ins[1:]):
            if not self.is_static(a):
                raise ConversionError(f"{self.where(node)}: pooling arguments computed by the model are not supported")
            kw[n] = self.value(a, node)
        return kw

    def maxpool(self, node, ins, dim: int) -> Val:
        v = self.quantized_arg(node, ins)
        kw = self.static_args(node, ins, ("kernel_size", "stride", "padding", "dilation", "ceil_mode"))
        if kw.get("stride") in ([], ()):
            kw["stride"] = None  # F.max_pool2d(x, k): stride defaults to the kernel
        pool = (nn.MaxPool1d if dim == 1 else nn.MaxPool2d)(**kw)
        return self.add(maxpool_from_module(self.op_name(_label(node)), pool, v.q), [v.value])

    def avgpool(self, node, ins) -> Val:
        cls, names = AVGPOOLS[node.kind()]
        v = self.quantized_arg(node, ins)
        kw = self.static_args(node, ins, names)
        if kw.get("stride") in ([], ()):
            kw["stride"] = None
        pool = cls(**kw)
        return self.add(avgpool_from_module(self.op_name(_label(node)), pool, v.q), [v.value])

    def quantized_mul(self, node, ins, relu: bool) -> Val:
        a = self.quantized_arg(node, ins, 0)
        if len(ins) == 2 and not isinstance(self.data(ins[1]), Val):  # by a number: codes kept, scale scaled
            other = self.value(ins[1], node)
            if relu or not isinstance(other, (int, float)) or other <= 0:
                raise ConversionError(f"{self.where(node)}: mul by {other!r}: only a positive number is supported")
            q = QParams(a.q.scale * float(other), a.q.zero_point, a.q.dtype)
            return self.add(Reshape(self.op_name(_label(node)), None, q), [a.value])
        if len(ins) != 4:
            raise ConversionError(f"{self.where(node)}: unexpected quantized mul arguments")
        b = self.quantized_arg(node, ins, 1)
        q = qparams(self.value(ins[2], node), self.value(ins[3], node), TORCH_DTYPES[a.q.dtype], self.where(node))
        return self.add(Mul(self.op_name(_label(node)), q, relu), [a.value, b.value])

    def quantized_add(self, node, ins, relu: bool) -> Val:
        if len(ins) != 4 or not isinstance(self.data(ins[1]), Val):
            raise ConversionError(f"{self.where(node)}: only the add of two quantized tensors is supported "
                                  "(not of a tensor and a number)")
        a, b = self.quantized_arg(node, ins, 0), self.quantized_arg(node, ins, 1)
        q = qparams(self.value(ins[2], node), self.value(ins[3], node), TORCH_DTYPES[a.q.dtype], self.where(node))
        return self.add(Add(self.op_name(_label(node)), q, relu), [a.value, b.value])

    def cat(self, node, ins) -> Val:
        where = self.where(node)
        vals = self.data(ins[0])
        dim = self.value(ins[1], node) if len(ins) > 1 and self.is_static(ins[1]) else None
        if dim != 1:
            raise ConversionError(f"{where}: cat along dim {dim} is not supported (channels, dim=1, only)")
        if not isinstance(vals, list) or not all(isinstance(v, Val) and v.quantized for v in vals):
            raise ConversionError(f"{where}: cat of tensors that are not all quantized")
        if node.kind() == "quantized::cat" and self.value(ins[2], node) is not None:
            q = qparams(self.value(ins[2], node), self.value(ins[3], node), TORCH_DTYPES[vals[0].q.dtype], where)
        else:  # torch.cat on qtensors keeps the first input's qparams and requantizes the others
            q = vals[0].q
        return self.add(Cat(self.op_name(_label(node)), q), [v.value for v in vals])

    def mean(self, node, ins) -> Val:
        """x.mean(dims, keepdim) of a quantized tensor: the IR's Mean (which checks the dims: H, W)."""
        v = self.quantized_arg(node, ins)
        if len(ins) < 3 or not all(self.is_static(i) for i in ins[1:3]) or (
                len(ins) > 3 and self.value(ins[3], node) is not None):
            raise ConversionError(f"{self.where(node)}: only mean(dims, keepdim) over listed dims is supported")
        dims = self.value(ins[1], node)
        dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
        return self.add(Mean(self.op_name(_label(node)), dims, bool(self.value(ins[2], node)), v.q), [v.value])

    def flatten(self, node, ins) -> Val:
        v = self.arg(node, ins)
        start, end = self.value(ins[1], node), self.value(ins[2], node)
        if (start, end) != (1, -1):
            raise ConversionError(f"{self.where(node)}: only flatten(start_dim=1) is supported")
        reshape = Reshape(self.op_name(_label(node)), (-1,), v.q)
        if v.fns is not None:  # inside dequantize ... quantize (or before the input's): applied at the quantize
            return Val(v.value, v.q, v.fns + [("flatten", reshape)])
        return self.add(reshape, [v.value])

    def final_softmax(self, node, ins) -> Val:
        """A softmax / log_softmax whose result is only returned: dropped (monotone per sample, so the argmax and
        the class are unchanged), with a note; anywhere else it is refused."""
        what = node.kind().split("::")[-1].strip("_")
        users = [u.user for u in node.output().uses()]
        while len(users) == 1 and users[0].kind() in ("prim::TupleConstruct", "prim::ListConstruct"):
            users = [u.user for u in users[0].output().uses()]
        if not users or any(u.kind() != "prim::Return" for u in users):
            raise ConversionError(f"{self.where(node)}: {what} inside the model is not supported (it is not "
                                  "element-wise); as the model's last op it is dropped")
        self.graph.notes.append(f"the final {what} is dropped: the device returns the codes of the layer before it "
                                "(argmax and class unchanged; apply softmax on the host to the dequantized codes "
                                "for probabilities)")
        dim = self.value(ins[1], node)
        fn = torch.log_softmax if "log" in what else torch.softmax
        self.graph.dropped.append(lambda x: fn(x, dim))
        return self.arg(node, ins)

    def step(self, node, ins) -> Val:
        kind = node.kind()
        if kind == "aten::quantize_per_tensor":
            return self.quantize(node, ins)
        if kind == "aten::dequantize":
            return self.dequantize(node, ins)
        if kind in LINEARS:
            return self.linear(node, ins, LINEARS[kind])
        if kind in CONVS:
            return self.conv(node, ins, *CONVS[kind])
        if kind in MAXPOOLS:
            return self.maxpool(node, ins, MAXPOOLS[kind])
        if kind in AVGPOOLS:
            return self.avgpool(node, ins)
        if kind in ADDS:
            return self.quantized_add(node, ins, ADDS[kind])
        if kind in MULS:
            return self.quantized_mul(node, ins, MULS[kind])
        if kind in ("aten::cat", "quantized::cat"):
            return self.cat(node, ins)
        if kind in SOFTMAXES:
            return self.final_softmax(node, ins)
        if kind in ELEMENTWISE:
            return self.elementwise(node, ins)
        if kind == "aten::flatten":
            return self.flatten(node, ins)
        if kind in DROPOUTS:
            if self.value(ins[2], node):
                raise ConversionError(f"{self.where(node)}: dropout in training mode: call model.eval() before "
                                      "torch.jit.trace / torch.jit.script")
            return self.arg(node, ins)
        if kind in PASS_KINDS:
            return self.arg(node, ins)
        if kind == "aten::mean":
            return self.mean(node, ins)
        if kind in HINTS:
            raise ConversionError(f"{self.where(node)}: {HINTS[kind]}")
        hint = "" if self.have_input else " (it comes before any quantize_per_tensor: is the model quantized?)"
        raise ConversionError(f"{self.where(node)}: not supported{hint} (supported: {SUPPORTED}); "
                              "print(module.inlined_graph) shows the graph")

    # --- the graph ---------------------------------------------------------------------------------------
    def visit(self, node) -> None:
        kind = node.kind()
        ins = list(node.inputs())
        outs = list(node.outputs())
        if kind in RECURRENT:
            raise ConversionError(f"{self.where(node)}: {RECURRENT[kind]} ({kind}): {recurrent_advice(RECURRENT[kind])}")
        if kind in STATIC_KINDS and all(self.is_static(v) for v in ins):
            self.static.update(o.unique() for o in outs)
            return
        if kind == "prim::If":
            return self.if_node(node)
        if kind in CHECK_KINDS and ins and all(
                self.is_static(v) or self.resolve(v).unique() in self.checks
                or (kind in ("aten::size", "aten::dim", "prim::is_quantized") and isinstance(self.data(v), Val))
                for v in ins):
            self.checks.update(o.unique() for o in outs)
            return
        if kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            vals = [self.data(v) for v in ins]
            if not all(isinstance(d, Val) for d in vals):
                raise ConversionError(f"{self.where(node)}: a list mixing tensors computed by the model with "
                                      "other values is not supported")
            self.env[node.output().unique()] = vals
            return
        if kind in HINTS:
            raise ConversionError(f"{self.where(node)}: {HINTS[kind]}")
        if len(outs) != 1:
            raise ConversionError(f"{self.where(node)}: ops with {len(outs)} outputs are not supported")
        for v in ins:
            if self.resolve(v).unique() in self.checks:
                raise ConversionError(f"{self.where(node)}: uses the input's size or rank, which is not supported "
                                      "(trace the model with torch.jit.trace)")
        self.env[node.output().unique()] = self.step(node, ins)

    def if_node(self, node) -> None:
        """`if` on the module's own attributes (e.g. Conv's padding_mode) takes the branch torch takes; an
        `if <check of the input's shape>: raise` is skipped (torch raises when the input is wrong)."""
        cond = node.input()
        blocks = list(node.blocks())
        if self.is_static(cond):
            block = blocks[0] if self.value(cond, node) else blocks[1]
            for inner in block.nodes():
                self.visit(inner)
            for o, r in zip(node.outputs(), block.outputs()):
                self.alias[o.unique()] = self.resolve(r)
            return
        if (node.outputsSize() == 0 and len(blocks) == 2 and any(_raises(b) for b in blocks)
                and all(_raises(b) or not list(b.nodes()) for b in blocks)):
            return
        raise ConversionError(f"{self.where(node)}: {HINTS['prim::If']}")

    def walk(self) -> Graph:
        inputs = list(self.g.inputs())
        if len(inputs) != 2:
            raise ConversionError(f"the model must take exactly one input tensor, it takes {len(inputs) - 1}")
        self.self_value, x = inputs
        self.static.add(self.self_value.unique())
        self.env[x.unique()] = Val(None, None, [])
        try:  # traced graphs record the example's sizes (in memory; torch.jit.save drops them)
            sizes = x.type().sizes()
        except Exception:
            sizes = None
        if sizes and len(sizes) >= 2 and all(isinstance(d, int) and d > 0 for d in sizes):
            self.graph.input_shape = tuple(sizes[1:])
        for pos, node in enumerate(self.g.nodes()):
            self.pos = pos
            self.visit(node)
        out = self.data(self.g.return_node().input())
        if isinstance(out, list) and len(out) == 1:  # a one-element tuple/list around the returned tensor
            out = out[0]
        if not self.have_input:
            raise ConversionError("the model never quantizes its input: is it a quantized model? "
                                  "(expected aten::quantize_per_tensor)")
        if not isinstance(out, Val) or out.value in (None, "input"):
            raise ConversionError("the model must return the output of a quantized layer")
        if out.fns:
            raise ConversionError(f"float op(s) {[w for w, _ in out.fns]} after the last dequantize: "
                                  "the device returns quantized codes; move them before dequantize")
        self.prune(out.value)
        if not any(isinstance(op, (Linear, Conv)) for op in self.graph.ops):
            raise ConversionError("the model has no quantized Linear or Conv layer")
        if not self.graph.input_shape:  # only tables and flattens before the first Linear: a flat input will do
            first = next(i for i, op in enumerate(self.graph.ops) if isinstance(op, (Linear, Conv)))
            if isinstance(self.graph.ops[first], Linear) and all(isinstance(op, (Table, Reshape))
                                                                 for op in self.graph.ops[:first]):
                self.graph.in_features = self.graph.ops[first].in_features
        return self.graph

    def prune(self, output: str) -> None:
        """Drop ops the output does not depend on (e.g. a value computed but never used)."""
        need = {output}
        for op in reversed(self.graph.ops):
            if op.name in need:
                need.update(op.inputs)
        self.graph.ops = [op for op in self.graph.ops if op.name in need]


def from_script_module(module: torch.jit.ScriptModule, name: str) -> Graph:
    """A traced or scripted quantized model (Linear / Conv / pooling / add / cat / element-wise graphs)."""
    try:
        module.inlined_graph
    except Exception as e:
        raise ConversionError(f"cannot read the TorchScript module's forward() ({type(e).__name__}: {e})") from None
    for path, sub in module.named_modules():
        kind = getattr(sub, "original_name", "")
        if kind.endswith(("Observer", "FakeQuantize")):
            raise ConversionError(f"module '{path}' ({kind}): {NOT_CONVERTED}")
        if kind in ("LSTM", "GRU", "RNN"):  # named before the walk meets their weight lists
            raise ConversionError(f"module '{path}' ({kind}): {recurrent_advice(kind)}")
    return _Walker(module, name).walk()
