# uquant_rt: the device runtime for uquant models. Integer-only int8 inference.
#
# Runs unchanged on MicroPython, CircuitPython and CPython. No floats anywhere: the host (uquant) has
# turned every scale into integers and proved them against torch, so this file only loops and adds.
#
# A generated model module looks like:
#     from uquant_rt import Model
#     model = Model("name", 0x1234abcd, (2, 0, 255), (("dense", 2, 3, 0, 255, b"...", (...), None, None), ...))
#     run = model.run; predict = model.predict
#
# Memory: buffers are allocated once, when the model is built; run() allocates nothing. Every
# intermediate stays within +-2**30, so 32-bit ports never create big ints during inference.

from array import array

try:
    from binascii import crc32 as _crc32
except ImportError:  # some ports lack binascii.crc32: same result, slower (only used at import)
    _crc32 = None

VERSION = 1


class CorruptModel(ValueError):
    pass


_BYTES = (bytes, bytearray)  # built once: a tuple literal in run() would be a heap allocation per call


def crc32(data, crc=0):
    if _crc32 is not None:
        return _crc32(data, crc)
    crc = crc ^ 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def requant(acc, c_lo, W, A, Dh, Dl, S):
    # torch's requantization of one accumulator, as proven by the host for this channel:
    #   a = clamp(acc - c_lo, 0, W);  y = floor((a * A + D) / 2**S)
    # For S < 30 the host checked that a * A + D stays a small int; otherwise D = Dh * 2**30 + Dl and the
    # product is formed in 15-bit limbs so no intermediate leaves +-2**30 (W < 2**28, A < 2**29).
    a = acc - c_lo
    if a < 0:
        a = 0
    elif a > W:
        a = W
    if S < 30:
        return (a * A + Dl) >> S
    al = a & 0x7FFF
    ah = a >> 15
    Al = A & 0x7FFF
    Ah = A >> 15
    lo = al * Al + (Dl & 0x7FFF)
    mid = ah * Al + al * Ah + (Dl >> 15) + (lo >> 15)
    return (ah * Ah + Dh + (mid >> 15)) >> (S - 30)


def requant_one(acc, words, fix, lo, hi):
    # One channel, exceptions and clip included: what dense() computes (used by the host's proof).
    y = requant(acc, words[0], words[1], words[2], words[3], words[4], words[5])
    if fix:
        a = acc - words[0]
        y = fix.get(0 if a < 0 else words[1] if a > words[1] else a, y)
    return lo if y < lo else hi if y > hi else y


def dense(x, out, K, N, lo, hi, W, P, F, T):
    # out[n] = clip(requant(sum_k x[k] * W[n*K + k] - c_n * sum_k x[k]), lo, hi) for each output channel n.
    # x holds raw codes; W holds weights + 128 (offset binary); zero points and the offset are folded
    # into c_n = P[7n] and into the requantization parameters P[7n+1 : 7n+7] by the host. T, if given, is a
    # code table applied last (a float op between dequantize and quantize in the torch model).
    sx = 0
    for k in range(K):
        sx += x[k]
    i = 0
    p = 0
    for n in range(N):
        acc = 0
        for k in range(K):
            acc += x[k] * W[i]
            i += 1
        acc -= P[p] * sx
        y = requant(acc, P[p + 1], P[p + 2], P[p + 3], P[p + 4], P[p + 5], P[p + 6])
        if F is not None:
            fix = F.get(n)
            if fix is not None:
                a = acc - P[p + 1]
                y = fix.get(0 if a < 0 else P[p + 2] if a > P[p + 2] else a, y)
        y = lo if y < lo else hi if y > hi else y
        out[n] = y if T is None else T[y]
        p += 7


class Layer:
    def __init__(self, spec):
        kind, K, N, lo, hi, W, P, F, T = spec
        if kind != "dense":
            raise CorruptModel("unknown layer kind %r" % (kind,))
        if len(W) != K * N or len(P) != 7 * N or (T is not None and len(T) != 256):
            raise CorruptModel("layer sizes do not match its data")
        self.K = K
        self.N = N
        self.lo = lo
        self.hi = hi
        self.W = W
        self.T = T
        self.P = array("i", P)
        self.F = None
        if F:  # flat (channel, a, code, ...) triples -> {channel: {a: code}}
            self.F = {}
            for j in range(0, len(F), 3):
                self.F.setdefault(F[j], {})[F[j + 1]] = F[j + 2]
        self.out = bytearray(N)

    def __call__(self, x):
        dense(x, self.out, self.K, self.N, self.lo, self.hi, self.W, self.P, self.F, self.T)
        return self.out


def _spec_crc(inp, spec, crc):
    word = bytearray(4)

    def ints(values, crc):
        for v in values:
            v &= 0xFFFFFFFF
            word[0] = v & 0xFF
            word[1] = (v >> 8) & 0xFF
            word[2] = (v >> 16) & 0xFF
            word[3] = v >> 24
            crc = crc32(word, crc)
        return crc

    crc = ints(inp, crc)
    for layer in spec:
        kind, K, N, lo, hi, W, P, F, T = layer
        crc = crc32(kind.encode(), crc)
        crc = ints((K, N, lo, hi), crc)
        crc = crc32(W, crc)
        crc = ints(P, crc)
        crc = ints(F or (), crc)
        crc = crc32(T or b"", crc)
    return crc


class Model:
    def __init__(self, name, crc, inp, spec, version=VERSION):
        if version != VERSION:
            raise CorruptModel("%s: made for runtime version %d, this is uquant_rt version %d" % (name, version, VERSION))
        got = _spec_crc(inp, spec, crc32(name.encode()))
        if got != crc:
            raise CorruptModel("%s: checksum mismatch (file corrupted or truncated?): re-deploy the model" % name)
        self.name = name
        self.n_in, self.qmin, self.qmax = inp
        self.layers = [Layer(s) for s in spec]
        self.n_out = self.layers[-1].N

    def _check(self, x):
        if len(x) != self.n_in:
            raise ValueError("%s: expected %d input values, got %d" % (self.name, self.n_in, len(x)))
        if isinstance(x, _BYTES):
            return
        lo = self.qmin
        hi = self.qmax
        for v in x:
            if type(v) is not int or v < lo or v > hi:
                raise ValueError("%s: inputs must be ints in [%d, %d], got %r" % (self.name, lo, hi, v))

    def run(self, x):
        # x: one sample's quantized input (bytes, bytearray or list of ints), flattened in torch's order.
        # Returns the quantized output codes in a bytearray owned by the model (overwritten by the next
        # call; copy it with bytes(...) to keep it).
        self._check(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def predict(self, x):
        # Index of the largest output (the first one on ties, like torch.argmax).
        y = self.run(x)
        best = 0
        for i in range(1, self.n_out):
            if y[i] > y[best]:
                best = i
        return best
