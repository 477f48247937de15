"""`make bench` runs and prints its figures (never asserted: speed belongs to the benchmark, not the tests)."""
from __future__ import annotations


def test_bench_runs(capsys):
    from uquant.bench import main

    assert main() == 0
    out = capsys.readouterr().out
    assert "MLP 64-256-256-10" in out
    figures = dict(line.split("  #")[0].split("=") for line in out.splitlines() if "=" in line and " " not in
                   line.split("=")[0])
    assert {"armv6m_cycles_per_mac", "heap_bytes_per_inference", "model_ram_ratio", "import_peak_bytes",
            "python_cycles_per_inference", "armv7em_cycles_per_mac", "armv6m_cnn_cycles_per_mac",
            "armv6m_kws_cycles_per_mac", "help_seconds", "convert_seconds_resnet8",
            "convert_selfcheck_seconds_resnet8", "stream_cost_ratio_ae", "stream_held_bytes_ae"} <= set(figures)
    assert all(float(v) >= 0 for v in figures.values())
