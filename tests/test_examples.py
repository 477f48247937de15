"""The ready-made example architectures (uquant.examples.ARCHITECTURES) convert, self-check and give torch's bytes
on 200 random inputs per engine.

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


def assert_exact(q, x, engine: str, n: int = N_INPUTS, heap_size: int | None = None) -> str:
    """Convert `q` (self-check against torch on two of `x`), then run `n` random inputs of x's sample shape through
    torch and through the module on the unix port's viper tier: every output byte equal. Returns a report line."""
    converted = uquant.convert(q, x[:2], engine=engine, quiet=True)  # self-checks (bytecode runtime, CPython)
    xt = torch.randn(n, *x.shape[1:], generator=torch.Generator().manual_seed(5)) * 1.5
    with torch.no_grad():  # one sample per call, as on the device
        want = np.concatenate([q(xt[i:i + 1]).numpy() for i in range(n)])
    codes = uquant.api.quantize_input(xt.reshape(n, -1), converted)
    got, preds, _ = run_batch(converted.source, converted.module_name, codes, host="unix", tier="viper",
                              heap_size=heap_size)
    out = converted.plan.output
    assert got.shape == want.shape
    assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)
    assert np.array_equal(preds, want.argmax(1))
    return f"{n} random inputs x {want.shape[1]} outputs, every one equal to torch (viper tier, unix port)"


def test_resnet8_has_mlperf_tinys_size():
    assert 75_000 < sum(v.numel() for k, v in examples.ResNet8().state_dict().items() if "running" not in k
                        and "num_batches" not in k) < 80_000  # MLPerf Tiny's ResNet-8: ~78k parameters


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
@pytest.mark.parametrize("name", sorted(examples.ARCHITECTURES))
def test_architecture_matches_torch(name, engine, report):
    q, x = examples.ARCHITECTURES[name](engine)
    report(f"{name:<14} {engine:<8}: {assert_exact(q, x, engine, heap_size=16 << 20)}")
