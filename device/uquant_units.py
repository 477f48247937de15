# uquant_units: integer sensor values in, integer fixed-point values and class names out.
# Plain MicroPython, no floats, nothing allocated per call, every intermediate within +-2**30.
#
# A generated module converted with --input-unit / --output-unit / --labels ends with:
#     import uquant_rt
#     from uquant_units import Units
#     units = Units(model, uquant_rt, 0x1234abcd, (-536870912, 536870912, (t1, t2, ...)), (zp, lo, hi, A, S, None), ("a", "b"))
#     run_raw, dequantize, label, label_raw = units.exports()
#
# Input: raw integer r -> code = lowest code + (number of thresholds t with t <= r). Torch's quantization of
# float32(r) * float32(unit) is a non-decreasing step function of r, and the host found each of its steps with
# torch itself, so this count is torch's code for every r in the accepted range.
# Output: code q -> round half away from zero of (torch's dequantized float32 value) / unit, as an int:
# d = q - zp; sign(d) * ((|d| * A + 2**(S-1)) >> S), checked by the host for every code (or a per-code table).
from array import array


class Units:
    def __init__(self, model, rt, crc, inp, out, labels):
        # rt: the uquant_rt module (its checksum); the rest is checked against crc like the model's own spec.
        if rt.crc_of((inp, out, labels)) != crc:
            raise rt.CorruptModel("%s: units checksum mismatch: re-deploy the model" % model.name)
        self.model = model
        self.r_lo, self.r_hi, self.T = inp if inp is not None else (0, -1, ())
        self.has_inp = inp is not None
        self.out = out
        self.labels = labels
        n = model.n_in
        # codes handed to model.run: bytes-like for quint8 inputs (no check per value), array('b') for qint8
        self.codes = bytearray(n) if model.qmin == 0 else array("b", bytes(n))
        self.vals = array("i", [0] * model.n_out)

    def exports(self):
        return (self.run_raw, self.dequantize, self.label, self.label_raw)

    def quantize_raw(self, x):
        # Raw integers -> the model's input codes (in self.codes, overwritten by the next call).
        m = self.model
        if not self.has_inp:
            raise ValueError("%s: converted without --input-unit: run_raw is not available" % m.name)
        if len(x) != m.n_in:
            raise ValueError("%s: expected %d raw values, got %d" % (m.name, m.n_in, len(x)))
        T = self.T
        n = len(T)
        lo = self.r_lo
        hi = self.r_hi
        qmin = m.qmin
        codes = self.codes
        for i in range(m.n_in):
            r = x[i]
            if type(r) is not int or r < lo or r > hi:
                raise ValueError("%s: raw values must be ints in [%d, %d] (the proven range), got %r"
                                 % (m.name, lo, hi, r))
            a = 0
            b = n
            while a < b:
                c = (a + b) >> 1
                if T[c] <= r:
                    a = c + 1
                else:
                    b = c
            codes[i] = a + qmin
        return codes

    def run_raw(self, x):
        # Raw sensor integers -> output codes, exactly as torch quantizing float32(raw) * float32(unit).
        return self.model.run(self.quantize_raw(x))

    def dequantize(self, y):
        # Output codes (what run/run_raw return) -> ints in the chosen output unit, in an array('i') owned here.
        out = self.out
        if out is None:
            raise ValueError("%s: converted without --output-unit: dequantize is not available" % self.model.name)
        zp, lo, hi, A, S, table = out
        H = 1 << (S - 1)  # S <= 30: at most 2**29, a small int
        vals = self.vals
        if len(y) != len(vals):
            raise ValueError("%s: expected %d output codes, got %d" % (self.model.name, len(vals), len(y)))
        for i in range(len(vals)):
            q = y[i]
            if type(q) is not int or q < lo or q > hi:
                raise ValueError("%s: output codes are ints in [%d, %d], got %r" % (self.model.name, lo, hi, q))
            if table is not None:
                vals[i] = table[q - lo]
            else:
                d = q - zp
                if d >= 0:
                    vals[i] = (d * A + H) >> S
                else:
                    vals[i] = -(((-d) * A + H) >> S)
        return vals

    def label(self, x):
        # Quantized input codes -> the name of the predicted class (--labels), or its index without labels.
        i = self.model.predict(x)
        return self.labels[i] if self.labels else i

    def label_raw(self, x):
        # Raw sensor integers -> the name of the predicted class; see run_raw.
        return self.label(self.quantize_raw(x))
