"""PT2E (torchao prepare_pt2e / convert_pt2e) programs -> IR, in memory or from a torch.export.save file.

A converted PT2E program runs float32 aten ops between quantized_decomposed.quantize_per_tensor and
dequantize_per_tensor (weights: dequantize_per_channel). The walker follows it value by value:

- a quantize node makes a quantized value (an IR value and its QParams, formula "pt2e");
- a dequantize makes a float value that still stands for one quantized value;
- float ops collect on it until the next quantize, which decides what the device runs. Element-wise ops (relu,
  hardtanh, sigmoid, ...) and a bare requantize become one code table of torch's own PT2E ops on every code;
  linear, conv, add, mul, cat and average pooling become that IR op with the quantize's qparams as its output;
  relu, hardtanh, max pooling and flatten after them follow it, because they commute with quantizing
  (quantize(max(a, b)) = max(quantize(a), quantize(b)); a clamp likewise).

Exactness: quantize/dequantize, element-wise tables, add, mul, cat and max pooling equal torch on every code or code
pair. torch runs linear, conv and average pooling as float32 sums in an unknown order, so there the device can only
agree within one code (uquant.engines.Requant, family "pt2e"); tests/test_pt2e.py measures the agreement per op and
the README publishes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import pt2e_ops
from ..ir import (Add, AvgPool, Cat, Conv, ConversionError, Graph, Linear, MaxPool, Mul, QParams, Reshape, Table,
                 unique_name)

_DTYPES = {torch.int8: "qint8", torch.uint8: "quint8"}
_FULL_RANGE = {torch.int8: (-128, 127), torch.uint8: (0, 255)}
# float element-wise aten ops a PT2E program may run between dequantize and quantize: a code table each
ELEMENTWISE = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "sigmoid", "tanh", "hardsigmoid", "hardswish",
               "hardswish_", "leaky_relu", "leaky_relu_", "elu", "gelu", "silu", "silu_", "mish", "softplus", "abs",
               "neg", "clamp", "clamp_min"}
CLAMPS = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "clamp", "clamp_min"}  # commute with quantizing
PASS = {"clone", "contiguous", "alias", "detach", "dropout", "lift_fresh_copy"}
SUPPORTED = ("linear, conv1d/conv2d, add, mul, cat (channels), max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d, "
             "mean over H, W, flatten/view/reshape, relu/relu6/hardtanh and other element-wise float ops between a "
             "dequantize and a quantize")


def is_pt2e(model) -> bool:
    gm = model.graph_module if isinstance(model, torch.export.ExportedProgram) else model
    if not isinstance(gm, torch.fx.GraphModule):  # (a TorchScript module has a .graph too)
        return False
    return any("quantized_decomposed" in str(n.target) for n in gm.graph.nodes)


@dataclass
class Q:
    """A quantized value: an IR value name (or "input") and its qparams."""

    value: str
    q: QParams


@dataclass
class Weight:
    """A dequantized constant: the codes of a weight and its dequantize node."""

    node: torch.fx.Node


@dataclass
class F:
    """A float value that a later quantize turns back into codes.

    src: the quantized value it was dequantized from (plain), or None when `core` computes it: (node, kind,
    builder(name, out_qparams, relu) -> IR op, input value names, fusable relu). post: ops applied since, each
    (node, kind, payload) with kind "fn" (element-wise), "clamp" (lo, hi floats), "maxpool" or "reshape".
    """

    src: Q | None
    core: tuple | None = None
    post: list = field(default_factory=list)
    done: dict = field(default_factory=dict)  # out QParams -> Q, once quantized


def describe(node: torch.fx.Node) -> str:
    return f"node '{node.name}' ({node.target})"


def _short(node: torch.fx.Node) -> str:
    """aten.linear.default -> linear"""
    parts = str(node.target).split(".")
    return parts[1] if len(parts) >= 3 else parts[-1]


class _Walker:
    def __init__(self, model, name: str):
        if isinstance(model, torch.export.ExportedProgram):
            self.gm = model.graph_module
            consts = {**dict(model.named_parameters()), **dict(model.named_buffers()), **model.constants}
            sig = model.graph_signature
            self.lookup = {k: consts[v] for k, v in {**sig.inputs_to_parameters, **sig.inputs_to_buffers,
                                                      **getattr(sig, "inputs_to_lifted_tensor_constants", {})}.items()}
            self.user_inputs = set(sig.user_inputs)
        else:
            self.gm, self.lookup, self.user_inputs = model, {}, None
        self.graph = Graph(name, QParams(1.0, 0))
        self.env: dict = {}
        self.names: set[str] = {"input"}
        self.input_seen = False

    # ---- constants and qparams ---------------------------------------------------------------------------
    def tensor(self, n) -> torch.Tensor:
        if isinstance(n, torch.fx.Node) and n.op == "placeholder" and n.name in self.lookup:
            return self.lookup[n.name]
        if isinstance(n, torch.fx.Node) and n.op == "get_attr":
            t = self.gm
            for part in n.target.split("."):
                t = getattr(t, part)
            return t
        raise ConversionError(f"PT2E: {getattr(n, 'name', n)} is not a stored tensor")

    def number(self, v):
        return float(self.tensor(v).reshape(-1)[0]) if isinstance(v, torch.fx.Node) else v

    def qparams(self, node) -> QParams:
        scale, zp, qmin, qmax, dtype = (self.number(a) for a in node.args[1:6])
        if dtype not in _DTYPES:
            raise ConversionError(f"PT2E: {describe(node)}: activation dtype {dtype} is not supported (int8 or uint8)")
        if (int(qmin), int(qmax)) != _FULL_RANGE[dtype]:
            raise ConversionError(f"PT2E: {describe(node)}: activations quantized to [{qmin}, {qmax}]; uquant "
                                  f"supports the full {dtype} range {_FULL_RANGE[dtype]}")
        shift = 128 if dtype == torch.int8 else 0  # int8 codes are held as uint8 + 128 (round first, then + zp)
        return QParams(float(np.float32(scale)), int(zp) + shift, "quint8", "pt2e")

    def unique(self, name: str) -> str:
        return unique_name(self.names, name)

    def add(self, op, inputs: list[str]):
        op.name = self.unique(op.name)
        op.inputs = list(inputs)
        self.graph.ops.append(op)
        return op

    # ---- reading float values ----------------------------------------------------------------------------
    def float_arg(self, node, i=0) -> F:
        a = node.args[i]
        v = self.env.get(a) if isinstance(a, torch.fx.Node) else None
        if v == "input":
            raise ConversionError(f"PT2E: {describe(node)} runs on the model's float input before it is quantized")
        if not isinstance(v, F):
            raise ConversionError(f"PT2E: {describe(node)}: argument {i} is not a dequantized tensor computed by "
                                  "the model (is the program converted with convert_pt2e?)")
        return v

    def materialize(self, node, v: F) -> Q:
        """The quantized value a float value stands for, when a float op reads it directly (no quantize between):
        possible when it is a plain dequantize followed by max pooling, reshapes and a ReLU (max(c, zp), exact)."""
        if v.core is not None:
            core = v.core[0]
            hint = (" (X86InductorQuantizer's conv + add fusion does this; XNNPACKQuantizer quantizes each)"
                    if v.core[1] in ("linear", "conv1d", "conv2d") else " (the quantizer left it in float)")
            raise ConversionError(f"PT2E: {describe(node)} reads the float output of node '{core.name}' "
                                  f"({core.target}), which the program never quantizes on its own{hint}; the device "
                                  f"needs the input of {_short(node)} quantized")
        out = v.src
        for pn, kind, payload in v.post:
            if kind in ("maxpool", "reshape"):
                out = self.structural(pn, kind, payload, out)
            elif kind == "clamp" and payload == (0.0, None):
                out = self.clamp(pn, out, 0.0, None)
            else:
                raise ConversionError(f"PT2E: {describe(node)} reads the float result of node '{pn.name}' "
                                      f"({pn.target}) without a quantize between them; not supported")
        return out

    # ---- emitting IR ops ---------------------------------------------------------------------------------
    def structural(self, pn, kind, payload, x: Q) -> Q:
        if kind == "maxpool":
            op = self.add(MaxPool(pn.name, *payload, x.q), [x.value])
        else:
            op = self.add(Reshape(pn.name, payload, x.q), [x.value])
        return Q(op.name, x.q)

    def clamp(self, pn, x: Q, lo: float | None, hi: float | None) -> Q:
        """relu / hardtanh after quantizing: clip the codes at quantize(lo), quantize(hi) -- exact, as both maps are
        monotone."""
        c = pt2e_ops.codes(x.q)
        lo_c = int(pt2e_ops.quantize([lo], x.q)[0]) if lo is not None else x.q.qmin
        hi_c = int(pt2e_ops.quantize([hi], x.q)[0]) if hi is not None else x.q.qmax
        op = self.add(Table(pn.name, f"PT2E {_short(pn)} (clip to codes [{lo_c}, {hi_c}])", np.clip(c, lo_c, hi_c),
                            x.q), [x.value])
        return Q(op.name, x.q)

    def quantize(self, node, v: F, q: QParams) -> Q:
        key = q
        if key in v.done:
            return v.done[key]
        if v.core is None:
            out = self.quantize_stretch(node, v, q)
        else:
            out = self.quantize_core(node, v, q)
        v.done[key] = out
        self.graph.origins.setdefault(out.value, node.name)
        return out

    def quantize_stretch(self, node, v: F, q: QParams) -> Q:
        """dequantize -> max pooling / reshapes / element-wise ops -> quantize: the structural ops on the codes,
        then one code table of torch's own ops (max pooling first: it commutes with the monotone dequantize)."""
        x, fns, first = v.src, [], None
        for pn, kind, payload in v.post:
            if kind in ("maxpool", "reshape"):
                if fns and kind == "maxpool":
                    raise ConversionError(f"PT2E: {describe(pn)}: max pooling after the float op '{first.name}' is "
                                          "not supported; pool before it")
                x = self.structural(pn, kind, payload, x)
            else:
                fns.append(payload if kind == "fn" else _clamp_fn(*payload))
                first = first or pn

        def chain(t):
            for f in fns:
                t = f(t)
            return t

        table = pt2e_ops.table(x.q, chain, q)
        if not fns and q == x.q and np.array_equal(table, pt2e_ops.codes(q)):
            return x
        single = pt2e_ops.table(x.q, chain, q, one_at_a_time=True)
        tail = None if np.array_equal(table, single) else single
        labels = [_short(pn) for pn, kind, _ in v.post if kind not in ("maxpool", "reshape")]
        name = first.name if first is not None else f"requantize_{node.name}"
        op = self.add(Table(name, "PT2E " + " -> ".join(["dequantize", *labels, "quantize"]), table, q,
                            tail_table=tail), [x.value])
        return Q(op.name, q)

    def quantize_core(self, node, v: F, q: QParams) -> Q:
        core, kind, build, inputs, fusable = v.core
        post = list(v.post)
        relu = bool(fusable and post and post[0][1] == "clamp" and post[0][2] == (0.0, None))
        if relu:
            post = post[1:]
        x = Q(self.add(build(core.name, q, relu), inputs).name, q)
        for pn, k, payload in post:
            if k in ("maxpool", "reshape"):
                x = self.structural(pn, k, payload, x)
            elif k == "clamp":
                x = self.clamp(pn, x, *payload)
            else:
                raise ConversionError(f"PT2E: {describe(pn)}: a float {_short(pn)} on the output of node "
                                      f"'{core.name}' ({kind}) before it is quantized: the device cannot run it "
                                      "(after a layer: relu, relu6/hardtanh, max pooling, flatten)")
        return x

    # ---- the ops -----------------------------------------------------------------------------------------
    def call(self, node):
        t = str(node.target)
        short = _short(node)
        if "quantized_decomposed.quantize_per_tensor" in t:
            q = self.qparams(node)
            src = self.env.get(node.args[0])
            if src == "input":
                if self.input_seen:
                    raise ConversionError(f"PT2E: {describe(node)}: the model quantizes its input twice")
                self.input_seen = True
                self.graph.input = q
                self.graph.origins["input"] = node.name
                return Q("input", q)
            if isinstance(src, F):
                return self.quantize(node, src, q)
            raise ConversionError(f"PT2E: {describe(node)}: quantizes something that is not a float tensor of the "
                                  "model")
        if "quantized_decomposed.dequantize_per_channel" in t:
            return Weight(node)
        if "quantized_decomposed.dequantize_per_tensor" in t:
            src = self.env.get(node.args[0])
            if isinstance(src, Q):
                if self.qparams(node) != src.q:
                    raise ConversionError(f"PT2E: {describe(node)} dequantizes with other qparams than its "
                                          "quantize; not supported")
                return F(src)
            return Weight(node)
        if "quantized_decomposed" in t:
            raise ConversionError(f"PT2E: {describe(node)} is not supported (quantize_per_tensor, "
                                  "dequantize_per_tensor and dequantize_per_channel only)")
        if short in ("linear", "conv1d", "conv2d"):
            return self.layer(node, short)
        if short in ("add", "add_", "mul", "mul_"):
            return self.binary(node, short.rstrip("_"))
        if short == "cat":
            return self.cat(node)
        if short in ("avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "mean"):
            return self.avgpool(node, short)
        v = self.float_arg(node) if node.args and isinstance(node.args[0], torch.fx.Node) else None
        if short in PASS:
            return v
        if short in ("max_pool1d", "max_pool2d"):
            return self.extend(v, node, "maxpool", _maxpool_args(node, short))
        if short in ("flatten", "view", "reshape", "_unsafe_view"):
            return self.extend(v, node, "reshape", _reshape_args(node, short))
        if short in CLAMPS:
            return self.extend(v, node, "clamp", _clamp_args(node, short))
        if short in ELEMENTWISE:
            if v.core is not None:
                raise ConversionError(f"PT2E: {describe(node)}: a float {short} on the output of node "
                                      f"'{v.core[0].name}' before it is quantized: the device cannot run it "
                                      "(after a layer: relu, relu6/hardtanh, max pooling, flatten)")
            args, kwargs = node.args[1:], dict(node.kwargs)
            if any(isinstance(a, torch.fx.Node) for a in (*args, *kwargs.values())):
                raise ConversionError(f"PT2E: {describe(node)}: arguments computed by the model are not supported")
            target = node.target
            return self.extend(v, node, "fn", lambda x: target(x, *args, **kwargs))
        raise ConversionError(f"PT2E: op {t} ({node.name}) is not supported (supported: {SUPPORTED})")

    def extend(self, v: F, node, kind, payload) -> F:
        return F(v.src, v.core, v.post + [(node, kind, payload)])

    def layer(self, node, short) -> F:
        x = self.materialize(node, self.float_arg(node))
        wdq = node.args[1]
        w = self.env.get(wdq)
        if not isinstance(w, Weight):
            raise ConversionError(f"PT2E: node '{node.name}' ({node.target}) has a float weight: the program is not "
                                  "quantized; run prepare_pt2e, calibrate and convert_pt2e before uquant")
        bias = node.args[2] if len(node.args) > 2 else None
        b = None if bias is None else self.tensor(bias).detach().float()
        wt = self.weight(w.node)
        if short == "linear":
            if wt.dim() != 2:
                raise ConversionError(f"PT2E: {describe(node)}: weight of shape {tuple(wt.shape)}")
            from .modules import linear_from_weight

            def build(nm, q, relu):
                return linear_from_weight(nm, wt, b, q, relu)
            if x.value == "input" and not self.graph.input_shape:
                self.graph.in_features = int(wt.shape[1])
        else:
            dim = 1 if short == "conv1d" else 2
            rest = list(node.args[3:]) + [None] * 4
            stride, padding, dilation, groups = (rest[0] or [1] * dim, rest[1] or [0] * dim, rest[2] or [1] * dim,
                                                 rest[3] or 1)
            if isinstance(padding, str):
                raise ConversionError(f"PT2E: {describe(node)}: padding={padding!r} is not supported; give numbers")
            from .modules import conv_from_weight

            def build(nm, q, relu):
                return conv_from_weight(nm, dim, wt, b, stride, padding, dilation, groups, q, relu)
        return F(None, (node, short, build, [x.value], True))

    def weight(self, dq) -> torch.Tensor:
        """The int8 weight codes and their dequantize node -> a torch quantized tensor (what the builders read)."""
        codes = self.tensor(dq.args[0]).detach()
        if codes.dtype != torch.int8:
            raise ConversionError(f"PT2E: {describe(dq)}: weights must be int8, found {codes.dtype}")
        if "dequantize_per_channel" in str(dq.target):
            if int(dq.args[3]) != 0:
                raise ConversionError(f"PT2E: {describe(dq)}: per-channel weights must be quantized along the "
                                      "output axis")
            return torch._make_per_channel_quantized_tensor(codes, self.tensor(dq.args[1]).double(),
                                                             self.tensor(dq.args[2]).long(), 0)
        return torch._make_per_tensor_quantized_tensor(codes, self.number(dq.args[1]), int(self.number(dq.args[2])))

    def binary(self, node, short) -> F:
        if len(node.args) < 2 or not isinstance(node.args[1], torch.fx.Node) or node.kwargs.get("alpha", 1) != 1:
            raise ConversionError(f"PT2E: {describe(node)}: {short} with a number or alpha is not supported "
                                  "(two quantized tensors only)")
        a = self.materialize(node, self.float_arg(node, 0))
        b = self.materialize(node, self.float_arg(node, 1))
        cls = Add if short == "add" else Mul
        return F(None, (node, short, lambda nm, q, relu: cls(nm, q, relu), [a.value, b.value], True))

    def cat(self, node) -> F:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        rank = len(_meta_shape(node))
        if rank == 0 or dim % rank != 1:
            raise ConversionError(f"PT2E: {describe(node)}: cat along dim {dim} is not supported (channels, dim=1, "
                                  "only)")
        vals = []
        for t in tensors:
            v = self.env.get(t) if isinstance(t, torch.fx.Node) else None
            if not isinstance(v, F):
                raise ConversionError(f"PT2E: {describe(node)}: cat of tensors that are not all dequantized")
            vals.append(self.materialize(node, v).value)
        return F(None, (node, "cat", lambda nm, q, relu: Cat(nm, q), vals, False))

    def avgpool(self, node, short) -> F:
        x = self.materialize(node, self.float_arg(node))
        a = list(node.args[1:])
        if short == "mean":
            rank = len(_meta_shape(node.args[0]))
            dims = sorted(d % rank for d in (a[0] if a else [])) if rank else []
            keep = bool(a[1]) if len(a) > 1 else bool(node.kwargs.get("keepdim", False))
            if dims != list(range(2, rank)) or rank not in (3, 4):
                raise ConversionError(f"PT2E: {describe(node)}: mean over dims {dims}: only over all spatial dims "
                                      "(global average pooling) is supported")
            dim = rank - 2
            pool = dict(output_size=(1, 1))
            after = None if keep else (-1,)
        elif short.startswith("adaptive"):
            dim = 1 if short.endswith("1d") else 2
            size = tuple(int(s) for s in a[0])
            pool = dict(output_size=(1, size[0]) if dim == 1 else size)
            after = None
        else:
            dim = 1 if short.endswith("1d") else 2
            a += [None] * 6
            k = tuple(a[0])
            stride = tuple(a[1]) if a[1] else k
            pad = tuple(a[2]) if a[2] else (0,) * dim
            ceil, include = bool(a[3]), True if a[4] is None else bool(a[4])
            if dim == 2 and a[5] is not None:
                raise ConversionError(f"PT2E: {describe(node)}: divisor_override is not supported")
            pair = (lambda t: (1, int(t[0]))) if dim == 1 else (lambda t: (int(t[0]), int(t[-1])))
            pool = dict(kernel=pair(k), stride=pair(stride), padding=(0, int(pad[0])) if dim == 1 else pair(pad),
                        ceil_mode=ceil, count_include_pad=include)
            after = None

        def build(nm, q, relu):
            return AvgPool(nm, dim, q, **pool)
        v = F(None, (node, short, build, [x.value], False))
        return self.extend(v, node, "reshape", after) if after else v

    # ---- the whole program -------------------------------------------------------------------------------
    def walk(self) -> Graph:
        inputs = [n for n in self.gm.graph.nodes if n.op == "placeholder"
                  and (self.user_inputs is None or n.name in self.user_inputs)]
        if len(inputs) != 1:
            raise ConversionError(f"PT2E: the program must take exactly one input tensor, it takes {len(inputs)}")
        if not any("quantized_decomposed.quantize_per_tensor" in str(n.target) for n in self.gm.graph.nodes):
            layer = next((n for n in self.gm.graph.nodes if _short(n) in ("linear", "conv1d", "conv2d")), None)
            where = f"node '{layer.name}' (aten.{_short(layer)}) has a float weight: " if layer is not None else ""
            raise ConversionError(f"PT2E: {where}the program is not quantized; run prepare_pt2e, calibrate and "
                                  "convert_pt2e before uquant")
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if node is inputs[0]:
                    self.env[node] = "input"
                    self.graph.input_shape = tuple(int(d) for d in _meta_shape(node)[1:])
            elif node.op in ("get_attr", "call_module"):  # constants; torch.export's _guards_fn
                continue
            elif node.op == "output":
                self.output(node)
            elif "_assert" in str(node.target) or "sym_size" in str(node.target):
                continue
            else:
                self.env[node] = self.call(node)
        if not self.input_seen:
            raise ConversionError("PT2E: the program never quantizes its input (is it converted with convert_pt2e?)")
        if not any(isinstance(op, (Linear, Conv)) for op in self.graph.ops):
            raise ConversionError("PT2E: no quantized linear or conv layer found")
        return self.graph

    def output(self, node) -> None:
        out = node.args[0]
        if isinstance(out, (tuple, list)):
            if len(out) != 1:
                raise ConversionError(f"PT2E: the program returns {len(out)} values; uquant supports one")
            out = out[0]
        v = self.env.get(out)
        if isinstance(v, F) and v.core is not None:
            core = v.core[0]
            raise ConversionError(f"PT2E: the program's output (node '{core.name}', {core.target}) is not quantized "
                                  "(X86InductorQuantizer, for one, leaves the last linear/conv in float): the device "
                                  "needs every layer's output quantized; quantize with XNNPACKQuantizer, or end the "
                                  "model with a quantized op")
        if isinstance(v, F):
            floats = [f"{describe(pn)}" for pn, kind, _ in v.post if kind != "reshape"]
            if floats:
                raise ConversionError(f"PT2E: {', '.join(floats)}: a float op after the last quantize is not "
                                      "supported: the device returns quantized codes (quantize after it, e.g. with "
                                      "a quantizer that annotates it, or apply it to the dequantized outputs)")
            v = v.src
        if not isinstance(v, Q) or v.value == "input":
            raise ConversionError("PT2E: the program must return the output of a quantized layer")
        if not self.graph.ops or self.graph.ops[-1].name != v.value:
            raise ConversionError("PT2E: the program's output must be the last op it computes")


def _meta_shape(node) -> tuple[int, ...]:
    """A value's shape from torch.export's metadata, looking through the (meta-less) quantize/dequantize nodes
    convert_pt2e inserted."""
    while isinstance(node, torch.fx.Node):
        v = node.meta.get("val")
        if v is not None and hasattr(v, "shape"):
            return tuple(int(d) for d in v.shape)
        if "quantized_decomposed" not in str(node.target) or not node.args:
            break
        node = node.args[0]
    return ()


def _maxpool_args(node, short):
    dim = 1 if short == "max_pool1d" else 2
    a = list(node.args[1:]) + [None] * 5
    k = tuple(a[0])
    stride = tuple(a[1]) if a[1] else k
    pad = tuple(a[2]) if a[2] else (0,) * dim
    dil = tuple(a[3]) if a[3] else (1,) * dim
    if dim == 1:
        return 1, (1, k[0]), (1, stride[0]), (0, pad[0]), (1, dil[0]), bool(a[4])
    two = lambda t: (int(t[0]), int(t[-1]))  # noqa: E731  (torch allows one number for both)
    return 2, two(k), two(stride), two(pad), two(dil), bool(a[4])


def _reshape_args(node, short):
    if short == "flatten":
        start = node.args[1] if len(node.args) > 1 else 0
        end = node.args[2] if len(node.args) > 2 else -1
        if (start, end) != (1, -1):
            raise ConversionError(f"PT2E: {describe(node)}: only flatten(start_dim=1) is supported")
        return (-1,)
    sizes = list(node.args[1])
    if len(sizes) < 2 or not all(isinstance(d, int) for d in sizes[1:]):
        raise ConversionError(f"PT2E: {describe(node)}: only reshapes to (batch, constant sizes...) are supported")
    return tuple(sizes[1:])


def _clamp_args(node, short):
    a = list(node.args[1:])
    if short in ("relu", "relu_"):
        return 0.0, None
    if short == "relu6":
        return 0.0, 6.0
    if short in ("hardtanh", "hardtanh_"):
        return float(a[0]) if a else -1.0, float(a[1]) if len(a) > 1 else 1.0
    if short == "clamp_min":
        return float(a[0]), None
    lo = a[0] if a else node.kwargs.get("min")
    hi = a[1] if len(a) > 1 else node.kwargs.get("max")
    return None if lo is None else float(lo), None if hi is None else float(hi)


def _clamp_fn(lo, hi):
    return lambda t: torch.clamp(t, min=lo, max=hi)


def from_pt2e(model, name: str = "model") -> Graph:
    return _Walker(model, name).walk()
