"""The Python API: convert a model, save the device module, run it on the host."""
from __future__ import annotations

import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from . import codegen, engines, platforms, runtime
from .ir import ConversionError, Graph, Linear, QParams
from .loaders import load
from .lower import Plan, lower


@contextmanager
def torch_engine(engine: str):
    """Set torch's quantized engine for the block (weights are packed for the engine current at packing)."""
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def quantize_input(x, q) -> np.ndarray:
    """Float input -> codes exactly as torch does: torch.quantize_per_tensor on this CPU, or for a PT2E program
    its own quantize_per_tensor (another formula). q: a converted model (its input's quantization) or QParams."""
    if isinstance(q, Converted):
        q = q.plan.input
    if isinstance(x, torch.Tensor):
        x = x.detach().float().numpy()
    if q.formula == "pt2e":
        from . import pt2e_ops
        return pt2e_ops.quantize(x, q)
    return engines.quantize(np.asarray(x, np.float32), q.scale, q.zero_point, q.dtype)


class Converted:
    """A converted model: its IR, its proven integer plan and the generated module source."""

    def __init__(self, graph: Graph, plan: Plan, module_name: str = "model_q", label: str = "a torch model"):
        self.graph = graph
        self.plan = plan
        self.module_name = module_name
        self.label = label  # where the model came from, for the module's header
        self._module = None
        self.units = None  # uquant.units.Units: raw-integer input, fixed-point output, labels (set_units)
        self.layout = None  # the order of dense weights in the module (codegen.LAYOUTS): rows, or a board's own
        self.weights = None  # (file name or None for <module>.bin, buffer bytes): stream weights from a file
        self._stream = None
        self._tmp = None  # a directory holding the weights file for device_module

    def set_units(self, input_unit=None, output_unit=None, labels=None, raw_range=None) -> "Converted":
        """Add run_raw (raw integers x input_unit), dequantize (ints in output_unit) and labels to the module."""
        from .units import Units
        self.units = Units(self.plan, input_unit, output_unit, labels, raw_range)
        self._module = None
        return self

    def stream_weights(self, file: str | None = None, buffer: int | None = None) -> "Converted":
        """Write the dense and conv layers' weights to a file next to the module instead of into it (uquant.stream):
        the board reads them a chunk of output channels at a time into one buffer of `buffer` bytes (default
        8 KB), so the model needs little RAM. file: its name (default: the module's name + .bin)."""
        from . import stream

        if file is not None and ("/" in file or "\\" in file or not file.endswith(".bin")):
            raise ValueError(f"weights file {file!r}: give a file name ending in .bin; it is written next to the "
                             "module, where the module looks for it")
        self.weights = (file, stream.DEFAULT_BUFFER if buffer is None else int(buffer))
        self._stream = None
        self._module = None
        return self

    @property
    def stream(self):
        """The weights file's layout and bytes (uquant.stream.Stream), or None when the module holds its weights."""
        if self.weights is None:
            return None
        file = self.weights[0] or f"{self.module_name}.bin"
        if self._stream is None or self._stream.file != file:
            from . import stream
            self._stream = stream.build(self.plan, file, self.weights[1])
        return self._stream

    @property
    def source(self) -> str:
        """The generated MicroPython module."""
        src = codegen.generate(self.plan, self.module_name, self.label, self.layout, self.stream)
        return src + self.units.source() if self.units is not None else src

    @property
    def device_module(self):
        """The generated module, executed against the device runtime in this process (a streamed one reads its
        weights file from a temporary directory)."""
        if self._module is None:
            where = None
            if self.stream is not None:
                import tempfile
                self._tmp = tempfile.TemporaryDirectory(prefix="uquant-")
                where = Path(self._tmp.name) / f"{self.module_name}.py"
                (where.parent / self.stream.file).write_bytes(self.stream.data)
            self._module = runtime.load_source(self.source, self.module_name, where)
        return self._module

    def for_board(self, board) -> "Converted":
        """Lay the module out for a board (a key such as "pico", or a uquant.boards.Board): dense weights in the
        order its kernels read, so the board holds them once. The module still runs anywhere (other kernels copy)."""
        from . import boards
        board = boards.get(board) if isinstance(board, str) else board
        if board is not None and board.dense_layout != self.layout:
            self.layout = board.dense_layout
            self._module = None
        return self

    def save(self, path: str | Path) -> Path:
        """Write the module; its file name is its import name on the board. A streamed model's weights file is
        written next to it (weights_path)."""
        path = Path(path)
        self.module_name = path.stem
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.stream is not None:
            self.weights_path(path).write_bytes(self.stream.data)
        path.write_text(self.source)
        return path

    def weights_path(self, path: str | Path) -> Path | None:
        """Where save(path) writes the weights file, or None when the module holds its weights."""
        return None if self.stream is None else Path(path).with_name(self.stream.file)

    def portability(self, codes=None, what: str = "example inputs"):
        """Does this model give the same bytes on every platform? (uquant.portability.Portability; `codes`: input
        codes to count how often it matters, by default random ones.)"""
        from . import portability
        return portability.check(self, codes, what)

    def run_codes(self, codes) -> np.ndarray:
        """Quantized input codes (one sample, or a batch as rows) -> output codes from the device runtime."""
        codes = np.asarray(codes, np.int64)
        n_in = self.plan.n_in
        if codes.size == 0 or (codes.size != n_in if codes.ndim <= 1 else codes[0].size != n_in):
            raise ValueError(f"{self.plan.name}: expected samples of {n_in} input values, got an array of shape "
                             f"{codes.shape} (the model takes {self.device_module.model.expects()}; a batch is "
                             "one sample per row)")
        batch = codes.reshape(-1, n_in)
        out = [list(self.device_module.run([int(v) for v in row])) for row in batch]
        res = np.array(out, np.int64)
        return res[0] if codes.ndim == 1 else res

    def layer_codes(self, codes) -> list[np.ndarray]:
        """Input codes (batch, n_in) -> every step's output codes (one array per step), via the device runtime."""
        model = self.device_module.model
        out = [np.zeros((len(codes), int(np.prod(s.out_shape))), np.int64) for s in self.plan.steps]
        for j, row in enumerate(np.asarray(codes, np.int64)):
            x = model.prepare([int(v) for v in row])
            for i, (node, step) in enumerate(zip(model.layers, self.plan.steps)):
                stored = np.frombuffer(bytes(node.run(x)), np.uint8)[:out[i].shape[1]]
                out[i][j] = stored.astype(np.int64) + step.out.qmin  # buffers hold code - qmin
        return out

    def run(self, x) -> np.ndarray:
        """Float input (one sample or a batch) -> output codes, quantized the way torch does."""
        if isinstance(x, torch.Tensor):
            x = x.detach().float().numpy()
        return self.run_codes(quantize_input(x, self.plan.input))

    def predict(self, x) -> np.ndarray | int:
        y = self.run(x)
        return y.argmax(-1) if y.ndim > 1 else int(y.argmax())


def progress_bar(total: int, desc: str, quiet: bool = False):
    """A tqdm bar on stderr that shows itself only once the work has taken a second (delay=1); none at all when
    stderr is not a terminal or with quiet (tqdm is not even imported then)."""
    if quiet or not sys.stderr.isatty():
        return nullcontext()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, delay=1, leave=False, dynamic_ncols=True)


def convert(model, example_input=None, *, engine: str | None = None, platform="here", relu=None,
            allow_pickle: bool = False, name: str | None = None, module_name: str = "model_q", input_shape=None,
            input_unit=None, output_unit=None, labels=None, raw_range=None, board=None,
            weights=None, weights_buffer: int | None = None, quiet: bool = False) -> Converted:
    """Convert a quantized model (nn.Module, TorchScript module, state_dict, or file path).

    engine: the quantized engine the model was prepared for (x86, fbgemm or qnnpack); by default the
    engine torch is set to now (torch.backends.quantized.engine). platform: whose torch bytes to reproduce
    where they depend on the CPU (uquant.platforms): "here" (this machine's torch, the default), or a name
    such as "x86-vnni" or "x86-avx2". With `example_input`, torch and the device runtime both run it and must
    agree byte for byte (when the platform is this machine's, or the model's bytes do not depend on it).
    board: lay the module out for this board's kernels (Converted.for_board).
    weights: True or a file name (*.bin) to stream the weights from a file next to the module, read in chunks into
    a buffer of weights_buffer bytes (Converted.stream_weights): for models bigger than the board's RAM. None (the
    default) with a board: streamed when the board's RAM cannot hold them and streaming makes the model fit (the
    reason is in graph.notes); False: always held in the module.
    A conversion that takes over a second shows a progress bar on stderr (if it is a terminal; quiet=True: never).
    """
    engine = engine or torch.backends.quantized.engine
    if engine not in engines.ENGINES:
        raise ConversionError(f"engine {engine!r} is not supported: choose one of {', '.join(engines.ENGINES)}")
    shape = input_shape
    if shape is None and example_input is not None:
        try:
            shape = tuple(torch.as_tensor(example_input).shape[1:])
        except (TypeError, ValueError, RuntimeError):
            shape = None
    graph = load(model, name=name, relu=relu, allow_pickle=allow_pickle, input_shape=shape)
    if input_shape is not None:
        graph.input_shape = tuple(int(d) for d in input_shape)
    elif example_input is not None and not any(isinstance(op, Linear) for op in graph.ops[:1]):
        graph.input_shape = tuple(torch.as_tensor(example_input).shape[1:])  # (batch, ...) -> one sample
    from .loaders.pt2e import is_pt2e
    # a PT2E program computes linear/conv in float32: agreement within one code, measured (tests/test_pt2e.py),
    # not the exact self-check
    check = example_input is not None and isinstance(model, torch.nn.Module) and not is_pt2e(model)
    n_check = 0  # samples the self-check runs, for the progress bar's total only
    if check:
        per = int(np.prod(graph.input_shape)) if graph.input_shape else 0
        try:
            n_check = max(1, int(torch.as_tensor(example_input).numel()) // per) if per else 1
        except (TypeError, ValueError, RuntimeError):  # check_against_torch says what is wrong with it
            n_check = 1
    with progress_bar(len(graph.ops) + n_check, f"converting {graph.name}", quiet) as bar:
        plan = lower(graph, engine, platform, progress=bar)
        label = Path(model).name if isinstance(model, (str, Path)) else f"a {type(model).__name__} object"
        converted = Converted(graph, plan, module_name, label).for_board(board)
        if weights is None and board is not None:  # stream when the board's RAM cannot hold the weights
            from . import boards
            from .info import streaming_reason

            reason = streaming_reason(converted, boards.get(board) if isinstance(board, str) else board)
            if reason is not None:
                graph.notes.append(reason)
                weights = True
        if weights:
            converted.stream_weights(None if weights is True else weights, weights_buffer)
        if input_unit is not None or output_unit is not None or labels is not None:
            converted.set_units(input_unit, output_unit, labels, raw_range)
        if check and (plan.platform == platforms.here() or not plan.platform_dependent):
            check_against_torch(converted, model, example_input, progress=bar)
    return converted


def check_against_torch(converted: Converted, model, example_input, progress=None) -> None:
    """Both torch and the device runtime run the example; the dequantized outputs must be identical floats."""
    try:
        x = torch.as_tensor(example_input, dtype=torch.float32).reshape((-1,) + converted.plan.input_shape)
        with torch.no_grad():  # one sample per call, as on the device (some torch kernels round by position)
            want = np.concatenate([model(x[i:i + 1]).float().numpy().reshape(1, -1) for i in range(len(x))])
    except (RuntimeError, ValueError, TypeError) as e:  # torch refuses the example (shape, dtype)
        raise ConversionError(f"the example input does not run through the model in torch "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); pass a batch of "
                              f"samples of shape {converted.plan.input_shape}") from None
    plan = converted.plan
    codes = quantize_input(x.reshape(len(x), -1).numpy(), plan.input)
    rows = []
    for row in codes:  # as converted.run(x) does, a sample at a time for the progress bar
        rows.append(converted.run_codes(row))
        if progress is not None:
            progress.update()
    got = engines.dequantize(np.array(rows).reshape(len(codes), -1), plan.output.scale, plan.output.zero_point)
    if converted.graph.dropped:  # a final softmax the device leaves out: torch applies it here, sample by sample
        with torch.no_grad():
            shape = model(x[:1]).shape
            y = torch.from_numpy(np.asarray(got, np.float32))
            rows = []
            for i in range(len(x)):
                r = y[i].reshape(shape)
                for fn in converted.graph.dropped:
                    r = fn(r)
                rows.append(r.reshape(1, -1).numpy())
            got = np.concatenate(rows)
    if want.shape != got.shape or not np.array_equal(want, got):
        bad = np.argwhere(want.reshape(got.shape) != got) if want.size == got.size else np.zeros((1, 2), int)
        i, j = (int(v) for v in bad[0])
        raise ConversionError(
            f"self-check failed: torch and uquant disagree on {len(bad)} of {got.size} example outputs (first: "
            f"sample {i}, output {j}: torch {want.reshape(got.shape)[i, j]:.6g}, uquant {got[i, j]:.6g}). uquant "
            f"reproduced engine '{plan.engine}' on platform {plan.platform.name}, this machine's torch; if the "
            "model was quantized for another engine, pass engine=...; otherwise this is a uquant bug: please "
            "report it with the model")
