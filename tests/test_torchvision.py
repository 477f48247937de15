"""torchvision's models load beside the CPU torch (uquant.torchvision_models), FX-quantize, and what uquant makes
of them. Conversion of the larger ones is slow today (issue 16); these tests stay small."""
from __future__ import annotations

import pytest
import torch
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import uquant
from conftest import torch_engine
from uquant import torchvision_models as tv

pytestmark = pytest.mark.skipif(not tv.available(), reason="torchvision is not installed (make setup installs it)")


def test_torchvision_imports_beside_the_cpu_torch():
    tvm = tv.load()
    assert tvm.__version__.startswith("0.28.0")
    assert tv.load() is tvm  # twice: the schemas are declared once
    m = tv.quantizable("shufflenet_v2_x0_5")
    assert type(m).__name__ == "QuantizableShuffleNetV2" and not m.training


def test_squeeze_excitation_is_refused_by_name():
    # mobilenet_v3's squeeze-and-excitation multiplies (N, C, 1, 1) by (N, C, H, W): named, with both shapes
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    with torch_engine("qnnpack"):
        p = prepare_fx(tv.load().models.mobilenet_v3_small(weights=None).eval(), get_default_qconfig_mapping("qnnpack"),
                       (x,))
        p(x)
        with pytest.raises(uquant.ConversionError, match=r"mul.*\(16, 1, 1\), \(16, 8, 8\).*broadcasting"):
            uquant.convert(convert_fx(p), engine="qnnpack", input_shape=(3, 32, 32))
