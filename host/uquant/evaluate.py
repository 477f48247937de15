"""`uquant evaluate`: accuracy and agreement of the float model, torch's quantized model and the device module.

The same samples (--data, floats) go through every source the user gives: the float model (--float), torch's
quantized model (MODEL, a file `uquant convert` reads), the device module on the host (the generated module, or
the conversion of MODEL), and optionally the module on a board (--port). With labels: each source's accuracy and
a confusion matrix of the device's predictions; always: on how many samples the device's output codes (and
classes) are those of torch. `--html` writes one self-contained page (inline SVG, the look of `uquant explain`).

This module imports torch only when it runs (`uquant --help` registers the verb without it). The package
attribute `uquant.evaluate` is this module, and it is callable: `uquant.evaluate(MODEL, data, labels)` is
`uquant.evaluate.evaluate(...)`.
"""
from __future__ import annotations

import html
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROGRESS_MIN = 50  # more samples than this: a progress bar (on a terminal, without --quiet)
MAX_SHOWN = 60  # samples listed (and drawn) in the HTML report's sample sections


@dataclass
class Source:
    """One way of computing the predictions: its name, predicted class per sample, output codes (None: float)."""
    name: str
    preds: np.ndarray
    codes: np.ndarray | None = None
    against: str | None = None  # the source whose codes and classes this one is compared with


@dataclass
class Evaluation:
    """What `evaluate` measured; text() and html() are the two reports."""
    n: int
    what: str  # where the samples came from
    labels: np.ndarray | None
    n_classes: int
    sources: list[Source]
    x: np.ndarray  # the float samples (for the report's pictures)
    image_shape: tuple[int, int] | None = None
    title: str = "uquant evaluate"
    notes: list[str] = field(default_factory=list)

    def source(self, name: str) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def device(self) -> Source:
        """The device source the confusion matrix is about: the board's when there is one, else the host's."""
        return [s for s in self.sources if s.name.startswith("device")][-1]

    def correct(self, name: str) -> int | None:
        return None if self.labels is None else int((self.source(name).preds == self.labels).sum())

    def accuracy(self, name: str) -> float | None:
        """Fraction of samples whose predicted class is the label (None without labels)."""
        c = self.correct(name)
        return None if c is None else c / self.n

    def agreement(self, name: str) -> tuple[str, int | None, int] | None:
        """(compared with, samples with identical output codes or None, samples with the same class)."""
        s = self.source(name)
        if s.against is None:
            return None
        o = self.source(s.against)
        same_codes = None
        if s.codes is not None and o.codes is not None:
            same_codes = int((s.codes == o.codes).all(axis=1).sum())
        return s.against, same_codes, int((s.preds == o.preds).sum())

    def confusion(self, name: str | None = None) -> np.ndarray | None:
        """Counts [true class, predicted class] of a source (default: the device), None without labels."""
        if self.labels is None:
            return None
        m = np.zeros((self.n_classes, self.n_classes), np.int64)
        np.add.at(m, (self.labels, (self.source(name) if name else self.device).preds), 1)
        return m

    def codes_differ(self) -> np.ndarray:
        """Per sample: does a source's output codes differ from those of the source it is compared with?"""
        out = np.zeros(self.n, bool)
        for s in self.sources:
            o = self.source(s.against) if s.against else None
            if o is not None and s.codes is not None and o.codes is not None:
                out |= (s.codes != o.codes).any(axis=1)
        return out

    def disagreements(self) -> np.ndarray:
        """Indices of the samples on which the sources do not all predict the same class, or a source's output
        codes differ from those of the source it is compared with."""
        preds = np.stack([s.preds for s in self.sources])
        return np.flatnonzero((preds != preds[:1]).any(axis=0) | self.codes_differ())

    def line(self, s: Source) -> str:
        parts = []
        if self.labels is not None:
            parts.append(f"{100 * self.accuracy(s.name):.1f} % ({self.correct(s.name)}/{self.n})")
        ag = self.agreement(s.name)
        if ag is not None:
            against, same_codes, same_class = ag
            what = "torch" if against == "torch quantized" else against
            if same_codes is not None:
                parts.append(f"codes identical to {what} on {same_codes}/{self.n} samples")
            parts.append(f"same class as {what} on {same_class}/{self.n}")
        return ", ".join(parts)

    def text(self) -> str:
        w = max(len(s.name) for s in self.sources)
        out = [f"{self.title}: {self.n} {self.what}" + ("" if self.labels is not None else
                                                         " (no labels: agreement only)")]
        out += [f"{s.name:<{w}}  {self.line(s)}" for s in self.sources]
        m = self.confusion()
        if m is not None:
            out += ["", f"confusion matrix of {self.device.name} (rows: true class, columns: predicted class):",
                    confusion_text(m)]
        d = self.disagreements()
        if len(self.sources) > 1:
            out.append("")
            out.append(f"the sources disagree (class or output codes) on {len(d)} of {self.n} samples" + (
                f": #{', #'.join(map(str, d[:20]))}" + (" ..." if len(d) > 20 else "") if len(d) else ""))
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def html(self) -> str:
        return render_html(self)


def confusion_text(m: np.ndarray) -> str:
    w = max(3, len(str(int(m.max()))) + 1, len(str(len(m) - 1)) + 1)
    rows = ["true\\pred" + "".join(f"{j:>{w}}" for j in range(len(m)))]
    rows += [f"{i:>9}" + "".join(f"{int(v):>{w}}" for v in r) for i, r in enumerate(m)]
    return "\n".join(rows)


# --- loading --------------------------------------------------------------------------------------------------

def read_labels(labels, n: int, data_name: str) -> np.ndarray:
    """Class indices (ints >= 0), one per sample: an array, or a .npy / .csv file (one label per row)."""
    from .data import read_samples

    name = "the labels"
    if isinstance(labels, (str, Path)):
        name = Path(labels).name
        if not Path(labels).is_file():
            raise ValueError(f"{labels}: no such file (--labels takes a .npy or .csv file, one class index per row)")
        y = read_samples(labels, 1).reshape(-1)
    else:
        y = np.asarray(labels).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{name} holds {len(y)} labels for the {n} samples of {data_name}: one label per sample")
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or np.any(y < 0):
        raise ValueError(f"{name}: labels must be class indices (integers 0, 1, ...)")
    return y.astype(np.int64)


def load_module(path: Path):
    """A generated module, run by the device runtime in this process (as `uquant run` loads it)."""
    from . import runtime
    from .cli import module_file_check

    module_file_check(path)
    try:
        mod = runtime.load_file(path)
    except ValueError:  # CorruptModel: the checksum or the model's own checks, with their message
        raise
    except Exception as e:  # a damaged module can fail in any way
        raise ValueError(f"{path}: not a valid generated module ({type(e).__name__}: {e})") from None
    if not hasattr(mod, "OUTPUT_ZERO_POINT") or not isinstance(getattr(mod, "model", None), runtime.rt.Model):
        raise ValueError(f"{path}: not a complete generated module (truncated?); convert the model again")
    return mod


def module_input(mod):
    """The QParams a module quantizes its float inputs with (its scale bits, zero point and formula)."""
    from . import codegen
    from .ir import QParams

    return QParams(codegen.bits_f32(mod.INPUT_SCALE_BITS), mod.INPUT_ZERO_POINT,
                   "qint8" if mod.model.qmin < 0 else "quint8", getattr(mod, "INPUT_QUANTIZE", "aten"))


def load_float_model(path, allow_pickle: bool):
    """The float model: TorchScript, or with allow_pickle a pickled nn.Module (a state_dict has no forward())."""
    import pickle
    from collections.abc import Mapping

    import torch

    from .loaders import _is_torchscript

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (--float takes the float model: TorchScript, or a pickled module "
                         "with --allow-pickle)")
    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu").eval()
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: a pickled model; loading it runs code from the file: pass --allow-pickle if you "
                         "trust it, or save the float model as TorchScript") from None
    if isinstance(obj, Mapping) or not callable(obj):
        raise ValueError(f"{path}: a state_dict (weights without the code of forward()) cannot run: save the float "
                         "model as TorchScript (torch.jit.save(torch.jit.trace(model, x), path)), or pickle the "
                         "module and pass --allow-pickle")
    return obj.eval()


def progress(total: int, desc: str, quiet: bool = False):
    """tqdm on stderr for more than PROGRESS_MIN samples, silent when stderr is not a terminal or with quiet."""
    from tqdm import tqdm

    off = quiet or total <= PROGRESS_MIN or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="sample", file=sys.stderr, disable=off, leave=False, dynamic_ncols=True)


def _chunks(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


# --- the evaluation -------------------------------------------------------------------------------------------

def evaluate(model=None, data=None, labels=None, *, module=None, float_model=None, port=None,
             board_module: str | None = None, engine: str = "x86", relu=None, allow_pickle: bool = False,
             input_shape=None, quiet: bool = False, batch: int = 50) -> Evaluation:
    """Run the samples `data` (a .npy/.csv file of float samples, or an array) through every source given and
    measure accuracy against `labels` (file or array of class indices; optional) and agreement between them.

    model: the quantized torch model file (what `uquant convert` reads); module: the generated module (m_q.py);
    at least one of the two. float_model: the float model file (TorchScript, or pickled with allow_pickle).
    port: a board's serial port ('auto': the one board or running `uquant sim`) whose deployed module
    (board_module, default the one `uquant deploy` put there last) runs the samples too, `batch` per exchange.
    quiet=False shows a progress bar on a terminal for long runs.
    """
    from .api import convert, quantize_input
    from .data import read_samples
    from .info import parse_shape

    if model is None and module is None:
        raise ValueError("evaluate needs the quantized torch model or the generated module (or both)")
    if data is None:
        raise ValueError("evaluate needs samples: --data X.npy (or .csv), one float sample per row")
    if isinstance(input_shape, str):
        input_shape = parse_shape(input_shape)
    converted = mod = None
    if model is not None:
        if isinstance(model, (str, Path)) and not Path(model).is_file():
            raise ValueError(f"{model}: no such file (MODEL is a quantized torch model file or a generated module)")
        converted = convert(model, engine=engine, relu=relu, allow_pickle=allow_pickle, input_shape=input_shape)
    if module is not None:
        mod = load_module(Path(module))
    host = mod if mod is not None else converted.device_module
    n_in, shape = host.model.n_in, tuple(host.model.shape)
    if converted is not None and mod is not None:
        from .codegen import module_constants

        plan = converted.plan
        mine = (mod.INPUT_SCALE_BITS, mod.INPUT_ZERO_POINT, mod.OUTPUT_SCALE_BITS, mod.OUTPUT_ZERO_POINT)
        if (plan.n_in, plan.n_out) != (n_in, mod.model.n_out) or module_constants(plan)[:4] != mine:
            raise ValueError(f"{Path(module).name} was not converted from {Path(model).name}: it takes {n_in} -> "
                             f"{mod.model.n_out} values, the model {plan.n_in} -> {plan.n_out}, or their input or "
                             "output scales and zero points differ; convert the model again")
    if isinstance(data, (str, Path)):
        x, what = read_samples(data, n_in), f"samples from {Path(data).name}"
    else:
        x = np.asarray(data, np.float32).reshape(len(data), -1)
        what = "samples"
        if x.shape[1] != n_in:
            raise ValueError(f"the samples have {x.shape[1]} values each; the model takes {n_in}")
    n = len(x)
    data_name = Path(data).name if isinstance(data, (str, Path)) else "the data"
    y = None if labels is None else read_labels(labels, n, data_name)
    if y is not None:
        what += f", labels from {Path(labels).name}" if isinstance(labels, (str, Path)) else ", labelled"
    codes = quantize_input(x, converted.plan.input if converted is not None else module_input(mod))
    sources: list[Source] = []
    notes: list[str] = []
    if float_model is not None:
        sources.append(Source("float", run_float(load_float_model(float_model, allow_pickle), x, shape, quiet)))
    if converted is not None:
        sources.append(run_torch(converted, model, codes, relu, allow_pickle, quiet, notes))
    out_qmin = host.model.out_qmin
    dev = run_host(host, codes, quiet)
    dev.against = "torch quantized" if converted is not None else None
    sources.append(dev)
    if port is not None:
        board = run_board(port, board_module, codes, n_in, host.model.n_out, out_qmin, batch, quiet)
        board.against = dev.against or dev.name
        sources.append(board)
    n_classes = max(host.model.n_out, int(y.max()) + 1 if y is not None and n else 0)
    if y is not None and int(y.max()) >= host.model.n_out:
        notes.append(f"the labels go up to {int(y.max())}, the model has {host.model.n_out} outputs")
    image = tuple(shape[-2:]) if len(shape) >= 2 and shape[-1] > 1 and shape[-2] > 1 else None
    if image is None and n_in >= 16 and int(round(n_in ** 0.5)) ** 2 == n_in:
        image = (int(round(n_in ** 0.5)),) * 2  # a flattened square picture, most likely (an MLP on 8x8 digits)
    name = Path(model).name if isinstance(model, (str, Path)) else Path(module).name if module else "the model"
    return Evaluation(n, what, y, n_classes, sources, x, image, f"uquant evaluate {name}", notes)


def run_float(fm, x: np.ndarray, shape: tuple, quiet: bool) -> np.ndarray:
    import torch

    preds = np.zeros(len(x), np.int64)
    with progress(len(x), "float", quiet) as bar, torch.no_grad():
        for a, b in _chunks(len(x), 256):
            out = fm(torch.from_numpy(x[a:b]).reshape((b - a,) + shape))
            out = out.dequantize() if getattr(out, "is_quantized", False) else out
            preds[a:b] = out.float().reshape(b - a, -1).argmax(1).numpy()
            bar.update(b - a)
    return preds


def run_torch(converted, model, codes: np.ndarray, relu, allow_pickle: bool, quiet: bool, notes: list) -> Source:
    """torch's quantized model, one sample per call (as verify runs it): its output codes and classes."""
    import torch

    from .api import torch_engine
    from .oracle import load_torch_model, torch_codes_fn

    plan = converted.plan
    if isinstance(model, torch.export.ExportedProgram):
        tm = model.module()
    elif isinstance(model, torch.nn.Module):
        tm = model if plan.input.formula == "pt2e" else model.eval()  # a PT2E GraphModule has no eval()
    elif Path(model).suffix == ".pt2":  # torch.export.save of a PT2E program
        from .loaders import _export_load

        tm = _export_load(Path(model)).module()
    else:
        tm = load_torch_model(Path(model), relu=relu, allow_pickle=allow_pickle)
    if plan.input.formula == "pt2e":
        notes.append("a PT2E program computes linear, conv and pooling in float32: the device agrees with it within "
                     "one output code there, not always exactly (README, 'PT2E (torchao) programs')")
    if converted.graph.dropped:  # torch ends with a softmax the device leaves out: classes only
        from . import engines

        notes.append("torch's final softmax is left out on the device: output codes are not compared, classes are")
        preds = np.zeros(len(codes), np.int64)
        xq = engines.dequantize(codes, plan.input.scale, plan.input.zero_point).astype(np.float32)
        with progress(len(codes), "torch quantized", quiet) as bar, torch.no_grad(), torch_engine(plan.engine):
            for i in range(len(codes)):
                out = tm(torch.from_numpy(xq[i:i + 1]).reshape((1,) + tuple(plan.input_shape)))
                out = out.dequantize() if out.is_quantized else out
                preds[i] = int(out.reshape(-1).argmax())
                bar.update(1)
        return Source("torch quantized", preds, None)
    fn = torch_codes_fn(tm, plan)
    out = np.zeros((len(codes), plan.n_out), np.int64)
    # torch's ops follow its global engine: run under the one the model was converted for, whatever the caller set
    with progress(len(codes), "torch quantized", quiet) as bar, torch_engine(plan.engine):
        for a, b in _chunks(len(codes), 25):
            out[a:b] = fn(codes[a:b])
            bar.update(b - a)
    return Source("torch quantized", out.argmax(1), out)


def run_host(mod, codes: np.ndarray, quiet: bool) -> Source:
    """The device module in this process (the device runtime's own code): output codes and predict()."""
    out = np.zeros((len(codes), mod.model.n_out), np.int64)
    preds = np.zeros(len(codes), np.int64)
    with progress(len(codes), "device (host)", quiet) as bar:
        for i, row in enumerate(codes):
            row = [int(v) for v in row]
            out[i] = list(mod.run(row))
            preds[i] = mod.predict(row)
            bar.update(1)
    return Source("device (host)", preds, out)


def run_board(port: str, name: str | None, codes: np.ndarray, n_in: int, n_out: int, out_qmin: int, batch: int,
              quiet: bool) -> Source:
    """The module deployed on a board, over the raw REPL (as `uquant verify` runs it), `batch` samples a go."""
    from .deploy import board_model, deployed_module, run_batch
    from .link import Link, find_port

    with Link(find_port() if port == "auto" else port) as link:
        name = name or deployed_module(link)
        info = board_model(link, name)
        if (info["n_in"], info["n_out"]) != (n_in, n_out):
            raise ValueError(f"the board's {name} takes {info['n_in']} -> {info['n_out']} values, the model "
                             f"{n_in} -> {n_out}: deploy it first (`uquant deploy`)")
        out = np.zeros((len(codes), n_out), np.int64)
        preds = np.zeros(len(codes), np.int64)
        with progress(len(codes), f"board {link.port}", quiet) as bar:
            for a, b in _chunks(len(codes), max(1, batch)):
                out[a:b], preds[a:b] = run_batch(link, name, codes[a:b], info["qmin"])
                bar.update(b - a)
        if out_qmin < 0:  # qint8 results come back as raw bytes
            out = np.where(out > 127, out - 256, out)
        return Source(f"device (board {link.port})", preds, out)


# --- the HTML report ------------------------------------------------------------------------------------------

GOOD, BAD, BAR, AXIS = "#2ca02c", "#d62728", "#1f77b4", "#888"


def accuracy_svg(ev: Evaluation) -> list[str]:
    """Two bar charts: each source's accuracy on a 0..100 % axis, and its wrong predictions counted (where the
    sources' small differences show); without labels, each device source's agreement with what it is compared
    with, and the samples where its output codes differ."""
    if ev.labels is not None:
        good = [(s.name, ev.accuracy(s.name), f"{100 * ev.accuracy(s.name):.1f} %") for s in ev.sources]
        bad = [(s.name, ev.n - ev.correct(s.name), f"{ev.n - ev.correct(s.name)} of {ev.n}") for s in ev.sources]
        return [bars_svg("accuracy", good, 1.0, BAR, True), bars_svg("wrong predictions", bad, None, BAD, False)]
    good, bad = [], []
    for s in ev.sources:
        ag = ev.agreement(s.name)
        if ag is not None:
            against, same_codes, same_class = ag
            same = same_codes if same_codes is not None else same_class
            what = "codes" if same_codes is not None else "class"
            good.append((f"{s.name} = {against}", same / ev.n, f"{100 * same / ev.n:.1f} % ({what})"))
            bad.append((f"{s.name} \u2260 {against}", ev.n - same, f"{ev.n - same} of {ev.n}"))
    if not good:
        return []
    return [bars_svg("samples in agreement", good, 1.0, BAR, True),
            bars_svg("samples in disagreement", bad, None, BAD, False)]


def bars_svg(title: str, rows: list[tuple[str, float, str]], top_value: float | None, colour: str,
             percent: bool) -> str:
    """Horizontal bars (name, value, written value) on an axis from 0 to top_value (None: the largest value)."""
    e = html.escape
    top_value = top_value or max([v for _, v, _ in rows] + [1])
    lw, bw, rh, top = 250, 360, 30, 26
    width, height = lw + bw + 150, top + rh * len(rows) + 26
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} '
             f'{height}" role="img" aria-label="{e(title)}">', f'<rect width="{width}" height="{height}" fill="#fff"/>',
             f'<text x="{lw + bw / 2:.0f}" y="15" font-size="12" text-anchor="middle" font-family="sans-serif">'
             f'{e(title)}</text>']
    fs = 'font-size="12" font-family="sans-serif"'
    ticks = [top_value * k / 4 for k in range(5)] if percent else sorted({round(top_value * k / 4) for k in range(5)})
    for t in ticks:  # grid
        gx = lw + bw * t / top_value
        label = f"{100 * t:.0f} %" if percent else f"{t}"
        parts.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{top + rh * len(rows)}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{gx:.1f}" y="{height - 8}" font-size="10" font-family="sans-serif" '
                     f'text-anchor="middle">{label}</text>')
    for i, (name, v, label) in enumerate(rows):
        y0, w = top + i * rh, bw * v / top_value
        parts += [f'<text x="{lw - 8}" y="{y0 + rh / 2 + 4:.1f}" {fs} text-anchor="end">{e(name)}</text>',
                  f'<rect x="{lw}" y="{y0 + 4}" width="{max(w, 1):.1f}" height="{rh - 8}" fill="{colour}">'
                  f'<title>{e(name)}: {e(label)}</title></rect>',
                  f'<text x="{lw + w + 6:.1f}" y="{y0 + rh / 2 + 4:.1f}" {fs}>{e(label)}</text>']
    parts.append(f'<line x1="{lw}" y1="{top - 4}" x2="{lw}" y2="{top + rh * len(rows)}" stroke="{AXIS}"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def confusion_svg(m: np.ndarray, title: str) -> str:
    """The confusion matrix as a heat map: each cell's share of its row (true class), green on the diagonal
    (right), red off it (wrong), with the count written in."""
    e = html.escape
    k = len(m)
    cell = max(22, min(44, 440 // max(k, 1)))
    ml, mt = 56, 44
    width, height = ml + cell * k + 12, mt + cell * k + 12
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} '
             f'{height}" role="img" aria-label="{e(title)}">', f'<rect width="{width}" height="{height}" fill="#fff"/>',
             f'<text x="{ml + cell * k / 2:.0f}" y="14" font-size="12" text-anchor="middle" font-family="sans-serif">'
             'predicted class</text>',
             f'<text x="14" y="{mt + cell * k / 2:.0f}" font-size="12" text-anchor="middle" font-family="sans-serif" '
             f'transform="rotate(-90 14 {mt + cell * k / 2:.0f})">true class</text>']
    fs = 'font-size="11" font-family="sans-serif" text-anchor="middle"'
    rows = m.sum(axis=1)
    for j in range(k):
        parts.append(f'<text x="{ml + cell * j + cell / 2:.0f}" y="{mt - 6}" {fs}>{j}</text>')
    for i in range(k):
        parts.append(f'<text x="{ml - 8}" y="{mt + cell * i + cell / 2 + 4:.0f}" font-size="11" '
                     f'font-family="sans-serif" text-anchor="end">{i}</text>')
        for j in range(k):
            v = int(m[i, j])
            share = v / rows[i] if rows[i] else 0.0
            colour = _shade(GOOD if i == j else BAD, share if v else 0.0)
            parts.append(f'<rect x="{ml + cell * j}" y="{mt + cell * i}" width="{cell}" height="{cell}" '
                         f'fill="{colour}" stroke="#fff"><title>true {i}, predicted {j}: {v} samples'
                         f'{f" ({100 * share:.0f} % of class {i})" if rows[i] else ""}</title></rect>')
            if v:
                ink = "#fff" if share > 0.55 else "#222"
                parts.append(f'<text x="{ml + cell * j + cell / 2:.0f}" y="{mt + cell * i + cell / 2 + 4:.0f}" '
                             f'{fs} fill="{ink}">{v}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _shade(colour: str, t: float) -> str:
    """`colour` mixed with white: t = 0 white, t = 1 the colour itself (a small t still shows)."""
    if t <= 0:
        return "#f7f7f7"
    t = 0.15 + 0.85 * t
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 + (c - 255) * t):02x}" for c in rgb)


def sample_svg(x: np.ndarray, shape: tuple[int, int], caption: str, tooltip: str, bad: bool) -> str:
    """One sample drawn as a grey-scale picture (its own min..max), its predictions written under it."""
    e = html.escape
    h, w = shape
    img = np.asarray(x, np.float64).reshape(-1, h, w)[0]
    lo, hi = float(img.min()), float(img.max())
    px = max(4, 72 // max(h, w))
    width, height = max(w * px, 90), h * px + 34
    ox = (width - w * px) / 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} '
             f'{height}" role="img" aria-label="{e(caption)}"><title>{e(tooltip)}</title>',
             f'<rect width="{width}" height="{height}" fill="#fff"/>']
    for r in range(h):
        for c in range(w):
            g = 255 - round(255 * (img[r, c] - lo) / (hi - lo)) if hi > lo else 255
            parts.append(f'<rect x="{ox + c * px:.0f}" y="{r * px}" width="{px}" height="{px}" '
                         f'fill="#{g:02x}{g:02x}{g:02x}"/>')
    parts.append(f'<rect x="{ox:.0f}" y="0" width="{w * px}" height="{h * px}" fill="none" '
                 f'stroke="{BAD if bad else AXIS}" stroke-width="{2 if bad else 1}"/>')
    for k, line in enumerate(caption.split("\n")[:2]):
        parts.append(f'<text x="{width / 2:.0f}" y="{h * px + 14 + 13 * k}" font-size="11" font-family="sans-serif" '
                     f'text-anchor="middle">{e(line)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _short(name: str) -> str:
    return {"float": "float", "torch quantized": "torch"}.get(name, "host" if name == "device (host)" else "board")


def _sample_section(doc, ev: Evaluation, idx: np.ndarray, title: str, empty: str) -> None:
    doc.h(1, title)
    if not len(idx):
        doc.p(empty)
        return
    shown = idx[:MAX_SHOWN]
    more = f" (the first {len(shown)} of {len(idx)})" if len(idx) > len(shown) else ""
    if ev.image_shape is not None:
        pics = []
        for i in shown:
            preds = " ".join(f"{_short(s.name)[0]}{int(s.preds[i])}" for s in ev.sources)
            head = f"#{i}" + (f" label {int(ev.labels[i])}" if ev.labels is not None else "")
            tip = f"sample #{i}: " + ", ".join(f"{s.name} {int(s.preds[i])}" for s in ev.sources)
            bad = ev.labels is not None and ev.device.preds[i] != ev.labels[i]
            pics.append(sample_svg(ev.x[i], ev.image_shape, f"{head}\n{preds}", tip, bad))
        doc.svg(pics, f"{len(idx)} sample{'s' if len(idx) > 1 else ''}{more}, drawn from their float values; under "
                "each, its number" + (", label" if ev.labels is not None else "") + " and the class each source "
                "predicts (" + ", ".join(f"{_short(s.name)[0]} = {s.name}" for s in ev.sources) + "); a red frame: the device is "
                "wrong")
    differ = ev.codes_differ()
    headers = ["sample"] + (["label"] if ev.labels is not None else []) + [s.name for s in ev.sources] + ["codes"]
    rows = [[f"{int(i)}"] + ([f"{int(ev.labels[i])}"] if ev.labels is not None else [])
            + [f"{int(s.preds[i])}" for s in ev.sources] + ["differ" if differ[i] else "same"] for i in shown]
    doc.table(headers, rows, f"predicted classes{more}; codes: whether a device's output codes are those of the "
              "source it is compared with")


def render_html(ev: Evaluation) -> str:
    from .explain_doc import Doc, render_html as render_doc

    doc = Doc(ev.title)
    doc.p(f"{ev.n} {ev.what}" + ("" if ev.labels is not None else ": no labels, so agreement only") + ".")
    labelled = ev.labels is not None
    headers = ["source"] + (["accuracy", "correct"] if labelled else []) + ["compared with", "identical output codes",
                                                                          "same class"]
    rows = []
    for s in ev.sources:
        ag = ev.agreement(s.name)
        acc = [f"{100 * ev.accuracy(s.name):.1f} %", f"{ev.correct(s.name)}/{ev.n}"] if labelled else []
        rows.append([s.name, *acc, ag[0] if ag else "-", f"{ag[1]}/{ev.n}" if ag and ag[1] is not None else "-",
                     f"{ag[2]}/{ev.n}" if ag else "-"])
    doc.table(headers, rows)
    bars = accuracy_svg(ev)
    if bars:
        doc.svg(bars, "accuracy on the labelled samples, and the wrong predictions counted" if ev.labels is not None
                else "samples whose output codes (or, where codes are not compared, classes) are identical, and not")
    m = ev.confusion()
    if m is not None:
        doc.h(1, f"Confusion matrix of {ev.device.name}")
        doc.svg([confusion_svg(m, f"confusion matrix of {ev.device.name}")],
                f"rows: true class, columns: predicted class; {int(np.trace(m))} of {ev.n} on the diagonal; colour: "
                "the cell's share of its row")
    d = ev.disagreements()
    if len(ev.sources) > 1:
        _sample_section(doc, ev, d, "Samples where the sources disagree",
                        f"None: {'both' if len(ev.sources) == 2 else f'all {len(ev.sources)}'} sources predict the "
                        "same class on every sample, with identical output codes where they are compared.")
    if ev.labels is not None:
        wrong = np.flatnonzero(ev.device.preds != ev.labels)
        _sample_section(doc, ev, wrong, f"Samples {ev.device.name} gets wrong", "None.")
    for note in ev.notes:
        doc.p(f"Note: {note}")
    return render_doc(doc)


# --- the command ----------------------------------------------------------------------------------------------

def add_evaluate_parser(sub) -> None:
    from .engines import ENGINES

    v = sub.add_parser("evaluate", help="accuracy and agreement of the float model, torch's quantized model and the "
                       "device module (host, and a board with --port), with a confusion matrix and an HTML report")
    v.add_argument("model", nargs="+", metavar="MODEL", help="the quantized torch model file (as for convert) and/or "
                   "the generated module (e.g. build/model_q.py)")
    v.add_argument("--data", required=True, help="samples: .npy or .csv, one float sample per row")
    v.add_argument("--labels", help="the samples' classes: .npy or .csv, one class index per row (without: "
                   "agreement only)")
    v.add_argument("--float", dest="float_model", metavar="FILE", help="the float model, for its accuracy "
                   "(TorchScript, or a pickled module with --allow-pickle)")
    v.add_argument("--port", help="also run the samples on the board at this serial port ('auto': the one board, "
                   "or the running `uquant sim`)")
    v.add_argument("--module", help="with --port: the model module on the board (default: the one `uquant deploy` "
                   "put there last)")
    v.add_argument("--batch", type=int, default=50, help="with --port: samples per raw-REPL exchange "
                   "(default: %(default)s)")
    v.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report (charts, confusion "
                   "matrix, the samples where the sources disagree)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.add_argument("--engine", choices=ENGINES, default="x86", help="quantized engine (default: %(default)s)")
    v.add_argument("--relu", help="state_dict only: layers with a fused ReLU (see convert)")
    v.add_argument("--allow-pickle", action="store_true", help="allow loading a pickled model (see convert)")
    v.add_argument("--input-shape", help="one sample's input shape (see info)")
    v.set_defaults(func=cmd_evaluate)


def split_models(paths: list[str]) -> tuple[str | None, str | None]:
    """MODEL arguments -> (torch model file, generated module): one of each at most."""
    from .files import text_kind

    model = module = None
    if len(paths) > 2:
        raise ValueError("evaluate takes at most two MODEL files: the quantized torch model and the generated module")
    for p in paths:
        if not Path(p).is_file():
            raise ValueError(f"{p}: no such file (MODEL is a quantized torch model file or a generated module)")
        kind = text_kind(Path(p).read_bytes())
        if kind == "text":
            raise ValueError(f"{p}: neither a torch model file nor a module uquant generated")
        if kind == "module":
            if module is not None:
                raise ValueError(f"two generated modules ({module}, {p}): give one, and the torch model")
            module = p
        else:
            if model is not None:
                raise ValueError(f"two torch model files ({model}, {p}): give one (the float model goes in --float)")
            model = p
    return model, module


def cmd_evaluate(args) -> int:
    model, module = split_models(args.model)
    ev = evaluate(model, args.data, args.labels, module=module, float_model=args.float_model, port=args.port,
                  board_module=args.module, engine=args.engine, relu=args.relu, allow_pickle=args.allow_pickle,
                  input_shape=args.input_shape, quiet=args.quiet, batch=args.batch)
    print(ev.text())
    if args.html:
        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ev.html(), encoding="utf-8")
        print(f"wrote {path}")
    return 0


class _CallableModule(types.ModuleType):
    """`uquant.evaluate` is this module once imported (Python sets it so): calling it runs evaluate()."""

    def __call__(self, *args, **kwargs) -> Evaluation:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
