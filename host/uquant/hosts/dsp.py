"""The dsp kernel tier (device/uquant_dsp.py) on an emulated Cortex-M33: its speed on a converted model.

    from uquant.hosts import dsp
    dsp.dsp_figures(converted, codes)   # {"macs", "kernel_cycles", "cycles_per_mac", "layers": [...]} or None

The model is laid out for the Pico 2 (`convert --board pico2`: dense weights in uquant_dsp's order, as the board
holds them) and built by the device runtime with TIER "dsp" and uquant_dsp's machine code running in unicorn as a
Cortex-M33 (hosts/thumb.py: M33Machine, and its cycle model). Kernel cycles are the dsp kernels' (dense and conv
layers, requantization included); the ops the tier leaves to other modules (pooling, element-wise ops, satfix) run
in CPython and are not counted, nor is the Python around the kernels. cycles_per_mac = kernel cycles / MACs of the
layers the kernels ran.
"""
from __future__ import annotations

import copy

import numpy as np


def dsp_figures(converted, codes: np.ndarray, tier=None) -> dict | None:
    """Cortex-M33 kernel cycles of one inference on input codes (one sample, flattened; quint8 inputs)."""
    from ..runtime import load_source, rt
    from . import thumb

    tier = tier or thumb.emulated_dsp_tier()
    saved = rt.TIER
    rt.register("uquant_dsp", tier)
    rt.TIER = "dsp"
    try:
        module = load_source(copy.copy(converted).for_board("pico2").source, converted.module_name)
    finally:
        rt.TIER = saved
        rt.register("uquant_dsp", None)
    steps = [s for s in converted.plan.steps if getattr(s, "kind", None) in ("dense", "conv")]
    nodes = [n for n in module.model.layers if n.kind in ("dense", "conv")]
    if len(steps) != len(nodes):
        return None
    x = bytes(map(int, codes))
    module.run(x)
    layers = []
    total = macs = 0
    for s, n in zip(steps, nodes):
        if n.fast is None or getattr(n.fast, "__module__", None) != tier.__name__:
            layers.append({"kind": s.kind, "macs": s.macs, "cycles": None})
            continue
        src = x if n.src is None else n.src
        tier.stats.reset()
        n.fast(src, n.out, n.handle)
        layers.append({"kind": s.kind, "macs": s.macs, "cycles": tier.stats.cycles})
        total += tier.stats.cycles
        macs += s.macs
    return {"macs": macs, "kernel_cycles": total, "cycles_per_mac": total / macs if macs else None,
            "layers": layers}
