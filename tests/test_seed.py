"""The question's own model, rebuilt from its printed state_dict, through uquant on every engine."""
from __future__ import annotations

import numpy as np
import pytest

import uquant
from conftest import platform_here
from uquant.examples import SEED_EXPECTED, SEED_INPUTS, SEED_SATURATED, SeedTorchModel, seed_expected, seed_state_dict


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
def test_seed_model_gives_torchs_bytes_at_every_layer(engine, report):
    converted = uquant.convert(seed_state_dict(), engine=engine, relu="hidden", name="seed")
    torch_model = SeedTorchModel(engine)
    torch_codes = torch_model.layer_codes(SEED_INPUTS)
    codes = uquant.quantize_input(SEED_INPUTS, converted.plan.input)
    assert np.array_equal(codes, torch_codes[0])
    for got, want in zip(converted.layer_codes(codes), torch_codes[1:]):
        assert np.array_equal(got, want)
    preds = [converted.device_module.predict(row.tolist()) for row in codes]
    assert preds == np.argmax(torch_codes[-1], 1).tolist() == seed_expected(engine, platform_here())
    report(f"seed model {engine:<8}: predictions {preds} on platform {converted.plan.platform.name}, every layer's "
           "codes equal torch's")


@pytest.mark.parametrize("engine", ["x86", "fbgemm"])
def test_seed_on_every_platform(engine):
    """The question's answer on VNNI machines, and the saturated one without VNNI, from any machine; only the
    first layer's third unit differs (the pair 255*-56 + 255*-128)."""
    preds = {}
    for name in ("x86-vnni", "x86-avx512", "x86-avx2"):
        c = uquant.convert(seed_state_dict(), engine=engine, relu="hidden", name="seed", platform=name)
        codes = uquant.quantize_input(SEED_INPUTS, c.plan.input)
        preds[name] = [c.device_module.predict(row.tolist()) for row in codes]
        assert c.plan.platform_dependent == [("input_layer", "1 of 3 channels can saturate int16 pair sums on "
                                              "platforms without VNNI (x86-avx2, x86-avx512)")]
        assert c.plan.steps[0].sat_pairs == ((2, 0) if name != "x86-vnni" else ())
    assert preds == {"x86-vnni": SEED_EXPECTED, "x86-avx512": SEED_SATURATED, "x86-avx2": SEED_SATURATED}


def test_seed_on_qnnpack_is_portable():
    c = uquant.convert(seed_state_dict(), engine="qnnpack", relu="hidden", name="seed", platform="x86-avx2")
    assert c.plan.platform_dependent == [] and not any(s.sat_pairs for s in c.plan.steps)


def test_seed_needs_to_know_about_relu():
    """The printed state_dict cannot say whether 'out' had a fused ReLU; with zero point 243 it matters."""
    with pytest.raises(uquant.ConversionError, match="relu.*|.*out.*243"):
        uquant.convert(seed_state_dict(), engine="x86")
