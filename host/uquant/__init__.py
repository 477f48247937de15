"""uquant: torch-quantized models -> integer-only MicroPython modules that give torch's exact bytes.

    import uquant
    m = uquant.convert(qmodel, example_input)      # FX / eager module, TorchScript, state_dict or a path
    m.save("build/model_q.py")                     # the module for the board (needs device/uquant_rt.py)
    m.run(x)                                       # float input -> output codes, via the device runtime
    q = uquant.quantize(float_model, samples)      # torch's own PTQ, portable qconfig; q.save("m_q.pt"), q.convert()
    with uquant.board.connect("auto", board="pico") as b:  # a board (or `uquant sim`): deploy, predict, verify, run
        b.deploy("build/model_q.py"); b.predict(x)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .ir import ConversionError  # noqa: E402

__all__ = ["convert", "Converted", "ConversionError", "quantize", "quantize_input", "evaluate", "board", "__version__"]


def __getattr__(name: str):
    # The API needs torch, which takes a second or two to import: load it on first use, so that the board-side
    # commands (`uquant --help`, predict, deploy, sim, run --raw) start at once.
    if name in ("convert", "Converted", "quantize_input"):
        from . import api
        return getattr(api, name)
    if name == "quantize":  # torch's own post-training quantization, driven (uquant.quantize)
        from .quantize import quantize
        return quantize
    if name == "board":  # the module uquant.board (no torch): uquant.board.connect(port)
        from importlib import import_module
        return import_module(".board", __name__)
    if name == "evaluate":  # the module uquant.evaluate, callable: uquant.evaluate(model, data, labels)
        from importlib import import_module
        return import_module(".evaluate", __name__)
    raise AttributeError(f"module 'uquant' has no attribute {name!r}")
