# uquant_rt: the device runtime for uquant models. Integer-only int8 inference.
#
# Runs unchanged on MicroPython, CircuitPython and CPython. No floats anywhere: the host (uquant) has
# turned every scale into integers and proved them against torch, so this file only loops and adds.
#
# A generated model module looks like:
#     from uquant_rt import Model
#     model = Model("name", 0x1234abcd, (2, 0, 255, (2,)), (3, 7), (("dense", -1, 0, 2, 3, 0, 255, b"...", b"...",
#                   None, None), ...), (1, 7, 0), scales=(0x3b7f9724, 0, 0x3fcc538f, 243))
#     run, predict, INPUT_SCALE_BITS, INPUT_ZERO_POINT, OUTPUT_SCALE_BITS, OUTPUT_ZERO_POINT = model.exports()
#
# Memory: buffers are allocated once, when the model is built; run() allocates nothing. Every
# intermediate stays within +-2**30, so 32-bit ports never create big ints during inference.

from array import array

try:
    from binascii import crc32 as _crc32
except ImportError:  # some ports lack binascii.crc32: same result, slower (only used at import)
    _crc32 = None

VERSION = 6  # modules made for versions 2 (no platform, no saturating pairs), 3 (tuples of words), 4 (dense
# weights only in rows) and 5 (no weights file) still load

# Kernel tiers, fastest first. A tier is a list of modules providing prepare_<op>/<op> for some ops; an op
# none of them provides runs on the bytecode kernels below. uquant_dsp (asm_thumb with SMLAD) only imports on
# cores with the DSP extension (RP2350's Cortex-M33, Cortex-M4/M7; not the RP2040's Cortex-M0+), uquant_thumb and
# uquant_thumbconv (asm_thumb, Thumb-1) on any ARM MicroPython, uquant_viper only where the firmware has the native
# emitter: not on CPython, the wasm port or CircuitPython boards as shipped (their ports build without it;
# CircuitPython's unix port and boards built with CIRCUITPY_ENABLE_MPY_NATIVE=1 have it). Elsewhere everything
# runs here. Set TIER before building a model to force one. A module whose prepare_<op> returns None leaves that
# layer to the tier's next module.
TIERS = (("dsp", ("uquant_dsp", "uquant_thumb", "uquant_thumbconv", "uquant_viper")),
         ("thumb", ("uquant_thumb", "uquant_thumbconv", "uquant_viper")), ("viper", ("uquant_viper",)),
         ("bytecode", ()))
TIER = None
_kernel_modules = {}


def register(name, module):
    # Use `module` as the kernel module `name` (the host plugs in emulated kernels this way); None forgets it.
    if module is None:
        _kernel_modules.pop(name, None)
    else:
        _kernel_modules[name] = module


def _kernel_module(name):
    if name not in _kernel_modules:
        try:
            _kernel_modules[name] = __import__(name)
        except Exception:  # ImportError, or SyntaxError/ValueError where the emitter is missing
            _kernel_modules[name] = None
    return _kernel_modules[name]


def tier():
    # The tier models built now will use: TIER if set (importing only its own modules), else the fastest whose
    # first module imports.
    for name, modules in TIERS:
        if TIER is not None and name != TIER:
            continue
        ok = not modules or _kernel_module(modules[0]) is not None
        if name == TIER and not ok:
            raise ValueError("kernel tier %r needs %s.py, which does not import here" % (name, modules[0]))
        if ok:
            return name, modules
    raise ValueError("unknown kernel tier %r" % (TIER,))


def fast_kernel(modules, op):
    # The first module of the tier that provides `op`, or None (bytecode).
    for name in modules:
        m = _kernel_module(name)
        if m is not None and hasattr(m, op):
            return m
    return None


def fast_prepare(modules, op, args):
    # The first module of the tier whose prepare_<op>(*args) takes the layer (it returns a handle, or None to
    # let the next module try, e.g. a conv form it lacks): (its op, the handle, the module), or (None, None, None)
    # for bytecode.
    for name in modules:
        m = _kernel_module(name)
        if m is not None and hasattr(m, op):
            h = getattr(m, "prepare_" + op)(*args)
            if h is not None:
                return getattr(m, op), h, m
    return None, None, None


class CorruptModel(ValueError):
    pass


_BYTES = (bytes, bytearray)  # built once: a tuple literal in run() would be a heap allocation per call
try:  # what run() takes: a flat sequence of ints (memoryview is missing from a few minimal ports)
    _SEQUENCES = (bytes, bytearray, list, tuple, array, memoryview)
except NameError:
    _SEQUENCES = (bytes, bytearray, list, tuple, array)


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


def word(P, i):
    # Word i of P, int32 little-endian bytes: how modules store parameter words (as_words). Read in place, as
    # every tier does: the module keeps its bytes constants for its lifetime, so a decoded copy would cost the
    # board their size again. Every word is within +-2**30, so nothing here makes a big int.
    i <<= 2
    return (P[i + 3] ^ 128) - 128 << 24 | P[i + 2] << 16 | P[i + 1] << 8 | P[i]


def set_word(P, i, v):
    # Word i of the bytearray P := v (|v| < 2**30)
    i <<= 2
    P[i] = v & 255
    P[i + 1] = (v >> 8) & 255
    P[i + 2] = (v >> 16) & 255
    P[i + 3] = (v >> 24) & 255


def requant_channel(acc, P, p, E, j, lo, hi):
    # Channel output code: requant with the words P[p+1 : p+7], then the channel's exceptions, then the clip
    # to [lo, hi]. E holds flat (channel, a, code) word triples sorted by channel and a; the channel's own
    # start at word j (j < 0: it has none). a is the clamped window position.
    c_lo = word(P, p + 1)
    Wn = word(P, p + 2)
    y = requant(acc, c_lo, Wn, word(P, p + 3), word(P, p + 4), word(P, p + 5), word(P, p + 6))
    if j >= 0:
        a = acc - c_lo
        a = 0 if a < 0 else Wn if a > Wn else a
        n = word(E, j)
        end = len(E) >> 2
        while j < end and word(E, j) == n:
            if word(E, j + 1) == a:
                y = word(E, j + 2)
                break
            j += 3
    return lo if y < lo else hi if y > hi else y


def requant_one(acc, words, fix, lo, hi):
    # One channel given its six requantization words and its exceptions {a: code} (the host's proof calls
    # this: it checks what runs).
    E = as_words(tuple(v for a in sorted(fix or ()) for v in (0, a, fix[a])))
    return requant_channel(acc, as_words((0,) + tuple(words)), 0, E, 0 if E else -1, lo, hi)


def channel(x, W, i, K, sx, P, p, n, F, lo, hi, T):
    # Output channel n for input codes x[0:K] (their sum is sx), weights W[i : i+K] and requantization words
    # P[p : p+7] (p = 7n, or where a streamed chunk holds them):
    # acc = sum x * (w + 128) - c_n * sx = sum (x - x_zp)(w - w_zp) + a constant the host folded in.
    acc = 0
    for k in range(K):
        acc += x[k] * W[i]
        i += 1
    j = -1 if F is None else F[1].get(n, -1)
    y = requant_channel(acc - word(P, p) * sx, P, p, None if F is None else F[0], j, lo, hi)
    return y if T is None else T[y]


def channel_sat(x, W, i, K, sx, P, p, n, F, lo, hi, T):
    # Like channel(), as fbgemm's depthwise fast path computes it: raw code x weight products added in
    # consecutive pairs, each pair sum saturated to int16, then the weight zero point's share removed.
    acc = 0
    k = 0
    while k + 1 < K:
        s = x[k] * (W[i] - 128) + x[k + 1] * (W[i + 1] - 128)
        acc += 32767 if s > 32767 else -32768 if s < -32768 else s
        k += 2
        i += 2
    if k < K:
        acc += x[k] * (W[i] - 128)
    j = -1 if F is None else F[1].get(n, -1)
    y = requant_channel(acc - (word(P, p) - 128) * sx, P, p, None if F is None else F[0], j, lo, hi)
    return y if T is None else T[y]


def satfix(x, W, K, P, S, B):
    # fbgemm on CPUs without VNNI adds pairs of products x[k]*w[k] + x[k+1]*w[k+1] in int16, saturating. The
    # host lists the pairs whose sum can leave int16 (the rest cannot saturate): S holds, per such channel,
    # little-endian u16s n, count, then count taps k. The exact dot product is kept; instead the channel's
    # c_lo word P[7n+1] is moved by what saturation takes off its sum (B: each listed channel's own c_lo), so
    # the requantization that follows sees torch's accumulator. Runs before the layer, on every input.
    j = 0
    m = 0
    while j < len(S):
        n = S[j] | S[j + 1] << 8
        c = S[j + 2] | S[j + 3] << 8
        j += 4
        lo = B[m]
        m += 1
        row = n * K
        for _ in range(c):
            k = S[j] | S[j + 1] << 8
            j += 2
            i = row + k
            s = x[k] * (W[i] - 128) + x[k + 1] * (W[i + 1] - 128)
            if s > 32767:
                lo += s - 32767
            elif s < -32768:
                lo += s + 32768
        set_word(P, 7 * n + 1, lo)


def sat_channels(S, N, K, P):
    # Check the saturating-pair list S of a dense layer (see satfix); return each listed channel's c_lo.
    B = []
    j = 0
    while j + 4 <= len(S):
        n = S[j] | S[j + 1] << 8
        c = S[j + 2] | S[j + 3] << 8
        j += 4 + 2 * c
        if n >= N or j > len(S):
            raise CorruptModel("dense: bad saturating pairs")
        for i in range(j - 2 * c, j, 2):
            if (S[i] | S[i + 1] << 8) + 1 >= K:
                raise CorruptModel("dense: bad saturating pairs")
        B.append(word(P, 7 * n + 1))
    if j != len(S):
        raise CorruptModel("dense: bad saturating pairs")
    return array("i", B)


def thumb_index(K, N, n, k):
    # Where row n, tap k of a dense layer's W (N rows of K bytes) sits in uquant_thumb's order, which lets its
    # kernel read one word for the weights of several channels at one tap. When K is even, rows go six at a
    # time: for each pair of taps k, k+1 three words (little-endian bytes)
    #     e[k] e[k+1] f[k] f[k+1],  a[k] b[k] c[k] d[k],  a[k+1] b[k+1] c[k+1] d[k+1]
    # for the block's rows a..f. The rows left (all of them when K is odd) go four at a time, one word
    # a[k] b[k] c[k] d[k] per tap; the last N % 4 stay plain rows. Exactly K*N bytes.
    nb6 = N // 6 if K % 2 == 0 else 0
    if n < 6 * nb6:
        b = n // 6
        j = n - 6 * b
        o = 6 * K * b + 12 * (k >> 1)
        return o + 4 + j + 4 * (k & 1) if j < 4 else o + 2 * (j - 4) + (k & 1)
    n -= 6 * nb6
    o = 6 * K * nb6
    if n < 4 * ((N - 6 * nb6) // 4):
        return o + 4 * K * (n >> 2) + 4 * k + (n & 3)
    return o + K * n + k


def dsp_index(K, N, n, k):
    # Where row n, tap k of a dense layer's W sits in uquant_dsp's order, which lets its kernel read the weights of
    # six channels from one cursor: rows go six at a time, for each group of four taps q (k = 4q..4q+3) one word
    # per row, a[4q..4q+3] b[4q..4q+3] ... f[4q..4q+3]; the last K % 4 taps of the six rows follow, packed
    # (a[..] b[..] ...). When N % 6 >= 4, the next four rows go the same way (four words per group), and the rows
    # left stay plain rows. Exactly K*N bytes. The bytes of odd taps are also
    # stored XOR 0x80 (dsp_flip): the weight itself as a signed byte, where the other taps hold weight + 128.
    nb = N // 6
    if n < 6 * nb:
        b = n // 6
        j = n - 6 * b
        q = k >> 2
        o = 6 * K * b
        if q < K >> 2:
            return o + 24 * q + 4 * j + (k & 3)
        return o + 24 * (K >> 2) + (K & 3) * j + (k & 3)
    o = 6 * K * nb
    n -= 6 * nb
    if N - 6 * nb >= 4:  # a block of four rows, the same way
        if n < 4:
            if k >> 2 < K >> 2:
                return o + 16 * (k >> 2) + 4 * n + (k & 3)
            return o + 16 * (K >> 2) + (K & 3) * n + (k & 3)
        o += 4 * K
        n -= 4
    return o + K * n + k


def dsp_flip(k):
    # what uquant_dsp's order XORs the byte of tap k with
    return 128 if k & 1 else 0


class _Flipped:
    # W in uquant_dsp's order read as rows would be, through _dsp_at (for prepare_satfix)
    def __init__(self, W):
        self.W = W

    def __getitem__(self, at):
        return self.W[at[0]] ^ at[1]


def _dsp_at(K, N, n, k):
    return (dsp_index(K, N, n, k), dsp_flip(k))


def _rows_index(K, N, n, k):
    return n * K + k


def relay(W, K, N, layout, to):
    # W (a dense layer's weights in `layout` order: None for plain rows, "thumb" for thumb_index, "dsp" for
    # dsp_index and dsp_flip) as a new bytearray in `to` order. Costs K*N bytes: the module should hold W in the
    # order the board's kernel reads.
    orders = {None: _rows_index, "thumb": thumb_index, "dsp": dsp_index}
    if layout == to or layout not in orders or to not in orders:
        raise ValueError("relay: from %r to %r" % (layout, to))
    src = orders[layout]
    dst = orders[to]
    flip = 128 if (layout == "dsp") != (to == "dsp") else 0
    out = bytearray(K * N)
    for n in range(N):
        for k in range(K):
            out[dst(K, N, n, k)] = W[src(K, N, n, k)] ^ (flip if k & 1 else 0)
    return out


def dense(x, out, K, N, lo, hi, W, P, F, T):
    # out[n] = channel n of a Linear layer. x holds raw codes; W holds weights + 128 (offset binary); zero
    # points and offsets are folded into c_n = P[7n] and the requantization words P[7n+1 : 7n+7] by the host.
    # T, if given, is a code table applied last (a float op between dequantize and quantize in the model).
    sx = 0
    for k in range(K):
        sx += x[k]
    for n in range(N):
        out[n] = channel(x, W, n * K, K, sx, P, 7 * n, n, F, lo, hi, T)


def dense_stream(x, out, K, N, lo, hi, f, off, rows, views, F, T):
    # dense() for a layer whose weights stay in the weights file (Weights): chunks of `rows` output channels,
    # each its rows of W then their 7 words each, read in turn into the views (full chunk, last chunk) of the
    # model's one buffer.
    sx = 0
    for k in range(K):
        sx += x[k]
    f.seek(off)
    n0 = 0
    while n0 < N:
        v = views[0] if N - n0 >= rows else views[1]
        fill(f, v)
        W = v[0]
        P = v[1]
        for n in range(v[2]):
            out[n0 + n] = channel(x, W, n * K, K, sx, P, 7 * n, n0 + n, F, lo, hi, T)
        n0 += v[2]


def fill(f, v):
    # The next chunk of a streamed layer from the weights file: its weights into v[0], its words into v[1]
    if f.readinto(v[0]) != len(v[0]) or f.readinto(v[1]) != len(v[1]):
        raise CorruptModel("weights file: shorter than when the model was imported (replaced?): re-deploy it")


def conv(x, out, g, xzp, lo, hi, W, P, F, T, win):
    conv_part(x, out, g, xzp, lo, hi, W, P, F, T, win, 0, g[3])


def conv_stream(x, out, g, xzp, lo, hi, f, off, rows, views, F, T, win):
    # conv() for a layer whose weights stay in the weights file, in chunks of `rows` output channels (see
    # dense_stream): each chunk gathers the windows of its groups again.
    N = g[3]
    f.seek(off)
    n0 = 0
    while n0 < N:
        v = views[0] if N - n0 >= rows else views[1]
        fill(f, v)
        conv_part(x, out, g, xzp, lo, hi, v[0], v[1], F, T, win, n0, n0 + v[2])
        n0 += v[2]


def conv_part(x, out, g, xzp, lo, hi, W, P, F, T, win, n0, n1):
    # 2-D convolution over CHW codes (a 1-D one has H = KH = 1). g is the geometry tuple
    # (C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT). For each output position the window of each
    # group is gathered into `win` (padding reads as the input zero point, which adds nothing to torch's
    # accumulator), then every output channel of the group is a dense dot product over the window.
    # SAT: 0 exact; 1 fbgemm's depthwise fast path, 2 its im2col GEMM without VNNI: raw products added in
    # int16-saturating pairs along the window, which SAT 2 gathers (and the host stores W) in im2col order, taps
    # row-major and the group's channels innermost.
    # Only output channels [n0, n1) are computed, their weights from W[0] and words from P[0] on.
    C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT = g
    dot = channel_sat if SAT else channel
    cg = C // G
    ng = N // G
    kk = cg * KH * KW
    HW = H * Wd
    for grp in range(n0 // ng, (n1 - 1) // ng + 1):
        for oy in range(OH):
            for ox in range(OW):
                j = 0
                sx = 0
                if SAT == 2:
                    for ky in range(KH):
                        iy = oy * SH - PH + ky * DH
                        for kx in range(KW):
                            ix = ox * SW - PW + kx * DW
                            inside = 0 <= iy < H and 0 <= ix < Wd
                            i = (grp * cg * H + iy) * Wd + ix
                            for c in range(cg):
                                v = x[i] if inside else xzp
                                win[j] = v
                                sx += v
                                j += 1
                                i += HW
                else:
                    for c in range(grp * cg, grp * cg + cg):
                        for ky in range(KH):
                            iy = oy * SH - PH + ky * DH
                            inside = 0 <= iy < H  # per row, not per tap
                            row = (c * H + iy) * Wd
                            for kx in range(KW):
                                ix = ox * SW - PW + kx * DW
                                v = x[row + ix] if inside and 0 <= ix < Wd else xzp
                                win[j] = v
                                sx += v
                                j += 1
                pos = oy * OW + ox
                for n in range(max(n0, grp * ng), min(n1, grp * ng + ng)):
                    out[n * OH * OW + pos] = dot(win, W, (n - n0) * kk, kk, sx, P, 7 * (n - n0), n, F, lo, hi, T)


def maxpool(x, out, g):
    # Max over each window of each channel (padding never wins, as in torch); codes are unchanged.
    C, H, Wd, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW = g
    o = 0
    for c in range(C):
        base = c * H * Wd
        for oy in range(OH):
            for ox in range(OW):
                best = -1
                for ky in range(KH):
                    iy = oy * SH - PH + ky * DH
                    if 0 <= iy < H:
                        for kx in range(KW):
                            ix = ox * SW - PW + kx * DW
                            if 0 <= ix < Wd:
                                v = x[base + iy * Wd + ix]
                                if v > best:
                                    best = v
                out[o] = best
                o += 1


def _fround(st, i, s, e, neg):
    # st[i], st[i+1] := the float32 nearest s * 2**e (ties to even) as (m, e): value m * 2**e, |m| in
    # [2**23, 2**24). s > 0 carries 3 bits below the result's last one (the lowest one sticky: set if anything
    # nonzero was shifted out below it).
    while s >= 1 << 27:
        s = (s >> 1) | (s & 1)
        e += 1
    while s < 1 << 26:
        s <<= 1
        e -= 1
    r = s & 7
    s >>= 3
    e += 3
    if r > 4 or (r == 4 and s & 1):
        s += 1
        if s == 1 << 24:
            s = 1 << 23
            e += 1
    st[i] = -s if neg else s
    st[i + 1] = e


def fadd(st, i, m2, e2):
    # float32 addition: (st[i], st[i+1]) += (m2, e2), floats as _fround leaves them ((0, 0) is zero). The larger
    # magnitude keeps its 24 bits and 3 more; the other is shifted to it, what falls off folded into a sticky bit.
    m1 = st[i]
    if m2 == 0:
        return
    if m1 == 0:
        st[i] = m2
        st[i + 1] = e2
        return
    e1 = st[i + 1]
    a1 = -m1 if m1 < 0 else m1
    a2 = -m2 if m2 < 0 else m2
    if e1 < e2 or (e1 == e2 and a1 < a2):
        a1, a2 = a2, a1
        e1, e2 = e2, e1
        m1, m2 = m2, m1
    d = e1 - e2
    b = a2 << 3
    if d > 27:
        b = 1
    elif d:
        t = b >> d
        if t << d != b:
            t |= 1
        b = t
    s = (a1 << 3) - b if (m1 < 0) != (m2 < 0) else (a1 << 3) + b
    if s == 0:
        st[i] = 0
        st[i + 1] = 0
        return
    _fround(st, i, s, e1 - 3, m1 < 0)


def fdiv(st, i, n):
    # float32 division (st[i], st[i+1]) /= n (an int > 1), by long division to 27 bits plus a sticky remainder bit
    m = st[i]
    if m == 0:
        return
    a = -m if m < 0 else m
    q = a // n
    r = a - q * n
    e = st[i + 1]
    while q < 1 << 26:
        q <<= 1
        r <<= 1
        e -= 1
        if r >= n:
            q += 1
            r -= n
    if r:
        q |= 1
    _fround(st, i, q, e, m < 0)


def fmean(x, out, C, n, lp, M, E, ek, T, st):
    # torch's x86/fbgemm mean of each channel's n codes (uquant.fmean): dequantize each code to the float32
    # (word(M, q), E[q] - 160), add them in ATen's cascade order (chunks of 2**lp codes into level 0, each full
    # chunk carried up through levels 1-3, then the levels added), divide by n, all rounded as float32 rounds;
    # then the code is the number of thresholds T at or below the mean's key. st: 8 words of scratch (4 levels).
    step = 1 << lp
    mask = step - 1
    for c in range(C):
        i = c * n
        end = i + n
        for j in range(8):
            st[j] = 0
        while i + step <= end:
            for k in range(i, i + step):
                q = x[k]
                fadd(st, 0, word(M, q), E[q] - 160)
            i += step
            for j in range(2, 8, 2):
                fadd(st, j, st[j - 2], st[j - 1])
                st[j - 2] = 0
                st[j - 1] = 0
                if (i - c * n) & (mask << (j >> 1) * lp):
                    break
        while i < end:
            q = x[i]
            fadd(st, 0, word(M, q), E[q] - 160)
            i += 1
        for j in range(2, 8, 2):
            fadd(st, 0, st[j], st[j + 1])
        fdiv(st, 0, n)
        m = st[0]
        key = 0
        if m:
            key = ((st[1] - ek + 1) << 23) + (m if m > 0 else -m) - (1 << 23)
            if m < 0:
                key = -key
        lo = 0
        hi = 255
        while lo < hi:
            mid = (lo + hi) >> 1
            if word(T, mid) <= key:
                lo = mid + 1
            else:
                hi = mid
        out[c] = lo


def avgpool(x, out, g, R, Q, cls, P, F, lo, hi):
    # Average pooling of each channel. g = (C, H, Wd, OH, OW, zp, cv, K). Output row oy averages input rows
    # [R[2*oy], R[2*oy+1]) and column ox columns [Q[2*ox], Q[2*ox+1]) (already clipped to the input, so padding
    # is left out): acc = sum of those codes - taps * zp. Torch's code is then a monotone function of acc that
    # depends only on the window's divisor class cls[oy*OW + ox]; channels below cv (torch's SIMD blocks) use
    # the classes K.. instead. Each class has 6 requant words in P and exceptions in F, as in dense().
    C, H, Wd, OH, OW, zp, cv, K = g
    o = 0
    for c in range(C):
        base = c * H * Wd
        koff = K if c < cv else 0
        pos = 0
        for oy in range(OH):
            y0 = R[2 * oy]
            y1 = R[2 * oy + 1]
            for ox in range(OW):
                x0 = Q[2 * ox]
                x1 = Q[2 * ox + 1]
                s = 0
                for iy in range(y0, y1):
                    r = base + iy * Wd
                    for i in range(r + x0, r + x1):
                        s += x[i]
                acc = s - (y1 - y0) * (x1 - x0) * zp
                k = cls[pos] + koff
                p = 6 * k
                if F is None:
                    y = requant(acc, word(P, p), word(P, p + 1), word(P, p + 2), word(P, p + 3), word(P, p + 4),
                                word(P, p + 5))
                    y = lo if y < lo else hi if y > hi else y
                else:  # the words once, then the class's exceptions and the clip
                    y = requant_channel(acc, P, p - 1, F[0], F[1].get(k, -1), lo, hi)  # word p-1 is not read
                out[o] = y
                o += 1
                pos += 1


def add(a, b, out, lo, hi, P, F, start, stop):
    # quantized add of two same-shape tensors over positions [start, stop):
    #   y = clip((Aa * qa + Ab * qb + D) >> S, lo, hi), or the exception for the pair (qa, qb).
    Aa, Ab, D, S = P
    for i in range(start, stop):
        qa = a[i]
        qb = b[i]
        y = (Aa * qa + Ab * qb + D) >> S
        if F is not None:
            y = F.get((qa << 8) | qb, y)
        out[i] = lo if y < lo else hi if y > hi else y


def mul(a, b, out, n, za, zb, P, E, lo, hi):
    # quantized mul: c = (a - za)(b - zb) exactly (|c| < 2**16), then the channel requantization of c
    j = 0 if E else -1
    for i in range(n):
        out[i] = requant_channel((a[i] - za) * (b[i] - zb), P, 0, E, j, lo, hi)


def badd(a, b, out, lo, hi, Pv, Fv, Pt, Ft, cuts, HW):
    # add of a full tensor a and a per-channel one b (one code per channel, broadcast over its HW positions):
    # as add, with the SIMD blocks' form at the first cuts[c] positions of channel c and the tail's after them
    for c in range(len(cuts)):
        qb = b[c]
        i = c * HW
        for P, F, start, stop in ((Pv, Fv, i, i + cuts[c]), (Pt, Ft, i + cuts[c], i + HW)):
            Aa, Ab, D, S = P
            D += Ab * qb  # the channel's constant part
            for j in range(start, stop):
                qa = a[j]
                y = (Aa * qa + D) >> S
                if F is not None:
                    y = F.get((qa << 8) | qb, y)
                out[j] = lo if y < lo else hi if y > hi else y


def bmul(a, b, out, n, HW, za, zb, P, E, lo, hi):
    # mul of a full tensor a and a per-channel one b (one code per channel, broadcast over its HW positions)
    j = 0 if E else -1
    for c in range(n // HW):
        v = b[c] - zb
        for i in range(c * HW, c * HW + HW):
            out[i] = requant_channel((a[i] - za) * v, P, 0, E, j, lo, hi)


def lut(src, out, T, start, stop):
    for i in range(start, stop):
        out[i] = T[src[i]]


def copy(x, out, g):
    # A byte move (transpose, permute, a chunk's piece): out[o], o counting in row-major order over the sizes
    # (g[1], g[2], g[3], g[4]), is x[g[0] + i*g[5] + j*g[6] + k*g[7] + l*g[8]].
    o = 0
    pi = g[0]
    for i in range(g[1]):
        pj = pi
        for j in range(g[2]):
            pk = pj
            for k in range(g[3]):
                p = pk
                for l in range(g[4]):
                    out[o] = x[p]
                    o += 1
                    p += g[8]
                pk += g[7]
            pj += g[6]
        pi += g[5]


def simd_cuts(n_vec, n, C, HW):
    # torch rounds some element-wise ops differently in its 64-element SIMD blocks (the first n_vec elements in
    # memory order) and in the scalar tail. For a channels-last tensor (C > 0) memory order is position-major,
    # so channel c's elements at positions [0, cut[c]) are in SIMD blocks and the rest in the tail.
    if C == 0:
        return None
    tp = n_vec // C
    tc = n_vec - tp * C
    return tuple(min(HW, tp + (1 if c < tc else 0)) for c in range(C))


def as_words(v):
    # Parameter words as int32 little-endian bytes, what word() reads. Modules since version 4 store them so
    # (a bytes constant is loaded as it is, where a tuple literal is built on the VM stack from bytecode at
    # import); tuples (older modules, and the runtime's own small word lists) are packed once here.
    if v is None:
        return None
    if isinstance(v, _BYTES):
        if len(v) % 4:
            raise CorruptModel("parameter words: %d bytes is not a whole number of int32s" % len(v))
        return v
    b = bytearray(4 * len(v))
    for i in range(len(v)):
        set_word(b, i, v[i])
    return b


def _pairs(F):
    # flat (key, code, ...) pairs -> {key: code}, or None
    if not F:
        return None
    d = {}
    for j in range(0, len(F), 2):
        d[F[j]] = F[j + 1]
    return d


def _fixes(F):
    # flat (channel, a, code, ...) word triples sorted by channel -> (F, {channel: word index of its first
    # triple}), or None
    if not F:
        return None
    first = {}
    for j in range((len(F) >> 2) - 3, -1, -3):
        first[word(F, j)] = j
    return F, first


class Weights:
    # The weights file of a module converted with --weights: the dense and conv layers that name an offset
    # instead of holding their bytes read them from here, a chunk of output channels at a time, into one buffer
    # allocated at import. spec: (file name, size, CRC-32, buffer size), covered by the module's checksum; the
    # file must sit next to the module (`where`: the module's __file__).
    def __init__(self, name, spec, where=None):
        fname, size, crc, cap = spec
        path = fname
        if where and "/" in where:
            path = where[:where.rfind("/") + 1] + fname
        try:
            self.f = open(path, "rb")
        except OSError:
            raise CorruptModel("%s: weights file %s is missing: copy it next to the module (uquant deploy does)"
                               % (name, path))
        self.buf = bytearray(cap)
        self.mv = memoryview(self.buf)
        got = 0
        c = 0
        while True:
            n = self.f.readinto(self.mv)
            if not n:
                break
            c = crc32(self.buf if n == cap else self.mv[:n], c)
            got += n
        if got != size or c != crc:
            self.f.close()
            raise CorruptModel("%s: weights file %s does not match the module (%s): copy the .bin converted with "
                               "this module again" % (name, path, "%d B, expected %d B" % (got, size)
                                                      if got != size else "CRC mismatch"))

    def views(self, kk, N, rows):
        # (weights, words, channels) views of the buffer for a full chunk of `rows` channels of kk weights each,
        # and for the last chunk
        if rows < 1 or rows * (kk + 28) > len(self.buf):
            raise CorruptModel("weights file: a chunk does not fit the buffer")
        last = N % rows or rows
        return tuple((self.mv[:c * kk], self.mv[c * kk:c * (kk + 28)], c) for c in (rows, last))


class Node:
    # One step of the model: reads buffers `srcs` (index -1: the model's input), writes buffer `out`.
    # store: the model's Weights, for layers streamed from the weights file.
    def __init__(self, spec, bufs, modules=(), store=None):
        kind = spec[0]
        self.kind = kind
        self.stream = None  # True for a layer streamed from the weights file (args: the file, offset, rows, views)
        self.fast = None  # a faster tier's kernel for this node: fast(src, out, handle)
        self.handle = None
        self.kmod = None  # the kernel module fast comes from
        self.sat = None  # saturating pairs: satfix(src, *sat) before the layer (or a faster tier's satfix(src, sat))
        self.satfix = None
        srcs = spec[1] if isinstance(spec[1], tuple) else (spec[1],)
        for i in srcs:
            if i >= len(bufs) or i < -1:
                raise CorruptModel("%s: reads a buffer that does not exist" % kind)
        self.srcs = [None if i < 0 else bufs[i] for i in srcs]
        self.src = self.srcs[0]
        self.out = bufs[spec[2]]
        a = spec[3:]
        if kind in ("dense", "conv") and isinstance(a[4], tuple):
            self._streamed(a, store)
        elif kind == "dense":
            K, N, lo, hi, W, P, F, T = a[:8]
            P, F = as_words(P), as_words(F)
            S = a[8] if len(a) > 8 else None  # saturating pairs (platforms without VNNI), see satfix
            L = a[9] if len(a) > 9 else None  # W's order: None (rows), "thumb" (thumb_index) or "dsp" (dsp_index)
            if (len(W) != K * N or len(P) != 28 * N or (T is not None and len(T) != 256) or len(self.out) < N
                    or L not in (None, "thumb", "dsp")):
                raise CorruptModel("dense: sizes do not match its data")
            m = fast_kernel(modules, "dense")
            want = getattr(m, "DENSE_LAYOUT", None)
            if L != want:  # the module was laid out for another board: the kernel gets a copy in its order
                W, L = relay(W, K, N, L, want), want
            if S:  # satfix moves c_lo words in P per input, before the kernels read them: a writable copy
                P = bytearray(P)
                self.sat = (W, K, P, S, sat_channels(S, N, K, P))
                ms = fast_kernel(modules, "satfix")
                if ms is not None:
                    self.satfix = ms.satfix
                    if L is None:
                        self.sat = ms.prepare_satfix(*self.sat)
                    elif L == "thumb":
                        self.sat = ms.prepare_satfix(*self.sat, thumb_index)
                    else:
                        self.sat = ms.prepare_satfix(_Flipped(W), K, P, S, self.sat[4], _dsp_at)
                elif L is not None:  # uquant_rt.satfix reads rows
                    self.sat = (relay(W, K, N, L, None),) + self.sat[1:]
            if m is not None:
                self.fast, self.handle, self.kmod = m.dense, m.prepare_dense(K, N, lo, hi, W, P, F or b"", T), m
            else:
                self.args = (K, N, lo, hi, W, P, _fixes(F), T)
        elif kind == "conv":
            g, xzp, lo, hi, W, P, F, T = a
            P, F = as_words(P), as_words(F)
            if len(g) != 16:
                raise CorruptModel("conv: bad geometry")
            N, kk = g[3], g[0] // g[12] * g[4] * g[5]
            if len(W) != N * kk or len(P) != 28 * N or len(self.out) < N * g[13] * g[14]:
                raise CorruptModel("conv: sizes do not match its data")
            self.fast, self.handle, self.kmod = fast_prepare(modules, "conv", (g, xzp, lo, hi, W, P, F or b"", T))
            if self.fast is None:
                self.args = (g, xzp, lo, hi, W, P, _fixes(F), T, bytearray(kk))
        elif kind == "maxpool":
            g = a[0]
            if len(g) != 13 or len(self.out) < g[0] * g[11] * g[12]:
                raise CorruptModel("maxpool: sizes do not match its data")
            self.fast, self.handle, self.kmod = fast_prepare(modules, "maxpool", (g,))
            self.args = (g,)
        elif kind == "avgpool":
            g, R, Q, cls, lo, hi, P, F = a
            P, F = as_words(P), as_words(F)
            if (len(g) != 8 or len(R) != 2 * g[3] or len(Q) != 2 * g[4] or len(cls) != g[3] * g[4]
                    or len(P) != 24 * g[7] * (2 if g[6] else 1) or len(self.out) < g[0] * g[3] * g[4]):
                raise CorruptModel("avgpool: sizes do not match its data")
            self.fast, self.handle, self.kmod = fast_prepare(modules, "avgpool", (g, R, Q, cls, lo, hi, P, F or b""))
            self.args = (g, R, Q, cls, P, _fixes(F), lo, hi)
        elif kind == "add":
            n_vec, n, lo, hi, Pv, Fv, Pt, Ft, C, HW = a
            if (len(self.srcs) != 2 or len(Pv) != 4 or len(Pt) != 4 or len(self.out) < n or not 0 <= n_vec <= n
                    or (C and C * HW != n)):
                raise CorruptModel("add: sizes do not match its data")
            self.args = (n_vec, n, lo, hi, Pv, _pairs(Fv), Pt, _pairs(Ft), simd_cuts(n_vec, n, C, HW), HW)
        elif kind == "table":
            n, T, n_vec, Tt, C, HW = a
            if (len(T) != 256 or (Tt is not None and len(Tt) != 256) or len(self.out) < n or not 0 <= n_vec <= n
                    or (C and C * HW != n)):
                raise CorruptModel("table: sizes do not match its data")
            self.args = (n, T, n_vec, Tt if Tt is not None else T, simd_cuts(n_vec, n, C, HW), HW)
            self.fast, self.handle, self.kmod = fast_prepare(modules, "table", self.args)
        elif kind == "mul" or kind == "bmul":
            HW = a[1] if kind == "bmul" else 0  # bmul: the second input is one code per channel, for HW positions
            n, za, zb, lo, hi, words, F = a[:1] + a[2:] if HW else a
            if (len(self.srcs) != 2 or len(words) != 6 or len(self.out) < n or len(a) != (8 if kind == "bmul" else 7)
                    or (kind == "bmul" and (HW <= 0 or n % HW))):
                raise CorruptModel("%s: sizes do not match its data" % kind)
            pairs = sorted((F[j], F[j + 1]) for j in range(0, len(F or ()), 2))
            self.args = (n, za, zb, as_words((0,) + tuple(words)),
                         as_words(tuple(v for a, y in pairs for v in (0, a, y))), lo, hi, HW)
        elif kind == "badd":
            n, lo, hi, Pv, Fv, Pt, Ft, cuts = a
            C = len(cuts)
            if (len(self.srcs) != 2 or len(Pv) != 4 or len(Pt) != 4 or len(self.out) < n or not C or n % C
                    or min(cuts) < 0 or max(cuts) > n // C):
                raise CorruptModel("badd: sizes do not match its data")
            self.args = (lo, hi, Pv, _pairs(Fv), Pt, _pairs(Ft), cuts, n // C)
        elif kind == "cat":
            parts = a[0]
            outer = a[1] if len(a) > 1 else 1  # cat along an inner axis: the parts repeat outer times
            if len(parts) != len(self.srcs) or outer < 1 or outer * sum(p[0] for p in parts) > len(self.out):
                raise CorruptModel("cat: sizes do not match its data")
            self.args = (parts, outer)
        elif kind == "fmean":
            C, n, lp, ek, M, E, T = a
            M, T = as_words(M), as_words(T)
            if len(M) != 1024 or len(E) != 256 or len(T) != 1020 or n < 2 or lp < 1 or len(self.out) < C:
                raise CorruptModel("fmean: sizes do not match its data")
            self.args = (C, n, lp, M, E, ek, T, [0] * 8)
        elif kind == "copy":
            g = a[0]
            if len(g) != 9 or min(g[1:5]) < 1 or g[1] * g[2] * g[3] * g[4] > len(self.out):
                raise CorruptModel("copy: sizes do not match its data")
            self.fast, self.handle, self.kmod = fast_prepare(modules, "copy", (g,))
            self.args = (g,)
        else:
            raise CorruptModel("unknown layer kind %r" % (kind,))

    def _streamed(self, a, store):
        # a dense (K, N, lo, hi, (offset, rows), None, F, T) or conv (g, xzp, lo, hi, (offset, rows), None, F, T)
        # layer whose weights and words are in the weights file, chunk after chunk: rows of W, then their words
        if store is None or len(a) != 8 or a[5] is not None or len(a[4]) != 2:
            raise CorruptModel("%s: streamed weights without a weights file" % self.kind)
        off, rows = a[4]
        F = as_words(a[6])
        T = a[7]
        if self.kind == "dense":
            K, N = a[0], a[1]
            if len(self.out) < N or (T is not None and len(T) != 256):
                raise CorruptModel("dense: sizes do not match its data")
            self.args = (K, N, a[2], a[3], store.f, off, rows, store.views(K, N, rows), _fixes(F), T)
        else:
            g = a[0]
            if len(g) != 16:
                raise CorruptModel("conv: bad geometry")
            N, kk = g[3], g[0] // g[12] * g[4] * g[5]
            if len(self.out) < N * g[13] * g[14]:
                raise CorruptModel("conv: sizes do not match its data")
            self.args = (g, a[1], a[2], a[3], store.f, off, rows, store.views(kk, N, rows), _fixes(F), T,
                         bytearray(kk))
        self.stream = True

    def call(self, x, out, handle):
        # Model.run's call for layers without a direct kernel call (x: the model's staged input)
        self.run(x)

    def run(self, x):
        src = x if self.src is None else self.src
        if self.sat is not None:
            if self.satfix is not None:
                self.satfix(src, self.sat)
            else:
                satfix(src, self.sat[0], self.sat[1], self.sat[2], self.sat[3], self.sat[4])
        if self.fast is not None:
            self.fast(src, self.out, self.handle)
            return self.out
        a = self.args
        kind = self.kind
        if self.stream is not None:
            if kind == "dense":
                dense_stream(src, self.out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9])
            else:
                conv_stream(src, self.out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10])
        elif kind == "dense":
            dense(src, self.out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
        elif kind == "conv":
            conv(src, self.out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8])
        elif kind == "maxpool":
            maxpool(src, self.out, a[0])
        elif kind == "avgpool":
            avgpool(src, self.out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
        elif kind == "table":
            # positions in torch's 64-element SIMD blocks use one table, the scalar tail the other
            cuts = a[4]
            if cuts is None:
                lut(src, self.out, a[1], 0, a[2])
                lut(src, self.out, a[3], a[2], a[0])
            else:
                HW = a[5]
                for c in range(len(cuts)):
                    lut(src, self.out, a[1], c * HW, c * HW + cuts[c])
                    lut(src, self.out, a[3], c * HW + cuts[c], c * HW + HW)
        elif kind == "mul":
            b = self.srcs[1]
            mul(src, x if b is None else b, self.out, a[0], a[1], a[2], a[3], a[4], a[5], a[6])
        elif kind == "bmul":
            b = self.srcs[1]
            bmul(src, x if b is None else b, self.out, a[0], a[7], a[1], a[2], a[3], a[4], a[5], a[6])
        elif kind == "badd":
            b = self.srcs[1]
            badd(src, x if b is None else b, self.out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
        elif kind == "add":
            b = self.srcs[1]
            if b is None:
                b = x
            cuts = a[8]
            if cuts is None:
                add(src, b, self.out, a[2], a[3], a[4], a[5], 0, a[0])
                add(src, b, self.out, a[2], a[3], a[6], a[7], a[0], a[1])
            else:
                HW = a[9]
                for c in range(len(cuts)):
                    add(src, b, self.out, a[2], a[3], a[4], a[5], c * HW, c * HW + cuts[c])
                    add(src, b, self.out, a[2], a[3], a[6], a[7], c * HW + cuts[c], c * HW + HW)
        elif kind == "copy":
            copy(src, self.out, a[0])
        elif kind == "fmean":
            fmean(src, self.out, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
        else:
            o = 0
            for r in range(a[1]):
                for j in range(len(a[0])):
                    s = self.srcs[j]
                    if s is None:
                        s = x
                    n, T = a[0][j]
                    b = r * n
                    if T is None:
                        for i in range(n):
                            self.out[o + i] = s[b + i]
                    else:
                        for i in range(n):
                            self.out[o + i] = T[s[b + i]]
                    o += n
        return self.out


def crc_of(obj):
    # CRC-32 over a nested spec: ints as 4 little-endian bytes, None as "N", bytes and strs as they are, tuples
    # between "(" and ")". The bytes of consecutive ints and marks gather in a buffer that crc32 reads whole:
    # crc32 returns a big int on 32-bit ports (a heap object), and one per int left about 1.5 times a model's
    # weight bytes of garbage at import.
    st = [0, 0]  # the CRC so far, bytes waiting in buf
    buf = bytearray(256)
    _crc_walk(obj, buf, st)
    _crc_flush(buf, st)
    return st[0]


def _crc_flush(buf, st):
    n = st[1]
    if n:
        st[0] = crc32(buf if n == len(buf) else buf[:n], st[0])
        st[1] = 0


def _crc_mark(buf, st, b):
    # one byte ("N", "(" or ")") into the buffer
    if st[1] == len(buf):
        _crc_flush(buf, st)
    buf[st[1]] = b
    st[1] += 1


def _crc_walk(obj, buf, st):
    if obj is None:
        _crc_mark(buf, st, 78)  # "N"
    elif isinstance(obj, int):  # two's complement, low 32 bits, in small-int pieces
        if st[1] + 4 > len(buf):
            _crc_flush(buf, st)
        n = st[1]
        buf[n] = obj & 0xFF
        buf[n + 1] = (obj >> 8) & 0xFF
        buf[n + 2] = (obj >> 16) & 0xFF
        buf[n + 3] = (obj >> 24) & 0xFF
        st[1] = n + 4
    elif isinstance(obj, str) or isinstance(obj, _BYTES):
        _crc_flush(buf, st)
        st[0] = crc32(obj.encode() if isinstance(obj, str) else obj, st[0])
    else:
        _crc_mark(buf, st, 40)  # "("
        for v in obj:
            _crc_walk(v, buf, st)
        _crc_mark(buf, st, 41)  # ")"


def spec_crc(name, inp, bufs, nodes, out, scales=None, weights=None):
    # scales: the module's constants (see Model), covered too when the module gives them; weights: its weights
    # file (see Weights), whose CRC-32 is thus covered too
    spec = (name, inp, bufs, nodes, out) if scales is None else (name, inp, bufs, nodes, out, scales)
    return crc_of(spec if weights is None else spec + (weights,))


class Model:
    def __init__(self, name, crc, inp, bufs, nodes, out, version=VERSION, scales=None, weights=None, where=None):
        # inp: (input size, lowest code, highest code[, one sample's shape]); bufs: buffer sizes in bytes; nodes:
        # the steps in order (see Node); out: (buffer holding the result, its size, lowest output code);
        # scales: the module's constants, checked with the rest: INPUT_SCALE_BITS, INPUT_ZERO_POINT,
        # OUTPUT_SCALE_BITS, OUTPUT_ZERO_POINT and (version 3) PLATFORM, the name of the platform whose torch
        # bytes the module reproduces (uquant.platforms). weights (version 6): the weights file of its streamed
        # layers (see Weights), found next to `where` (the module's __file__).
        if version not in (2, 3, 4, 5, VERSION):
            raise CorruptModel("%s: made for runtime version %d, this is uquant_rt version %d" % (name, version, VERSION))
        if spec_crc(name, inp, bufs, nodes, out, scales, weights) != crc:
            raise CorruptModel("%s: checksum mismatch (file corrupted or truncated?): re-deploy the model" % name)
        self.name = name
        self.scales = scales
        self.platform = scales[4] if scales is not None and len(scales) > 4 else None
        self.n_in, self.qmin, self.qmax = inp[0], inp[1], inp[2]
        self.shape = inp[3] if len(inp) > 3 else (inp[0],)
        self.bufs = [bytearray(n) for n in bufs]  # all activation memory, allocated once
        self.tier, modules = tier()
        self.weights = None if weights is None else Weights(name, weights, where)
        self.layers = [Node(s, self.bufs, modules, self.weights) for s in nodes]
        self.link()
        self.out = self.bufs[out[0]]
        self.n_out = out[1]
        self.out_qmin = out[2]
        # Buffers hold code - qmin: qint8 inputs are staged with +128 and qint8 results returned signed.
        # Other inputs that are not bytes (a list of ints) are staged too: the fast kernels read buffers.
        self.stage = bytearray(self.n_in)
        self.result = array("b", bytes(self.n_out)) if self.out_qmin else None

    def link(self):
        # What run() calls, one call per layer: a faster tier's kernel directly (f(src, out, handle)) where the
        # layer has one and no saturating pairs, else the node itself; the machine code itself where the kernel
        # module offers it (direct(op, handle) -> (f, arg), f(src, out, arg)): each Python line around the
        # kernels, a wrapper's too, costs a board more than a thousand cycles. (Call again after replacing a
        # node's kernel.)
        # Consecutive layers that one kernel module runs directly become a single call where the module offers
        # chain(items) -> (f, arg), f(x, 0, arg) (items: (kind, handle, input or None for x, output)).
        calls = []
        group = []  # (kind, handle, src, out, its own call) of such consecutive layers of one module
        gmod = None
        for n in self.layers:
            d = None
            if n.fast is not None and n.sat is None:
                d = getattr(n.kmod, "direct", None)
                d = d(n.kind, n.handle) if d is not None and getattr(n.kmod, n.kind, None) is n.fast else None
            if d is None or gmod is not n.kmod:
                self._chain(calls, group, gmod)
                group = []
                gmod = None
            if n.fast is None or n.sat is not None:
                calls.append((n.call, None, None, None))
                continue
            f, h = d if d is not None else (n.fast, n.handle)
            if d is not None and getattr(n.kmod, "chain", None) is not None:
                gmod = n.kmod
                group.append((n.kind, n.handle, n.src, n.out, (f, n.src, n.out, h)))
            else:
                calls.append((f, n.src, n.out, h))
        self._chain(calls, group, gmod)
        self.calls = calls

    def _chain(self, calls, group, kmod):
        # (Model.link) the calls of a group of consecutive layers of kmod: one if kmod chains them
        c = kmod.chain([g[:4] for g in group]) if len(group) > 1 else None
        if c is not None:
            calls.append((c[0], None, 0, c[1]))
            return
        for g in group:
            calls.append(g[4])

    def exports(self):
        # What the generated module defines, in one statement: run, predict and its constants (see __init__).
        return (self.run, self.predict) + tuple(self.scales or (None, None, None, None))

    def expects(self):
        # What run() takes, for error messages: "64 ints in [0, 255]: one sample of shape 1x8x8, flattened".
        return "%d ints in [%d, %d]: one sample of shape %s, flattened" % (
            self.n_in, self.qmin, self.qmax, "x".join([str(d) for d in self.shape]))

    def _check(self, x):
        # Once per call and cheap: the type, the length, then (unless bytes for a quint8 input) every value.
        if not isinstance(x, _SEQUENCES):
            raise ValueError("%s: input must be bytes, bytearray or a list, tuple or array of ints, got %s "
                             "(the model takes %s)"
                             % (self.name, type(x).__name__, self.expects()))
        if len(x) != self.n_in:
            raise ValueError("%s: expected %d input values, got %d (the model takes %s)"
                             % (self.name, self.n_in, len(x), self.expects()))
        if self.qmin == 0 and isinstance(x, _BYTES):
            return
        lo = self.qmin
        hi = self.qmax
        for v in x:
            if type(v) is not int or v < lo or v > hi:
                raise ValueError("%s: inputs must be ints in [%d, %d], got %r (the model takes %s)"
                                 % (self.name, lo, hi, v, self.expects()))

    def prepare(self, x):
        # Check the input; return what the first steps read (qint8 codes staged as code + 128).
        self._check(x)
        lo = self.qmin
        if lo == 0 and isinstance(x, _BYTES):
            return x
        stage = self.stage
        for i in range(self.n_in):
            stage[i] = x[i] - lo
        return stage

    def run(self, x):
        # x: one sample's quantized input (bytes, bytearray or list of ints), flattened in torch's order.
        # Returns the quantized output codes in a bytearray (array('b') for qint8) owned by the model,
        # overwritten by the next call: copy it with bytes(...) or list(...) to keep it.
        if self.qmin or not isinstance(x, _BYTES) or len(x) != self.n_in:  # else nothing to check or stage
            x = self.prepare(x)
        for f, src, out, h in self.calls:
            f(x if src is None else src, out, h)
        res = self.result
        if res is None:
            return self.out
        out = self.out
        lo = self.out_qmin
        for i in range(self.n_out):
            res[i] = out[i] + lo
        return res

    def predict(self, x):
        # Index of the largest output (the first one on ties, like torch.argmax).
        y = self.run(x)
        best = 0
        for i in range(1, self.n_out):
            if y[i] > y[best]:
                best = i
        return best
