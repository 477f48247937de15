"""The Python board API: deploy, predict, verify and run on a board (or `uquant sim`), with the CLI's checks.

    import uquant.board
    with uquant.board.connect("auto", board="sim") as b:   # the one board plugged in, or the running `uquant sim`
        b.deploy("build/model_q.py")                        # hash-checked copies; the board remembers the model
        b.predict([0.1, 0.5, ...])                          # -> class (float inputs quantized as torch does)
        b.run(codes=[3, 200, ...])                          # -> output codes
        b.infer([0.1, 0.5, ...])                            # -> Prediction: codes, outputs, class, label, ...
        b.verify("model.pt", "x.npy")                       # every output byte against torch -> Verification

`uquant deploy`, `predict` and `verify` are thin wrappers over this module (argument parsing and printing), so
the checks and error messages are the same: errors are ValueError (a wrong input or file) or LinkError, a
RuntimeError (the board cannot be reached or answers wrongly), with the text the CLI prints after `uquant: error:`.

Importing this module does not import torch; verify does (it runs torch's model), and so do float inputs of a
PT2E module (their quantize formula is torch's).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .link import Link, LinkError, find_port

__all__ = ["connect", "Board", "Prediction", "Batch", "Verification", "deploy", "LinkError"]


def connect(port: str | None = "auto", board=None, *, soft_reset: bool = True) -> Board:
    """Open the raw REPL of a board: `port` a serial device, or "auto" for the one board whose USB id is known (of
    profile `board` if given) or the one running `uquant sim`. `board`: a profile name (boards/*.toml, e.g.
    "pico", "sim") or uquant.boards.Board, needed to deploy. Use as a context manager, or call close()."""
    profile = _profile(board)
    device = find_port(profile) if port in (None, "auto") else str(port)
    return Board(Link(device, soft_reset=soft_reset), profile)


def _profile(board):
    if board is None or not isinstance(board, str):
        return board
    from . import boards

    return boards.get(board)


def check_module_file(module: Path) -> Path:
    module = Path(module)
    if not module.is_file():
        raise ValueError(f"{module}: no such file (make one with `uquant convert`)")
    return module


def check_fit(module: Path, board, force: bool = False) -> None:
    """Refuse, before copying, a module that does not fit the board's profile, with the numbers (not a
    MemoryError on the board); `force` skips the check."""
    if force:
        return
    from .info import fit_report, module_memory, weights_bytes

    text, fits = fit_report(module_memory(module), module.read_text(), module.stem, board, weights_bytes(module))
    if not fits:
        raise ValueError(f"{module} does not fit {board.key} (--force to try anyway):\n{text}")


_PT2E_VERIFY = ("{}: verify compares every byte with torch's quantized kernels; a PT2E program computes "
                "linear/conv/pooling in float32 and agrees only within one code there (README, 'PT2E (torchao) "
                "programs'), so verify does not take PT2E programs")


def check_verifiable(model) -> None:
    """Refuse, before any board is opened, a model file verify cannot compare byte for byte (a PT2E program)."""
    if isinstance(model, (str, Path)) and Path(model).suffix == ".pt2":
        raise ValueError(_PT2E_VERIFY.format(Path(model).name))


def deploy(module, board, *, port: str | None = "auto", drive=None, force: bool = False, log=None) -> dict:
    """Copy the runtime, the board's kernels and `module` to a board: over the raw REPL at `port`, or for a
    CircuitPython profile (or with `drive`) onto its mounted CIRCUITPY drive. Returns what deploy did."""
    board = _profile(board)
    module = check_module_file(module)
    check_fit(module, board, force)
    log = log or (lambda *a: None)
    if board.transport == "circuitpy" or drive:
        from .deploy import deploy_to_drive, find_drive

        drive = Path(drive) if drive else find_drive()
        log(f"deploying to the drive {drive}: files as source (.py)")
        copied = deploy_to_drive(drive, module, board, log=log)
        return {"copied": copied, "drive": str(drive), "module": module.stem}
    with connect(port, board) as b:
        return b.deploy(module, force=True, log=log)


# --- inputs -------------------------------------------------------------------------------------------------

def quantize_floats(x, scale_bits: int, zero_point: int, qmin: int, formula: str) -> list[int]:
    """Float inputs -> the codes torch gives them, with the module's scale (float32 bits) and quantize formula
    (torch is imported only for a PT2E module's formula)."""
    from . import codegen, engines

    if formula not in ("aten", "pt2e"):
        raise ValueError(f"the module's INPUT_QUANTIZE is {formula!r}; expected 'pt2e' (the file is damaged?)")
    x = np.asarray(x, np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"inputs must be finite numbers, got {x.ravel().tolist()[:8]}")
    scale = codegen.bits_f32(scale_bits)
    dtype = "qint8" if qmin < 0 else "quint8"
    if formula == "pt2e":
        from . import pt2e_ops
        from .ir import QParams

        return [int(v) for v in pt2e_ops.quantize(x, QParams(scale, zero_point, dtype, formula))]
    return [int(v) for v in engines.quantize(x, scale, zero_point, dtype)]


def check_raw(raws: list[int], units: dict | None, name: str, n_in: int) -> None:
    """Refuse, with one line, what run_raw would refuse (or cannot do), before running anything."""
    if units is None or units["raw"] is None:
        raise ValueError(f"{name} has no run_raw (converted without --input-unit): convert the model again with "
                         "--input-unit, e.g. --input-unit 0.000244, to give it raw sensor integers")
    if len(raws) != n_in:
        raise ValueError(f"{name} takes {n_in} input values, got {len(raws)}")
    lo, hi = units["raw"]
    bad = [r for r in raws if not lo <= r <= hi]
    if bad:
        raise ValueError(f"raw value {bad[0]} is outside {name}'s accepted raw range [{lo}, {hi}] "
                         "(the range set by convert --raw-range)")


def data_codes(data, n_in: int, are_codes: bool, quantize) -> tuple[np.ndarray, str]:
    """(samples, n_in) input codes and what they are, from a .npy/.csv file (`uquant ... --data`) or an array of
    samples: floats (quantized by `quantize`, one sample's floats -> codes) or, with are_codes, codes."""
    from .data import read_samples

    if isinstance(data, (str, Path)):
        x, what = read_samples(data, n_in), f"from {Path(data).name}"
    else:
        x = np.asarray(data, np.float32 if not are_codes else np.float64)
        if x.size % n_in or x.size == 0:
            raise ValueError(f"{x.size} values do not make samples of {n_in} values each (shape {x.shape})")
        x, what = x.reshape(-1, n_in), "given"
    if are_codes:
        if not np.array_equal(x, np.round(x)):
            src = f"{data}: --codes takes" if isinstance(data, (str, Path)) else "codes must be"
            raise ValueError(f"{src} integer codes, the {'file holds' if isinstance(data, (str, Path)) else 'data has'}"
                             " fractions")
        return x.astype(np.int64), what
    return np.array([quantize(row) for row in x], np.int64), what


def _is_batch(v, n_in: int) -> bool:
    """A file, or an array of several samples (one sample's values in any shape, e.g. 1x8x8, is one sample)."""
    return isinstance(v, (str, Path)) or (np.ndim(v) > 1 and np.size(v) != n_in)


# --- results ------------------------------------------------------------------------------------------------

@dataclass
class Prediction:
    """One inference on the board."""
    port: str
    module: str
    tier: str
    platform: str | None  # whose torch bytes the module reproduces (None: a module from before it was recorded)
    inputs: list[int]  # the input codes the board ran
    outputs: list[int]  # its output codes
    cls: int  # the predicted class (argmax, as the module's predict)
    values: list[float]  # the output codes dequantized (float32 scale and zero point)
    fixed: list[int] | None = None  # fixed-point outputs (a module converted with --output-unit)
    label: str | None = None  # the class's name (--labels)
    raws: list[int] | None = None  # raw sensor integers, when run through run_raw
    units: dict | None = field(default=None, repr=False)
    out_scale: float = field(default=1.0, repr=False)


@dataclass
class Batch:
    """Many inferences on the board: one row per sample."""
    port: str
    module: str
    tier: str
    inputs: np.ndarray  # (samples, n_in) input codes
    outputs: np.ndarray  # (samples, n_out) output codes
    classes: np.ndarray  # (samples,) predicted classes
    source: str = "given"  # where the samples came from
    units: dict | None = field(default=None, repr=False)

    @property
    def labels(self) -> list[str] | None:
        names = self.units["labels"] if self.units is not None else None
        return [names[int(c)] for c in self.classes] if names else None


@dataclass
class Verification:
    """`verify`: the board's output bytes against torch's (or uquant's emulation of the module's platform)."""
    port: str
    module: str
    tier: str
    platform: str
    against: str
    source: str  # what the inputs were
    n_bytes: int  # output bytes compared
    mismatches: int
    first: int | None = None  # the first input whose outputs differ
    diagnosis: str | None = None  # where and why they differ (the first step, or likely causes)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def line(self) -> str:
        return (f"verify {self.module} on {self.port} ({self.tier} kernels, platform {self.platform}) against "
                f"{self.against}: {self.source}, {self.n_bytes} output bytes, {self.mismatches} mismatches")

    def text(self) -> str:
        return self.line() + (f"\nfirst difference: {self.diagnosis}" if self.diagnosis else "")


# --- the board ----------------------------------------------------------------------------------------------

class Board:
    """An open board (see connect): deploy, infer/predict/run, verify, exec; close() or use as a context manager."""

    def __init__(self, link: Link, board=None):
        self.link = link
        self.profile = _profile(board)
        self._info: dict[str, dict] = {}

    @property
    def port(self) -> str:
        return self.link.port

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.link.close()

    def __repr__(self) -> str:
        return f"<uquant board on {self.port}{' (' + self.profile.key + ')' if self.profile else ''}>"

    # what is on the board

    def exec(self, code: str) -> str:
        """Run Python code on the board; what it printed (lines end in \\n, not the REPL's \\r\\n). An exception
        there raises LinkError with its traceback."""
        return self.link.exec(code).replace("\r\n", "\n")

    def eval(self, expr: str):
        """A Python literal the board computes (its repr, parsed here)."""
        return self.link.eval(expr)

    def deployed(self) -> str:
        """The module `deploy` put on the board last (its manifest, uquant.json); LinkError if there is none."""
        from .deploy import deployed_module

        return deployed_module(self.link)

    def module_name(self, module: str | None = None) -> str:
        return module or self.deployed()

    def model_info(self, module: str | None = None) -> dict:
        """The board's module: n_in, n_out, qmin, qmax, tier, platform, input/output scale bits and zero points,
        and "units" (its integer units, or None)."""
        from .deploy import board_model, board_units

        module = self.module_name(module)
        if module not in self._info:
            info = board_model(self.link, module)
            info["units"] = board_units(self.link, module)
            info["module"] = module
            self._info[module] = info
        return self._info[module]

    def deploy(self, module, *, force: bool = False, log=None) -> dict:
        """Copy the runtime, the profile's kernel files and `module` (a generated .py) to the board, each one
        atomically and hash-checked (unchanged files are skipped), import it once there, and record it as the
        board's model (predict and verify default to it). Needs a board profile (connect(board=...))."""
        from .deploy import deploy as deploy_over_link

        if self.profile is None:
            raise ValueError("deploy needs the board's profile: connect(port, board='pico') (boards/*.toml), or "
                             "`uquant deploy --board NAME`")
        if self.profile.transport == "circuitpy":
            raise ValueError(f"profile {self.profile.key} is CircuitPython, whose drive the board cannot write while "
                             "USB has it: use uquant.board.deploy(module, board, drive=...) or `uquant deploy`")
        module = check_module_file(module)
        check_fit(module, self.profile, force)
        self._info.clear()
        return deploy_over_link(self.link, module, self.profile, log=log or (lambda *a: None))

    # inference

    def _quantizer(self, info: dict):
        return lambda x: quantize_floats(x, info["in_bits"], info["in_zp"], info["qmin"],
                                         info.get("in_formula", "aten"))

    def infer(self, x=None, *, codes=None, raw=None, module: str | None = None) -> Prediction:
        """One sample on the board: float inputs `x` (quantized as torch does), or input `codes`, or `raw` sensor
        integers (through the module's run_raw, converted with --input-unit). Returns everything it computed."""
        from . import codegen, engines
        from .deploy import board_dequantize, board_run_raw, run_batch

        if sum(v is not None for v in (x, codes, raw)) != 1:
            raise ValueError("give one of x (float inputs), codes or raw")
        info = self.model_info(module)
        name, units = info["module"], info["units"]
        raws = None
        if raw is not None:
            raws = [int(v) for v in np.asarray(raw).ravel()]
            check_raw(raws, units, name, info["n_in"])
            codes, y, pred = board_run_raw(self.link, name, raws)
        else:
            if codes is not None:
                c = np.asarray(codes)
                if c.size and not np.array_equal(c, np.round(c)):
                    raise ValueError(f"codes must be integers, got {c.ravel().tolist()[:8]}")
                codes = [int(v) for v in c.ravel()]
            else:
                codes = self._quantizer(info)(np.asarray(x, np.float32).ravel())
            if len(codes) != info["n_in"]:
                raise ValueError(f"{name} takes {info['n_in']} inputs, got {len(codes)}")
            lo, hi = info["qmin"], info["qmax"]
            bad = [c for c in codes if not lo <= c <= hi]
            if bad:
                raise ValueError(f"input code {bad[0]} is outside {name}'s input codes [{lo}, {hi}]")
            ys, preds = run_batch(self.link, name, np.array([codes]), info["qmin"])
            y, pred = ys[0], int(preds[0])
            if info["qmin"] < 0:  # qint8 results come back as raw bytes
                y = np.where(y > 127, y - 256, y)
            y = y.tolist()
        fixed = board_dequantize(self.link, name, y) if units is not None and units["out"] is not None else None
        out_scale = codegen.bits_f32(info["out_bits"])
        values = [float(v) for v in engines.dequantize(np.array(y), out_scale, info["out_zp"])]
        label = units["labels"][int(pred)] if units is not None and units["labels"] else None
        return Prediction(self.port, name, info["tier"], info.get("platform"), [int(v) for v in codes],
                          [int(v) for v in y], int(pred), values, fixed, label, raws, units, out_scale)

    def infer_batch(self, data, *, are_codes: bool = False, module: str | None = None, batch: int = 50) -> Batch:
        """Many samples on the board: `data` a .npy/.csv file (one sample per row) or an array (samples, ...), of
        floats (quantized as torch does) or, with are_codes, of input codes; `batch` samples per exchange."""
        from .deploy import run_batch

        info = self.model_info(module)
        codes, what = data_codes(data, info["n_in"], are_codes, self._quantizer(info))
        lo, hi = info["qmin"], info["qmax"]
        if codes.size and (codes.min() < lo or codes.max() > hi):
            bad = codes[(codes < lo) | (codes > hi)][0]
            raise ValueError(f"input code {int(bad)} is outside {info['module']}'s input codes [{lo}, {hi}]")
        ys, preds = [], []
        for i in range(0, len(codes), batch):
            y, p = run_batch(self.link, info["module"], codes[i:i + batch], info["qmin"])
            ys.append(y)
            preds.append(p)
        ys = np.concatenate(ys)
        if info["qmin"] < 0:
            ys = np.where(ys > 127, ys - 256, ys)
        return Batch(self.port, info["module"], info["tier"], codes, ys, np.concatenate(preds), what, info["units"])

    def predict(self, x=None, *, codes=None, raw=None, module: str | None = None):
        """The class for one sample (an int), or for many (a file, or an array of several samples: an array of
        classes). x: float inputs, codes: input codes, raw: raw sensor integers (one sample)."""
        if raw is None and _is_batch(x if x is not None else codes, self.model_info(module)["n_in"]):
            return self.infer_batch(x if x is not None else codes, are_codes=x is None, module=module).classes
        return self.infer(x, codes=codes, raw=raw, module=module).cls

    def run(self, x=None, *, codes=None, raw=None, module: str | None = None):
        """The output codes for one sample (a list), or for many (a file, or an array of several samples:
        (samples, n_out))."""
        if raw is None and _is_batch(x if x is not None else codes, self.model_info(module)["n_in"]):
            return self.infer_batch(x if x is not None else codes, are_codes=x is None, module=module).outputs
        return self.infer(x, codes=codes, raw=raw, module=module).outputs

    # verification

    def verify(self, model, data=None, *, module: str | None = None, samples: int = 200, batch: int = 50,
               seed: int = 0, full_range: bool = False, engine: str = "x86", relu=None, allow_pickle: bool = False,
               input_shape=None, platform: str | None = None) -> Verification:
        """Run many inputs on the board and compare every output byte with torch running `model` (the quantized
        model file the module was converted from, or the quantized nn.Module): `data` samples (a .npy/.csv file
        or an array of floats), else `samples` random input codes. The result says where the first difference
        is and its likely cause; `.ok` is True when every byte agrees. Imports torch."""
        from . import platforms
        from .api import convert
        from .info import parse_shape
        from .deploy import board_layer_codes, run_batch
        from .oracle import load_torch_model, torch_codes_fn

        is_file = isinstance(model, (str, Path))
        label = Path(model).name if is_file else type(model).__name__
        shape = parse_shape(input_shape) if isinstance(input_shape, str) else input_shape

        def conversion(platform):
            return convert(Path(model) if is_file else model, engine=engine, platform=platform, relu=relu,
                           allow_pickle=allow_pickle, input_shape=shape)

        check_verifiable(model)
        converted = conversion(platform or "here")
        if converted.plan.input.formula == "pt2e":
            raise ValueError(_PT2E_VERIFY.format(label))
        info = self.model_info(module)
        name = info["module"]
        # the board's module says which platform's torch it reproduces: compare with the model converted for it
        if platform is None and info.get("platform") and info["platform"] != converted.plan.platform.name:
            converted = conversion(info["platform"])
        plan = converted.plan
        if (info["n_in"], info["n_out"]) != (plan.n_in, plan.n_out):
            raise ValueError(f"the board's {name} takes {info['n_in']} -> {info['n_out']} values, "
                             f"{model if is_file else label} is {plan.n_in} -> {plan.n_out}: deploy it first")
        here = platforms.here()
        if plan.platform == here or not plan.platform_dependent:
            tm = load_torch_model(Path(model), relu=relu, allow_pickle=allow_pickle) if is_file else model.eval()
            want_fn = torch_codes_fn(tm, plan)
            against = f"torch ({plan.engine}) on this machine (platform {here.name})"
        else:  # torch here computes other bytes: compare with uquant's proven emulation of the module's platform
            want_fn = converted.run_codes
            against = (f"uquant's emulation of platform {plan.platform.name}, which the board's module was made for "
                       f"(this machine's torch is {here.name}, and this model's bytes differ between the two)")
        codes, source = verify_inputs(plan, data, samples, seed, full_range)
        mismatches, first = 0, None
        for i in range(0, len(codes), batch):
            chunk = codes[i:i + batch]
            got, _ = run_batch(self.link, name, chunk, plan.input.qmin)
            bad = np.argwhere(got != want_fn(chunk) % 256)
            mismatches += len(bad)
            if len(bad) and first is None:
                first = i + int(bad[0][0])
        result = Verification(self.port, name, info["tier"], plan.platform.name, against, source,
                              codes.shape[0] * plan.n_out, mismatches, first)
        if first is None:
            return result
        from .codegen import describe_step

        board = board_layer_codes(self.link, name, codes[first], plan.input.qmin)
        host = converted.layer_codes(codes[first:first + 1])
        for step, b, h in zip(plan.steps, board, host):
            h = bytes(((h[0] - step.out.qmin) % 256).astype(np.uint8).tolist())
            if b[:len(h)] != h:
                result.diagnosis = (
                    f"input #{first}, step {step.name} ({describe_step(step)}): the board computes it differently "
                    f"from this conversion of {label} (engine {plan.engine}, platform {plan.platform.name}): the "
                    f"board holds another model or another conversion (deploy it again), or its {info['tier']} "
                    "kernels differ (please report it)")
                return result
        result.diagnosis = (
            f"input #{first}: the board equals uquant's host runtime at every step, and differs from "
            f"{against.split(' (')[0]}: likely causes: the model was quantized for another engine than {plan.engine} "
            "(--engine)" + (", or a ReLU the state_dict does not record (--relu)" if relu is not None else "")
            + "; otherwise a uquant bug: please report it with the model")
        return result


def verify_inputs(plan, data=None, samples: int = 200, seed: int = 0,
                  full_range: bool = False) -> tuple[np.ndarray, str]:
    """The input codes verify sends: `data` samples (a file or an array of floats), else random codes in the range
    a default calibration of the model's engine fills (x86/fbgemm's default qconfig uses reduce_range: codes up to
    qmin + 127), or with full_range every code; the two ends first. Returns the codes and what they are."""
    if data is not None:
        from .api import quantize_input

        if isinstance(data, (str, Path)):
            from .data import load_samples

            codes, what = load_samples(data, plan)
        else:
            x = np.asarray(data, np.float32)
            if x.size % plan.n_in or x.size == 0:
                raise ValueError(f"{x.size} values do not make samples of {plan.n_in} values each (shape {x.shape})")
            codes, what = quantize_input(x.reshape(-1, plan.n_in), plan.input), "given samples"
        return codes[:samples], f"{min(len(codes), samples)} {what}"
    q = plan.input
    hi = q.qmax if full_range or plan.engine == "qnnpack" else q.qmin + 127
    codes = np.random.default_rng(seed).integers(q.qmin, hi + 1, (samples, plan.n_in))
    codes[:2] = [[q.qmin], [hi]]
    what = (f"random input codes {q.qmin}..{hi}" + ("" if hi == q.qmax else
            f" (the calibrated range of {plan.engine}'s default qconfig, reduce_range; --full-range for every code)"))
    return codes, f"{len(codes)} {what}"
