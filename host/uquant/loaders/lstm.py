"""torch's quantized LSTM (torch.ao.nn.quantized.LSTM, from FX's custom-module flow) unrolled into ordinary IR ops.

torch's quantized LSTM is a Python loop over time steps of a cell made of quantized ops (torch/ao/nn/quantizable/
modules/rnn.py, LSTMCell.forward):

    gates = add(igates(x_t), hgates(h))                  # two quantized Linears, QFunctional add
    i, f, g, o = gates.chunk(4, 1)
    i, f, o = sigmoid(i), sigmoid(f), sigmoid(o); g = tanh(g)   # quantized, fixed output qparams
    c = add(mul(f, c), mul(i, g))                        # QFunctional mul, mul, add
    h = mul(o, tanh(c))

Each of those is one IR op uquant already reproduces exactly (Linear, Add, Slice, Table, Mul), so the cell is
unrolled over the sequence length (fixed by the example input, like every shape in uquant): the state (h, c) is
carried from step to step in the device's activation buffers. Stacked layers (num_layers > 1) unroll one after
the other, each reading the previous layer's h at every step (torch stacks them with the same qparams). Each step is its own device node, but the steps'
equal weights, requantization words and code tables are one object in the generated module (codegen.shared_data),
so the board holds them once; only the per-node bookkeeping grows with the sequence length.

The initial state is zeros the model makes (x.new_zeros(1, N, hidden): FX's flow needs (h0, c0) passed, and
quantizes them with an observer that only saw zeros). Step 0's hgates reads those zero codes with their own scale,
which changes torch's rounding of the bias, so the zeros are a real device value: a Linear with all-zero weights
and no bias (its output is the zero point, exactly) feeding a real hgates Linear.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..ir import Add, ConversionError, Linear, Mul, QParams, Reshape, Slice
from .modules import code_table, linear_from_module

GRU_ADVICE = ("torch has no static quantized {kind}; use nn.LSTM with torch.ao.nn.quantizable.LSTM (FX custom "
              "module: PrepareCustomConfig().set_float_to_observed_mapping(nn.LSTM, "
              "torch.ao.nn.quantizable.LSTM), ConvertCustomConfig().set_observed_to_quantized_mapping("
              "torch.ao.nn.quantizable.LSTM, torch.ao.nn.quantized.LSTM)), which uquant converts")
FLOAT_LSTM_ADVICE = ("a float LSTM (it stayed float between dequantize and quantize): quantize it through FX's "
                     "custom-module flow, prepare_fx(..., prepare_custom_config=PrepareCustomConfig()"
                     ".set_float_to_observed_mapping(nn.LSTM, torch.ao.nn.quantizable.LSTM)) and convert_fx(..., "
                     "convert_custom_config=ConvertCustomConfig().set_observed_to_quantized_mapping("
                     "torch.ao.nn.quantizable.LSTM, torch.ao.nn.quantized.LSTM)), with zero initial states "
                     "made by the model (x.new_zeros(1, x.size(0), hidden)); uquant converts that")
ZERO_STATE = ("the initial state (h0, c0) must be zeros the model makes, e.g. h0 = x.new_zeros(1, x.size(0), "
              "hidden_size) passed as lstm(x, (h0, h0)); a state computed by the model or passed in is not "
              "supported (the device starts every sequence from zeros)")


def qfunctional_qparams(ff, dtype: str) -> QParams:
    return QParams(float(ff.scale), int(ff.zero_point), dtype)


def check_lstm(mod, where: str) -> None:
    """Refuse, naming the layer, what the unrolling does not cover."""
    if mod.bidirectional:
        raise ConversionError(f"{where}: bidirectional LSTMs are not supported (unidirectional only)")
    if not mod.batch_first:
        raise ConversionError(f"{where}: batch_first=False is not supported: uquant's inputs are batch-first; build "
                              "the LSTM with batch_first=True (same weights) and give it (batch, time, features)")
    for layer in mod.layers:
        if getattr(layer.layer_fw.cell, "split_gates", False):
            raise ConversionError(f"{where}: split_gates=True is not supported (one igates and one hgates Linear "
                                  "per layer only)")


def unroll(walker, name: str, mod, x, x_shape: tuple, states: list[QParams], where: str):
    """Append the unrolled cells' ops to the walker's graph, layer after layer. x: the input's Val (quantized, per
    sample (T, F)). states: the quantization of h0 and c0 (zeros, the same for every layer, as torch reshapes one
    tensor). Returns (names of the last layer's h_1..h_T, each layer's final h and c, and their qparams)."""
    import torch.ao.nn.quantized as nnq

    if len(x_shape) != 2:
        raise ConversionError(f"{where}: its input must be (batch, time, features), gets one sample of shape "
                              f"{x_shape}")
    T, F = x_shape
    H = int(mod.hidden_size)
    if x.q.dtype != "quint8" or any(q.dtype != "quint8" for q in states):
        raise ConversionError(f"{where}: the input and the state must be quint8")

    def add(op, inputs):
        op.name = walker.unique(op.name)
        return walker.add(op, inputs).name

    def step_input(t: int) -> str:
        piece = add(Slice(f"{name}.x{t}", 1, t, x.q, split=1), [x.value])
        return add(Reshape(f"{name}.x{t}.flat", (-1,), x.q), [piece])

    x0 = step_input(0)
    zeros = {}
    for q in states:  # codes = zero point: a Linear with zero weights and no bias gives exactly that
        if q not in zeros:
            zeros[q] = add(Linear(f"{name}.zero_state", np.zeros((H, F), np.int64), np.ones(H), np.zeros(H, np.int64),
                                  False, None, q), [x0])
    inputs = [x0] + [None] * (T - 1)  # layer 0 reads the input's time steps (sliced when first needed)
    hns, cns, qhs, qcs = [], [], [], []
    dt = x.q.dtype
    for li, layer in enumerate(mod.layers):
        cell = layer.layer_fw.cell
        lname = name if len(mod.layers) == 1 else f"{name}.l{li}"
        want_in = F if li == 0 else H
        if int(cell.input_size) != want_in:
            raise ConversionError(f"{where}: layer {li} expects {cell.input_size} features per time step, gets "
                                  f"{want_in}")
        if not isinstance(cell.igates, nnq.Linear) or not isinstance(cell.hgates, nnq.Linear):
            raise ConversionError(f"{where}: the cell's igates/hgates are not quantized Linears: is it converted?")
        q_gates = qfunctional_qparams(cell.gates, dt)
        q_fc = qfunctional_qparams(cell.fgate_cx, dt)
        q_ig = qfunctional_qparams(cell.igate_cgate, dt)
        q_c = qfunctional_qparams(cell.fgate_cx_igate_cgate, dt)
        q_h = qfunctional_qparams(cell.ogate_cy, dt)
        # the gates' element-wise maps, computed by torch once (the qparams are the same at every step)
        sig = code_table(f"{lname}.sigmoid", "sigmoid", q_gates, cell.input_gate, None)
        sig_f = code_table(f"{lname}.sigmoid", "sigmoid", q_gates, cell.forget_gate, None)
        sig_o = code_table(f"{lname}.sigmoid", "sigmoid", q_gates, cell.output_gate, None)
        tanh_g = code_table(f"{lname}.tanh", "tanh", q_gates, cell.cell_gate, None)
        tanh_c = code_table(f"{lname}.tanh", "tanh", q_c, torch.tanh, None)
        igates = linear_from_module(f"{lname}.igates", cell.igates)
        hgates = linear_from_module(f"{lname}.hgates", cell.hgates)
        if igates.out_features != 4 * H or hgates.in_features != H or hgates.out_features != 4 * H:
            raise ConversionError(f"{where}: igates/hgates sizes do not match hidden_size {H}")
        h, c = zeros[states[0]], zeros[states[1]]
        hs = []
        for t in range(T):
            xt = inputs[t] if inputs[t] is not None else step_input(t)
            p = f"{lname}.{t}"
            ig = add(dataclasses.replace(igates, name=f"{p}.igates"), [xt])
            hg = add(dataclasses.replace(hgates, name=f"{p}.hgates"), [h])
            gates = add(Add(f"{p}.gates", q_gates), [ig, hg])
            pieces = [add(Slice(f"{p}.{g}", 1, k, q_gates, chunks=4), [gates])
                      for k, g in enumerate(("input_gate", "forget_gate", "cell_gate", "output_gate"))]
            i_g, f_g, g_g, o_g = (add(dataclasses.replace(tab, name=f"{pc}.{tab.what}"), [pc])
                                  for tab, pc in zip((sig, sig_f, tanh_g, sig_o), pieces))
            fc = add(Mul(f"{p}.fgate_cx", q_fc), [f_g, c])
            ic = add(Mul(f"{p}.igate_cgate", q_ig), [i_g, g_g])
            c = add(Add(f"{p}.c", q_c), [fc, ic])
            tc = add(dataclasses.replace(tanh_c, name=f"{p}.tanh_c"), [c])
            h = add(Mul(f"{p}.h", q_h), [o_g, tc])
            hs.append(h)
        inputs = hs  # the next layer reads this one's h at each step (torch stacks them: the same codes)
        hns.append(h)
        cns.append(c)
        qhs.append(q_h)
        qcs.append(q_c)
    return hs, hns, cns, qhs, qcs


def selected_step(index) -> int | None:
    """out[:, t] / out[:, t, :] on a (batch, time, hidden) sequence -> t (None: another index)."""
    if not isinstance(index, tuple) or len(index) not in (2, 3):
        return None
    if index[0] != slice(None) or not isinstance(index[1], int) or isinstance(index[1], bool):
        return None
    if len(index) == 3 and index[2] not in (slice(None), Ellipsis):
        return None
    return index[1]


def is_zero_tensor(obj) -> bool:
    return (isinstance(obj, torch.Tensor) and not obj.is_quantized and obj.is_floating_point()
            and not bool(obj.any()))


__all__ = ["GRU_ADVICE", "FLOAT_LSTM_ADVICE", "ZERO_STATE", "check_lstm", "unroll", "selected_step",
           "is_zero_tensor"]
