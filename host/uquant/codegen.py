"""Code generation: an integer plan -> a MicroPython module (weights and parameter words as bytes, a checksum).

The module only calls the device runtime (uquant_rt); the header comment explains, with the model's
own numbers, what the integers mean. Comments may show floats for the reader; code never does.
"""
from __future__ import annotations


import numpy as np

from . import __version__
from .plan import AddStep, AvgPoolStep, DenseStep, FloatMeanStep, Plan, Step, TableStep
from .runtime import rt

BYTES_PER_LINE = 32


LAYOUTS = (None, "thumb", "dsp")  # dense weight orders: plain rows, uquant_thumb's (uquant_rt.thumb_index) or
# uquant_dsp's (uquant_rt.dsp_index, with odd taps' bytes XOR 0x80)


def node_spec(plan: Plan, s: Step, layout: str | None = None, streamed: tuple | None = None) -> tuple:
    """One node exactly as the generated module passes it to uquant_rt.Model; dense weights in `layout` order.
    streamed: (offset, rows per chunk) of a layer whose weights and words are in the weights file (uquant.stream)."""
    srcs = tuple(plan.buffer_of[v] for v in s.srcs)
    src, dst = (srcs[0] if len(srcs) == 1 else srcs), plan.buffer_of[s.dst]
    if streamed is not None:
        head = (s.K, s.N) if s.kind == "dense" else (s.geometry, s.x.zero_point)
        return (s.kind, src, dst, *head, s.lo, s.hi, tuple(streamed), None, words_bytes(s.fixes), s.table)
    if s.kind == "dense":
        W = s.weights if layout is None else bytes(rt.relay(s.weights, s.K, s.N, None, layout))
        spec = ("dense", src, dst, s.K, s.N, s.lo, s.hi, W, words_bytes(s.words), words_bytes(s.fixes), s.table)
        S = sat_pairs_bytes(s.sat_pairs) if s.sat_pairs else None
        return spec + (S, layout) if layout is not None else spec + (S,) if S else spec
    if s.kind == "conv":
        return ("conv", src, dst, s.geometry, s.x.zero_point, s.lo, s.hi, s.weights, words_bytes(s.words),
                words_bytes(s.fixes), s.table)
    if s.kind == "add" and s.cuts is not None:
        return ("badd", src, dst, s.n, s.lo, s.hi, s.vec, tuple(s.vec_fixes) or None, s.tail,
                tuple(s.tail_fixes) or None, tuple(s.cuts))
    if s.kind == "add":
        return ("add", src, dst, s.n_vec, s.n, s.lo, s.hi, s.vec, tuple(s.vec_fixes) or None, s.tail,
                tuple(s.tail_fixes) or None, *s.memory_order)
    if s.kind == "cat":
        return ("cat", src, dst, tuple(s.parts)) + ((s.outer,) if s.outer > 1 else ())
    if s.kind == "avgpool":
        return ("avgpool", src, dst, s.geometry, s.rows, s.cols, s.cls, s.lo, s.hi, tuple(s.words),
                tuple(s.fixes) or None)
    if s.kind == "mul" and s.hw:
        return ("bmul", src, dst, s.n, s.hw, s.za, s.zb, s.lo, s.hi, tuple(s.words), tuple(s.fixes) or None)
    if s.kind == "mul":
        return ("mul", src, dst, s.n, s.za, s.zb, s.lo, s.hi, tuple(s.words), tuple(s.fixes) or None)
    if s.kind == "fmean":
        return ("fmean", src, dst, s.C, s.n, s.level_power, s.e_key, words_bytes(s.mantissas), s.exponents,
                words_bytes(s.thresholds))
    if s.kind == "table":
        return ("table", src, dst, s.n, s.table, s.n_vec, s.tail, *s.memory_order)
    return (s.kind, src, dst, s.geometry)


def words_bytes(words) -> bytes | None:
    """Requantization words or exception triples as little-endian int32 bytes (uquant_rt.as_words), None if empty.

    A bytes constant costs the board nothing at import beyond itself; a tuple literal is built on the VM stack
    from bytecode, about four times its size in short-lived heap."""
    if not len(words):
        return None
    a = np.asarray(words, np.int64)
    if a.min() < -2**30 or a.max() >= 2**30:
        raise ValueError("a parameter word does not fit a small int on 32-bit boards")
    return a.astype("<i4").tobytes()


def sat_pairs_bytes(pairs: tuple) -> bytes:
    """Flat (channel, k) pairs, sorted by channel -> per channel the u16s n, count, k... (uquant_rt.satfix)."""
    by = {}
    for n, k in zip(pairs[0::2], pairs[1::2]):
        by.setdefault(n, []).append(k)
    words = [v for n, ks in sorted(by.items()) for v in (n, len(ks), *ks)]
    if max(words) > 0xFFFF:
        raise ValueError("saturating pairs: a channel or tap number does not fit 16 bits")
    return np.array(words, "<u2").tobytes()


def module_constants(plan: Plan) -> tuple[int, int, int, int, str]:
    """INPUT_SCALE_BITS, INPUT_ZERO_POINT, OUTPUT_SCALE_BITS, OUTPUT_ZERO_POINT, PLATFORM as the module defines
    them (Model's `scales`, covered by the checksum)."""
    return (f32_bits(plan.input.scale), plan.input.zero_point, f32_bits(plan.output.scale), plan.output.zero_point,
            plan.platform.name)


def model_args(plan: Plan, layout: str | None = None, stream=None) -> tuple:
    """Everything Model() checks the CRC over: name, input spec (with one sample's shape), buffer sizes, nodes,
    output, the module's scale constants, and with a uquant.stream.Stream its weights file's spec."""
    layers = {} if stream is None else stream.layers
    nodes = tuple(node_spec(plan, s, layout, layers.get(i)) for i, s in enumerate(plan.steps))
    inp = (plan.n_in, plan.input.qmin, plan.input.qmax, tuple(int(d) for d in plan.input_shape))
    return (plan.name, inp, tuple(plan.buffers), nodes,
            (plan.buffer_of[plan.output_value], plan.n_out, plan.output.qmin), module_constants(plan),
            None if stream is None else stream.spec)


def checksum(plan: Plan, layout: str | None = None, stream=None) -> int:
    return rt.spec_crc(*model_args(plan, layout, stream))


def memory(plan: Plan) -> dict[str, int]:
    """Bytes the imported model holds on a 32-bit board (weights, int32 parameters, activation buffers); data that
    several steps share (shared_data: an unrolled LSTM's steps) counts once."""
    dense = plan.compute_steps
    weights = sum(len(w) for w in {s.weights for s in dense})
    params = sum(4 * len(w) + 12 * (len(f) // 3) + len(t or b"")
                 for w, f, t in {(tuple(s.words), tuple(s.fixes), s.table) for s in dense})
    sat = [s for s in dense if s.sat_pairs]  # the pair list, each listed channel's c_lo, and the words' array copy
    params += sum(len(sat_pairs_bytes(s.sat_pairs)) + 4 * len(set(s.sat_pairs[0::2])) + 4 * len(s.words) for s in sat)
    params += sum(float_mean_bytes(s) for s in plan.steps if isinstance(s, FloatMeanStep))
    scratch = sum(s.K for s in dense if s.kind == "conv")
    return {"weights": weights, "params": params, "exceptions": sum(len(s.fixes) // 3 for s in dense),
            "buffers": sum(plan.buffers), "scratch": scratch,
            "dense_weights": sum(len(w) for w in {s.weights for s in dense if s.kind == "dense"}),
            "conv_kernel_extra": sum(conv_kernel_extra(s.geometry, len(s.weights)) for s in dense if s.kind == "conv")}


def float_mean_bytes(s: FloatMeanStep) -> int:
    """A float mean's tables: dequantized mantissas (int32), their exponents (bytes), 255 thresholds (int32)."""
    return 4 * len(s.mantissas) + len(s.exponents) + 4 * len(s.thresholds)


def conv_kernel_extra(g, weight_bytes: int) -> int:
    """What the asm conv kernels (uquant_thumbconv, uquant_dsp) allocate for a conv layer when the model is built,
    about: 13-word channel records, the weights in their order, the zero-padded input."""
    C, H, Wd, N = g[0], g[1], g[2], g[3]
    return 52 * N + weight_bytes + C * (H + 2 * g[8]) * (Wd + 2 * g[9])


def f32_bits(x: float) -> int:
    return int(np.array(x, np.float32).view(np.uint32))


def bits_f32(bits: int) -> float:
    return float(np.array(bits, np.uint32).view(np.float32))


def _bytes_lines(data: bytes, indent: str) -> list[str]:
    if not data:
        return [indent + "b''"]
    return [indent + repr(data[i:i + BYTES_PER_LINE]) for i in range(0, len(data), BYTES_PER_LINE)]


SHARED_MIN = 32  # bytes: shorter constants are not worth a name


def shared_data(nodes, skip=()) -> dict[bytes, str]:
    """bytes constants that two or more nodes hold (an unrolled LSTM's steps share their weights, words and code
    tables) -> the module-level name that holds them once: the board then keeps one object for all of them."""
    seen: dict[bytes, int] = {}
    for i, node in enumerate(nodes):
        if i in skip:
            continue
        for v in node:
            if isinstance(v, bytes) and len(v) >= SHARED_MIN:
                seen[v] = seen.get(v, 0) + 1
    return {v: f"_D{k}" for k, v in enumerate(v for v, n in seen.items() if n > 1)}


def _node_repr(node, shared: dict[bytes, str]) -> str:
    """repr(node), with shared bytes constants by name."""
    parts = [shared[v] if isinstance(v, bytes) and v in shared else repr(v) for v in node]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _header(plan: Plan, module: str, source: str, stream=None) -> list[str]:
    inp, out = plan.input, plan.output
    mem = memory(plan)
    family = ", ".join(sorted({s.family for s in plan.compute_steps}))
    lines = [
        f"# {module}.py -- generated by uquant {__version__} from {source}; do not edit.",
        "#",
        *([f"# Engine: {plan.engine} (torch's {family} requantization): every output code equals torch's int_repr()."]
          if inp.formula != "pt2e" else
          ["# Source: a PT2E program (float32 ops between quantize and dequantize, whatever the engine): every",
           "# element-wise step equals torch's codes; linear, conv and average pooling agree within one code (torch",
           "# sums in float32 in an unknown order; measured, see the README)."]),
        f"# Input : {plan.n_in} codes (shape {'x'.join(map(str, plan.input_shape))}), {inp.dtype}, "
        f"scale {inp.scale!r}, zero point {inp.zero_point}",
        f"# Output: {plan.n_out} codes, {out.dtype}, scale {out.scale!r}, zero point {out.zero_point};"
        " real value = scale * (code - zero point)",
        "#",
        "# Steps (acc = exact integer sum of (x - x_zp) * (w - w_zp); y = requantized output code):",
    ]
    for s in plan.steps:
        lines.append(f"#   {s.name:<16} {describe_step(s)}")
    lines += [
        "#",
        f"# Memory on the board: weights {mem['weights']} B, requantization parameters {mem['params']} B,"
        f" activations {mem['buffers']} B in {len(plan.buffers)} buffer(s) {list(plan.buffers)}"
        + (f", conv scratch {mem['scratch']} B." if mem["scratch"] else "."),
        *([f"# Streamed: {len(stream.layers)} layer(s) read their weights and words from {stream.file} ("
           f"{len(stream.data)} B, next to this module) into one {stream.buffer} B buffer, a chunk at a time."]
          if stream is not None else []),
        "# Per output channel, 7 int32 words: c (128 + weight zero point), c_lo, W, A, D >> 30, D & (2**30 - 1), S,",
        "#   acc = sum(x * w_stored) - c * sum(x);  a = clamp(acc - c_lo, 0, W);  y = floor((a * A + D) / 2**S)",
        "#   then y is clipped to the layer's [lo, hi] (the two numbers after the layer's sizes). They are stored",
        "#   as little-endian bytes (a tuple literal would cost the board ~4x its size in heap at import).",
        "# (for S < 30 the fifth number is D itself) -- see uquant_rt.requant.",
        "#",
        f"# Use:  import {module}; {module}.run(codes) -> output codes;  {module}.predict(codes) -> class index",
    ]
    return lines


def describe_step(s: Step) -> str:
    shape = "x".join(map(str, s.out_shape))
    if isinstance(s, DenseStep):
        extra = (" + ReLU" if s.source.relu else "") + "".join(f" + {t.what}" for t in s.tables)
        exc = f", {len(s.fixes) // 3} exception(s)" if s.fixes else ""
        what = f"Linear {s.K} -> {s.N}" if s.kind == "dense" else f"Conv{s.source.dim}d -> {shape}"
        return f"{what}{extra}, {s.macs} MACs, codes [{s.lo}, {s.hi}]{exc}"
    if isinstance(s, AvgPoolStep):
        exc = f", {len(s.fixes) // 3} exception(s)" if s.fixes else ""
        return (f"{s.source.describe().split(': ', 1)[1]} -> {shape} (torch {s.formula}; "
                f"{len(s.classes)} divisor class(es)){exc}")
    if isinstance(s, TableStep):
        return f"{s.what} (code table) -> {shape}"
    if isinstance(s, FloatMeanStep):
        return f"mean over {s.n} positions -> {shape} (float32)"
    if isinstance(s, AddStep):
        exc = (len(s.vec_fixes) + len(s.tail_fixes)) // 2
        return f"add -> {shape} ({s.family}), {exc} exception(s)"
    return f"{s.kind} -> {shape}"


def _words_lines(words: list[int], per: int, indent: str) -> list[str]:
    return [indent + ", ".join(str(v) for v in words[i:i + per]) + "," for i in range(0, len(words), per)]


def generate(plan: Plan, module: str = "model_q", source: str = "a torch model", layout: str | None = None,
             stream=None) -> str:
    """The module's source; layout: the order of dense weights (LAYOUTS), "thumb" for boards whose dense layers
    run on uquant_thumb (other tiers then copy W back into rows when the model is built); stream: a
    uquant.stream.Stream, whose layers read their weights from its file instead of the module."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown weight layout {layout!r}")
    name, inp, bufs, nodes, out, scales, weights = model_args(plan, layout, stream)
    streamed = {} if stream is None else stream.layers
    platform = scales[4]
    shared = shared_data(nodes, streamed)
    lines = _header(plan, module, source, stream)
    lines += [
        "from uquant_rt import Model",
        "",
    ]
    if shared:
        lines.append("# Data several steps share (one object each on the board), named in the nodes below")
        for data, var in shared.items():
            lines.append(f"{var} = (")
            lines += _bytes_lines(data, "    ")
            lines.append(")")
        lines.append("")
    lines += [
        *([f'INPUT_QUANTIZE = "pt2e"  # hosts quantize floats as PT2E does: round(x * (1/scale)) + zero_point',
           ""] if plan.input.formula == "pt2e" else []),
        "# The checksum covers everything passed to Model, the scale constants too: a changed or truncated file",
        "# raises CorruptModel (or fails to parse) instead of computing something else.",
        "model = Model(",
        f"    {name!r}, {checksum(plan, layout, stream):#010x}, {inp}, {bufs},",
        "    (",
    ]
    for i, (s, node) in enumerate(zip(plan.steps, nodes)):
        if i in streamed:
            lines.append(f"        {node!r},  # {s.name}: weights and words at offset {streamed[i][0]} of "
                         f"{stream.file}, {streamed[i][1]} channel(s) per chunk")
            continue
        if not isinstance(s, DenseStep):
            lines.append(f"        {_node_repr(node, shared)},  # {s.name}")
            continue

        def data_lines(v, indent=" " * 12):
            return [indent + shared[v]] if v in shared else _bytes_lines(v, indent)
        w = 7  # the weights, then the words, the exceptions, the table, the saturating pairs, the layout
        head = ", ".join(repr(v) for v in node[:w])
        lines.append(f"        ({head},  # {s.name}")
        if layout is not None and s.kind == "dense":
            lines.append(f"            # weights in {layout} order (uquant_rt.{layout}_index), for the board's kernels")
        lines += data_lines(node[w])
        lines[-1] += ","
        lines.append(f"            # requantization words, int32 little-endian, 7 per channel; channel 0: "
                     + ", ".join(map(str, s.words[:7])))
        lines += data_lines(node[w + 1])
        lines[-1] += ","
        if s.fixes:
            lines.append(f"            # exceptions: int32 (channel, a, code) triples; the first: "
                         + ", ".join(map(str, s.fixes[:3])))
            lines += data_lines(node[w + 2])
            lines[-1] += ","
        else:
            lines.append("            None,")
        if s.table is not None:
            lines.append("            # code table applied last: " + "; ".join(t.what for t in s.tables))
            lines += data_lines(s.table)
            lines[-1] += ","
        else:
            lines.append("            None,")
        if s.sat_pairs:
            lines.append(f"            # {len(s.sat_pairs) // 2} pairs that int16 saturation can change on {platform}: "
                         "u16 channel, count, taps")
            lines += data_lines(node[w + 4])
            lines[-1] += ","
        elif layout is not None and s.kind == "dense":
            lines.append("            None,")
        if layout is not None and s.kind == "dense":
            lines.append(f"            {layout!r},")
        lines.append("        ),")
    lines += [
        "    ),",
        f"    {out},",
        f"    version={rt.VERSION},",
        *([f"    # the weights file: name, size, CRC-32, the chunk buffer's size; found next to this module",
           f"    weights={weights!r}, where=__file__,"] if stream is not None else []),
        f"    # input scale {plan.input.scale!r} (float32 bits), zero point; output scale {plan.output.scale!r}, zero",
        f"    # point; the platform whose torch bytes this module reproduces (uquant.platforms)",
        f"    scales=({scales[0]:#010x}, {scales[1]}, {scales[2]:#010x}, {scales[3]}, {platform!r}),",
        ")",
        "# run(codes) -> output codes; predict(codes) -> class index; the scales' float32 bit patterns, for hosts",
        "# that quantize inputs or dequantize outputs exactly. One statement: a cut anywhere in it fails the import.",
        "run, predict, INPUT_SCALE_BITS, INPUT_ZERO_POINT, OUTPUT_SCALE_BITS, OUTPUT_ZERO_POINT, PLATFORM = "
        "model.exports()",
        "",
    ]
    return "\n".join(lines)
