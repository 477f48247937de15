"""torchvision's models load beside the CPU torch (uquant.torchvision_models), quantize (FX and eager), convert with
the self-check, and give torch's bytes on the device runtime.

The modules are megabytes (resnet18: 11.7M weights, a 37 MB source), so the many inputs run in the MicroPython
unix port's viper tier with a 64 MB heap, as tests/test_examples.py runs its ResNet-8; inputs are small (16x16,
32x32) to keep the MACs down, not because the models need it.
"""
from __future__ import annotations

import pytest
import torch
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

import uquant
from conftest import torch_engine
from test_examples import assert_exact
from test_viper import _require_unix_port  # noqa: F401 - autouse: the unix port must be there (or skip, see it)
from uquant import examples, torchvision_models as tv


pytestmark = pytest.mark.skipif(not tv.available(), reason="torchvision is not installed (make setup installs it)")


def test_torchvision_imports_beside_the_cpu_torch():
    tvm = tv.load()
    assert tvm.__version__.startswith("0.28.0")
    assert tv.load() is tvm  # twice: the schemas are declared once
    m = tv.quantizable("shufflenet_v2_x0_5")
    assert type(m).__name__ == "QuantizableShuffleNetV2" and not m.training


# torchvision's quantizable models, FX (the acceptance: >= 200 inputs per engine) and eager (fuse_model,
# prepare, convert: fewer inputs, the same kernels)
MODELS = {"mobilenet_v2": (32, {"width_mult": 0.35}), "resnet18": (16, {})}


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
@pytest.mark.parametrize("mode, n", [("fx", 200), ("eager", 40)])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_quantizable_model_matches_torch(name, mode, n, engine, report):
    size, kwargs = MODELS[name]
    q, x = tv.quantized(name, engine, mode, size, **kwargs)
    line = assert_exact(q, x, engine, n, heap_size=64 << 20)
    report(f"torchvision {name} {mode:<5} {engine:<8} 3x{size}x{size}: {line}")


def test_relu6_mobilenet_v2_on_qnnpack_through_uquant_quantize(report):
    # torchvision's plain mobilenet_v2 keeps ReLU6, which torch's qnnpack computes in the wrong element order on
    # a conv's channels-last output (refused, naming the alternatives); `uquant quantize` fuses each ReLU6 into
    # its conv with the output range fixed to [0, 6], which torch computes correctly and the device exactly
    torch.manual_seed(0)
    model = tv.randomize_batchnorm(tv.load().models.mobilenet_v2(weights=None, width_mult=0.35).eval())
    x = torch.rand(16, 3, 32, 32)
    with torch_engine("qnnpack"):
        p = prepare_fx(model, get_default_qconfig_mapping("qnnpack"), (x[:1],))
        p(x)
        with pytest.raises(uquant.ConversionError, match=r"wrong element order.*uquant quantize --engine qnnpack"):
            uquant.convert(convert_fx(p), engine="qnnpack", input_shape=(3, 32, 32))
    q = uquant.quantize(model, x, engine="qnnpack")
    assert "35 ReLU6 after a Conv2d fused" in q.choice and q.portability == []
    with torch.no_grad():  # the same function: the quantized model follows the float one
        assert (q.model(x).argmax(1) == model(x).argmax(1)).all()
    with torch_engine("qnnpack"):
        line = assert_exact(q.model, x, "qnnpack", 200, heap_size=64 << 20)
    report(f"torchvision mobilenet_v2 (ReLU6) fx    qnnpack  3x32x32 via uquant quantize: {line}")


# shufflenet_v2_x0_5 with 10 classes (torchvision's 1000-class head alone is 1M weights): chunk (FX: of a dequantized
# tensor, requantized), the channel shuffle (size() arithmetic, 5-D view, transpose, contiguous, view), cat and the
# head's mean over one position are byte moves on the device
@pytest.mark.parametrize("mode, n", [("fx", 200), ("eager", 40)])
def test_shufflenet_v2_qnnpack_matches_torch(mode, n, report):
    q, x = tv.quantized("shufflenet_v2_x0_5", "qnnpack", mode, 32, num_classes=10)
    line = assert_exact(q, x, "qnnpack", n, heap_size=64 << 20)
    report(f"torchvision shufflenet_v2_x0_5 {mode:<5} qnnpack  3x32x32: {line}")


# On x86/fbgemm the head's mean is over 2x2 positions at 64x64 (torch's own x86 mean fails at 32x32, over one
# position: "required rank 4 tensor to use channels_last format"): torch sums dequantized floats, which uquant.fmean
# emulates. fbgemm: the x86 engine runs these convs on oneDNN on VNNI CPUs, where 1 output in about a million is off
# by one LSB from what uquant reproduces (README); one such element turned up in these 200 inputs on this machine.
@pytest.mark.parametrize("mode, n", [("fx", 200), ("eager", 40)])
def test_shufflenet_v2_fbgemm_matches_torch(mode, n, report):
    q, x = tv.quantized("shufflenet_v2_x0_5", "fbgemm", mode, 64, num_classes=10)
    line = assert_exact(q, x, "fbgemm", n, heap_size=64 << 20)
    report(f"torchvision shufflenet_v2_x0_5 {mode:<5} fbgemm   3x64x64: {line}")


# mobilenet_v3_small (width 0.25): squeeze-and-excitation blocks (global pooling, 1x1 convs, hardsigmoid, a
# per-channel broadcasting mul) and hardswish; FX from torchvision's model, eager from its QuantizableMobileNetV3
@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
@pytest.mark.parametrize("mode, n", [("fx", 200), ("eager", 40)])
def test_mobilenet_v3_small_matches_torch(mode, n, engine, report):
    q, x = examples.mobilenet_v3_small(engine, eager=mode == "eager")
    line = assert_exact(q, x, engine, n, heap_size=64 << 20)
    report(f"torchvision mobilenet_v3_small {mode:<5} {engine:<8} 3x32x32: {line}")
