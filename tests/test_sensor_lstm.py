"""The shipped LSTM example, examples/sensor_lstm.py: trained on synthetic sensor sequences, quantized with FX's
custom-module flow per engine, and converted; uquant's runtime gives torch's codes on every held-out sequence."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sensor_lstm_example", ROOT / "examples" / "sensor_lstm.py")
sensor_lstm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sensor_lstm)


@pytest.fixture(scope="module")
def trained():
    return sensor_lstm.train(epochs=6)


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_trained_lstm_is_exact_and_learns(trained, engine, report):
    r = sensor_lstm.evaluate(trained, engine, n_test=200)
    assert r["codes_differ"] == 0
    assert r["float_acc"] > 0.8 and abs(r["uquant_acc"] - r["float_acc"]) < 0.05
    report(f"examples/sensor_lstm.py ({engine}, 6 epochs): accuracy float {r['float_acc']:.1%}, uquant "
           f"{r['uquant_acc']:.1%} on 200 sequences of 20 steps; 0 of {r['codes_total']} codes differ from torch")
