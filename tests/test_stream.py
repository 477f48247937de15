"""Streamed weights (`uquant convert --weights`): dense and conv weights in a file next to the module, read a chunk
of output channels at a time into one buffer. Byte for byte the in-RAM module's and torch's outputs; a 270k-parameter
autoencoder holds < 64 KB of heap; a truncated, altered, foreign or missing weights file is refused."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import randmodels
import uquant
from uquant import examples
from uquant.runtime import rt
from uquant.stream import streamable

N_INPUTS = 20


def _pairs(seed: int):
    """(torch model, converted in RAM, converted streamed with a small buffer, input codes, torch's final codes)
    for random MLPs and CNNs on both engines; the small buffer splits most layers into several chunks."""
    rng = np.random.default_rng(seed)
    for engine in ("fbgemm", "qnnpack"):
        chain = randmodels.random_chain(rng, engine)
        conv, shape = randmodels.random_conv(rng, engine, 2)
        for model, shape in ((chain, None), (conv, shape)):
            ram = uquant.convert(model, engine=engine, input_shape=shape)
            codes = randmodels.random_codes(rng, N_INPUTS, ram.plan.n_in)
            try:
                want = model.layer_codes(codes if shape is None else codes.reshape((-1,) + shape))[-1]
            except RuntimeError:  # a shape torch refuses
                continue
            streamed = uquant.convert(model, engine=engine, input_shape=shape, weights=True, weights_buffer=200)
            yield model, ram, streamed, codes, np.asarray(want).reshape(len(codes), -1)


@pytest.fixture(scope="module")
def pairs():
    # the builders set torch's engine; a module-scoped fixture runs outside conftest's per-test restore
    with uquant.api.torch_engine(torch.backends.quantized.engine):
        return list(_pairs(7))


def test_streamed_equals_in_ram_and_torch(pairs, report):
    compared = bad = chunked = 0
    for _, ram, streamed, codes, want in pairs:
        st = streamed.stream
        assert "weights=(" in streamed.source and "weights=(" not in ram.source
        # every dense/conv layer streams but those with int16-saturating pairs (made for a CPU without VNNI)
        assert set(st.layers) == {i for i, s in enumerate(streamed.plan.steps) if streamable(s)}
        chunked += sum(rows < streamed.plan.steps[i].N for i, (off, rows) in st.layers.items())
        got = streamed.run_codes(codes)
        compared += got.size
        bad += int((got != ram.run_codes(codes)).sum()) + int((got != want).sum())
    report(f"streamed weights: {compared} outputs of {len(pairs)} random MLPs/CNNs ({chunked} layers in several "
           f"chunks) against the in-RAM module and torch, {bad} mismatches")
    assert bad == 0 and chunked >= 1


def test_streamed_on_micropython_wasm_and_viper(pairs):
    """The same bytes on the 32-bit wasm port (bytecode) and the unix port's viper tier (streamed layers decline
    the fast kernels and run on bytecode ones), with no heap allocated per inference."""
    from uquant.bench import mpy_bytes
    from uquant.hosts import unix, wasm

    for k, (_, ram, streamed, codes, want) in enumerate(pairs[:2]):
        name = f"s{k}_q"
        streamed.module_name = name
        st = streamed.stream
        rows = [list(map(int, r)) for r in codes]
        prog = (f"import {name} as m\nfor x in {rows!r}:\n    print(list(m.run(x)))\n")
        files = {"/lib/uquant_rt.mpy": mpy_bytes(rt.__loader__.get_source("uquant_rt"), "uquant_rt"),
                 f"/lib/{name}.mpy": mpy_bytes(streamed.source, name), f"/lib/{st.file}": st.data}
        out = wasm.run_micropython([prog, f"x = bytes({rows[0]!r})\n" + wasm.heap_delta_snippet("m.run(x)")], files)
        assert [eval(line) for line in out.splitlines()[:-1]] == want.tolist()
        assert wasm.parse_heap_delta(out) == 0
        if unix.missing_reason() is None:
            from uquant.runtime import DEVICE_DIR
            ufiles = {"/lib/uquant_rt.py": (DEVICE_DIR / "uquant_rt.py").read_text(),
                      "/lib/uquant_viper.py": (DEVICE_DIR / "uquant_viper.py").read_text(),
                      f"/lib/{name}.py": streamed.source, f"/lib/{st.file}": st.data}
            out = unix.run_micropython("import uquant_rt\nuquant_rt.TIER = 'viper'\n" + prog
                                       + "print(m.model.tier)\n", ufiles)
            lines = out.splitlines()
            assert lines[-1] == "viper" and [eval(line) for line in lines[:-1]] == want.tolist()


@pytest.fixture(scope="module")
def autoencoder():
    # qnnpack: on x86 without VNNI (fbgemm's int16 pairs) some layers would keep their weights in RAM
    with uquant.api.torch_engine("qnnpack"):  # restored after: the builder sets torch's engine (see pairs)
        model, x = examples.anomaly_autoencoder("qnnpack")
        c = uquant.convert(model, x[:8], engine="qnnpack", weights=True, module_name="ae_q")  # self-checked
    return model, x, c


def test_270k_parameter_autoencoder_holds_under_64k_on_32bit_micropython(autoencoder, report):
    from uquant import bench

    model, x, c = autoencoder
    from uquant.info import _torch_parameters

    params = _torch_parameters(c.plan)[0]
    assert params > 200_000
    codes = uquant.quantize_input(x[0].numpy(), c.plan.input)
    f = bench.wasm_figures(c, codes)
    report(f"autoencoder, {params} parameters, weights streamed ({len(c.stream.data)} B file, {c.stream.buffer} B "
           f"buffer): the model holds {f['held']} B of heap on the 32-bit wasm MicroPython, {f['heap']} B allocated "
           f"per inference, {f['us'] / 1000:.0f} ms per inference")
    assert f["held"] < 64 * 1024 and f["heap"] == 0


def test_autoencoder_on_the_virtual_board(autoencoder, tmp_path, report):
    """`uquant sim` (unix port, viper tier): deploy copies the weights file, outputs equal torch's, heap held by
    the model under 64 KB (a 64-bit port: pointers are twice a board's)."""
    from uquant.sim import Sim, missing_reason

    if missing_reason("unix") is not None:
        pytest.skip(missing_reason("unix"))
    import uquant.board
    from uquant.engines import dequantize

    model, x, c = autoencoder
    module = c.save(tmp_path / "ae_q.py")
    assert (tmp_path / "ae_q.bin").read_bytes() == c.stream.data
    codes = uquant.quantize_input(x[:3].numpy(), c.plan.input)
    with torch.no_grad(), uquant.api.torch_engine("qnnpack"):  # torch's output, dequantized: compare as floats
        want = np.concatenate([model(x[i:i + 1]).numpy() for i in range(3)])
    with Sim("unix", tmp_path / "flash") as s, uquant.board.connect(s.device, board="sim") as b:
        done = b.deploy(module)
        assert "ae_q.bin" in done["files"] and "ae_q.bin" in done["copied"]
        assert (tmp_path / "flash" / "ae_q.bin").read_bytes() == c.stream.data
        got = np.array(b.run(codes=codes.tolist()))
        assert np.array_equal(dequantize(got, c.plan.output.scale, c.plan.output.zero_point), want)
        out = b.exec("import gc, sys\nfor k in list(sys.modules):\n if k == 'ae_q': del sys.modules[k]\n"
                     "gc.collect()\na = gc.mem_alloc()\nimport ae_q\ngc.collect()\nprint(gc.mem_alloc() - a)\n")
        held = int(out.split()[-1])
    report(f"autoencoder on the virtual board (unix port, 64-bit): {held} B of heap held by the streamed model")
    assert held < 64 * 1024


def _import_error(c, data: bytes | None, tmp_path) -> str:
    src = tmp_path / "m_q.py"
    src.write_text(c.source)
    wf = tmp_path / c.stream.file
    wf.unlink(missing_ok=True)
    if data is not None:
        wf.write_bytes(data)
    with pytest.raises(rt.CorruptModel) as e:
        uquant.runtime.load_file(src)
    return str(e.value)


def test_bad_weights_files_are_refused(pairs, tmp_path):
    c = pairs[0][2]
    c.module_name = "m_q"
    data = c.stream.data
    assert "is missing" in _import_error(c, None, tmp_path)
    assert f"{len(data) - 5} B, expected {len(data)} B" in _import_error(c, data[:-5], tmp_path)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    assert "CRC mismatch" in _import_error(c, bytes(flipped), tmp_path)
    other = pairs[2][2]  # another model's file (resized to this one's length)
    assert "CRC mismatch" in _import_error(c, (other.stream.data * 50)[:len(data)], tmp_path)
    # the module's own checksum covers the file's CRC: a module edited to accept another file fails too
    src = re.sub(r"(weights=\('m_q\.bin', \d+, )(\d+)", lambda m: m.group(1) + str(int(m.group(2)) ^ 1), c.source)
    assert src != c.source
    with pytest.raises(rt.CorruptModel, match="checksum mismatch"):
        uquant.runtime.load_source(src, "m_q", tmp_path / "m_q.py")


def test_cli_convert_weights_and_deploy_plan(tmp_path, capsys):
    from uquant.cli import main
    from uquant.deploy import plan_files

    model, x = examples.anomaly_autoencoder("qnnpack")
    torch.jit.save(torch.jit.trace(model, x[:1]), tmp_path / "ae.pt")
    out = tmp_path / "b" / "ae_q.py"
    assert main(["info", str(tmp_path / "ae.pt"), "--engine", "qnnpack", "--board", "pico"]) == 1
    text = capsys.readouterr().out
    assert "DOES NOT FIT" in text and "with --weights (streamed from flash)" in text and "convert with --weights" in text
    assert main(["convert", str(tmp_path / "ae.pt"), "--engine", "qnnpack", "-o", str(out), "--weights",
                 "--weights-buffer", "4096", "--board", "pico"]) == 0
    assert "stream from" in capsys.readouterr().out and (out.parent / "ae_q.bin").is_file()
    assert main(["info", str(out), "--board", "pico"]) == 0
    assert "fits" in capsys.readouterr().out
    names = [f.name for f in plan_files(out, ("uquant_rt.py",), {"name": "micropython", "mpy_version": None,
                                                                  "mpy_arch": None})]
    assert names == ["uquant_rt.py", "ae_q.bin", "ae_q.py"]
    (out.parent / "ae_q.bin").unlink()
    with pytest.raises(Exception, match="not next to it"):
        plan_files(out, (), {"name": "micropython", "mpy_version": None, "mpy_arch": None})


def test_convert_for_a_board_streams_when_its_ram_cannot_hold_the_weights(tmp_path, capsys):
    # the autoencoder does not fit a Pico's heap with its weights in the module; streamed it does, so `convert
    # --board pico` streams by itself (and says why); --hold-weights keeps them; a small model is never streamed
    from uquant.cli import main

    model, x = examples.anomaly_autoencoder("qnnpack")
    torch.jit.save(torch.jit.trace(model, x[:1]), tmp_path / "ae.pt")
    out = tmp_path / "auto" / "ae_q.py"
    assert main(["convert", str(tmp_path / "ae.pt"), "--engine", "qnnpack", "-o", str(out), "--board", "pico"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"note: weights streamed from ae_q\.bin \(as with --weights\): held in RAM the model does not "
                     r"fit the pico \(~\d+ B of \d+ B heap: DOES NOT FIT.*--hold-weights", text), text
    assert "stream from" in text and (out.parent / "ae_q.bin").is_file()
    held = tmp_path / "held" / "ae_q.py"
    assert main(["convert", str(tmp_path / "ae.pt"), "--engine", "qnnpack", "-o", str(held), "--board", "pico",
                 "--hold-weights"]) == 0
    assert "stream" not in capsys.readouterr().out and not (held.parent / "ae_q.bin").exists()
    small = uquant.convert(randmodels.random_chain(np.random.default_rng(0), "qnnpack"), engine="qnnpack",
                           board="pico")
    assert small.stream is None and not any("streamed" in n for n in small.graph.notes)


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_small_cnn_with_grouped_convs_streams_in_chunks(engine):
    """conv, depthwise conv, pointwise conv, linear (FX): every layer in several chunks (but one with
    int16-saturating pairs, on a CPU without VNNI); the self-check runs the streamed module against torch on 50
    inputs, and it equals the in-RAM module."""
    nn = torch.nn
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                          nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 10)).eval()
    x = torch.randn(50, 1, 8, 8)
    q = examples._fx_quantize(model, x, engine)
    streamed = uquant.convert(q, x, engine=engine, weights=True, weights_buffer=64)  # self-checked against torch
    ram = uquant.convert(q, engine=engine, input_shape=(1, 8, 8))
    assert all(rows < streamed.plan.steps[i].N for i, (_, rows) in streamed.stream.layers.items())
    sat = sum(bool(s.sat_pairs) for s in streamed.plan.steps)
    assert len(streamed.stream.layers) == 4 - sat and sat <= 1
    codes = uquant.quantize_input(x.reshape(50, -1).numpy(), ram.plan.input)
    assert np.array_equal(streamed.run_codes(codes), ram.run_codes(codes))


def test_thumb_tier_and_pico_layout(pairs):
    """Laid out for the pico (thumb order for dense weights), streamed layers are written in plain rows and run on
    the bytecode kernels under the (emulated) thumb tier: the same bytes as torch."""
    from uquant.hosts import thumb

    tier = thumb.emulated_tier()
    rt.register("uquant_thumb", tier)
    rt.TIER = "thumb"
    try:
        for _, ram, streamed, codes, want in pairs:
            laid = streamed.for_board("pico")
            # dense layers in thumb order: only those that stay in the module (int16-saturating pairs)
            held = [s for i, s in enumerate(laid.plan.steps) if s.kind == "dense" and i not in laid.stream.layers]
            assert laid.source.count("'thumb',") == len(held) and all(s.sat_pairs for s in held)
            assert laid.device_module.model.tier == "thumb"
            assert np.array_equal(laid.run_codes(codes), want)
    finally:
        rt.TIER = None
        rt.register("uquant_thumb", None)
