# uquant_micro: a dense-only uquant runtime for the smallest boards. Integer-only int8 inference.
#
# Why it exists: uquant_rt.py (every op, kernel tiers, CRC-32) needs more heap to compile and hold than the
# BBC micro:bit has (MicroPython 1.9.2 on an nRF51, 16 KB of RAM, about 9 KB of heap, no binascii, no
# native emitter). This file is what such a board gets instead, written to it AS uquant_rt.py, so the same
# generated module (`from uquant_rt import Model`) imports it unchanged. It takes the same Model(...)
# arguments and computes the same bytes as uquant_rt's bytecode dense path: exact accumulator, the proven
# requantization (incl. the 15-bit limb form for S >= 30), the exception table, the clip, the optional code
# table. It accepts dense layers only (an MLP) and refuses anything else with CorruptModel. It checks the
# model's CRC-32 at import like uquant_rt (bit by bit: no binascii there). No floats; every intermediate of
# run() stays within +-2**30.

from array import array

VERSION = 6  # older modules must be re-generated: no room here for older forms. A module converted with
# --weights (version 6's weights file) fails at import with TypeError (unexpected keyword argument 'weights'):
# this heap has no room for a friendlier check


class CorruptModel(ValueError):
    pass


def crc32(data, crc=0):
    crc = crc ^ 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _crc_of(obj, crc, word):
    # CRC-32 over a nested spec, as uquant_rt._crc_of: ints as 4 little-endian bytes, bytes and strs as they are.
    # Iterative: this firmware's C stack allows only a few nested Python calls.
    stack = []
    while True:
        if obj is None:
            crc = crc32(b"N", crc)
        elif isinstance(obj, int):
            v = obj & 0xFFFFFFFF
            for i in range(4):
                word[i] = (v >> (8 * i)) & 0xFF
            crc = crc32(word, crc)
        elif isinstance(obj, str):
            crc = crc32(bytes(obj, "utf8"), crc)  # this firmware's str has no .encode()
        elif isinstance(obj, (bytes, bytearray)):
            crc = crc32(obj, crc)
        else:
            crc = crc32(b"(", crc)
            stack.append(iter(obj))
        while stack:
            try:
                obj = next(stack[-1])
                break
            except StopIteration:
                stack.pop()
                crc = crc32(b")", crc)
        else:
            return crc


def requant(a, A, Dh, Dl, S):
    # as uquant_rt.requant, once a = clamp(acc - c_lo, 0, W): y = floor((a * A + D) / 2**S), in 15-bit limbs for
    # S >= 30
    if S < 30:
        return (a * A + Dl) >> S
    al = a & 0x7FFF
    ah = a >> 15
    Al = A & 0x7FFF
    Ah = A >> 15
    lo = al * Al + (Dl & 0x7FFF)
    mid = ah * Al + al * Ah + (Dl >> 15) + (lo >> 15)
    return (ah * Ah + Dh + (mid >> 15)) >> (S - 30)


def _sat(x, W, K, S, n):
    # what fbgemm's int16 saturation takes off channel n's sum, as uquant_rt.satfix (S: u16 n, count, taps ...)
    d = 0
    j = 0
    while j < len(S):
        c = S[j + 2] | S[j + 3] << 8
        if S[j] | S[j + 1] << 8 == n:
            for i in range(j + 4, j + 4 + 2 * c, 2):
                k = S[i] | S[i + 1] << 8
                s = x[k] * (W[n * K + k] - 128) + x[k + 1] * (W[n * K + k + 1] - 128)
                d += s - 32767 if s > 32767 else s + 32768 if s < -32768 else 0
        j += 4 + 2 * c
    return d


def dense(x, out, K, N, lo, hi, W, P, F, T, S):
    # out[n] = channel n of a Linear layer, as uquant_rt.dense: acc = sum x * (w + 128) - c_n * sum x
    sx = 0
    for k in range(K):
        sx += x[k]
    i = 0
    for n in range(N):
        acc = 0
        for k in range(K):
            acc += x[k] * W[i]
            i += 1
        p = 7 * n
        a = acc - _w(P, p) * sx - _w(P, p + 1)
        if S:
            a -= _sat(x, W, K, S, n)
        Wn = _w(P, p + 2)
        a = 0 if a < 0 else Wn if a > Wn else a
        y = requant(a, _w(P, p + 3), _w(P, p + 4), _w(P, p + 5), _w(P, p + 6))
        if F is not None:  # exceptions: flat (channel, a, code) triples
            for j in range(0, len(F) // 4, 3):
                if _w(F, j) == n and _w(F, j + 1) == a:
                    y = _w(F, j + 2)
                    break
        y = lo if y < lo else hi if y > hi else y
        out[n] = y if T is None else T[y]


def _w(P, i):
    # The int32 at word i of little-endian bytes P (|value| < 2**30, so no big int on the way): how modules
    # store parameter words, read in place (this heap has no room for an array copy).
    i *= 4
    return (P[i + 3] ^ 128) - 128 << 24 | P[i + 2] << 16 | P[i + 1] << 8 | P[i]


def _layers(name, b, nodes):
    # the dense steps as tuples dense() takes, checked against their data
    layers = []
    for s in nodes:
        if s[0] != "dense":
            raise CorruptModel("%s: %r layers need uquant_rt.py" % (name, s[0]))
        src, dst, K, N, lo, hi, W, P, F, T = s[1:11]
        S = s[11] if len(s) > 11 else None  # saturating pairs (uquant_rt.satfix); s[12]: W in a board's order
        if (len(s) > 12 or not -1 <= src < len(b) or len(W) != K * N or len(P) != 28 * N or len(b[dst]) < N
                or (T is not None and len(T) != 256) or (S and len(S) % 2)):
            raise CorruptModel("dense: sizes do not match its data")
        layers.append((None if src < 0 else b[src], b[dst], K, N, lo, hi, W, P, F, T, S))
    return layers


# Model's methods are plain functions put into the class below: the board compiles this file one top-level
# statement at a time (its heap cannot hold the parse of a whole class), so no statement may be large.

def _init(self, name, crc, inp, bufs, nodes, out, version=VERSION, scales=None):
    # the same arguments as uquant_rt.Model
    if version != VERSION:
        raise CorruptModel("%s: made for runtime version %d: re-generate it" % (name, version))
    spec = (name, inp, bufs, nodes, out) if scales is None else (name, inp, bufs, nodes, out, scales)
    if _crc_of(spec, 0, bytearray(4)) != crc:
        raise CorruptModel("%s: checksum mismatch (file corrupted or truncated?): re-deploy the model" % name)
    self.name = name
    self.scales = scales
    self.n_in, self.qmin, self.qmax = inp[0], inp[1], inp[2]
    b = [bytearray(n) for n in bufs]  # all activation memory, allocated once
    self.layers = _layers(name, b, nodes)
    self.out = b[out[0]]
    self.n_out = out[1]
    self.out_qmin = out[2]
    self.stage = bytearray(self.n_in)
    self.result = array("b", bytes(self.n_out)) if self.out_qmin else None


def _run(self, x):
    # x: one sample's input codes (bytes, bytearray or list of ints); returns the output codes (owned by the model)
    if len(x) != self.n_in:
        raise ValueError("%s: expected %d input values, got %d" % (self.name, self.n_in, len(x)))
    lo = self.qmin
    if lo or not isinstance(x, (bytes, bytearray)):
        for v in x:
            if type(v) is not int or v < lo or v > self.qmax:
                raise ValueError("%s: inputs must be ints in [%d, %d], got %r" % (self.name, lo, self.qmax, v))
        for i in range(self.n_in):
            self.stage[i] = x[i] - lo
        x = self.stage
    for s, o, K, N, l, h, W, P, F, T, S in self.layers:
        dense(x if s is None else s, o, K, N, l, h, W, P, F, T, S)
    res = self.result
    if res is None:
        return self.out
    lo = self.out_qmin
    for i in range(self.n_out):
        res[i] = self.out[i] + lo  # qint8: the buffer holds code + 128
    return res


def _predict(self, x):
    # index of the largest output (the first one on ties, like torch.argmax)
    y = self.run(x)
    best = 0
    for i in range(1, self.n_out):
        if y[i] > y[best]:
            best = i
    return best


def _exports(self):
    # what a generated module binds: run, predict and its constants (uquant_rt.Model)
    return (self.run, self.predict) + tuple(self.scales or (None, None, None, None))


class Model:
    __init__ = _init
    run = _run
    predict = _predict
    exports = _exports
