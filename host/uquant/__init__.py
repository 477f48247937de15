"""uquant: torch-quantized models -> integer-only MicroPython modules that give torch's exact bytes.

    import uquant
    m = uquant.convert(qmodel, example_input)      # FX / eager module, TorchScript, state_dict or a path
    m.save("build/model_q.py")                     # the module for the board (needs device/uquant_rt.py)
    m.run(x)                                       # float input -> output codes, via the device runtime
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import Converted, convert, quantize_input  # noqa: E402
from .ir import ConversionError  # noqa: E402

__all__ = ["convert", "Converted", "ConversionError", "quantize_input", "__version__"]
