"""Input samples from files (--data): .npy or .csv, one float sample per row, quantized as torch does."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plan import Plan


def read_samples(path: str | Path, n_in: int) -> np.ndarray:
    """(samples, n_in) float32 from a .npy file (any shape whose rows flatten to n_in values) or a .csv file
    (comma-separated, one sample per line; a header line of names is skipped)."""
    path = Path(path)
    x = read_array(path)
    if x.size % n_in:
        raise ValueError(f"{path}: {x.size} values do not make samples of {n_in} values each (shape {x.shape})")
    return x.reshape(-1, n_in)


def read_array(path: str | Path, option: str = "--data") -> np.ndarray:
    """A .npy file's array (its own shape) or a .csv file's rows (samples, columns), float32, finite, not empty."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file ({option} takes a .npy or .csv file of samples)")
    if path.suffix.lower() == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{path}: not a numeric .npy file ({e})") from None
    elif path.suffix.lower() in (".csv", ".txt"):
        try:
            x = np.genfromtxt(path, delimiter=",", dtype=np.float64, skip_header=_header_lines(path), ndmin=2)
        except ValueError as e:
            raise ValueError(f"{path}: not a CSV file of numbers ({e})") from None
    else:
        raise ValueError(f"{path}: {option} takes a .npy or .csv file, one sample per row")
    try:
        x = np.asarray(x, np.float32)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a numeric array ({e})") from None
    if x.size == 0:
        raise ValueError(f"{path}: holds no values (shape {x.shape})")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: the samples hold NaN or infinite values")
    return x


def _header_lines(path: Path) -> int:
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    try:
        [float(v) for v in first.split(",") if v.strip()]
        return 0
    except ValueError:
        return 1


def load_samples(path: str | Path, plan: Plan) -> tuple[np.ndarray, str]:
    """Input codes (samples, n_in) for `plan`'s input from a --data file, and a description of them."""
    from .api import quantize_input

    x = read_samples(path, plan.n_in)
    return quantize_input(x, plan.input), f"samples from {Path(path).name}"
