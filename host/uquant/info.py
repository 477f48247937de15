"""`uquant info`: what a converted model costs on the board, step by step, and its activation memory plan."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import codegen
from .plan import DenseStep, FloatMeanStep, Plan


def summary(plan: Plan) -> str:
    from . import stream as streaming

    mem = codegen.memory(plan)
    stream = streaming if any(streaming.streamable(s) for s in plan.steps) else None
    shape = "x".join(map(str, plan.input_shape))
    lines = [f"model {plan.name} (engine {plan.engine}): input {shape} {plan.input.dtype} ({plan.n_in} codes) -> "
             f"{plan.n_out} output codes",
             f"platform {plan.platform.name}: "
             + ("the same bytes on every platform" if not plan.platform_dependent else
                "torch's bytes depend on the CPU in " + "; ".join(f"{n} ({w})" for n, w in plan.platform_dependent)),
             "",
             f"  {'step':<18} {'what':<44} {'output':>9} {'MACs':>9} {'weights':>8} {'params':>7} {'buffer':>6}"]
    macs = 0
    for s in plan.steps:
        out = "x".join(map(str, s.out_shape))
        w = len(s.weights) if isinstance(s, DenseStep) else 0
        p = 4 * len(s.words) + 12 * (len(s.fixes) // 3) + len(s.table or b"") if isinstance(s, DenseStep) else 0
        if isinstance(s, FloatMeanStep):
            p = codegen.float_mean_bytes(s)
        m = s.macs
        macs += m
        what = codegen.describe_step(s).split(",")[0]
        lines.append(f"  {s.name[:18]:<18} {what[:44]:<44} {out:>9} {m:>9} {w:>8} {p:>7} {plan.buffer_of[s.dst]:>6}")
    peak = sum(plan.buffers)
    lines += [
        "",
        f"  MACs per inference      {macs}",
        "  torch parameters        {} ({} weights + {} biases)".format(*_torch_parameters(plan)),
        f"  weights                 {mem['weights']} B (one byte each, in the module)",
        f"  parameters              {mem['params']} B (requantization words, exceptions, code tables)",
        f"  activation buffers      {len(plan.buffers)}: {', '.join(f'#{i} {b} B' for i, b in enumerate(plan.buffers))}",
        f"  activation peak         {peak} B (all buffers are allocated once, at import; a buffer is reused as "
        "soon as the value in it is no longer needed)",
        f"  conv window scratch     {mem['scratch']} B",
        f"  total RAM at run time   ~{mem['weights'] + mem['params'] + peak + mem['scratch']} B plus the runtime's code",
    ]
    if stream is not None:
        held = stream.held(plan, stream.build(plan, "model_q.bin"))
        lines.append(f"  with --weights          ~{held['weights'] + held['params'] + peak + held['scratch'] + held['stream_buffer']}"
                     f" B: weights and words streamed from a file on flash into a {held['stream_buffer']} B buffer")
    return "\n".join(lines)


def _torch_parameters(plan: Plan) -> tuple[int, int, int]:
    """The model's parameter count as torch counts it: weights and biases of its Linear/Conv layers."""
    w = sum(s.source.weight.size for s in plan.compute_steps)
    b = sum(0 if s.source.bias is None else s.source.bias.size for s in plan.compute_steps)
    return w + b, w, b


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


# Heap the runtime itself holds once imported, per byte of its .mpy: 11,024 B of heap for the 7,261 B
# uquant_rt.mpy on the 32-bit MicroPython (see bench.py, which re-measures it).
RUNTIME_HEAP_PER_MPY_BYTE = 3 / 2


def _fit_modes(converted, board):
    """fit_report for the module as `convert --board` lays it out, and (when it holds streamable weights) for the
    same module with --weights: ((text, ok), (streamed Converted, text, ok) or None)."""
    import copy

    from . import stream

    laid = copy.copy(converted).for_board(board)  # as `uquant convert --board` writes it
    st = laid.stream
    mem = codegen.memory(converted.plan) if st is None else stream.held(converted.plan, st)
    held = fit_report(mem, laid.source, converted.module_name, board, len(st.data) if st else 0)
    if st is not None or not any(stream.streamable(s) for s in converted.plan.steps):
        return held, None
    streamed = copy.copy(laid).stream_weights()
    text, ok = fit_report(stream.held(converted.plan, streamed.stream), streamed.source, converted.module_name,
                          board, len(streamed.stream.data))
    return held, (streamed, text, ok)


def _ram_line(text: str) -> str:
    return [line for line in text.splitlines() if line.startswith("  RAM")][0]


def board_fit(converted, board) -> tuple[str, bool]:
    """Whether the converted model fits `board` (RAM and filesystem), with the numbers; and a yes/no."""
    (text, ok), other = _fit_modes(converted, board)
    if other is not None:  # the other mode, for comparison
        streamed, text2, ok2 = other
        text += "\n  RAM    with --weights (streamed from flash)" + _ram_line(text2)[len("  RAM   "):]
        if not ok and ok2:
            text += (f"\n  hint: convert with --weights: the weights stay in a file on the board's flash and are "
                     f"read a chunk at a time into a {streamed.stream.buffer} B buffer")
    return text, ok


def streaming_reason(converted, board) -> str | None:
    """Why `convert --board` streams the weights without being asked (held in RAM the model does not fit the
    board, streamed it does), or None when holding them is fine or streaming would not help."""
    (text, ok), other = _fit_modes(converted, board)
    if ok or other is None or not other[2]:
        return None
    return (f"weights streamed from {converted.module_name}.bin (as with --weights): held in RAM the model does not "
            f"fit the {board.key} ({_ram_line(text)[5:].strip()}); streamed: {_ram_line(other[1])[5:].strip()}; "
            "--hold-weights keeps them in the module")


def weights_bytes(module: Path) -> int:
    """Size of the weights file a module streams from (0 if it holds its weights)."""
    from .deploy import weights_file

    wf = weights_file(module)
    return wf.stat().st_size if wf is not None else 0


def module_memory(path: Path) -> dict[str, int]:
    """codegen.memory()'s figures for a generated module file (what `uquant deploy` has), read by loading it."""
    from .runtime import load_file

    from .codegen import conv_kernel_extra

    mem = {"weights": 0, "params": 0, "buffers": 0, "scratch": 0, "dense_weights": 0, "conv_kernel_extra": 0}
    model = load_file(path).model
    mem["buffers"] = sum(len(b) for b in model.bufs)
    if model.weights is not None:
        mem["stream_buffer"] = len(model.weights.buf)
    held = set()
    for node in model.layers:
        if node.stream is not None:  # weights and words in the weights file: exceptions and table stay
            F, T = node.args[-3:-1] if node.kind == "conv" else node.args[-2:]
            mem["params"] += len(F[0] if F else ()) + len(T or b"")
            if node.kind == "conv":
                mem["scratch"] += len(node.args[-1])
        elif node.kind == "fmean":  # the float mean's tables (codegen.float_mean_bytes)
            mem["params"] += len(node.args[3]) + len(node.args[4]) + len(node.args[6])
        elif node.kind in ("dense", "conv"):
            W, P, F, T = node.args[4:8]
            # objects an earlier node holds too (codegen.shared_data: an unrolled LSTM's steps) count once
            if id(W) not in held:
                mem["weights"] += len(W)
                if node.kind == "dense":
                    mem["dense_weights"] += len(W)
            if (id(P), id(T)) not in held:
                mem["params"] += len(P) + len(F[0] if F else ()) + len(T or b"")  # int32 words as bytes
            held |= {id(W), (id(P), id(T))}
            if node.kind == "conv":
                mem["scratch"] += len(node.args[8])
                mem["conv_kernel_extra"] += conv_kernel_extra(node.args[0], len(W))
    return mem


def measure_held(source: str, module_name: str, weights=None) -> dict[str, int]:
    """Heap the runtime and the model hold once imported, measured on the 32-bit MicroPython (the WebAssembly
    port, bytecode kernels, .mpy files as a board loads them): {"runtime", "model", "import_alloc"} in bytes."""
    from .bench import mpy_bytes
    from .hosts.wasm import held_snippets, parse_held, run_micropython
    from .runtime import RUNTIME_FILE

    files = {"/lib/uquant_rt.mpy": mpy_bytes(RUNTIME_FILE.read_text(), "uquant_rt"),
             f"/lib/{module_name}.mpy": mpy_bytes(source, module_name)}
    if weights is not None:  # a streamed module's weights file (a Path), next to it
        files[f"/lib/{weights.name}"] = weights.read_bytes()
    return parse_held(run_micropython(held_snippets(module_name), files, timeout=600))


def measured_lines(source: str, module_name: str, weights=None) -> list[str]:
    """`uquant info --measure`: measure_held's figures, as lines."""
    from .hosts.wasm import missing_reason

    why = missing_reason()
    if why is not None:
        return [f"  measured  not here: {why}"]
    held = measure_held(source, module_name, weights)
    return [f"  measured  on the 32-bit MicroPython (WebAssembly port, bytecode kernels, .mpy): the model holds "
            f"{held['model']} B after import, uquant_rt {held['runtime']} B; the import allocated "
            f"{held['import_alloc'] - held['model']} B it let go (peak garbage). The board's kernel modules "
            "(asm_thumb, viper) do not run there: their share above is estimated from their .mpy sizes"]


def fit_report(mem: dict, source: str, module_name: str, board, weights_file: int = 0) -> tuple[str, bool]:
    # weights_file: bytes of a streamed module's weights file (flash); mem then counts its buffer (stream.held)
    from .bench import mpy_size
    from .runtime import DEVICE_DIR

    arch = board.mpy_arch or None

    sources = [((DEVICE_DIR / f).read_text(), Path(f).stem) for f in board.device_files]
    # RAM: the runtime's compiled code (the same whether the board compiles .py itself or loads .mpy);
    # flash: what is copied, .mpy for the board's arch or else the source.
    compiled = [mpy_size(src, name, arch) or len(src.encode()) for src, name in sources]
    shipped = compiled if arch else [len(src.encode()) for src, _ in sources]
    model_file = (mpy_size(source, module_name, arch) if arch else None) or len(source.encode())
    # parameters are read in place by every tier; the asm conv kernels build records and padded inputs; a module
    # whose dense weights are in another order than the board's kernels read is copied into that order
    from .deploy import module_layout

    extra = mem.get("conv_kernel_extra", 0) if board.tier in ("thumb", "dsp") else 0
    if module_layout(source) != board.dense_layout:
        extra += mem.get("dense_weights", 0)
    ram = (mem["weights"] + mem["params"] + mem["buffers"] + mem["scratch"] + extra + mem.get("stream_buffer", 0)
           + int(sum(compiled) * RUNTIME_HEAP_PER_MPY_BYTE))
    flash = sum(shipped) + model_file + weights_file
    ok_ram, ok_fs = ram <= board.heap_bytes, flash <= board.fs_bytes
    kind = ".mpy" if arch else ".py"
    lines = [f"board {board.key}: {board.name} ({board.firmware}, {board.tier} kernels, files as {kind})",
             f"  files  {', '.join(board.device_files)} and the model (device/; `uquant deploy` copies them)",
             f"  RAM    ~{ram} B of {board.heap_bytes} B heap: "
             + (f"fits, {board.heap_bytes - ram} B to spare" if ok_ram else f"DOES NOT FIT, {ram - board.heap_bytes} B over"),
             f"  flash  {flash} B of {board.fs_bytes} B filesystem: "
             + (f"fits, {board.fs_bytes - flash} B to spare" if ok_fs else f"DOES NOT FIT, {flash - board.fs_bytes} B over")]
    return "\n".join(lines), ok_ram and ok_fs
