"""A trained LSTM on synthetic 3-axis sensor sequences, quantized by torch and run exact by uquant.

    .venv/bin/python examples/sensor_lstm.py [--engine x86|fbgemm|qnnpack] [-o build/sensor_lstm_q.py] [--micropython]

Trains uquant.examples.SensorLSTM (LSTM(3 -> 16) over 20 time steps, its last hidden state -> Linear 4 classes)
to tell four vibration frequencies apart (uquant.examples.sensor_sequences: a sinusoid on a random mix of the
three axes, plus noise and offset), quantizes it with torch's FX custom-module flow for LSTMs, converts it with
uquant (which unrolls the LSTM over the 20 steps) and compares on held-out sequences: float, torch-quantized
and uquant accuracy, and how many output codes differ between the device runtime and torch (expected 0).

The functions are importable (tests/test_sensor_lstm.py uses them): train, evaluate.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import uquant
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "host"))
    import uquant
from uquant import codegen
from uquant.examples import SensorLSTM, quantize_lstm, sensor_sequences

STEPS = 20
EPOCHS = 12


def train(epochs: int = EPOCHS, n: int = 1200, seed: int = 0) -> SensorLSTM:
    """Adam on shuffled mini-batches of sensor_sequences(n); deterministic (fixed seeds, one thread)."""
    x, y = sensor_sequences(n, STEPS, seed=seed)
    torch.manual_seed(seed)
    model = SensorLSTM(3, 16, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(n).split(32):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def evaluate(model: SensorLSTM, engine: str, n_test: int = 400) -> dict:
    """Quantize (calibrated on 200 training sequences), convert, and compare on n_test new sequences."""
    x_cal, _ = sensor_sequences(200, STEPS, seed=0)
    x, y = sensor_sequences(n_test, STEPS, seed=1)
    q = quantize_lstm(model, x_cal, engine)
    converted = uquant.convert(q, x[:8], engine=engine, module_name="sensor_lstm_q")
    out = converted.plan.output
    with torch.no_grad():
        float_pred = model(x).argmax(-1).numpy()
        want = torch.quantize_per_tensor(q(x), out.scale, out.zero_point, torch.quint8).int_repr().numpy()
    got = converted.run(x.reshape(n_test, -1).numpy())  # the device runtime, in CPython
    labels = y.numpy()
    return {"converted": converted, "x": x, "codes": got, "float_acc": float((float_pred == labels).mean()),
            "quant_acc": float((want.argmax(-1) == labels).mean()),
            "uquant_acc": float((got.argmax(-1) == labels).mean()),
            "codes_differ": int((got != want.astype(got.dtype)).sum()), "codes_total": int(want.size)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("x86", "fbgemm", "qnnpack"), default="x86")
    ap.add_argument("-o", "--output", default=str(ROOT / "build" / "sensor_lstm_q.py"), help="the module to write")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--micropython", action="store_true",
                    help="also run the test sequences inside the real MicroPython interpreter (WebAssembly)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    r = evaluate(train(args.epochs), args.engine)
    converted = r["converted"]
    print(f"sensor LSTM, {args.engine}: accuracy float {r['float_acc']:.1%}, torch quantized {r['quant_acc']:.1%}, "
          f"uquant {r['uquant_acc']:.1%} on 400 held-out sequences")
    print(f"output codes that differ from torch's: {r['codes_differ']} of {r['codes_total']}")
    if args.micropython:
        from uquant.hosts.mpmodule import run_batch

        codes = uquant.quantize_input(r["x"].reshape(len(r["x"]), -1).numpy(), converted.plan.input)
        mp, _, heap = run_batch(converted.source, converted.module_name, codes, heap=True)
        print(f"MicroPython (wasm): {int((np.asarray(mp) != r['codes']).sum())} codes differ from CPython's; "
              f"run() allocates {heap} B")
    out = Path(args.output)
    converted.save(out)
    mem = codegen.memory(converted.plan)
    print(f"wrote {out}: {len(converted.plan.steps)} device steps for the 20 unrolled time steps; weights "
          f"{mem['weights']} B, parameters {mem['params']} B, activations {mem['buffers']} B")
    print(f"on a board: uquant deploy {out} --board pico --port auto; then uquant predict --data SEQ.csv --port auto")
    return 1 if r["codes_differ"] else 0


if __name__ == "__main__":
    sys.exit(main())
