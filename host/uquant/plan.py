"""The integer plan: the device steps a model lowers to, with their proven parameters and buffers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import requant as rq
from .ir import Conv, Linear, QParams, Table


@dataclass
class Step:
    """One device kernel call: reads values `srcs`, writes value `dst` (names of values in the plan)."""

    kind: str
    name: str
    srcs: list[str]
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
    geometry: tuple = ()  # conv: (C, H, W, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT)
    family: str = ""  # which of torch's requantization formulas this step reproduces
    requantize: object = None  # torch's code before any table, as a function of acc' (monotone)
    table_codes: np.ndarray | None = None  # the composed code table, indexed by code - qmin
    # fbgemm's int16-saturating pair sums (platforms without VNNI), for the pairs that can leave int16: flat
    # (channel, k) with k the first tap of the pair, the device corrects the exact sum for just those (dense);
    # a conv with any such pair saturates every pair of its windows (geometry's SAT).
    sat_pairs: tuple = ()
    # (platform attribute, why torch's bytes for this step depend on it) for each one they depend on
    platform_notes: tuple = ()

    @property
    def macs(self) -> int:
        positions = int(np.prod(self.out_shape[1:])) if self.kind == "conv" else 1
        return self.K * self.N * positions

    @property
    def platform_saturation(self) -> bool:
        """Does the device reproduce the platform's int16 pair saturation here (not fbgemm's depthwise fast path,
        which saturates on every platform)?"""
        return bool(self.sat_pairs) or (self.kind == "conv" and self.geometry[-1] == 2)


@dataclass
class PoolStep(Step):
    geometry: tuple = ()  # (C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)

    @property
    def macs(self) -> int:
        return 0


@dataclass
class AvgPoolStep(Step):
    """Average pooling (kind 'avgpool'): per window acc = sum of valid taps - count * zp, then the requantization
    of the window's divisor class (see device/uquant_rt.py: avgpool)."""

    geometry: tuple = ()  # (C, H, W, OH, OW, zp, cv, K): zp subtracted per tap (0: raw sums), channels < cv use classes + K
    rows: tuple = ()  # (first, end) input row of each output row's window, clipped to the input
    cols: tuple = ()
    cls: bytes = b""  # class index of each output position (OH * OW)
    lo: int = 0
    hi: int = 255
    words: list[int] = field(default_factory=list)  # 6 per class: c_lo, W, A, D >> 30, D & (2**30-1), S
    fixes: list[int] = field(default_factory=list)  # flat (class, a, code) triples
    classes: list[tuple] = field(default_factory=list)  # (taps, divisor, SIMD block) per class
    formula: str = ""  # which of torch's formulas (shared reference P1..P5)
    acc_lo: np.ndarray | None = None
    acc_hi: np.ndarray | None = None
    fn: object = None  # torch's output code per class as a function of acc (shape (..., classes))
    channels: list[rq.ChannelRequant] = field(default_factory=list)
    source: object = None
    # (platform attribute, why torch's bytes for this step depend on it) for each one they depend on
    platform_notes: tuple = ()
    macs = 0


@dataclass
class Plan:
    name: str
    engine: str
    input: QParams
    input_shape: tuple[int, ...]
    steps: list[Step]
    sizes: dict[str, int]  # bytes of each value ("input", or the name of the op that computes it)
    buffer_of: dict[str, int]  # value -> buffer index (-1: the caller's input)
    buffers: list[int]  # buffer sizes in bytes
    output_value: str  # the value holding the result

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        return self.sizes[self.output_value]

    output_q: QParams | None = None  # the result's quantization (a final scalar mul changes only the scale)
    platform: object = None  # uquant.platforms.Platform: the CPU-dependent paths of torch reproduced

    @property
    def platform_dependent(self) -> list[tuple[str, str]]:
        """(step, why) for each step whose torch bytes can differ between platforms (see uquant.platforms)."""
        notes = [(s.name, getattr(s, "platform_notes", ())) for s in self.steps]
        return [(name, "; ".join(why for _, why in n)) for name, n in notes if n]

    @property
    def platform_attributes(self) -> set[str]:
        """The Platform attributes (gemm, x86_conv, simd) that this model's torch bytes depend on."""
        return {a for s in self.steps for a, _ in getattr(s, "platform_notes", ())}

    @property
    def output(self) -> QParams:
        return self.output_q or self.steps[-1].out

    @property
    def compute_steps(self) -> list[DenseStep]:
        return [s for s in self.steps if isinstance(s, DenseStep)]


@dataclass
class AddStep(Step):
    """Quantized add: y = clip((Aa*qa + Ab*qb + D) >> S, lo, hi) plus exceptions, per SIMD/tail position."""

    n: int = 0
    n_vec: int = 0  # positions [0, n_vec) use torch's SIMD formula, the rest its scalar tail
    lo: int = 0
    hi: int = 255
    vec: tuple = ()  # (Aa, Ab, D, S)
    vec_fixes: list[int] = field(default_factory=list)  # flat (qa * 256 + qb, code) pairs
    tail: tuple = ()
    tail_fixes: list[int] = field(default_factory=list)
    family: str = ""
    # How torch lays the tensor out in memory, which decides the SIMD/tail positions: (0, 0) for contiguous,
    # (C, H*W) for channels-last (what quantized convolutions return).
    memory_order: tuple[int, int] = (0, 0)
    # Broadcasting (the second input per channel): per channel, how many of its positions torch computes in SIMD
    # blocks (the rest in the scalar tail); None for same shapes.
    cuts: tuple | None = None
    macs = 0


@dataclass
class CatStep(Step):
    """Concatenation along channels: each input's codes copied, through a code table where qparams differ."""

    parts: list[tuple[int, bytes | None]] = field(default_factory=list)  # (size, table or None) per input
    outer: int = 1  # cat along an inner axis: the parts repeat this many times (each part's size is per repeat)
    macs = 0


@dataclass
class CopyStep(Step):
    """A byte move (transpose / permute / a chunk's piece), kind 'copy': out in row-major order of `sizes` reads
    x[offset + sum(i_k * strides_k)]; geometry = (offset, 4 sizes, 4 strides)."""

    geometry: tuple = ()
    macs = 0


@dataclass
class TableStep(Step):
    """An element-wise code table on its own (when no Linear/Conv before it can absorb it)."""

    n: int = 0
    table: bytes = b""
    what: str = ""
    n_vec: int = 0  # positions [0, n_vec) use `table` (torch's SIMD blocks), the rest `tail`
    tail: bytes | None = None
    # How torch lays the tensor out in memory, which decides the SIMD/tail positions: (0, 0) for contiguous,
    # (C, H*W) for channels-last (what quantized convolutions return).
    memory_order: tuple[int, int] = (0, 0)
    macs = 0


@dataclass
class FloatMeanStep(Step):
    """torch's x86/fbgemm mean over H, W of a channels-last quint8 tensor (kind 'fmean'): float32 emulated in small
    ints (uquant.fmean; device/uquant_rt.py: fmean)."""

    C: int = 0
    n: int = 0  # positions per channel (H * W)
    level_power: int = 4  # ATen's cascade: chunks of 2**level_power rows
    mantissas: list[int] = field(default_factory=list)  # code -> the dequantized float's m (signed, 24 bits)
    exponents: bytes = b""  # code -> its e + fmean.E_BIAS
    e_key: int = 0  # the keys' exponent origin (fmean.key_of)
    thresholds: list[int] = field(default_factory=list)  # the smallest key giving each code 1..255
    macs = 0


@dataclass
class MulStep(Step):
    """Quantized mul: c = (a - za)(b - zb) exactly, then one proven requantization of c (as for a layer)."""

    n: int = 0
    za: int = 0  # zero points in stored codes (code - qmin)
    zb: int = 0
    lo: int = 0
    hi: int = 255
    words: tuple = ()  # c_lo, W, A, D >> 30, D & (2**30 - 1), S
    fixes: list[int] = field(default_factory=list)  # flat (a, code) pairs
    hw: int = 0  # broadcasting: the second input holds one code per channel, for hw positions each; 0: same shape
    macs = 0
