"""Does a model give the same bytes on every CPU? If not, where and how often (uquant.platforms).

Lowering proves, step by step, whether torch's bytes can depend on the platform (a pair of products that can
leave int16, a Conv the x86 engine hands to oneDNN or fbgemm, NHWC pooling across SIMD blocks): those steps
carry `platform_notes`. Only for such models is the graph lowered again for the other real platforms, and the
inputs at hand (the example inputs, or random input codes) run through each, to say how often it matters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import platforms


@dataclass
class Portability:
    platform: platforms.Platform  # the platform converted for
    dependent: list[tuple[str, str]]  # (step, why) per platform-dependent step
    changed: dict[str, tuple[int, int]]  # other platform name -> (samples whose outputs differ, samples)
    inputs: str  # what the samples were

    @property
    def portable(self) -> bool:
        return not self.dependent

    def line(self) -> str:
        """One line for `uquant convert`: which steps, on which platforms, and how often on the inputs at hand."""
        if self.portable:
            return "portable: the same bytes on every platform (no step depends on the CPU)"
        steps = ", ".join(f"{name} ({why})" for name, why in self.dependent[:3])
        if len(self.dependent) > 3:
            steps += f" and {len(self.dependent) - 3} more steps"
        counts = "; ".join(f"On {p}: {k} of {n} {self.inputs} ({100 * k / max(n, 1):.1f} %) give other outputs"
                           for p, (k, n) in self.changed.items())
        return f"platform-dependent: {steps}. {counts or 'no other platform differs'}"

    HINT = ("for a model with the same bytes everywhere, quantize for qnnpack; with reduce_range=True (the x86 "
            "default) saturation needs inputs beyond the calibrated range")


RANDOM_MACS_BUDGET = 50_000_000  # multiply-accumulates the random inputs may cost in all, per platform


def check(converted, codes: np.ndarray | None = None, what: str = "example inputs", n_random: int = 256,
          seed: int = 0) -> Portability:
    """Compare `converted` with the same model lowered for each other real platform it can differ on, on the
    input codes given (described by `what`) or on random ones."""
    from .api import Converted
    from .lower import lower

    plan = converted.plan
    dependent = plan.platform_dependent
    if codes is None:
        # the device runtime runs them in CPython here, twice: fewer samples for big models (a ResNet-8 takes
        # over a second each), at least 8
        macs = sum(s.macs for s in plan.steps)
        n_random = min(n_random, max(8, RANDOM_MACS_BUDGET // max(macs, 1)))
        rng = np.random.default_rng(seed)
        codes = rng.integers(plan.input.qmin, plan.input.qmax + 1, (n_random, plan.n_in))
        inputs = "random inputs"
    else:
        codes = np.asarray(codes, np.int64).reshape(-1, plan.n_in)
        inputs = what
    changed: dict[str, tuple[int, int]] = {}
    if not dependent or not plan.platform.supports("x86") or plan.engine == "qnnpack":
        return Portability(plan.platform, dependent, changed, inputs)
    attrs = sorted(plan.platform_attributes)
    mine = converted.run_codes(codes)
    groups: dict[tuple, list[str]] = {}  # platforms alike in what this model depends on give the same bytes
    for name in platforms.REAL_X86:
        groups.setdefault(tuple(getattr(platforms.NAMED[name], a) for a in attrs), []).append(name)
    for key, names in groups.items():
        if key == tuple(getattr(plan.platform, a) for a in attrs):
            continue
        other = platforms.NAMED[names[0]]
        theirs = Converted(converted.graph, lower(converted.graph, plan.engine, other)).run_codes(codes)
        changed[" and ".join(names)] = (int((theirs != mine).any(1).sum()), len(codes))
    return Portability(plan.platform, dependent, changed, inputs)
