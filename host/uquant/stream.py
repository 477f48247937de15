"""Streamed weights (`uquant convert --weights`): the dense and conv layers' weights and requantization words go
to a binary file next to the module, which the device reads a chunk of output channels at a time into one buffer
(uquant_rt.Weights), so a model bigger than the board's RAM runs from its flash filesystem.

File layout, per streamed layer, per chunk of `rows` output channels: their rows of weights (K bytes each, plain
row order), then their requantization words (7 int32 each). The module names the file, its size, its CRC-32 and
the buffer size (covered by the module's checksum), and each layer's offset and rows per chunk. Layers with the
same weights and words (an unrolled LSTM's steps) share one copy, as they share one bytes constant in a module.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from .plan import DenseStep, Plan

DEFAULT_BUFFER = 8192  # bytes: the chunk buffer the device allocates at import
WORDS = 28  # bytes of requantization words per output channel


@dataclass
class Stream:
    """Where each streamed step's chunks sit in the weights file: {step index: (offset, rows per chunk)}."""
    file: str
    buffer: int
    layers: dict[int, tuple[int, int]] = field(default_factory=dict)
    data: bytes = b""

    @property
    def spec(self) -> tuple[str, int, int, int]:
        """What the module passes to Model as weights=: file name, size, CRC-32, buffer size."""
        return (self.file, len(self.data), zlib.crc32(self.data), self.buffer)


def streamable(s) -> bool:
    """Dense and conv layers stream; a layer with int16-saturating pairs (x86 without VNNI) keeps its weights in
    the module: its per-input correction reads weights of every channel before the layer runs."""
    return isinstance(s, DenseStep) and s.kind in ("dense", "conv") and not s.sat_pairs


def rows_per_chunk(K: int, N: int, buffer: int) -> int:
    return max(1, min(N, buffer // (K + WORDS)))


def build(plan: Plan, file: str, buffer: int = DEFAULT_BUFFER) -> Stream:
    """Lay out the weights file for `plan` with chunks that fit `buffer` bytes (a layer whose one channel is
    bigger gets a buffer of one channel)."""
    from .codegen import words_bytes

    if buffer < 64:
        raise ValueError(f"--weights-buffer {buffer}: too small to be useful (a few KB is typical)")
    parts, layers, used, off, at = [], {}, 0, 0, {}
    for i, s in enumerate(plan.steps):
        if not streamable(s):
            continue
        K = len(s.weights) // s.N
        rows = rows_per_chunk(K, s.N, buffer)
        key = (bytes(s.weights), tuple(s.words))  # K and N follow from these, and rows from K and N
        if key in at:
            layers[i] = at[key]
            continue
        at[key] = (off, rows)
        W = np.frombuffer(bytes(s.weights), np.uint8).reshape(s.N, K)
        P = np.frombuffer(words_bytes(s.words), np.uint8).reshape(s.N, WORDS)
        for n0 in range(0, s.N, rows):
            parts += [W[n0:n0 + rows].tobytes(), P[n0:n0 + rows].tobytes()]
        layers[i] = (off, rows)
        off += s.N * (K + WORDS)
        used = max(used, rows * (K + WORDS))
    if not layers:
        raise ValueError("--weights: the model has no dense or conv layer whose weights can stream")
    return Stream(file, used, layers, b"".join(parts))


def held(plan: Plan, stream: Stream) -> dict[str, int]:
    """Bytes a streamed model holds on the board in place of codegen.memory's weights and params: what stays in
    the module (layers that do not stream, exceptions, tables) and the chunk buffer."""
    from .codegen import conv_kernel_extra, memory

    mem = dict(memory(plan))
    # memory() counts shared data once: take it off once, and not where a layer kept in the module shares it
    kept = [s for i, s in enumerate(plan.steps) if isinstance(s, DenseStep) and i not in stream.layers]
    weights = {s.weights for s in kept}
    params = {(tuple(s.words), tuple(s.fixes), s.table) for s in kept}
    for i in stream.layers:
        s = plan.steps[i]
        if s.weights not in weights:
            weights.add(s.weights)
            mem["weights"] -= len(s.weights)
            if s.kind == "dense":
                mem["dense_weights"] -= len(s.weights)
        if (tuple(s.words), tuple(s.fixes), s.table) not in params:
            params.add((tuple(s.words), tuple(s.fixes), s.table))
            mem["params"] -= 4 * len(s.words)
        if s.kind != "dense":  # the asm conv kernels decline streamed layers
            mem["conv_kernel_extra"] -= conv_kernel_extra(s.geometry, len(s.weights))
    mem["stream_buffer"] = stream.buffer
    return mem
