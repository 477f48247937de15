"""`make demo`: the question's model, end to end -- state_dict file -> module -> torch vs CPython vs MicroPython."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch


def main(build: str = "build") -> int:
    warnings.filterwarnings("ignore")
    from . import convert, engines, platforms
    from .examples import SEED_INPUTS, SeedTorchModel, seed_expected, seed_state_dict
    from .hosts.mpmodule import run_batch

    build_dir = Path(build)
    build_dir.mkdir(exist_ok=True)
    sd_path = build_dir / "seed_state_dict.pt"
    torch.save(seed_state_dict(), sd_path)
    engine = "x86"
    here = platforms.here()
    converted = convert(sd_path, engine=engine, relu="hidden", name="seed")
    module_path = converted.save(build_dir / "seed_q.py")
    plan = converted.plan
    print("uquant demo: the 2-3-7 MLP from the question, rebuilt from its printed state_dict")
    print(f"  {sd_path} -> {module_path} (engine {engine}; requantization proven for "
          f"{sum(s.N for s in plan.compute_steps)} output channels)")
    print(f"  platform {here.name}: this machine's torch, probed (`uquant info` says why)\n")

    torch_model = SeedTorchModel(engine)
    torch_codes = torch_model.layer_codes(SEED_INPUTS)
    with torch.no_grad():
        torch_pred = torch_model(torch.from_numpy(SEED_INPUTS)).argmax(-1).tolist()
    codes = engines.quantize(SEED_INPUTS, plan.input.scale, plan.input.zero_point)
    module = converted.device_module
    cpy_out = np.array([list(module.run(list(map(int, c)))) for c in codes])
    cpy_pred = [module.predict(list(map(int, c))) for c in codes]
    mp_out, mp_pred, _ = run_batch(converted.source, module_path.stem, codes)
    mp_pred = mp_pred.tolist()

    print(f"  {'input':<12} {'codes':<11} {'torch':>5} {'CPython':>8} {'MicroPython':>12}")
    for x, c, a, b, m in zip(SEED_INPUTS, codes, torch_pred, cpy_pred, mp_pred):
        shown = "[" + ", ".join(f"{v:g}" for v in x) + "]"
        print(f"  {shown:<12} {str(c.tolist()):<11} {a:>5} {b:>8} {m:>12}")
    print(f"\n  torch       : {torch_pred}\n  CPython     : {cpy_pred}\n  MicroPython : {mp_pred}")
    differ = (int((codes != torch_codes[0]).sum()) + int((cpy_out != torch_codes[-1]).sum())
              + int((mp_out != torch_codes[-1]).sum()))
    compared = codes.size + cpy_out.size + mp_out.size
    print(f"  every input and output code equals torch's int_repr(): {'yes' if not differ else 'NO'} "
          f"({differ} of {compared} codes differ)")

    print("\n  torch's bytes for this model depend on the CPU (uquant.platforms); the same model converted for each,")
    print("  through the same device runtime:")
    for name, label in (("x86-vnni", "x86 with VNNI: exact int32 sums"),
                        ("x86-avx512", "x86 AVX512 without VNNI: int16 pairs"),
                        ("x86-avx2", "x86 AVX2 (no VNNI): int16 pairs"),
                        ("arm", "ARM, or any CPU with qnnpack")):
        p = platforms.NAMED[name]
        other = convert(sd_path, engine="qnnpack" if name == "arm" else engine, relu="hidden", name="seed",
                        platform=p)
        preds = [other.device_module.predict(list(map(int, c))) for c in codes]
        alike = all(getattr(p, a) == getattr(here, a) for a in plan.platform_attributes)
        mark = "  <- this machine" if p == here else "  <- as this machine" if alike and name != "arm" else ""
        note = "  the question's answer" if preds == seed_expected("qnnpack", p) else \
            "  [1, 1]: 255*-56 + 255*-128 = -46920 saturates to -32768"
        print(f"    {name:<11} {label:<38} {str(preds):<22}{note}{mark}")
    print(f"\n  what the board runs: {module_path} + device/uquant_rt.py, e.g.\n"
          f"    .venv/bin/uquant run {module_path} --input 0,0.75 --micropython")
    ok = not differ and torch_pred == cpy_pred == mp_pred == seed_expected(engine, here)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
