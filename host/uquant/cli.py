"""The `uquant` command: one small function per verb, each a thin call into the library."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np


def _quiet_torch():
    # torch 2.13 warns that torch.ao.quantization and the quint8/qint8 dtypes are deprecated; users of
    # this tool already know, and the noise hides our own messages. Its C++ side (loading a TorchScript file)
    # prints through c10's log, which reads its level once, when torch is first imported.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(quint8|qint8|qint32|TypedStorage|deprecated).*")


def _values(text: str) -> list[str]:
    """The numbers of an --input / --input-raw argument: comma-separated, or @FILE (a .npy file, or text with the
    numbers separated by commas, spaces or newlines: one sample, e.g. 144 values for a 1x12x12 input)."""
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise ValueError(f"{text}: no such file (@FILE names a file holding one sample's numbers)")
        if path.suffix.lower() == ".npy":
            try:
                return [repr(v) for v in np.load(path, allow_pickle=False).ravel().tolist()]
            except ValueError as e:
                raise ValueError(f"{path}: not a numeric .npy file ({e})") from None
        text = path.read_text(errors="replace").replace("\n", ",").replace("\t", ",").replace(" ", ",")
    return [v for v in text.replace(" ", "").split(",") if v != ""]


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in _values(text)]
    except ValueError as e:
        if text.startswith("@") and "no such file" in str(e):
            raise
        raise ValueError(f"--input with --codes takes integer codes, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in _values(text)]
    except ValueError as e:
        if text.startswith("@") and "no such file" in str(e):
            raise
        raise ValueError(f"--input takes comma-separated numbers (or @FILE), got {text!r}") from None


def _raw_ints(text: str) -> list[int]:
    vals = _values(text)
    try:
        return [int(v) for v in vals]
    except ValueError:
        raise ValueError(f"--input-raw takes comma-separated integers (raw sensor values), got {text!r}") from None


def _check_raw(raws: list[int], units: dict | None, name: str, n_in: int) -> None:
    from .board import check_raw

    check_raw(raws, units, name, n_in)


def output_unit_text(spec: tuple, scale: float) -> str:
    """The output unit behind a module's fixed-point spec, as a decimal: the shortest one whose values are the
    module's for every output code (the unit itself is not stored in the module, only its A, S or table)."""
    from fractions import Fraction

    from .ir import QParams
    from .units import fixed_point_targets

    zp, lo, hi, A, S, table = spec
    if table is not None:
        want = list(table)
    else:
        want = [(d * A + 2**(S - 1)) >> S if d >= 0 else -(((-d) * A + 2**(S - 1)) >> S)
                for d in range(lo - zp, hi - zp + 1)]
    i = max(range(len(want)), key=lambda k: abs(want[k]))
    if want[i] == 0:
        return "?"
    approx = float(np.float32(lo + i - zp) * np.float32(scale)) / want[i]
    q = QParams(float(scale), zp, "qint8" if lo < 0 else "quint8")
    for digits in range(1, 18):
        cand = Fraction(f"{approx:.{digits}g}")
        if cand > 0 and fixed_point_targets(q, cand) == want:
            return repr(float(cand))
    return f"~{approx:.6g}"


def _data_codes(path: str, n_in: int, are_codes: bool, quantize) -> np.ndarray:
    """--data: (samples, n_in) input codes from a .npy/.csv file of float samples (quantized by `quantize`, one
    sample's floats -> codes) or, with --codes, of codes."""
    from .board import data_codes

    return data_codes(path, n_in, are_codes, quantize)[0]


def _print_batch(path: str, ys: np.ndarray, preds: np.ndarray, units: dict | None) -> None:
    """One line per sample of --data: its class (and label) and output codes."""
    labels = units["labels"] if units is not None else None
    print(f"samples      : {len(ys)} from {Path(path).name}")
    for i, (y, p) in enumerate(zip(ys, preds)):
        print(f"{i:>5}: class {int(p)}" + (f" ({labels[int(p)]})" if labels else "")
              + f"  codes {[int(v) for v in y]}")


def _print_result(raws, codes, y, values, fixed, pred: int, units: dict | None, out_scale: float) -> None:
    """The lines after the first (where it ran), the same for run and predict."""
    if raws is not None:
        print(f"raw inputs   : {raws}")
    print(f"input codes  : {list(map(int, codes))}")
    print(f"output codes : {y}")
    print(f"output values: {[float(f'{v:.6g}') for v in values]}")
    if units is not None and units["out"] is not None:
        print(f"fixed point  : {[int(v) for v in fixed]} x {output_unit_text(units['out'], out_scale)}")
    print(f"class        : {pred}")
    if units is not None and units["labels"]:
        print(f"label        : {units['labels'][pred]}")


def cmd_convert(args) -> int:
    from . import codegen
    from .api import convert

    from .info import parse_shape

    out = Path(args.output)
    converted = convert(args.model, engine=args.engine, platform=args.platform, relu=args.relu,
                        allow_pickle=args.allow_pickle, name=args.name, module_name=out.stem,
                        input_shape=parse_shape(args.input_shape),
                        input_unit=args.input_unit or args.input_units, output_unit=args.output_unit,
                        labels=args.labels,
                        raw_range=tuple(int(v) for v in args.raw_range.split(",")) if args.raw_range else None,
                        board=args.board, weights=args.weights, weights_buffer=args.weights_buffer)
    converted.save(out)
    plan = converted.plan
    print(f"{out}: {plan.name}, engine {plan.engine}, {plan.n_in} inputs -> {plan.n_out} outputs")
    for s in plan.steps:
        print(f"  {s.name}: {codegen.describe_step(s)}")
    print(f"  requantization proven for all {sum(s.N for s in plan.compute_steps)} output channels")
    for note in converted.graph.notes:
        print(f"  note: {note}")
    mem = codegen.memory(plan)
    print(f"  board memory: weights {mem['weights']} B, parameters {mem['params']} B, activations {mem['buffers']} B "
          f"in buffers {plan.buffers}")
    print(f"  {platform_line(plan.platform)}")
    if converted.layout is not None:
        print(f"  weights: dense layers in {converted.layout} order, for the {args.board} board's kernels")
    if converted.stream is not None:
        st = converted.stream
        print(f"  weights: {len(st.layers)} layer(s) stream from {converted.weights_path(out)} ({len(st.data)} B, "
              f"CRC-32 {st.spec[2]:#010x}), read in chunks into a {st.buffer} B buffer; copy it next to the module")
    codes, what = None, ""
    if args.data:
        from .data import load_samples
        codes, what = load_samples(args.data, plan)
    port = converted.portability(codes, what)
    print(f"  {port.line()}")
    if not port.portable:
        print(f"  hint: {port.HINT}")
    print(f"  copy {out} and device/uquant_rt.py to the board, then: import {out.stem}; {out.stem}.predict(codes)")
    return 0


def platform_line(p) -> str:
    from . import platforms

    here = platforms.here()
    return f"platform: {p.name} ({'this machine' if p == here else 'this machine is ' + here.name})"


def cmd_info(args) -> int:
    from .api import convert
    from .info import parse_shape, summary

    from . import boards

    board = boards.get(args.board) if args.board else None  # an unknown board fails before the conversion
    if args.model is None:  # the machine: which of torch's CPU-dependent paths this torch takes, and why
        from . import platforms

        print(platforms.report())
        if board is None:
            return 0
        raise ValueError("--board needs a model: uquant info MODEL --board NAME")
    if Path(args.model).is_file():
        from .files import text_kind

        if text_kind(Path(args.model).read_bytes()) == "module":  # a generated module: what it holds, and the fit
            return info_module(Path(args.model), board, args.measure)
    converted = convert(args.model, engine=args.engine, platform=args.platform, relu=args.relu,
                        allow_pickle=args.allow_pickle, input_shape=parse_shape(args.input_shape))
    print(summary(converted.plan))
    if board:
        from .info import board_fit

        text, fits = board_fit(converted, board)
        print("\n" + text)
        if args.measure:
            from .info import measured_lines
            print("\n".join(measured_lines(converted.source, converted.module_name)))
        return 0 if fits else 1
    return 0


def info_module(path: Path, board, measure: bool = False) -> int:
    """`uquant info build/m_q.py [--board B]`: the module's own header, and with --board whether it fits."""
    from .info import fit_report, module_memory, weights_bytes

    text = path.read_text()
    header = []
    for line in text.splitlines():  # the comment block the module starts with (codegen's header)
        if not line.startswith("#"):
            break
        header.append(line[2:])
    print("\n".join(header))
    if board is None:
        return 0
    report, fits = fit_report(module_memory(path), text, path.stem, board, weights_bytes(path))
    print("\n" + report)
    if measure:
        from .info import measured_lines
        from .deploy import weights_file
        print("\n".join(measured_lines(text, path.stem, weights_file(path))))
    return 0 if fits else 1


def cmd_run(args) -> int:
    from . import codegen, engines, runtime

    path = Path(args.module)
    module_file_check(path)
    try:
        mod = runtime.load_file(path)
    except SyntaxError as e:
        raise ValueError(f"{path}: not a valid generated module ({e.msg}, line {e.lineno})") from None
    except ValueError:  # CorruptModel: the checksum or the model's own checks, with their message
        raise
    except Exception as e:  # importing a damaged module can fail in any way (NameError, TypeError, ...)
        raise ValueError(f"{path}: not a valid generated module ({type(e).__name__}: {e})") from None
    if not hasattr(mod, "OUTPUT_ZERO_POINT") or not isinstance(getattr(mod, "model", None), runtime.rt.Model):
        raise ValueError(f"{path}: not a complete generated module (no model, or its last line is missing: "
                         "truncated?); convert the model again")
    from .deploy import module_units

    n_in = mod.model.n_in
    units = module_units(mod)
    raws = None
    if args.data:
        codes = _data_codes(args.data, n_in, args.codes, lambda x: _quantize_floats(
            x, mod.INPUT_SCALE_BITS, mod.INPUT_ZERO_POINT, mod.model.qmin, getattr(mod, "INPUT_QUANTIZE", "aten")))
        if args.micropython or args.circuitpython:
            from .hosts.mpmodule import run_batch

            host = "circuitpython" if args.circuitpython else "wasm"
            ys, preds, _ = run_batch(path.read_text(), path.stem, codes, host=host)
            where = "CircuitPython (its unix port, built like a board)" if args.circuitpython else "MicroPython (wasm)"
        else:
            ys = np.array([list(mod.run([int(v) for v in row])) for row in codes])
            preds = np.array([mod.predict([int(v) for v in row]) for row in codes])
            where = "CPython"
        print(f"runtime      : device runtime under {where}")
        _print_batch(args.data, ys, preds, units)
        return 0
    if args.input_raw is not None:
        if args.codes:
            raise ValueError("--codes marks --input as codes; --input-raw takes raw sensor integers: use one of them")
        raws = _raw_ints(args.input_raw)
        _check_raw(raws, units, path.name, n_in)
        codes = [int(v) for v in mod.units.quantize_raw(raws)]  # the device's own step (what run_raw runs)
    elif args.codes:
        codes = _ints(args.input)
    else:
        x = np.array(_floats(args.input), np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"--input must be finite numbers, got {args.input!r}")
        codes = _quantize_floats(x, mod.INPUT_SCALE_BITS, mod.INPUT_ZERO_POINT, mod.model.qmin,
                                 getattr(mod, "INPUT_QUANTIZE", "aten"))
    if len(codes) != n_in:
        raise ValueError(f"{path.name} takes {n_in} input values, got {len(codes)}")
    if args.micropython or args.circuitpython:
        from .hosts.mpmodule import run_batch

        host = "circuitpython" if args.circuitpython else "wasm"
        ys, preds, _ = run_batch(path.read_text(), path.stem, np.array([codes]), host=host)
        y, pred = ys[0].tolist(), int(preds[0])
        where = "CircuitPython (its unix port, built like a board)" if args.circuitpython else "MicroPython (wasm)"
    elif raws is not None:
        y, where = list(mod.run_raw(raws)), "CPython"
        pred = mod.predict(codes)
    else:
        y, pred, where = list(mod.run(codes)), mod.predict(codes), "CPython"
    out_scale = codegen.bits_f32(mod.OUTPUT_SCALE_BITS)
    values = engines.dequantize(np.array(y), out_scale, mod.OUTPUT_ZERO_POINT)
    fixed = list(mod.dequantize(y)) if units is not None and units["out"] is not None else None
    print(f"runtime      : device runtime under {where}")
    print(f"platform     : {getattr(mod.model, 'platform', None) or 'not recorded'} (whose torch bytes the module "
          "reproduces)")
    _print_result(raws, codes, y, values, fixed, pred, units, out_scale)
    return 0


def module_file_check(path: Path) -> None:
    """`path` must be a module uquant generated: say what it is otherwise."""
    from .files import text_kind

    if path.is_dir():
        raise ValueError(f"{path}: is a directory; pass a module uquant generated, e.g. build/model_q.py")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    kind = text_kind(path.read_bytes())
    if kind is None:
        raise ValueError(f"{path}: is a binary file (a torch model?), not a module uquant generated: convert it "
                         f"first, e.g. `uquant convert {path} -o build/{path.stem}_q.py`")
    if kind == "text":
        raise ValueError(f"{path}: is not a module uquant generated (no `from uquant_rt import Model`); make one "
                         "with `uquant convert`")


def _quantize_floats(x, scale_bits: int, zero_point: int, qmin: int, formula: str) -> list[int]:
    """Float inputs -> the codes torch gives them, with the module's scale (float32 bits) and quantize formula."""
    from .board import quantize_floats

    return quantize_floats(x, scale_bits, zero_point, qmin, formula)


def cmd_deploy(args) -> int:
    from .board import deploy

    module = Path(args.module)
    deploy(module, args.board, port=args.port, drive=args.drive, force=args.force, log=print)
    print(f"done: at the board's REPL, `import {module.stem}; {module.stem}.predict(codes)`")
    return 0


def cmd_predict(args) -> int:
    from .board import connect

    raws = None
    if args.input_raw is not None:
        if args.codes:
            raise ValueError("--codes marks --input as codes; --input-raw takes raw sensor integers: use one of them")
        raws = _raw_ints(args.input_raw)
    with connect(args.port) as b:
        if args.data:
            got = b.infer_batch(args.data, are_codes=args.codes, module=args.module)
            print(f"board        : {got.port} ({got.tier} kernels)")
            _print_batch(args.data, got.outputs, got.classes, got.units)
            return 0
        if raws is not None:
            p = b.infer(raw=raws, module=args.module)
        elif args.codes:
            p = b.infer(codes=_ints(args.input), module=args.module)
        else:
            x = np.array(_floats(args.input), np.float32)
            if not np.all(np.isfinite(x)):
                raise ValueError(f"--input must be finite numbers, got {args.input!r}")
            p = b.infer(x, module=args.module)
    print(f"board        : {p.port} ({p.tier} kernels)")
    print(f"platform     : {p.platform or 'not recorded (a module from before uquant recorded it)'} "
          "(whose torch bytes the module reproduces)")
    _print_result(p.raws, p.inputs, p.outputs, p.values, p.fixed, p.cls, p.units, p.out_scale)
    return 0


def cmd_verify(args) -> int:
    from .board import check_verifiable, connect

    check_verifiable(args.model)
    with connect(args.port) as b:
        v = b.verify(args.model, args.data, module=args.module, samples=args.samples, batch=args.batch,
                     seed=args.seed, full_range=args.full_range, engine=args.engine, relu=args.relu,
                     allow_pickle=args.allow_pickle, input_shape=args.input_shape)
    print(v.text())
    return 0 if v.ok else 1


def cmd_freeze(args) -> int:
    from . import boards
    from .deploy import write_manifest

    module = Path(args.module)
    if not module.is_file():
        raise ValueError(f"{module}: no such file (make one with `uquant convert`)")
    board = boards.get(args.board)
    path = write_manifest(module, board, Path(args.output))
    if board.build_board:
        print(f"wrote {path} and the files it freezes; in MicroPython's ports/{board.port} directory run:\n"
              f"  make BOARD={board.build_board} FROZEN_MANIFEST={path.resolve()}")
    else:
        print(f"wrote {path} and the files it freezes; profile {board.key} names no firmware board: in your "
              f"port's directory run\n  make BOARD=<board> FROZEN_MANIFEST={path.resolve()}")
    return 0


def add_platform_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--platform", default="here", help="whose torch bytes to reproduce where they depend on the CPU: "
                   "'here' (this machine's torch, the default; `uquant info` shows it), x86-vnni, x86-avx512, "
                   "x86-avx2 or arm")


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
    c.add_argument("--input-unit", help="raw integer inputs: the real value of one raw step, e.g. 0.000244; the "
                   "module gets run_raw(ints), exact against torch quantizing float32(raw) * float32(unit)")
    c.add_argument("--input-units", help='the same, spelled "raw*0.000244"')
    c.add_argument("--raw-range", help="raw values accepted by run_raw, LO,HI (default: -2**29,2**29)")
    c.add_argument("--output-unit", help="fixed-point outputs: dequantize(codes) returns ints in this unit, e.g. "
                   "0.001 for thousandths (rounded half away from zero)")
    c.add_argument("--labels", help="comma-separated class names: label(codes) / label_raw(raws) return a name")
    c.add_argument("--data", help="samples (.npy or .csv, one per row, floats) to measure on how many inputs the "
                   "model's bytes differ between platforms (default: random input codes)")
    c.add_argument("--board", help="lay the weights out for this board's kernels (profiles in boards/), so it holds "
                   "them once: on the pico, dense weights in uquant_thumb's order. The module still runs anywhere "
                   "(other kernels take a copy)")
    c.add_argument("--weights", nargs="?", const=True, metavar="FILE.bin", help="stream the dense and conv weights "
                   "from a file written next to the module (default name: the module's with .bin) instead of holding "
                   "them in RAM: for models bigger than the board's RAM, at a small cost per inference. With --board "
                   "this happens by itself when the board's RAM cannot hold the weights and streaming makes it fit")
    c.add_argument("--hold-weights", dest="weights", action="store_const", const=False, help="keep the weights in "
                   "the module even when --board's RAM cannot hold them (no automatic --weights)")
    c.add_argument("--weights-buffer", type=int, metavar="BYTES", help="with --weights: the buffer the board reads "
                   "weights into, a chunk of output channels at a time (default: 8192)")
    c.set_defaults(func=cmd_convert)

    i = sub.add_parser("info", help="layers, shapes, MACs, bytes of weights and activations of a model; without a "
                       "model, this machine's platform")
    i.add_argument("model", nargs="?", help="a model file, as for convert")
    i.add_argument("--board", help="check the model fits this board's RAM and flash (profiles in boards/); exit 1 if not")
    i.add_argument("--measure", action="store_true", help="with --board: also import the model on the 32-bit "
                   "MicroPython (WebAssembly port) and report the heap it really holds (a few seconds)")
    i.set_defaults(func=cmd_info)
    for q in (c, i):
        if q is i:
            q.add_argument("--engine", choices=ENGINES, default="x86", help="quantized engine (default: %(default)s)")
            q.add_argument("--relu", help="state_dict only: layers with a fused ReLU (see convert)")
            q.add_argument("--allow-pickle", action="store_true", help="allow loading a pickled model (see convert)")
        q.add_argument("--input-shape", help="one sample's input shape, e.g. 1,8,8, for models whose first layer is "
                       "a convolution (a file does not record it)")
        add_platform_option(q)

    r = sub.add_parser("run", help="run a generated module on one input, with the device runtime")
    r.add_argument("module", help="generated module, e.g. build/model_q.py")
    ri = r.add_mutually_exclusive_group(required=True)
    ri.add_argument("--input", help="one sample: comma-separated float inputs (quantized as torch does), or codes "
                    "with --codes; @FILE reads them from a file (.npy, or numbers separated by commas/spaces/lines)")
    ri.add_argument("--input-raw", metavar="INTS", help="comma-separated raw sensor integers, e.g. 1200,-35,4095, "
                    "through the module's run_raw (converted with --input-unit); @FILE as for --input")
    ri.add_argument("--data", help="many samples: a .npy or .csv file, one float sample per row (codes with --codes)")
    r.add_argument("--codes", "--raw", dest="codes", action="store_true",
                   help="--input / --data hold already-quantized codes (--raw is its old name; raw sensor integers "
                   "go in --input-raw)")
    rh = r.add_mutually_exclusive_group()
    rh.add_argument("--micropython", action="store_true",
                    help="run inside a real MicroPython interpreter (the WebAssembly port in node_modules, which "
                    "`make demo` and `make test` install)")
    rh.add_argument("--circuitpython", action="store_true",
                    help="run inside CircuitPython's own interpreter (its unix port, in shared/tools/circuitpython or "
                    "$UQUANT_CIRCUITPYTHON)")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("deploy", help="copy the runtime, the board's kernels and a model to a board (atomically)")
    d.add_argument("module", help="generated module, e.g. build/model_q.py")
    d.add_argument("--board", required=True, help="board profile (boards/*.toml), e.g. pico, esp32")
    d.add_argument("--port", default="auto", help="serial port, or 'auto' to find the board by its USB id")
    d.add_argument("--drive", help="CircuitPython: the mounted CIRCUITPY drive's folder (default: find it)")
    d.add_argument("--force", action="store_true", help="deploy even if the board's profile says it does not fit")
    d.set_defaults(func=cmd_deploy)

    pr = sub.add_parser("predict", help="one inference on the board, over the serial REPL")
    pr.add_argument("--port", default="auto", help="serial port, or 'auto'")
    pr.add_argument("--module", help="model module on the board (default: the one `uquant deploy` put there last)")
    pi = pr.add_mutually_exclusive_group(required=True)
    pi.add_argument("--input", help="one sample: comma-separated float inputs, or codes with --codes; @FILE reads "
                    "them from a file")
    pi.add_argument("--input-raw", metavar="INTS", help="comma-separated raw sensor integers, e.g. 1200,-35,4095, "
                    "through the board module's run_raw (converted with --input-unit); @FILE as for --input")
    pi.add_argument("--data", help="many samples: a .npy or .csv file, one float sample per row (codes with --codes)")
    pr.add_argument("--codes", "--raw", dest="codes", action="store_true",
                    help="--input / --data hold already-quantized codes (--raw is its old name; raw sensor integers "
                    "go in --input-raw)")
    pr.set_defaults(func=cmd_predict)

    v = sub.add_parser("verify", help="run many inputs on the board and compare every output byte with torch")
    v.add_argument("model", help="the torch model file the module was converted from")
    v.add_argument("--port", default="auto", help="serial port, or 'auto'")
    v.add_argument("--module", help="model module on the board (default: the one `uquant deploy` put there last)")
    v.add_argument("--samples", type=int, default=200, help="inputs to try (default: %(default)s)")
    v.add_argument("--batch", type=int, default=50, help="inputs per raw-REPL exchange (default: %(default)s)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--engine", choices=ENGINES, default="x86", help="quantized engine (default: %(default)s)")
    v.add_argument("--relu", help="state_dict only: layers with a fused ReLU (see convert)")
    v.add_argument("--allow-pickle", action="store_true", help="allow loading a pickled model (see convert)")
    v.add_argument("--input-shape", help="one sample's input shape (see info)")
    v.add_argument("--data", help="samples to send (.npy or .csv, one float sample per row), instead of random codes")
    v.add_argument("--full-range", action="store_true", help="random codes over the input's whole code range (default "
                   "for x86/fbgemm: codes up to qmin + 127, what their default qconfig calibrates to)")
    v.set_defaults(func=cmd_verify)

    f = sub.add_parser("freeze", help="write a manifest.py to freeze the runtime and a model into firmware")
    f.add_argument("module", help="generated module, e.g. build/model_q.py")
    f.add_argument("--board", required=True, help="board profile: which kernel files to freeze")
    f.add_argument("-o", "--output", default="build/frozen", help="folder for manifest.py (default: %(default)s)")
    f.set_defaults(func=cmd_freeze)
    add_explain_parser(sub)
    add_quantize_parser(sub)
    from .sim import add_sim_parser; add_sim_parser(sub)  # noqa: E702 - one line: `uquant sim`
    from .evaluate import add_evaluate_parser; add_evaluate_parser(sub)  # noqa: E702 - torch loads when it runs
    return p


def cmd_explain(args) -> int:
    from . import explain  # imports torch: only when explaining

    return explain.cmd_explain(args)


def add_explain_parser(sub) -> None:
    """`uquant explain`: the same model inputs and options as `uquant info`, plus what to explain."""
    from .engines import ENGINES

    e = sub.add_parser("explain", help="which scale and zero point apply where: each layer in the model's own "
                       "numbers, torch's formula and the device's integers; with --input, a traced sample")
    e.add_argument("model", help="a model file, as for convert")
    e.add_argument("--input", help="one sample's float inputs, comma-separated (e.g. 1,0.5): trace it through torch "
                   "and the device, and work out the common mistakes for it")
    e.add_argument("--layer", help="explain only this layer (a step name, as `uquant info` lists them)")
    e.add_argument("--format", choices=("text", "markdown", "html"), default="text",
                   help="text (default), markdown, or one self-contained HTML page with pictures")
    e.add_argument("--got", help="with --input: integer codes you computed by hand for one layer; uquant says "
                   "which classic mistake gives them")
    e.add_argument("-o", "--output", help="write the report to this file instead of printing it")
    e.add_argument("--engine", choices=ENGINES, default="x86", help="quantized engine (default: %(default)s)")
    e.add_argument("--relu", help="state_dict only: layers with a fused ReLU (see convert)")
    e.add_argument("--allow-pickle", action="store_true", help="allow loading a pickled model (see convert)")
    e.add_argument("--input-shape", help="one sample's input shape (see info)")
    add_platform_option(e)
    e.set_defaults(func=cmd_explain)


def cmd_quantize(args) -> int:
    from .quantize import cmd_quantize as run  # imports torch: only when quantizing

    return run(args)


def add_quantize_parser(sub) -> None:
    """`uquant quantize`: torch's own post-training quantization of a float model, driven for the user."""
    from .engines import ENGINES

    q = sub.add_parser("quantize", help="quantize a float model with torch's own post-training quantization (FX, "
                       "or PT2E), calibrated on samples; the result is ready for `uquant convert`")
    q.add_argument("model", help="float model: a traced TorchScript file, a state_dict file with --class, or with "
                   "--allow-pickle a whole pickled model (torch.save(model))")
    q.add_argument("--data", required=True, help="calibration samples: .npy or .csv, one float sample per row")
    q.add_argument("-o", "--output", help="quantized model to write: TorchScript (default: build/model_q.pt; with "
                   "--pt2e a torch.export program, build/model_q.pt2)")
    q.add_argument("--engine", choices=ENGINES, default="x86", help="quantized engine to quantize for (default: "
                   "%(default)s); the qconfig is its default, made portable across CPUs (the output says how)")
    q.add_argument("--labels", help="class indices of the --data samples (.npy or .csv of ints): print the float and "
                   "quantized top-1 accuracy")
    q.add_argument("--input-shape", help="one sample's input shape, e.g. 1,8,8, for models whose first layer is a "
                   "convolution (--data rows are reshaped to it)")
    q.add_argument("--class", dest="model_class", metavar="FILE.py:NAME", help="the model's class, for a state_dict "
                   "file (built as NAME() from FILE.py)")
    q.add_argument("--allow-pickle", action="store_true", help="allow loading a pickled model (see convert)")
    q.add_argument("--pt2e", action="store_true", help="use torchao's PT2E flow (prepare_pt2e/convert_pt2e, "
                   "XNNPACKQuantizer) instead of FX graph mode")
    q.add_argument("--convert", nargs="?", const=True, metavar="MODULE.py", help="also convert the quantized model to "
                   "a MicroPython module (default: the output's name with .py), as `uquant convert` does")
    q.add_argument("--name", help="with --convert: model name inside the module")
    q.add_argument("--board", help="with --convert: lay the weights out for this board's kernels (see convert)")
    q.add_argument("--input-unit", help="with --convert: raw integer inputs' unit (see convert)")
    q.add_argument("--output-unit", help="with --convert: fixed-point outputs' unit (see convert)")
    q.add_argument("--raw-range", help="with --convert: raw values accepted by run_raw, LO,HI (see convert)")
    q.add_argument("--class-names", help="with --convert: comma-separated class names (convert's --labels)")
    add_platform_option(q)
    q.set_defaults(func=cmd_quantize)


def _attach_negative_values(argv: list[str]) -> list[str]:
    """`--input-raw -35,1200` -> `--input-raw=-35,1200` (also --input, --raw-range): argparse takes a value list
    starting with '-' for an option (it knows only single negative numbers), so it would need the '=' spelling."""
    import re

    out = []
    for a in argv:
        if out and out[-1] in ("--input", "--input-raw", "--raw-range") and re.fullmatch(r"-\.?\d[\d.,eE+\- ]*", a):
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


def main(argv=None) -> int:
    _quiet_torch()
    from .ir import ConversionError

    args = build_parser().parse_args(_attach_negative_values(list(sys.argv[1:] if argv is None else argv)))
    try:
        return args.func(args)
    except ConversionError as e:
        print(f"uquant: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:  # e.g. the device runtime refusing an input; LinkError
        print(f"uquant: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. an output path that is a directory, or not writable
        print(f"uquant: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
