"""Conformance on another platform: run by tests/test_platforms.py in a subprocess whose torch takes other CPU
paths (FBGEMM_ENABLE_INSTRUCTIONS / ATEN_CPU_CAPABILITY, or a CPU without VNNI emulated by qemu-user). uquant
converts for the platform it detects there, and every output code must equal that torch's. Prints one JSON line.

    python tests/platform_check.py [--models N] [--seed S]
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "host"), str(ROOT / "tests")]
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import randmodels  # noqa: E402
import uquant  # noqa: E402
from uquant import platforms  # noqa: E402
from uquant.examples import SEED_INPUTS, SeedTorchModel, seed_expected, seed_state_dict  # noqa: E402


def fbgemm_path_conv(rng, engine: str, groups: int, cg: int):
    """A 3x3 padding-1 Conv2d with `groups` groups of `cg` channels (fbgemm's groupwise kernel for cg in 2/4/8/16
    and enough groups, its im2col GEMM otherwise), big weights, and inputs that make int16 pairs saturate."""
    import torch.ao.nn.quantized as nnq

    torch.backends.quantized.engine = engine
    torch.manual_seed(int(rng.integers(2 ** 31)))
    C = groups * cg
    conv = nnq.Conv2d(C, C, 3, padding=1, groups=groups)
    w = torch.randn(C, cg, 3, 3)
    zp = 0 if engine == "fbgemm" else 3  # x86: asymmetric weights keep it on fbgemm, as on CPUs without VNNI
    w_scale = float(w.abs().max()) / 127
    conv.set_weight_bias(torch.quantize_per_tensor(w, w_scale, zp, torch.qint8), torch.randn(C))
    conv.scale, conv.zero_point = 0.02 * w_scale * float(rng.uniform(200, 800)), 128  # a code per few hundred acc
    return randmodels.Chain(0.02, 0, [conv]).eval(), (C, 5, 5)


def compare(chain, converted, codes, shape=None) -> tuple[int, int]:
    batch = codes if shape is None else codes.reshape((-1,) + shape)
    want = chain.layer_codes(batch)[-1].reshape(len(codes), -1)
    got = converted.run_codes(codes).reshape(len(codes), -1)
    return int(want.size), int((want != got).sum())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=12, help="random MLPs and convs per engine")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    here = platforms.here()
    out = {"platform": here.name, "outputs": 0, "mismatches": 0, "models": 0, "saturating": 0, "seed": None}
    rng = np.random.default_rng(args.seed)

    def tally(chain, converted, codes, shape=None):
        n, bad = compare(chain, converted, codes, shape)
        out["outputs"] += n
        out["mismatches"] += bad
        out["models"] += 1
        out["saturating"] += any(s.platform_saturation for s in converted.plan.compute_steps)

    torch_preds = SeedTorchModel("x86")(torch.from_numpy(SEED_INPUTS)).argmax(-1).tolist()
    c = uquant.convert(seed_state_dict(), engine="x86", relu="hidden", name="seed")
    dev = [c.device_module.predict(list(map(int, r))) for r in uquant.quantize_input(SEED_INPUTS, c.plan.input)]
    out["seed"] = {"torch": torch_preds, "uquant": dev, "expected": seed_expected("x86", here)}
    for engine in ("x86", "fbgemm", "qnnpack"):
        for i in range(args.models):
            if i % 2 == 0:
                chain = randmodels.random_chain(rng, engine)
                converted = uquant.convert(chain, engine=engine)
                tally(chain, converted, randmodels.random_codes(rng, 40, converted.plan.n_in))
            else:
                chain, shape = randmodels.random_conv(rng, engine, dim=1 + (i // 2) % 2)
                try:
                    chain.layer_codes(np.zeros((1,) + shape, np.int64))
                except RuntimeError:
                    continue  # a shape torch itself refuses
                converted = uquant.convert(chain, engine=engine, input_shape=shape)
                tally(chain, converted, randmodels.random_codes(rng, 20, converted.plan.n_in), shape)
        if engine != "qnnpack":  # fbgemm's groupwise kernel and, next to it, its im2col path
            for groups, cg in ((8, 2), (4, 4), (1, 8), (2, 2)):
                chain, shape = fbgemm_path_conv(rng, engine, groups, cg)
                converted = uquant.convert(chain, engine=engine, input_shape=shape)
                codes = np.clip(255 - rng.integers(0, 40, (20, converted.plan.n_in)), 0, 255)
                tally(chain, converted, codes, shape)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
