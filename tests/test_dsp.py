"""The dsp kernel tier (device/uquant_dsp.py): SMLAD dense and conv kernels for Cortex-M cores with the DSP extension
(the RP2350's Cortex-M33). Its armv7emsp machine code runs in unicorn as a Cortex-M33 (hosts/thumb.py: M33Machine)
and gives the bytecode tier's bytes (uquant_rt.dense/conv) and torch's bytes (fbgemm and qnnpack), layer by layer;
it refuses to import on a firmware without the DSP extension (an RP2040), and its speed is printed, not asserted."""
from __future__ import annotations

import builtins
import copy
import types
from array import array

import numpy as np
import pytest
import torch

import randmodels
import uquant
from conftest import FUZZ_SCALE, torch_engine
from test_thumb import random_layer
from uquant.hosts import thumb
from uquant.runtime import DEVICE_DIR, load_source, rt

DSP = DEVICE_DIR / "uquant_dsp.py"
MIN_OUTPUTS = int(20_000 * FUZZ_SCALE)


@pytest.fixture(scope="module")
def tier():
    return thumb.emulated_dsp_tier()


@pytest.fixture
def dsp_runtime(tier):
    """Models built here run their dense and conv layers on the emulated dsp tier (TIER "dsp")."""
    rt.register("uquant_dsp", tier)
    rt.TIER = "dsp"
    yield tier
    rt.TIER = None
    rt.register("uquant_dsp", None)


# ---------------------------------------------------------------------------------------------------
# the machine code and the import guard

def test_kernel_compiles_to_thumb2_with_dsp_instructions():
    funcs = thumb.asm_functions(thumb.compile_kernel("armv7emsp", DSP), DSP)
    assert {"_addr", "_kernel"} <= set(funcs) and funcs["_kernel"].n_args == 3
    code = funcs["_kernel"].code
    hws = [code[i] | code[i + 1] << 8 for i in range(0, len(code) - 1, 2)]
    assert any(hw & 0xFFF0 == 0xFB20 for hw in hws)  # SMLAD
    assert 0xFA3F in hws  # UXTB16


def test_m33_cycle_model():
    # loads pipeline behind a load (not behind one whose result is the next address, nor after a writeback)
    ldr = lambda rt_, rn, imm=0: (0x6800 | (imm // 4) << 6 | rn << 3 | rt_).to_bytes(2, "little")  # noqa: E731
    smlad = bytes.fromhex("20fb0000")
    assert thumb.decode_block_m33(ldr(0, 1) + ldr(2, 3) + ldr(4, 5))[0][1] == 4
    assert thumb.decode_block_m33(ldr(0, 1) + ldr(2, 0))[0][1] == 4  # the second one's address is the first's result
    assert thumb.decode_block_m33(smlad + ldr(0, 1) + smlad)[0][1] == 4
    assert thumb.classify_m33(0xFB20, 0x0000)[:2] == ("mul", 1)  # SMLAD
    assert thumb.classify_m33(0xFA3F, 0xF080)[:2] == ("alu", 1)  # UXTB16
    assert thumb.classify_m33(0xE000)[:2] == ("branch", 3)  # B
    assert thumb.classify_m33(0xD000)[2] and thumb.classify_m33(0xB900)[2]  # BEQ, CBNZ: conditional
    assert thumb.classify_m33(0xE92D, 0x5F00)[:2] == ("multi", 7)  # PUSH.W {r8-r12, lr}
    assert thumb.classify_m33(0xE8BD, 0x8FF0)[:2] == ("branch", 12)  # POP.W {r4-r11, pc}: 1 + 9 + 2
    with pytest.raises(ValueError, match="block by block"):
        thumb.M33Machine(exact=True)


def _exec_guard(name: str, mpy: int | None, platform: str = "rp2", isar3: int = 0x01111131):
    """Run device/uquant_dsp.py's import as a MicroPython whose sys.implementation is (name, _mpy), on sys.platform
    `platform`, whose core's ID_ISAR3 reads `isar3` (asm functions are stubs; _id_isar3 returns that value)."""
    impl = types.SimpleNamespace(name=name) if mpy is None else types.SimpleNamespace(name=name, _mpy=mpy)
    fake_sys = types.SimpleNamespace(implementation=impl, platform=platform)
    stub = types.ModuleType("micropython")
    stub.const = lambda v: v
    stub.asm_thumb = lambda f: (lambda: isar3) if f.__name__ == "_id_isar3" else f

    def fake_import(mod, *args, **kwargs):
        if mod == "sys":
            return fake_sys
        if mod == "micropython":
            return stub
        return builtins.__import__(mod, *args, **kwargs)

    env = {"__builtins__": {**builtins.__dict__, "__import__": fake_import}, "__name__": "uquant_dsp"}
    exec(compile(DSP.read_text(), str(DSP), "exec"), env)
    return env


@pytest.mark.parametrize("arch,ok", [(4, False), (5, False), (6, True), (7, True), (8, True), (2, False), (11, False)])
def test_imports_only_on_dsp_firmware(arch, ok):
    # sys.implementation._mpy >> 10 is the firmware's native arch: armv6m (RP2040) 4, armv7m 5, armv7em 6,
    # armv7emsp (RP2350) 7, armv7emdp 8, x64 2, rv32imc 11; a firmware that passes still has to pass the core's
    # own check (test_the_core_is_asked_on_boards)
    mpy = 6 | (arch << 10)
    if ok:
        assert "_kernel" in _exec_guard("micropython", mpy)
    else:
        with pytest.raises(ImportError, match="DSP"):
            _exec_guard("micropython", mpy)


def test_no_mpy_word_means_no_dsp():
    with pytest.raises(ImportError):
        _exec_guard("micropython", None)


@pytest.mark.parametrize("core,isar3,ok", [("Cortex-M3", 0x01111110, False), ("Cortex-M4", 0x01111131, True),
                                           ("Cortex-M33 with DSP", 0x01111131, True)])
def test_the_core_is_asked_on_boards(core, isar3, ok):
    # MicroPython calls every Thumb-2 firmware armv7em*: a Cortex-M3 board passes the arch check, not ID_ISAR3's
    mpy = 6 | (7 << 10)
    if ok:
        assert "_kernel" in _exec_guard("micropython", mpy, isar3=isar3)
    else:
        with pytest.raises(ImportError, match="ID_ISAR3"):
            _exec_guard("micropython", mpy, isar3=isar3)
    assert "_kernel" in _exec_guard("micropython", mpy, platform="linux", isar3=0)  # ARM Linux: not probed


def test_tier_order_and_board():
    from uquant import boards

    assert rt.TIERS[0] == ("dsp", ("uquant_dsp", "uquant_thumb", "uquant_thumbconv", "uquant_viper"))
    assert rt.TIERS[1][0] == "thumb"
    assert boards.get("pico2").tier == "dsp" and "uquant_dsp.py" in boards.get("pico2").device_files
    assert boards.get("pico").tier == "thumb" and "uquant_dsp.py" not in boards.get("pico").device_files
    assert rt.tier()[0] in ("viper", "bytecode")  # CPython: uquant_dsp does not import (no asm_thumb)


def test_unix_port_skips_the_dsp_tier():
    # a MicroPython without the DSP extension (the x64 unix port) that has uquant_dsp.py falls back
    from uquant.hosts import unix

    if unix.missing_reason() is not None:
        pytest.skip(f"MicroPython unix port unavailable: {unix.missing_reason()}")
    files = {f"/lib/{n}.py": (DEVICE_DIR / f"{n}.py").read_text()
             for n in ("uquant_rt", "uquant_viper", "uquant_thumb", "uquant_dsp")}
    out = unix.run_micropython("import uquant_rt\nprint('TIER', uquant_rt.tier()[0])\n", files)
    assert "TIER viper" in out


# ---------------------------------------------------------------------------------------------------
# random layers against the bytecode tier

def test_dense_matches_the_bytecode_tier(tier):
    rng = np.random.default_rng(14)
    shapes = [(1, 1), (2, 3), (3, 4), (4, 4), (5, 7), (7, 9), (16, 5), (31, 6), (32, 4), (33, 8), (63, 3), (64, 12),
              (100, 5), (257, 6), (96, 11), (224, 6), (227, 7), (231, 13), (448, 6), (450, 8), (701, 3)]
    shapes += [(int(rng.integers(1, 140)), int(rng.integers(1, 14))) for _ in range(40)]
    exceptions_hit = limbs = fast = 0
    for K, N in shapes:
        xs = rng.integers(0, 256, (3, K))
        xs[1, : K // 2] = 0
        xs[2, K // 3:] = 255
        W, P, E, lo, hi, T = random_layer(rng, K, N, xs)
        if rng.random() < 0.4:  # the common clip to [0, 255] without a table: the kernel's USAT path
            lo, hi, T = 0, 255, None
            fast += 1
        assert tier.DENSE_LAYOUT == "dsp"
        h = tier.prepare_dense(K, N, lo, hi, rt.relay(W, K, N, None, "dsp"), array("i", P), array("i", E), T)
        for x in xs:
            xb = bytes(x.astype(np.uint8).tolist()) + b"\x07"  # x may be longer than K
            out = bytearray(b"\xaa" * (N + 2))
            want = bytearray(b"\xaa" * (N + 2))
            tier.dense(xb, out, h)  # the same handle every time: the kernel resets its cursors
            rt.dense(xb, want, K, N, lo, hi, W, rt.as_words(P), rt._fixes(rt.as_words(E)), T)
            assert out == want, (K, N, lo, hi, T is not None)
        exceptions_hit += len(E) > 0
        limbs += sum(P[7 * n + 6] >= 30 for n in range(N))
    assert exceptions_hit > 10 and limbs > 50 and fast > 10


def test_dense_recast_requantization(tier):
    # The layers prepare_dense recasts (FAST 2: clip to [0, 255], no table, P read-only, as modules hold it): every
    # kind of channel (the SMLAL form, that form with exceptions, the general path) against the bytecode tier
    rng = np.random.default_rng(16)
    kinds = [0, 0, 0, 0]
    tier._GENERAL = 0  # whatever the general path costs: every kind of channel runs here
    try:
        recast_layers(tier, rng, kinds)
    finally:
        tier._GENERAL = 70
    assert min(kinds) > 20, kinds  # SMLAL form, with exceptions, with one exception, general


def recast_layers(tier, rng, kinds):
    shapes = [(64, 256), (256, 10), (33, 17), (1, 1), (5, 11), (257, 6), (100, 16), (31, 4)]
    shapes += [(int(rng.integers(1, 300)), int(rng.integers(1, 40))) for _ in range(30)]
    for K, N in shapes:
        xs = rng.integers(0, 256, (3, K))
        xs[1, : K // 2] = 0
        xs[2, K // 3:] = 255
        W, P, E, _, _, _ = random_layer(rng, K, N, xs, c0=int(rng.integers(0, 256)))
        for n in range(N):
            if rng.random() < 0.15:  # y(0) > 0: the clamp matters, the general path
                S = P[7 * n + 6]
                if S < 30:
                    P[7 * n + 5] += 30 << S
                else:
                    D = P[7 * n + 4] * 2 ** 30 + P[7 * n + 5] + (30 << S)
                    P[7 * n + 4], P[7 * n + 5] = D >> 30, D & (2 ** 30 - 1)
        Pb, Eb = bytes(rt.as_words(P)), bytes(rt.as_words(E) or b"")
        h = tier.prepare_dense(K, N, 0, 255, rt.relay(W, K, N, None, "dsp"), Pb, Eb, None)
        assert h[0][29] == 2 and h[5] is not None, (K, N)
        for n in range(N if h[5] else 0):
            m = h[5][3 * n + 2] & 0xE0
            kinds[0 if m == 0 else 1 if m == 0xC0 else 2 if m == 0xE0 else 3] += 1
        for x in xs:
            xb = bytes(x.astype(np.uint8).tolist())
            out = bytearray(b"\xaa" * (N + 2))
            want = bytearray(b"\xaa" * (N + 2))
            tier.dense(xb, out, h)
            rt.dense(xb, want, K, N, 0, 255, W, Pb, rt._fixes(rt.as_words(E)), None)
            assert out == want, (K, N)


def random_geometry(rng):
    while True:
        G = int(rng.choice([1, 1, 2, 3]))
        cg = 1 if rng.random() < 0.3 else int(rng.integers(1, 5))  # depthwise when cg = 1 and G > 1
        ng = int(rng.integers(1, 7))
        C, N = cg * G, ng * G
        one_d = rng.random() < 0.25
        H = 1 if one_d else int(rng.integers(1, 10))
        Wd = int(rng.integers(1, 10))
        KH = 1 if one_d else int(rng.integers(1, 4))
        KW = int(rng.integers(1, 4))
        if rng.random() < 0.2:
            KH = KW = 1  # pointwise
        SH, SW = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        PH = 0 if one_d else int(rng.integers(0, 3))
        PW = int(rng.integers(0, 3))
        DH, DW = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
        OW = (Wd + 2 * PW - DW * (KW - 1) - 1) // SW + 1
        if OH >= 1 and OW >= 1:
            return (C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, 0)


def test_conv_matches_the_bytecode_tier(tier):
    rng = np.random.default_rng(15)
    kinds = set()
    for _ in range(60):
        g = random_geometry(rng)
        C, H, Wd, N, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW, _ = g
        kk = C // G * KH * KW
        xzp = int(rng.choice([0, 128, 255, int(rng.integers(0, 256))]))
        W, P, E, lo, hi, T = random_layer(rng, kk, N, rng.integers(0, 256, (4, kk)))
        h = tier.prepare_conv(g, xzp, lo, hi, W, array("i", P), array("i", E), T)
        assert h is not None
        for _ in range(2):
            x = bytes(rng.integers(0, 256, C * H * Wd).astype(np.uint8).tolist())
            out = bytearray(b"\xaa" * (N * OH * OW + 1))
            want = bytearray(b"\xaa" * (N * OH * OW + 1))
            tier.conv(x, out, h)
            rt.conv(x, want, g, xzp, lo, hi, W, rt.as_words(P), rt._fixes(rt.as_words(E)), T, bytearray(kk))
            assert out == want, g
        kinds |= {"depthwise" if C // G == 1 and G > 1 else "grouped" if G > 1 else "regular",
                  "pointwise" if KH * KW == 1 else "window", "padded" if PH or PW else "unpadded"}
    assert kinds >= {"depthwise", "grouped", "regular", "pointwise", "padded", "unpadded"}


def test_saturating_convs_go_to_the_next_module(dsp_runtime):
    # fbgemm's saturating forms (SAT 1, 2) are not this tier's: prepare_conv says None and Node tries the next
    # module (here none imports, so the bytecode kernel runs), while an exact conv runs on the dsp kernel
    g = (2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 2, 4, 4)
    W = bytes(range(18))
    P = (0, 0, 1000, 1, 0, 0, 0) * 2
    for sat, fast in ((0, dsp_runtime.conv), (1, None), (2, None)):
        h = dsp_runtime.prepare_conv(g + (sat,), 3, 0, 255, W, array("i", P), array("i"), None)
        assert (h is None) == bool(sat)
        bufs = [bytearray(32)]
        node = rt.Node(("conv", -1, 0, g + (sat,), 3, 0, 255, W, P, None, None), bufs, rt.tier()[1])
        assert node.fast == fast
        x = bytes(range(32))
        want = bytearray(32)
        rt.conv(x, want, g + (sat,), 3, 0, 255, W, rt.as_words(P), None, None, bytearray(9))
        assert node.run(x) == want


# ---------------------------------------------------------------------------------------------------
# torch-quantized layers against torch, through the runtime

def _capture(module, tier):
    """Wrap each node the dsp tier runs so its output is recorded per call: [(node kind, [outputs...])]."""
    seen = []
    for node in module.model.layers:
        if node.fast is None or node.fast not in (tier.dense, tier.conv):
            continue
        got = []
        seen.append((node, got))

        def wrapped(src, out, handle, fast=node.fast, got=got, node=node):
            fast(src, out, handle)
            got.append(bytes(out))

        node.fast = wrapped
    module.model.link()  # run() calls the wrapped kernels
    return seen


def _source(converted, board):
    """The module as `convert` writes it (board None: dense weights in rows, copied into the kernel's order when the
    model is built), as `convert --board pico2` does (uquant_dsp's order, read in place) or as `--board pico` does
    (uquant_thumb's order, copied into uquant_dsp's)."""
    return converted.source if board is None else copy.copy(converted).for_board(board).source


@pytest.mark.parametrize("board", [None, "pico2", "pico"])
@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_dense_layers_match_torch(engine, board, dsp_runtime, report):
    rng = np.random.default_rng(1400 + len(engine) + 7 * len(board or ""))
    outputs = models = 0
    while outputs < MIN_OUTPUTS or models < 3:
        with torch_engine(engine):
            chain = randmodels.random_chain(rng, engine)
            converted = uquant.convert(chain, engine=engine)
            codes = randmodels.random_codes(rng, 40, converted.plan.n_in)
            want = chain.layer_codes(codes)
        module = load_source(_source(converted, board), converted.module_name)
        assert module.model.tier == "dsp"
        seen = _capture(module, dsp_runtime)
        assert len(seen) == len(want)
        got = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes])
        assert np.array_equal(got, want[-1].reshape(len(codes), -1) % 256), f"model {models}: final outputs"
        for i, (node, calls) in enumerate(seen):  # buffers hold code - qmin
            n = want[i].shape[1]
            layer = np.array([list(c[:n]) for c in calls]) + converted.plan.steps[i].out.qmin
            assert np.array_equal(layer, want[i]), f"model {models}, layer {i}"
            outputs += layer.size
        models += 1
    report(f"dsp tier dense {engine:<8}: {outputs} layer outputs of {models} random MLPs "
           f"({'laid out for ' + board if board else 'plain modules'}) equal torch (emulated Cortex-M33)")


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_conv_layers_match_torch(engine, dsp_runtime, report):
    rng = np.random.default_rng(1500 + len(engine))
    outputs = models = fallbacks = 0
    while outputs < MIN_OUTPUTS or models < 3:
        with torch_engine(engine):
            chain, shape = randmodels.random_conv(rng, engine, dim=1 + models % 2)
            codes = randmodels.random_codes(rng, 24, int(np.prod(shape)))
            try:
                want = chain.layer_codes(codes.reshape((-1,) + shape))
            except RuntimeError:
                continue  # a shape torch itself refuses
            converted = uquant.convert(chain, torch.randn((4,) + shape), engine=engine)
        module = load_source(converted.source, converted.module_name)
        seen = _capture(module, dsp_runtime)
        got = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes])
        assert np.array_equal(got, want[-1].reshape(len(codes), -1) % 256), f"model {models}: final outputs"
        models += 1
        if not seen:
            fallbacks += 1  # fbgemm's saturating depthwise/im2col forms: the next module ran it
            continue
        node, calls = seen[0]
        layer = np.array([list(c) for c in calls])[:, :want[0][0].size] + converted.plan.steps[0].out.qmin
        assert np.array_equal(layer, want[0].reshape(len(codes), -1)), f"model {models}: conv layer"
        outputs += layer.size
    report(f"dsp tier conv {engine:<8}: {outputs} conv outputs of {models - fallbacks} random convs (1-D, 2-D, "
           f"grouped, depthwise, strided, dilated, padded) equal torch (emulated Cortex-M33); {fallbacks} saturating "
           "convs left to the next module")


def test_speed_figures(report):
    # Cortex-M33 kernel cycles per MAC for the bench's MLP and digits CNN (printed, never asserted)
    from uquant import bench
    from uquant.hosts import dsp

    for label, (q, x) in (("MLP 64-256-256-10", bench.mlp()), ("digits CNN", bench.small_cnn())):
        converted = uquant.convert(q, x[:4], engine="fbgemm")
        codes = np.random.default_rng(0).integers(0, 256, converted.plan.n_in)
        f = dsp.dsp_figures(converted, codes)
        layers = ", ".join(f"{l['kind']} {l['cycles'] / l['macs']:.2f}" for l in f["layers"] if l["cycles"])
        report(f"dsp tier on an emulated Cortex-M33, {label}: {f['cycles_per_mac']:.2f} kernel cycles/MAC "
               f"({f['kernel_cycles']} cycles, {f['macs']} MACs; per layer: {layers})")


@pytest.mark.parametrize("board", [None, "pico2"])
@pytest.mark.parametrize("engine", ["fbgemm"])
def test_saturating_platform_models(engine, board, dsp_runtime, report):
    """Models made for a platform without VNNI: dense layers with saturating pairs run on the dsp kernel after satfix
    moved their words; saturating convs (SAT 2, and fbgemm's depthwise SAT 1) go to the next module. Bytes equal the
    bytecode tier's, which tests/test_platforms.py holds to such a torch. Laid out for pico2, the saturating pairs'
    weights are read through uquant_rt.dsp_index and dsp_flip by uquant_thumb's prepare_satfix (on a board the
    tier's satfix), emulated here as well; plain modules use uquant_rt.satfix."""
    from test_tiers import other_saturating_platform

    platform = other_saturating_platform()
    rng = np.random.default_rng(1600)
    models = sat_dense = sat_conv = 0
    if board is not None:
        rt.register("uquant_thumb", thumb.emulated_tier())
    try:
        for _, converted, codes in randmodels.random_models(rng, engine, platform):
            want = converted.run_codes(codes).reshape(len(codes), -1) % 256
            module = load_source(_source(converted, board), converted.module_name)
            got = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes])
            assert np.array_equal(got, want), f"model {models}: dsp tier differs from bytecode on {platform}"
            for node in module.model.layers:
                sat_dense += (node.kind == "dense" and node.sat is not None and node.fast == dsp_runtime.dense
                              and (board is None or node.satfix is not None))
                sat_conv += node.kind == "conv" and node.fast is None and node.args[0][15] != 0
            models += 1
            if models >= 40 or (models >= 6 and sat_dense >= 2 and sat_conv >= 2):
                break
    finally:
        rt.register("uquant_thumb", None)
    assert sat_dense >= 1
    report(f"dsp tier on {platform} ({engine}, {board or 'plain modules'}): {models} random models = bytecode; "
           f"{sat_dense} dense layers with saturating pairs on the dsp kernel, {sat_conv} saturating convs left to the next module")
