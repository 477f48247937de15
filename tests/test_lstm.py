"""Quantized LSTM (torch.ao.nn.quantized.LSTM through FX's custom-module flow): unrolled over the time steps into
ordinary device nodes, the state carried in activation buffers, every output byte equal to torch's; GRU and the
LSTM forms uquant does not unroll are refused by name, with what to do."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import uquant
from uquant import examples
from uquant.hosts.mpmodule import run_batch
from test_no_floats import float_violations
from uquant.ir import ConversionError

N_SEQUENCES = 50


@pytest.fixture(autouse=True)
def _one_thread():
    """torch's quantized LSTM is a Python loop of tiny ops: on a shared 2-core machine, thread hand-offs make it 30x
    slower. The tensors are far below torch's parallel grain, so the bytes do not depend on the thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_lstm_classifier_exact_per_time_step(engine, report):
    q, x = examples.lstm_classifier(engine, hidden=16, steps=20)
    converted = uquant.convert(q, x[:2], engine=engine, quiet=True)  # self-check: 2 sequences, CPython runtime
    kinds = [type(op).__name__ for op in converted.graph.ops]
    assert kinds.count("Mul") == 3 * 20 and kinds.count("Linear") == 2 * 20 + 2  # 20 steps, zero state, fc
    # the steps share one copy of igates/hgates weights, words and code tables (codegen.shared_data)
    assert uquant.codegen.memory(converted.plan)["weights"] == 3 * 64 + 16 * 64 + 3 * 16 + 16 * 4  # + zero state, fc
    assert len(converted.source) < 150_000
    assert float_violations(converted.source) == []
    xt, _ = examples.sensor_sequences(N_SEQUENCES, 20, seed=7)
    xt = xt * 1.5  # beyond the calibrated range too: saturated codes
    with torch.no_grad():  # one sequence per call, as on the device
        want = np.concatenate([q(xt[i:i + 1]).numpy() for i in range(N_SEQUENCES)])
    codes = uquant.api.quantize_input(xt.reshape(N_SEQUENCES, -1).numpy(), converted)
    got, preds, heap = run_batch(converted.source, converted.module_name, codes, host="wasm", heap=True)
    assert heap == 0  # the 32-bit MicroPython allocates nothing per sequence: the state lives in the buffers
    out = converted.plan.output
    assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)
    assert np.array_equal(preds, want.argmax(1))
    assert list(converted.run_codes(codes[0])) == got[0].tolist()  # and the same runtime in CPython
    report(f"lstm_classifier {engine:<8}: LSTM(3, 16) over 20 steps, {N_SEQUENCES} sequences x 4 outputs equal to "
           "torch (wasm MicroPython)")


def fx_quantize(model, x, engine="qnnpack", custom=True):
    import torch.ao.nn.quantizable as nnqa
    import torch.ao.nn.quantized as nnq
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import ConvertCustomConfig, PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = engine
    if not custom:
        prepared = prepare_fx(model.eval(), get_default_qconfig_mapping(engine), (x,))
        prepared(x)
        return convert_fx(prepared)
    prepared = prepare_fx(model.eval(), get_default_qconfig_mapping(engine), (x,),
                          prepare_custom_config=PrepareCustomConfig().set_float_to_observed_mapping(nn.LSTM, nnqa.LSTM))
    prepared(x)
    return convert_fx(prepared, convert_custom_config=ConvertCustomConfig().set_observed_to_quantized_mapping(
        nnqa.LSTM, nnq.LSTM))


class FinalState(nn.Module):
    """h_n instead of out[:, -1], the zero state from a buffer: the same numbers."""

    def __init__(self):
        super().__init__()
        self.lstm, self.fc = nn.LSTM(2, 8, batch_first=True), nn.Linear(8, 3)
        self.register_buffer("h0", torch.zeros(1, 1, 8))

    def forward(self, x):
        h0 = self.h0.expand(1, x.size(0), 8)
        _, (h, c) = self.lstm(x, (h0, h0))
        return self.fc(h[-1])


def test_final_state_and_buffer_zero_state_exact(tmp_path):
    from uquant.info import module_memory

    torch.manual_seed(1)
    x = torch.randn(16, 6, 2)
    q = fx_quantize(FinalState(), x)
    converted = uquant.convert(q, x[:4], engine="qnnpack", quiet=True)  # 4 sequences, self-checked
    assert converted.plan.input_shape == (6, 2)
    mem = module_memory(converted.save(tmp_path / "final_q.py"))  # shared objects counted once, as codegen does
    assert mem["weights"] == uquant.codegen.memory(converted.plan)["weights"] == 2 * 32 + 8 * 32 + 2 * 8 + 8 * 3


@pytest.mark.parametrize("engine,bias", [("x86", True), ("qnnpack", True), ("qnnpack", False)])
def test_two_layer_lstm_exact(engine, bias):
    """num_layers=2: the second layer reads the first's h at every step; out[:, -1] is the last layer's. Also
    without biases."""
    torch.manual_seed(2)
    x = torch.randn(16, 6, 2)
    q = fx_quantize(Configurable(batch_first=True, num_layers=2, bias=bias), x, engine)
    converted = uquant.convert(q, x[:6], engine=engine, quiet=True)  # 6 sequences, self-checked
    linears = [op for op in converted.graph.ops if type(op).__name__ == "Linear"]
    assert len(linears) == 2 * 2 * 6 + 2  # + zero state, fc
    gates = [op for op in linears if ".l" in op.name]
    assert all(op.bias is not None and np.any(op.bias) for op in gates) == bias  # torch gives bias=False zeros


def test_two_layer_final_state_refused():
    class Net(Configurable):
        def forward(self, x):
            h0 = x.new_zeros(2, x.size(0), 4)
            _, (h, _) = self.lstm(x, (h0, h0))
            return self.fc(h[-1])

    x = torch.randn(4, 5, 2)
    q = fx_quantize(Net(batch_first=True, num_layers=2), x)
    with pytest.raises(ConversionError, match="final state of a 2-layer LSTM.*use out"):
        uquant.convert(q, x, engine="qnnpack", quiet=True)


class Configurable(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.lstm, self.fc = nn.LSTM(2, 4, **kw), nn.Linear(8 if kw.get("bidirectional") else 4, 2)

    def forward(self, x):
        n = x.size(0) if self.lstm.batch_first else x.size(1)
        h0 = x.new_zeros(self.lstm.num_layers * (2 if self.lstm.bidirectional else 1), n, 4)
        out, _ = self.lstm(x, (h0, h0))
        return self.fc(out[:, -1])


@pytest.mark.parametrize("kw,match", [
    ({"batch_first": True, "bidirectional": True}, "bidirectional LSTMs are not supported"),
    ({"batch_first": False}, "batch_first=False is not supported"),
])
def test_unsupported_lstm_forms_refused_by_name(kw, match):
    x = torch.randn(4, 5, 2)
    q = fx_quantize(Configurable(**kw), x)
    with pytest.raises(ConversionError, match=match) as info:
        uquant.convert(q, x, engine="qnnpack", quiet=True)
    assert "module 'lstm' (LSTM)" in str(info.value)


def test_explicit_state_refused():
    class GivenState(nn.Module):  # torch's own tests' form: the state is an input of the model
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(2, 4, batch_first=True)

        def forward(self, x, h0, c0):
            return self.lstm(x, (h0, c0))[0]

    x, h = torch.randn(4, 5, 2), torch.randn(1, 4, 4)
    import torch.ao.nn.quantizable as nnqa
    import torch.ao.nn.quantized as nnq
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import ConvertCustomConfig, PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "qnnpack"
    prepared = prepare_fx(GivenState().eval(), get_default_qconfig_mapping("qnnpack"), (x, h, h),
                          prepare_custom_config=PrepareCustomConfig().set_float_to_observed_mapping(nn.LSTM, nnqa.LSTM))
    prepared(x, h, h)
    q = convert_fx(prepared, convert_custom_config=ConvertCustomConfig().set_observed_to_quantized_mapping(
        nnqa.LSTM, nnq.LSTM))
    with pytest.raises(ConversionError, match="it takes 3 .module 'lstm' is an LSTM: the initial state .h0, c0. "
                                              "must be zeros the model makes"):
        uquant.convert(q, x, engine="qnnpack", quiet=True)


@pytest.mark.parametrize("cell", [nn.GRU, nn.RNN])
def test_gru_refused_with_the_lstm_alternative(cell):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.rnn = nn.Linear(4, 4), cell(4, 4, batch_first=True)

        def forward(self, x):
            return self.rnn(self.fc(x))[0]

    x = torch.randn(8, 3, 4)
    q = fx_quantize(Net(), x)
    with pytest.raises(ConversionError) as info:
        uquant.convert(q, x, engine="qnnpack", quiet=True)
    msg = str(info.value)
    name = cell.__name__
    assert f"module 'rnn' ({name})" in msg and f"{name} is not supported: torch has no static quantized {name}" in msg
    assert "use nn.LSTM with torch.ao.nn.quantizable.LSTM (FX custom module" in msg and "which uquant converts" in msg


def test_float_lstm_points_to_the_custom_module_flow():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.rnn = nn.Linear(4, 4), nn.LSTM(4, 4, batch_first=True)

        def forward(self, x):
            return self.rnn(self.fc(x))[0]

    x = torch.randn(8, 3, 4)
    q = fx_quantize(Net(), x, custom=False)  # without the custom-module mapping: the LSTM stays float
    with pytest.raises(ConversionError, match="set_float_to_observed_mapping"):
        uquant.convert(q, x, engine="qnnpack", quiet=True)


class Eager(nn.Module):
    """Eager mode's custom-module flow: no state passed, torch quantizes zeros with scale 1.0, zero point 0."""

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.lstm, self.fc = nn.LSTM(3, 8, batch_first=True), nn.Linear(8, 4)

    def forward(self, x):
        out, _ = self.lstm(self.quant(x))
        return self.dequant(self.fc(out[:, -1]))


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_eager_lstm_without_state_exact(engine):
    import torch.ao.nn.quantizable as nnqa
    import torch.ao.nn.quantized as nnq

    torch.backends.quantized.engine = engine
    torch.manual_seed(0)
    model = Eager().eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig(engine)
    prepared = torch.ao.quantization.prepare(
        model, prepare_custom_config_dict={"float_to_observed_custom_module_class": {nn.LSTM: nnqa.LSTM}})
    x, _ = examples.sensor_sequences(32, 10)
    prepared(x)
    q = torch.ao.quantization.convert(
        prepared, convert_custom_config_dict={"observed_to_quantized_custom_module_class": {nnqa.LSTM: nnq.LSTM}})
    converted = uquant.convert(q, x[:8] * 1.5, engine=engine, quiet=True)  # 8 sequences, self-checked
    zero = [op for op in converted.graph.ops if op.name == "lstm.zero_state"]
    assert len(zero) == 1 and (zero[0].out.scale, zero[0].out.zero_point) == (1.0, 0)


def test_lstm_on_the_picos_thumb_kernels():
    """Laid out for the pico (--board pico): the 42 dense nodes on device/uquant_thumb.py's armv6m code, emulated
    (unicorn), the rest on the bytecode runtime; 10 sequences equal torch."""
    from uquant.hosts import thumb
    from uquant.runtime import load_source, rt

    q, x = examples.lstm_classifier("qnnpack")
    converted = uquant.convert(q, x[:2], engine="qnnpack", quiet=True, board="pico")
    xt, _ = examples.sensor_sequences(10, 20, seed=3)
    with torch.no_grad():
        want = np.concatenate([q(xt[i:i + 1]).numpy() for i in range(10)])
    codes = uquant.api.quantize_input(xt.reshape(10, -1).numpy(), converted)
    rt.register("uquant_thumb", thumb.emulated_tier())
    rt.TIER = "thumb"
    try:
        module = load_source(converted.source, converted.module_name)
        assert module.model.tier == "thumb" and sum(n.fast is not None for n in module.model.layers) == 42
        got = np.array([list(bytes(module.run(bytes(map(int, c))))) for c in codes])
    finally:
        rt.TIER = None
        rt.register("uquant_thumb", None)
    out = converted.plan.output
    assert np.array_equal(uquant.engines.dequantize(got, out.scale, out.zero_point), want)


class WholeSequence(nn.Module):
    """Every step's h: flattened into the classifier, or returned as it is (batch, time, hidden)."""

    def __init__(self, flat: bool):
        super().__init__()
        self.flat = flat
        self.lstm, self.fc = nn.LSTM(2, 4, batch_first=True), nn.Linear(5 * 4, 3)

    def forward(self, x):
        h0 = x.new_zeros(1, x.size(0), 4)
        out, _ = self.lstm(x, (h0, h0))
        return self.fc(out.flatten(1)) if self.flat else out


@pytest.mark.parametrize("flat", [True, False], ids=["flatten-fc", "returned"])
def test_whole_output_sequence_exact(flat):
    torch.manual_seed(3)
    x = torch.randn(16, 5, 2)
    q = fx_quantize(WholeSequence(flat), x, "x86")
    converted = uquant.convert(q, x[:6], engine="x86", quiet=True)  # 6 sequences, self-checked
    assert "lstm.out" in [op.name for op in converted.graph.ops]
    assert converted.plan.n_out == (3 if flat else 5 * 4)


def test_pickled_lstm_file_needs_and_takes_the_input_shape(tmp_path, capsys):
    from conftest import run_cli

    torch.manual_seed(4)
    x = torch.randn(8, 4, 2)
    torch.save(fx_quantize(FinalState(), x), tmp_path / "lstm.pt")
    rc, _, err = run_cli(capsys, "convert", tmp_path / "lstm.pt", "--allow-pickle", "--engine", "qnnpack",
                         "-o", tmp_path / "a_q.py")
    assert rc != 0 and "an LSTM is unrolled over the sequence length" in err and "--input-shape TIME,FEATURES" in err
    rc, out, _ = run_cli(capsys, "convert", tmp_path / "lstm.pt", "--allow-pickle", "--engine", "qnnpack",
                         "--input-shape", "4,2", "-o", tmp_path / "b_q.py")
    assert rc == 0 and (tmp_path / "b_q.py").exists()


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_wide_hidden_crosses_torchs_simd_blocks(engine):
    """hidden 72: the gates' add runs 288 elements (SIMD blocks and a scalar tail on x86), each gate 72."""
    q, x = examples.lstm_classifier(engine, hidden=72, steps=5)
    xt, _ = examples.sensor_sequences(6, 5, seed=9)
    uquant.convert(q, xt * 1.5, engine=engine, quiet=True)  # 6 sequences, self-checked


def test_streamed_lstm_keeps_one_copy_of_the_shared_weights():
    """--weights: the unrolled steps share one copy of each gate's weights and words in the file, as in a module;
    the streamed model gives the same bytes."""
    from uquant import stream

    q, x = examples.lstm_classifier("qnnpack", hidden=16, steps=20)
    ram = uquant.convert(q, x[:2], engine="qnnpack", quiet=True)
    streamed = uquant.convert(q, x[:2], engine="qnnpack", quiet=True, weights=True)
    st = streamed.stream
    steps = streamed.plan.steps
    unique = {(bytes(steps[i].weights), tuple(steps[i].words)) for i in st.layers}
    assert len(st.layers) > len(unique) == len(set(st.layers.values()))  # shared layers, one offset each
    assert len(st.data) == sum(len(w) + 4 * len(p) for w, p in unique) < 10_000  # 8,288 B (96,672 B with a copy a step)
    mem = stream.held(streamed.plan, st)
    assert mem["weights"] == uquant.codegen.memory(ram.plan)["weights"] - sum(len(w) for w in {w for w, _ in unique})
    xt, _ = examples.sensor_sequences(8, 20, seed=3)
    codes = uquant.api.quantize_input(xt.reshape(8, -1).numpy(), ram)
    assert np.array_equal(streamed.run_codes(codes), ram.run_codes(codes))
