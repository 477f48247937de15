"""torchvision's models, importable beside the CPU build of torch 2.13.

PyPI's torchvision 0.28.0 (the release for torch 2.13) is built against CUDA torch, so its `_C` extension does not
load beside the CPU wheel. Its models are plain Python and need none of it, but importing torchvision registers
fake kernels for `torchvision::nms` and `torchvision::qnms`, which fails unless those operators exist. `load()`
declares their schemas first (only when the extension did not), then imports torchvision.
"""
from __future__ import annotations

import importlib.util

import torch

from .examples import randomize_batchnorm

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


def quantized(name: str, engine: str, mode: str = "fx", size: int = 32, n_calibration: int = 16, **kwargs):
    """torchvision's quantizable `name` (random weights and BatchNorm statistics), quantized by torch for `engine`
    in FX (`mode="fx"`: the engine's default qconfig mapping; x86's for fbgemm, whose reduce_range keeps it
    portable) or eager mode (`mode="eager"`: fuse_model(), the engine's default qconfig, prepare, convert),
    calibrated on random 3 x size x size inputs. Returns (quantized model, calibration inputs)."""
    from torch.ao import quantization as tq
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(0)
    model = randomize_batchnorm(quantizable(name, **kwargs))
    x = torch.rand(n_calibration, 3, size, size) * 2 - 0.5
    torch.backends.quantized.engine = engine
    qengine = "qnnpack" if engine == "qnnpack" else "x86"
    with torch.no_grad():
        if mode == "fx":
            prepared = prepare_fx(model, tq.get_default_qconfig_mapping(qengine), (x[:1],))
            prepared(x)
            return convert_fx(prepared), x
        if mode != "eager":
            raise ValueError(f"mode must be 'fx' or 'eager', not {mode!r}")
        model.fuse_model(is_qat=False)
        model.qconfig = tq.get_default_qconfig(qengine)
        tq.prepare(model, inplace=True)
        model(x)
        return tq.convert(model, inplace=True), x
