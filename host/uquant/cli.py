"""The `uquant` command: one small function per verb, each a thin call into the library."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np


def _quiet_torch():
    # torch 2.13 warns that torch.ao.quantization and the quint8/qint8 dtypes are deprecated; users of
    # this tool already know, and the noise hides our own messages.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(quint8|qint8|qint32|TypedStorage|deprecated).*")


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"--input with --raw takes integer codes, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"--input takes comma-separated numbers, got {text!r}") from None


def cmd_convert(args) -> int:
    from . import codegen
    from .api import convert

    from .info import parse_shape

    out = Path(args.output)
    converted = convert(args.model, engine=args.engine, relu=args.relu, allow_pickle=args.allow_pickle,
                        name=args.name, module_name=out.stem, input_shape=parse_shape(args.input_shape))
    converted.save(out)
    plan = converted.plan
    print(f"{out}: {plan.name}, engine {plan.engine}, {plan.n_in} inputs -> {plan.n_out} outputs")
    for s in plan.steps:
        print(f"  {s.name}: {codegen.describe_step(s)}")
    print(f"  requantization proven for all {sum(s.N for s in plan.compute_steps)} output channels")
    mem = codegen.memory(plan)
    print(f"  board memory: weights {mem['weights']} B, parameters {mem['params']} B, activations {mem['buffers']} B "
          f"in buffers {plan.buffers}")
    print(f"  copy {out} and device/uquant_rt.py to the board, then: import {out.stem}; {out.stem}.predict(codes)")
    return 0


def cmd_info(args) -> int:
    from .api import convert
    from .info import parse_shape, summary

    from . import boards

    board = boards.get(args.board) if args.board else None  # an unknown board fails before the conversion
    converted = convert(args.model, engine=args.engine, relu=args.relu, allow_pickle=args.allow_pickle,
                        input_shape=parse_shape(args.input_shape))
    print(summary(converted.plan))
    if board:
        from .info import board_fit

        text, fits = board_fit(converted, board)
        print("\n" + text)
        return 0 if fits else 1
    return 0


def cmd_run(args) -> int:
    from . import codegen, engines, runtime

    path = Path(args.module)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        mod = runtime.load_file(path)
    except SyntaxError as e:
        raise ValueError(f"{path}: not a valid generated module ({e.msg}, line {e.lineno})") from None
    n_in = mod.model.n_in
    if args.raw:
        codes = _ints(args.input)
    else:
        x = np.array(_floats(args.input), np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"--input must be finite numbers, got {args.input!r}")
        codes = engines.quantize(x, codegen.bits_f32(mod.INPUT_SCALE_BITS), mod.INPUT_ZERO_POINT).tolist()
    if len(codes) != n_in:
        raise ValueError(f"{path.name} takes {n_in} input values, got {len(codes)}")
    if args.micropython:
        from .hosts.mpmodule import run_batch

        ys, preds, _ = run_batch(path.read_text(), path.stem, np.array([codes]))
        y, pred, where = ys[0].tolist(), int(preds[0]), "MicroPython (wasm)"
    else:
        y, pred, where = list(mod.run(codes)), mod.predict(codes), "CPython"
    values = engines.dequantize(np.array(y), codegen.bits_f32(mod.OUTPUT_SCALE_BITS), mod.OUTPUT_ZERO_POINT)
    print(f"runtime      : device runtime under {where}")
    print(f"input codes  : {codes}")
    print(f"output codes : {y}")
    print(f"output values: {[float(f'{v:.6g}') for v in values]}")
    print(f"class        : {pred}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .engines import ENGINES

    p = argparse.ArgumentParser(prog="uquant", description="torch-quantized models -> integer-only MicroPython "
                                "modules that give torch's exact bytes")
    p.add_argument("--version", action="version", version=f"uquant {__version__}")
    sub = p.add_subparsers(dest="verb", required=True)

    c = sub.add_parser("convert", help="convert a quantized model file to a MicroPython module")
    c.add_argument("model", help="TorchScript file, state_dict file (torch.save(model.state_dict())), or with "
                   "--allow-pickle a whole pickled model")
    c.add_argument("-o", "--output", default="build/model_q.py", help="module to write (default: %(default)s)")
    c.add_argument("--engine", choices=ENGINES, default="x86",
                   help="quantized engine the model was prepared for (default: %(default)s, torch's default on x86)")
    c.add_argument("--relu", help="state_dict only: which layers had a fused ReLU: 'hidden' (all but the last), "
                   "'none', 'all', or comma-separated layer names")
    c.add_argument("--allow-pickle", action="store_true",
                   help="allow loading a pickled Python object (runs code from the file: trusted files only)")
    c.add_argument("--name", help="model name inside the module (default: from the file name)")
    c.set_defaults(func=cmd_convert)

    i = sub.add_parser("info", help="layers, shapes, MACs, bytes of weights and activations of a model")
    i.add_argument("model", help="a model file, as for convert")
    i.add_argument("--board", help="check the model fits this board's RAM and flash (profiles in boards/); exit 1 if not")
    i.set_defaults(func=cmd_info)
    for q in (c, i):
        if q is i:
            q.add_argument("--engine", choices=ENGINES, default="x86", help="quantized engine (default: %(default)s)")
            q.add_argument("--relu", help="state_dict only: layers with a fused ReLU (see convert)")
            q.add_argument("--allow-pickle", action="store_true", help="allow loading a pickled model (see convert)")
        q.add_argument("--input-shape", help="one sample's input shape, e.g. 1,8,8, for models whose first layer is "
                       "a convolution (a file does not record it)")

    r = sub.add_parser("run", help="run a generated module on one input, with the device runtime")
    r.add_argument("module", help="generated module, e.g. build/model_q.py")
    r.add_argument("--input", required=True, help="comma-separated float inputs (quantized as torch does), "
                   "or codes with --raw")
    r.add_argument("--raw", action="store_true", help="--input holds already-quantized codes")
    r.add_argument("--micropython", action="store_true",
                   help="run inside a real MicroPython interpreter (WebAssembly port, needs `make setup`)")
    r.set_defaults(func=cmd_run)
    return p


def main(argv=None) -> int:
    _quiet_torch()
    from .ir import ConversionError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConversionError as e:
        print(f"uquant: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:  # e.g. the device runtime refusing an input, node missing
        print(f"uquant: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
