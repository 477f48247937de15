"""torchvision's models load beside the CPU torch (uquant.torchvision_models), FX-quantize, and what uquant makes
of them. Conversion of the larger ones is slow today (issue 16); these tests stay small."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import uquant
from test_viper import _require_unix_port  # noqa: F401 - autouse: the unix port must be there (or skip, see it)
from uquant import torchvision_models as tv


N_INPUTS = 200

pytestmark = pytest.mark.skipif(not tv.available(), reason="torchvision is not installed (make setup installs it)")


def test_torchvision_imports_beside_the_cpu_torch():
    tvm = tv.load()
    assert tvm.__version__.startswith("0.28.0")
    assert tv.load() is tvm  # twice: the schemas are declared once
    m = tv.quantizable("shufflenet_v2_x0_5")
    assert type(m).__name__ == "QuantizableShuffleNetV2" and not m.training


@pytest.mark.parametrize("mode", ["fx", "eager"])
@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_mobilenet_v3_small_matches_torch(engine, mode, report):
    """mobilenet_v3_small (width 0.25, 3x32x32), from FX (torchvision's model) and from eager mode (torchvision's
    QuantizableMobileNetV3, fused): its squeeze-and-excitation blocks (global pooling, 1x1 convs, hardsigmoid, a
    per-channel broadcasting mul) and hardswish convert (self-check), and 200 inputs give torch's bytes in the
    MicroPython unix port on the viper tier (the bytecode runtime in CPython is slow)."""
    from uquant import examples
    from uquant.hosts.mpmodule import run_batch

    t0 = time.perf_counter()
    q, x = examples.mobilenet_v3_small(engine, eager=mode == "eager")
    converted = uquant.convert(q, x[:2], engine=engine)  # self-checks against torch (bytecode runtime)
    kinds = {n.kind for n in converted.device_module.model.layers}
    assert "bmul" in kinds
    xt = torch.rand(N_INPUTS, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2.4 - 1.2
    with torch.no_grad():  # one sample per call, as on the device
        want = np.concatenate([q(xt[i:i + 1]).numpy() for i in range(N_INPUTS)])
    codes = uquant.api.quantize_input(xt.reshape(N_INPUTS, -1), converted)
    got, preds, _ = run_batch(converted.source, converted.module_name, codes, host="unix", tier="viper")
    out = converted.plan.output
    assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)
    assert np.array_equal(preds, want.argmax(1))
    n_se = sum(s.kind == "mul" and s.hw > 0 for s in converted.plan.steps)
    report(f"mobilenet_v3_small(0.25) {mode:<5} {engine:<8}: {N_INPUTS} inputs x {want.shape[1]} outputs equal torch "
           f"({n_se} SE blocks; viper tier, unix port), {time.perf_counter() - t0:.0f}s")
