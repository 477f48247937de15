"""torchvision's models, importable beside the CPU build of torch 2.13.

PyPI's torchvision 0.28.0 (the release for torch 2.13) is built against CUDA torch, so its `_C` extension does not
load beside the CPU wheel. Its models are plain Python and need none of it, but importing torchvision registers
fake kernels for `torchvision::nms` and `torchvision::qnms`, which fails unless those operators exist. `load()`
declares their schemas first (only when the extension did not), then imports torchvision.
"""
from __future__ import annotations

import importlib.util

import torch

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
_library = None  # kept alive: dropping a torch.library.Library removes what it defined


def available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def load():
    """The torchvision module (ImportError with the install line if it is missing)."""
    global _library
    if not available():
        raise ImportError("torchvision is not installed: `pip install --no-deps torchvision==0.28.0 pillow` "
                          "(the release for torch 2.13; --no-deps keeps the CPU torch)")
    if _library is None and not hasattr(torch.ops.torchvision, "nms"):
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _library.define(schema)
    import torchvision
    return torchvision


def quantizable(name: str, **kwargs) -> torch.nn.Module:
    """A float model from torchvision.models.quantization (random weights, eval mode, not yet quantized), e.g.
    quantizable("mobilenet_v2", width_mult=0.35), quantizable("shufflenet_v2_x0_5")."""
    q = load().models.quantization
    return getattr(q, name)(weights=None, quantize=False, **kwargs).eval()
