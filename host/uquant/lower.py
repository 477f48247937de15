"""Integer lowering: IR graph + engine -> the integers the device runs, each proven against torch's arithmetic.

For a Linear layer the device computes, per output channel n (see device/uquant_rt.py: dense):

    acc'  = sum_k x[k] * (w[n,k] + 128)  -  c_n * sum_k x[k]        with c_n = 128 + w_zp[n]
          = sum_k x[k] * (w[n,k] - w_zp[n])
          = acc + x_zp * sum_k (w[n,k] - w_zp[n])                     (acc: torch's exact accumulator)
    y     = clip(floor((acc' * A_n + D_n) / 2**S_n), lo, hi)         (plus rare exceptions)

Weights are stored offset-binary (w + 128, one byte each) so the board reads them as plain bytes; the
input zero point and the weight zero points are folded into c_n and D_n here, not computed per sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import requant as rq
from .engines import ENGINES, Requant
from .ir import ConversionError, Graph, Linear, QParams, Table

DOT_LIMIT = 1 << 30  # the device's running dot product stays a small int on 32-bit ports


@dataclass
class DenseStep:
    name: str
    K: int
    N: int
    lo: int
    hi: int
    weights: bytes  # N*K bytes, row-major, w + 128
    words: list[int]  # 7 per channel: c, then c_lo, W, A, D >> 30, D & (2**30-1), S (see requant.py)
    fixes: list[int]  # flat (channel, a, code) triples
    table: bytes | None  # code table applied after requantization (FX's dequantize -> relu -> quantize)
    source: Linear
    tables: list[Table]  # element-wise code maps folded into this layer's requantization
    x: QParams  # input quantization
    out: QParams  # output quantization (after the tables)
    x_lo: np.ndarray  # reachable input codes per feature
    x_hi: np.ndarray
    acc_lo: np.ndarray  # reachable acc' per channel (device coordinates: see module docstring)
    acc_hi: np.ndarray
    fn: object  # torch's output code as a function of acc' (shape (..., N))
    channels: list[rq.ChannelRequant] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return self.K * self.N


@dataclass
class Plan:
    name: str
    engine: str
    input: QParams
    n_in: int
    steps: list[DenseStep]

    @property
    def output(self) -> QParams:
        return self.steps[-1].out

    @property
    def n_out(self) -> int:
        return self.steps[-1].N


def group_layers(graph: Graph) -> list[tuple[Linear, list[Table]]]:
    """Each Linear with the code tables that follow it: those fold into its requantization."""
    groups: list[tuple[Linear, list[Table]]] = []
    for op in graph.ops:
        if isinstance(op, Linear):
            groups.append((op, []))
        elif isinstance(op, Table):
            if not groups:
                raise ConversionError(f"{op.name}: {op.what} directly on the model input is not supported")
            if np.any(np.diff(op.table) < 0):
                raise ConversionError(f"{op.name}: {op.what} is not monotone, so it cannot fold into "
                                      f"{groups[-1][0].name}; not supported yet")
            groups[-1][1].append(op)
        else:
            raise ConversionError(f"{getattr(op, 'name', op)}: unsupported op {type(op).__name__}")
    return groups


def lower(graph: Graph, engine: str) -> Plan:
    if engine not in ENGINES:
        raise ConversionError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    graph.validate()
    for op in graph.ops:
        if op.out.dtype != "quint8":
            raise ConversionError(f"{op.name}: {op.out.dtype} activations are not supported yet (quint8 only)")
    if graph.input.dtype != "quint8":
        raise ConversionError(f"the model input: {graph.input.dtype} activations are not supported yet (quint8 only)")
    x = graph.input
    x_lo = np.full(graph.in_features, x.qmin, np.int64)
    x_hi = np.full(graph.in_features, x.qmax, np.int64)
    steps = []
    for layer, tables in group_layers(graph):
        step = lower_linear(layer, tables, x, x_lo, x_hi, engine)
        steps.append(step)
        x = step.out
        x_lo, x_hi = reachable_outputs(step)
    return Plan(graph.name, engine, graph.input, graph.in_features, steps)


def lower_linear(layer: Linear, tables: list[Table], x: QParams, x_lo: np.ndarray, x_hi: np.ndarray,
                 engine: str) -> DenseStep:
    w = layer.weight.astype(np.int64)
    wzp = layer.w_zero_point.astype(np.int64)
    K, N = layer.in_features, layer.out_features
    if K * 255 * 255 >= DOT_LIMIT:
        raise ConversionError(f"{layer.name}: {K} inputs is too many for a 32-bit accumulator on the device "
                              f"(at most {(DOT_LIMIT - 1) // (255 * 255)})")
    v = w - wzp[:, None]  # (N, K): what each input code is multiplied by
    acc_lo = np.minimum(v * x_lo, v * x_hi).sum(1)
    acc_hi = np.maximum(v * x_lo, v * x_hi).sum(1)
    offset = x.zero_point * v.sum(1)  # acc' = acc + offset
    lo = max(layer.out.qmin, layer.out.zero_point) if layer.relu else layer.out.qmin
    requant = Requant(engine, x.scale, layer.w_scale, layer.bias, layer.out.scale, layer.out.zero_point,
                      lo, layer.out.qmax, layer.per_channel)
    ok = requant.pre_bias_ok(acc_lo - offset, acc_hi - offset)
    if not ok.all():
        n = int(np.argmin(ok))
        raise ConversionError(f"{layer.name}: channel {n}: accumulator plus quantized bias can overflow int32 "
                              "on qnnpack (torch itself would wrap around); refusing")
    table = compose_tables(tables, layer.out)
    out = tables[-1].out if tables else layer.out

    def requantize(acc_dev):  # torch's requantized code as a function of the device's acc'
        return requant(np.asarray(acc_dev, np.int64) - offset)

    ends = requantize(np.stack([acc_lo, acc_hi]))
    lo, hi = int(ends.min()), int(ends.max())
    if table is not None and out == layer.out and np.array_equal(table[lo:hi + 1], np.arange(lo, hi + 1)):
        table = None  # e.g. a ReLU whose clip the requantization already applies
    if table is not None and out == layer.out:
        kept = np.flatnonzero(table[lo:hi + 1] == np.arange(lo, hi + 1)) + lo
        if kept.size and np.array_equal(table[lo:hi + 1], np.clip(np.arange(lo, hi + 1), kept[0], kept[-1])):
            lo, hi, table = int(kept[0]), int(kept[-1]), None  # a clip (ReLU, ReLU6): fold into lo/hi
            requant = Requant(engine, x.scale, layer.w_scale, layer.bias, layer.out.scale, layer.out.zero_point,
                              lo, hi, layer.per_channel)
            ends = requantize(np.stack([acc_lo, acc_hi]))
            lo, hi = int(ends.min()), int(ends.max())
    try:
        channels = rq.fit_layer(requantize, requant.M.astype(np.float64), acc_lo, acc_hi, lo, hi)
    except rq.RequantError as e:
        raise ConversionError(f"{layer.name}: {e}") from None

    def fn(acc_dev):  # torch's output code (after any code table) as a function of acc'
        y = requantize(acc_dev)
        return y if table is None else table[y - layer.out.qmin]

    words, fixes = [], []
    for n, ch in enumerate(channels):
        words += [128 + int(wzp[n]), *ch.words]
        for a, y in sorted(ch.exceptions.items()):
            fixes += [n, a, y]
    weights = (w + 128).astype(np.uint8).tobytes()
    table_bytes = None if table is None else bytes((table - out.qmin).astype(np.uint8).tolist())
    return DenseStep(layer.name, K, N, lo, hi, weights, words, fixes, table_bytes, layer, tables, x, out,
                     x_lo, x_hi, acc_lo, acc_hi, fn, channels)


def compose_tables(tables: list[Table], q: QParams) -> np.ndarray | None:
    """The code tables after a layer, composed into one: output code indexed by the layer's code - qmin."""
    if not tables:
        return None
    table = np.arange(q.qmin, q.qmax + 1)
    for t in tables:
        table = t.table[table - q.qmin]
        q = t.out
    return table


def reachable_outputs(step: DenseStep) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's lowest and highest output code over its reachable accumulators (monotone map)."""
    y = step.fn(np.stack([step.acc_lo, step.acc_hi]))
    return y[0].astype(np.int64), y[1].astype(np.int64)
