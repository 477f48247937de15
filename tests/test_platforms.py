"""Platforms (uquant.platforms): detected by probing torch, named, and reproduced byte for byte on each.

This machine's platform is what every other test compares against live torch. The other platforms are made here
by running tests/platform_check.py in a subprocess whose torch takes other CPU paths:
- FBGEMM_ENABLE_INSTRUCTIONS=AVX2 + ATEN_CPU_CAPABILITY=avx2 on a VNNI CPU: fbgemm's GEMM without VNNI (its
  groupwise conv kernel ignores the variable and stays exact: a mixed platform, which uquant detects as such);
- qemu-user emulating a Haswell CPU (AVX2, no AVX512, no VNNI): the real x86-avx2 platform, every path.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import uquant
from conftest import FUZZ_SCALE, platform_here
from uquant import platforms
from uquant.examples import seed_state_dict

CHECK = Path(__file__).with_name("platform_check.py")


def test_named_and_spelled_platforms():
    for name, p in platforms.NAMED.items():
        assert platforms.parse(name) is p and p.name == name
    mixed = platforms.parse("x86(gemm=sat16,groupwise=exact,conv=onednn,simd=avx512)")
    assert (mixed.gemm, mixed.groupwise, mixed.x86_conv, mixed.simd) == ("sat16", "exact", "onednn", "avx512")
    assert platforms.parse(mixed.name) == mixed
    assert platforms.parse("x86(gemm=sat16,conv=fbgemm,simd=avx2)").name == "x86-avx2"
    with pytest.raises(uquant.ConversionError, match="unknown platform 'pdp11'.*x86-vnni, x86-avx512, x86-avx2, arm"):
        platforms.parse("pdp11")


def test_this_machine_is_probed_and_explained():
    p = platforms.here()
    assert p.arch in ("x86", "arm") and p.why
    text = platforms.report()
    assert text.startswith(f"platform: {p.name} (detected by probing this torch)")
    if p.arch == "x86":
        assert "fbgemm int8 GEMM: probe 64 x 255 x -128 summed to" in text and "x86 engine Conv backend" in text
        assert "CPU flags (a hint only)" in text


def test_an_engine_the_platform_lacks_is_refused():
    with pytest.raises(uquant.ConversionError, match="engine x86 does not exist on platform arm.*qnnpack"):
        uquant.convert(seed_state_dict(), engine="x86", relu="hidden", platform="arm")
    uquant.convert(seed_state_dict(), engine="qnnpack", relu="hidden", platform="arm")


def run_check(env: dict, prefix: list[str], models: int) -> dict:
    r = subprocess.run([*prefix, sys.executable, str(CHECK), "--models", str(models)], capture_output=True, text=True,
                       timeout=1800, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_report(got: dict, where: str, report) -> None:
    assert got["mismatches"] == 0, got
    assert got["seed"]["torch"] == got["seed"]["uquant"] == got["seed"]["expected"], got["seed"]
    assert got["saturating"] > 0, "no model reached the saturating path"
    report(f"platform {got['platform']} ({where}): {got['models']} random MLPs and convs, {got['outputs']} outputs "
           f"equal to that torch's, 0 mismatches ({got['saturating']} models with saturating pairs); seed "
           f"{got['seed']['uquant']}")


def test_fbgemm_without_vnni_by_environment(report):
    """On a VNNI CPU fbgemm can be told to use its AVX2 kernels: the GEMM then saturates, its groupwise conv does
    not. On a CPU without VNNI this is this machine's own platform, which every other test covers."""
    if platform_here().gemm != "exact":
        pytest.skip(f"this CPU has no VNNI ({platform_here().name}): its own platform is the saturating one, "
                    "covered by every other test")
    got = run_check({"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}, [],
                    max(4, int(12 * FUZZ_SCALE)))
    assert got["platform"] == "x86(gemm=sat16,groupwise=exact,conv=onednn,simd=avx2)", got["platform"]
    check_report(got, "FBGEMM_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2", report)


def test_a_cpu_without_vnni_under_qemu(report):
    """qemu-user's Haswell (AVX2, no AVX512, no VNNI): torch there takes every path of a real x86-avx2 CPU."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        if os.environ.get("UQUANT_CI") == "1":
            pytest.fail("qemu-x86_64 unavailable in CI (Debian package qemu-user)", pytrace=False)
        pytest.skip("qemu-x86_64 not found (Debian package qemu-user): the emulated CPU without VNNI is not run")
    got = run_check({}, [qemu, "-cpu", "Haswell"], max(3, int(8 * FUZZ_SCALE)))
    assert got["platform"] == "x86-avx2", got["platform"]
    check_report(got, "qemu-user -cpu Haswell", report)


def test_self_check_names_engine_and_platform(tmp_path):
    """A model converted for the wrong engine fails its self-check with the counts, the platform reproduced and
    what to do; the platform is not blamed (uquant reproduces this machine's)."""
    import torch

    from randmodels import fx_mlp_file

    model = torch.jit.load(str(fx_mlp_file(tmp_path / "mlp.pt")))
    x = torch.rand(64, 8) * 2
    uquant.convert(model, x, engine="x86")  # the right engine: exact
    with pytest.raises(uquant.ConversionError) as e:
        uquant.convert(model, x, engine="qnnpack")
    msg = str(e.value)
    assert msg.startswith("self-check failed: torch and uquant disagree on ") and " of 256 example outputs" in msg
    assert f"engine 'qnnpack' on platform {platform_here().name}, this machine's torch" in msg
    assert "pass engine=" in msg


def test_onednn_conv_under_aten_default_is_refused():
    """ATen's DEFAULT capability (no AVX2) changes the x86 engine's oneDNN conv bytes in ways not characterised."""
    import torch
    import torch.ao.nn.quantized as nnq

    from randmodels import Chain

    torch.backends.quantized.engine = "x86"
    conv = nnq.Conv2d(2, 2, 3)
    conv.set_weight_bias(torch.quantize_per_tensor(torch.randn(2, 2, 3, 3), 0.01, 0, torch.qint8), None)
    conv.scale = 0.1
    chain = Chain(0.02, 0, [conv]).eval()
    default = platforms.parse("x86(gemm=exact,conv=onednn,simd=default)")
    with pytest.raises(uquant.ConversionError, match="oneDNN.*DEFAULT capability.*refusing"):
        uquant.convert(chain, engine="x86", platform=default, input_shape=(2, 5, 5))
    uquant.convert(chain, engine="x86", platform="x86-vnni", input_shape=(2, 5, 5))
