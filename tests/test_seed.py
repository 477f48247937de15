"""The question's own model, rebuilt from its printed state_dict, through uquant on every engine."""
from __future__ import annotations

import numpy as np
import pytest

import uquant
from conftest import has_vnni
from uquant.examples import SEED_EXPECTED, SEED_INPUTS, SeedTorchModel, seed_state_dict


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
def test_seed_model_gives_torchs_bytes_at_every_layer(engine, report):
    if engine != "qnnpack" and not has_vnni():
        pytest.skip("this CPU lacks VNNI: torch's fbgemm saturates 255*-56 + 255*-128 in int16 for input [1, 1] "
                    "(see README); uquant reproduces the exact (VNNI) arithmetic")
    converted = uquant.convert(seed_state_dict(), engine=engine, relu="hidden", name="seed")
    torch_codes = SeedTorchModel(engine).layer_codes(SEED_INPUTS)
    codes = uquant.quantize_input(SEED_INPUTS, converted.plan.input)
    assert np.array_equal(codes, torch_codes[0])
    for got, want in zip(converted.layer_codes(codes), torch_codes[1:]):
        assert np.array_equal(got, want)
    preds = [converted.device_module.predict(row.tolist()) for row in codes]
    assert preds == SEED_EXPECTED == [0, 1, 2, 3, 4, 5, 1]
    report(f"seed model {engine:<8}: predictions {preds}, every layer's codes equal torch's")


def test_seed_needs_to_know_about_relu():
    """The printed state_dict cannot say whether 'out' had a fused ReLU; with zero point 243 it matters."""
    with pytest.raises(uquant.ConversionError, match="relu.*|.*out.*243"):
        uquant.convert(seed_state_dict(), engine="x86")
