"""The intermediate representation: a short, printable list of quantized ops with their scales and zero points.

Every loader (FX, eager, TorchScript, state_dict) produces a `Graph`; lowering turns a Graph into integer
parameters for the device. Floats live here (they are torch's numbers); none survive past lowering.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .engines import DTYPE_RANGE


class ConversionError(ValueError):
    """An expected problem with the user's model or file: the message says what, where and what to do."""


def unique_name(names: set[str], base: str) -> str:
    """base, else base_1, base_2, ...: the first not in `names`, which it joins (loaders naming their ops)."""
    name, k = base, 1
    while name in names:
        name, k = f"{base}_{k}", k + 1
    names.add(name)
    return name


@dataclass(frozen=True)
class QParams:
    """How one tensor is quantized: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int
    dtype: str = "quint8"
    # whose float <-> code formulas: "aten" (torch.quantize_per_tensor, quantized kernels) or "pt2e"
    # (torch.ops.quantized_decomposed, what a convert_pt2e program runs; see uquant.pt2e_ops)
    formula: str = "aten"

    @property
    def qmin(self) -> int:
        return DTYPE_RANGE[self.dtype][0]

    @property
    def qmax(self) -> int:
        return DTYPE_RANGE[self.dtype][1]

    def __str__(self) -> str:
        pt2e = ", PT2E" if self.formula == "pt2e" else ""
        return f"{self.dtype}(scale={self.scale:.6g}, zero_point={self.zero_point}{pt2e})"


@dataclass
class Linear:
    """A quantized Linear (optionally with a fused ReLU): y = requant(sum (x - x_zp)(w - w_zp) + bias)."""

    name: str
    weight: np.ndarray  # int8 codes, shape (out_features, in_features)
    w_scale: np.ndarray  # float64, one per output channel (repeated for per-tensor weights)
    w_zero_point: np.ndarray  # int64, one per output channel
    per_channel: bool
    bias: np.ndarray | None  # float32, shape (out_features,), or None
    out: QParams
    relu: bool = False
    inputs: list[str] = field(default_factory=list)  # value names read; empty: the previous op's output

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def describe(self) -> str:
        kind = "per-channel" if self.per_channel else "per-tensor"
        relu = " + ReLU" if self.relu else ""
        return f"{self.name}: Linear {self.in_features}->{self.out_features}{relu}, {kind} qint8 weights, out {self.out}"


@dataclass
class Table:
    """An element-wise map from each input code to an output code, computed on the host by torch itself.

    Covers a ReLU on a quantized tensor (max(q, zero_point)) and FX's `dequantize -> float ReLU ->
    quantize_per_tensor` chains: any per-element function of one code is a 256-entry table.
    """

    name: str
    what: str  # e.g. "relu", "dequantize -> relu -> quantize"
    table: np.ndarray  # int64, indexed by input code - qmin of the input dtype
    out: QParams
    inputs: list[str] = field(default_factory=list)
    # torch's element-wise kernels may round differently in the scalar tail after their 64-element SIMD blocks
    # (sigmoid, leaky_relu, ...): then `table` holds the SIMD result and `tail_table` the tail's.
    tail_table: np.ndarray | None = None

    def describe(self) -> str:
        return f"{self.name}: {self.what} (code table), out {self.out}"


@dataclass
class Conv:
    """A quantized Conv1d/Conv2d (optionally with a fused ReLU); zero padding pads with the input zero point."""

    name: str
    dim: int  # 1 or 2
    weight: np.ndarray  # int8 codes, shape (out_channels, in_channels / groups, kh, kw); kh == 1 for Conv1d
    w_scale: np.ndarray
    w_zero_point: np.ndarray
    per_channel: bool
    bias: np.ndarray | None
    out: QParams
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    relu: bool = False
    inputs: list[str] = field(default_factory=list)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = (shape[0], 1, shape[1]) if self.dim == 1 else shape
        kh, kw = self.weight.shape[2:]
        oh = (H + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (W + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return (self.out_channels, ow) if self.dim == 1 else (self.out_channels, oh, ow)

    def describe(self) -> str:
        k = "x".join(map(str, self.weight.shape[2:] if self.dim == 2 else self.weight.shape[3:]))
        relu = " + ReLU" if self.relu else ""
        return (f"{self.name}: Conv{self.dim}d {self.weight.shape[1] * self.groups}->{self.out_channels} k{k} "
                f"s{self.stride} p{self.padding} d{self.dilation} g{self.groups}{relu}, out {self.out}")


@dataclass
class MaxPool:
    """MaxPool1d/2d on codes: torch takes the max of the codes; scale and zero point pass through."""

    name: str
    dim: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool
    out: QParams
    inputs: list[str] = field(default_factory=list)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = (shape[0], 1, shape[1]) if self.dim == 1 else shape
        dims = []
        for n, k, s, p, d in zip((H, W), self.kernel, self.stride, self.padding, self.dilation):
            span = n + 2 * p - d * (k - 1) - 1
            o = (-(-span // s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (o - 1) * s >= n + p:  # torch: the last window must start inside
                o -= 1
            dims.append(o)
        return (C, dims[1]) if self.dim == 1 else (C, dims[0], dims[1])

    def describe(self) -> str:
        return f"{self.name}: MaxPool{self.dim}d k{self.kernel} s{self.stride} p{self.padding}"


@dataclass
class AvgPool:
    """AvgPool1d/2d, or AdaptiveAvgPool1d/2d (output_size set), on codes; the output keeps the input's qparams
    (but in a PT2E program, whose float pooling is quantized afresh).

    A 1-D pool works as a 2-D one of height 1 (kernel/stride/padding/output_size hold (1, k) etc.).
    """

    name: str
    dim: int
    out: QParams
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    output_size: tuple | None = None  # adaptive: (oh, ow), None entries keep the input's size
    inputs: list[str] = field(default_factory=list)

    @property
    def adaptive(self) -> bool:
        return self.output_size is not None

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = (shape[0], 1, shape[1]) if self.dim == 1 else shape
        if self.adaptive:
            dims = [n if o is None else int(o) for n, o in zip((H, W), self.output_size)]
        else:
            dims = []
            for n, k, s, p in zip((H, W), self.kernel, self.stride, self.padding):
                if p > k // 2:
                    raise ConversionError(f"{self.name}: padding {p} is more than half the kernel {k} "
                                          "(torch refuses this too)")
                span = n + 2 * p - k
                o = (-(-span // s) if self.ceil_mode else span // s) + 1
                if self.ceil_mode and (o - 1) * s >= n + p:  # torch: the last window must start inside
                    o -= 1
                dims.append(o)
        if min(dims) <= 0:
            raise ConversionError(f"{self.name}: output would be empty for input shape {shape}")
        return (C, dims[1]) if self.dim == 1 else (C, dims[0], dims[1])

    def describe(self) -> str:
        if self.adaptive:
            size = self.output_size[1] if self.dim == 1 else self.output_size
            return f"{self.name}: AdaptiveAvgPool{self.dim}d to {size}"
        k, s, p = ((v[1] for v in (self.kernel, self.stride, self.padding)) if self.dim == 1
                   else (self.kernel, self.stride, self.padding))
        return (f"{self.name}: AvgPool{self.dim}d k{k} s{s} p{p}" + (" ceil_mode" if self.ceil_mode else "")
                + ("" if self.count_include_pad else " count_include_pad=False"))


@dataclass(frozen=True)
class Size:
    """A Python int the model computes from a tensor's size (x.size(i), then // * + - with ints), known once the
    shapes are: FX records the arithmetic, not the numbers. dim counts torch's dims (0: the batch); None: the
    whole size tuple (before a getitem)."""

    value: str  # the IR value whose shape is read
    dim: int | None = None
    ops: tuple = ()  # (operator name, int or Size) applied in order

    def then(self, op: str, other) -> "Size":
        return Size(self.value, self.dim, self.ops + ((op, other),))

    def resolve(self, shapes: dict, where: str) -> int:
        if self.dim is None or self.value not in shapes:
            raise ConversionError(f"{where}: a size the model computes could not be resolved")
        shape = shapes[self.value]
        d = self.dim + len(shape) + 1 if self.dim < 0 else self.dim
        if d == 0 or not 0 < d <= len(shape):
            raise ConversionError(f"{where}: uses size({self.dim}) of {self.value} (shape {shape} per sample): only "
                                  "per-sample sizes are supported in arithmetic")
        v = shape[d - 1]
        for op, other in self.ops:
            o = other.resolve(shapes, where) if isinstance(other, Size) else int(other)
            v = {"floordiv": lambda a, b: a // b, "mul": lambda a, b: a * b, "add": lambda a, b: a + b,
                 "sub": lambda a, b: a - b}[op](v, o)
        return v

    def __str__(self) -> str:
        return f"{self.value}.size({self.dim})" + "".join(f" {op} {o}" for op, o in self.ops)


def resolve_sizes(sizes, shapes: dict, where: str) -> tuple[int, ...]:
    return tuple(d.resolve(shapes, where) if isinstance(d, Size) else int(d) for d in sizes)


def sample_dim(dim: int, rank: int, where: str) -> int:
    """torch's dim (batch included, may be negative) -> the axis of one sample's shape of `rank` dims."""
    d = dim + rank + 1 if dim < 0 else dim
    if not 1 <= d <= rank:
        raise ConversionError(f"{where}: dim {dim} is not a per-sample axis of a tensor of {rank + 1} dims "
                              "(the batch axis cannot be split, moved or concatenated)")
    return d - 1


@dataclass
class Reshape:
    """flatten / view / reshape: the codes keep their order (torch's row-major layout); only the shape changes."""

    name: str
    shape: tuple | None  # per sample (ints or Size), -1 once for "the rest"; None: unchanged (only qparams change)
    out: QParams
    inputs: list[str] = field(default_factory=list)

    def out_shape(self, shape: tuple[int, ...], shapes: dict | None = None) -> tuple[int, ...]:
        if self.shape is None:  # codes and shape unchanged, only the qparams (quantized mul by a scalar)
            return shape
        n = int(np.prod(shape))
        sizes = resolve_sizes(self.shape, shapes or {}, self.name)
        rest = int(np.prod([d for d in sizes if d != -1]))
        new = tuple(n // max(rest, 1) if d == -1 else d for d in sizes)
        if int(np.prod(new)) != n:
            raise ConversionError(f"{self.name}: cannot reshape {shape} to {self.shape}")
        return new

    def describe(self) -> str:
        return f"{self.name}: reshape to {self.shape if self.shape is None else tuple(map(str, self.shape))}"


@dataclass
class Permute:
    """transpose / permute (+ contiguous): the codes are copied into the permuted order; qparams unchanged."""

    name: str
    dims: tuple[int, ...]  # torch's dims, batch included: a full permutation, or the two dims of a transpose
    out: QParams
    transpose: bool = False
    inputs: list[str] = field(default_factory=list)

    def perm(self, rank: int) -> tuple[int, ...]:
        """The permutation of one sample's axes."""
        dims = [sample_dim(d, rank, self.name) if d not in (0, -rank - 1) else -1 for d in self.dims]
        if self.transpose:
            if -1 in dims:
                raise ConversionError(f"{self.name}: transposing the batch axis is not supported")
            p = list(range(rank))
            p[dims[0]], p[dims[1]] = p[dims[1]], p[dims[0]]
            return tuple(p)
        if len(dims) != rank + 1 or dims[0] != -1 or sorted(dims[1:]) != list(range(rank)):
            raise ConversionError(f"{self.name}: permute{tuple(self.dims)} must keep the batch first and name every "
                                  f"axis of a tensor of {rank + 1} dims")
        return tuple(dims[1:])

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape[a] for a in self.perm(len(shape)))

    def describe(self) -> str:
        return f"{self.name}: {'transpose' if self.transpose else 'permute'}{tuple(self.dims)} (a copy)"


@dataclass
class Slice:
    """One piece of chunk / split along a dim: those codes copied out; qparams unchanged."""

    name: str
    dim: int  # torch's dim, batch included
    index: int  # which piece
    out: QParams
    chunks: int | None = None  # chunk(chunks), or split(split)
    split: int | tuple | None = None
    inputs: list[str] = field(default_factory=list)

    def bounds(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(axis of one sample, start, stop) of this piece."""
        axis = sample_dim(self.dim, len(shape), self.name)
        n = shape[axis]
        if self.chunks is not None:
            step = -(-n // self.chunks)
            sizes = [min(step, n - s) for s in range(0, n, step)]
        elif isinstance(self.split, int):
            sizes = [min(self.split, n - s) for s in range(0, n, self.split)]
        else:
            sizes = list(self.split)
            if sum(sizes) != n:
                raise ConversionError(f"{self.name}: split sizes {sizes} do not add up to {n}")
        if not 0 <= self.index < len(sizes) and not -len(sizes) <= self.index < 0:
            raise ConversionError(f"{self.name}: piece {self.index} of {len(sizes)}")
        i = self.index % len(sizes)
        start = sum(sizes[:i])
        return axis, start, start + sizes[i]

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        axis, start, stop = self.bounds(shape)
        return shape[:axis] + (stop - start,) + shape[axis + 1:]

    def describe(self) -> str:
        how = f"chunk({self.chunks})" if self.chunks is not None else f"split({self.split})"
        return f"{self.name}: {how}[{self.index}] along dim {self.dim} (a copy)"


@dataclass
class Mean:
    """Quantized mean over H, W (dims [2, 3]) of a (C, H, W) sample; same qparams as its input (torch's)."""

    name: str
    dims: tuple[int, ...]
    keepdim: bool
    out: QParams
    inputs: list[str] = field(default_factory=list)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        axes = sorted({sample_dim(d, len(shape), self.name) for d in self.dims})
        if len(shape) != 3 or axes != [1, 2]:
            raise ConversionError(f"{self.name}: mean over dims {list(self.dims)} of shape {shape}: only over H, W "
                                  "([2, 3]) of an (N, C, H, W) tensor is supported")
        return (shape[0], 1, 1) if self.keepdim else (shape[0],)

    def describe(self) -> str:
        return f"{self.name}: mean over dims {list(self.dims)}" + (" keepdim" if self.keepdim else "")


@dataclass
class Binary:
    """An element-wise op on two tensors of the same shape, into new output qparams (optionally + ReLU)."""

    name: str
    out: QParams
    relu: bool = False
    inputs: list[str] = field(default_factory=list)  # two value names

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        """Same shapes, or channel-wise broadcasting (squeeze-and-excitation): (C, 1, 1) with (C, H, W), or
        (C, 1) with (C, L), in either order."""
        if len(ins) == 2 and ins[0] == ins[1]:
            return ins[0]
        if len(ins) == 2 and broadcast_roles(*ins) is not None:
            return max(ins, key=lambda s: int(np.prod(s)))
        raise ConversionError(f"{self.name}: {type(self).__name__.lower()} needs two inputs of the same shape, or "
                              f"a per-channel (C, 1, 1) one with a (C, H, W) one, gets {ins} (other broadcasting is "
                              "not supported)")

    def describe(self) -> str:
        op = type(self).__name__.lower() + ("_relu" if self.relu else "")
        return f"{self.name}: {op}({', '.join(self.inputs)}), out {self.out}"


def broadcast_roles(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int] | None:
    """(index of the full input, index of the per-channel one) if a and b are a (C, H, W) / (C, L) tensor and a
    (C, 1, 1) / (C, 1) one of the same C (either order), else None (same shapes are not broadcasting)."""
    for big, small in ((0, 1), (1, 0)):
        full, per = (a, b)[big], (a, b)[small]
        if (len(full) == len(per) in (2, 3) and full[0] == per[0] and all(d == 1 for d in per[1:])
                and any(d != 1 for d in full[1:])):
            return big, small
    return None


class Add(Binary):
    """Quantized add / add_relu."""


class Mul(Binary):
    """Quantized mul / mul_relu."""


@dataclass
class Cat:
    """Concatenation along the channel (feature) axis; inputs with other qparams are requantized by torch."""

    name: str
    out: QParams
    inputs: list[str] = field(default_factory=list)
    dim: int = 1  # torch's dim, batch included

    def describe(self) -> str:
        where = "channels" if self.dim == 1 else f"dim {self.dim}"
        return f"{self.name}: cat({', '.join(self.inputs)}) along {where}, out {self.out}"


Op = Linear | Table | Conv | MaxPool | AvgPool | Reshape | Permute | Slice | Mean | Add | Mul | Cat


@dataclass
class Graph:
    """A chain of quantized ops: quantize(input) -> ops... -> dequantize.

    input_shape is one sample's shape in torch's order: (features,), (C, L) or (C, H, W).
    """

    name: str
    input: QParams
    input_shape: tuple[int, ...] = ()
    ops: list[Op] = field(default_factory=list)
    # value name -> the name of the source-program node whose tensor it equals (PT2E: its quantize node), where
    # the loader knows one: lets tests and tools compare every value with torch's own
    origins: dict[str, str] = field(default_factory=dict)
    # what the loader changed on the way, one line each, for the user (e.g. a final softmax dropped)
    notes: list[str] = field(default_factory=list)
    # float ops the loader dropped from the end of the model (a final softmax), in order: callables on a float
    # tensor of the model's output shape, which the self-check applies to the dequantized output to compare
    dropped: list = field(default_factory=list)

    @property
    def in_features(self) -> int:
        return int(np.prod(self.input_shape)) if self.input_shape else 0

    @in_features.setter
    def in_features(self, n: int) -> None:
        self.input_shape = (int(n),) if n else ()

    def describe(self) -> str:
        lines = [f"model {self.name}: input {self.input_shape} x {self.input}"]
        lines += ["  " + op.describe() for op in self.ops]
        return "\n".join(lines)

    def output_qparams(self) -> QParams:
        return self.ops[-1].out if self.ops else self.input

    def resolve_inputs(self) -> None:
        """Give every op explicit input names (a chain's ops read the previous op) and check they exist."""
        seen, prev = {"input"}, "input"
        for op in self.ops:
            if not op.inputs:  # a chain op: nothing refers to it by name, so a repeated name can be made unique
                op.inputs = [prev]
                base, k = op.name, 1
                while op.name in seen:
                    op.name, k = f"{base}_{k}", k + 1
            if op.name in seen:
                raise ConversionError(f"two ops are named {op.name!r}")
            for v in op.inputs:
                if v not in seen:
                    raise ConversionError(f"{op.name}: reads {v!r}, which no earlier op produces")
            seen.add(op.name)
            prev = op.name

    @property
    def output(self) -> str:
        return self.ops[-1].name

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each value's shape (per sample), checking that every op fits its inputs."""
        if not self.input_shape:
            raise ConversionError(self._unknown_shape_message())
        if min(self.input_shape) <= 0:
            raise ConversionError(f"input shape {tuple(self.input_shape)}: every size must be positive")
        self.resolve_inputs()
        shapes = {"input": tuple(self.input_shape)}
        for op in self.ops:
            ins = [shapes[v] for v in op.inputs]
            shape = ins[0]
            if isinstance(op, Linear):
                if len(shape) != 1:
                    raise ConversionError(f"{op.name}: Linear needs a flat input, gets shape {shape} "
                                          "(add a Flatten before it)")
                if op.in_features != shape[0]:
                    raise ConversionError(f"{op.name}: expects {op.in_features} inputs but receives {shape[0]}")
                shape = (op.out_features,)
            elif isinstance(op, Conv):
                want = 2 if op.dim == 1 else 3
                if len(shape) != want or shape[0] != op.weight.shape[1] * op.groups:
                    raise ConversionError(f"{op.name}: Conv{op.dim}d expects {op.weight.shape[1] * op.groups} "
                                          f"input channels in {want} dims, gets shape {shape}")
                shape = op.out_shape(shape)
                if min(shape) <= 0:
                    raise ConversionError(f"{op.name}: output would be empty for input shape {ins[0]}")
            elif isinstance(op, MaxPool):
                if len(shape) != op.dim + 1:
                    raise ConversionError(f"{op.name}: MaxPool{op.dim}d gets shape {shape}")
                shape = op.out_shape(shape)
            elif isinstance(op, AvgPool):
                if len(shape) != op.dim + 1:
                    raise ConversionError(f"{op.name}: {type(op).__name__}{op.dim}d gets shape {shape}")
                shape = op.out_shape(shape)
            elif isinstance(op, Reshape):
                shape = op.out_shape(shape, shapes)
            elif isinstance(op, (Permute, Slice, Mean)):
                shape = op.out_shape(shape)
            elif isinstance(op, Binary):
                shape = op.out_shape(ins)
            elif isinstance(op, Cat):
                k = sample_dim(op.dim, len(shape), op.name)
                if any(len(i) != len(shape) or i[:k] + i[k + 1:] != shape[:k] + shape[k + 1:] for i in ins):
                    raise ConversionError(f"{op.name}: cat inputs differ outside the cat axis (dim {op.dim}): {ins}")
                shape = shape[:k] + (sum(i[k] for i in ins),) + shape[k + 1:]
            if not shape or min(shape) <= 0:
                raise ConversionError(f"{op.name}: output would be empty (shape {shape}) for input shape {ins[0]}; "
                                      f"the model's input shape {tuple(self.input_shape)} is too small")
            shapes[op.name] = shape
        return shapes

    def _unknown_shape_message(self) -> str:
        """Why the input shape is needed, naming the first layer and what it tells us."""
        first = next((op for op in self.ops if isinstance(op, (Linear, Conv))), None)
        if isinstance(first, Conv):
            c = int(first.weight.shape[1]) * first.groups
            want = f"{c},L" if first.dim == 1 else f"{c},H,W"
            return (f"the model's input shape is unknown: its first layer '{first.name}' is a Conv{first.dim}d with "
                    f"{c} input channel(s), and a saved model records no input size; pass one sample's shape, "
                    f"CLI: --input-shape {want} (Python: convert(model, example_input) or input_shape=(...))")
        where = f" (first layer: {first.describe()})" if first is not None else ""
        return ("the model's input shape is unknown" + where + ": pass one sample's shape, CLI: --input-shape "
                "C,H,W (Python: convert(model, example_input) or input_shape=(...))")

    def validate(self) -> None:
        """Check shapes and quantization parameters; raise ConversionError naming the op at fault."""
        _check_qparams(self.input, "the model input")
        for op in self.ops:  # geometry first: shapes() divides by strides
            if isinstance(op, MaxPool) or (isinstance(op, AvgPool) and not op.adaptive):
                dil = getattr(op, "dilation", (1, 1))
                if min(op.kernel) < 1 or min(op.stride) < 1 or min(dil) < 1 or min(op.padding) < 0:
                    raise ConversionError(f"{op.name}: inconsistent pooling: kernel {op.kernel}, stride {op.stride}, "
                                          f"padding {op.padding}, dilation {dil}")
            if isinstance(op, Conv) and (op.groups < 1 or op.out_channels % op.groups or min(op.stride) < 1
                                         or min(op.dilation) < 1 or min(op.padding) < 0):
                raise ConversionError(f"{op.name}: inconsistent convolution: {op.out_channels} output channels, "
                                      f"groups {op.groups}, stride {op.stride}, padding {op.padding}, dilation "
                                      f"{op.dilation}")
        self.shapes()
        for op in self.ops:
            if isinstance(op, (Linear, Conv)):
                n = int(op.weight.shape[0])
                if op.w_scale.shape != (n,) or op.w_zero_point.shape != (n,):
                    raise ConversionError(f"{op.name}: weight scales/zero points do not match {n} output channels")
                if op.bias is not None and op.bias.shape != (n,):
                    raise ConversionError(f"{op.name}: bias has shape {tuple(op.bias.shape)}, expected ({n},)")
                if not np.all(np.isfinite(op.w_scale)) or np.any(op.w_scale <= 0):
                    bad = int(np.argmin(np.isfinite(op.w_scale) & (op.w_scale > 0)))
                    raise ConversionError(f"{op.name}: weight scales must be finite and positive, output channel "
                                          f"{bad} has {op.w_scale[bad]!r}")
                if not np.all(f32_normal(op.w_scale)):
                    bad = int(np.argmin(f32_normal(op.w_scale)))
                    raise ConversionError(f"{op.name}: output channel {bad}'s weight scale {op.w_scale[bad]!r} is "
                                          f"outside float32's normal range [{F32_TINY:.4g}, {F32_MAX:.4g}]")
                if np.any(op.w_zero_point < -128) or np.any(op.w_zero_point > 127):
                    raise ConversionError(f"{op.name}: weight zero points must be in [-128, 127]")
                if op.bias is not None and not np.all(np.isfinite(op.bias)):
                    raise ConversionError(f"{op.name}: bias contains NaN or infinity")
                _check_qparams(op.out, op.name)
            elif isinstance(op, (Add, Mul, Cat)):
                _check_qparams(op.out, op.name)
            elif isinstance(op, Table):
                _check_qparams(op.out, op.name)
                if op.table.shape != (256,) or op.table.min() < op.out.qmin or op.table.max() > op.out.qmax:
                    raise ConversionError(f"{op.name}: code table is not 256 codes within the output dtype")
        if not any(isinstance(op, (Linear, Conv)) for op in self.ops):
            raise ConversionError("the model has no quantized Linear or Conv layer")


F32_TINY, F32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)


def f32_normal(x) -> np.ndarray:
    """Which values are positive normal float32 numbers (torch's quantized kernels compute in float32)."""
    x = np.asarray(x, np.float64)
    return np.isfinite(x) & (x >= F32_TINY) & (x <= F32_MAX)


def _check_qparams(q: QParams, where: str) -> None:
    if q.dtype not in DTYPE_RANGE:
        raise ConversionError(f"{where}: unsupported activation dtype {q.dtype}")
    if not np.isfinite(q.scale) or q.scale <= 0:
        raise ConversionError(f"{where}: scale must be finite and positive, got {q.scale}")
    if not f32_normal(q.scale):
        raise ConversionError(f"{where}: scale {q.scale!r} is outside float32's normal range [{F32_TINY:.4g}, "
                              f"{F32_MAX:.4g}], where torch's float32 arithmetic would divide by zero or overflow")
    if q.scale * max(q.qmax - q.zero_point, q.zero_point - q.qmin) > F32_MAX:
        raise ConversionError(f"{where}: scale {q.scale!r} is so large that codes dequantize to infinity in float32")
    if not q.qmin <= q.zero_point <= q.qmax:
        raise ConversionError(f"{where}: zero point {q.zero_point} is outside [{q.qmin}, {q.qmax}] for {q.dtype}")
