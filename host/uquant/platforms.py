"""Platforms: the engine's CPU-dependent paths, which decide torch's bytes as much as the engine does.

The same torch, the same model and the same input give different bytes on different CPUs
(pytorch/pytorch#44939). What changes, for the engines uquant reproduces:

- `gemm`: fbgemm's int8 GEMM (Linear, and Conv through im2col or as a 1x1) sums u8 x s8 products exactly in
  int32 on CPUs with AVX512-VNNI ("exact"), but elsewhere adds consecutive pairs with vpmaddubsw, whose int16
  sum saturates ("sat16"): 255*-128 + 255*-128 becomes -32768. Conv pairs run along the im2col axis (kh, kw,
  channel), channels innermost (measured: uquant.lower.im2col_order). fbgemm's depthwise fast path saturates
  on every CPU; that is part of the engine, not of the platform.
- `groupwise`: the same choice for fbgemm's groupwise conv kernel (small channel groups, 3x3), which reads the
  CPU itself: FBGEMM_ENABLE_INSTRUCTIONS changes `gemm` but not this (on real CPUs the two agree).
- `x86_conv`: the x86 engine runs Conv with symmetric weights and groups <= 100 on oneDNN where the CPU has
  AVX512-VNNI (on Linux), and on fbgemm otherwise; the two requantize differently.
- `simd`: ATen's vector width (AVX512, AVX2 or none), which moves the block/tail boundaries of the NHWC
  average-pooling kernel.
- `arch`: "arm" hosts have no fbgemm at all (engine qnnpack only).

qnnpack sums exactly and requantizes the same way on every platform.

A Platform is detected by running tiny probe ops through the torch in this process (environment variables
such as FBGEMM_ENABLE_INSTRUCTIONS and ATEN_CPU_CAPABILITY, or a container hiding CPU flags, change what
torch does, so CPU flags are only shown as a hint), or named: `x86-vnni`, `x86-avx512`, `x86-avx2`, `arm`,
or spelled out as `x86(gemm=sat16,groupwise=exact,conv=onednn,simd=avx512)` for the mixtures environment
variables make (those arise only on AVX512-VNNI hardware).
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field

from .ir import ConversionError

GEMMS = ("exact", "sat16")
X86_CONVS = ("onednn", "fbgemm")
SIMDS = ("avx512", "avx2", "default")


@dataclass(frozen=True)
class Platform:
    arch: str = "x86"  # "x86" or "arm"
    gemm: str = "exact"  # fbgemm's int8 GEMM: "exact" int32 sums (VNNI) or "sat16" int16-saturating pair sums
    x86_conv: str = "onednn"  # the x86 engine's Conv backend for symmetric weights: "onednn" or "fbgemm"
    simd: str = "avx512"  # ATen's vector width: "avx512", "avx2" or "default"
    groupwise: str = ""  # fbgemm's groupwise conv kernel: "exact" or "sat16" ("" = as gemm)
    why: tuple[str, ...] = field(default=(), compare=False)  # how it was detected, one line per attribute

    def __post_init__(self):
        if not self.groupwise:
            object.__setattr__(self, "groupwise", self.gemm)

    @property
    def name(self) -> str:
        for name, p in NAMED.items():
            if p == self:
                return name
        if self.arch == "arm":
            return f"arm(simd={self.simd})"
        gw = f"groupwise={self.groupwise}," if self.groupwise != self.gemm else ""
        return f"x86(gemm={self.gemm},{gw}conv={self.x86_conv},simd={self.simd})"

    def __str__(self) -> str:
        return self.name

    @property
    def saturates(self) -> bool:
        """fbgemm's GEMM adds int16-saturating pairs of products (no VNNI)."""
        return self.arch == "x86" and self.gemm == "sat16"

    def supports(self, engine: str) -> bool:
        return self.arch == "x86" or engine == "qnnpack"


NAMED = {
    "x86-vnni": Platform("x86", "exact", "onednn", "avx512"),  # Ice Lake / Sapphire Rapids, AMD Zen 4 and later
    "x86-avx512": Platform("x86", "sat16", "fbgemm", "avx512"),  # Skylake-SP/X: AVX512 without VNNI
    "x86-avx2": Platform("x86", "sat16", "fbgemm", "avx2"),  # AMD Zen 2/3, Intel before Ice Lake
    "arm": Platform("arm", "exact", "fbgemm", "default"),  # aarch64: qnnpack only
}
# The platforms a model's bytes are compared across (portability): one per kind of real CPU.
REAL_X86 = ("x86-vnni", "x86-avx512", "x86-avx2")


def simd_channel_block(p: Platform, adaptive: bool = False) -> int:
    """Channels per SIMD block in ATen's NHWC pooling kernels (0: no SIMD blocks).

    avg_pool2d: Vectorized<quint8>::size() / 4 (16 on AVX512, 8 on AVX2). adaptive_avg_pool2d: blocks of 8 on
    both (measured).
    """
    if p.simd == "default":
        return 0
    return 8 if adaptive else {"avx512": 16, "avx2": 8}[p.simd]


_SPELLED = re.compile(r"(x86|arm)\((.*)\)$")


def parse(name: str | Platform | None) -> Platform:
    """`here` (or None) -> this machine's detected platform; a name or a spelled-out platform -> that one."""
    if isinstance(name, Platform):
        return name
    if name in (None, "", "here"):
        return here()
    key = name.strip().lower().replace(" ", "")
    if key in NAMED:
        return NAMED[key]
    m = _SPELLED.match(key)
    if m:
        attrs = dict(kv.split("=", 1) for kv in m.group(2).split(",") if "=" in kv)
        gemm, conv, simd = attrs.pop("gemm", "exact"), attrs.pop("conv", "fbgemm"), attrs.pop("simd", "avx2")
        gw = attrs.pop("groupwise", gemm)
        if not attrs and gemm in GEMMS and gw in GEMMS and conv in X86_CONVS and simd in SIMDS:
            return Platform(m.group(1), gemm, conv, simd, gw)
    raise ConversionError(f"unknown platform {name!r}: choose here, {', '.join(NAMED)}, or spell one out as "
                          "x86(gemm=exact|sat16,groupwise=exact|sat16,conv=onednn|fbgemm,simd=avx512|avx2|default)")


@functools.lru_cache(maxsize=None)
def here() -> Platform:
    """This process's torch, probed: which paths its quantized kernels take on this CPU (cached per process)."""
    import torch

    engines = torch.backends.quantized.supported_engines
    cap = str(torch.backends.cpu.get_cpu_capability()).lower()
    simd = cap if cap in ("avx512", "avx2") else "default"
    simd_why = f"ATen vector width: torch.backends.cpu.get_cpu_capability() = {cap.upper()}" + (
        f" (ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']})" if os.environ.get("ATEN_CPU_CAPABILITY") else "")
    if "fbgemm" not in engines:
        return Platform("arm", "exact", "fbgemm", simd, (f"torch has no fbgemm (engines: {', '.join(engines)})",
                                                          simd_why))
    probed = _probe_all()
    (gemm, gemm_why), (gw, gw_why), (conv, conv_why) = probed["gemm"], probed["groupwise"], probed["x86_conv"]
    env = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS")
    if env:
        gemm_why += f" (FBGEMM_ENABLE_INSTRUCTIONS={env})"
    return Platform("x86", gemm, conv, simd, gw, (gemm_why, gw_why, conv_why, simd_why,
                                                  f"CPU flags (a hint only): {cpu_hint()}"))


def _probe(engine: str, make, weight: float, x: float, out_scale: float, out_zp: int, at=None) -> int:
    """torch's output code (at index `at`, or the only one) of the quantized module make() builds, with every
    weight `weight` and every input code `x` (scales 1), on `engine` (modules pack for the engine current)."""
    import torch

    from .api import torch_engine

    with torch_engine(engine), torch.no_grad():
        module = make()
        w = module.weight().dequantize()
        module.set_weight_bias(torch.quantize_per_tensor(torch.full(w.shape, weight), 1.0, 0, torch.qint8), None)
        module.scale, module.zero_point = out_scale, out_zp
        shape = (1, w.shape[1]) if w.dim() == 2 else (1, w.shape[1] * module.groups, 3, 3)
        y = module(torch.quantize_per_tensor(torch.full(shape, x), 1.0, 0, torch.quint8)).int_repr()
    return int(y.reshape(-1)[0] if at is None else y[at])


def _probes():
    """(attribute, engine, module maker, weight, input code, output scale, zero point, index, {code: (value, what
    it means)}): each probe is a quantized op whose result tells the attribute's value apart."""
    import torch.ao.nn.quantized as nnq

    return [
        # 64 products 255 x -128: -2,088,960 exactly, or 32 pairs saturated at -32,768 (-1,048,576)
        ("gemm", "fbgemm", lambda: nnq.Linear(64, 1), -128.0, 255.0, 65536.0, 128, None,
         {96: ("exact", "fbgemm int8 GEMM: probe 64 x 255 x -128 summed to -2088960 (exact)"),
          112: ("sat16", "fbgemm int8 GEMM: probe 64 x 255 x -128 summed to -1048576 (32 pairs saturated at -32768)")}),
        # fbgemm's groupwise kernel (8 groups of 2 channels, 3x3, padding 1): at the centre 18 products, or 9 pairs
        ("groupwise", "fbgemm", lambda: nnq.Conv2d(16, 16, 3, padding=1, groups=8), -128.0, 255.0, 16384.0, 128,
         (0, 0, 1, 1),
         {92: ("exact", "fbgemm groupwise Conv kernel: probe 18 x 255 x -128 summed to -587520 (exact)"),
          110: ("sat16", "fbgemm groupwise Conv kernel: probe 18 x 255 x -128 summed to -294912 (9 pairs saturated)")}),
        # 0.5 with output zero point 1: fbgemm rounds 0.5 to 0 and adds 1; oneDNN rounds 1.5 to 2
        ("x86_conv", "x86", lambda: nnq.Conv2d(1, 1, 1), 1.0, 1.0, 2.0, 1, None,
         {1: ("fbgemm", "x86 engine Conv backend: fbgemm (probe: 0.5 + zp 1 -> 1)"),
          2: ("onednn", "x86 engine Conv backend: oneDNN (probe: 0.5 + zp 1 -> 2)")}),
    ]


def _probe_all() -> dict[str, tuple[str, str]]:
    """attribute -> (value, why), from running each probe through this torch."""
    out = {}
    for attr, engine, make, w, x, scale, zp, at, outcomes in _probes():
        got = _probe(engine, make, w, x, scale, zp, at)
        if got not in outcomes:
            raise ConversionError(f"platform probe ({attr}): torch gave code {got}, expected one of "
                                  f"{sorted(outcomes)}; this torch build is not one uquant knows")
        out[attr] = outcomes[got]
    return out


def cpu_hint() -> str:
    """The CPU's model name and its VNNI / AVX flags from /proc/cpuinfo (never decides anything)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = re.search(r"flags\s*:\s*(.*)", text)
    names = set(flags.group(1).split()) if flags else set()
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in names]
    return f"{model.group(1).strip() if model else 'unknown CPU'}: {' '.join(shown) or 'no AVX2'}"


def report() -> str:
    """`uquant info` without a model: the detected platform and why."""
    p = here()
    return "\n".join([f"platform: {p.name} (detected by probing this torch)", *(f"  {w}" for w in p.why)])
