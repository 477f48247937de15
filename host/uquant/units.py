"""Integer units at the model's edges: raw sensor integers in, fixed-point integers and class names out.

Input (`--input-unit 0.000244`, or `--input-units "raw*0.000244"`): the float a raw integer r stands for is
float32(float32(r) * float32(unit)) -- a float32 product, which is what `torch.tensor(raws).float() * unit` computes
(torch casts the Python scalar to the tensor's float32) -- and torch.quantize_per_tensor (a PT2E program: its own
quantize_per_tensor) turns it into the model's
input code. That code is a non-decreasing step function of r (every step of it is monotone), so it is fixed by the
raw values where it steps up. The host finds each of them with torch itself (bisection over the accepted raw
range, all codes at once), checks each one again with single-value torch calls on both sides, and the device
counts how many thresholds a raw value has reached (a binary search over a tuple of ints). Exact for every raw
value in the accepted range (default +-2**29); the device refuses values outside it.

Output (`--output-unit 0.001`): code q -> torch's dequantized float32 value v = float32((q - zp) * scale), divided
exactly by the decimal unit and rounded half away from zero (so -2.5 thousandths -> -3, 2.5 -> 3). The device
computes sign(d) * ((|d| * A + 2**(S-1)) >> S) with d = q - zp; the host chooses A and S and checks them against the
exact value for every possible output code, and falls back to a table of one int per code if no (A, S) fits.
"""
from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import torch

from .ir import ConversionError, QParams
from .runtime import rt

RAW_LIMIT = 2**29  # default accepted raw range: [-RAW_LIMIT, RAW_LIMIT]
INT_LIMIT = 2**30  # every device int stays strictly inside +-INT_LIMIT

_TORCH_DTYPES = {"quint8": torch.quint8, "qint8": torch.qint8}


def parse_unit(text: str, what: str = "unit") -> Fraction:
    """'0.000244', 'raw*0.000244', 'raw * 1/4096' -> the unit as an exact positive Fraction (of its decimal text)."""
    s = str(text).strip().replace(" ", "")
    m = re.fullmatch(r"(?:raw\*)?([0-9.eE+-]+)(?:/([0-9.eE+-]+))?", s)
    try:
        if not m:
            raise ValueError
        u = Fraction(m.group(1)) / (Fraction(m.group(2)) if m.group(2) else 1)
    except (ValueError, ZeroDivisionError):
        raise ConversionError(f"{what} {text!r}: expected a positive number such as 0.000244 or 'raw*0.000244'") \
            from None
    if u <= 0:
        raise ConversionError(f"{what} {text!r} must be positive")
    return u


def unit_f32(unit: Fraction) -> np.float32:
    return np.float32(float(unit))


def torch_codes_raw(raw, unit: Fraction, q: QParams) -> np.ndarray:
    """torch's input codes for raw integers: quantize_per_tensor(float32(raw) * float32(unit))."""
    x = torch.as_tensor(np.asarray(raw, np.int64)).to(torch.float32) * torch.tensor(unit_f32(unit))
    if q.formula == "pt2e":  # a PT2E program quantizes its input with its own quantize_per_tensor
        from . import pt2e_ops
        return pt2e_ops.quantize(x, q)
    return torch.quantize_per_tensor(x, q.scale, q.zero_point, _TORCH_DTYPES[q.dtype]).int_repr().numpy().astype(
        np.int64)


def input_thresholds(q: QParams, unit: Fraction, lo: int = -RAW_LIMIT, hi: int = RAW_LIMIT) -> tuple[int, ...]:
    """t_k for k = qmin+1..qmax: the smallest raw r in [lo, hi] whose code is >= k (hi + 1 if none), proven."""
    if not (-INT_LIMIT < lo <= hi < INT_LIMIT - 1):
        raise ConversionError(f"raw range [{lo}, {hi}] must lie inside [{-INT_LIMIT + 1}, {INT_LIMIT - 2}]")
    ks = np.arange(q.qmin + 1, q.qmax + 1, dtype=np.int64)
    a = np.full(len(ks), lo, np.int64)
    b = np.full(len(ks), hi + 1, np.int64)
    while (a < b).any():
        c = (a + b) // 2
        up = torch_codes_raw(np.minimum(c, hi), unit, q) >= ks
        up |= c > hi
        b = np.where((a < b) & up, c, b)
        a = np.where((a < b) & ~up, c + 1, a)
    t = a
    # the proof: each threshold again, one torch call per value, on both sides of the step
    for k, tk in zip(ks.tolist(), t.tolist()):
        if tk <= hi and torch_codes_raw([tk], unit, q)[0] < k:
            raise ConversionError(f"input unit: torch's code at raw {tk} is below {k}: not a step function")
        if tk > lo and torch_codes_raw([tk - 1], unit, q)[0] >= k:
            raise ConversionError(f"input unit: torch's code at raw {tk - 1} already reaches {k}")
    ends = torch_codes_raw([lo, hi], unit, q)
    if ends[0] != q.qmin + int((t <= lo).sum()) or ends[1] != q.qmin + int((t <= hi).sum()):
        raise ConversionError("input unit: torch's codes at the ends of the raw range disagree with the thresholds")
    return tuple(int(v) for v in t)


def raw_to_codes(thresholds, raw, qmin: int) -> np.ndarray:
    """What the device computes, in numpy (for checks): qmin + number of thresholds <= raw."""
    return qmin + np.searchsorted(np.asarray(thresholds, np.int64), np.asarray(raw, np.int64), side="right")


def torch_dequantized(q: QParams) -> np.ndarray:
    """torch's dequantized float32 value of every code qmin..qmax."""
    codes = torch.arange(q.qmin, q.qmax + 1, dtype=torch.int32)
    t = torch._make_per_tensor_quantized_tensor(codes.to(torch.uint8 if q.dtype == "quint8" else torch.int8),
                                                q.scale, q.zero_point)
    return t.dequantize().numpy()


def round_half_away(x: Fraction) -> int:
    n = (abs(x.numerator) * 2 + x.denominator) // (2 * x.denominator)  # floor(|x| + 1/2)
    return n if x >= 0 else -n


def fixed_point_targets(q: QParams, unit: Fraction) -> list[int]:
    """The exact output-unit integer for every code: round half away from zero of (dequantized float32) / unit."""
    return [round_half_away(Fraction(float(v)) / unit) for v in torch_dequantized(q)]


def output_spec(q: QParams, unit: Fraction) -> tuple:
    """(zp, lo, hi, A, S, table): the device's fixed-point dequantization, checked for every code."""
    want = fixed_point_targets(q, unit)
    if max(abs(v) for v in want) >= INT_LIMIT:
        raise ConversionError(f"output unit {float(unit)!r} is too fine: the outputs reach "
                              f"{max(abs(v) for v in want)} units, beyond +-2**30; choose a coarser --output-unit")
    zp = q.zero_point
    ds = list(range(q.qmin - zp, q.qmax - zp + 1))
    dmax = max(abs(d) for d in ds)
    ratio = Fraction(q.scale) / unit
    for S in range(30, 0, -1):
        base = ratio * 2**S
        for A in {int(base), int(base) + 1}:
            if A < 0 or dmax * A + 2**(S - 1) >= INT_LIMIT:
                continue
            got = [(d * A + 2**(S - 1)) >> S if d >= 0 else -(((-d) * A + 2**(S - 1)) >> S) for d in ds]
            if got == want:
                return (zp, q.qmin, q.qmax, A, S, None)
    return (zp, q.qmin, q.qmax, 0, 1, tuple(want))


def parse_labels(text) -> tuple[str, ...] | None:
    if text is None:
        return None
    labels = tuple(s.strip() for s in (text.split(",") if isinstance(text, str) else text))
    if not all(labels) or not all(isinstance(s, str) and s.isprintable() for s in labels):
        raise ConversionError(f"--labels {text!r}: expected comma-separated non-empty names")
    return labels


class Units:
    """What `--input-unit`, `--output-unit` and `--labels` add to a converted model."""

    def __init__(self, plan, input_unit=None, output_unit=None, labels=None, raw_range=None):
        self.input_unit = None if input_unit is None else parse_unit(input_unit, "input unit")
        self.output_unit = None if output_unit is None else parse_unit(output_unit, "output unit")
        self.labels = parse_labels(labels)
        if self.labels is not None and len(self.labels) != plan.n_out:
            raise ConversionError(f"--labels gives {len(self.labels)} names for {plan.n_out} outputs")
        lo, hi = raw_range if raw_range is not None else (-RAW_LIMIT, RAW_LIMIT)
        self.inp = None
        if self.input_unit is not None:
            self.inp = (int(lo), int(hi), input_thresholds(plan.input, self.input_unit, int(lo), int(hi)))
        self.out = None if self.output_unit is None else output_spec(plan.output, self.output_unit)

    def spec(self) -> tuple:
        return (self.inp, self.out, self.labels)

    def crc(self) -> int:
        return rt.crc_of(self.spec())

    def source(self) -> str:
        inp, out, labels = self.spec()
        lines = ["", "# Integer units (uquant_units): run_raw(raw ints) -> output codes; dequantize(codes) -> ints"]
        if self.input_unit is not None:
            lines.append(f"# input: raw r stands for float32(float32(r) * float32({self.input_unit})), quantized as "
                         f"torch does; exact for raw in [{inp[0]}, {inp[1]}] (refused outside)")
        if self.output_unit is not None:
            lines.append(f"# output: units of {self.output_unit} (= {float(self.output_unit)!r}), rounded half away "
                         "from zero from torch's dequantized float32 value")
        lines += [
            "import uquant_rt",
            "from uquant_units import Units",
            f"units = Units(model, uquant_rt, {self.crc():#010x}, {inp!r}, {out!r}, {labels!r})",
            "run_raw, dequantize, label, label_raw = units.exports()",
            "",
        ]
        return "\n".join(lines)
