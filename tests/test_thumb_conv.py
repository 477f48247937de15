"""The asm_thumb conv and pool kernels (device/uquant_thumbconv.py): their armv6m machine code, run by unicorn on
the host inside the device runtime (TIER "thumb"), gives torch's bytes for random Conv1d/Conv2d layers (regular,
pointwise, depthwise, grouped, strided, padded, dilated; fbgemm's saturating depthwise path, SAT 1), MaxPool and
AvgPool layers, on fbgemm and qnnpack. Speed is printed, not asserted."""
from __future__ import annotations

import ast
import warnings
from array import array

import numpy as np
import pytest
import torch

import randmodels
import uquant
from conftest import FUZZ_SCALE, torch_engine
from randmodels import Chain, pick, random_codes, torch_final_codes
from uquant.hosts import thumb
from uquant.ir import ConversionError
from uquant.runtime import DEVICE_DIR, load_source, rt

warnings.filterwarnings("ignore", category=UserWarning)


THUMBCONV = DEVICE_DIR / "uquant_thumbconv.py"
MIN_OUTPUTS = int(20_000 * FUZZ_SCALE)
ENGINES = ["fbgemm", "qnnpack"]
VARIANTS = ["regular", "pointwise", "depthwise", "grouped", "sat1"]


@pytest.fixture(scope="module")
def tiers():
    return thumb.emulated_tier(source=THUMBCONV), thumb.emulated_tier()


@pytest.fixture
def thumb_rt(tiers):
    conv, dense = tiers
    rt.register("uquant_thumbconv", conv)
    rt.register("uquant_thumb", dense)
    rt.TIER = "thumb"
    yield conv, dense
    rt.TIER = None
    rt.register("uquant_thumbconv", None)
    rt.register("uquant_thumb", None)


# ---------------------------------------------------------------------------------------------------
# the machine code and the Python around it

@pytest.mark.parametrize("arch", ["armv6m", "armv7emsp"])
def test_kernels_compile(arch):
    funcs = thumb.asm_functions(thumb.compile_kernel(arch, THUMBCONV), THUMBCONV)
    assert {"_addr", "_run"} <= set(funcs) and funcs["_run"].n_args == 3


def test_machine_code_is_armv6m_only():
    for f in thumb.asm_functions(thumb.compile_kernel("armv6m", THUMBCONV), THUMBCONV).values():
        code, i = f.code, 0
        while i < len(code):
            hw = code[i] | code[i + 1] << 8
            wide = thumb._is_32bit(hw)
            thumb.classify(hw, code[i + 2] | code[i + 3] << 8 if wide else 0)  # NotARMv6M otherwise
            i += 4 if wide else 2


def test_per_call_code_allocates_nothing():
    """conv/maxpool/avgpool, what runs per inference, are one call of the asm function on the handle's header
    (a tuple subscript and a call with three arguments: no heap allocation on MicroPython); every buffer the
    kernel uses is made by prepare_*."""
    tree = ast.parse(THUMBCONV.read_text())
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for name in ("conv", "maxpool", "avgpool"):
        body = [s for s in fns[name].body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        assert len(body) == 1 and ast.unparse(body[0]) == "_run(x, out, handle[0])", name


def test_sat2_is_declined(tiers):
    conv, _ = tiers
    g = (2, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 5, 5, 2)
    assert conv.prepare_conv(g, 0, 0, 255, bytes(2 * 18), [0, 0, 1, 1, 0, 0, 0] * 2, [], None) is None


# ---------------------------------------------------------------------------------------------------
# random words against the bytecode kernels (every requantization form: direct, limbs, split, exceptions, clip,
# table), on random geometries

def windows(x: np.ndarray, g: tuple, xzp: int) -> np.ndarray:
    """Every (position, group) window of uquant_rt.conv, in its (channel, row, column) order."""
    C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT = g
    xp = np.full((C, H + 2 * PH, Wd + 2 * PW), xzp, np.int64)
    xp[:, PH:PH + H, PW:PW + Wd] = x.reshape(C, H, Wd)
    cg = C // G
    out = []
    for grp in range(G):
        for oy in range(OH):
            for ox in range(OW):
                w = xp[grp * cg:(grp + 1) * cg, oy * SH:oy * SH + (KH - 1) * DH + 1:DH, ox * SW:ox * SW + (KW - 1) * DW + 1:DW]
                out.append(w.reshape(-1))
    return np.array(out)


def inside(rng, P, E, lo, hi):
    """Move some channels' outputs inside [lo, hi] (y(0) and y(Wn) there, exception codes too), so that the kernel's
    fast forms (direct, split, with exceptions) are exercised besides the general one."""
    for n in range(len(P) // 7):
        if rng.random() < 0.3:
            continue
        c, c_lo, Wn, A, Dh, Dl, S = P[7 * n:7 * n + 7]
        span = int((hi - lo) * rng.uniform(0.5, 1))
        A = max(0, (span * 2 ** S) // max(Wn, 1))
        D = lo * 2 ** S + int(rng.integers(0, 2 ** min(S, 20) + 1))
        if S < 30:
            if Wn * A + abs(D) >= 2 ** 30:
                continue
            Dh, Dl = 0, D
        else:
            if A >= 2 ** 29:
                continue
            Dh, Dl = D >> 30, D & (2 ** 30 - 1)
        P[7 * n + 3:7 * n + 6] = [A, Dh, Dl]
        assert lo <= (Wn * A + D) >> S <= hi
    for j in range(0, len(E), 3):
        if rng.random() < 0.7:
            E[j + 2] = int(rng.integers(lo, hi + 1))


def test_random_words_match_the_bytecode_conv(tiers, report):
    from test_thumb import random_layer

    conv, _ = tiers
    rng = np.random.default_rng(21)
    outputs = 0
    forms = {"direct": 0, "split": 0, "exceptions": 0, "general": 0}
    while outputs < MIN_OUTPUTS:
        dim2 = rng.random() < 0.7
        G = int(pick(rng, [1, 1, 2, 3, -1]))
        cg = int(rng.integers(1, 5)) if G > 0 else 1
        G = G if G > 0 else int(rng.integers(1, 9))
        C, N = G * cg, G * int(pick(rng, [1, 1, 2, 3, 5, 8, 9, 13]))
        KH, KW = (int(pick(rng, [1, 2, 3])) if dim2 else 1), int(pick(rng, [1, 2, 3, 5]))
        SH, SW = (int(pick(rng, [1, 2])) if dim2 else 1), int(pick(rng, [1, 2]))
        DH, DW = (int(pick(rng, [1, 1, 2])) if dim2 else 1), int(pick(rng, [1, 1, 2]))
        PH, PW = (int(rng.integers(0, KH)) if dim2 else 0), int(rng.integers(0, KW))
        H = int(rng.integers(max(1, (KH - 1) * DH + 1 - 2 * PH), 8)) if dim2 else 1
        Wd = int(rng.integers(max(1, (KW - 1) * DW + 1 - 2 * PW), 10))
        OH, OW = (H + 2 * PH - (KH - 1) * DH - 1) // SH + 1, (Wd + 2 * PW - (KW - 1) * DW - 1) // SW + 1
        SAT = int(rng.random() < 0.3)
        g = (C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT)
        kk = cg * KH * KW
        xzp = int(rng.integers(0, 256))
        xs = rng.integers(0, 256, (3, C * H * Wd))
        xs[1, :C * H * Wd // 2] = 0
        xs[2, C * H * Wd // 3:] = 255
        wins = np.concatenate([windows(x, g, xzp) for x in xs])
        Wb, P, E, lo, hi, T = random_layer(rng, kk, N, wins[rng.integers(0, len(wins), min(len(wins), 40))])
        inside(rng, P, E, lo, hi)
        h = conv.prepare_conv(g, xzp, lo, hi, Wb, array("i", P), array("i", E), T)
        Q = h[2]
        for n in range(N):
            forms[{0: "direct", 1: "split", 3: "exceptions", 4: "exceptions", 8: "general"}[Q[conv._REC * n + 5] >> 8]] += 1
        for x in xs:
            xb = bytes(x.astype(np.uint8).tolist())
            out = bytearray(b"\xaa" * (N * OH * OW + 2))
            want = bytearray(b"\xaa" * (N * OH * OW + 2))
            conv.conv(xb, out, h)
            rt.conv(xb, want, g, xzp, lo, hi, Wb, rt.as_words(P), rt._fixes(rt.as_words(E)), T, bytearray(kk))
            assert out == want, g
            outputs += N * OH * OW
    assert min(forms.values()) > 0, forms
    report(f"thumbconv = uquant_rt.conv on {outputs} outputs of random words and geometries (channel forms {forms})")


# ---------------------------------------------------------------------------------------------------
# random layers against torch

def random_conv_layer(rng: np.random.Generator, engine: str, variant: str, pool: str | None = None):
    """One random quantized conv (+ReLU) of `variant`, then (if it fits) a `pool` ("max", "avg" or None); and its
    input shape."""
    torch.backends.quantized.engine = engine
    torch.manual_seed(int(rng.integers(2 ** 31)))
    dim = 2 if variant == "sat1" else int(pick(rng, [1, 2, 2]))
    k = int(pick(rng, [1, 2, 3, 3, 5]))
    stride, pad, dil = int(pick(rng, [1, 1, 2])), int(pick(rng, [0, 1, 2])), int(pick(rng, [1, 1, 2]))
    if variant == "regular":
        groups, cin, cout = 1, int(rng.integers(1, 9)), int(rng.integers(1, 17))
        k = max(k, 2)
    elif variant == "pointwise":
        groups, cin, cout, k, pad, dil = 1, int(rng.integers(1, 33)), int(rng.integers(1, 33)), 1, 0, 1
    elif variant == "depthwise":
        C = int(pick(rng, [1, 3, 4, 6, 8, 16])) if engine != "fbgemm" else int(pick(rng, [1, 3, 5, 6]))
        groups, cin, cout = C, C, C * int(pick(rng, [1, 1, 2]))
    elif variant == "grouped":
        groups = int(pick(rng, [2, 3, 4]))
        cin, cout = groups * int(pick(rng, [1, 2, 3])), groups * int(pick(rng, [1, 2, 4]))
    else:  # fbgemm's depthwise fast path (uquant.lower.fbgemm_depthwise_fast_path): SAT 1 on fbgemm
        C = int(pick(rng, [8, 16, 24]))
        groups, cin, cout = C, C, C * int(pick(rng, [1, 1, 2]))
        k = int(pick(rng, [3, 3, 5]))
        stride, pad, dil = int(pick(rng, [1, 1, 2])), k // 2, 1
    span = k * dil - 2 * pad
    size = int(rng.integers(max(span, 1), 11))
    shape = (cin, size) if dim == 1 else (cin, size, int(rng.integers(max(span, 1), 11)))
    conv, in_scale = randmodels.quantized_conv(rng, engine, dim, cin, cout, k, stride, pad, dil, groups)
    layers = [conv]
    out_size = (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
    if pool == "max":
        pk = int(pick(rng, [2, 2, 3]))
        if out_size >= pk:
            layers.append((torch.nn.MaxPool1d if dim == 1 else torch.nn.MaxPool2d)(
                pk, stride=int(pick(rng, [1, 2, 2])), padding=int(rng.integers(0, pk // 2 + 1)),
                dilation=int(pick(rng, [1, 1, 2])) if out_size >= 2 * pk else 1))
    elif pool == "avg":
        if rng.random() < 0.4:
            layers.append(torch.nn.AdaptiveAvgPool1d(1) if dim == 1 else torch.nn.AdaptiveAvgPool2d(1))
        else:
            pk = int(pick(rng, [2, 2, 3]))
            if out_size >= pk:
                layers.append((torch.nn.AvgPool1d if dim == 1 else torch.nn.AvgPool2d)(
                    pk, stride=int(pick(rng, [1, 2])), padding=int(rng.integers(0, pk // 2 + 1)),
                    count_include_pad=bool(rng.random() < 0.5)))
    in_zp = int(pick(rng, [0, 128, 255, int(rng.integers(0, 256))]))
    return Chain(in_scale, in_zp, layers).eval(), shape


@pytest.mark.parametrize("engine", ENGINES)
def test_random_layers_match_torch(engine, thumb_rt, report):
    conv_tier, dense = thumb_rt
    rng = np.random.default_rng(1400 + ENGINES.index(engine))
    outputs = {"conv": 0, "maxpool": 0, "avgpool": 0}
    variants = dict.fromkeys([v for v in VARIANTS if v != "sat1" or engine == "fbgemm"], 0)
    sat1 = models = 0
    cycles = macs = 0
    i = 0
    with torch_engine(engine):
        while min(outputs.values()) < MIN_OUTPUTS or min(variants.values()) < MIN_OUTPUTS // 4:
            variant = VARIANTS[i % len(VARIANTS)]
            i += 1
            if variant == "sat1" and engine != "fbgemm":
                variant = "depthwise"  # qnnpack has no saturating path: more depthwise instead
            low = min(outputs, key=outputs.get)
            pool = {"conv": None, "maxpool": "max", "avgpool": "avg"}[low] if rng.random() < 0.7 else None
            chain, shape = random_conv_layer(rng, engine, variant, pool)
            codes = random_codes(rng, 16, int(np.prod(shape)))
            try:
                want = torch_final_codes(chain, codes, shape)
            except RuntimeError:  # a shape torch itself refuses
                continue
            try:
                converted = uquant.convert(chain, torch.randn((4,) + shape), engine=engine)
            except ConversionError:  # a pool uquant refuses (an empty output where torch clips)
                continue
            module = load_source(converted.source, converted.module_name)
            nodes = module.model.layers
            assert module.model.tier == "thumb"
            kinds = [n.kind for n in nodes]
            for n in nodes:  # every conv (but SAT 2) and pool runs on the asm kernels
                if n.kind in outputs:
                    assert n.fast is not None or (n.kind == "conv" and n.args[0][15] == 2), kinds
            steps = converted.plan.steps
            conv_step = steps[0]
            before = conv_tier.stats.cycles
            got = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes])
            assert np.array_equal(got, want), f"model {models} ({variant}, {kinds}): thumb kernels differ from torch"
            C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT = conv_step.geometry
            if len(steps) == 1:
                cycles += conv_tier.stats.cycles - before
                macs += len(codes) * N * OH * OW * (C // G) * KH * KW
            last = nodes[-1].kind if nodes[-1].kind in outputs else "conv"
            outputs[last] += want.size
            if last == "conv":
                variants[variant if not (variant == "sat1" and SAT != 1) else "depthwise"] += want.size
                sat1 += want.size if SAT == 1 else 0
            models += 1
    if engine == "fbgemm":
        assert sat1 >= MIN_OUTPUTS // 4
    report(f"thumbconv {engine:<8}: {models} random layers equal torch on emulated armv6m code: outputs {outputs}, "
           f"conv variants {variants}; lone convs {cycles / max(macs, 1):.2f} Cortex-M0+ cycles/MAC")


# ---------------------------------------------------------------------------------------------------
# the benchmark CNNs, whole inference

def whole_inference(model, x, engine, n=2):
    """(cycles per inference on the emulated asm kernels, MACs, per-layer lines), checked against torch."""
    converted = uquant.convert(model, x[:4], engine=engine)
    conv_tier, dense = thumb.emulated_tier(source=THUMBCONV), thumb.emulated_tier()
    rt.register("uquant_thumbconv", conv_tier)
    rt.register("uquant_thumb", dense)
    rt.TIER = "thumb"
    try:
        module = load_source(converted.source, converted.module_name)
    finally:
        rt.TIER = None
        rt.register("uquant_thumbconv", None)
        rt.register("uquant_thumb", None)
    from uquant.api import quantize_input

    codes = quantize_input(x[:n].reshape(n, -1).numpy(), converted.plan.input)
    with torch.no_grad():
        want = model(x[:n]).numpy().reshape(n, -1)
    per = [0] * len(module.model.layers)
    got = []
    for row in codes:
        src = module.model.prepare(bytes(int(v) for v in row))
        for i, node in enumerate(module.model.layers):
            before = conv_tier.stats.cycles + dense.stats.cycles
            node.run(src)
            per[i] += conv_tier.stats.cycles + dense.stats.cycles - before
        got.append(list(module.model.run(bytes(int(v) for v in row))))
    out = converted.plan.output
    got = uquant.engines.dequantize(np.array(got, np.int64), out.scale, out.zero_point)
    assert np.array_equal(got.reshape(n, -1), want)
    lines, macs = [], 0
    for s, node, c in zip(converted.plan.steps, module.model.layers, per):
        if s.kind == "conv":
            C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, SAT = s.geometry
            mac = N * OH * OW * (C // G) * KH * KW
        else:
            mac = s.K * s.N if s.kind == "dense" else 0
        macs += mac
        lines.append(f"{s.kind}{'' if node.fast is not None else ' (bytecode)'} {c / n:.0f}"
                     + (f" ({c / n / mac:.2f}/MAC)" if mac else ""))
    from uquant.bench import CYCLES_PER_LINE, thumb_figures

    fig = thumb_figures(converted, codes[0])  # as `make bench` counts it: kernels + traced Python lines
    lines.append(f"whole inference {fig['cycles'] / macs:.2f} cycles/MAC ({fig['kernel_cycles']} kernel cycles + "
                 f"{fig['python_lines']} Python lines of {CYCLES_PER_LINE})")
    return sum(per) / n, macs, lines


@pytest.mark.parametrize("engine", ENGINES)
def test_digits_cnn_whole_inference(engine, report):
    from uquant.bench import small_cnn

    with torch_engine(engine):
        model, x = small_cnn(engine)
        cycles, macs, lines = whole_inference(model, x, engine)
    assert macs == 23680
    report(f"digits CNN {engine}: {cycles / macs:.2f} kernel cycles/MAC on the emulated Cortex-M0+; layers: "
           f"{', '.join(lines)}")


@pytest.mark.parametrize("engine", ENGINES)
def test_kws_ds_cnn_whole_inference(engine, report):
    from uquant.examples import kws_ds_cnn

    with torch_engine(engine):
        model, x = kws_ds_cnn(engine)
        cycles, macs, lines = whole_inference(model, x, engine, n=1)
    report(f"KWS DS-CNN {engine}: {macs} MACs, {cycles / macs:.2f} kernel cycles/MAC on the emulated Cortex-M0+; "
           f"layers: {', '.join(lines)}")


def test_code_tables_equal_the_bytecode_node(tiers, report):
    """The asm table kernel (dequantize -> float ops -> quantize as a code table, with torch's SIMD-block and
    tail tables, flat or channels-last) writes the bytecode node's bytes."""
    conv, _ = tiers
    rng = np.random.default_rng(21)
    outputs = 0
    for trial in range(60):
        C = int(rng.integers(0, 5))
        HW = int(rng.integers(1, 40))
        n = C * HW if C else int(rng.integers(1, 300))
        n_vec = int(rng.integers(0, n + 1))
        T = bytes(rng.integers(0, 256, 256).astype(np.uint8).tolist())
        Tt = None if trial % 3 == 0 else bytes(rng.integers(0, 256, 256).astype(np.uint8).tolist())
        spec = ("table", -1, 0, n, T, n_vec, Tt, C, HW)
        rt.register("uquant_thumbconv", conv)
        try:
            fast = rt.Node(spec, [bytearray(n)], ("uquant_thumbconv",))
        finally:
            rt.register("uquant_thumbconv", None)
        slow = rt.Node(spec, [bytearray(n)], ())
        assert fast.fast is not None and slow.fast is None
        for _ in range(3):
            x = bytes(rng.integers(0, 256, n).astype(np.uint8).tolist())
            fast.fast(x, fast.out, fast.handle)
            assert bytes(fast.out) == bytes(slow.run(x)), (trial, C, HW, n, n_vec)
            outputs += n
    report(f"thumbconv code tables: {outputs} outputs of 60 random table steps = the bytecode node")
