"""The ready-made example models (uquant.examples) convert, self-check and give torch's bytes on many inputs.

ResNet-8 is 12.5M MACs per inference: the device runtime in CPython needs over a second for one, so the 200
inputs run in the MicroPython unix port on the viper tier (the module as a board runs it; conv on
device/uquant_viper.py, add and pooling on the bytecode runtime), and the self-check inside convert runs two of
them on the bytecode runtime in CPython.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import uquant
from test_viper import _require_unix_port  # noqa: F401 - autouse: the unix port must be there (or skip, see it)
from uquant import examples
from uquant.hosts.mpmodule import run_batch

N_INPUTS = 200


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_resnet8_matches_torch(engine, report):
    q, x = examples.resnet8(engine)
    assert 75_000 < sum(v.numel() for k, v in examples.ResNet8().state_dict().items() if "running" not in k
                        and "num_batches" not in k) < 80_000  # MLPerf Tiny's ResNet-8: ~78k parameters
    converted = uquant.convert(q, x[:2], engine=engine)  # self-checks against torch (bytecode runtime)
    xt = torch.randn(N_INPUTS, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 1.5
    with torch.no_grad():  # one sample per call, as on the device
        want = np.concatenate([q(xt[i:i + 1]).numpy() for i in range(N_INPUTS)])
    codes = uquant.api.quantize_input(xt.reshape(N_INPUTS, -1), converted)
    got, preds, _ = run_batch(converted.source, converted.module_name, codes, host="unix", tier="viper")
    out = converted.plan.output
    assert got.shape == want.shape
    assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)
    assert np.array_equal(preds, want.argmax(1))
    report(f"ResNet-8 {engine:<8}: {N_INPUTS} random inputs, every output equal to torch (viper tier, unix port)")
