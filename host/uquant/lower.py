"""Integer lowering: IR graph + engine -> the integers the device runs, each proven against torch's arithmetic.

For a Linear layer the device computes, per output channel n (see device/uquant_rt.py: dense):

    acc'  = sum_k x[k] * (w[n,k] + 128)  -  c_n * sum_k x[k]        with c_n = 128 + w_zp[n]
          = sum_k x[k] * (w[n,k] - w_zp[n])
          = acc + x_zp * sum_k (w[n,k] - w_zp[n])                     (acc: torch's exact accumulator)
    y     = clip(floor((acc' * A_n + D_n) / 2**S_n), lo, hi)         (plus rare exceptions)

A convolution is the same per output position, over the window of taps (padding reads as x_zp, which adds
nothing to torch's accumulator). Weights are stored offset-binary (w + 128, one byte each) so the board reads
them as plain bytes; the input zero point and the weight zero points are folded into c_n and D_n here.

Activation memory is planned here too: every value gets a buffer, and buffers are reused once the values in
them are no longer needed; flatten/reshape share their input's buffer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import requant as rq
from .engines import ENGINES, Requant
from .ir import Conv, ConversionError, Graph, Linear, MaxPool, QParams, Reshape, Table

DOT_LIMIT = 1 << 30  # the device's running dot product stays a small int on 32-bit ports


@dataclass
class Step:
    """One device kernel call: reads value `src`, writes value `dst` (names of values in the plan)."""

    kind: str
    name: str
    src: str
    dst: str
    out: QParams  # quantization of the output
    out_shape: tuple[int, ...]


@dataclass
class DenseStep(Step):
    """A Linear (kind 'dense') or a convolution (kind 'conv'), requantization proven channel by channel."""

    K: int = 0  # taps per output: in_features, or in_channels/groups * kh * kw
    N: int = 0  # output channels
    lo: int = 0
    hi: int = 255
    weights: bytes = b""  # N*K bytes, row-major, w + 128
    words: list[int] = field(default_factory=list)  # 7 per channel: c, c_lo, W, A, D >> 30, D & (2**30-1), S
    fixes: list[int] = field(default_factory=list)  # flat (channel, a, code) triples
    table: bytes | None = None  # code table applied after requantization (FX's dequantize -> relu -> quantize)
    source: Linear | Conv | None = None
    tables: list[Table] = field(default_factory=list)  # element-wise code maps folded into this step
    x: QParams | None = None  # input quantization
    x_lo: np.ndarray | None = None  # reachable input codes per feature (dense) or per channel (conv)
    x_hi: np.ndarray | None = None
    acc_lo: np.ndarray | None = None  # reachable acc' per channel (device coordinates: see module docstring)
    acc_hi: np.ndarray | None = None
    fn: object = None  # torch's output code as a function of acc' (shape (..., N))
    channels: list[rq.ChannelRequant] = field(default_factory=list)
    geometry: tuple = ()  # conv: (C, H, W, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW)
    family: str = ""  # which of torch's requantization formulas this step reproduces

    @property
    def macs(self) -> int:
        positions = int(np.prod(self.out_shape[1:])) if self.kind == "conv" else 1
        return self.K * self.N * positions


@dataclass
class PoolStep(Step):
    geometry: tuple = ()  # (C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)

    @property
    def macs(self) -> int:
        return 0


@dataclass
class Plan:
    name: str
    engine: str
    input: QParams
    input_shape: tuple[int, ...]
    steps: list[Step]
    sizes: dict[str, int]  # bytes of each value ("input", or "v<i>": the output of graph op i)
    buffer_of: dict[str, int]  # value -> buffer index (-1: the caller's input)
    buffers: list[int]  # buffer sizes in bytes
    output_value: str  # the value holding the result

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        return self.sizes[self.output_value]

    @property
    def output(self) -> QParams:
        return self.steps[-1].out

    @property
    def compute_steps(self) -> list[DenseStep]:
        return [s for s in self.steps if isinstance(s, DenseStep)]


def lower(graph: Graph, engine: str) -> Plan:
    if engine not in ENGINES:
        raise ConversionError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    graph.validate()
    shapes = graph.shapes()
    for op in graph.ops:
        if op.out.dtype != "quint8":
            raise ConversionError(f"{op.name}: {op.out.dtype} activations are not supported yet (quint8 only)")
    if graph.input.dtype != "quint8":
        raise ConversionError(f"the model input: {graph.input.dtype} activations are not supported yet (quint8 only)")
    x, shape, value = graph.input, graph.input_shape, "input"
    x_lo = np.full(shape[0], x.qmin, np.int64)  # reachable codes per channel (per feature when flat)
    x_hi = np.full(shape[0], x.qmax, np.int64)
    steps: list[Step] = []
    sizes = {"input": int(np.prod(shape))}
    alias = {}
    i = 0
    ops = graph.ops
    while i < len(ops):
        op = ops[i]
        if isinstance(op, (Linear, Conv)):
            j = i + 1
            while j < len(ops) and isinstance(ops[j], Table):
                j += 1
            step = lower_compute(op, ops[i + 1:j], value, f"v{j - 1}", x, x_lo, x_hi, shape, shapes[j - 1], engine)
            x_lo, x_hi = reachable_outputs(step)
            i = j
        elif isinstance(op, MaxPool):
            step = lower_maxpool(op, value, f"v{i}", x, shape, shapes[i])
            i += 1
        elif isinstance(op, Reshape):
            new = shapes[i]
            if len(new) == 1 and len(shape) > 1:  # flattening: per-channel ranges become per-feature
                per = int(np.prod(shape[1:]))
                x_lo, x_hi = np.repeat(x_lo, per), np.repeat(x_hi, per)
            elif len(new) > 1 and len(shape) == 1:
                x_lo, x_hi = np.full(new[0], x_lo.min()), np.full(new[0], x_hi.max())
            alias[f"v{i}"] = alias.get(value, value)
            sizes[f"v{i}"] = sizes[value]
            value, shape = f"v{i}", new
            i += 1
            continue
        elif isinstance(op, Table):
            raise ConversionError(f"{op.name}: {op.what} must follow a Linear or Conv layer (not supported yet "
                                  "elsewhere)")
        else:
            raise ConversionError(f"{op.name}: unsupported op {type(op).__name__}")
        steps.append(step)
        sizes[step.dst] = int(np.prod(step.out_shape))
        value, shape, x = step.dst, step.out_shape, step.out
    buffer_of, buffers = plan_buffers(steps, alias, sizes, value)
    return Plan(graph.name, engine, graph.input, graph.input_shape, steps, sizes, buffer_of, buffers, value)


def plan_buffers(steps: list[Step], alias: dict[str, str], sizes: dict[str, int], output: str):
    """Assign each value a buffer, reusing a buffer once its value has been read for the last time.

    The output gets a buffer of its own and of exactly its size: run() returns it as it is.
    """
    root = lambda v: alias.get(v, v)  # noqa: E731 - reshape aliases share their source's buffer
    last_read = {}
    for i, s in enumerate(steps):
        last_read[root(s.src)] = i
    buffer_of = {"input": -1}
    buffers: list[int] = []
    free: list[int] = []
    out_root = root(output)
    for i, s in enumerate(steps):
        v = root(s.dst)
        if v == out_root:
            buffer_of[v] = len(buffers)
            buffers.append(sizes[s.dst])
        else:
            # a free buffer big enough, else the largest free one grown, else a new one
            fits = [b for b in free if buffers[b] >= sizes[s.dst]]
            if fits:
                b = min(fits, key=lambda b: buffers[b])
            elif free:
                b = max(free, key=lambda b: buffers[b])
                buffers[b] = sizes[s.dst]
            else:
                b = len(buffers)
                buffers.append(sizes[s.dst])
            if b in free:
                free.remove(b)
            buffer_of[v] = b
        src = root(s.src)
        if last_read.get(src) == i and src != "input" and buffer_of[src] != buffer_of[v]:
            free.append(buffer_of[src])
    for a, v in alias.items():
        buffer_of[a] = buffer_of[root(v)]
    return buffer_of, buffers


def conv_family(engine: str, op: Conv, vnni: bool) -> str:
    """Which requantization torch uses for this Conv (see shared reference: F, Q, D)."""
    if engine == "qnnpack":
        return "qnnpack"
    if engine == "x86" and not np.any(op.w_zero_point) and op.groups <= 100 and vnni:
        return "onednn"
    return "fbgemm"


def fbgemm_depthwise_fast_path(op: Conv, in_channels: int) -> bool:
    kh, kw = op.weight.shape[2:]
    return (op.dim == 2 and op.groups == in_channels and op.groups % 8 == 0
            and op.out_channels in (op.groups, 2 * op.groups) and kh == kw and kh in (3, 5, 7)
            and op.stride[0] == op.stride[1] and op.stride[0] in (1, 2) and op.dilation == (1, 1)
            and op.padding == (kh // 2, kh // 2))


def has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def lower_compute(op: Linear | Conv, tables: list[Table], src: str, dst: str, x: QParams, x_lo: np.ndarray,
                  x_hi: np.ndarray, in_shape: tuple, out_shape: tuple, engine: str) -> DenseStep:
    w = op.weight.astype(np.int64)
    wzp = op.w_zero_point.astype(np.int64)
    N = int(w.shape[0])
    v = (w - wzp.reshape((N,) + (1,) * (w.ndim - 1))).reshape(N, -1)  # (N, K): what each tap's code multiplies
    K = int(v.shape[1])
    if K * 255 * 255 >= DOT_LIMIT:
        raise ConversionError(f"{op.name}: {K} inputs per output is too many for a 32-bit accumulator on the "
                              f"device (at most {(DOT_LIMIT - 1) // (255 * 255)})")
    if isinstance(op, Conv):
        C = in_shape[0]
        G = op.groups
        cg, ng = C // G, N // G
        kk = int(np.prod(w.shape[2:]))
        group = np.arange(N) // ng
        tap_ch = (group[:, None] * cg + np.repeat(np.arange(cg), kk)[None, :])  # (N, K) input channel per tap
        t_lo, t_hi = x_lo[tap_ch], x_hi[tap_ch]
        if any(op.padding):  # padded taps read the zero point
            t_lo, t_hi = np.minimum(t_lo, x.zero_point), np.maximum(t_hi, x.zero_point)
        family = conv_family(engine, op, has_vnni())
        if family == "fbgemm" and fbgemm_depthwise_fast_path(op, C):
            raise ConversionError(f"{op.name}: a depthwise {w.shape[2]}x{w.shape[3]} conv takes fbgemm's depthwise "
                                  "fast path, which saturates int16 pair sums; uquant does not reproduce that yet "
                                  "(quantize for engine qnnpack, or x86 with symmetric weights)")
        H, W_ = (1, in_shape[1]) if op.dim == 1 else in_shape[1:]
        OH, OW = (1, out_shape[1]) if op.dim == 1 else out_shape[1:]
        kh, kw = w.shape[2:]
        geometry = (C, H, W_, N, kh, kw, *op.stride, *op.padding, *op.dilation, G, OH, OW)
        kind = "conv"
    else:
        t_lo, t_hi = x_lo[None, :], x_hi[None, :]
        family = "qnnpack" if engine == "qnnpack" else "fbgemm"
        geometry = ()
        kind = "dense"
    acc_lo = np.minimum(v * t_lo, v * t_hi).sum(1)
    acc_hi = np.maximum(v * t_lo, v * t_hi).sum(1)
    offset = x.zero_point * v.sum(1)  # acc' = acc + offset
    lo = max(op.out.qmin, op.out.zero_point) if op.relu else op.out.qmin

    def make_requant(lo, hi):
        return Requant(engine, x.scale, op.w_scale, op.bias, op.out.scale, op.out.zero_point, lo, hi,
                       op.per_channel, family)

    requant = make_requant(lo, op.out.qmax)
    ok = requant.pre_bias_ok(acc_lo - offset, acc_hi - offset)
    if not ok.all():
        n = int(np.argmin(ok))
        raise ConversionError(f"{op.name}: channel {n}: accumulator plus quantized bias can overflow int32 "
                              "on qnnpack (torch itself would wrap around); refusing")
    table = compose_tables(tables, op.out)
    out = tables[-1].out if tables else op.out

    def requantize(acc_dev):  # torch's requantized code as a function of the device's acc'
        return requant(np.asarray(acc_dev, np.int64) - offset)

    ends = requantize(np.stack([acc_lo, acc_hi]))
    lo, hi = int(ends.min()), int(ends.max())
    if table is not None and out == op.out:
        kept = np.flatnonzero(table[lo:hi + 1] == np.arange(lo, hi + 1)) + lo
        if kept.size and np.array_equal(table[lo:hi + 1], np.clip(np.arange(lo, hi + 1), kept[0], kept[-1])):
            requant = make_requant(int(kept[0]), int(kept[-1]))  # a clip (ReLU, ReLU6): fold into lo/hi
            table = None
            ends = requantize(np.stack([acc_lo, acc_hi]))
            lo, hi = int(ends.min()), int(ends.max())
    try:
        channels = rq.fit_layer(requantize, requant.M.astype(np.float64), acc_lo, acc_hi, lo, hi)
    except rq.RequantError as e:
        raise ConversionError(f"{op.name}: {e}") from None

    def fn(acc_dev):  # torch's output code (after any code table) as a function of acc'
        y = requantize(acc_dev)
        return y if table is None else table[y - op.out.qmin]

    words, fixes = [], []
    for n, ch in enumerate(channels):
        words += [128 + int(wzp[n]), *ch.words]
        for a, y in sorted(ch.exceptions.items()):
            fixes += [n, a, y]
    weights = (v + wzp[:, None] + 128).astype(np.uint8).tobytes()
    table_bytes = None if table is None else bytes((table - out.qmin).astype(np.uint8).tolist())
    return DenseStep(kind, op.name, src, dst, out, out_shape, K, N, lo, hi, weights, words, fixes, table_bytes,
                     op, tables, x, x_lo, x_hi, acc_lo, acc_hi, fn, channels, geometry, family)


def lower_maxpool(op: MaxPool, src: str, dst: str, x: QParams, in_shape: tuple, out_shape: tuple) -> PoolStep:
    H, W_ = (1, in_shape[1]) if op.dim == 1 else in_shape[1:]
    OH, OW = (1, out_shape[1]) if op.dim == 1 else out_shape[1:]
    kh, kw = op.kernel
    geometry = (in_shape[0], H, W_, kh, kw, *op.stride, *op.padding, *op.dilation, OH, OW)
    return PoolStep("maxpool", op.name, src, dst, x, out_shape, geometry)


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
