"""`uquant explain`: which scale and zero point, when -- every layer of the user's own model, in its own numbers.

For each layer: which tensor each (scale, zero point) belongs to, torch's requantization formula on the chosen
engine filled in with the model's values, and the integers the device computes instead. With an input, a trace
of one sample through both torch (its own quantized kernels, layer by layer) and the device runtime, and the
classic wrong attempts worked out for that input. Every number is computed here, from the model and from torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from . import engines, platforms
from .api import torch_engine
from .explain_doc import Doc, render, step_plot
from .ir import Add, AvgPool, Cat, Conv, ConversionError, Linear, MaxPool, Mean, Mul, Permute, Reshape, Slice, Table
from .plan import DenseStep, Plan

f32 = np.float32
MAX_ROWS = 16  # channels listed per layer (and plotted: MAX_PLOTS) before "... more"
MAX_PLOTS = 8
MAX_CODES = 12  # codes shown per vector in a table cell


def g(v, digits: int = 6) -> str:
    return f"{float(v):.{digits}g}"


def codes_str(v, limit: int = MAX_CODES) -> str:
    v = [int(c) for c in np.asarray(v).reshape(-1)]
    more = f", ... ({len(v)} in all)" if len(v) > limit else ""
    return "[" + ", ".join(map(str, v[:limit])) + more + "]"


# ---------------------------------------------------------------------------------------------------------
# torch's side: the whole model, and each layer rebuilt from the model's numbers as torch's own modules
# ---------------------------------------------------------------------------------------------------------
def torch_model_for(model, relu, allow_pickle: bool):
    """The torch module behind `model` (an nn.Module, a state_dict, or a file), or None."""
    from .oracle import load_torch_model, state_dict_chain

    if isinstance(model, torch.nn.Module):
        return model
    if isinstance(model, Mapping):
        return state_dict_chain(model, relu)
    if isinstance(model, (str, Path)):
        return load_torch_model(Path(model), relu=relu, allow_pickle=allow_pickle)
    return None


def input_keys(model, allow_pickle: bool) -> list[str] | None:
    """The state_dict keys holding the input quantizer, where the model is (or is a file of) a state_dict."""
    from .loaders import _is_torchscript
    from .loaders.state_dict import _input_quantizer, _layer_prefixes

    sd = model
    if isinstance(model, (str, Path)) and not _is_torchscript(Path(model)):
        try:
            sd = torch.load(str(model), map_location="cpu", weights_only=not allow_pickle)
        except Exception:  # the conversion has already read it; names are only a courtesy
            return None
    if not isinstance(sd, Mapping):
        return None
    try:
        return _input_quantizer(sd, _layer_prefixes(sd)[0])[1]
    except Exception:
        return None


def _qtensor(codes: np.ndarray, q) -> torch.Tensor:
    dt = torch.quint8 if q.dtype == "quint8" else torch.qint8
    raw = torch.from_numpy(np.asarray(codes, np.int64)).to(torch.uint8 if dt == torch.quint8 else torch.int8)
    return torch._make_per_tensor_quantized_tensor(raw, q.scale, q.zero_point)


def _weight(op) -> torch.Tensor:
    w = torch.from_numpy(op.weight.astype(np.int8))
    if isinstance(op, Conv) and op.dim == 1:
        w = w.reshape(w.shape[0], w.shape[1], -1)
    if op.per_channel:
        return torch._make_per_channel_quantized_tensor(w, torch.from_numpy(op.w_scale.astype(np.float64)),
                                                        torch.from_numpy(op.w_zero_point.astype(np.int64)), 0)
    return torch._make_per_tensor_quantized_tensor(w, float(op.w_scale[0]), int(op.w_zero_point[0]))


def _torch_layer(op):
    """torch's own quantized module for an IR Linear / Conv, holding the same numbers."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    if isinstance(op, Linear):
        m = (nniq.LinearReLU if op.relu else nnq.Linear)(op.in_features, op.out_features)
    else:
        kh, kw = op.weight.shape[2:]
        in_ch = op.weight.shape[1] * op.groups
        if op.dim == 1:
            m = (nniq.ConvReLU1d if op.relu else nnq.Conv1d)(in_ch, op.out_channels, int(kw), stride=op.stride[1],
                                                             padding=op.padding[1], dilation=op.dilation[1],
                                                             groups=op.groups)
        else:
            m = (nniq.ConvReLU2d if op.relu else nnq.Conv2d)(in_ch, op.out_channels, (int(kh), int(kw)),
                                                             stride=op.stride, padding=op.padding,
                                                             dilation=op.dilation, groups=op.groups)
    m.set_weight_bias(_weight(op), None if op.bias is None else torch.from_numpy(op.bias.astype(np.float32)))
    m.scale, m.zero_point = float(op.out.scale), int(op.out.zero_point)
    return m


def torch_values(graph, x: np.ndarray, engine: str) -> dict[str, np.ndarray]:
    """Every value's codes from torch's own kernels, op by op, each fed torch's previous result.

    Values torch cannot be asked for on their own (a code table torch applies by position) are left out, and
    so is everything computed from them.
    """
    out: dict[str, np.ndarray] = {}
    with torch_engine(engine), torch.no_grad():
        q = graph.input
        dt = torch.quint8 if q.dtype == "quint8" else torch.qint8
        t = {"input": torch.quantize_per_tensor(torch.from_numpy(np.asarray(x, np.float32)).reshape(
            (1,) + tuple(graph.input_shape)), q.scale, q.zero_point, dt)}
        for op in graph.ops:
            if not all(v in t for v in op.inputs):
                continue
            a = t[op.inputs[0]]
            y = None
            if isinstance(op, (Linear, Conv)):
                y = _torch_layer(op)(a)
            elif isinstance(op, MaxPool):
                f = torch.nn.functional
                if op.dim == 1:
                    y = f.max_pool1d(a, op.kernel[1], op.stride[1], op.padding[1], op.dilation[1], op.ceil_mode)
                else:
                    y = f.max_pool2d(a, op.kernel, op.stride, op.padding, op.dilation, op.ceil_mode)
            elif isinstance(op, AvgPool):
                f = torch.nn.functional
                if op.adaptive:
                    y = (f.adaptive_avg_pool1d(a, op.output_size[1]) if op.dim == 1
                         else f.adaptive_avg_pool2d(a, op.output_size))
                elif op.dim == 1:
                    y = f.avg_pool1d(a, op.kernel[1], op.stride[1], op.padding[1], op.ceil_mode, op.count_include_pad)
                else:
                    y = f.avg_pool2d(a, op.kernel, op.stride, op.padding, op.ceil_mode, op.count_include_pad)
            elif isinstance(op, Reshape):
                codes = a.int_repr().reshape(-1).numpy()
                shape = a.shape[1:] if op.shape is None else op.out_shape(
                    tuple(a.shape[1:]), {k: tuple(v.shape[1:]) for k, v in t.items()})
                y = _qtensor(codes, op.out).reshape((1,) + tuple(shape))
            elif isinstance(op, (Add, Mul)):
                name = ("add" if isinstance(op, Add) else "mul") + ("_relu" if op.relu else "")
                y = getattr(torch.ops.quantized, name)(a, t[op.inputs[1]], op.out.scale, op.out.zero_point)
            elif isinstance(op, Cat):
                y = torch.ops.quantized.cat([t[v] for v in op.inputs], op.dim, op.out.scale, op.out.zero_point)
            elif isinstance(op, Mean):
                y = a.mean(list(op.dims), keepdim=op.keepdim)
            elif isinstance(op, Permute):
                y = a.permute(0, *(d + 1 for d in op.perm(a.dim() - 1))).contiguous()
            elif isinstance(op, Slice):
                axis, start, stop = op.bounds(tuple(a.shape[1:]))
                y = a.narrow(axis + 1, start, stop - start).contiguous()
            elif isinstance(op, Table) and op.tail_table is None:  # the table is torch's own map of every code
                codes = op.table[a.int_repr().numpy().astype(np.int64) - (0 if a.dtype == torch.quint8 else -128)]
                y = _qtensor(codes, op.out)
            if y is not None:
                t[op.name] = y
        for name, v in t.items():
            out[name] = v.int_repr().reshape(-1).numpy().astype(np.int64)
    return out


def torch_final(model, x: np.ndarray, plan: Plan) -> np.ndarray | None:
    """The whole torch model's output codes for one float input (a float output is quantized back: exact)."""
    if model is None:
        return None
    qo = plan.output
    with torch_engine(plan.engine), torch.no_grad():
        y = model(torch.from_numpy(np.asarray(x, np.float32)).reshape((1,) + tuple(plan.input_shape)))
    if isinstance(y, (tuple, list)):
        y = y[0]
    if y.is_quantized:
        return y.int_repr().reshape(-1).numpy().astype(np.int64)
    return engines.quantize(y.float().numpy().reshape(-1), qo.scale, qo.zero_point, qo.dtype)


# ---------------------------------------------------------------------------------------------------------
# One compute layer: torch's numbers, the device's words, and the pieces of torch's float32 computation
# ---------------------------------------------------------------------------------------------------------
class Layer:
    """A DenseStep (Linear or Conv) seen from both sides."""

    def __init__(self, step: DenseStep, engine: str):
        self.step = s = step
        self.op = op = s.source
        self.marker: list[int] | None = None  # this input's acc' per channel, once traced
        x = s.x
        lo = max(op.out.qmin, op.out.zero_point) if op.relu else op.out.qmin
        self.rq = engines.Requant(engine, x.scale, op.w_scale, op.bias, op.out.scale, op.out.zero_point, lo,
                                  op.out.qmax, op.per_channel, s.family)
        w = op.weight.astype(np.int64)
        self.v = (w - op.w_zero_point.reshape((-1,) + (1,) * (w.ndim - 1))).reshape(s.N, -1)  # w - z_w
        self.offset = x.zero_point * self.v.sum(1)  # device acc' = acc + offset
        r = self.rq
        # torch's clamp per channel (ReLU: z_y), as the extreme codes; qnnpack's int32 sum must not wrap on the way
        big = np.full(s.N, (1 << 31) - 1, np.int64)
        centre = self.offset - r.bq if r.family == "qnnpack" else self.offset
        self.clip = (s.requantize((centre - big)[None])[0], s.requantize((centre + big)[None])[0])
        ats = (np.float64(x.scale) * op.w_scale)  # s_x * s_w, the accumulator's unit
        b = np.zeros(s.N) if op.bias is None else op.bias.astype(np.float64)
        self.bias_ideal = b / ats
        if r.family == "fbgemm":
            self.bias_acc = (np.zeros(s.N) if r.mode == "nobias" else r.b_term.astype(np.float64) if r.mode == "div"
                             else r.b.astype(np.float64) * r.rcp.astype(np.float64))
            self.M = r.M.astype(np.float64)
        elif r.family == "qnnpack":
            self.bias_acc = r.bq.astype(np.float64)
            self.M = r.M.astype(np.float64)
        else:  # onednn: t = acc * sc + b, then * yinv
            self.bias_acc = r.b.astype(np.float64) / r.sc.astype(np.float64)
            self.M = np.broadcast_to(r.sc.astype(np.float64) * np.float64(r.yinv), (s.N,))

    def torch_parts(self, acc: np.ndarray):
        """torch's float32 intermediates for exact accumulators acc (..., N): t (acc with the bias) and v (the
        value rounded to the code; for oneDNN it already includes the zero point)."""
        r = self.rq
        acc = np.asarray(acc, np.int64)
        if r.family == "onednn":
            t = f32(f32(acc.astype(f32) * r.sc) + r.b)
            return t, f32(f32(t * r.yinv) + f32(r.y_zp))
        if r.family == "fbgemm":
            accf = acc.astype(f32)
            t = (accf if r.mode == "nobias" else f32(accf + r.b_term) if r.mode == "div"
                 else engines.fma32(np.broadcast_to(r.b, acc.shape), np.broadcast_to(r.rcp, acc.shape), accf))
        else:
            tot = ((acc + r.bq + 2 ** 31) % 2 ** 32) - 2 ** 31
            t = tot.astype(f32)
        return t, f32(t * r.M)

    def formula(self) -> str:
        """torch's formula on this engine, with this layer's numbers."""
        s, op, r = self.step, self.op, self.rq
        x = s.x
        n = s.N
        pc = op.per_channel
        one = (lambda a: g(np.asarray(a).reshape(-1)[0], 8)) if not pc else (
            lambda a: f"per channel, {g(np.min(a), 6)} .. {g(np.max(a), 6)}")
        zy = op.out.zero_point
        clip_lo = f"z_y = {zy} (fused ReLU)" if op.relu else f"{op.out.qmin}"
        unit = "position and output channel" if s.kind == "conv" else "output channel n"
        lines = [f"acc_n = sum_k (x_k - z_x) * (w_nk - z_w)  = sum_k (x_k - {x.zero_point}) * (w_nk - "
                 f"{'z_w,n' if pc else int(op.w_zero_point[0])})    exact integer, one per {unit}"]
        if r.family == "fbgemm":
            ats = f32(f32(x.scale) * op.w_scale.astype(f32))
            lines += [f"ats   = f32(s_x * s_w)        = {one(ats)}",
                      f"M     = f32(ats / s_y)        = {one(r.M)}"]
            if r.mode == "fma":
                lines += [f"r     = f32(1 / ats)          = {g(r.rcp[0], 8)}",
                          "t_n   = fma(b_n, r, f32(acc_n))      the bias in accumulator units is b * r (one fused "
                          "multiply-add)"]
            elif r.mode == "div":
                lines += ["t_n   = f32(f32(acc_n) + f32(b_n / ats_n))      per-channel weights: a true division, "
                          "then the add"]
            else:
                lines += ["t_n   = f32(acc_n)                no bias"]
            lines += [f"y_n   = clip(rint(f32(t_n * M)) + z_y, {clip_lo}, {op.out.qmax})      z_y = {zy}"]
        elif r.family == "qnnpack":
            lines += ["bq_n  = sat_int32(rint(f32(b_n * f32(1 / f32(s_w * s_x)))))      the bias rounded to an "
                      "int32 in accumulator units",
                      f"M     = f32(f32(s_w * s_x) * f32(1 / s_y))   = {one(r.M)}",
                      "t_n   = wrap_int32(acc_n + bq_n)",
                      f"y_n   = clip(rint(f32(f32(t_n) * M)) + z_y, {clip_lo}, {op.out.qmax})      z_y = {zy}"]
        else:
            lines += ["x' = f32(1/f32(1/s_x)), w' = f32(1/f32(1/s_w)), yi = f32(1/f32(1/f32(1/s_y)))   "
                      "(torch hands oneDNN reciprocals)",
                      f"t_n   = f32(f32(f32(acc_n) * f32(x' * w')) + b_n)      x'*w' = {one(r.sc)}",
                      f"y_n   = clip(rint(f32(f32(t_n * yi) + z_y)), {clip_lo}, {op.out.qmax})      yi = "
                      f"{g(r.yinv, 8)}, z_y = {zy}   (oneDNN: the best model known, not proven bit-exact)"]
        if s.sat_pairs or (s.kind == "conv" and s.geometry[-1]):
            pairs = (f"{len(s.sat_pairs) // 2} pair(s) of inputs can leave int16 here, so the device corrects just "
                     "those" if s.sat_pairs else "the device saturates every pair of each window too")
            lines.insert(1, "acc_n on this platform: sum over pairs k, k+1 of sat16(x_k * w_nk + x_k+1 * w_nk+1) "
                         "(raw codes and raw int8 weights; the zero points' terms are exact), as fbgemm's vpmaddubsw "
                         f"adds them{' without VNNI' if s.sat_pairs or s.geometry[-1] == 2 else ''}: {pairs}")
        lines.append(f"in real numbers: y = z_y + (s_x * s_w / s_y) * (acc + b / (s_x * s_w)), rounded and clipped;"
                     f" {n} output channel(s)")
        return "\n".join(lines)

    def device_rows(self) -> list[list]:
        """Per channel: the device's words next to torch's numbers."""
        s = self.step
        rows = []
        for n, ch in enumerate(s.channels[:MAX_ROWS]):
            c = 128 + int(self.op.w_zero_point[n])
            if ch.W == 0:
                line, implied = f"constant {ch.D}", "-"
            else:
                line = f"{ch.A}/2^{ch.S} = {g(ch.A / 2.0 ** ch.S, 8)}"
                zy = self.op.out.zero_point
                # y = floor(((acc' - c_lo) * A + D) / 2^S) ~ M * (acc' - c_lo) + D / 2^S - 1/2, and acc' = acc +
                # offset: as torch's M * (acc + b) + z_y, b = offset - c_lo + (D / 2^S - 1/2 - z_y) / M
                implied = g(self.offset[n] - ch.c_lo + (ch.D / 2.0 ** ch.S - 0.5 - zy) * 2.0 ** ch.S / ch.A, 8)
            rows.append([n, g(self.op.bias[n] if self.op.bias is not None else 0, 6), g(self.bias_acc[n], 8),
                         implied, g(self.M[n], 8), c, ch.c_lo, ch.W, ch.A, ch.D, ch.S, line, len(ch.exceptions),
                         f"[{int(self.clip[0][n])}, {int(self.clip[1][n])}]"])
        return rows

    def plot(self, n: int, marker_acc: int | None, zoom: bool = False) -> str:
        """SVG of channel n: torch's code for every accumulator (device coordinates acc'). The full view spans the
        reachable accumulators and the stretch where torch's output rises; zoom shows about ten steps around
        this input's accumulator (or the middle of the rising window)."""
        s = self.step
        lo_r, hi_r = int(s.acc_lo[n]), int(s.acc_hi[n])
        M, B, zy, off = self.M[n], self.bias_acc[n], self.op.out.zero_point, self.offset[n]
        bot, top = int(self.clip[0][n]), int(self.clip[1][n])
        ch = s.channels[n]
        if zoom:
            mid = marker_acc if marker_acc is not None else ch.c_lo + ch.W // 2
            half = max(int(np.ceil(5 / M)), 5)
            x0, x1 = mid - half, mid + half
        else:
            a_bot = (bot - 0.5 - zy) / M - B + off  # where the unrounded line crosses the clip's ends
            a_top = (top + 0.5 - zy) / M - B + off
            w = max(hi_r - lo_r, 16)
            x0 = int(np.floor(max(min(lo_r, a_bot), lo_r - 3 * w)))
            x1 = int(np.ceil(min(max(hi_r, a_top), hi_r + 3 * w)))
        N = s.N

        def fn(a):  # torch's code for channel n alone
            full = np.zeros(np.shape(a)[:-1] + (N,), np.int64)
            full[..., n] = np.asarray(a)[..., 0]
            return s.requantize(full)[..., n:n + 1]

        from .requant import thresholds

        y0, y1 = int(fn(np.array([[x0]]))[0, 0]), int(fn(np.array([[x1]]))[0, 0])
        steps = [(x0, y0)]
        if y1 > y0:
            T = thresholds(fn, np.array([x0]), np.array([x1]), y0, y1)[0]
            steps += [(int(t), y0 + 1 + j) for j, t in enumerate(T)]
        window = (ch.c_lo, ch.c_lo + ch.W) if ch.W else None
        ideal = (M, M * (B - off) + zy)
        marker = None if marker_acc is None else (marker_acc, int(fn(np.array([[marker_acc]]))[0, 0]))
        if zoom:
            return step_plot(f"{s.name} channel {n}, zoomed", x0, x1, y0 - 1, y1 + 1, steps, (lo_r, hi_r), window,
                             ideal, marker)
        return step_plot(f"{s.name} channel {n}", x0, x1, min(bot, y0), max(top, y1), steps, (lo_r, hi_r),
                         window, ideal, marker)


# ---------------------------------------------------------------------------------------------------------
# The classic wrong attempts, worked out for one input (chains of Linear layers)
# ---------------------------------------------------------------------------------------------------------
NAIVE = "a naive integer version: float inputs times the weight codes, bias / s_w, no requantization"
MISTAKES = [
    ("right", "right maths in float64", "acc = sum (x - z_x)(w - z_w); y = rint(s_x*s_w/s_y * (acc + b/(s_x*s_w))) "
     "+ z_y, clipped: the right formula, but in float64 rather than torch's float32"),
    ("bias_sw", "bias divided by the weight scale only", "b / s_w instead of b / (s_x*s_w): the bias lands in "
     "the wrong units (off by the factor 1/s_x)"),
    ("float_in", "float inputs not quantized first", "the float inputs multiply the integer weights directly, "
     "instead of their codes rint(x / s_x) + z_x"),
    ("no_requant", "missing requantization by s_x*s_w/s_y", "acc plus bias (in accumulator units) taken as the "
     "output code, never multiplied by M = s_x*s_w/s_y"),
    ("no_zp", "zero points ignored", "codes multiplied as they are (no - z_x, no - z_w) and the output's + z_y "
     "left out"),
    ("question", NAIVE, "Z = saturate(round(x @ W.T + b / s_w)) with W = weights / s_w, the integer weight "
     "codes: the float inputs times the weight codes plus the bias divided by s_w only, never requantized and no "
     "zero points, three of the mistakes above at once (each later layer fed the previous Z as it is); the README's "
     "seed question tries this"),
]


def attempt(kind: str, layers: list[Layer], x: np.ndarray, codes: np.ndarray) -> list[np.ndarray]:
    """Each layer's output codes under one wrong (or float64) recipe, each layer fed the previous one's."""
    outs = []
    h = np.asarray(codes, np.float64)
    for i, L in enumerate(layers):
        op, sx, zx = L.op, L.step.x.scale, L.step.x.zero_point
        sw, zw = op.w_scale.astype(np.float64), op.w_zero_point.astype(np.float64)
        sy, zy = op.out.scale, op.out.zero_point
        b = np.zeros(op.out_features) if op.bias is None else op.bias.astype(np.float64)
        w = op.weight.astype(np.float64)
        lo = max(op.out.qmin, zy) if op.relu else op.out.qmin
        xin, wv, bias, M, z_out = h - zx, w - zw[:, None], b / (sx * sw), sx * sw / sy, zy
        if kind == "bias_sw":
            bias = b / sw
        if kind in ("float_in", "question") and i == 0:
            xin = np.asarray(x, np.float64)
        if kind == "no_requant":
            M = 1.0
        if kind == "no_zp":
            xin, wv, z_out, lo = h, w, 0, op.out.qmin
        if kind == "question":
            xin = xin if i == 0 else h  # later layers: the previous Z as it is
            bias, M, z_out, lo = b / sw, 1.0, 0, op.out.qmin
        y = np.clip(np.rint(M * (wv @ xin + bias)) + z_out, lo, op.out.qmax).astype(np.int64)
        outs.append(y)
        h = y.astype(np.float64)
    return outs


def is_linear_chain(plan: Plan) -> bool:
    return all(isinstance(s, DenseStep) and s.kind == "dense" and not s.tables for s in plan.steps) and all(
        s.srcs == [prev.dst] for prev, s in zip(plan.steps, plan.steps[1:]))


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------
def explain(model, x=None, *, engine: str | None = None, platform="here", relu=None, allow_pickle: bool = False,
            input_shape=None, layer: str | None = None, got=None, converted=None, torch_model=None,
            pictures: bool = False) -> tuple[Doc, bool]:
    """Build the report for `model` (anything `uquant.convert` takes). Returns (doc, every code equal to torch's).

    x: one float input (its trace and the mistakes section); layer: only this step's sections; got: codes the
    user computed by hand, to be recognised among the classic mistakes; pictures: draw each layer's
    requantization as SVG (for the HTML page). platform: as for convert; torch's columns always come from this
    machine's torch, so with another platform they may differ where the platforms do (and that is no failure).
    """
    from .api import convert, quantize_input

    if converted is None:
        converted = convert(model, engine=engine, platform=platform, relu=relu, allow_pickle=allow_pickle,
                            input_shape=input_shape)
    plan, graph = converted.plan, converted.graph
    if plan.input.formula == "pt2e":
        raise ConversionError("uquant explain walks through torch's quantized kernels (FX, eager, TorchScript, "
                              "state_dict models); a PT2E program computes in float32 between quantize and "
                              "dequantize: see the README's 'PT2E (torchao) programs' for its arithmetic, and "
                              "`uquant info` for its layers")
    names = [s.name for s in plan.steps]
    if layer is not None and layer not in names:
        raise ValueError(f"no layer {layer!r} in this model; its layers: {', '.join(names)}")
    if torch_model is None and x is not None:
        with torch_engine(plan.engine):
            torch_model = torch_model_for(model, relu, allow_pickle)
    keys = input_keys(model, allow_pickle)
    engine = plan.engine
    doc = Doc(f"uquant explain: {plan.name} (engine {engine}, platform {plan.platform.name})")
    layers = {s.name: Layer(s, engine) for s in plan.compute_steps}
    ops = {op.name: op for op in graph.ops}
    shown = [s for s in plan.steps if layer is None or s.name == layer]

    here = platforms.here()
    foreign = plan.platform != here and bool(plan.platform_dependent)
    if foreign:
        doc.p(f"Converted for platform {plan.platform.name}; this machine's torch runs {here.name}, and this model's "
              f"bytes differ between them ({'; '.join(f'{n}: {w}' for n, w in plan.platform_dependent)}). The "
              "torch columns below come from this machine, so they can differ from the device's there.")
    _overview(doc, plan, ops, keys)
    readers = {}
    for s in plan.steps:
        for v in s.srcs:
            readers.setdefault(v, s.name)
    for s in shown:
        _layer_section(doc, s, layers.get(s.name), plan, ops, keys, readers)

    all_equal = True
    if x is not None:
        x = np.asarray(x, np.float32).reshape(-1)
        if x.size != plan.n_in:
            raise ValueError(f"--input has {x.size} values; the model takes {plan.n_in} "
                             f"(shape {'x'.join(map(str, plan.input_shape))})")
        if not np.all(np.isfinite(x)):
            raise ValueError("--input must be finite numbers")
        codes = quantize_input(x, plan.input)
        dev_steps = converted.layer_codes(codes[None])
        dev = {"input": codes, **{s.dst: d[0] for s, d in zip(plan.steps, dev_steps)}}
        for op in graph.ops:  # reshapes read the same buffer as their source
            if isinstance(op, (Reshape, Mean)) and op.inputs[0] in dev and op.name not in dev:  # (a mean over
                # several positions is a step of its own)
                dev[op.name] = dev[op.inputs[0]]
        tv = torch_values(graph, x, engine)
        final = torch_final(torch_model, x, plan)
        all_equal = _trace(doc, plan, layers, shown, x, codes, dev, tv, final, layer)
        if is_linear_chain(plan):
            _mistakes(doc, plan, layers, x, codes, dev, tv, got)
        elif got is not None:
            doc.h(1, "Your numbers")
            doc.p("The mistakes section is worked out for chains of Linear layers only; this model has other steps.")
    if x is None and is_linear_chain(plan):
        doc.h(1, "Common mistakes")
        doc.p("Pass one input (--input 1,0.5) to see what each classic wrong attempt gives for it, next to torch.")
    _pictures(doc, layers, pictures)
    return doc, all_equal or foreign


def _where_input(keys) -> str:
    if keys:
        return f"state_dict {keys[0]} / {keys[1]}"
    return "the input quantizer (FX: <first layer>_input_scale_0; eager: the QuantStub)"


def _overview(doc: Doc, plan: Plan, ops: dict, keys) -> None:
    doc.h(1, "Which tensor each scale and zero point belongs to")
    doc.p("Every quantized tensor has its own (scale, zero point), and for all of them real = scale * (code - "
          "zero point). A layer involves three: its input x (the model's input quantizer, or the previous "
          "layer's output), its weights w, and its output y, which is in turn the next layer's input. The bias "
          "stays a float in real units.")
    rows = [["input x", "the model input", g(plan.input.scale), plan.input.zero_point, plan.input.dtype,
             _where_input(keys)]]
    for s in plan.steps:
        op = s.source if isinstance(s, DenseStep) else ops.get(s.name)
        if isinstance(s, DenseStep):
            ws, wz = op.w_scale, op.w_zero_point
            if op.per_channel:
                rows.append([f"{s.name} w", f"weights, per-channel ({s.N} scales)", f"{g(ws.min())} .. {g(ws.max())}",
                             f"{wz.min()} .. {wz.max()}", "qint8", "the weight tensor's q_per_channel_scales()"])
            else:
                rows.append([f"{s.name} w", "weights, per-tensor (one for all)", g(ws[0], 10), int(wz[0]), "qint8",
                             f"{s.name}._packed_params (the weight's q_scale())"])
            rows.append([f"{s.name} b", "bias, float (real units)", "-", "-", "float32",
                         f"{s.name}._packed_params (bias)"])
        if isinstance(op, (Linear, Conv)):
            rows.append([f"{s.name} y", "the layer's output", g(op.out.scale), op.out.zero_point, op.out.dtype,
                         f"{s.name}.scale / {s.name}.zero_point"])
            for t in s.tables:  # folded into the step: the device applies them as one code table
                rows.append([f"{t.name} y", f"after {t.what}", g(t.out.scale), t.out.zero_point, t.out.dtype,
                             f"{t.name} (torch computes it per code)"])
        else:
            rows.append([f"{s.name} y", "the step's output", g(s.out.scale), s.out.zero_point, s.out.dtype,
                         f"{s.name} output" + (" (the same as its input)" if isinstance(op, MaxPool) else "")])
    doc.table(["tensor", "what it quantizes", "scale", "zero point", "dtype", "where it is stored"], rows)


def _layer_section(doc: Doc, s, L: Layer | None, plan: Plan, ops: dict, keys, readers) -> None:
    from .codegen import describe_step

    doc.h(1, f"Layer {s.name}: {describe_step(s)}")
    if L is None:
        doc.p(_other_step(s, plan, ops))
        return
    op, x = L.op, s.x
    src = s.srcs[0]
    src_where = _where_input(keys) if src == "input" else f"the output of {src}"
    nxt = readers.get(s.dst)
    doc.table(["symbol", "value", "belongs to"], [
        ["s_x, z_x", f"{g(x.scale)}, {x.zero_point}", f"this layer's input: {src_where}"],
        ["s_w, z_w", (f"{g(op.w_scale[0], 10)}, {int(op.w_zero_point[0])}" if not op.per_channel else
                      f"{s.N} per-channel scales {g(op.w_scale.min())} .. {g(op.w_scale.max())}, zero points "
                      f"{op.w_zero_point.min()} .. {op.w_zero_point.max()}"),
         f"the weights ({'per-channel: one per output channel' if op.per_channel else 'per-tensor: one for all'})"],
        ["s_y, z_y", f"{g(op.out.scale)}, {op.out.zero_point}",
         f"this layer's output ({s.name}.scale, {s.name}.zero_point)" + (f"; also {nxt}'s input" if nxt else
                                                                         "; the model's output")],
        ["b", "float32, real units", "the bias: in accumulator units it is b / (s_x * s_w)"],
    ])
    doc.h(2, f"What torch computes (engine {plan.engine}: {s.family} requantization)")
    doc.pre(L.formula())
    doc.h(2, "What the device computes instead (integers only)")
    c = 128 + int(op.w_zero_point[0]) if not op.per_channel else "128 + z_w,n"
    lines = [
        ("acc'_n = sum_k x_k * (w_nk + 128) - c_n * sum_k x_k", f"c_n = {c}; acc' = acc + z_x * sum_k (w_nk - z_w)"
         + (f" = acc + {int(L.offset[0])}" if not np.any(L.offset - L.offset[0]) else "")),
        ("a      = clamp(acc'_n - c_lo, 0, W)", "the window where torch's output moves"),
        ("y      = floor((a * A + D) / 2^S)", "A / 2^S = M; the bias and z_y live in c_lo and D"),
        ("y      = exceptions.get(a, y)", "where float32 rounding bent one of torch's steps"),
        (f"y      = clip(y, {s.lo}, {s.hi})", "the codes this layer can reach"
         + (" (the fused ReLU's clamp at z_y included)" if op.relu else "")),
    ] + ([("y      = table[y]", f"the code table of {', '.join(t.what for t in s.tables)}")] if s.tables else [])
    doc.pre("\n".join(["weights are stored offset-binary, one byte each: w + 128 (so the board reads plain bytes)"]
                       + [f"{code:<52}  {why}" for code, why in lines]))
    doc.table(["ch", "bias b", "b in acc units (torch)", "bias implied by c_lo, D", "M (torch)", "c", "c_lo", "W",
               "A", "D", "S", "A / 2^S", "exceptions", "torch clamp"], L.device_rows(),
              note=(f"{s.N - MAX_ROWS} more channel(s) not listed. " if s.N > MAX_ROWS else "")
              + f"{len(s.fixes) // 3} exception(s) in this layer; every channel proven equal to torch for every "
                "reachable accumulator. " + implied_note(L))
    reach = ", ".join(f"{n}: {int(a)}..{int(b)}" for n, (a, b) in enumerate(zip(s.acc_lo[:MAX_ROWS],
                                                                             s.acc_hi[:MAX_ROWS])))
    doc.p(f"Reachable accumulators acc' per channel (over every input code this layer can receive): {reach}"
          + (" ..." if s.N > MAX_ROWS else "") + ".")
    doc.blocks.append(("svg-pending", s.name))  # filled once the trace knows this input's accumulators


def implied_note(L: Layer) -> str:
    """What the "bias implied by c_lo, D" column holds, in this layer's numbers."""
    zx = L.step.x.zero_point
    folded = (f"here z_x = {zx}, so offset_n = {zx} * sum_k (w_nk - z_w)"
              + (f" = {int(L.offset[0])} for every channel" if not np.any(L.offset - L.offset[0]) else
                 f" ({', '.join(str(int(v)) for v in L.offset[:4])}{', ...' if L.offset.size > 4 else ''})")
              if zx else "here z_x = 0, so nothing is folded in (offset_n = 0)")
    return ("'bias implied by c_lo, D': the bias, in accumulator units, that the device's integers carry: "
            "offset_n - c_lo + (D / 2^S - 1/2 - z_y) * 2^S / A. The device counts acc' = acc + offset_n with "
            "offset_n = z_x * sum_k (w_nk - z_w), the input zero point's sum over the channel's weights, so c_lo "
            f"has offset_n folded in and the column takes it back out ({folded}); it then equals 'b in acc units' "
            "up to the rounding of A / 2^S and of the step's window. '-': a constant channel (one code for every "
            "reachable accumulator) implies no bias.")


def _other_step(s, plan: Plan, ops: dict) -> str:
    """A step without weights, in a sentence with its scales and zero points."""
    q = {"input": plan.input, **{op.name: op.out for op in ops.values()}}

    def of(v: str) -> str:
        return f"{v} (s = {g(q[v].scale)}, z = {q[v].zero_point})" if v in q else v

    op, y = ops.get(s.name), f"s_y = {g(s.out.scale)}, z_y = {s.out.zero_point}"
    if isinstance(op, MaxPool):
        return (f"The largest code of each window of {of(s.srcs[0])}: a maximum needs no arithmetic, and the scale "
                "and zero point pass through unchanged. The device does the same.")
    if isinstance(op, AvgPool):
        return (f"Each window's sum of (x - z_x) over {of(s.srcs[0])}, divided by the window size with torch's float32 "
                f"formula {s.formula} (shared reference, Pooling); the scale and zero point stay ({y}). The device "
                f"uses one proven integer line per divisor class, {len(s.fixes) // 3} exception(s).")
    if isinstance(op, (Add, Mul)):
        a, b = op.inputs
        how = ("y = z_y + (s_a (a - z_a) + s_b (b - z_b)) / s_y, rounded as torch does on this engine "
               f"({s.family})" if isinstance(op, Add) else
               "c = (a - z_a)(b - z_b) exactly, then y = clip(rint(f32(f32(c) * M)) + z_y), "
               "M = f32(f32(s_a * s_b) * f32(1 / s_y))")
        return (f"{type(op).__name__}{' + ReLU' if op.relu else ''} of a = {of(a)} and b = {of(b)} into its own "
                f"output scale ({y}): {how}. The device uses a proven integer line"
                + (" over both codes, checked on all 65,536 code pairs." if isinstance(op, Add) else " over c."))
    if isinstance(op, Mean) and s.kind == "fmean":
        return (f"The mean of each channel of {of(s.srcs[0])} over its {s.n} positions, torch's way on this engine: "
                "each code dequantized to float32, the floats summed in ATen's order, divided, and quantized again "
                f"with the same scale and zero point ({y}). The device repeats that float32 arithmetic in integers "
                "(24-bit mantissa, exponent, rounding to nearest-even) and reads the code off 255 thresholds.")
    if isinstance(op, Cat):
        return (f"Concatenation of {', '.join(of(v) for v in op.inputs)} into ({y}): codes are copied where the "
                "scale and zero point are the same, and requantized by torch (a code table) where they differ.")
    if isinstance(op, Table):
        return (f"{op.what} on {of(s.srcs[0])}, into ({y}): torch computes the output code for each of the 256 "
                "input codes itself, and the device looks it up.")
    from .codegen import describe_step

    return describe_step(s)


def saturated_pairs(L: Layer, xin: np.ndarray, n: int) -> list[tuple[int, int, int, int]]:
    """Channel n's pairs that saturate for these input codes (dense steps made for a saturating platform):
    (k, pair sum x[k]*w[k] + x[k+1]*w[k+1] of raw codes and raw weights, its int16 value, what that changes)."""
    s, out = L.step, []
    w = L.op.weight.astype(np.int64).reshape(s.N, -1)
    x = np.asarray(xin, np.int64)
    for m, k in zip(s.sat_pairs[0::2], s.sat_pairs[1::2]):
        if m == n:
            p = int(x[k] * w[n, k] + x[k + 1] * w[n, k + 1])
            q = min(max(p, -32768), 32767)
            if q != p:
                out.append((k, p, q, q - p))
    return out


def _acc(L: Layer, xin: np.ndarray) -> np.ndarray:
    """torch's exact accumulators (N, positions) for this layer's input codes."""
    s, op = L.step, L.op
    xz = np.asarray(xin, np.int64) - s.x.zero_point
    if s.kind == "dense":
        return (L.v @ xz)[:, None] + np.array([sum(d for _, _, _, d in saturated_pairs(L, xin, n))
                                               for n in range(s.N)])[:, None]
    import torch.nn.functional as F

    C = op.weight.shape[1] * op.groups
    shape = (1, C, 1, xz.size // C) if op.dim == 1 else (1, C) + tuple(s.geometry[1:3])
    xt = torch.from_numpy(xz.astype(np.float64)).reshape(shape)
    wt = torch.from_numpy(L.v.reshape(op.weight.shape).astype(np.float64))
    acc = F.conv2d(xt, wt, None, op.stride, op.padding, op.dilation, op.groups)  # exact: small ints in float64
    return np.rint(acc.numpy()).astype(np.int64).reshape(s.N, -1)


def _trace(doc: Doc, plan: Plan, layers: dict, shown, x, codes, dev, tv, final, layer) -> bool:
    qi = plan.input
    ok = True
    doc.h(1, "Trace of one input")
    inv = f32(f32(1) / f32(qi.scale))
    rows = []
    for k in range(min(len(x), MAX_ROWS)):
        raw = float(engines.fma32(x[k], inv, f32(qi.zero_point)))
        t = int(tv["input"][k])
        rows.append([k, g(x[k]), g(raw, 8), int(codes[k]), t, "yes" if t == codes[k] else "NO"])
    ok &= bool(np.array_equal(tv["input"], codes))
    doc.p(f"1. Quantize the float input with the input quantizer (s_x = {g(qi.scale)}, z_x = {qi.zero_point}): "
          f"code = clip(rint(fma(x, f32(1/s_x), z_x)), {qi.qmin}, {qi.qmax}), f32(1/s_x) = {g(inv, 8)}.")
    doc.table(["k", "x", "x / s_x + z_x", "code (device)", "torch int_repr", "equal"], rows,
              note=f"{len(x) - MAX_ROWS} more input(s) not listed." if len(x) > MAX_ROWS else "")
    for i, s in enumerate(plan.steps):
        d, t = dev[s.dst], tv.get(s.dst)
        equal = t is not None and np.array_equal(d, t)
        ok &= equal or t is None
        if s not in shown:
            continue
        L = layers.get(s.name)
        doc.h(2, f"{i + 2}. {s.name}")
        if L is None:
            doc.table(["", "codes"], [["device", codes_str(d)], ["torch int_repr", "not rebuilt in torch" if t is None
                                                                  else codes_str(t)],
                                      ["equal", "-" if t is None else "yes" if equal else "NO"]])
            continue
        xin = dev[s.srcs[0]]
        acc = _acc(L, xin)
        accd = acc + L.offset[:, None]
        if s.kind == "dense":
            tt, vv = L.torch_parts(acc[:, 0])
            y_t = s.requantize(accd[:, 0][None])[0]
            rows = []
            for n in range(min(s.N, MAX_ROWS)):
                ch = s.channels[n]
                a = int(min(max(accd[n, 0] - ch.c_lo, 0), ch.W))
                line = (a * ch.A + ch.D) >> ch.S
                rows.append([n, int(acc[n, 0]), g(tt[n], 9), g(vv[n], 9), int(y_t[n]), int(accd[n, 0]), a, line,
                             "yes" if a in ch.exceptions else "", int(d[n]), "-" if t is None else int(t[n]),
                             "-" if t is None else "yes" if d[n] == t[n] else "NO"])
            doc.p(f"Input codes {codes_str(xin)}; acc = sum (x - {s.x.zero_point}) * (w - z_w); torch then forms t "
                  "(acc with the bias) and v (t * M) in float32 and rounds; the device clamps acc' to its window "
                  "and uses its integer line.")
            sat = [(n, *p) for n in range(s.N) for p in saturated_pairs(L, xin, n)]
            if sat:
                doc.p(f"Saturation (platform {plan.platform.name}: fbgemm without VNNI adds raw code x weight "
                      "products in pairs, in int16): " + "; ".join(
                          f"channel {n}, inputs {k} and {k + 1}: {xin[k]}*{int(L.op.weight.reshape(s.N, -1)[n, k])} "
                          f"+ {xin[k + 1]}*{int(L.op.weight.reshape(s.N, -1)[n, k + 1])} = {p} becomes {q}, so acc "
                          f"moves by {d}" for n, k, p, q, d in sat[:MAX_ROWS])
                      + ". The device keeps the exact sum and moves the channel's c_lo by the same amount for the "
                      "pairs the host listed as able to saturate; the acc column includes it.")
            doc.table(["ch", "acc", "t (torch f32)", "v = t*M" if L.rq.family != "onednn" else "v (with z_y)",
                       "torch (formula)", "device acc'", "a", "line", "exception", "device code", "torch int_repr",
                       "equal"], rows,
                      note=(f"{s.N - MAX_ROWS} more channel(s) not listed; " if s.N > MAX_ROWS else "")
                      + (f"then the code table of {', '.join(tb.what for tb in s.tables)}. " if s.tables else "")
                      + f"layer output: device {codes_str(d)}, torch {'-' if t is None else codes_str(t)}: "
                      + ("equal." if equal else "not rebuilt in torch." if t is None else "DIFFERENT."))
            L.marker = [int(v) for v in accd[:, 0]]
        else:
            rows = []
            P = acc.shape[1]
            for n in range(min(s.N, MAX_ROWS)):
                dn, tn = d[n * P:(n + 1) * P], None if t is None else t[n * P:(n + 1) * P]
                rows.append([n, P, f"{int(acc[n].min())} .. {int(acc[n].max())}", codes_str(dn, 6),
                             "-" if tn is None else codes_str(tn, 6),
                             "-" if tn is None else f"{int((dn == tn).sum())}/{P}"])
            doc.p(f"A convolution: one exact accumulator per output position and channel ({P} positions)"
                  + ("; fbgemm's depthwise fast path saturates pair sums to int16 on the way (torch and the "
                     "device both)" if s.geometry and s.geometry[-1] else "") + ".")
            doc.table(["ch", "positions", "acc range (exact)", "device codes", "torch int_repr", "equal"], rows,
                      note=(f"{s.N - MAX_ROWS} more channel(s) not listed; " if s.N > MAX_ROWS else "")
                      + ("all codes equal." if equal else "not rebuilt in torch." if t is None else "DIFFERENT."))
    out = plan.output
    y = dev[plan.output_value]
    vals = engines.dequantize(y, out.scale, out.zero_point)
    doc.h(2, "Output")
    rows = [["device", codes_str(y, 64), "[" + ", ".join(g(v) for v in vals[:64]) + "]", int(np.argmax(y))]]
    if final is not None:
        rows.append(["torch model", codes_str(final, 64),
                     "[" + ", ".join(g(v) for v in engines.dequantize(final, out.scale, out.zero_point)[:64]) + "]",
                     int(np.argmax(final))])
        ok &= bool(np.array_equal(final, y))
    doc.table(["", "codes", f"values = {g(out.scale)} * (code - {out.zero_point})", "class"], rows,
              note="every code equal to torch's: yes" if ok else "every code equal to torch's: NO")
    return ok


def _mistakes(doc: Doc, plan: Plan, layers: dict, x, codes, dev, tv, got) -> None:
    chain = [layers[s.name] for s in plan.steps]
    torch_layers = [tv.get(s.dst, dev[s.dst]) for s in plan.steps]
    out = plan.output
    doc.h(1, "Common mistakes, worked out for this input")
    doc.p("What each classic wrong attempt gives for this input, layer by layer, next to torch. A row equal to "
          "torch at one layer can still be wrong for other inputs.")
    rows = [["torch's own int_repr()"] + [codes_str(v) for v in torch_layers] + [int(np.argmax(torch_layers[-1]))]]
    results = {}
    for kind, title, what in MISTAKES:
        ys = attempt(kind, chain, x, codes)
        results[kind] = ys
        same = [np.array_equal(a, b) for a, b in zip(ys, torch_layers)]
        rows.append([title] + [codes_str(v) + ("" if e else " (differs)") for v, e in zip(ys, same)]
                    + [int(np.argmax(ys[-1]))])
        doc.p(f"{title}: {what}.")
    doc.table(["attempt"] + [s.name for s in plan.steps] + ["class"], rows,
              note=f"output values = {g(out.scale)} * (code - {out.zero_point}); the class is the index of the "
                   "largest code.")
    q = results["question"][0]
    L0 = chain[0]
    b0 = 0.0 if L0.op.bias is None else L0.op.bias / L0.op.w_scale
    z = L0.v @ np.asarray(x, np.float64) + b0
    doc.p(f"For the first layer the naive integer version computes x @ W.T + b / s_w = "
          f"[{', '.join(g(v) for v in z[:MAX_CODES])}{', ...' if z.size > MAX_CODES else ''}] and "
          f"saturates it to {codes_str(q)}; torch has {codes_str(torch_layers[0])}.")
    if got is None:
        return
    got = np.asarray(got, np.int64)
    doc.h(1, "Your numbers")
    hits = []
    for kind, title, _ in [("torch", "torch itself", "")] + MISTAKES:
        ys = torch_layers if kind == "torch" else results[kind]
        hits += [(title, s.name) for s, y in zip(plan.steps, ys) if y.shape == got.shape and np.array_equal(y, got)]
    if hits:
        doc.p(f"{codes_str(got)} is what " + "; ".join(f"'{t}' gives at layer {n}" for t, n in hits) + ".")
    else:
        best = max(((int((y == got).sum()), title, s.name) for kind, title, _ in MISTAKES
                    for s, y in zip(plan.steps, results[kind]) if y.shape == got.shape), default=None)
        doc.p(f"None of the classic attempts gives {codes_str(got)}"
              + (f"; the nearest is '{best[1]}' at layer {best[2]} ({best[0]} of {got.size} codes equal)."
                 if best else " (no layer has that many outputs)."))


def _pictures(doc: Doc, layers: dict, draw: bool) -> None:
    """Replace each layer's picture placeholder by its SVGs, or drop it."""
    blocks = []
    for b in doc.blocks:
        if b[0] != "svg-pending":
            blocks.append(b)
            continue
        if not draw:
            continue
        L = layers[b[1]]
        n_plot = min(L.step.N, MAX_PLOTS)
        marker = L.marker
        svgs = [L.plot(n, None if marker is None else marker[n]) for n in range(n_plot)]
        moving = [n for n, ch in enumerate(L.step.channels) if ch.W]
        if moving:  # one channel up close: torch's steps against the unrounded line
            n = next((n for n in moving if marker is not None and 0 < marker[n] - L.step.channels[n].c_lo
                      < L.step.channels[n].W), moving[0])
            svgs.append(L.plot(n, None if marker is None else marker[n], zoom=True))
        blocks.append(("svg", svgs, f"{L.step.name}: torch's output code (red steps) for every accumulator acc'; "
                       "shaded: the accumulators this layer can actually reach; dashed: the device's window c_lo .. "
                       "c_lo + W; blue: the unrounded M * (acc + bias) + z_y"
                       + ("; dot: this input" if marker is not None else "")
                       + (f"; first {n_plot} of {L.step.N} channels" if L.step.N > n_plot else "")))
    doc.blocks = blocks


def report(model, x=None, fmt: str = "text", **kw) -> tuple[str, bool]:
    """The rendered report and whether every traced code equals torch's."""
    doc, ok = explain(model, x, pictures=fmt == "html", **kw)
    return render(doc, fmt), ok


# ---------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------
def cmd_explain(args) -> int:
    from .cli import _floats, _ints
    from .info import parse_shape

    x = _floats(args.input) if args.input is not None else None
    got = None
    if args.got is not None:
        try:
            got = _ints(args.got)
        except ValueError:
            raise ValueError(f"--got takes comma-separated integer codes, got {args.got!r}") from None
        if x is None:
            raise ValueError("--got needs --input: the codes you computed for that input")
    text, ok = report(args.model, x, args.format, engine=args.engine, platform=args.platform, relu=args.relu,
                      allow_pickle=args.allow_pickle, input_shape=parse_shape(args.input_shape), layer=args.layer,
                      got=got)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    else:
        print(text, end="")
    return 0 if ok else 1
