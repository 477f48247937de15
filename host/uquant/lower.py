"""Integer lowering: IR graph + engine -> the integers the device runs, each proven against torch's arithmetic.

For a Linear layer the device computes, per output channel n (see device/uquant_rt.py: dense):

    acc'  = sum_k x[k] * (w[n,k] + 128)  -  c_n * sum_k x[k]        with c_n = 128 + w_zp[n]
          = sum_k x[k] * (w[n,k] - w_zp[n])
          = acc + x_zp * sum_k (w[n,k] - w_zp[n])                     (acc: torch's exact accumulator)
    y     = clip(floor((acc' * A_n + D_n) / 2**S_n), lo, hi)         (plus rare exceptions)

A convolution is the same per output position, over the window of taps (padding reads as x_zp, which adds
nothing to torch's accumulator). Weights are stored offset-binary (w + 128, one byte each) so the board reads
them as plain bytes; the input zero point and the weight zero points are folded into c_n and D_n here.

Where the platform (uquant.platforms) makes fbgemm add products in int16-saturating pairs, torch's accumulator
is the exact one plus what saturation takes off: each pair's reachable sums are bounded here, and only pairs that
can leave int16 are handed to the device (a dense layer corrects just those; a conv saturates every pair of its
windows, gathered in fbgemm's im2col order). Steps whose bytes can differ between platforms say why
(`platform_notes`), so a model without any is proven portable.

Activation memory is planned here too: every value gets a buffer, and buffers are reused once the values in
them are no longer needed; flatten/reshape share their input's buffer.
"""
from __future__ import annotations

import numpy as np

from . import platforms
from . import requant as rq
from .engines import ENGINES, Requant
from .elementwise import GRAIN, VEC_BLOCK, lower_add, lower_broadcast_add, lower_cat, lower_mul
from .fmean import lower_float_mean
from .plan import AvgPoolStep, CopyStep, DenseStep, Plan, PoolStep, Step, TableStep
from .ir import (Add, AvgPool, Cat, Conv, ConversionError, Graph, Linear, MaxPool, Mean, Mul, Permute, QParams,
                 Reshape, Slice, Table, broadcast_roles, f32_normal)

DOT_LIMIT = 1 << 30  # the device's running dot product stays a small int on 32-bit ports


def lower(graph: Graph, engine: str, platform: platforms.Platform | str | None = None, progress=None) -> Plan:
    """platform: the CPU-dependent paths torch takes (uquant.platforms); None or "here": this machine's.
    progress: None, or a progress bar (tqdm) advanced by one per op of the graph."""
    if engine not in ENGINES:
        raise ConversionError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    platform = platforms.parse(platform)
    if not platform.supports(engine):
        raise ConversionError(f"engine {engine} does not exist on platform {platform.name} (torch has no fbgemm "
                              "there): quantize for qnnpack")
    graph.validate()
    shapes = graph.shapes()
    # Buffers hold codes - qmin (qint8 codes offset by 128). torch's Linear, Conv and average pooling take only
    # quint8 inputs; qint8 tensors can pass through ReLU, code tables, max pooling, add and cat.
    qparams_of = {"input": graph.input, **{op.name: op.out for op in graph.ops}}
    for op in graph.ops:
        if isinstance(op, (Linear, Conv, AvgPool)) and qparams_of[op.inputs[0]].dtype != "quint8":
            raise ConversionError(f"{op.name}: its input is {qparams_of[op.inputs[0]].dtype}; torch's "
                                  f"{type(op).__name__} kernels take only quint8 inputs")
    for op in graph.ops:
        if (engine == "qnnpack" and isinstance(op, Table) and op.what in ("relu6", "hardtanh", "relu6_", "hardtanh_")
                and len(shapes[op.inputs[0]]) == 3):
            raise ConversionError(
                f"{op.name}: on qnnpack, torch computes {op.what} on a channels-last (N, C, H, W) tensor -- which "
                "is what qnnpack's Conv2d returns -- in the wrong element order (a torch bug: the result is a "
                "permutation of the right values); uquant refuses rather than copy it. Exact alternatives: quantize "
                "the float model with `uquant quantize --engine qnnpack` (it fuses a ReLU6 after a conv into the "
                "conv, with the output range fixed to [0, 6]: the same function, which torch computes correctly), "
                "use ReLU (torchvision's quantizable models do), or the x86 engine")
    readers: dict[str, int] = {}
    for op in graph.ops:
        for v in op.inputs:
            readers[v] = readers.get(v, 0) + 1
    x = graph.input
    qp = {"input": x}  # quantization of each value
    ranges = {"input": (np.full(shapes["input"][0], x.qmin, np.int64), np.full(shapes["input"][0], x.qmax, np.int64))}
    channels_last = channels_last_values(graph, shapes)

    def memory_order(v: str) -> tuple[int, int]:  # (C, H*W) for channels-last 2-D feature maps, else (0, 0)
        sh = shapes[v]
        return (sh[0], sh[1] * sh[2]) if channels_last.get(v) and len(sh) == 3 else (0, 0)

    steps: list[Step] = []
    alias: dict[str, str] = {}
    folded: set[str] = set()
    ops = graph.ops
    for i, op in enumerate(ops):
        if progress is not None:
            progress.update()
        if op.name in folded:
            continue
        src = op.inputs[0]
        if isinstance(op, (Linear, Conv)):
            tables, dst = [], op.name  # code tables that only this layer feeds fold into its step
            for nxt in ops[i + 1:]:
                if not (isinstance(nxt, Table) and nxt.tail_table is None and nxt.inputs == [dst]
                        and readers.get(dst) == 1):
                    break
                tables.append(nxt)
                dst = nxt.name
            folded |= {t.name for t in tables}
            step = lower_compute(op, tables, src, dst, qp[src], *ranges[src], shapes[src], shapes[dst], engine,
                                 platform)
            ranges[dst] = reachable_outputs(step)
        elif isinstance(op, MaxPool):
            if (engine == "qnnpack" and op.out.formula != "pt2e" and not op.ceil_mode and max(op.dilation) > 1
                    and any(op.padding)):
                raise ConversionError(f"{op.name}: on qnnpack, torch's MaxPool with both dilation and padding does "
                                      "not compute the maximum of the window (QNNPACK's kernel differs; measured); "
                                      "refusing rather than guessing")
            step = lower_maxpool(op, src, op.name, qp[src], shapes[src], shapes[op.name])
            ranges[op.name] = ranges[src]
        elif isinstance(op, AvgPool):
            step = lower_avgpool(op, src, op.name, qp[src], *ranges[src], shapes[src], shapes[op.name], engine,
                                 channels_last[src], platform)
            ranges[op.name] = tuple(np.full(shapes[op.name][0], v, np.int64) for v in (step.lo, step.hi))
        elif isinstance(op, Reshape):
            lo, hi = ranges[src]
            old, new = shapes[src], shapes[op.name]
            if len(new) == 1 and len(old) > 1:  # flattening: per-channel ranges become per-feature
                per = int(np.prod(old[1:]))
                lo, hi = np.repeat(lo, per), np.repeat(hi, per)
            elif new[0] != old[0]:
                lo, hi = np.full(new[0], lo.min()), np.full(new[0], hi.max())
            alias[op.name] = alias.get(src, src)
            ranges[op.name], qp[op.name] = (lo, hi), op.out  # a scalar mul changes only the scale
            continue
        elif isinstance(op, Mean) and engine != "qnnpack" and channels_last[src] and np.prod(shapes[src][1:]) > 1:
            step = lower_float_mean(op, src, qp[src], shapes[src], shapes[op.name])
            lo, hi = ranges[src]  # a mean stays within its channel's codes (one code of slack for float rounding)
            ranges[op.name] = (np.maximum(lo - 1, 0), np.minimum(hi + 1, 255))
        elif isinstance(op, Mean):
            pool = mean_as_pool(op, shapes[src], engine, qp[src])
            if pool is None:  # over one position: the codes themselves
                alias[op.name] = alias.get(src, src)
                ranges[op.name], qp[op.name] = ranges[src], op.out
                continue
            step = lower_avgpool(pool, src, op.name, qp[src], *ranges[src], shapes[src], shapes[src][:1] + (1, 1),
                                 engine, channels_last[src], platform)
            ranges[op.name] = tuple(np.full(shapes[op.name][0], v, np.int64) for v in (step.lo, step.hi))
        elif isinstance(op, (Permute, Slice)):
            step = lower_move(op, src, qp[src], shapes[src], shapes[op.name])
            lo, hi = ranges[src]
            if isinstance(op, Slice) and op.bounds(shapes[src])[0] == 0:  # a slice of channels keeps theirs
                _, a, b = op.bounds(shapes[src])
                ranges[op.name] = (lo[a:b], hi[a:b])
            elif shapes[op.name][0] == shapes[src][0] and (isinstance(op, Slice) or op.perm(len(shapes[src]))[0] == 0):
                ranges[op.name] = (lo, hi)
            else:
                ranges[op.name] = (np.full(shapes[op.name][0], lo.min()), np.full(shapes[op.name][0], hi.max()))
        elif isinstance(op, Add) and broadcast_roles(*(shapes[v] for v in op.inputs)):
            big, small = (op.inputs[i] for i in broadcast_roles(*(shapes[v] for v in op.inputs)))
            step = lower_broadcast_add(op, big, small, qp[big], qp[small], shapes[op.name], channels_last[big])
            ranges[op.name] = tuple(np.full(shapes[op.name][0], v + op.out.qmin, np.int64)  # lo/hi are stored codes
                                    for v in (step.lo, step.hi))
        elif isinstance(op, Add):
            step = lower_add(op, [qp[v] for v in op.inputs], shapes[op.name], engine)
            orders = {memory_order(v) for v in op.inputs}
            if len(orders) > 1 and engine != "qnnpack" and op.out.formula != "pt2e":
                raise ConversionError(f"{op.name}: adds a channels-last tensor (a conv's output) to a contiguous "
                                      "one; torch's rounding then depends on an element order uquant does not model")
            step.memory_order = orders.pop()
            ranges[op.name] = tuple(np.full(shapes[op.name][0], v + op.out.qmin, np.int64)  # lo/hi are stored codes
                                    for v in (step.lo, step.hi))
        elif isinstance(op, Mul):
            roles = broadcast_roles(*(shapes[v] for v in op.inputs))
            srcs = [op.inputs[i] for i in roles] if roles else op.inputs  # broadcast: the full input first
            step = lower_mul(op, [qp[v] for v in srcs], shapes[op.name], srcs, shapes[srcs[1]])
            ranges[op.name] = tuple(np.full(shapes[op.name][0], v + op.out.qmin, np.int64)  # lo/hi are stored codes
                                    for v in (step.lo, step.hi))
        elif isinstance(op, Cat):
            step = lower_cat(op, [qp[v] for v in op.inputs], [shapes[v] for v in op.inputs], shapes[op.name])
            parts = [(ranges[v] if qp[v] == op.out else (np.full(shapes[v][0], op.out.qmin),
                                                         np.full(shapes[v][0], op.out.qmax))) for v in op.inputs]
            if step.outer == 1:  # along channels: each input's channels in turn
                ranges[op.name] = tuple(np.concatenate([p[i] for p in parts]) for i in (0, 1))
            else:  # along an inner axis: every channel mixes all inputs
                ranges[op.name] = (np.min([p[0] for p in parts], axis=0), np.max([p[1] for p in parts], axis=0))
        elif isinstance(op, Table):
            n = int(np.prod(shapes[op.name]))
            as_bytes = lambda t: None if t is None else bytes((t - op.out.qmin).astype(np.uint8).tolist())  # noqa
            n_vec = n
            if op.tail_table is not None:
                if n > GRAIN:
                    raise ConversionError(f"{op.name}: {op.what} on {n} elements: torch splits tensors over {GRAIN} "
                                          "elements between threads, which moves its rounding; not supported")
                n_vec = n // VEC_BLOCK * VEC_BLOCK
            step = TableStep("table", op.name, [src], op.name, op.out, shapes[op.name], n,
                             as_bytes(op.table), op.what, n_vec, as_bytes(op.tail_table), memory_order(src))
            ranges[op.name] = table_range(op.table, qp[src].qmin, *ranges[src], op.tail_table)
        else:
            raise ConversionError(f"{op.name}: unsupported op {type(op).__name__}")
        steps.append(step)
        qp[step.dst] = step.out
        lo_r, hi_r = ranges[step.dst]  # every later proof relies on these: they must be real codes of the dtype
        if lo_r.min() < step.out.qmin or hi_r.max() > step.out.qmax or np.any(lo_r > hi_r):
            raise AssertionError(f"{step.name}: reachable code range out of {step.out.dtype}: internal error")
    sizes = {v: int(np.prod(sh)) for v, sh in shapes.items()}
    output = graph.output
    buffer_of, buffers = plan_buffers(steps, alias, sizes, output)
    return Plan(graph.name, engine, graph.input, graph.input_shape, steps, sizes, buffer_of, buffers, output,
                qp[output], platform)


def plan_buffers(steps: list[Step], alias: dict[str, str], sizes: dict[str, int], output: str):
    """Assign each value a buffer, reusing a buffer once its value has been read for the last time.

    The output gets a buffer of its own and of exactly its size: run() returns it as it is.
    """
    root = lambda v: alias.get(v, v)  # noqa: E731 - reshape aliases share their source's buffer
    last_read = {}
    for i, s in enumerate(steps):
        for v in s.srcs:
            last_read[root(v)] = i
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
        for src in dict.fromkeys(root(x) for x in s.srcs):  # in source order: a set's order follows str hashes
            if last_read.get(src) == i and src != "input" and buffer_of[src] != buffer_of[v]:
                free.append(buffer_of[src])
    for a, v in alias.items():
        buffer_of[a] = buffer_of[root(v)]
    return buffer_of, buffers


def conv_family(engine: str, op: Conv, platform: platforms.Platform) -> str:
    """Which requantization torch uses for this Conv (see shared reference: F, Q, D)."""
    if engine == "qnnpack":
        return "qnnpack"
    if engine == "x86" and onednn_eligible(op) and platform.x86_conv == "onednn":
        return "onednn"
    return "fbgemm"


def onednn_eligible(op: Conv) -> bool:
    """The x86 engine hands a Conv to oneDNN (on platforms that use it) for symmetric weights and groups <= 100."""
    return not np.any(op.w_zero_point) and op.groups <= 100


def fbgemm_depthwise_fast_path(op: Conv, in_channels: int) -> bool:
    kh, kw = op.weight.shape[2:]
    return (op.dim == 2 and op.groups == in_channels and op.groups % 8 == 0
            and op.out_channels in (op.groups, 2 * op.groups) and kh == kw and kh in (3, 5, 7)
            and op.stride[0] == op.stride[1] and op.stride[0] in (1, 2) and op.dilation == (1, 1)
            and op.padding == (kh // 2, kh // 2))


def fbgemm_groupwise_path(op: Conv, in_channels: int) -> bool:
    """fbgemm's groupwise conv kernel (fbgemmOptimizedGConv; measured, see uquant.platforms): 2-D 3x3, padding 1,
    dilation 1, stride 1 or 2 both ways, 2/4/8/16 channels per group in and out, and at least G_together groups
    (64-byte vectors: only AVX512 hardware runs the kernel with other arithmetic than fbgemm's GEMM)."""
    C, G, N = in_channels, op.groups, op.out_channels
    cg = C // G
    if not (op.dim == 2 and tuple(op.weight.shape[2:]) == (3, 3) and op.padding == (1, 1) and op.dilation == (1, 1)
            and op.stride in ((1, 1), (2, 2)) and cg == N // G and cg in (2, 4, 8, 16)):
        return False
    return G >= max(64 // (N // G) // max(cg, 4), 1)


def conv_saturates(op: Conv, in_channels: int, platform: platforms.Platform) -> bool:
    """Does fbgemm add int16-saturating pairs for this (non-depthwise-fast-path) Conv on this platform?"""
    if fbgemm_groupwise_path(op, in_channels):
        return platform.groupwise == "sat16"
    return platform.gemm == "sat16"


SAT_DEPTHWISE, SAT_IM2COL = 1, 2  # a conv's geometry[15]: how its windows' pairs saturate (0: they do not)


def im2col_order(cg: int, kh: int, kw: int) -> np.ndarray:
    """fbgemm's im2col K axis for one group: taps row-major, the group's channels innermost (NHWC), as indices
    into torch's (channel, ky, kx) weight order. Its consecutive pairs are what vpmaddubsw adds."""
    return np.arange(cg * kh * kw).reshape(cg, kh * kw).T.reshape(-1)


def pair_sum_bounds(w: np.ndarray, t_lo: np.ndarray, t_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest pair sum x[2p]*w[2p] + x[2p+1]*w[2p+1], shape (N, ceil(K/2)), for raw u8 codes x in
    [t_lo, t_hi] per tap and raw int8 weights w (N, K); an odd last tap pairs with nothing."""
    p_lo, p_hi = np.minimum(w * t_lo, w * t_hi), np.maximum(w * t_lo, w * t_hi)
    if w.shape[1] % 2:
        p_lo, p_hi = np.pad(p_lo, ((0, 0), (0, 1))), np.pad(p_hi, ((0, 0), (0, 1)))
    return p_lo[:, 0::2] + p_lo[:, 1::2], p_hi[:, 0::2] + p_hi[:, 1::2]


def pair_risk(w: np.ndarray, t_lo: np.ndarray, t_hi: np.ndarray) -> np.ndarray:
    """(N, ceil(K/2)) bool: can the pair sum leave int16? Only such pairs can saturate in vpmaddubsw."""
    lo, hi = pair_sum_bounds(w, t_lo, t_hi)
    return (lo < -32768) | (hi > 32767)


def lower_compute(op: Linear | Conv, tables: list[Table], src: str, dst: str, x: QParams, x_lo: np.ndarray,
                  x_hi: np.ndarray, in_shape: tuple, out_shape: tuple, engine: str,
                  platform: platforms.Platform) -> DenseStep:
    w = op.weight.astype(np.int64)
    wzp = op.w_zero_point.astype(np.int64)
    N = int(w.shape[0])
    v = (w - wzp.reshape((N,) + (1,) * (w.ndim - 1))).reshape(N, -1)  # (N, K): what each tap's code multiplies
    K = int(v.shape[1])
    raw = w.reshape(N, -1)
    if K * 255 * 255 >= DOT_LIMIT:
        raise ConversionError(f"{op.name}: {K} inputs per output is too many for a 32-bit accumulator on the "
                              f"device (at most {(DOT_LIMIT - 1) // (255 * 255)})")
    order = np.arange(K)  # the device's tap order: weights are stored, and windows gathered, in this order
    notes = []  # (platform attribute, why torch's bytes for this step depend on it)
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
        # a PT2E program runs its convs in float32 whatever the engine (uquant.engines.Requant, family "pt2e")
        family = "pt2e" if x.formula == "pt2e" else conv_family(engine, op, platform)
        if family == "onednn" and platform.simd == "default":
            raise ConversionError(
                f"{op.name}: the x86 engine runs this Conv on oneDNN, and torch here has ATen's DEFAULT capability "
                "(ATEN_CPU_CAPABILITY=default, or a CPU without AVX2), where its bytes are not characterised "
                "(measured: 2 of 1000 outputs of a small CNN differ from what uquant reproduces); refusing. Quantize "
                "for fbgemm or qnnpack, or run torch with AVX2")
        # fbgemm's depthwise fast path adds raw u8 x s8 products in row-major pairs, saturating each pair sum
        # to int16 (vpmaddubsw) on every CPU; its other convs (im2col + GEMM) do so on platforms without VNNI.
        sat = 0
        if family == "fbgemm" and fbgemm_depthwise_fast_path(op, C):
            sat = SAT_DEPTHWISE
        elif family in ("fbgemm", "onednn"):  # oneDNN's convs go to fbgemm on platforms without VNNI
            im2col = im2col_order(cg, *w.shape[2:])
            risky = pair_risk(raw[:, im2col], t_lo[:, im2col], t_hi[:, im2col])
            if risky.any():
                notes.append(("gemm", saturation_note(risky)))
                if family == "fbgemm" and conv_saturates(op, C, platform):
                    sat, order = SAT_IM2COL, im2col
        if engine == "x86" and family != "pt2e" and onednn_eligible(op):
            notes.append(("x86_conv", "the x86 engine runs it on oneDNN on x86-vnni and on fbgemm elsewhere, which "
                                      "round differently"))
        H, W_ = (1, in_shape[1]) if op.dim == 1 else in_shape[1:]
        OH, OW = (1, out_shape[1]) if op.dim == 1 else out_shape[1:]
        kh, kw = w.shape[2:]
        geometry = (C, H, W_, N, kh, kw, *op.stride, *op.padding, *op.dilation, G, OH, OW, sat)
        kind = "conv"
        sat_pairs = ()
    else:
        t_lo, t_hi = np.broadcast_to(x_lo[None, :], (N, K)), np.broadcast_to(x_hi[None, :], (N, K))
        family = "pt2e" if x.formula == "pt2e" else "qnnpack" if engine == "qnnpack" else "fbgemm"
        geometry = ()
        kind = "dense"
        sat = 0
        sat_pairs = ()
        if family == "fbgemm":  # fbgemm's GEMM pairs consecutive inputs
            risky = pair_risk(raw, t_lo, t_hi)
            if risky.any():
                notes.append(("gemm", saturation_note(risky)))
                if platform.saturates:
                    sat_pairs = tuple(int(v) for n, p in np.argwhere(risky) for v in (n, 2 * p))
    acc_lo = np.minimum(v * t_lo, v * t_hi).sum(1)
    acc_hi = np.maximum(v * t_lo, v * t_hi).sum(1)
    offset = x.zero_point * v.sum(1)  # acc' = acc + offset
    if sat or sat_pairs:  # device acc' = sum of saturated pair sums - w_zp * sum(x): bound it
        acc_lo, acc_hi = saturated_pair_bounds(raw[:, order], wzp, t_lo[:, order], t_hi[:, order])
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
    check_float_range(op, x, requant, np.stack([acc_lo, acc_hi]) - offset)
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

    step_requantize = requantize

    words, fixes = [], []
    for n, ch in enumerate(channels):
        words += [128 + int(wzp[n]), *ch.words]
        for a, y in sorted(ch.exceptions.items()):
            fixes += [n, a, y]
    weights = (raw[:, order] + 128).astype(np.uint8).tobytes()
    if sat_pairs:
        check_sat_corrections(op, channels, sat_pairs)
    table_bytes = None if table is None else bytes((table - out.qmin).astype(np.uint8).tolist())
    return DenseStep(kind, op.name, [src], dst, out, out_shape, K, N, lo, hi, weights, words, fixes, table_bytes,
                     op, tables, x, x_lo, x_hi, acc_lo, acc_hi, fn, channels, geometry, family, step_requantize,
                     table, sat_pairs, tuple(notes))


def saturation_note(risky: np.ndarray) -> str:
    return (f"{int(risky.any(1).sum())} of {len(risky)} channels can saturate int16 pair sums on platforms without "
            "VNNI (x86-avx2, x86-avx512)")


def check_sat_corrections(op: Linear, channels: list, sat_pairs: tuple) -> None:
    """The device corrects a saturating pair by moving the channel's c_lo by (pair - clamp16(pair)), at most
    65280 - 32767 per pair: c_lo must stay a small int on 32-bit ports."""
    count = np.bincount(np.asarray(sat_pairs[0::2], np.int64), minlength=len(channels))
    for n, ch in enumerate(channels):
        if abs(ch.c_lo) + int(count[n]) * (65280 - 32767) >= rq.SMALL:
            raise ConversionError(f"{op.name}: output channel {n}: {int(count[n])} saturating pairs move the "
                                  "accumulator window beyond 31-bit ints on the device; refusing")


INT32_SAFE = 2.0 ** 31 - 2.0 ** 10  # torch's float -> int32 conversion overflows at 2**31 (margin: rounding)


def check_float_range(op: Linear | Conv, x: QParams, requant: Requant, acc_ends: np.ndarray) -> None:
    """Refuse a layer where torch's float32 requantization leaves the range where it is a monotone step function:
    a multiplier s_x * s_w / s_y that is zero, subnormal or infinite in float32, or a value (accumulator plus
    bias, times the multiplier) that reaches int32's limits, where torch's float -> int32 conversion overflows
    (to the lowest code: measured with a bias of 1e20 on x86). Such layers have far-out scales or biases."""
    M = np.asarray(requant.M, np.float64).reshape(-1)
    ok = f32_normal(M)
    if not ok.all():
        n = int(np.argmin(ok))
        raise ConversionError(f"{op.name}: output channel {n}: the requantization multiplier s_x * s_w / s_y = "
                              f"{x.scale:.6g} * {op.w_scale[n]:.6g} / {op.out.scale:.6g} is {M[n]:.6g} in torch's "
                              "float32 (zero, subnormal or infinite), where torch's result is not reliable; "
                              "refusing (check the layer's scales)")
    if requant.family == "qnnpack":
        # torch pads qnnpack's weight scales with 8 channels of scale 1.0 and checks their requantization
        # scale f32(s_x) * f32(1/s_y) too: where it is not a normal float32, torch refuses to run the layer
        pad = np.float32(np.float32(x.scale) * np.float32(np.float32(1) / np.float32(op.out.scale)))
        if not f32_normal(pad):
            raise ConversionError(f"{op.name}: torch's qnnpack cannot run this layer: s_x / s_y = {x.scale:.6g} / "
                                  f"{op.out.scale:.6g} is {float(pad):.6g} in float32 (zero, subnormal or "
                                  "infinite), which qnnpack checks for its padding channels (weight scale 1.0) "
                                  "and refuses; refusing too (check the layer's scales)")
    v = np.abs(requant.scaled(acc_ends)).max(axis=0)
    ok = np.isfinite(v) & (v < INT32_SAFE)
    if not ok.all():
        n = int(np.argmin(ok))
        bias = "no bias" if op.bias is None else f"bias {float(op.bias[n]):.6g}"
        raise ConversionError(f"{op.name}: output channel {n}: torch's requantized value reaches {v[n]:.6g} "
                              f"({bias}, multiplier {M[n]:.6g}), beyond int32, where torch's float -> int "
                              "conversion overflows and its result is no longer a step function of the "
                              "accumulator; refusing (the layer's bias or scales are far outside the usual range)")


def lower_maxpool(op: MaxPool, src: str, dst: str, x: QParams, in_shape: tuple, out_shape: tuple) -> PoolStep:
    H, W_ = (1, in_shape[1]) if op.dim == 1 else in_shape[1:]
    OH, OW = (1, out_shape[1]) if op.dim == 1 else out_shape[1:]
    kh, kw = op.kernel
    geometry = (in_shape[0], H, W_, kh, kw, *op.stride, *op.padding, *op.dilation, OH, OW)
    return PoolStep("maxpool", op.name, [src], dst, x, out_shape, geometry)


def lower_move(op: Permute | Slice, src: str, x: QParams, in_shape: tuple, out_shape: tuple) -> CopyStep:
    """transpose / permute / a chunk's piece as one strided copy: numpy's view of the input's positions gives the
    pattern; axes that stay adjacent merge, so up to 4 remain (a transpose of a 5-D batch, shufflenet's, needs 3)."""
    at = np.arange(int(np.prod(in_shape)), dtype=np.int64).reshape(in_shape)
    if isinstance(op, Slice):
        axis, a, b = op.bounds(in_shape)
        view = at[(slice(None),) * axis + (slice(a, b),)]
    else:
        view = at.transpose(op.perm(len(in_shape)))
    offset = int(view.flat[0]) if view.size else 0
    dims = [(n, st // at.itemsize) for n, st in zip(view.shape, view.strides) if n != 1]
    merged: list[list[int]] = []
    for n, st in dims:  # an axis whose stride steps over exactly the next one's extent merges into it
        if merged and merged[-1][1] == st * n:
            merged[-1] = [merged[-1][0] * n, st]
        else:
            merged.append([n, st])
    if len(merged) > 4:
        raise ConversionError(f"{op.name}: this copy needs {len(merged)} nested axes; the device's copy does 4")
    merged = [[1, 0]] * (4 - len(merged)) + merged
    geometry = (offset, *(n for n, _ in merged), *(st for _, st in merged))
    return CopyStep("copy", op.name, [src], op.name, x, out_shape, geometry)


def mean_as_pool(op: Mean, in_shape: tuple, engine: str, x: QParams) -> AvgPool | None:
    """Quantized mean over H, W: None where it is a free view, else the global average pooling that gives its bytes.

    Over a single position (H = W = 1) torch's kernels return the codes themselves. On qnnpack, mean(dim=[2, 3]) of
    a quint8 (N, C, H, W) tensor runs QNNPACK's global average pooling: the same bytes as adaptive_avg_pool2d(x, 1)
    (measured: 10,648 outputs of 300 random tensors, both memory orders, 0 differences), which lower_avgpool proves.
    On x86/fbgemm a channels-last tensor's mean is uquant.fmean's; a contiguous one's takes an integer path not
    modelled."""
    if in_shape[1] * in_shape[2] == 1:
        return None
    if engine == "qnnpack" and tuple(op.dims) == (2, 3) and x.dtype == "quint8" and x.formula != "pt2e":
        return AvgPool(op.name, 2, op.out, output_size=(1, 1), inputs=list(op.inputs))
    raise ConversionError(f"{op.name}: mean over H x W = {in_shape[1]}x{in_shape[2]} positions of a contiguous "
                          f"{x.dtype} tensor on {engine}: torch's kernel for it is not modelled (uquant reproduces the "
                          "mean of a conv's channels-last output, and qnnpack's); use nn.AdaptiveAvgPool2d(1) (+ flatten) "
                          "for global average pooling")


def channels_last_values(graph: Graph, shapes: dict) -> dict[str, bool]:
    """Which values torch holds in channels_last memory order (it picks its pooling kernels by that).

    Measured on torch 2.13, all engines: quantized Conv1d/Conv2d write channels_last; on 4-D tensors ReLU,
    code-table ops, max/avg pooling, add, mul and cat keep their (first) input's order; on 3-D tensors (1-D ops)
    only max/avg pooling keep it; a quantized input and a reshape are plain contiguous. Broadcasting a per-channel
    (N, C, 1, 1) tensor: add keeps the full input's order; mul keeps its first input's, and is contiguous when the
    per-channel tensor comes first (torch resizes an output made like it).
    """
    cl = {"input": False}
    for op in graph.ops:
        src = cl.get(op.inputs[0], False)
        if isinstance(op, Conv):
            cl[op.name] = op.out.formula != "pt2e"  # a PT2E program's float conv keeps contiguous order
        elif isinstance(op, (MaxPool, AvgPool)):
            cl[op.name] = src
        elif isinstance(op, (Add, Mul)) and broadcast_roles(*(shapes[v] for v in op.inputs)):
            big = broadcast_roles(*(shapes[v] for v in op.inputs))[0]
            keep = isinstance(op, Add) or big == 0
            cl[op.name] = keep and cl.get(op.inputs[big], False) and len(shapes[op.name]) == 3
        elif isinstance(op, (Table, Add, Mul, Cat)):
            cl[op.name] = src and len(shapes[op.name]) == 3
        else:
            cl[op.name] = False
    return cl


def _avg_windows(n: int, k: int, s: int, p: int, out: int):
    """Per output index of one axis: first and end valid input index, and the window's extent inside the padding."""
    st = np.arange(out) * s - p
    return np.maximum(st, 0), np.minimum(st + k, n), np.minimum(st + k, n + p) - st


def _adaptive_windows(n: int, out: int):
    """torch's adaptive windows: floor(f32(i*n)/out) .. ceil(f32((i+1)*n)/out), in float32 as ATen computes them."""
    i = np.arange(out)
    a = np.floor(np.float32(np.float32(i * n) / np.float32(out))).astype(np.int64)
    b = np.ceil(np.float32(np.float32((i + 1) * n) / np.float32(out))).astype(np.int64)
    return a, b, b - a


def lower_avgpool(op: AvgPool, src: str, dst: str, x: QParams, x_lo: np.ndarray, x_hi: np.ndarray,
                  in_shape: tuple, out_shape: tuple, engine: str, channels_last: bool,
                  platform: platforms.Platform) -> AvgPoolStep:
    """Average pooling: each window's code is a monotone function of its integer sum, one per divisor class.

    Which of torch's formulas applies (shared reference, "Pooling"): qnnpack with ceil_mode=False runs QNNPACK
    (P3: divisor always kh*kw); otherwise ATen picks its kernel by memory order: channels_last input (every
    C == 1 tensor, every 1x1 one, and whatever a Conv wrote) takes the NHWC kernel (P2, P5), whose channels in
    full SIMD blocks round differently; a contiguous one the NCHW kernel (P1; P4 for adaptive, on raw sums).
    Adaptive pooling on qnnpack with sizes that divide evenly (and not the identity) is P3 with kernel = stride.
    """
    from . import engines as E

    C = in_shape[0]
    H, W_ = (1, in_shape[1]) if op.dim == 1 else in_shape[1:]
    OH, OW = (1, out_shape[1]) if op.dim == 1 else out_shape[1:]
    nhwc = channels_last or C == 1 or H * W_ == 1
    kind = "AdaptiveAvgPool" if op.adaptive else "AvgPool"
    pt2e = x.formula == "pt2e"  # a PT2E program's float32 pooling: sum / divisor, then its quantize
    if pt2e and op.adaptive:
        (r0, r1, ey), (c0, c1, ex) = _adaptive_windows(H, OH), _adaptive_windows(W_, OW)
        formula, kk = "PT2E", 0
    elif pt2e:
        kh, kw = op.kernel
        (r0, r1, ey), (c0, c1, ex) = (_avg_windows(H, kh, op.stride[0], op.padding[0], OH),
                                      _avg_windows(W_, kw, op.stride[1], op.padding[1], OW))
        formula, kk = "PT2E", 0
    elif op.adaptive:
        (r0, r1, ey), (c0, c1, ex) = _adaptive_windows(H, OH), _adaptive_windows(W_, OW)
        identity = (OH, OW) == (H, W_)
        if engine == "qnnpack" and H % OH == 0 and W_ % OW == 0 and not identity:
            formula, kk = "P3", (H // OH) * (W_ // OW)
        else:
            formula, kk = ("P5" if nhwc else "P4"), 0
    else:
        kh, kw = op.kernel
        (r0, r1, ey), (c0, c1, ex) = (_avg_windows(H, kh, op.stride[0], op.padding[0], OH),
                                      _avg_windows(W_, kw, op.stride[1], op.padding[1], OW))
        if engine == "qnnpack" and not op.ceil_mode:
            if kh * kw == 1:
                raise ConversionError(f"{op.name}: a 1x1 AvgPool fails in torch on engine qnnpack "
                                      "(\"1x1 pooling is meaningless\")")
            formula, kk = "P3", kh * kw
        else:
            formula, kk = ("P2" if nhwc else "P1"), 0
    if formula in ("P2", "P5") and C > 1 and H * W_ == 1 and OH * OW > 1:
        raise ConversionError(f"{op.name}: {kind} of a 1x1 input with {C} channels to {OH}x{OW} outputs: torch "
                              "writes that output in channels_last order into a contiguous tensor (scrambled "
                              "codes); not reproduced")
    block = platforms.simd_channel_block(platform, op.adaptive) if formula in ("P2", "P5") else 0
    cv = C // block * block if block else 0
    # divisor classes: positions whose windows have the same (taps, divisor) -- or (kh, kw) for P4
    keys, cls = {}, []
    for i in range(OH):
        for j in range(OW):
            th, tw = int(r1[i] - r0[i]), int(c1[j] - c0[j])
            if formula == "P4":
                key = (th, tw)
            elif formula == "P3":
                key = (th * tw, kk)
            elif formula == "P5" or (formula == "PT2E" and op.adaptive):
                key = (th * tw, th * tw)
            else:
                key = (th * tw, int(ey[i] * ex[j]) if op.count_include_pad else th * tw)
            cls.append(keys.setdefault(key, len(keys)))
    K = len(keys)
    if 2 * K > 256:
        raise ConversionError(f"{op.name}: {K} different window sizes; at most 128 supported")
    base = list(keys)
    classes = [(*k, False) for k in base] + ([(*k, True) for k in base] if cv else [])
    zp = 0 if formula == "P4" else x.zero_point
    in_lo, in_hi = x.qmin, x.qmax  # proven for every input code, not just the reachable ones (costs nothing)
    taps = np.array([c[0] * c[1] if formula == "P4" else c[0] for c in classes], np.int64)
    acc_lo, acc_hi = taps * (in_lo - zp), taps * (in_hi - zp)

    def fn(acc):
        acc = np.asarray(acc, np.int64)
        out = np.empty(acc.shape, np.int64)
        for n, (a, b, blk) in enumerate(classes):
            v = acc[..., n]
            if formula == "P1":
                out[..., n] = E.avgpool_p1(v, b, zp)
            elif formula == "P2":
                out[..., n] = E.avgpool_p2(v, b, zp, blk)
            elif formula == "P3":
                out[..., n] = E.avgpool_p3(v, b, x.scale, zp)
            elif formula == "P4":
                out[..., n] = E.adaptive_p4(v, a, b)
            elif formula == "PT2E":
                out[..., n] = E.avgpool_pt2e(v, b, x.scale, op.out.scale, op.out.zero_point)
            else:
                out[..., n] = E.adaptive_p5(v, a, zp, blk)
        return out

    slope = np.array([1.0 / (c[0] * c[1] if formula == "P4" else c[1]) for c in classes])
    if formula == "PT2E":
        slope = slope * x.scale / op.out.scale
    ends = fn(np.stack([acc_lo, acc_hi]))
    lo, hi = int(ends.min()), int(ends.max())
    try:
        channels = rq.fit_layer(fn, slope, acc_lo, acc_hi, lo, hi)
    except rq.RequantError as e:
        raise ConversionError(f"{op.name}: {e}") from None
    words, fixes = [], []
    for n, ch in enumerate(channels):
        words += list(ch.words)
        for a, y in sorted(ch.exceptions.items()):
            fixes += [n, a, y]
    rows = tuple(int(v) for ab in zip(r0, r1) for v in ab)
    cols = tuple(int(v) for ab in zip(c0, c1) for v in ab)
    geometry = (C, H, W_, OH, OW, zp, cv, K)
    desc = formula + (f", channels < {cv} in SIMD blocks" if cv else "")
    notes = ()
    if formula == "P2" and C > 8:  # AVX512's blocks are 16 channels, AVX2's 8: channels 8.. move between paths
        acc = np.arange(taps.min() * (in_lo - zp), taps.max() * (in_hi - zp) + 1)
        if any(not np.array_equal(E.avgpool_p2(acc, b, zp, True), E.avgpool_p2(acc, b, zp, False)) for _, b in base):
            notes = (("simd", "ATen's SIMD blocks span 16 channels on AVX512 and 8 on AVX2, and round differently "
                              "from the rest"),)
    return AvgPoolStep("avgpool", op.name, [src], dst, op.out, out_shape, geometry, rows, cols, bytes(cls), lo, hi,
                       words, fixes, classes, desc, acc_lo, acc_hi, fn, channels, op, notes)


def saturated_pair_bounds(w: np.ndarray, wzp: np.ndarray, t_lo: np.ndarray, t_hi: np.ndarray):
    """Bounds of sum_pairs clamp16(x1*w1 + x2*w2) - w_zp * sum(x) per channel (w raw int8, x raw codes per tap)."""
    p_lo, p_hi = pair_sum_bounds(w, t_lo, t_hi)
    lo = np.clip(p_lo, -32768, 32767).sum(1)
    hi = np.clip(p_hi, -32768, 32767).sum(1)
    sx_lo, sx_hi = t_lo.sum(1), t_hi.sum(1)
    return lo - np.maximum(wzp * sx_lo, wzp * sx_hi), hi - np.minimum(wzp * sx_lo, wzp * sx_hi)


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
    """Each channel's lowest and highest output code over its reachable accumulators.

    The requantization is monotone, so its ends bound it; a code table after it need not be (hardswish dips).
    """
    y = step.requantize(np.stack([step.acc_lo, step.acc_hi]))
    return table_range(step.table_codes, step.source.out.qmin, y[0], y[1])  # the table reads the layer's codes


def table_range(table, qmin: int, lo: np.ndarray, hi: np.ndarray, tail=None) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest entry of a code table (and its tail variant) over each channel's input codes [lo, hi]."""
    if table is None:
        return lo.astype(np.int64), hi.astype(np.int64)
    tabs = [t for t in (table, tail) if t is not None]
    out_lo = np.array([min(t[a - qmin:b - qmin + 1].min() for t in tabs) for a, b in zip(lo, hi)], np.int64)
    out_hi = np.array([max(t[a - qmin:b - qmin + 1].max() for t in tabs) for a, b in zip(lo, hi)], np.int64)
    return out_lo, out_hi
