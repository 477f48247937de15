"""Integer requantization that reproduces torch's float32 requantization exactly, and the proof that it does.

Torch turns a layer's exact integer accumulator into an output code with float32 arithmetic (engines.Requant).
For one output channel that map is a monotone step function of the accumulator: flat at the bottom code
up to some accumulator, then rising one code at a time at a few hundred thresholds, then flat at the top.
The device replaces it by (device/uquant_rt.py: requant)

    a = clamp(acc - c_lo, 0, W)                      # position inside the rising window
    y = floor((a * A + D) / 2**S)                    # a straight line with integer slope and offset
    y = exceptions.get(a, y)                         # rare: where float rounding bent torch's steps
    y = clip(y, lo, hi)                              # torch's own clip (lo = zero point with a fused ReLU)

with integers c_lo, W, A, D, S chosen here. Two monotone step functions agree on an interval exactly
when they rise at the same thresholds, so we compute torch's thresholds by bisection over the channel's
reachable accumulator range and fit the integer line to them. Float rounding occasionally moves one of
torch's thresholds by a step that no straight line follows; those few values of `a` become exceptions.
`verify_channel` then re-checks the device's own code against torch at every step boundary, which covers
every accumulator in the range.

MicroPython's small ints are 31-bit on 32-bit boards and any larger intermediate is a heap allocation, so:
for S < 30 the product is formed directly and the host checks W*A + |D| < 2**30; for S >= 30 the device
multiplies in 15-bit limbs, which needs W < 2**28, A < 2**29 and |D >> 30| < 2**29.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SMALL = 1 << 30  # MicroPython small ints on 32-bit ports: [-2**30, 2**30)
LIMB_W_LIMIT = 1 << 28
LIMB_A_LIMIT = 1 << 29
LIMB_DH_LIMIT = 1 << 29
MAX_SHIFT = 60
MAX_EXCEPTIONS = 256  # per channel; more means the integer line is a poor fit: refuse instead


class RequantError(ValueError):
    pass


@dataclass
class ChannelRequant:
    c_lo: int  # accumulators at or below c_lo give the bottom code
    W: int  # width of the rising window: accumulators at or above c_lo + W give the top code
    A: int
    D: int
    S: int
    exceptions: dict[int, int] = field(default_factory=dict)  # a -> code

    @property
    def words(self) -> tuple[int, int, int, int, int, int]:
        """The small ints the device stores: c_lo, W, A, D >> 30, D & (2**30 - 1), S (direct form: D whole)."""
        if self.S < 30:
            return self.c_lo, self.W, self.A, 0, self.D, self.S
        return self.c_lo, self.W, self.A, self.D >> 30, self.D & (SMALL - 1), self.S

    def fits_small_ints(self) -> bool:
        if any(not -SMALL <= v < SMALL for v in self.words):
            return False
        if self.S < 30:
            return abs(self.D) < SMALL and abs(self.W * self.A + self.D) < SMALL
        return self.W < LIMB_W_LIMIT and self.A < LIMB_A_LIMIT and abs(self.D >> 30) < LIMB_DH_LIMIT


def thresholds(fn, acc_lo: np.ndarray, acc_hi: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """T[n, j] = the smallest acc in [acc_lo[n], acc_hi[n]] whose output is >= lo+1+j, or acc_hi[n]+1 if none.

    Vectorised bisection over all channels and all output levels at once; `fn` must be monotone in acc.
    """
    n = acc_lo.size
    levels = np.arange(lo + 1, hi + 1, dtype=np.int64)[:, None]  # (L, 1)
    L = np.broadcast_to(acc_lo - 1, (levels.size, n)).copy()  # invariant: y(L) < k (acc_lo-1 is virtual)
    H = np.broadcast_to(acc_hi + 1, (levels.size, n)).copy()  # invariant: y(H) >= k (acc_hi+1 is virtual)
    while True:
        active = H - L > 1
        if not active.any():
            break
        mid = (L + H) // 2
        y = fn(np.where(active, mid, acc_lo))
        ge = y >= levels
        H = np.where(active & ge, mid, H)
        L = np.where(active & ~ge, mid, L)
    return H.T.copy()  # (N, L)


def line_thresholds(A: int, D: int, S: int, levels: range, W: int) -> list[int]:
    """Where floor((a*A + D) / 2**S) first reaches each level, clamped to [0, W+1]."""
    out = []
    for k in levels:
        target = k << S
        t = (0 if D >= target else W + 1) if A == 0 else -((D - target) // A)  # ceil((target - D) / A)
        out.append(min(max(t, 0), W + 1))
    return out


I64_SAFE = 1 << 62  # magnitudes below this stay exact in int64 through the sums below


def _line_thresholds_np(A: int, D: int, S: int, ks: np.ndarray, W: int) -> np.ndarray:
    """line_thresholds for the levels ks (int64), in numpy; the caller checks that every value fits int64."""
    return np.clip(-((D - (ks << S)) // A), 0, W + 1)


def _best_offset_np(A: int, S: int, t: np.ndarray, ks: np.ndarray, W: int, floor_at_0, ceil_at_w):
    """best_offset in numpy (same answer): the D of the most-covered region, or None where that region reaches
    one of the mandatory intervals' infinite ends (the caller then runs best_offset itself).

    Coverage at D counts the intervals [lo, hi] holding D; a sweep over opens (at lo) and closes (at hi + 1, before
    the opens at the same place) gives it. best_offset's region starts at the first open where the coverage is
    largest and ends at the first interval end at or after it."""
    must = 1 << 20
    kS = ks << S
    opens = [kS - t * A]
    w_open = [np.ones(ks.size, np.int64)]
    closes = [kS - (t - 1) * A]  # hi + 1
    base = 0
    if floor_at_0 is not None:  # [floor << S, inf): opens, never closes
        opens.append(np.array([floor_at_0 << S], np.int64))
        w_open.append(np.array([must], np.int64))
    if ceil_at_w is not None:  # (-inf, ((ceil + 1) << S) - W*A - 1]: open from the start
        base = must
        closes.append(np.array([((ceil_at_w + 1) << S) - W * A], np.int64))
    o, c = np.concatenate(opens), np.concatenate(closes)
    w = np.concatenate([-np.ones(ks.size, np.int64), np.full(c.size - ks.size, -must, np.int64), *w_open])
    pos = np.concatenate([c, o])
    order = np.argsort(pos, kind="stable")  # closes first at equal positions
    cov = np.cumsum(w[order]) + base
    is_open = order >= c.size
    cand = np.where(is_open, cov, -1)
    i = int(np.argmax(cand))
    if cand[i] <= base:  # best_offset's best region is the one open at -inf
        return None
    left = int(pos[order[i]])
    later = c[c > left]
    if not later.size:  # the region runs to +inf
        return None
    right = int(later.min()) - 1
    return (left + right) // 2


def _fit_shifts_np(As: list[int], Ss: list[int], t: np.ndarray, ks: np.ndarray, W: int, floor_at_0, ceil_at_w):
    """_best_offset_np and the line's wrong-threshold count for several (A, S) at once (one row each; the caller
    checks that every row's values fit int64). Returns D (None where best_offset must decide) and wrong per row
    (wrong is only meaningful where D is not None)."""
    must = 1 << 20
    A = np.array(As, np.int64)[:, None]
    S = np.array(Ss, np.int64)[:, None]
    R, n = A.shape[0], ks.size
    kS = ks[None, :] << S  # (R, n)
    opens, closes = [kS - t * A], [kS - (t - 1) * A]
    w_open = [np.ones(n, np.int64)]
    base = 0
    if floor_at_0 is not None:
        opens.append(np.int64(floor_at_0) << S)
        w_open.append(np.array([must], np.int64))
    if ceil_at_w is not None:
        base = must
        closes.append((np.int64(ceil_at_w + 1) << S) - W * A)
    o, c = np.concatenate(opens, 1), np.concatenate(closes, 1)
    w = np.concatenate([-np.ones(n, np.int64), np.full(c.shape[1] - n, -must, np.int64), *w_open])
    pos = np.concatenate([c, o], 1)
    order = np.argsort(pos, axis=1, kind="stable")  # closes first at equal positions
    cov = np.cumsum(w[order], axis=1) + base
    cand = np.where(order >= c.shape[1], cov, -1)
    i = np.argmax(cand, axis=1)
    rows = np.arange(R)
    left = pos[rows, order[rows, i]]
    later = np.where(c > left[:, None], c, np.iinfo(np.int64).max)
    right = later.min(1) - 1
    ok = (cand[rows, i] > base) & (later.min(1) < np.iinfo(np.int64).max)
    D = (left + right) // 2
    L = np.clip(-((D[:, None] - kS) // A), 0, W + 1)
    wrong = np.abs(L - t).sum(1)
    return [int(d) if k else None for d, k in zip(D.tolist(), ok.tolist())], wrong.tolist(), L


def best_offset(A: int, S: int, t: list[int], levels: range, W: int, floor_at_0, ceil_at_w) -> int:
    """The D satisfying the most threshold constraints for this slope (a 1-D interval stabbing sweep).

    Level k rising at a = t: the line reaches k at t but not at t-1, i.e.
    k*2^S - t*A <= D <= k*2^S - (t-1)*A - 1. Where the window ends above the clip's bottom (or below its
    top) the line must not leave the end code there: mandatory constraints line(0) >= floor_at_0 and
    line(W) <= ceil_at_w (None where the clip takes care of it).
    """
    inf = 1 << 400
    must = 1 << 20
    intervals = []
    if floor_at_0 is not None:
        intervals.append((floor_at_0 << S, inf, must))
    if ceil_at_w is not None:
        intervals.append((-inf, ((ceil_at_w + 1) << S) - W * A - 1, must))
    for k, tk in zip(levels, t):
        intervals.append(((k << S) - tk * A, (k << S) - (tk - 1) * A - 1, 1))
    events = []
    for lo_d, hi_d, w in intervals:
        if lo_d <= hi_d:
            events += [(lo_d, 0, w), (hi_d, 1, w)]  # an interval opens before one closes at the same D
    events.sort()
    best, cur, best_i = -1, 0, 0
    for i, (d, kind, w) in enumerate(events):
        cur += w if kind == 0 else -w
        if kind == 0 and cur > best:
            best, best_i = cur, i
    left = events[best_i][0]
    right = next(e[0] for e in events[best_i + 1:] if e[1] == 1)  # coverage holds until the next close
    return (left + right) // 2  # the middle of the best region: margin on both sides


def fit_channel(fn_one, M: float, T, acc_lo: int, acc_hi: int, lo: int, hi: int) -> ChannelRequant:
    """Choose c_lo, W, A, D, S (and exceptions) for one channel whose torch thresholds are T (see `thresholds`).

    fn_one(acc_array) gives torch's outputs for this channel (used only to fill exceptions).
    """
    Ta = np.asarray(T, np.int64)
    y_lo = lo + int(np.count_nonzero(Ta <= acc_lo))
    y_hi = lo + int(np.count_nonzero(Ta <= acc_hi))
    if y_lo == y_hi:  # constant output over the whole range
        return ChannelRequant(acc_lo, 0, 0, y_lo, 0)
    c_lo = int(Ta[y_lo - lo]) - 1  # last accumulator still at y_lo (T index j is level lo+1+j)
    W = int(Ta[y_hi - lo - 1]) - c_lo  # first accumulator at y_hi, relative to c_lo
    levels = range(y_lo + 1, y_hi + 1)
    ks = np.arange(y_lo + 1, y_hi + 1, dtype=np.int64)
    t_np = Ta[y_lo - lo:y_hi - lo] - c_lo
    t = None  # the Python list, made only where a value may not fit int64
    kmax = max(abs(y_lo), abs(y_hi)) + 2
    floor_at_0, ceil_at_w = (y_lo if y_lo > lo else None), (y_hi if y_hi < hi else None)
    # Try the one-multiply form at its finest resolution first, then the limb form from coarse to fine.
    # (|a * A| + |D| < 2**30 with a <= W, A ~ M * 2**S and D ~ y * 2**S bounds S for the one-multiply form)
    span = W * M + abs(y_lo) + abs(y_hi) + 2
    if not math.isfinite(span) or not M > 0:
        raise RequantError(f"multiplier {M:.6g} cannot be represented (window {W})")
    s_direct = max(0, min(29, int(math.floor(math.log2(SMALL / 2 / span))))) if M > 0 else 29
    best = None
    shifts = [*range(max(0, s_direct - 3), s_direct + 1)[::-1], *range(30, MAX_SHIFT + 1)]
    mults = [int(round(M * 2.0 ** S)) for S in shifts]
    # every shift whose values fit int64 at once in numpy (a row each); the loop below takes them in order
    batch = [r for r, (S, A) in enumerate(zip(shifts, mults)) if A > 0 and (kmax << S) + (W + 2) * A < I64_SAFE]
    pre = {}
    if batch:
        Ds, wrongs, Ls = _fit_shifts_np([mults[r] for r in batch], [shifts[r] for r in batch], t_np, ks, W,
                                        floor_at_0, ceil_at_w)
        pre = {r: (Ds[b], wrongs[b], Ls[b]) for b, r in enumerate(batch)}
    for r, (S, A) in enumerate(zip(shifts, mults)):
        if A <= 0:
            continue
        D, wrong, L = pre.get(r, (None, None, None))
        small = D is not None
        if D is None:
            t = t if t is not None else [int(v) for v in t_np]
            D = best_offset(A, S, t, levels, W, floor_at_0, ceil_at_w)
        ch = ChannelRequant(c_lo, W, A, D, S)
        if not ch.fits_small_ints():
            if S >= 30:
                break
            continue
        if small:  # wrong and L from the batch (D < 2**62 there: the line's values fit int64 too)
            pass
        else:
            t = t if t is not None else [int(v) for v in t_np]
            L = line_thresholds(A, D, S, levels, W)
            wrong = sum(abs(a - b) for a, b in zip(L, t))
        if (y_lo > lo and D >> S < y_lo) or (y_hi < hi and (W * A + D) >> S > y_hi):
            continue  # the line leaves the window's end codes where no clip catches it
        if best is None or wrong < best[0]:
            best = (wrong, ch, L)
        if wrong == 0:
            break
    if best is None:
        raise RequantError(f"no integer form fits in 31-bit ints (multiplier {M:.6g}, window {W})")
    wrong, ch, L = best
    if wrong > MAX_EXCEPTIONS:
        raise RequantError(f"no integer form within {MAX_EXCEPTIONS} exceptions (needs {wrong})")
    if wrong:
        t = [int(v) for v in t_np]
        a = sorted({v for l_k, t_k in zip((int(v) for v in L), t) for v in range(min(l_k, t_k), max(l_k, t_k))})
        ys = fn_one(np.array(a, np.int64) + c_lo)
        ch.exceptions = {int(v): int(y) for v, y in zip(a, ys)}
    return ch


def device_requant(acc: int, ch: ChannelRequant, lo: int, hi: int) -> int:
    """The device's function, via the device runtime's own code (so the proof checks what runs)."""
    from .runtime import rt

    return rt.requant_one(acc, ch.words, ch.exceptions, lo, hi)


def device_words(ch: ChannelRequant):
    """The device runtime's requant_channel and its arguments for this channel (P, E, j): the words and exceptions
    encoded once, exactly as its requant_one (what device_requant calls) encodes them for every accumulator."""
    from .runtime import rt

    fix = ch.exceptions
    E = rt.as_words(tuple(v for a in sorted(fix or ()) for v in (0, a, fix[a])))
    P = rt.as_words((0,) + tuple(ch.words))
    return rt.requant_channel, P, E, 0 if E else -1


def verify_points(ch: ChannelRequant, T, acc_lo: int, acc_hi: int) -> list[int]:
    """The accumulators where device and torch must be compared: every breakpoint of either step function
    (torch's thresholds, the line's thresholds, the window ends and the exception points) in [acc_lo, acc_hi]."""
    pts = {acc_lo, ch.c_lo, ch.c_lo + 1, ch.c_lo + ch.W}
    pts.update(int(v) for v in T)
    if ch.W:
        y0, yW = ch.D >> ch.S, (ch.W * ch.A + ch.D) >> ch.S  # the line's codes at the window ends
        kmax = max(abs(y0), abs(yW)) + 2
        if (kmax << ch.S) + (ch.W + 2) * ch.A < I64_SAFE and abs(ch.D) < I64_SAFE:
            lt = _line_thresholds_np(ch.A, ch.D, ch.S, np.arange(y0 + 1, yW + 1, dtype=np.int64), ch.W) + ch.c_lo
            pts.update(lt.tolist())
        else:
            pts.update(ch.c_lo + v for v in line_thresholds(ch.A, ch.D, ch.S, range(y0 + 1, yW + 1), ch.W))
    for a in ch.exceptions:
        pts.update((ch.c_lo + a, ch.c_lo + a + 1))
    return sorted(p for p in pts if acc_lo <= p <= acc_hi)


def check_points(ch: ChannelRequant, pts: list[int], want, lo: int, hi: int) -> None:
    """The device's code at each point must be torch's (want)."""
    requant_channel, P, E, j = device_words(ch)
    for p, w in zip(pts, np.asarray(want).tolist()):
        got = requant_channel(p, P, 0, E, j, lo, hi)
        if got != w:
            raise RequantError(f"proof failed at acc={p}: device {got}, torch {w}")


def verify_channel(fn_one, ch: ChannelRequant, T: list[int], acc_lo: int, acc_hi: int, lo: int, hi: int) -> int:
    """Prove device == torch on every acc in [acc_lo, acc_hi]; return the number of points checked.

    Both functions are constant between consecutive breakpoints (torch's thresholds, the line's thresholds,
    the window ends and the exception points), so comparing at each breakpoint covers the whole range.
    """
    pts = verify_points(ch, T, acc_lo, acc_hi)
    check_points(ch, pts, fn_one(np.array(pts, np.int64)), lo, hi)
    return len(pts)


def fit_layer(fn, M: np.ndarray, acc_lo: np.ndarray, acc_hi: np.ndarray, lo: int, hi: int) -> list[ChannelRequant]:
    """Fit and prove every channel of a layer. Raises RequantError naming the channel on failure.

    fn(acc) gives torch's output codes for accumulators of shape (..., N); M holds each channel's float
    multiplier (the slope of the line to fit); [lo, hi] bounds every output code. torch's codes at every
    channel's breakpoints come from one call of fn (each column holds one channel's points).
    """
    acc_lo = np.asarray(acc_lo, np.int64)
    acc_hi = np.asarray(acc_hi, np.int64)
    N = acc_lo.size
    T = thresholds(fn, acc_lo, acc_hi, lo, hi)
    out, points = [], []
    for n in range(N):
        def fn_one(a, n=n):
            acc = np.zeros((a.size, N), np.int64)
            acc[:, n] = a
            return fn(acc)[:, n]
        try:
            ch = fit_channel(fn_one, float(M[n]), T[n], int(acc_lo[n]), int(acc_hi[n]), lo, hi)
        except RequantError as e:
            raise RequantError(f"output channel {n}: {e}") from None
        out.append(ch)
        points.append(verify_points(ch, T[n], int(acc_lo[n]), int(acc_hi[n])))
    acc = np.repeat(acc_lo[None, :], max(len(p) for p in points), 0)  # padding: each channel's own acc_lo
    for n, p in enumerate(points):
        acc[:len(p), n] = p
    want = fn(acc)
    for n, (ch, p) in enumerate(zip(out, points)):
        try:
            check_points(ch, p, want[:len(p), n], lo, hi)
        except RequantError as e:
            raise RequantError(f"output channel {n}: {e}") from None
    return out
