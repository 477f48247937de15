"""`uquant info`: what a converted model costs on the board, step by step, and its activation memory plan."""
from __future__ import annotations

import numpy as np

from . import codegen
from .plan import DenseStep, Plan


def summary(plan: Plan) -> str:
    mem = codegen.memory(plan)
    shape = "x".join(map(str, plan.input_shape))
    lines = [f"model {plan.name} (engine {plan.engine}): input {shape} {plan.input.dtype} ({plan.n_in} codes) -> "
             f"{plan.n_out} output codes",
             "",
             f"  {'step':<18} {'what':<44} {'output':>9} {'MACs':>9} {'weights':>8} {'params':>7} {'buffer':>6}"]
    macs = 0
    for s in plan.steps:
        out = "x".join(map(str, s.out_shape))
        w = len(s.weights) if isinstance(s, DenseStep) else 0
        p = 4 * len(s.words) + 12 * (len(s.fixes) // 3) + len(s.table or b"") if isinstance(s, DenseStep) else 0
        m = s.macs
        macs += m
        what = codegen.describe_step(s).split(",")[0]
        lines.append(f"  {s.name[:18]:<18} {what[:44]:<44} {out:>9} {m:>9} {w:>8} {p:>7} {plan.buffer_of[s.dst]:>6}")
    peak = sum(plan.buffers)
    lines += [
        "",
        f"  MACs per inference      {macs}",
        f"  weights                 {mem['weights']} B (one byte each, in the module)",
        f"  parameters              {mem['params']} B (requantization words, exceptions, code tables)",
        f"  activation buffers      {len(plan.buffers)}: {', '.join(f'#{i} {b} B' for i, b in enumerate(plan.buffers))}",
        f"  activation peak         {peak} B (all buffers are allocated once, at import; a buffer is reused as "
        "soon as the value in it is no longer needed)",
        f"  conv window scratch     {mem['scratch']} B",
        f"  total RAM at run time   ~{mem['weights'] + mem['params'] + peak + mem['scratch']} B plus the runtime's code",
    ]
    return "\n".join(lines)


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--input-shape takes sizes like 1,8,8 (one sample, without the batch), got {text!r}") from None
    if not shape or min(shape) <= 0 or np.prod(shape) > 1 << 20:
        raise ValueError(f"--input-shape {text!r} is not a sensible per-sample shape")
    return shape
