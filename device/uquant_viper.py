# uquant_viper: @micropython.viper whole-layer kernels, the native tier of uquant_rt.
#
# For boards whose firmware has the native emitter (ESP32 xtensawin, ESP32-C3 rv32imc, and ARM boards for the ops
# the asm_thumb tier lacks). Each op computes exactly the bytes of its bytecode twin in uquant_rt (dense, conv,
# maxpool): same sums, same requantization (requant_channel, including the 15-bit limb form), same exceptions,
# clip and table. Read them side by side: each block below names the bytecode function it mirrors.
#
#     h = prepare_dense(K, N, lo, hi, W, P, E, T)   # once, when the model is built (allocates)
#     dense(x, out, h)                              # per inference: allocates nothing
#
# E holds the exceptions as flat triples (channel n, a, code) sorted by (n, a), where uquant_rt keeps a dict:
# the kernels walk them with a cursor, channel by channel. x and out must be buffers (bytes, bytearray): viper
# reads them through raw pointers.
#
# Viper notes that shape the code:
# * Viper ints are machine words (32-bit on boards): every intermediate here stays inside int32, as the host
#   guarantees for the bytecode tier (|acc| < 2**31, the requant words as in uquant_rt.requant).
# * A ptr32 load zero-extends on 64-bit ports (the unix port): words that can be negative (c_lo, Dh, Dl) are
#   sign-extended with (word ^ m) - m, m = 2**31, which is a no-op on 32-bit boards.
# * Viper keeps only the first three locals of a function in registers, and arguments are the first locals. So
#   each kernel takes as its first three arguments what its inner loop touches on every tap: the accumulator
#   (callers pass 0) and the two pointers the dot product reads. Everything else lives in the stack frame.
# * The dot product steps its two pointers along (x[0] * w[0] + x[1] * w[1] + ...: loads at constant offsets,
#   about 30% faster than indexing x[k + 1] on x64), unrolled by 4, then a tail that reads nothing past K.
#   Addresses are compared as uint (a board's RAM may sit above 2**31).
# * No calls or attribute lookups inside loops.
# * The public ops are small bytecode wrappers that check buffer sizes (viper does not) and unpack the handle.

import micropython
from array import array

_NO_TABLE = bytearray(1)  # stands in for an absent table: viper's ptr casts need a buffer, not None
_NO_FIXES = array("i", (0,))


def _ints(v):
    # v as an array of 32-bit ints (what ptr32 reads); an array('i') is used as it is, anything else copied.
    if isinstance(v, array) and len(v) and len(bytes(v[:1])) == 4:
        return v
    return array("i", v)


def _words(P, nbytes):
    # The requantization words (int32 little-endian bytes, uquant_rt.as_words; or an array('i')), checked
    # against their expected size. Bytes are used in place when word-aligned (the module keeps its bytes for its
    # lifetime: a copy would cost their size again); a frozen module's bytes in flash may not be, and are copied.
    n = len(P) if isinstance(P, (bytes, bytearray)) else 4 * len(P)
    if n != nbytes:
        raise ValueError("uquant_viper: %d bytes of requantization words, expected %d" % (n, nbytes))
    if not isinstance(P, (bytes, bytearray)):
        return _ints(P)
    if _address(P) & 3:
        return array("i", P)  # MicroPython copies bytes raw
    return P


@micropython.viper
def _address(b) -> uint:
    return uint(ptr8(b))


def _fixes(E, N):
    # Exception triples (n, a, code), checked sorted by (n, a): the kernels walk them in order.
    if E is None or not len(E):
        return _NO_FIXES, 0
    E = _ints(E)
    if len(E) % 3:
        raise ValueError("uquant_viper: exceptions are not (channel, a, code) triples")
    for j in range(0, len(E), 3):
        if not 0 <= E[j] < N or E[j + 1] < 0 or (j and (E[j - 3], E[j - 2]) >= (E[j], E[j + 1])):
            raise ValueError("uquant_viper: exceptions must name channels < %d, sorted by (channel, a)" % N)
    return E, len(E)


def _table(T):
    if T is None:
        return _NO_TABLE, 0
    if len(T) != 256:
        raise ValueError("uquant_viper: a code table has 256 entries")
    return T, 1


# ---------------------------------------------------------------------------------------------------- dense


@micropython.viper
def _dense(acc: int, x: ptr8, w: ptr8, out: ptr8, h: ptr32, P: ptr32, E: ptr32, T: ptr8):
    # uquant_rt.dense. acc, x, w: the registers of the dot product (w walks along the rows of W).
    K = h[0]
    N = h[1]
    lo = h[2]
    hi = h[3]
    ne = h[4]  # number of words in E (3 per exception)
    table = h[5]
    x0 = uint(x)
    x4 = x0 + K - 3  # the unrolled loop runs while x < x4, the tail while x < xK
    xK = x0 + K
    m = 1
    m <<= 31  # sign-extends a ptr32 word on 64-bit ports: (word ^ m) - m
    # dense: sx = sum(x[0:K])
    sx = 0
    for k in range(K):
        sx += x[k]
    e = 0  # exception cursor
    p = 0  # 7 * n
    for n in range(N):
        # channel: acc = sum x[k] * W[n*K + k], unrolled by 4, then the tail; w ends at the next row
        acc = 0
        x = ptr8(x0)
        while uint(x) < x4:
            acc += x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3]
            x = ptr8(uint(x) + 4)
            w = ptr8(uint(w) + 4)
        while uint(x) < xK:
            acc += x[0] * w[0]
            x = ptr8(uint(x) + 1)
            w = ptr8(uint(w) + 1)
        # requant_channel -> requant: a = clamp(acc - c*sx - c_lo, 0, Wn)
        Wn = P[p + 2]
        A = P[p + 3]
        Dh = (P[p + 4] ^ m) - m
        Dl = (P[p + 5] ^ m) - m
        S = P[p + 6]
        a = acc - P[p] * sx - ((P[p + 1] ^ m) - m)
        if a < 0:
            a = 0
        elif a > Wn:
            a = Wn
        if S < 30:
            y = (a * A + Dl) >> S
        else:  # the 15-bit limb form
            al = a & 0x7FFF
            ah = a >> 15
            Al = A & 0x7FFF
            Ah = A >> 15
            l15 = al * Al + (Dl & 0x7FFF)
            mid = ah * Al + al * Ah + (Dl >> 15) + (l15 >> 15)
            y = (ah * Ah + Dh + (mid >> 15)) >> (S - 30)
        # requant_channel: the channel's exceptions (fix.get(a, y)), walked in (n, a) order
        while e < ne and E[e] < n:
            e += 3
        j = e
        while j < ne and E[j] == n:
            if E[j + 1] == a:
                y = E[j + 2]
                break
            j += 3
        # requant_channel: clip; channel: table
        if y < lo:
            y = lo
        elif y > hi:
            y = hi
        if table:
            y = T[y]
        out[n] = y
        p += 7


def prepare_dense(K, N, lo, hi, W, P, E, T):
    # Handle for dense(): arguments as for uquant_rt.dense, except E = sorted flat (n, a, code) triples.
    if len(W) != K * N:
        raise ValueError("uquant_viper: dense weights are not N x K bytes")
    E, ne = _fixes(E, N)
    T, table = _table(T)
    return (array("i", (K, N, lo, hi, ne, table)), W, _words(P, 28 * N), E, T, K, N)


def dense(x, out, h):
    # out[0:N] = the Linear layer of h applied to the codes x[0:K] (as uquant_rt.dense).
    if len(x) < h[5] or len(out) < h[6]:
        raise ValueError("uquant_viper.dense: buffer too small")
    _dense(0, x, h[1], out, h[0], h[2], h[3], h[4])


# --------------------------------------------------------------------------------------------------- satfix

@micropython.viper
def _satfix(lo: int, x: ptr8, w: ptr8, P: ptr32, S: ptr8, B: ptr32, h: ptr32):
    # uquant_rt.satfix. lo: the c_lo being moved; x, w: what each pair reads (inputs, the layer's weights).
    K = h[0]
    ns = h[1]
    j = 0
    m = 0
    while j < ns:
        n = S[j] | (S[j + 1] << 8)
        end = j + 4 + 2 * (S[j + 2] | (S[j + 3] << 8))
        j += 4
        lo = B[m]
        m += 1
        row = n * K
        while j < end:
            k = S[j] | (S[j + 1] << 8)
            j += 2
            i = row + k
            s = x[k] * (w[i] - 128) + x[k + 1] * (w[i + 1] - 128)
            if s > 32767:
                lo += s - 32767
            elif s < -32768:
                lo += s + 32768
        P[7 * n + 1] = lo


def prepare_satfix(W, K, P, S, B):
    # Handle for satfix(): the arguments of uquant_rt.satfix after x, checked there (P and B are arrays).
    return (array("i", (K, len(S))), W, P, S, B)


def satfix(x, h):
    _satfix(0, x, h[1], h[2], h[3], h[4], h[0])


# ----------------------------------------------------------------------------------------------------- conv

@micropython.viper
def _conv(acc: int, v: ptr8, w: ptr8, x: ptr8, out: ptr8, h: ptr32, P: ptr32, E: ptr32, T: ptr8):
    # uquant_rt.conv. acc, v, w: the registers of the dot product (v: the gathered window, w: a row of W).
    C = h[0]
    H = h[1]
    Wd = h[2]
    KH = h[4]
    KW = h[5]
    SH = h[6]
    SW = h[7]
    PH = h[8]
    PW = h[9]
    DH = h[10]
    DW = h[11]
    G = h[12]
    OH = h[13]
    OW = h[14]
    SAT = h[15]
    xzp = h[16]
    lo = h[17]
    hi = h[18]
    ne = h[19]
    table = h[20]
    cg = h[21]
    ng = h[22]
    kk = h[23]
    OHW = OH * OW
    HWd = H * Wd
    v0 = uint(v)
    v2 = v0 + kk - 1  # pairs (SAT) run while v < v2
    v4 = v0 + kk - 3  # the unrolled loop runs while v < v4, the tail while v < vK
    vK = v0 + kk
    w0 = uint(w)
    m = 1
    m <<= 31  # sign-extends a ptr32 word on 64-bit ports: (word ^ m) - m
    eg = 0  # exception cursor at the group's first channel
    for grp in range(G):
        while eg < ne and E[eg] < grp * ng:
            eg += 3
        for oy in range(OH):
            for ox in range(OW):
                # conv: gather the window of the group into v (padding reads the input zero point)
                v = ptr8(v0)
                j = 0
                sx = 0
                if SAT == 2:  # im2col order: taps row-major, the group's channels innermost
                    for ky in range(KH):
                        iy = oy * SH - PH + ky * DH
                        for kx in range(KW):
                            ix = ox * SW - PW + kx * DW
                            if iy >= 0 and iy < H and ix >= 0 and ix < Wd:
                                i = (grp * cg * H + iy) * Wd + ix
                                for c in range(cg):
                                    t = x[i]
                                    v[j] = t
                                    sx += t
                                    j += 1
                                    i += HWd
                            else:
                                for c in range(cg):
                                    v[j] = xzp
                                    j += 1
                                sx += cg * xzp
                else:
                    for c in range(grp * cg, grp * cg + cg):
                        for ky in range(KH):
                            iy = oy * SH - PH + ky * DH
                            if iy >= 0 and iy < H:  # per row, not per tap
                                row = (c * H + iy) * Wd
                                for kx in range(KW):
                                    ix = ox * SW - PW + kx * DW
                                    if ix >= 0 and ix < Wd:
                                        t = x[row + ix]
                                    else:
                                        t = xzp
                                    v[j] = t
                                    sx += t
                                    j += 1
                            else:
                                for kx in range(KW):
                                    v[j] = xzp
                                    j += 1
                                sx += KW * xzp
                pos = oy * OW + ox
                e = eg
                for n in range(grp * ng, grp * ng + ng):
                    v = ptr8(v0)
                    w = ptr8(w0 + n * kk)
                    p = 7 * n
                    acc = 0
                    if SAT:
                        # channel_sat: raw products in consecutive pairs, each pair sum saturated to int16
                        while uint(v) < v2:
                            s = v[0] * (w[0] - 128) + v[1] * (w[1] - 128)
                            if s > 32767:
                                s = 32767
                            elif s < -32768:
                                s = -32768
                            acc += s
                            v = ptr8(uint(v) + 2)
                            w = ptr8(uint(w) + 2)
                        if uint(v) < vK:
                            acc += v[0] * (w[0] - 128)
                        acc -= (P[p] - 128) * sx
                    else:
                        # channel: acc = sum v[k] * W[n*kk + k], unrolled by 4, then the tail
                        while uint(v) < v4:
                            acc += v[0] * w[0] + v[1] * w[1] + v[2] * w[2] + v[3] * w[3]
                            v = ptr8(uint(v) + 4)
                            w = ptr8(uint(w) + 4)
                        while uint(v) < vK:
                            acc += v[0] * w[0]
                            v = ptr8(uint(v) + 1)
                            w = ptr8(uint(w) + 1)
                        acc -= P[p] * sx
                    # requant_channel -> requant: a = clamp(acc - c_lo, 0, Wn)
                    Wn = P[p + 2]
                    A = P[p + 3]
                    Dh = (P[p + 4] ^ m) - m
                    Dl = (P[p + 5] ^ m) - m
                    S = P[p + 6]
                    a = acc - ((P[p + 1] ^ m) - m)
                    if a < 0:
                        a = 0
                    elif a > Wn:
                        a = Wn
                    if S < 30:
                        y = (a * A + Dl) >> S
                    else:  # the 15-bit limb form
                        al = a & 0x7FFF
                        ah = a >> 15
                        Al = A & 0x7FFF
                        Ah = A >> 15
                        l15 = al * Al + (Dl & 0x7FFF)
                        mid = ah * Al + al * Ah + (Dl >> 15) + (l15 >> 15)
                        y = (ah * Ah + Dh + (mid >> 15)) >> (S - 30)
                    # requant_channel: the channel's exceptions (fix.get(a, y)), walked in (n, a) order
                    while e < ne and E[e] < n:
                        e += 3
                    i = e
                    while i < ne and E[i] == n:
                        if E[i + 1] == a:
                            y = E[i + 2]
                            break
                        i += 3
                    # requant_channel: clip; channel: table
                    if y < lo:
                        y = lo
                    elif y > hi:
                        y = hi
                    if table:
                        y = T[y]
                    out[n * OHW + pos] = y


def prepare_conv(g, xzp, lo, hi, W, P, E, T):
    # Handle for conv(): arguments as for uquant_rt.conv, except E = sorted flat (n, a, code) triples and no
    # window buffer (the handle owns one).
    if len(g) != 16:
        raise ValueError("uquant_viper: conv geometry has 16 entries")
    C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT = g
    if G < 1 or C % G or N % G:
        raise ValueError("uquant_viper: groups must divide the channels")
    cg = C // G
    kk = cg * KH * KW
    if len(W) != N * kk:
        raise ValueError("uquant_viper: conv weights are not N x (C/G * KH * KW) bytes")
    E, ne = _fixes(E, N)
    T, table = _table(T)
    hdr = array("i", tuple(g) + (xzp, lo, hi, ne, table, cg, N // G, kk))  # the words _conv reads from h
    return (hdr, W, _words(P, 28 * N), E, T, bytearray(kk), C * H * Wd, N * OH * OW)


def conv(x, out, h):
    # out = the convolution of h over the CHW codes x (as uquant_rt.conv).
    if len(x) < h[6] or len(out) < h[7]:
        raise ValueError("uquant_viper.conv: buffer too small")
    _conv(0, h[5], h[1], x, out, h[0], h[2], h[3], h[4])


# -------------------------------------------------------------------------------------------------- maxpool


@micropython.viper
def _maxpool(best: int, r: int, x: ptr8, out: ptr8, g: ptr32):
    # uquant_rt.maxpool. best, r (the window row's first index), x: the registers of the window loop.
    C = g[0]
    H = g[1]
    Wd = g[2]
    KH = g[3]
    KW = g[4]
    SH = g[5]
    SW = g[6]
    PH = g[7]
    PW = g[8]
    DH = g[9]
    DW = g[10]
    OH = g[11]
    OW = g[12]
    o = 0
    for c in range(C):
        base = c * H * Wd
        for oy in range(OH):
            for ox in range(OW):
                best = -1
                for ky in range(KH):
                    iy = oy * SH - PH + ky * DH
                    if iy >= 0 and iy < H:
                        r = base + iy * Wd
                        for kx in range(KW):
                            ix = ox * SW - PW + kx * DW
                            if ix >= 0 and ix < Wd:
                                if x[r + ix] > best:
                                    best = x[r + ix]
                out[o] = best
                o += 1


def prepare_maxpool(g):
    # Handle for maxpool(): g as for uquant_rt.maxpool (C, H, Wd, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW).
    if len(g) != 13:
        raise ValueError("uquant_viper: maxpool geometry has 13 entries")
    return (array("i", g), g[0] * g[1] * g[2], g[0] * g[11] * g[12])


def maxpool(x, out, h):
    # out = the max over each window of each channel of x (as uquant_rt.maxpool).
    if len(x) < h[1] or len(out) < h[2]:
        raise ValueError("uquant_viper.maxpool: buffer too small")
    _maxpool(0, 0, x, out, h[0])
