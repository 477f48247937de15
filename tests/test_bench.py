"""`make bench` runs and prints its figures (never asserted: speed belongs to the benchmark, not the tests)."""
from __future__ import annotations


def test_bench_runs(capsys):
    from uquant.bench import main

    assert main() == 0
    out = capsys.readouterr().out
    assert "MLP 64-256-256-10" in out
    tail = dict(line.split("=") for line in out.strip().splitlines()[-3:])
    assert set(tail) == {"armv6m_cycles_per_mac", "speedup_viper_over_bytecode", "heap_bytes_per_inference"}
    assert all(float(v) >= 0 for v in tail.values())
