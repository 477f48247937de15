"""Every kernel tier gives torch's bytes: random models through torch and through the whole device runtime.

- viper: generated modules run in the real MicroPython unix port with uquant_rt.TIER = "viper" (dense, conv and
  maxpool on device/uquant_viper.py, the rest on bytecode);
- thumb: the same modules in CPython with their dense layers on the armv6m machine code of
  device/uquant_thumb.py, emulated by unicorn (hosts/thumb.py).
Layer-level equality with the bytecode kernels is in test_viper.py and test_thumb.py; this file checks the
tiers end to end against torch, on every engine.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import randmodels
import uquant
from conftest import FUZZ_SCALE, platform_here
from randmodels import random_models, torch_final_codes
from uquant.hosts.mpmodule import run_batch

ENGINES = ["x86", "fbgemm", "qnnpack"]
MIN_OUTPUTS = int(20_000 * FUZZ_SCALE)
MIN_MODELS = max(3, int(30 * FUZZ_SCALE))


@pytest.mark.parametrize("engine", ENGINES)
def test_viper_tier_matches_torch(engine, report):
    rng = np.random.default_rng(700 + ENGINES.index(engine))
    outputs = models = 0
    for want, converted, codes in random_models(rng, engine):
        got, _, _ = run_batch(converted.source, converted.module_name, codes, host="unix", tier="viper")
        assert np.array_equal(got, want), f"model {models}: viper tier differs from torch"
        outputs += want.size
        models += 1
        if outputs >= MIN_OUTPUTS and models >= MIN_MODELS:
            break
    report(f"viper tier {engine:<8}: {outputs} outputs of {models} random models (MLPs, conv+pool) equal torch "
           "in the MicroPython unix port")


@pytest.fixture
def thumb_tier():
    from uquant.hosts import thumb
    from uquant.runtime import rt

    tier = thumb.emulated_tier()
    rt.register("uquant_thumb", tier)
    rt.TIER = "thumb"
    yield tier
    rt.TIER = None
    rt.register("uquant_thumb", None)


@pytest.mark.parametrize("engine", ENGINES)
def test_thumb_tier_matches_torch(engine, thumb_tier, report):
    from uquant.runtime import load_source

    rng = np.random.default_rng(800 + ENGINES.index(engine))
    outputs = models = 0
    while outputs < MIN_OUTPUTS or models < MIN_MODELS:
        chain = randmodels.random_chain(rng, engine)
        converted = uquant.convert(chain, engine=engine)
        codes = randmodels.random_codes(rng, 40, converted.plan.n_in)
        want = torch_final_codes(chain, codes)
        module = load_source(converted.source, converted.module_name)
        assert module.model.tier == "thumb" and all(n.fast is not None for n in module.model.layers)
        got = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes])
        assert np.array_equal(got, want), f"model {models}: thumb tier differs from torch"
        outputs += want.size
        models += 1
    report(f"thumb tier {engine:<8}: {outputs} outputs of {models} random MLPs equal torch, dense layers on "
           f"emulated armv6m code ({thumb_tier.stats.cycles / max(thumb_tier.stats.calls, 1):.0f} cycles per call)")


def other_saturating_platform() -> str:
    """A platform without VNNI other than this machine's, so that every tier meets saturating pairs here."""
    return "x86-avx2" if platform_here().gemm == "exact" else "x86-avx512"


@pytest.mark.parametrize("engine", ["x86", "fbgemm"])
def test_tiers_reproduce_saturating_platforms(engine, thumb_tier, report):
    """Modules made for a platform without VNNI, whatever this CPU is: the viper tier (satfix, conv windows in im2col
    order) and the thumb tier (its kernels reading the words satfix moves) give the bytecode tier's bytes, which
    tests/test_platforms.py holds to such a torch."""
    from uquant.runtime import load_source, rt

    platform = other_saturating_platform()
    rng = np.random.default_rng(900 + ENGINES.index(engine))
    outputs = models = saturating = 0
    for _, converted, codes in random_models(rng, engine, platform):
        want = converted.run_codes(codes).reshape(len(codes), -1) % 256
        got, _, _ = run_batch(converted.source, converted.module_name, codes, host="unix", tier="viper")
        assert np.array_equal(got, want), f"model {models}: viper tier differs from bytecode on {platform}"
        module = load_source(converted.source, converted.module_name)  # thumb: only MLPs run there whole
        if all(n.fast is not None for n in module.model.layers):
            thumb = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes])
            assert np.array_equal(thumb, want), f"model {models}: thumb tier differs from bytecode on {platform}"
        saturating += any(s.platform_saturation for s in converted.plan.compute_steps)
        outputs += want.size
        models += 1
        if outputs >= MIN_OUTPUTS // 2 and models >= MIN_MODELS and saturating >= 5:
            break
    report(f"tiers on {platform} ({engine}): {outputs} outputs of {models} random models ({saturating} with saturating "
           "pairs): viper (unix port) and thumb (emulated) = bytecode")
