"""FX graph-mode (convert_fx) and eager-mode (convert) quantized models -> IR.

Eager models are traced with torch.fx.symbolic_trace first (quantized modules are leaves), so one walker
reads both. Every FX node maps to a value: quantized (an IR value name and its qparams) or float (a
quantized value that was dequantized, plus the element-wise float ops applied since). A float stretch
`dequantize -> element-wise ops -> quantize_per_tensor` becomes a code table computed by torch.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ir import (Add, Cat, Conv, ConversionError, Graph, Linear, Mean, Mul, Permute, QParams, Reshape, Size,
                 Slice, unique_name)
from .modules import (TORCH_DTYPES, code_table, conv_from_module, float_stretch_ops, linear_from_module, maxpool_from_module,
                      qparams)
from .modules import AVGPOOL_MODULES, avgpool_from_module
from . import lstm as lstm_unroll

_AVG_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
# functional average pooling (as FX records it) -> the module doing the same, and the names of its arguments
AVGPOOL_FUNCTIONS = {F.avg_pool1d: (nn.AvgPool1d, _AVG_ARGS), F.avg_pool2d: (nn.AvgPool2d, _AVG_ARGS + ("divisor_override",)),
                     F.adaptive_avg_pool1d: (nn.AdaptiveAvgPool1d, ("output_size",)),
                     F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",))}

# Element-wise ops: on a quantized tensor torch runs them per code, inside a float stretch they are float ops
# before the next quantize; either way they become 256-entry code tables computed by torch.
ELEMENTWISE_FUNCTIONS = {torch.relu, F.relu, torch.sigmoid, torch.tanh, F.hardsigmoid, F.relu6, F.hardtanh,
                         F.leaky_relu, F.elu, F.hardswish, torch.nn.functional.sigmoid, torch.nn.functional.tanh}
ELEMENTWISE_METHODS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
                       nn.Hardswish)
PASS_MODULES = (nn.Identity, nn.Dropout)  # no effect in eval
SOFTMAX_FUNCTIONS = {torch.softmax, F.softmax, torch.log_softmax, F.log_softmax}
SOFTMAX_METHODS = ("softmax", "log_softmax")
SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax)
# What the message for an unsupported op lists, read off the tables module() and call() dispatch on
SUPPORTED = ("quantized Linear / LinearReLU, Conv1d / Conv2d (+ReLU), MaxPool1d / 2d, quantized add / mul (+relu), "
             + ", ".join(sorted({m.__name__ for m in (*ELEMENTWISE_MODULES, *PASS_MODULES, *SOFTMAX_MODULES,
                                                      nn.Flatten, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                                                      nn.AdaptiveAvgPool2d)}
                                | {f.__name__ for f in (*ELEMENTWISE_FUNCTIONS, *AVGPOOL_FUNCTIONS)}
                                | {"cat", "flatten", "reshape / view", "QuantStub / DeQuantStub", "transpose / permute",
                                   "contiguous", "chunk / split", "size() arithmetic", "mean over [2, 3]",
                                   "quantized LSTM (custom module, batch_first, unidirectional, zero initial state)",
                                   "quantize_per_tensor", "dequantize"}))
             + " (softmax / log_softmax only as the last op: dropped)")
NOT_CONVERTED = ("the model is prepared (observers / fake-quantize) but not converted: run convert_fx (FX) or "
                 "torch.ao.quantization.convert (eager) before uquant")


def with_args(fn, node: torch.fx.Node):
    """fn with the node's non-tensor arguments (e.g. leaky_relu's slope) bound."""
    args = [a for a in node.args[1:]]
    if any(isinstance(a, torch.fx.Node) for a in args) or any(isinstance(v, torch.fx.Node) for v in node.kwargs.values()):
        raise ConversionError(f"{describe(node)}: arguments computed by the model are not supported")
    return lambda x: fn(x, *args, **node.kwargs)


def describe(node: torch.fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"node '{node.name}' ({node.op} {target})"


@dataclass
class Val:
    """What an FX node holds: the IR value it comes from and, after a dequantize, the float ops applied."""

    value: str | None  # IR value name (None: the model's float input, before quantization)
    q: QParams | None
    fns: list | None = field(default=None)  # None: quantized; a list: float (dequantized) with these ops
    const: object = None  # a Python value the model computes (a Size, an int, or a chunk/split's pieces)

    @property
    def quantized(self) -> bool:
        return self.fns is None and self.value is not None


class _Walker:
    def __init__(self, gm: torch.fx.GraphModule, name: str, input_shape=None):
        self.gm = gm
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.mods = dict(gm.named_modules())
        self.graph = Graph(name, QParams(1.0, 0))
        self.env: dict[torch.fx.Node, Val] = {}
        self.names: set[str] = set()
        self.sequences: dict = {}  # an LSTM's output sequence, once made (lstm_sequence)

    def attr(self, value):
        if isinstance(value, torch.fx.Node) and value.op == "get_attr":
            obj = self.gm
            for part in value.target.split("."):
                obj = getattr(obj, part)
            return obj
        return value

    def op_name(self, node: torch.fx.Node) -> str:
        """The module path for module calls (as users know them), else the FX node name; always unique."""
        name = node.target if node.op == "call_module" and node.target not in self.names else node.name
        self.names.add(name)
        return name

    def add(self, op, inputs: list[str]):
        op.inputs = list(inputs)
        self.graph.ops.append(op)
        return op

    def arg(self, node, i=0, lstm_output: bool = False) -> Val:
        a = node.args[i]
        if isinstance(a, torch.fx.Node) and a.op == "get_attr" and lstm_unroll.is_zero_tensor(self.attr(a)):
            return Val(None, None, None, ("zeros",))  # a buffer of zeros (an LSTM's initial state)
        if not isinstance(a, torch.fx.Node) or a not in self.env:
            raise ConversionError(f"{describe(node)}: argument {i} is not a tensor computed by the model")
        v = self.env[a]
        if not lstm_output and isinstance(v.const, tuple) and v.const and v.const[0] == "lstm_seq":
            return self.lstm_sequence(v)
        if not lstm_output and isinstance(v.const, tuple) and v.const and str(v.const[0]).startswith("lstm"):
            raise ConversionError(f"{describe(node)}: uses an LSTM's output in a way uquant does not support; "
                                  "supported: the output sequence (whole, or out[:, t], e.g. out[:, -1]), h_n[-1] / "
                                  "h_n[0] / h_n.squeeze(0) of the final state")
        return v

    def quantized_arg(self, node, i=0) -> Val:
        v = self.arg(node, i)
        if not v.quantized:
            raise ConversionError(f"{describe(node)}: its input is not quantized (a float op inside the model "
                                  "that uquant cannot place; supported: " + SUPPORTED + ")")
        return v

    def quantize(self, node, scale, zero_point, dtype) -> Val:
        q = qparams(self.attr(scale), self.attr(zero_point), self.attr(dtype), describe(node))
        v = self.arg(node)
        if v.const == ("zeros",):  # an LSTM's zero initial state, quantized: the LSTM makes its codes
            return Val(None, q, None, ("zero_state", q))
        if v.value is None:  # the model input
            if self.graph.ops or self.graph.input_shape:
                raise ConversionError(f"{describe(node)}: the model quantizes its input twice")
            self.graph.input = q
            return Val("input", q)
        if v.fns is None:
            raise ConversionError(f"{describe(node)}: quantizing a tensor that is already quantized")
        value = v.value
        for op in float_stretch_ops(self.op_name(node), v.q, v.fns, q):
            self.add(op, [value])
            value = op.name
        return Val(value, q)

    def flatten(self, node, v: Val, start_dim=1, end_dim=-1) -> Val:
        if (start_dim, end_dim) != (1, -1):
            raise ConversionError(f"{describe(node)}: only flatten(start_dim=1) is supported, got "
                                  f"start_dim={start_dim}, end_dim={end_dim}")
        reshape = Reshape(self.op_name(node), (-1,), v.q)
        if v.fns is not None:  # inside dequantize ... quantize: applied when the stretch ends
            return Val(v.value, v.q, v.fns + [("flatten", reshape)])
        return Val(self.add(reshape, [v.value]).name, v.q)

    def elementwise(self, node, v: Val, label, fn) -> Val:
        """An element-wise op: a float op inside a dequantize ... quantize stretch, else torch's op on codes."""
        if v.value is None:
            raise ConversionError(f"{describe(node)}: a float op before the input is quantized is not supported")
        if v.fns is not None:
            return Val(v.value, v.q, v.fns + [(label, fn)])
        try:
            op = code_table(self.op_name(node), label, v.q, fn, None)
        except ConversionError:
            raise
        except Exception as e:  # torch refuses some ops on quantized tensors (e.g. F.hardswish)
            raise ConversionError(f"{describe(node)}: torch cannot run {label} on a quantized tensor "
                                  f"({type(e).__name__}: {e})") from None
        return Val(self.add(op, [v.value]).name, op.out)

    def module(self, node) -> Val:
        import torch.ao.nn.intrinsic.quantized as nniq
        import torch.ao.nn.quantized as nnq
        import torch.ao.nn.quantized.dynamic as nnqd
        from torch.ao.quantization import FakeQuantizeBase, ObserverBase

        mod = self.mods[node.target]
        where = f"module '{node.target}' ({type(mod).__name__})"
        if isinstance(mod, nnq.Quantize):
            return self.quantize(node, mod.scale, mod.zero_point, mod.dtype)
        if isinstance(mod, nnq.DeQuantize):
            return self.dequantize(node)
        if isinstance(mod, nnqd.Linear):
            raise ConversionError(f"{where}: dynamically quantized Linear (activations stay float at run time); "
                                  "uquant needs static quantization (prepare/convert or prepare_fx/convert_fx)")
        if isinstance(mod, (nnq.Linear, nniq.LinearReLU)):
            v = self.quantized_arg(node)
            op = linear_from_module(self.op_name(node), mod)
            if v.q.dtype != "quint8":
                raise ConversionError(f"{where}: input must be quint8, found {v.q.dtype}")
            if v.value == "input":
                self.graph.in_features = op.in_features
            return Val(self.add(op, [v.value]).name, op.out)
        if isinstance(mod, (nnq.Conv1d, nnq.Conv2d, nniq.ConvReLU1d, nniq.ConvReLU2d)):
            v = self.quantized_arg(node)
            op = conv_from_module(self.op_name(node), mod)
            return Val(self.add(op, [v.value]).name, op.out)
        if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
            v = self.quantized_arg(node)
            return Val(self.add(maxpool_from_module(self.op_name(node), mod, v.q), [v.value]).name, v.q)
        if isinstance(mod, AVGPOOL_MODULES):
            v = self.quantized_arg(node)
            return Val(self.add(avgpool_from_module(self.op_name(node), mod, v.q), [v.value]).name, v.q)
        if isinstance(mod, nn.Flatten):
            return self.flatten(node, self.arg(node), mod.start_dim, mod.end_dim)
        if isinstance(mod, ELEMENTWISE_MODULES) or isinstance(mod, (nnq.Hardswish, nnq.LeakyReLU, nnq.ELU,
                                                                    nnq.ReLU6, nnq.Sigmoid)):
            return self.elementwise(node, self.arg(node), type(mod).__name__.lower(), mod)
        if isinstance(mod, PASS_MODULES):
            return self.arg(node)
        if isinstance(mod, SOFTMAX_MODULES):
            return self.final_softmax(node, type(mod).__name__, mod)
        if isinstance(mod, nnq.LSTM):
            return self.lstm(node, mod, where)
        if isinstance(mod, torch.ao.nn.quantizable.LSTM):
            raise ConversionError(f"{where}: {NOT_CONVERTED} (an observed LSTM: convert_fx with "
                                  "ConvertCustomConfig().set_observed_to_quantized_mapping(torch.ao.nn.quantizable"
                                  ".LSTM, torch.ao.nn.quantized.LSTM))")
        if isinstance(mod, nn.LSTM):
            raise ConversionError(f"{where}: {lstm_unroll.FLOAT_LSTM_ADVICE}")
        if isinstance(mod, (nn.GRU, nn.RNN)):
            kind = type(mod).__name__
            raise ConversionError(f"{where}: {kind} is not supported: {lstm_unroll.GRU_ADVICE.format(kind=kind)}")
        if isinstance(mod, (ObserverBase, FakeQuantizeBase)):
            raise ConversionError(f"{where}: {NOT_CONVERTED}")
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            raise ConversionError(f"{where}: a float (unquantized) layer: the model is not quantized; run "
                                  "convert_fx (FX) or torch.ao.quantization.convert (eager) before uquant")
        raise ConversionError(f"{where}: not supported (supported: {SUPPORTED})")

    def lstm(self, node, mod, where: str) -> Val:
        """torch's quantized LSTM, unrolled over the time steps (uquant.loaders.lstm)."""
        lstm_unroll.check_lstm(mod, where)
        if node.kwargs or len(node.args) not in (1, 2):
            raise ConversionError(f"{where}: call it as lstm(x, (h0, c0))")
        x = self.quantized_arg(node, 0)
        if len(node.args) == 1:  # eager flow, no state: torch quantizes zeros with scale 1.0, zero point 0
            states = [QParams(1.0, 0, x.q.dtype)] * 2
        else:
            hidden = node.args[1]
            if not isinstance(hidden, (tuple, list)) or len(hidden) != 2:
                raise ConversionError(f"{where}: call it as lstm(x, (h0, c0)); {lstm_unroll.ZERO_STATE}")
            states = []
            for h in hidden:
                v = self.env.get(h) if isinstance(h, torch.fx.Node) else None
                if v is None or not isinstance(v.const, tuple) or v.const[0] != "zero_state":
                    raise ConversionError(f"{where}: {lstm_unroll.ZERO_STATE}")
                states.append(v.const[1])
        if not self.graph.input_shape:
            if self.input_shape is None:
                raise ConversionError(f"{where}: an LSTM is unrolled over the sequence length, which only an "
                                      "example input gives: convert(model, example_input) or input_shape=(time, "
                                      "features) (CLI: --input-shape TIME,FEATURES)")
            self.graph.input_shape = self.input_shape
        shape = self.graph.input_shape if x.value == "input" else self.graph.shapes()[x.value]
        return Val(None, None, None, ("lstm",) + lstm_unroll.unroll(self, self.op_name(node), mod, x, tuple(shape),
                                                                     states, where))

    def lstm_sequence(self, v: Val) -> Val:
        """An LSTM's whole output sequence as one value (batch, time, hidden): its steps' h side by side (a cat of
        byte copies), made once, where something other than out[:, t] reads it."""
        _, hs, q, dq = v.const
        key = ("lstm_seq", tuple(hs))
        if key not in self.sequences:
            name = hs[0].rsplit(".", 2)[0] + ".out"
            rows = []
            for t, h in enumerate(hs):
                rows.append(self.add(Reshape(self.unique(f"{name}{t}"), (1, -1), q), [h]).name)
            self.sequences[key] = self.add(Cat(self.unique(name), q, dim=1), rows).name
        return Val(self.sequences[key], q, [] if dq else None)

    def unique(self, name: str) -> str:
        return unique_name(self.names, name)

    def lstm_output(self, node, c: tuple, index) -> Val:
        """getitem on an LSTM's outputs: (out, (h_n, c_n)), out[:, t], h_n[-1] (a Val whose const says which)."""
        kind = c[0]
        if kind == "lstm" and index in (0, 1):
            _, hs, hns, cns, qhs, qcs = c
            return Val(None, None, None, ("lstm_seq", hs, qhs[-1], False) if index == 0 else
                       ("lstm_hc", hns, cns, qhs, qcs))
        if kind == "lstm_hc" and index in (0, 1):
            return Val(None, None, None, ("lstm_state", c[1 + index], c[3 + index], False))
        if kind == "lstm_seq":
            t = lstm_unroll.selected_step(index)
            if t is not None and -len(c[1]) <= t < len(c[1]):
                return Val(c[1][t], c[2], [] if c[3] else None)
        if kind == "lstm_state" and len(c[1]) > 1:
            raise ConversionError(f"{describe(node)}: the final state of a {len(c[1])}-layer LSTM: torch stacks the "
                                  "layers' states, requantizing them to the first layer's scale; use out[:, -1] (the "
                                  "last layer's last h) instead")
        if kind == "lstm_state" and index in (0, -1):
            return Val(c[1][0], c[2][0], [] if c[3] else None)
        raise ConversionError(f"{describe(node)}: indexes an LSTM's output with {index!r}; supported: out[:, t] "
                              "of the output sequence (e.g. out[:, -1]) or the whole sequence, h_n[-1] / h_n[0] / "
                              "h_n.squeeze(0)")

    def dequantize(self, node) -> Val:
        v = self.arg(node, lstm_output=True)
        if isinstance(v.const, tuple) and v.const[0] in ("lstm_seq", "lstm_state"):
            return Val(None, None, None, v.const[:-1] + (True,))
        if not v.quantized:
            raise ConversionError(f"{describe(node)}: dequantize of a tensor that is not quantized")
        return Val(v.value, v.q, [])

    def quantized_add(self, node, relu: bool) -> Val:
        a, b = self.quantized_arg(node, 0), self.quantized_arg(node, 1)
        scale = node.args[2] if len(node.args) > 2 else node.kwargs.get("scale")
        zp = node.args[3] if len(node.args) > 3 else node.kwargs.get("zero_point")
        q = qparams(self.attr(scale), self.attr(zp), TORCH_DTYPES[a.q.dtype], describe(node))  # as its inputs
        return Val(self.add(Add(self.op_name(node), q, relu), [a.value, b.value]).name, q)

    def quantized_mul(self, node, relu: bool) -> Val:
        a = self.quantized_arg(node, 0)
        other = node.args[1]
        if not isinstance(other, torch.fx.Node):  # by a number: torch keeps the codes and scales the scale
            if relu or not isinstance(other, (int, float)) or other <= 0:
                raise ConversionError(f"{describe(node)}: mul by {other!r}: only a positive number is supported")
            q = QParams(a.q.scale * float(other), a.q.zero_point, a.q.dtype)
            return Val(self.add(Reshape(self.op_name(node), None, q), [a.value]).name, q)
        b = self.quantized_arg(node, 1)
        scale = node.args[2] if len(node.args) > 2 else node.kwargs.get("scale")
        zp = node.args[3] if len(node.args) > 3 else node.kwargs.get("zero_point")
        q = qparams(self.attr(scale), self.attr(zp), TORCH_DTYPES[a.q.dtype], describe(node))
        return Val(self.add(Mul(self.op_name(node), q, relu), [a.value, b.value]).name, q)

    def reshape(self, node) -> Val:
        """view / reshape of the whole batch: the first size is the batch, the rest is one sample's shape."""
        v = self.arg(node)
        sizes = list(node.args[1:])
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = list(sizes[0])
        shape = [self.size_arg(node, d) for d in sizes[1:]]
        if not shape or not all(isinstance(d, (int, Size)) for d in shape):
            raise ConversionError(f"{describe(node)}: only reshapes to (batch, sizes...) are supported")
        return self.move(node, v, "reshape", Reshape(self.op_name(node), tuple(shape), v.q))

    def move(self, node, v: Val, label: str, op) -> Val:
        """A byte move (reshape, transpose, slice): on codes, or inside a dequantize ... quantize stretch (it
        commutes with the stretch's element-wise ops)."""
        if v.value is None:
            raise ConversionError(f"{describe(node)}: {label} before the input is quantized is not supported")
        if v.fns is not None:  # inside dequantize ... quantize: applied when the stretch ends
            return Val(v.value, v.q, v.fns + [(label, op)])
        return Val(self.add(op, [v.value]).name, v.q)

    def size_arg(self, node, a):
        """A size argument: an int, or a Size the model computed from x.size()."""
        if isinstance(a, torch.fx.Node):
            c = self.env.get(a, Val(None, None)).const
            if not isinstance(c, (int, Size)) or isinstance(c, bool):
                raise ConversionError(f"{describe(node)}: argument {a.name} is not a size uquant can compute")
            return c
        return a

    def const_arg(self, node, a) -> int:
        a = self.size_arg(node, a)
        if not isinstance(a, int):
            raise ConversionError(f"{describe(node)}: a dim or count computed from sizes is not supported")
        return a

    def size(self, node) -> Val:
        v = self.arg(node)
        if v.value is None and v.fns == [] and v.const is None:  # the model's float input (e.g. for new_zeros)
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return Val(None, None, None, Size("input", None if dim is None else self.const_arg(node, dim)))
        if v.value is None or any(not callable(f) or isinstance(f, (Reshape, Permute, Slice)) for _, f in v.fns or ()):
            raise ConversionError(f"{describe(node)}: size() of this tensor is not supported")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return Val(None, None, None, Size(v.value, None if dim is None else self.const_arg(node, dim)))

    def arith(self, node) -> Val:
        """getitem / // * + - on sizes and ints, or getitem of a chunk/split's pieces."""
        a, b = node.args[0], node.args[1]
        ca = self.env[a].const if isinstance(a, torch.fx.Node) and a in self.env else a
        if node.target is operator.getitem and isinstance(ca, tuple) and ca and str(ca[0]).startswith("lstm"):
            return self.lstm_output(node, ca, b)
        if node.target is operator.getitem and isinstance(ca, tuple) and ca and ca[0] == "pieces":
            _, v, dim, chunks, split = ca
            op = Slice(self.op_name(node), dim, self.const_arg(node, b), v.q, chunks, split)
            return self.move(node, v, "slice", op)
        if node.target is operator.getitem and isinstance(ca, Size) and ca.dim is None:
            return Val(None, None, None, Size(ca.value, self.const_arg(node, b)))
        cb = self.size_arg(node, b)
        name = {operator.floordiv: "floordiv", operator.mul: "mul", operator.add: "add", operator.sub: "sub"}.get(
            node.target)
        if name is None or not isinstance(ca, (int, Size)) or not isinstance(cb, (int, Size)):
            raise ConversionError(f"{describe(node)}: not supported (supported: {SUPPORTED})")
        if isinstance(ca, Size):
            return Val(None, None, None, ca.then(name, cb))
        if isinstance(cb, Size):
            if name in ("mul", "add"):
                return Val(None, None, None, cb.then(name, ca))
            raise ConversionError(f"{describe(node)}: an int {name} a size is not supported")
        return Val(None, None, None, {"floordiv": operator.floordiv, "mul": operator.mul, "add": operator.add,
                                      "sub": operator.sub}[name](ca, cb))

    def permute(self, node, transpose: bool) -> Val:
        dims = list(node.args[1:])
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        if not dims:
            dims = [node.kwargs.get(k) for k in (("dim0", "dim1") if transpose else ("dims",))]
            if not transpose:
                dims = list(dims[0] or ())
        dims = tuple(self.const_arg(node, d) for d in dims)
        v = self.arg(node)
        return self.move(node, v, "transpose" if transpose else "permute",
                         Permute(self.op_name(node), dims, v.q, transpose))

    def pieces(self, node, split: bool) -> Val:
        v = self.arg(node)
        n = node.args[1] if len(node.args) > 1 else node.kwargs.get("split_size_or_sections" if split else "chunks",
                                                                     node.kwargs.get("split_size"))
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        n = tuple(self.const_arg(node, d) for d in n) if isinstance(n, (tuple, list)) else self.const_arg(node, n)
        dim = self.const_arg(node, dim)
        return Val(None, None, None, ("pieces", v, dim, None if split else n, n if split else None))

    def mean(self, node) -> Val:
        """Quantized mean over H, W (shufflenet's head): its own IR op, see lower.mean_as_pool and uquant.fmean."""
        v = self.quantized_arg(node)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if isinstance(dims, int):
            dims = [dims]
        if not isinstance(dims, (tuple, list)) or node.kwargs.get("dtype") is not None:
            raise ConversionError(f"{describe(node)}: only mean over listed dims ([2, 3]) is supported")
        op = Mean(self.op_name(node), tuple(self.const_arg(node, d) for d in dims), bool(keepdim), v.q)
        return Val(self.add(op, [v.value]).name, v.q)

    def cat(self, node) -> Val:
        tensors = node.args[0]
        dim = self.const_arg(node, node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0))
        vals = []
        for t in tensors:
            v = self.env.get(t) if isinstance(t, torch.fx.Node) else None
            if v is None or not v.quantized:
                raise ConversionError(f"{describe(node)}: cat of tensors that are not all quantized")
            vals.append(v)
        q = vals[0].q  # torch.cat on qtensors keeps the first input's qparams and requantizes the others
        scale = node.args[2] if len(node.args) > 2 else node.kwargs.get("scale")
        if node.target is torch.ops.quantized.cat and scale is not None:  # eager QFunctional.cat: its own qparams
            zp = node.args[3] if len(node.args) > 3 else node.kwargs.get("zero_point")
            q = qparams(self.attr(scale), self.attr(zp), TORCH_DTYPES[q.dtype], describe(node))
        return Val(self.add(Cat(self.op_name(node), q, dim=dim), [v.value for v in vals]).name, q)

    def final_softmax(self, node, what: str, fn) -> Val:
        """A softmax / log_softmax whose result is only returned: dropped (monotone per sample, so the argmax and
        the class are unchanged), with a note; anywhere else it is refused."""
        if any(u.op != "output" for u in node.users):
            raise ConversionError(f"{describe(node)}: {what} inside the model is not supported (it is not "
                                  "element-wise); as the model's last op it is dropped")
        self.graph.notes.append(f"the final {what} is dropped: the device returns the codes of the layer before it "
                                "(argmax and class unchanged; apply softmax on the host to the dequantized codes "
                                "for probabilities)")
        self.graph.dropped.append(fn)
        return self.arg(node)

    def call(self, node) -> Val:
        t = node.target
        if node.op == "call_module":
            return self.module(node)
        if node.op == "call_function" and t is torch.quantize_per_tensor:
            return self.quantize(node, *node.args[1:4])
        if node.op == "call_method" and t == "dequantize":
            return self.dequantize(node)
        if node.op == "call_function" and t in ELEMENTWISE_FUNCTIONS:
            return self.elementwise(node, self.arg(node), t.__name__, with_args(t, node))
        if node.op == "call_method" and t in ELEMENTWISE_METHODS:
            return self.elementwise(node, self.arg(node), t, with_args(ELEMENTWISE_METHODS[t], node))
        if node.op == "call_function" and t in SOFTMAX_FUNCTIONS:
            return self.final_softmax(node, t.__name__, with_args(t, node))
        if node.op == "call_method" and t in SOFTMAX_METHODS:
            return self.final_softmax(node, t, with_args(getattr(torch, t), node))
        if (node.op == "call_function" and t is torch.flatten) or (node.op == "call_method" and t == "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten(node, self.arg(node), start, end)
        if node.op == "call_function" and t in (torch.ops.quantized.add, torch.ops.quantized.add_relu):
            return self.quantized_add(node, t is torch.ops.quantized.add_relu)
        if node.op == "call_function" and t in (torch.ops.quantized.mul, torch.ops.quantized.mul_relu):
            return self.quantized_mul(node, t is torch.ops.quantized.mul_relu)
        if node.op == "call_method" and t == "size":
            return self.size(node)
        if (node.op == "call_method" and t == "new_zeros") or (node.op == "call_function"
                                                               and t in (torch.zeros, torch.zeros_like)):
            return Val(None, None, None, ("zeros",))  # an LSTM's initial state (quantized next)
        if node.op == "call_method" and t in ("expand", "repeat") and self.arg(node).const == ("zeros",):
            return self.arg(node)
        if node.op == "call_method" and t == "squeeze" and node.args[1:] in ((0,), (-3,)):
            v = self.arg(node, lstm_output=True)
            if isinstance(v.const, tuple) and v.const[0] == "lstm_state":
                return self.lstm_output(node, v.const, 0)
        if node.op == "call_function" and t in (operator.getitem, operator.floordiv, operator.mul, operator.add,
                                                operator.sub):
            return self.arith(node)
        if node.op == "call_method" and t == "contiguous":
            return self.arg(node)  # moves always write a contiguous copy
        if node.op == "call_method" and t in ("transpose", "permute") or (
                node.op == "call_function" and t in (torch.transpose, torch.permute)):
            return self.permute(node, t in ("transpose", torch.transpose))
        if node.op == "call_method" and t in ("chunk", "split") or (
                node.op == "call_function" and t in (torch.chunk, torch.split)):
            return self.pieces(node, t in ("split", torch.split))
        if node.op == "call_method" and t in ("view", "reshape") or node.op == "call_function" and t is torch.reshape:
            return self.reshape(node)
        if node.op == "call_function" and (t is torch.cat or t is torch.ops.quantized.cat):
            return self.cat(node)
        if node.op == "call_function" and t in (F.max_pool1d, F.max_pool2d):
            names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
            kw = dict(zip(names, node.args[1:]), **node.kwargs)
            pool = (nn.MaxPool1d if t is F.max_pool1d else nn.MaxPool2d)(**kw)
            v = self.quantized_arg(node)
            return Val(self.add(maxpool_from_module(self.op_name(node), pool, v.q), [v.value]).name, v.q)
        if node.op == "call_function" and t in AVGPOOL_FUNCTIONS:
            names = AVGPOOL_FUNCTIONS[t][1]
            kw = dict(zip(names, node.args[1:]), **node.kwargs)
            if any(isinstance(a, torch.fx.Node) for a in kw.values()):
                raise ConversionError(f"{describe(node)}: pooling arguments computed by the model are not supported")
            pool = AVGPOOL_FUNCTIONS[t][0](**kw)
            v = self.quantized_arg(node)
            return Val(self.add(avgpool_from_module(self.op_name(node), pool, v.q), [v.value]).name, v.q)
        if (node.op == "call_function" and t is torch.mean) or (node.op == "call_method" and t == "mean"):
            return self.mean(node)
        raise ConversionError(f"{describe(node)}: not supported (supported: {SUPPORTED})")

    def walk(self) -> Graph:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            lstms = [p for p, m in self.mods.items() if isinstance(m, torch.ao.nn.quantizable.LSTM)]
            hint = f" (module '{lstms[0]}' is an LSTM: {lstm_unroll.ZERO_STATE})" if lstms else ""
            raise ConversionError(f"the model must take exactly one input tensor, it takes {len(placeholders)}{hint}")
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.env[node] = Val(None, None, [])
            elif node.op == "get_attr":
                continue
            elif node.op == "output":
                out = node.args[0]
                if isinstance(out, (tuple, list)) and len(out) == 1:
                    out = out[0]
                v = self.env.get(out) if isinstance(out, torch.fx.Node) else None
                if v is not None and isinstance(v.const, tuple) and v.const and v.const[0] == "lstm_seq":
                    v = self.lstm_sequence(v)
                if v is None or v.value in (None, "input"):
                    raise ConversionError("the model must return the output of a quantized layer")
                if v.fns:
                    raise ConversionError(f"float op(s) {[w for w, _ in v.fns]} after the last dequantize: "
                                          "the device returns quantized codes; move them before dequantize")
                if not self.graph.ops or self.graph.ops[-1].name != v.value:
                    raise ConversionError("the model's output must be the last op it computes")
            else:
                self.env[node] = self.call(node)
        if not any(v.value == "input" for v in self.env.values()):
            raise ConversionError("the model never quantizes its input: is it a quantized model? "
                                  "(expected quantize_per_tensor or QuantStub)")
        if not any(isinstance(op, (Linear, Conv)) for op in self.graph.ops):
            raise ConversionError("the model has no quantized Linear or Conv layer")
        return self.graph


def from_graph_module(gm: torch.fx.GraphModule, name: str, input_shape=None) -> Graph:
    return _Walker(gm, name, input_shape).walk()


def from_module(module: nn.Module, name: str, input_shape=None) -> Graph:
    """A converted eager-mode or FX model (any nn.Module whose forward traces with torch.fx)."""
    from torch.ao.quantization import FakeQuantizeBase, ObserverBase

    for path, sub in module.named_modules():
        if isinstance(sub, (ObserverBase, FakeQuantizeBase)):
            raise ConversionError(f"module '{path}' ({type(sub).__name__}): {NOT_CONVERTED}")
    if isinstance(module, torch.fx.GraphModule):
        return from_graph_module(module, name, input_shape)
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as e:  # tracing runs user code: any failure means we cannot read the structure
        raise ConversionError(f"cannot trace the model's forward() with torch.fx ({type(e).__name__}: {e}); "
                              "export it with torch.jit.trace and convert that file instead") from None
    return from_graph_module(gm, name, input_shape)
