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


SHUFFLE_INPUTS = 200


def _shufflenet(engine: str, size: int, mode: str = "fx"):
    torch.manual_seed(0)
    x = torch.rand(16, 3, size, size)
    # 10 classes: torchvision's 1000-class head alone is 1M weights, beyond the unix port's default heap
    m = tv.quantizable("shufflenet_v2_x0_5", num_classes=10)
    with torch_engine(engine):
        if mode == "eager":  # torchvision's own recipe: fuse_model, prepare, calibrate, convert
            m.fuse_model(is_qat=False)
            m.qconfig = torch.ao.quantization.get_default_qconfig(engine)
            torch.ao.quantization.prepare(m, inplace=True)
            m(x)
            return torch.ao.quantization.convert(m), x
        p = prepare_fx(m, get_default_qconfig_mapping(engine), (x[:1],))
        p(x)
        return convert_fx(p), x


@pytest.mark.parametrize("mode", ["fx", "eager"])
def test_shufflenet_v2_qnnpack_matches_torch(mode, report):
    # chunk (FX: of a dequantized tensor, requantized), the channel shuffle (size() arithmetic, 5-D view,
    # transpose, contiguous, view), cat and the head's mean over one position: byte moves on the device; 200
    # inputs on the MicroPython unix port's viper tier
    import numpy as np

    from uquant.hosts import unix
    from uquant.hosts.mpmodule import run_batch

    if unix.missing_reason() is not None:
        pytest.skip(f"MicroPython unix port unavailable: {unix.missing_reason()}")
    q, x = _shufflenet("qnnpack", 32, mode)
    with torch_engine("qnnpack"):
        converted = uquant.convert(q, x[:2], engine="qnnpack", quiet=True)  # self-check: bytecode runtime
        xt = torch.rand(SHUFFLE_INPUTS, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 1.2
        with torch.no_grad():  # one sample per call, as on the device
            want = np.concatenate([q(xt[i:i + 1]).numpy() for i in range(SHUFFLE_INPUTS)])
    kinds = {s.kind for s in converted.plan.steps}
    assert {"copy", "cat", "conv"} <= kinds
    codes = uquant.api.quantize_input(xt.reshape(SHUFFLE_INPUTS, -1), converted)
    got, preds, _ = run_batch(converted.source, converted.module_name, codes, host="unix", tier="viper")
    out = converted.plan.output
    assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)
    report(f"shufflenet_v2_x0_5 {mode:<5} qnnpack 3x32x32: {SHUFFLE_INPUTS} inputs ({want.size} outputs), every "
           "output equal to torch (viper tier)")


def test_shufflenet_v2_x86_mean_is_refused_by_name():
    # On x86 torch's own quantized mean fails at 32x32 (1x1 before the head: "required rank 4 tensor to use
    # channels_last format"); at 64x64 it dequantizes and sums floats over 2x2, which uquant does not model yet.
    q, x = _shufflenet("x86", 64)
    with torch_engine("x86"), pytest.raises(uquant.ConversionError, match=r"mean over H x W = 2x2"):
        uquant.convert(q, engine="x86", input_shape=(3, 64, 64), quiet=True)
